//! Processing on a real PostgreSQL: ADT and ORU messages received over MLLP become
//! patients (PHI in the vault), encounters and observations, by the real job worker;
//! in order per patient, once in effect, audited, and a failure set aside as a dead
//! letter that can be reprocessed.

use clinical::critical_range::{self, CriticalRange};
use db::TenantTx;
use db::testing::TestDb;
use identity::vault::{self, Access};
use kernel::{PatientId, TenantId};
use platform::jobs::Registry;
use platform::jobs::worker::{Outcome, Worker, WorkerConfig};
use uuid::Uuid;

use super::{Server, connect, exchange, start};

fn worker(db: &TestDb, server: &Server) -> Worker {
    Worker::new(
        db.owner.clone(),
        db.app.clone(),
        Registry::new()
            .register(ingest::process::Process {
                keyring: server.keyring.clone(),
            })
            .register(ingest::reply::ApplicationAck {
                keyring: server.keyring.clone(),
            }),
        WorkerConfig::new("test"),
    )
}

/// Runs jobs until none is runnable; returns how each ended.
async fn drain(worker: &Worker) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    while let Some(outcome) = worker.try_run_one().await.unwrap() {
        outcomes.push(outcome);
        assert!(outcomes.len() < 1000, "the worker never ran dry");
    }
    outcomes
}

async fn send(server: &Server, messages: &[String]) {
    let mut client = connect(server).await;
    for message in messages {
        let ack = exchange(&mut client, message).await;
        assert_eq!(ack.code, "AA", "a supported message is accepted");
    }
}

const MSH: &str = "MSH|^~\\&|ADT|HOSP|TENET|CLINIC|20261123080000+0000||";

fn adt(trigger: &str, control_id: &str, mrn: &str, family: &str) -> String {
    // PV1-44 admitted, PV1-45 discharged.
    let pv1 = format!(
        "PV1|1|I|WARD^1^A{}20261123073000+0000|20261123180000+0000",
        "|".repeat(41)
    );
    format!(
        "{MSH}ADT^{trigger}|{control_id}|P|2.5.1\r\
         EVN|{trigger}|20261123080000+0000\r\
         PID|1||{mrn}^^^HOSP^MR||{family}^Ada||19700203|F|||1 Main St^^Springfield^IL^62701||555-0100\r\
         {pv1}\r"
    )
}

fn merge(control_id: &str, survivor_mrn: &str, merged_mrn: &str) -> String {
    format!(
        "{MSH}ADT^A40|{control_id}|P|2.5.1\r\
         EVN|A40|20261123080000+0000\r\
         PID|1||{survivor_mrn}^^^HOSP^MR||Survivor^Ada||19700203|F\r\
         MRG|{merged_mrn}^^^HOSP^MR\r"
    )
}

fn oru(control_id: &str, mrn: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20261123101500+0000||ORU^R01|{control_id}|P|2.5.1\r\
         PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19800101|F\r\
         OBR|1|||24323-8^Panel^LN|||20261123100000+0000\r\
         OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L|3.5-5.1|HH|||F\r\
         OBX|2|NM|2951-2^Sodium^LN||118|mmol/L|135-145|L|||F\r\
         OBX|3|NM|2345-7^Glucose^LN||5.4|mmol/L|3.9-7.8|N|||F\r"
    )
}

async fn tx(db: &TestDb, tenant_id: TenantId) -> TenantTx {
    TenantTx::begin_as(&db.app, tenant_id, "test", None)
        .await
        .unwrap()
}

async fn patient_by_mrn(db: &TestDb, server: &Server, mrn: &str) -> Option<PatientId> {
    let mut tx = tx(db, server.tenant_id).await;
    vault::find_by_identifier(&mut tx, &server.keyring, "HOSP", mrn)
        .await
        .unwrap()
}

async fn family_name(db: &TestDb, server: &Server, patient_id: PatientId) -> String {
    let mut tx = tx(db, server.tenant_id).await;
    vault::read(&mut tx, &server.keyring, patient_id, &Access::default())
        .await
        .unwrap()
        .demographics
        .family_name
}

