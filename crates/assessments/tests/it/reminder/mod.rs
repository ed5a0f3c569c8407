//! Reminders end to end: the sweep, the outbox, the relay, a real SMTP server
//! (Python's aiosmtpd) and a real webhook receiver — sent once per slot and channel,
//! outside quiet hours, never against an opt-out, never for a backfilled instance,
//! never beyond the template, never across tenants.

mod smtp_server;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use assessments::enrollment::{self, NewEnrollment};
use assessments::plan::examples::family_mood;
use assessments::plan_store;
use assessments::reminder::{
    self, Channel, Personalisation, Preferences, QuietHours, ReminderMailer, ReminderRow,
    ReminderSweep, Settings, SmtpConfig, Sweep, TokenLinks,
};
use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use identity::related_person::{self, Contact};
use identity::vault::{self, Access, Demographics};
use kernel::{PatientId, PersonId, TenantId};
use platform::relay::admin::{NewSubscription, create_subscription};
use platform::relay::{Handlers, Relay, RelayConfig};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use smtp_server::SmtpServer;
use webhook::Receiver;

/// PHI canaries: they must never reach an email unless the tenant allows the first name.
const GIVEN: &str = "Zqxgiven";
const FAMILY: &str = "Zqxfamily";

struct World {
    db: TestDb,
    keyring: Keyring,
    smtp: SmtpServer,
    hooks: Arc<Receiver>,
    hook_url: String,
    relay: Relay,
}

async fn world() -> World {
    let db = TestDb::migrated(&schema::migrator()).await;
    let keyring = Keyring::new(MasterKey::generate());
    let smtp = SmtpServer::start().await;
    let (hooks, hook_url) = Receiver::start().await;
    let mut smtp_config =
        SmtpConfig::from_url(&smtp.url(), "Clinic reminders <reminders@clinic.example>").unwrap();
    smtp_config.timeout = Duration::from_secs(5);
    let mailer = ReminderMailer {
        app: db.app.clone(),
        keyring: keyring.clone(),
        smtp: Arc::new(smtp_config),
        links: TokenLinks {
            base_url: "https://answer.example/a/".to_owned(),
        },
    };
    let mut config = RelayConfig::new("test-relay");
    config.backoff_base = Duration::from_millis(1);
    config.backoff_max = Duration::from_millis(5);
    let relay = Relay::new(
        db.owner.clone(),
        db.app.clone(),
        Handlers::new().register(mailer),
        config,
    )
    .await
    .unwrap();
    World {
        db,
        keyring,
        smtp,
        hooks,
        hook_url,
        relay,
    }
}

fn access() -> Access {
    Access {
        purpose: Some("treatment".to_owned()),
        break_glass: false,
    }
}

fn no_quiet_hours() -> Settings {
    Settings {
        quiet_hours: QuietHours {
            start: jiff::civil::time(0, 0, 0, 0),
            end: jiff::civil::time(0, 0, 0, 0),
        },
        ..Settings::default()
    }
}

impl World {
    async fn tx(&self, tenant_id: TenantId) -> TenantTx {
        TenantTx::begin_as(&self.db.app, tenant_id, "user:test", None)
            .await
            .unwrap()
    }

    async fn tenant(&self, name: &str, settings: &Settings) -> TenantId {
        let tenant_id = identity::tenant::create(&self.db.app, &self.keyring, name)
            .await
            .unwrap();
        let mut tx = self.tx(tenant_id).await;
        reminder::configure(&mut tx, settings, OffsetDateTime::now_utc())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        tenant_id
    }

