//! The persistence and automation half on a real PostgreSQL: plans, enrolments,
//! the materialiser racing itself, family rules at birthdays, cadences through the
//! database, batch enrolment with interruptions, backfills, and tenant isolation.

mod backfill;
mod batch;
mod cadence_db;
mod family;
mod isolation;
mod materializer;

use assessments::PlanDefinition;
use assessments::enrollment::{self, Enrolled, NewEnrollment};
use assessments::materialize::{self, Report};
use assessments::plan_store::{self, StoredPlan};
use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use identity::vault::{self, Access, Demographics};
use kernel::{PatientId, TenantId};
use time::OffsetDateTime;
use uuid::Uuid;

/// A migrated database and one tenant with its data key.
pub struct World {
    pub db: TestDb,
    pub keyring: Keyring,
    pub tenant_id: TenantId,
}

impl World {
    pub async fn new() -> Self {
        let db = TestDb::migrated(&schema::migrator()).await;
        let keyring = Keyring::new(MasterKey::generate());
        let tenant_id = identity::tenant::create(&db.app, &keyring, "Juniper Clinic")
            .await
            .unwrap();
        Self {
            db,
            keyring,
            tenant_id,
        }
    }

    /// Another tenant in the same database.
    pub async fn other_tenant(&self) -> TenantId {
        identity::tenant::create(&self.db.app, &self.keyring, "Birch Practice")
            .await
            .unwrap()
    }

    pub async fn tx(&self) -> TenantTx {
        self.tx_of(self.tenant_id).await
    }

    pub async fn tx_of(&self, tenant_id: TenantId) -> TenantTx {
        TenantTx::begin_as(&self.db.app, tenant_id, "user:test", None)
            .await
            .unwrap()
    }

    /// A patient (clinical record and vault identity) born on `birth_date`.
    pub async fn patient(&self, birth_date: Option<time::Date>) -> PatientId {
        self.patient_in(self.tenant_id, birth_date).await
    }

    pub async fn patient_in(
        &self,
        tenant_id: TenantId,
        birth_date: Option<time::Date>,
    ) -> PatientId {
        let patient_id = PatientId::generate();
        let mut tx = self.tx_of(tenant_id).await;
        clinical::patient::insert(&mut tx, patient_id)
            .await
            .unwrap();
        let demographics = Demographics {
            family_name: "Okafor".to_owned(),
            given_names: vec!["Ada".to_owned()],
            birth_date,
            ..Demographics::default()
        };
        vault::insert(
            &mut tx,
            &self.keyring,
            patient_id,
            &demographics,
            &Access::default(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        patient_id
    }

    /// A related person (a guardian to be) with a contact in the vault.
    pub async fn related_person(&self) -> Uuid {
        let person_id = kernel::PersonId::generate();
        let mut tx = self.tx().await;
        identity::related_person::create(
            &mut tx,
            &self.keyring,
            person_id,
            &identity::related_person::Contact {
                family_name: "Okafor".to_owned(),
                given_names: vec!["Ngozi".to_owned()],
                email: None,
                phone: None,
            },
            &Access::default(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        person_id.into_uuid()
    }

    /// Gives `patient_id`'s birth date `donor`'s ciphertext, as a tampered or
    /// misfiled record would: the vault's associated data (tenant, patient, field)
    /// makes it undecryptable.
    pub async fn break_birth_date(&self, patient_id: PatientId, donor: PatientId) {
        sqlx::query(
            "UPDATE identity.patient_phi SET birth_date =
                 (SELECT birth_date FROM identity.patient_phi WHERE patient_id = $2)
             WHERE patient_id = $1",
        )
        .bind(patient_id.as_uuid())
        .bind(donor.as_uuid())
        .execute(&self.db.admin)
        .await
        .unwrap();
    }

    pub async fn plan(&self, name: &str, definition: &PlanDefinition) -> StoredPlan {
        let mut tx = self.tx().await;
        let plan = plan_store::create(&mut tx, name, definition, None, OffsetDateTime::now_utc())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        plan
    }

    pub async fn enroll(
        &self,
        plan_id: Uuid,
        patient_id: PatientId,
        time_zone: &str,
        anchor_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Uuid {
        let mut tx = self.tx().await;
        let enrolled = enrollment::enroll(
            &mut tx,
            &NewEnrollment {
                plan_id,
                patient_id,
                clinician_id: Some(clinician()),
                time_zone: time_zone.to_owned(),
                anchor_at: Some(anchor_at),
            },
            now,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        match enrolled {
            Enrolled::New(id) => id,
            Enrolled::Already(_) => panic!("expected a new enrolment"),
        }
    }

    /// One materialiser run at `now`, committed.
    pub async fn materialize_at(&self, now: OffsetDateTime) -> Report {
        let mut tx = TenantTx::begin_as(&self.db.app, self.tenant_id, "system", None)
            .await
            .unwrap();
        let report = materialize::run_due(&mut tx, &self.keyring, now, 48)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        report
    }

    /// Runs the materialiser every `step` from `from` to `until` (inclusive).
    pub async fn materialize_every(
        &self,
        step: time::Duration,
        from: OffsetDateTime,
        until: OffsetDateTime,
    ) {
        let mut t = from;
        while t <= until {
            // Drain: a run with more work left is followed at once, like the job.
            while self.materialize_at(t).await.more {}
            t += step;
        }
    }

    /// The enrolment's instances: (slot key, instrument, respondent, person, status,
    /// due_at), by due time.
    pub async fn instances(&self, enrollment_id: Uuid) -> Vec<Row> {
        let mut tx = self.tx().await;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT slot_key, instrument_code, respondent::text AS respondent, respondent_person_id,
                    status::text AS status, due_at, backfilled, escalated_at
             FROM assessments.instances WHERE enrollment_id = $1 ORDER BY due_at, instrument_code, respondent",
        )
        .bind(enrollment_id)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    }

    /// `count(*)` of an assessments table, across this tenant.
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        let mut tx = self.tx().await;
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM assessments.{table} WHERE {filter}"
        ))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        n
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Row {
    pub slot_key: String,
    pub instrument_code: String,
    pub respondent: String,
    pub respondent_person_id: Option<Uuid>,
    pub status: String,
    pub due_at: OffsetDateTime,
    pub backfilled: bool,
    pub escalated_at: Option<OffsetDateTime>,
}

/// The clinician who owns the due lists in these tests.
pub fn clinician() -> kernel::UserId {
    kernel::UserId::new_unchecked(Uuid::from_u128(0x0c11_0000_0000_4000_8000_0000_0000_0001))
}

/// A plan from its JSON form.
pub fn plan_json(json: serde_json::Value) -> PlanDefinition {
    let def: PlanDefinition = serde_json::from_value(json).unwrap();
    def.validate().unwrap();
    def
}

/// Monthly PHQ-9 for adults, open 3 days before to 7 after, for `days` days.
pub fn monthly_phq9(days: u32) -> PlanDefinition {
    plan_json(serde_json::json!({
        "rules": [{ "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }],
        "cadence": { "every_months": 1 },
        "window": { "before_days": 3, "after_days": 7 },
        "stop": { "after_days": days }
    }))
}

pub fn date(year: i32, month: u8, day: u8) -> time::Date {
    time::Date::from_calendar_date(year, time::Month::try_from(month).unwrap(), day).unwrap()
}

/// An instant from RFC 3339.
pub fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

pub fn adult() -> Option<time::Date> {
    Some(date(1980, 5, 17))
}