async fn scalar_i64(db: &TestDb, tenant_id: TenantId, sql: &str) -> i64 {
    let mut tx = tx(db, tenant_id).await;
    sqlx::query_scalar(sql).fetch_one(&mut *tx).await.unwrap()
}

async fn message_id(db: &TestDb, tenant_id: TenantId, control_id: &str) -> Uuid {
    let mut tx = tx(db, tenant_id).await;
    sqlx::query_scalar("SELECT id FROM ingest.messages WHERE control_id = $1")
        .bind(control_id)
        .fetch_one(&mut *tx)
        .await
        .unwrap()
}

async fn processing(
    db: &TestDb,
    tenant_id: TenantId,
    control_id: &str,
) -> (String, Option<String>) {
    let mut tx = tx(db, tenant_id).await;
    sqlx::query_as(
        "SELECT processing::text, processing_error FROM ingest.messages WHERE control_id = $1",
    )
    .bind(control_id)
    .fetch_one(&mut *tx)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_admission_registers_the_patient_in_the_vault_and_opens_an_encounter() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(&server, &[adt("A01", "A1", "MRN-100", "Lovelace")]).await;
    assert!(
        patient_by_mrn(&db, &server, "MRN-100").await.is_none(),
        "nothing is processed before the worker runs"
    );
    let outcomes = drain(&worker(&db, &server)).await;
    assert!(
        matches!(outcomes[..], [Outcome::Succeeded(_)]),
        "{outcomes:?}"
    );

    let patient_id = patient_by_mrn(&db, &server, "MRN-100")
        .await
        .expect("registered");
    assert_eq!(family_name(&db, &server, patient_id).await, "Lovelace");
    let mut tx = tx(&db, server.tenant_id).await;
    let encounters = clinical::encounter::of_patient(&mut tx, patient_id)
        .await
        .unwrap();
    assert_eq!(encounters.len(), 1);
    assert!(encounters[0].in_progress);
    assert_eq!(encounters[0].class.as_deref(), Some("I"));
    assert_eq!(
        encounters[0].started_at.unwrap(),
        time::macros::datetime!(2026-11-23 07:30:00 UTC)
    );
    drop(tx);
    assert_eq!(processing(&db, server.tenant_id, "A1").await.0, "processed");
    // PHI written by the integration is audited, under its name, with the raw store.
    let audited = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM audit.events WHERE actor = 'integration:test' AND action = 'patient.create'",
    )
    .await;
    assert_eq!(audited, 1);
    let stored = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM audit.events WHERE action = 'ingest.message.store'",
    )
    .await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn an_update_changes_the_patient_and_a_discharge_finishes_the_encounter() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(
        &server,
        &[
            adt("A01", "U1", "MRN-200", "Hopper"),
            adt("A08", "U2", "MRN-200", "Hopper-Murray"),
            adt("A03", "U3", "MRN-200", "Hopper-Murray"),
        ],
    )
    .await;
    drain(&worker(&db, &server)).await;
    let patient_id = patient_by_mrn(&db, &server, "MRN-200").await.unwrap();
    assert_eq!(family_name(&db, &server, patient_id).await, "Hopper-Murray");
    let mut tx = tx(&db, server.tenant_id).await;
    let encounters = clinical::encounter::of_patient(&mut tx, patient_id)
        .await
        .unwrap();
    assert_eq!(encounters.len(), 1, "A08 and A03 open no encounter");
    assert!(!encounters[0].in_progress);
    assert_eq!(
        encounters[0].ended_at.unwrap(),
        time::macros::datetime!(2026-11-23 18:00:00 UTC)
    );
}