    async fn subscribe(&self, tenant_id: TenantId) {
        let mut tx = self.tx(tenant_id).await;
        let created = create_subscription(
            &mut tx,
            NewSubscription {
                url: self.hook_url.clone(),
                event_types: vec![reminder::REMINDER_DUE.to_owned()],
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        self.hooks.set_secret(&created.secret);
    }

    async fn patient(&self, tenant_id: TenantId, email: &str) -> PatientId {
        let patient_id = PatientId::generate();
        let mut tx = self.tx(tenant_id).await;
        clinical::patient::insert(&mut tx, patient_id)
            .await
            .unwrap();
        let demographics = Demographics {
            family_name: FAMILY.to_owned(),
            given_names: vec![GIVEN.to_owned()],
            email: Some(email.to_owned()),
            ..Demographics::default()
        };
        vault::insert(&mut tx, &self.keyring, patient_id, &demographics, &access())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        patient_id
    }

    /// An open instance of PHQ-9 (or PSC-17 for a guardian) for `patient_id`.
    async fn instance(&self, tenant_id: TenantId, patient_id: PatientId, spec: Spec) -> Uuid {
        let instance_id = Uuid::now_v7();
        let mut tx = self.tx(tenant_id).await;
        // The plan and enrolment through the context's own store (PSC-17 from each
        // guardian of a child, PHQ-9 from an adult); the instance as the materialiser
        // would make it, at the time the test needs.
        let plan = plan_store::create(
            &mut tx,
            &format!("plan {instance_id}"),
            &family_mood(),
            None,
            spec.opens_at,
        )
        .await
        .unwrap();
        let new = NewEnrollment {
            plan_id: plan.id,
            patient_id,
            clinician_id: None,
            time_zone: spec.time_zone.to_owned(),
            anchor_at: Some(spec.opens_at),
        };
        let enrollment_id = enrollment::enroll(&mut tx, &new, spec.opens_at)
            .await
            .unwrap()
            .enrollment_id();
        let (respondent, code) = match spec.guardian {
            Some(_) => ("guardian", "psc-17"),
            None => ("patient", "phq-9"),
        };
        sqlx::query(
            "INSERT INTO assessments.instances
                 (tenant_id, id, enrollment_id, patient_id, instrument_code, instrument_version, respondent,
                  respondent_person_id, slot_key, due_at, opens_at, closes_at, status, backfilled)
             VALUES ($1, $2, $3, $4, $5, 1, $6::assessments.respondent, $7, 'k:1', $8, $8, $9, 'open', $10)",
        )
        .bind(tenant_id.as_uuid())
        .bind(instance_id)
        .bind(enrollment_id)
        .bind(patient_id.as_uuid())
        .bind(code)
        .bind(respondent)
        .bind(spec.guardian.map(|person_id| person_id.into_uuid()))
        .bind(spec.opens_at)
        .bind(spec.closes_at)
        .bind(spec.backfilled)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        instance_id
    }

    async fn sweep(&self, tenant_id: TenantId, now: OffsetDateTime) -> reminder::SweepReport {
        let mut tx = self.tx(tenant_id).await;
        let report = Sweep {
            available: Channel::ALL.to_vec(),
        }
        .run(&mut tx, now)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        report
    }

    async fn relay_until_idle(&self) {
        for _ in 0..100 {
            let step = self.relay.run_once().await.unwrap();
            if step.is_idle() {
                // Retries back off a few milliseconds: look once more after them.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if self.relay.run_once().await.unwrap().is_idle() {
                    return;
                }
            }
        }
        panic!("the relay never went idle");
    }

    async fn reminders(&self, tenant_id: TenantId, instance_id: Uuid) -> Vec<ReminderRow> {
        let mut tx = self.tx(tenant_id).await;
        let rows = reminder::of_instance(&mut tx, instance_id).await.unwrap();
        tx.rollback().await.unwrap();
        rows
    }

    async fn n_outbox_events(&self, tenant_id: TenantId) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM assessments.outbox WHERE tenant_id = $1 AND event_type = $2",
        )
        .bind(tenant_id.as_uuid())
        .bind(reminder::REMINDER_DUE)
        .fetch_one(&self.db.admin)
        .await
        .unwrap()
    }
}

struct Spec {
    opens_at: OffsetDateTime,
    closes_at: OffsetDateTime,
    time_zone: &'static str,
    guardian: Option<PersonId>,
    backfilled: bool,
}

impl Spec {
    /// Opened a minute ago, closing in a week.
    fn open_now() -> Spec {
        let now = OffsetDateTime::now_utc();
        Spec {
            opens_at: now - Duration::from_secs(60),
            closes_at: now + Duration::from_secs(7 * 24 * 3600),
            time_zone: "America/New_York",
            guardian: None,
            backfilled: false,
        }
    }
}

