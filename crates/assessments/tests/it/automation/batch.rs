//! Batch enrolment: per-row outcomes without PHI, an interruption mid-file and the
//! resume doing every row exactly once, re-runs changing nothing, and filters.

use assessments::batch::{self, BatchRow, Defaults, FileFormat, PatientFilter, RunOptions};

use super::*;

fn defaults() -> Defaults {
    Defaults {
        time_zone: "Europe/Berlin".to_owned(),
        clinician_id: Some(clinician()),
        anchor_at: None,
    }
}

async fn run(
    world: &World,
    plan_id: Uuid,
    file: &[u8],
    rows: &[BatchRow],
    options: RunOptions,
) -> batch::BatchReport {
    batch::run(
        &world.db.app,
        world.tenant_id,
        "user:test",
        plan_id,
        batch::file_sha256(file),
        rows,
        &defaults(),
        options,
        OffsetDateTime::now_utc(),
        |_| {},
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_interrupted_batch_resumes_and_enrols_every_row_exactly_once() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(365)).await;
    let mut csv = String::from("patient_id,time_zone,clinician_id\n");
    let mut patients = Vec::new();
    for n in 0..23 {
        let patient_id = world.patient(adult()).await;
        patients.push(patient_id);
        match n {
            // Row 4: not an id; row 9: nobody; row 15: a zone that does not exist.
            3 => csv.push_str("Ada Okafor,,\n"),
            8 => csv.push_str(&format!("{},,\n", PatientId::generate())),
            14 => csv.push_str(&format!("{patient_id},Moon/Tranquility,\n")),
            _ => csv.push_str(&format!("{patient_id},,\n")),
        }
    }
    // Row 24 repeats row 1's patient: already enrolled by then.
    csv.push_str(&format!("{},America/Denver,\n", patients[0]));
    let rows = batch::parse(csv.as_bytes(), FileFormat::Csv).unwrap();
    assert_eq!(rows.len(), 24);

    let options = RunOptions {
        rows_per_tx: 4,
        stop_after_rows: Some(10),
    };
    let first = run(&world, plan.id, csv.as_bytes(), &rows, options).await;
    assert!(!first.finished);
    assert_eq!(world.count("enrollment_batch_rows", "true").await, 10);
    let mut n_progress = 0;
    let second = batch::run(
        &world.db.app,
        world.tenant_id,
        "user:test",
        plan.id,
        batch::file_sha256(csv.as_bytes()),
        &rows,
        &defaults(),
        RunOptions {
            rows_per_tx: 4,
            stop_after_rows: None,
        },
        OffsetDateTime::now_utc(),
        |n| n_progress += n,
    )
    .await
    .unwrap();
    assert_eq!(n_progress, 24, "skipped rows count towards the progress");
    assert_eq!(second.batch_id, first.batch_id);
    assert!(second.finished);
    assert_eq!(second.n_skipped, 10);
    assert_eq!(second.n_enrolled, 20);
    assert_eq!(second.n_already_enrolled, 1);
    assert_eq!(
        second.invalid,
        [
            (4, "invalid_patient_id".to_owned()),
            (9, "patient_not_found".to_owned()),
            (15, "invalid_time_zone".to_owned())
        ]
    );
    assert_eq!(world.count("enrollments", "true").await, 20);
    assert_eq!(world.count("enrollment_batch_rows", "true").await, 24);

    // Again: nothing new, the same report.
    let third = run(
        &world,
        plan.id,
        csv.as_bytes(),
        &rows,
        RunOptions::default(),
    )
    .await;
    assert_eq!(third.n_enrolled, 20);
    assert_eq!(third.n_skipped, 24);
    assert_eq!(world.count("enrollments", "true").await, 20);
    // The same patients in a new file: every row already enrolled.
    let json = serde_json::to_vec(
        &patients[..3]
            .iter()
            .map(|id| serde_json::json!({ "patient_id": id.to_string() }))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let rows = batch::parse(&json, FileFormat::Json).unwrap();
    let again = run(&world, plan.id, &json, &rows, RunOptions::default()).await;
    assert_ne!(again.batch_id, first.batch_id);
    assert_eq!((again.n_enrolled, again.n_already_enrolled), (0, 3));
    assert_eq!(world.count("enrollments", "true").await, 20);
}

#[tokio::test]
async fn a_file_with_an_unknown_column_or_bad_json_is_refused_naming_no_value() {
    let err =
        batch::parse(b"patient_id,date_of_birth\nx,1980-01-01\n", FileFormat::Csv).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CSV header names an unknown column \"date_of_birth\""
    );
    let err = batch::parse(
        b"[{\"patient_id\": \"Ada Okafor\", \"ssn\": \"123-45-6789\"}]",
        FileFormat::Json,
    )
    .unwrap_err();
    assert!(!err.to_string().contains("123-45-6789"), "{err}");
    assert!(!err.to_string().contains("Okafor"), "{err}");
}

#[tokio::test]
async fn enrolling_a_clinicians_care_team_takes_their_patients_only_and_is_idempotent() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(365)).await;
    let clinician_a = kernel::UserId::new_unchecked(Uuid::now_v7());
    let mut theirs = Vec::new();
    for n in 0..5 {
        let patient_id = world.patient(adult()).await;
        if n < 3 {
            let mut tx = world.tx().await;
            clinical::care_team::add(&mut tx, patient_id, clinician_a)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            theirs.push(patient_id);
        }
    }
    for expected in [(3, 0), (0, 3)] {
        let report = batch::run_filter(
            &world.db.app,
            world.tenant_id,
            "user:test",
            plan.id,
            PatientFilter::CareTeamOf(clinician_a),
            &defaults(),
            OffsetDateTime::now_utc(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((report.n_enrolled, report.n_already_enrolled), expected);
    }
    assert_eq!(world.count("enrollments", "true").await, 3);
}

#[tokio::test]
async fn the_same_file_with_another_default_time_zone_is_a_new_batch_not_a_resumption() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(365)).await;
    let first = world.patient(adult()).await;
    let second = world.patient(adult()).await;
    let csv = format!("patient_id\n{first}\n{second}\n");
    let rows = batch::parse(csv.as_bytes(), FileFormat::Csv).unwrap();
    let berlin = run(
        &world,
        plan.id,
        csv.as_bytes(),
        &rows,
        RunOptions::default(),
    )
    .await;
    assert_eq!(berlin.n_enrolled, 2);

    let tokyo = batch::run(
        &world.db.app,
        world.tenant_id,
        "user:test",
        plan.id,
        batch::file_sha256(csv.as_bytes()),
        &rows,
        &Defaults {
            time_zone: "Asia/Tokyo".to_owned(),
            ..defaults()
        },
        RunOptions::default(),
        OffsetDateTime::now_utc(),
        |_| {},
    )
    .await
    .unwrap();
    // Every row looked at again (and found enrolled), not skipped as already done.
    assert_ne!(tokyo.batch_id, berlin.batch_id);
    assert_eq!((tokyo.n_skipped, tokyo.n_already_enrolled), (0, 2));
    // The same file with the same defaults is the first batch, resumed.
    let again = run(
        &world,
        plan.id,
        csv.as_bytes(),
        &rows,
        RunOptions::default(),
    )
    .await;
    assert_eq!((again.batch_id, again.n_skipped), (berlin.batch_id, 2));
}