#[tokio::test]
async fn messages_of_one_patient_are_processed_in_the_order_received_whatever_order_jobs_run() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(
        &server,
        &[
            adt("A01", "O1", "MRN-300", "First"),
            adt("A08", "O2", "MRN-300", "Second"),
            adt("A03", "O3", "MRN-300", "Third"),
        ],
    )
    .await;
    let worker = worker(&db, &server);
    let mut jobs = worker.claim(10).await.unwrap();
    assert_eq!(jobs.len(), 3);
    // The discharge's job runs first: it must process the admission and the update
    // before itself, or there would be no encounter to finish.
    jobs.reverse();
    for job in jobs {
        let outcome = worker.run_claimed(job).await.unwrap();
        assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    }
    let patient_id = patient_by_mrn(&db, &server, "MRN-300").await.unwrap();
    // A03 changes no demographics: the A08's name stands, not the A01's.
    assert_eq!(family_name(&db, &server, patient_id).await, "Second");
    let mut tx = tx(&db, server.tenant_id).await;
    let encounters = clinical::encounter::of_patient(&mut tx, patient_id)
        .await
        .unwrap();
    assert_eq!(encounters.len(), 1);
    assert!(!encounters[0].in_progress, "the discharge came last");
    drop(tx);
    // Each effect happened once: one registration, one update per later message.
    let creates = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM audit.events WHERE action = 'patient.create'",
    )
    .await;
    assert_eq!(creates, 1);
}