fn states(rows: &[ReminderRow]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|row| (row.kind.clone(), row.channel.clone(), row.state.clone()))
        .collect()
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test]
async fn an_opening_instance_is_reminded_once_per_channel_however_many_sweeps_run() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    world.subscribe(tenant_id).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let instance_id = world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;

    // Two sweepers at once, on their own connections, then a third later.
    let now = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(world.sweep(tenant_id, now), world.sweep(tenant_id, now));
    assert_eq!(
        a.n_created + b.n_created,
        2,
        "one row per channel: {a:?} {b:?}"
    );
    assert_eq!(a.n_released + b.n_released, 2);
    world.relay_until_idle().await;
    let again = world.sweep(tenant_id, now + Duration::from_secs(60)).await;
    assert_eq!(again, reminder::SweepReport::default());
    world.relay_until_idle().await;

    let mails = world.smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.envelope_to, "patient@example.org");
    assert!(
        mail.text
            .contains("Subject: You have a questionnaire to complete")
    );
    assert!(
        mail.text.contains(&format!(
            "https://answer.example/a/#at_{}.",
            tenant_id.as_uuid().simple()
        )),
        "the one-time link is in the body, its token in the URL's fragment"
    );
    assert!(mail.text.contains(&format!(
        "Message-ID: <{}@tenet>",
        world.reminders(tenant_id, instance_id).await[0].id
    )));
    // Nothing beyond the template: no name, no instrument, no clinic.
    for absent in [GIVEN, FAMILY, "PHQ", "phq", "psc"] {
        assert!(!mail.text.contains(absent), "{absent} in {}", mail.text);
    }
    assert!(mail.text.contains("Hello,"));

    let webhook = world.hooks.reminders("webhook");
    assert_eq!(webhook.len(), 1, "{webhook:?}");
    assert_eq!(webhook[0]["instance_id"], instance_id.to_string());
    assert_eq!(webhook[0]["kind"], "opening");
    // Webhook bodies carry ids and codes only.
    for body in world.hooks.bodies.lock().unwrap().iter() {
        assert!(
            !body.contains(GIVEN) && !body.contains("patient@example.org") && !body.contains("at_")
        );
    }
    assert_eq!(
        states(&world.reminders(tenant_id, instance_id).await),
        owned(&[("opening", "email", "sent"), ("opening", "webhook", "sent")])
    );
    // The address was read through the vault, and that read is in the audit log.
    let n_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE tenant_id = $1 AND action = 'patient.read' AND purpose = 'reminder'",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(n_reads, 1);
    // The link's token is stored as a hash only.
    let n_links: i64 =
        sqlx::query_scalar("SELECT count(*) FROM assessments.link_tokens WHERE instance_id = $1")
            .bind(instance_id)
            .fetch_one(&world.db.admin)
            .await
            .unwrap();
    assert_eq!(n_links, 1);
}

#[tokio::test]
async fn the_closing_reminder_goes_out_a_lead_time_before_the_window_closes() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let now = OffsetDateTime::now_utc();
    let instance_id = world
        .instance(
            tenant_id,
            patient_id,
            Spec {
                opens_at: now - Duration::from_secs(3600),
                closes_at: now + Duration::from_secs(30 * 3600),
                ..Spec::open_now()
            },
        )
        .await;
    world.sweep(tenant_id, now).await;
    world.relay_until_idle().await;
    // Five hours later the closing trigger (24 h before 30 h from now) is still 1 h off.
    assert_eq!(
        world
            .sweep(tenant_id, now + Duration::from_secs(5 * 3600))
            .await
            .n_created,
        0
    );
    let report = world
        .sweep(tenant_id, now + Duration::from_secs(6 * 3600 + 60))
        .await;
    assert_eq!(report.n_created, 2, "the closing reminder on both channels");
    world.relay_until_idle().await;

    let subjects: Vec<bool> = world
        .smtp
        .mails()
        .iter()
        .map(|mail| {
            mail.text
                .contains("Subject: Reminder: your questionnaire closes soon")
        })
        .collect();
    assert_eq!(
        subjects,
        [false, true],
        "the opening email, then the closing one"
    );
    // No webhook subscription: the webhook reminders are skipped, with the reason.
    let rows = world.reminders(tenant_id, instance_id).await;
    assert_eq!(
        states(&rows),
        owned(&[
            ("opening", "email", "sent"),
            ("opening", "webhook", "skipped"),
            ("closing", "email", "sent"),
            ("closing", "webhook", "skipped"),
        ])
    );
    assert_eq!(
        rows[1].skip_reason.as_deref(),
        Some("no_webhook_subscription")
    );
}

