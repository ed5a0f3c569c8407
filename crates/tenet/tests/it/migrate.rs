//! `tenet migrate`: down and up again.

use crate::Tenet;

#[tokio::test]
async fn migrate_down_four_steps_then_up_round_trips() {
    let tenet = Tenet::new().await;
    let n_migrations = schema::migrator().migrations().len();
    assert!(
        n_migrations >= 4,
        "BUG: fewer migrations than the test reverts"
    );

    let run = tenet.run(&["migrate", "down", "--steps", "4"]).await;
    assert_eq!(run.ok().trim(), "4 migration(s) reverted", "{run}");
    let run = tenet.run(&["migrate", "status"]).await;
    assert_eq!(
        run.ok()
            .lines()
            .filter(|line| line.contains(" pending "))
            .count(),
        4,
        "{run}"
    );

    let run = tenet.run(&["migrate"]).await;
    assert_eq!(
        run.ok().trim(),
        "4 migration(s) applied; the schema is current",
        "{run}"
    );
    let run = tenet.run(&["migrate", "status"]).await;
    assert!(
        run.ok().lines().all(|line| line.contains(" applied ")),
        "{run}"
    );
    let run = tenet.run(&["migrate"]).await;
    assert!(run.ok().starts_with("0 migration(s) applied"), "{run}");
    // The schema that came back is the one the rules were written for, and works.
    let run = tenet.run(&["check"]).await;
    assert!(run.ok().starts_with("tenet check: 0 violations"), "{run}");
    let run = tenet
        .run(&["tenant", "create", "After the round trip"])
        .await;
    run.ok();
}