#[tokio::test]
async fn results_are_recorded_and_critical_ones_announced_by_flag_or_configured_range() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    {
        let mut tx = tx(&db, server.tenant_id).await;
        critical_range::set(
            &mut tx,
            &CriticalRange {
                code_system: "LN".to_owned(),
                code: "2951-2".to_owned(),
                low: Some(120.0),
                high: Some(160.0),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    // The result arrives before any ADT: the patient is registered from its PID.
    send(&server, &[oru("R1", "MRN-400")]).await;
    drain(&worker(&db, &server)).await;
    let patient_id = patient_by_mrn(&db, &server, "MRN-400").await.unwrap();
    let mut tx = tx(&db, server.tenant_id).await;
    let observations = clinical::observation::of_patient(&mut tx, patient_id, 100)
        .await
        .unwrap();
    let by_code = |code: &str| observations.iter().find(|o| o.code == code).unwrap();
    assert_eq!(observations.len(), 3);
    let potassium = by_code("2823-3");
    assert!(potassium.critical);
    assert_eq!(potassium.critical_reason.as_deref(), Some("flag:HH"));
    assert_eq!(
        potassium.value,
        clinical::observation::ObservationValue::Numeric("6.9".to_owned())
    );
    assert_eq!(potassium.units.as_deref(), Some("mmol/L"));
    assert_eq!(potassium.reference_range.as_deref(), Some("3.5-5.1"));
    let sodium = by_code("2951-2");
    assert!(sodium.critical, "118 is below the configured 120");
    assert_eq!(sodium.critical_reason.as_deref(), Some("range"));
    assert!(!by_code("2345-7").critical);
    let events: Vec<(serde_json::Value,)> = sqlx::query_as(
        "SELECT payload FROM clinical.outbox WHERE event_type = 'observation.recorded' ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let critical: Vec<bool> = events
        .iter()
        .map(|(payload,)| payload["critical"].as_bool().unwrap())
        .collect();
    assert_eq!(critical, vec![true, true, false]);
    for (payload,) in &events {
        let text = payload.to_string();
        assert!(
            !text.contains("6.9") && !text.contains("MRN-400"),
            "events carry no values or identifiers"
        );
    }
}

#[tokio::test]
async fn a_merge_points_the_merged_away_record_at_the_survivor_and_later_results_follow_it() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(
        &server,
        &[
            adt("A01", "M1", "MRN-OLD", "Twin"),
            adt("A01", "M2", "MRN-NEW", "Twin"),
            merge("M3", "MRN-NEW", "MRN-OLD"),
            oru("M4", "MRN-OLD"),
        ],
    )
    .await;
    drain(&worker(&db, &server)).await;
    let old = patient_by_mrn(&db, &server, "MRN-OLD").await.unwrap();
    let new = patient_by_mrn(&db, &server, "MRN-NEW").await.unwrap();
    let mut tx = tx(&db, server.tenant_id).await;
    let merged = clinical::patient::get(&mut tx, old).await.unwrap().unwrap();
    assert_eq!(merged.status, clinical::patient::PatientStatus::Merged);
    assert_eq!(merged.merged_into, Some(new));
    assert!(
        vault::exists(&mut tx, old).await.unwrap(),
        "nothing is deleted by a merge"
    );
    let on_survivor = clinical::observation::of_patient(&mut tx, new, 100)
        .await
        .unwrap();
    assert_eq!(
        on_survivor.len(),
        3,
        "a result for the old MRN lands on the survivor"
    );
    assert!(
        clinical::observation::of_patient(&mut tx, old, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_failing_message_is_a_dead_letter_with_its_reason_and_holds_up_no_one() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    // A discharge of a patient nobody admitted yet, among other patients' messages.
    send(
        &server,
        &[
            adt("A03", "F1", "MRN-CANARY-77", "Canary"),
            adt("A01", "F2", "MRN-500", "Other"),
            oru("F3", "MRN-501"),
        ],
    )
    .await;
    let worker = worker(&db, &server);
    let outcomes = drain(&worker).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Dead(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(patient_by_mrn(&db, &server, "MRN-500").await.is_some());
    assert!(patient_by_mrn(&db, &server, "MRN-501").await.is_some());
    let (state, error) = processing(&db, server.tenant_id, "F1").await;
    assert_eq!(state, "failed");
    let error = error.unwrap();
    assert_eq!(error, "PID-3: no patient holds this identifier");
    let dead_letters =
        platform::dead_letters::list(&mut db.owner.acquire().await.unwrap(), None, 100)
            .await
            .unwrap();
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].what, "ingest.process");
    assert!(
        !dead_letters[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("CANARY")
    );

    // The patient is admitted later; the discharge, reprocessed, now finds them.
    send(&server, &[adt("A01", "F4", "MRN-CANARY-77", "Canary")]).await;
    drain(&worker).await;
    let failed = message_id(&db, server.tenant_id, "F1").await;
    // The admission came after the failed discharge: applying the discharge now is a
    // choice the operator makes knowingly.
    assert!(matches!(
        ingest::process::reprocess(&db.owner, failed, false).await,
        Err(ingest::process::ReprocessError::LaterProcessed { n_later: 1, .. })
    ));
    ingest::process::reprocess(&db.owner, failed, true)
        .await
        .unwrap();
    assert!(matches!(
        ingest::process::reprocess(&db.owner, failed, true).await,
        Err(ingest::process::ReprocessError::AlreadyQueued { .. })
    ));
    let outcomes = drain(&worker).await;
    assert!(
        matches!(outcomes[..], [Outcome::Succeeded(_)]),
        "{outcomes:?}"
    );
    assert_eq!(processing(&db, server.tenant_id, "F1").await.0, "processed");
    let patient_id = patient_by_mrn(&db, &server, "MRN-CANARY-77").await.unwrap();
    let mut tx = tx(&db, server.tenant_id).await;
    let encounters = clinical::encounter::of_patient(&mut tx, patient_id)
        .await
        .unwrap();
    assert!(!encounters[0].in_progress);
    drop(tx);
    let left = platform::dead_letters::list(&mut db.owner.acquire().await.unwrap(), None, 100)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "the reprocessed message left the dead letters"
    );
    assert!(matches!(
        ingest::process::reprocess(&db.owner, failed, false).await,
        Err(ingest::process::ReprocessError::AlreadyProcessed(_))
    ));
}

#[tokio::test]
async fn processing_a_message_again_has_the_effect_of_once() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(&server, &[oru("D1", "MRN-600")]).await;
    let worker = worker(&db, &server);
    drain(&worker).await;
    // A second job for the same message (a crash between effect and completion would
    // look like this to the next worker).
    let message_id = message_id(&db, server.tenant_id, "D1").await;
    let mut tx = tx(&db, server.tenant_id).await;
    platform::jobs::enqueue(
        &mut tx,
        platform::jobs::JobSpec::<ingest::process::Process>::new(ingest::process::ProcessArgs {
            message_id,
        }),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let outcomes = drain(&worker).await;
    assert!(matches!(outcomes[..], [Outcome::Succeeded(_)]));
    let n = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM clinical.observations",
    )
    .await;
    assert_eq!(n, 3);
    let events = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM clinical.outbox WHERE event_type = 'observation.recorded'",
    )
    .await;
    assert_eq!(events, 3);
}

#[tokio::test]
async fn an_unsupported_type_is_answered_ar_with_an_err_and_kept_as_rejected() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut client = connect(&server).await;
    let transfer = adt("A02", "T1", "MRN-700", "Moved");
    let ack = exchange(&mut client, &transfer).await;
    assert_eq!(ack.code, "AR");
    assert!(ack.has_err);
    let scheduling = format!("{MSH}SIU^S12|T2|P|2.5.1\r");
    let ack = exchange(&mut client, &scheduling).await;
    assert_eq!(ack.code, "AR");
    // Resent: the same answer, stored once.
    let ack = exchange(&mut client, &transfer).await;
    assert_eq!(ack.code, "AR");
    let rejected = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM ingest.messages WHERE status = 'rejected' AND processing IS NULL",
    )
    .await;
    assert_eq!(rejected, 2);
    assert!(
        drain(&worker(&db, &server)).await.is_empty(),
        "nothing to process"
    );
}