#[tokio::test]
async fn a_reminder_due_in_quiet_hours_waits_until_they_end_on_the_patients_clock() {
    let world = world().await;
    let tenant_id = world.tenant("A", &Settings::default()).await;
    world.subscribe(tenant_id).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    // 22:30 EST on Saturday 7 March 2026 in New York; the clocks go forward that night.
    let opens_at = datetime!(2026-03-08 03:30 UTC);
    let instance_id = world
        .instance(
            tenant_id,
            patient_id,
            Spec {
                opens_at,
                closes_at: datetime!(2026-03-20 03:30 UTC),
                ..Spec::open_now()
            },
        )
        .await;
    let report = world.sweep(tenant_id, opens_at).await;
    assert_eq!((report.n_created, report.n_released), (2, 0));
    let rows = world.reminders(tenant_id, instance_id).await;
    // 08:00 EDT: 12:00 UTC, seven and a half hours later (not nine and a half).
    assert!(
        rows.iter()
            .all(|row| row.state == "pending" && row.due_at == datetime!(2026-03-08 12:00 UTC)),
        "{rows:?}"
    );
    assert_eq!(
        world
            .sweep(tenant_id, datetime!(2026-03-08 11:59 UTC))
            .await
            .n_released,
        0
    );
    assert_eq!(
        world.n_outbox_events(tenant_id).await,
        0,
        "nothing leaves during quiet hours"
    );
    assert_eq!(
        world
            .sweep(tenant_id, datetime!(2026-03-08 12:00 UTC))
            .await
            .n_released,
        2
    );
    assert_eq!(world.n_outbox_events(tenant_id).await, 2);

    // A patient's own quiet hours override the tenant's.
    let other = world.patient(tenant_id, "other@example.org").await;
    let mut tx = world.tx(tenant_id).await;
    reminder::set_preferences(
        &mut tx,
        other,
        &Preferences {
            opted_out: vec![],
            quiet_hours: Some(QuietHours {
                start: jiff::civil::time(22, 0, 0, 0),
                end: jiff::civil::time(23, 0, 0, 0),
            }),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let instance_id = world
        .instance(
            tenant_id,
            other,
            Spec {
                opens_at,
                closes_at: datetime!(2026-03-20 03:30 UTC),
                ..Spec::open_now()
            },
        )
        .await;
    world.sweep(tenant_id, opens_at).await;
    let rows = world.reminders(tenant_id, instance_id).await;
    // 23:00 EST is 04:00 UTC.
    assert!(
        rows.iter()
            .all(|row| row.due_at == datetime!(2026-03-08 04:00 UTC)),
        "{rows:?}"
    );
}

#[tokio::test]
async fn an_opted_out_channel_gets_nothing_while_the_other_still_goes() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    world.subscribe(tenant_id).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let mut tx = world.tx(tenant_id).await;
    reminder::set_preferences(
        &mut tx,
        patient_id,
        &Preferences {
            opted_out: vec![Channel::Email],
            quiet_hours: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let instance_id = world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    world.relay_until_idle().await;

    assert!(world.smtp.mails().is_empty());
    assert_eq!(world.hooks.reminders("webhook").len(), 1);
    assert!(
        world.hooks.reminders("email").is_empty(),
        "no event for the opted-out channel"
    );
    let rows = world.reminders(tenant_id, instance_id).await;
    assert_eq!(
        states(&rows),
        owned(&[
            ("opening", "email", "skipped"),
            ("opening", "webhook", "sent")
        ])
    );
    assert_eq!(rows[0].skip_reason.as_deref(), Some("opted_out"));
}

#[tokio::test]
async fn backfilled_instances_are_never_reminded() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    world.subscribe(tenant_id).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let instance_id = world
        .instance(
            tenant_id,
            patient_id,
            Spec {
                backfilled: true,
                ..Spec::open_now()
            },
        )
        .await;
    let now = OffsetDateTime::now_utc();
    world.sweep(tenant_id, now).await;
    world
        .sweep(tenant_id, now + Duration::from_secs(7 * 24 * 3600 - 3600))
        .await;
    world.relay_until_idle().await;
    assert!(world.reminders(tenant_id, instance_id).await.is_empty());
    assert!(world.smtp.mails().is_empty());
    assert!(world.hooks.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_guardian_is_reminded_at_their_own_address_with_their_first_name_only_when_allowed() {
    let world = world().await;
    let tenant_id = world
        .tenant(
            "A",
            &Settings {
                personalisation: Personalisation::FirstName,
                ..no_quiet_hours()
            },
        )
        .await;
    let patient_id = world.patient(tenant_id, "child@example.org").await;
    let person_id = PersonId::generate();
    let mut tx = world.tx(tenant_id).await;
    related_person::create(
        &mut tx,
        &world.keyring,
        person_id,
        &Contact {
            family_name: "Zqxguardianfamily".to_owned(),
            given_names: vec!["Zqxguardiangiven".to_owned()],
            email: Some("guardian@example.org".to_owned()),
            phone: None,
        },
        &access(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    world
        .instance(
            tenant_id,
            patient_id,
            Spec {
                guardian: Some(person_id),
                ..Spec::open_now()
            },
        )
        .await;
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    world.relay_until_idle().await;

    let mails = world.smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].envelope_to, "guardian@example.org");
    assert!(
        mails[0].text.contains("Hello Zqxguardiangiven,"),
        "{}",
        mails[0].text
    );
    for absent in [
        "Zqxguardianfamily",
        GIVEN,
        FAMILY,
        "child@example.org",
        "psc",
    ] {
        assert!(
            !mails[0].text.contains(absent),
            "{absent} in {}",
            mails[0].text
        );
    }
    let n_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE tenant_id = $1 AND action = 'related_person.read' AND purpose = 'reminder'",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(n_reads, 1);
}

#[tokio::test]
async fn a_transient_refusal_is_retried_and_sends_one_email() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let instance_id = world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;
    world.smtp.refuse_next("451 4.3.0 Try again later");
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    world.relay_until_idle().await;

    assert_eq!(world.smtp.mails().len(), 1);
    let email = world.reminders(tenant_id, instance_id).await.remove(0);
    assert_eq!((email.state.as_str(), email.attempts), ("sent", 2));
}

#[tokio::test]
async fn a_permanent_refusal_fails_the_reminder_without_naming_the_address() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let instance_id = world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;
    world
        .smtp
        .refuse_next("554 5.7.1 <patient@example.org> refused");
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    world.relay_until_idle().await;

    assert!(world.smtp.mails().is_empty());
    let email = world.reminders(tenant_id, instance_id).await.remove(0);
    assert_eq!((email.state.as_str(), email.attempts), ("failed", 1));
    let error = email.last_error.unwrap();
    assert!(
        error.contains("554") && !error.contains("example.org"),
        "{error}"
    );
    let findings = reminder::findings(&world.db.owner).await.unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].check, "reminder-failed");
}

