//! A database with two tenants, patients in the identity vault, and the plan,
//! enrolment and instance rows the scheduler would have made (written directly: this
//! crate's tests are about answering them, not making them).

use assessments::enrollment::{self, NewEnrollment};
use assessments::link::{self, NewLink};
use assessments::response::{self, Answerer, Submission, SubmitError, Submitted, Submitter};
use assessments::{InstrumentCode, PlanDefinition, plan_store};
use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use identity::vault::{Access, Demographics};
use kernel::{Actor, ActorKind, PatientId, Role, TenantId, UserId};
use serde_json::json;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

/// A family name no log, event or error may ever contain.
pub const CANARY: &str = "Zqxcanaryfam";

pub struct World {
    pub db: TestDb,
    pub keyring: Keyring,
    pub a: TenantId,
    pub b: TenantId,
    /// A clinician of tenant A.
    pub clinician: Actor,
}

impl World {
    pub async fn new() -> Self {
        let db = TestDb::migrated(&schema::migrator()).await;
        let keyring = Keyring::new(MasterKey::generate());
        let a = identity::tenant::create(&db.app, &keyring, "A")
            .await
            .unwrap();
        let b = identity::tenant::create(&db.app, &keyring, "B")
            .await
            .unwrap();
        let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
            .await
            .unwrap();
        let user_id: UserId = identity::user::create(&mut tx, "a-clinician", Role::Clinician, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let clinician = Actor {
            tenant_id: a,
            kind: ActorKind::User(user_id),
            role: Role::Clinician,
            user_id: Some(user_id),
        };
        Self {
            db,
            keyring,
            a,
            b,
            clinician,
        }
    }

    pub async fn tx(&self, tenant_id: TenantId) -> TenantTx {
        TenantTx::begin_as(&self.db.app, tenant_id, "system", None)
            .await
            .unwrap()
    }

    /// A patient of `tenant_id` born on `birth_date`, named with the canary.
    pub async fn patient(&self, tenant_id: TenantId, birth_date: Option<Date>) -> PatientId {
        let mut tx = self.tx(tenant_id).await;
        let patient_id = PatientId::generate();
        clinical::patient::insert(&mut tx, patient_id)
            .await
            .unwrap();
        let demographics = Demographics {
            family_name: CANARY.to_owned(),
            given_names: vec!["Alex".to_owned()],
            birth_date,
            ..Demographics::default()
        };
        let access = Access {
            purpose: Some("operations".to_owned()),
            break_glass: false,
        };
        identity::vault::insert(&mut tx, &self.keyring, patient_id, &demographics, &access)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        patient_id
    }

    /// An adult patient of tenant A.
    pub async fn adult(&self) -> PatientId {
        self.patient(self.a, Some(years_ago(40, 0))).await
    }

    /// Enrols the patient in a fresh plan (default guardian access until 18), through
    /// the context's own plan store and enrolment.
    pub async fn enrol(&self, tenant_id: TenantId, patient_id: PatientId) -> Uuid {
        let definition: PlanDefinition = serde_json::from_value(json!({
            "rules": [{ "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }],
            "cadence": { "every_days": 28 },
            "window": { "before_days": 3, "after_days": 7 },
        }))
        .unwrap();
        let now = OffsetDateTime::now_utc();
        let mut tx = self.tx(tenant_id).await;
        let plan = plan_store::create(
            &mut tx,
            &format!("plan {}", Uuid::now_v7()),
            &definition,
            None,
            now,
        )
        .await
        .unwrap();
        let new = NewEnrollment {
            plan_id: plan.id,
            patient_id,
            clinician_id: None,
            time_zone: "Europe/Paris".to_owned(),
            anchor_at: None,
        };
        let enrolled = enrollment::enroll(&mut tx, &new, now).await.unwrap();
        tx.commit().await.unwrap();
        enrolled.enrollment_id()
    }

    /// An adult patient of tenant A, enrolled, with an open PHQ-9 instance of their own.
    pub async fn adult_phq9_instance(&self) -> (PatientId, Uuid) {
        let patient_id = self.adult().await;
        let enrollment_id = self.enrol(self.a, patient_id).await;
        let instance_id = self
            .instance(
                self.a,
                enrollment_id,
                patient_id,
                "phq-9",
                Answerer::Patient,
            )
            .await;
        (patient_id, instance_id)
    }

    /// An open instance (window from an hour ago to a week ahead).
    pub async fn instance(
        &self,
        tenant_id: TenantId,
        enrollment_id: Uuid,
        patient_id: PatientId,
        instrument: &str,
        answerer: Answerer,
    ) -> Uuid {
        let mut tx = self.tx(tenant_id).await;
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO assessments.instances
                 (tenant_id, id, enrollment_id, patient_id, instrument_code, instrument_version, respondent,
                  respondent_person_id, slot_key, due_at, opens_at, closes_at, status)
             VALUES ($1, $2, $3, $4, $5, 1, $6::assessments.respondent, $7, $8,
                     now(), now() - interval '1 hour', now() + interval '7 days', 'open')",
        )
        .bind(tenant_id.as_uuid())
        .bind(id)
        .bind(enrollment_id)
        .bind(patient_id.as_uuid())
        .bind(instrument)
        .bind(answerer.as_sql())
        .bind(answerer.person_id())
        .bind(format!("k:{id}"))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// Makes `person_id` a guardian of the patient since `since`.
    pub async fn guardian(
        &self,
        tenant_id: TenantId,
        patient_id: PatientId,
        person_id: Uuid,
        since: Date,
    ) {
        let mut tx = self.tx(tenant_id).await;
        sqlx::query("INSERT INTO assessments.guardians (tenant_id, patient_id, person_id, since) VALUES ($1, $2, $3, $4)")
            .bind(tenant_id.as_uuid())
            .bind(patient_id.as_uuid())
            .bind(person_id)
            .bind(since)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Submits in its own transaction, committed when it succeeds.
    pub async fn submit(
        &self,
        submitter: &Submitter,
        submission: Submission,
    ) -> Result<Submitted, SubmitError> {
        let tenant_id = match submitter {
            Submitter::Staff(actor) => actor.tenant_id,
            Submitter::Link(_) => self.a,
        };
        let mut tx = self.tx(tenant_id).await;
        let submitted = response::submit(&mut tx, &self.keyring, submitter, submission).await?;
        tx.commit().await.unwrap();
        Ok(submitted)
    }

    /// A clinician of tenant A submits a PHQ-9 for the patient (no instance).
    pub async fn phq9(&self, patient_id: PatientId, values: [u8; 9]) -> Submitted {
        self.submit(
            &Submitter::Staff(self.clinician.clone()),
            phq9(patient_id, None, values),
        )
        .await
        .unwrap()
    }

    pub async fn issue_link(&self, tenant_id: TenantId, instance_id: Uuid) -> NewLink {
        let mut tx = self.tx(tenant_id).await;
        let link = link::issue(&mut tx, instance_id).await.unwrap();
        tx.commit().await.unwrap();
        link
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.db.admin)
            .await
            .unwrap()
    }
}

/// A PHQ-9 answered by the patient with item i+1 at `values[i]`.
pub fn phq9(patient_id: PatientId, instance_id: Option<Uuid>, values: [u8; 9]) -> Submission {
    Submission {
        patient_id,
        instance_id,
        instrument: InstrumentCode::new_unchecked("phq-9"),
        version: None,
        answerer: Some(Answerer::Patient),
        answers: values
            .iter()
            .enumerate()
            .map(|(i, value)| ((i + 1).to_string(), *value))
            .collect(),
    }
}

/// PHQ-9 answers adding up to `total` with item 9 at 0.
pub fn phq9_total(total: u8) -> [u8; 9] {
    let mut values = [0; 9];
    let mut left = total;
    for value in values.iter_mut().take(8) {
        *value = left.min(3);
        left -= *value;
    }
    assert_eq!(left, 0, "at most 24 without item 9");
    values
}

/// The date `years` years and `days` days before today (UTC).
pub fn years_ago(years: i32, days: i64) -> Date {
    let today = OffsetDateTime::now_utc().date();
    let date = today
        .replace_day(1)
        .unwrap()
        .replace_year(today.year() - years)
        .unwrap()
        .replace_day(today.day().min(28))
        .unwrap();
    date - Duration::days(days)
}

/// Routine access for treatment, as the audit records it.
pub fn treatment() -> Access {
    Access {
        purpose: Some("treatment".to_owned()),
        break_glass: false,
    }
}