/// The sending system's own MLLP listener, where application acknowledgements go: it
/// records each message it receives and answers `CA`.
async fn sender_endpoint() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use futures::{SinkExt, StreamExt};
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = socket.accept().await.unwrap();
            let mut framed = tokio_util::codec::Framed::new(stream, hl7::mllp::MllpCodec::new());
            while let Some(Ok(frame)) = framed.next().await {
                let text = String::from_utf8_lossy(&frame).into_owned();
                let message = hl7::Message::parse(&frame).unwrap();
                let ack = hl7::ack::AckBuilder::new(
                    &message,
                    hl7::ack::AckCode::CommitAccept,
                    "SENDER-ACK",
                    hl7::DateTime::from_ymd(2026, 11, 23).unwrap(),
                )
                .build();
                tx.send(text).unwrap();
                framed.send(ack).await.unwrap();
            }
        }
    });
    (addr, rx)
}

fn msa(text: &str) -> (String, String, bool) {
    let message = hl7::Message::parse(text.as_bytes()).unwrap();
    let msa = message.segment("MSA").unwrap();
    let field = |n| {
        msa.field(n)
            .map(|f| f.as_str().to_owned())
            .unwrap_or_default()
    };
    (field(1), field(2), message.segment("ERR").is_some())
}

#[tokio::test]
async fn enhanced_mode_sends_the_application_ack_after_processing_to_the_senders_listener() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let (reply_to, mut received) = sender_endpoint().await;
    let server = start(&db, |config| config.reply_to = Some(reply_to)).await;
    let mut client = connect(&server).await;
    // MSH-15 AL, MSH-16 AL: a commit ACK now, an application ACK once processed.
    let results = oru("E1", "MRN-800").replace("|P|2.5.1\r", "|P|2.5.1|||AL|AL\r");
    assert_eq!(exchange(&mut client, &results).await.code, "CA");
    // MSH-16 ER: only a failure is acknowledged; this discharge of an unknown patient fails.
    let discharge =
        adt("A03", "E2", "MRN-801", "Nobody").replace("|P|2.5.1\r", "|P|2.5.1|||AL|ER\r");
    assert_eq!(exchange(&mut client, &discharge).await.code, "CA");
    // MSH-16 ER on a message that succeeds: no application ACK.
    let admit = adt("A01", "E3", "MRN-802", "Fine").replace("|P|2.5.1\r", "|P|2.5.1|||AL|ER\r");
    assert_eq!(exchange(&mut client, &admit).await.code, "CA");
    assert!(
        received.try_recv().is_err(),
        "nothing is acknowledged before processing"
    );

    drain(&worker(&db, &server)).await;
    let mut acks = Vec::new();
    while let Ok(text) = received.try_recv() {
        acks.push(msa(&text));
    }
    acks.sort();
    assert_eq!(
        acks,
        vec![
            ("AA".to_owned(), "E1".to_owned(), false),
            ("AE".to_owned(), "E2".to_owned(), true),
        ]
    );
    let delivered = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM ingest.messages WHERE application_acked_at IS NOT NULL",
    )
    .await;
    assert_eq!(delivered, 2);
}