#[tokio::test]
async fn a_connection_lost_before_the_verdict_leaves_the_outcome_unknown_and_is_never_retried() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let instance_id = world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;
    world.smtp.refuse_next("DROP");
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    world.relay_until_idle().await;
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    world.relay_until_idle().await;

    let email = world.reminders(tenant_id, instance_id).await.remove(0);
    assert_eq!((email.state.as_str(), email.attempts), ("unknown", 1));
    assert!(world.smtp.mails().is_empty(), "never sent a second time");
    let findings = reminder::findings(&world.db.owner).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].check, "reminder-outcome-unknown");
}

#[tokio::test]
async fn a_reminder_left_sending_by_a_crash_is_never_sent_again_and_is_reported() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let instance_id = world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    // A mailer claimed it, talked to the server, and died before recording the outcome.
    sqlx::query(
        "UPDATE assessments.reminders SET state = 'sending', attempts = 1, sending_at = now() - interval '11 minutes'
         WHERE instance_id = $1 AND channel = 'email'",
    )
    .bind(instance_id)
    .execute(&world.db.admin)
    .await
    .unwrap();
    // The relay delivers the event (again): the mailer finds it claimed and sends nothing.
    world.relay_until_idle().await;
    assert!(world.smtp.mails().is_empty());
    let email = world.reminders(tenant_id, instance_id).await.remove(0);
    assert_eq!(email.state, "sending");
    let findings = reminder::findings(&world.db.owner).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].check, "reminder-outcome-unknown");
    assert!(findings[0].object.contains(&tenant_id.to_string()));
}

