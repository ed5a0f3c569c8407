//! `tenet check` on the live schema.

use db::TenantTx;
use kernel::TenantId;
use platform::jobs::{self, JobSpec, Probe, ProbeArgs};

use crate::Tenet;

#[tokio::test]
async fn check_passes_on_the_migrated_schema_and_names_the_rule_a_superuser_broke() {
    let tenet = Tenet::new().await;
    let run = tenet.run(&["check"]).await;
    assert!(run.ok().starts_with("tenet check: 0 violations"), "{run}");
    assert!(
        run.ok().contains("work in flight: 0 problems, 0 notices"),
        "{run}"
    );

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
    let report: serde_json::Value =
        serde_json::from_str(run.failed()).expect("`check --json` prints JSON");
    let violations = report["violations"]
        .as_array()
        .expect("a list of violations");
    assert_eq!(violations.len(), 1, "{run}");
    assert_eq!(violations[0]["object"], "clinical.patients", "{run}");
}

#[tokio::test]
async fn check_fails_on_a_job_stuck_past_its_lease_or_overdue_and_notes_dead_letters() {
    let tenet = Tenet::new().await;
    let tenant_id = TenantId::generate();
    let mut tx = TenantTx::begin_as(&tenet.db.app, tenant_id, "system", None)
        .await
        .unwrap();
    for _ in 0..3 {
        jobs::enqueue(&mut tx, JobSpec::<Probe>::new(ProbeArgs::default()))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // One claimed by a worker that died an hour ago and nobody rescued; one due for an
    // hour and never claimed; one dead.
    tenet
        .as_superuser(
            "WITH picked AS (SELECT tenant_id, id, row_number() OVER (ORDER BY id) AS n FROM platform.jobs),
             lease AS (
                 INSERT INTO platform.job_leases (tenant_id, worker_id, expires_at, job_ids)
                 SELECT tenant_id, 'node-7:4242', now() - interval '1 hour', ARRAY[id]
                 FROM picked WHERE n = 1
                 RETURNING id)
             UPDATE platform.jobs j SET
                 state = (ARRAY['running', 'scheduled', 'dead'])[picked.n]::platform.job_state,
                 lease_id = CASE picked.n WHEN 1 THEN (SELECT id FROM lease) END,
                 worker_id = CASE picked.n WHEN 1 THEN 'node-7:4242' END,
                 run_at = now() - interval '1 hour',
                 finished_at = CASE picked.n WHEN 3 THEN now() END
             FROM picked WHERE j.id = picked.id",
        )
        .await;

    let run = tenet.run(&["check"]).await;
    let stdout = run.failed();
    assert!(stdout.contains("tenet check: 0 violations"), "{run}");
    assert!(
        stdout.contains("work in flight: 2 problems, 1 notice"),
        "{run}"
    );
    assert!(
        stdout.contains("problem job-lease-expired: jobs platform.probe (queue default): 1 running past their lease")
            && stdout.contains("node-7:4242"),
        "{run}"
    );
    assert!(
        stdout.contains(
            "problem job-overdue: jobs platform.probe (queue default): 1 due but not claimed"
        ),
        "{run}"
    );
    assert!(
        stdout
            .contains("notice dead-letters: jobs platform.probe (queue default): 1 dead letter(s)"),
        "{run}"
    );

    // Thresholds are the operator's: an hour-old lease within a two-hour grace is fine.
    let run = tenet
        .run(&[
            "check",
            "--json",
            "--lease-grace-secs",
            "7200",
            "--overdue-secs",
            "7200",
        ])
        .await;
    let report: serde_json::Value = serde_json::from_str(run.ok()).expect("JSON");
    let work = report["work"].as_array().expect("a list of findings");
    assert_eq!(work.len(), 1, "{run}");
    assert_eq!(work[0]["check"], "dead-letters", "{run}");
    assert_eq!(work[0]["severity"], "notice", "{run}");
}