#[tokio::test]
async fn tenet_check_reports_unprocessed_and_failed_messages() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(
        &server,
        &[
            adt("A03", "H1", "MRN-900", "Nobody"),
            adt("A01", "H2", "MRN-901", "Somebody"),
        ],
    )
    .await;
    let overdue = std::time::Duration::ZERO;
    let findings = ingest::health::findings(&db.owner, overdue).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].check, "ingest-unprocessed");
    assert_eq!(findings[0].severity, platform::health::Severity::Problem);
    assert!(
        findings[0]
            .detail
            .starts_with("2 received message(s) not processed")
    );
    assert!(
        ingest::health::findings(&db.owner, std::time::Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty(),
        "messages younger than the threshold are on their way"
    );
    drain(&worker(&db, &server)).await;
    let findings = ingest::health::findings(&db.owner, overdue).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].check, "ingest-failed");
    assert_eq!(findings[0].severity, platform::health::Severity::Notice);
}

#[tokio::test]
async fn a_result_message_about_several_patients_records_each_ones_results_on_them_alone() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let second = "PID|2||MRN-1002^^^HOSP^MR||Roe^Richard||19700101|M\r\
                  OBR|1|||24323-8^Panel^LN|||20261123110000\r\
                  OBX|1|NM|2823-3^Potassium^LN||2.1|mmol/L|3.5-5.1|LL|||F\r";
    send(&server, &[oru("P1", "MRN-1001") + second]).await;
    drain(&worker(&db, &server)).await;
    let first = patient_by_mrn(&db, &server, "MRN-1001").await.unwrap();
    let other = patient_by_mrn(&db, &server, "MRN-1002").await.unwrap();
    let mut tx = tx(&db, server.tenant_id).await;
    let firsts = clinical::observation::of_patient(&mut tx, first, 100)
        .await
        .unwrap();
    let others = clinical::observation::of_patient(&mut tx, other, 100)
        .await
        .unwrap();
    assert_eq!(firsts.len(), 3);
    assert_eq!(others.len(), 1);
    assert!(
        others[0].critical,
        "the second patient's LL result is theirs"
    );
    assert!(!firsts.iter().any(|o| o.source == others[0].source));
}

#[tokio::test]
async fn every_processing_run_records_that_it_read_the_stored_message() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(
        &server,
        &[
            adt("A01", "R1", "MRN-1100", "Reader"),
            adt("A03", "R2", "MRN-1100", "Reader"),
        ],
    )
    .await;
    drain(&worker(&db, &server)).await;
    // The discharge writes no PHI, yet it read the message: that is audited too.
    let reads = scalar_i64(
        &db,
        server.tenant_id,
        "SELECT count(*) FROM audit.events WHERE action = 'ingest_message.read' AND actor = 'integration:test'",
    )
    .await;
    assert_eq!(reads, 2);
}

#[tokio::test]
async fn a_message_whose_last_attempt_died_with_its_worker_is_marked_failed_when_rescued() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    send(&server, &[oru("K1", "MRN-1200")]).await;
    let registry = || {
        Registry::new().register(ingest::process::Process {
            keyring: server.keyring.clone(),
        })
    };
    let dying = Worker::new(
        db.owner.clone(),
        db.app.clone(),
        registry(),
        WorkerConfig::new("dying").with_lease(std::time::Duration::from_secs(1)),
    );
    // Its only attempt is claimed, then the worker "dies" (never runs or renews it).
    sqlx::query("UPDATE platform.jobs SET attempts_max = 1 WHERE kind = 'ingest.process'")
        .execute(&db.admin)
        .await
        .unwrap();
    assert_eq!(dying.claim(1).await.unwrap().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let rescuer = worker(&db, &server);
    assert_eq!(rescuer.rescue_expired().await.unwrap(), 1);
    let (state, error) = processing(&db, server.tenant_id, "K1").await;
    assert_eq!(state, "failed", "the rescued dead job told the message");
    assert!(error.unwrap().starts_with("lease expired"));
}