#[tokio::test]
async fn a_sweep_never_reaches_another_tenants_instances() {
    let world = world().await;
    let tenant_a = world.tenant("A", &no_quiet_hours()).await;
    let tenant_b = world.tenant("B", &no_quiet_hours()).await;
    let patient_a = world.patient(tenant_a, "a@example.org").await;
    let instance_a = world.instance(tenant_a, patient_a, Spec::open_now()).await;
    let report = world.sweep(tenant_b, OffsetDateTime::now_utc()).await;
    assert_eq!(report, reminder::SweepReport::default());
    world.relay_until_idle().await;
    assert!(world.smtp.mails().is_empty());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM assessments.reminders")
        .fetch_one(&world.db.admin)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // Nor can tenant B see or change tenant A's reminders once they exist.
    world.sweep(tenant_a, OffsetDateTime::now_utc()).await;
    assert!(world.reminders(tenant_b, instance_a).await.is_empty());
    let mut tx = world.tx(tenant_b).await;
    let n_changed = sqlx::query("UPDATE assessments.reminders SET state = 'pending'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n_changed, 0);
    tx.rollback().await.unwrap();
    world.relay_until_idle().await;
    assert_eq!(world.smtp.mails().len(), 1);
    assert_eq!(world.smtp.mails()[0].envelope_to, "a@example.org");
}

#[tokio::test]
async fn the_sweep_runs_on_each_tenants_durable_schedule() {
    use platform::jobs::Registry;
    use platform::jobs::worker::{Worker, WorkerConfig};
    use platform::schedules::scheduler::{Scheduler, SchedulerConfig};

    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    let instance_id = world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;
    // `configure` made the reminder schedule (and the tenant's first plan its
    // materialiser schedule); a scheduler fires both next minute, a worker runs the sweep.
    let scheduler = Scheduler::new(
        world.db.owner.clone(),
        world.db.app.clone(),
        SchedulerConfig::new("s"),
    );
    let report = scheduler
        .tick(OffsetDateTime::now_utc() + Duration::from_secs(61))
        .await
        .unwrap();
    assert_eq!((report.n_schedules, report.n_fired), (2, 2), "{report:?}");
    let worker = Worker::new(
        world.db.owner.clone(),
        world.db.app.clone(),
        Registry::new().register(ReminderSweep {
            sweep: Sweep {
                available: Channel::ALL.to_vec(),
            },
        }),
        WorkerConfig::new("w"),
    );
    assert!(worker.try_run_one().await.unwrap().is_some());
    world.relay_until_idle().await;
    assert_eq!(world.smtp.mails().len(), 1);
    assert_eq!(
        world.reminders(tenant_id, instance_id).await[0].state,
        "sent"
    );
}

#[tokio::test]
async fn a_reminder_queued_for_an_hour_with_nobody_delivering_it_is_reported_stalled() {
    let world = world().await;
    let tenant_id = world.tenant("A", &no_quiet_hours()).await;
    let patient_id = world.patient(tenant_id, "patient@example.org").await;
    world
        .instance(tenant_id, patient_id, Spec::open_now())
        .await;
    world.sweep(tenant_id, OffsetDateTime::now_utc()).await;
    // Queued just now: the relay may still take it.
    assert!(
        reminder::findings(&world.db.owner)
            .await
            .unwrap()
            .is_empty()
    );
    // No relay ran for an hour and a half.
    sqlx::query(
        "UPDATE assessments.reminders SET queued_at = now() - interval '90 minutes' WHERE state = 'queued'",
    )
    .execute(&world.db.admin)
    .await
    .unwrap();
    let findings = reminder::findings(&world.db.owner).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].check, "reminder-stalled");
    assert!(findings[0].object.contains(&tenant_id.to_string()));
    // Delivered at last: nothing to report.
    world.relay_until_idle().await;
    assert!(
        reminder::findings(&world.db.owner)
            .await
            .unwrap()
            .is_empty()
    );
}
