//! `tenet check` on the live schema.

use crate::Tenet;

#[tokio::test]
async fn check_passes_on_the_migrated_schema_and_names_the_rule_a_superuser_broke() {
    let tenet = Tenet::new().await;
    let run = tenet.run(&["check"]).await;
    assert!(run.ok().starts_with("tenet check: 0 violations"), "{run}");

    tenet
        .as_superuser("ALTER TABLE clinical.patients NO FORCE ROW LEVEL SECURITY")
        .await;

    let run = tenet.run(&["check"]).await;
    let stdout = run.failed();
    assert!(stdout.starts_with("tenet check: 1 violation\n"), "{run}");
    assert!(
        stdout.contains("rls-not-forced") && stdout.contains("clinical.patients"),
        "the rule and the table are named: {run}"
    );
    let run = tenet.run(&["check", "--json"]).await;
    let violations: serde_json::Value =
        serde_json::from_str(run.failed()).expect("`check --json` prints JSON");
    let violations = violations.as_array().expect("a list of violations");
    assert_eq!(violations.len(), 1, "{run}");
    assert_eq!(violations[0]["object"], "clinical.patients", "{run}");
}
