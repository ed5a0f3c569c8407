//! `tenet assessments` through the real binary: a plan from a file, a batch
//! enrolment killed with SIGKILL mid-file and run again (every row exactly once, rows
//! reported by number without their content), and the due list.

use std::process::Stdio;
use std::time::Duration;

use crate::{Tenet, single_line};

const N_ROWS: usize = 4_000;

#[tokio::test]
async fn a_batch_enrolment_killed_mid_file_resumes_and_enrols_every_row_exactly_once() {
    let tenet = Tenet::new().await;
    let tenant =
        single_line(tenet.run(&["tenant", "create", "Aspen Clinic"]).await.ok()).to_owned();
    let plan_path = tenet.home.path().join("plan.json");
    std::fs::write(
        &plan_path,
        r#"{"rules": [{"when": {}, "instrument": "phq-9", "respondent": "patient"}],
            "cadence": {"every_months": 1}, "window": {"before_days": 3, "after_days": 7}}"#,
    )
    .unwrap();
    let refused = tenet
        .run(&[
            "assessments",
            "plans",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "adults",
            "--file",
            plan_path.to_str().unwrap(),
        ])
        .await;
    // PHQ-9 is for adults: a rule without an age is refused, naming the field.
    refused.failed();
    assert!(refused.stderr.contains("rules[0].when"), "{refused}");
    std::fs::write(
        &plan_path,
        r#"{"rules": [{"when": {"age_from": 18}, "instrument": "phq-9", "respondent": "patient"}],
            "cadence": {"every_months": 1}, "window": {"before_days": 3, "after_days": 7}}"#,
    )
    .unwrap();
    let created = tenet
        .run(&[
            "assessments",
            "plans",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "adults",
            "--file",
            plan_path.to_str().unwrap(),
        ])
        .await;
    let plan = single_line(created.ok())
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();

    // Patients, straight into the clinical table (pseudonymous ids only).
    let patients: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO clinical.patients (tenant_id, id)
         SELECT $1::uuid, gen_random_uuid() FROM generate_series(1, $2) RETURNING id",
    )
    .bind(uuid::Uuid::parse_str(&tenant).unwrap())
    .bind(i32::try_from(N_ROWS).unwrap() - 1)
    .fetch_all(&tenet.db.admin)
    .await
    .unwrap();
    let mut csv = String::from("patient_id,time_zone\n");
    for (n, patient_id) in patients.iter().enumerate() {
        if n == 6 {
            csv.push_str("Jane Doe 1970-01-01,\n");
        }
        csv.push_str(&format!("{patient_id},Europe/Oslo\n"));
    }
    let csv_path = tenet.home.path().join("patients.csv");
    std::fs::write(&csv_path, &csv).unwrap();
    let args = [
        "assessments",
        "enroll",
        "--tenant",
        &tenant,
        "--plan",
        &plan,
        "--file",
        csv_path.to_str().unwrap(),
    ];

    let n_rows = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM assessments.enrollment_batch_rows")
            .fetch_one(&tenet.db.admin)
            .await
            .unwrap()
    };
    let mut victim = tenet
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while n_rows().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no row committed in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    victim.start_kill().unwrap();
    victim.wait().await.unwrap();
    let n_before = n_rows().await;
    assert!(
        n_before > 0 && n_before < N_ROWS as i64,
        "the kill landed mid-file ({n_before} rows done)"
    );

    let resumed = tenet.run(&args).await;
    let out = resumed.ok();
    assert!(
        out.contains("row 7: invalid (invalid_patient_id)"),
        "{resumed}"
    );
    assert!(
        out.contains(&format!(
            "{N_ROWS} rows — {} enrolled, 0 already enrolled, 1 invalid ({n_before} done by an earlier run)",
            N_ROWS - 1
        )),
        "{resumed}"
    );
    assert!(
        !out.contains("Jane") && !resumed.stderr.contains("Jane"),
        "{resumed}"
    );
    let n_enrollments: i64 = sqlx::query_scalar("SELECT count(*) FROM assessments.enrollments")
        .fetch_one(&tenet.db.admin)
        .await
        .unwrap();
    assert_eq!(n_enrollments, N_ROWS as i64 - 1);
    assert_eq!(n_rows().await, N_ROWS as i64);

    // Run again: nothing changes.
    let again = tenet.run(&args).await;
    assert!(
        again
            .ok()
            .contains(&format!("({N_ROWS} done by an earlier run)")),
        "{again}"
    );

    // The materialiser evaluates every enrolment; these patients have no identity
    // record, so no birth date, so the adult rule assigns nothing — and nothing reaches
    // a due list.
    let materialized = tenet
        .run(&["assessments", "materialize", "--tenant", &tenant])
        .await;
    assert!(
        materialized.ok().contains(&format!(
            "{} enrolment(s) evaluated, 0 instance(s) created",
            N_ROWS - 1
        )),
        "{materialized}"
    );
    let due = tenet
        .run(&[
            "assessments",
            "due",
            "--tenant",
            &tenant,
            "--clinician",
            &uuid::Uuid::now_v7().to_string(),
        ])
        .await;
    assert_eq!(single_line(due.ok()), "nothing due");
}
