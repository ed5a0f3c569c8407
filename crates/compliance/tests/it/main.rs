//! The integration tests of the `compliance` crate, on a real PostgreSQL: consents
//! granted, revoked (once) and expiring; the consent gate on releases; the accounting
//! of disclosures; tenant isolation; the state machine held by the database; and
//! recipients sealed at rest, absent from events, audit details and `Debug`.

mod consents;
mod releases;

use compliance::consent::{self, NewConsent};
use compliance::{Consent, Recipient, Scope};
use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use kernel::{PatientId, TenantId};
use time::OffsetDateTime;

/// A PHI canary recipient: it must appear in no table as plaintext, no event, no audit
/// detail, no `Debug`.
pub const CANARY: &str = "Zqxcanary Oakwood Family Law";

pub struct World {
    pub db: TestDb,
    pub keyring: Keyring,
    /// Where documents (released ones, consent evidence) are stored.
    pub storage: documents::Storage,
    _store_dir: tempfile::TempDir,
}

pub async fn world() -> World {
    let store_dir = tempfile::tempdir().unwrap();
    World {
        db: TestDb::migrated(&schema::migrator()).await,
        keyring: Keyring::new(MasterKey::generate()),
        storage: documents::Storage::local(store_dir.path()).unwrap(),
        _store_dir: store_dir,
    }
}

pub fn recipient(name: &str) -> Recipient {
    Recipient::parse(name).expect("a valid recipient")
}

impl World {
    pub async fn tenant(&self, name: &str) -> TenantId {
        identity::tenant::create(&self.db.app, &self.keyring, name)
            .await
            .unwrap()
    }

    pub async fn tx(&self, tenant_id: TenantId) -> TenantTx {
        TenantTx::begin_as(&self.db.app, tenant_id, "user:test", None)
            .await
            .unwrap()
    }

    /// A committed patient of `tenant_id`.
    pub async fn patient(&self, tenant_id: TenantId) -> PatientId {
        let mut tx = self.tx(tenant_id).await;
        let patient = clinical::patient::insert(&mut tx, PatientId::generate())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        patient.id
    }

    /// A committed, stored document of `patient_id`.
    pub async fn document(&self, tenant_id: TenantId, patient_id: PatientId) -> uuid::Uuid {
        let mut tx = self.tx(tenant_id).await;
        let document = documents::put_bytes(
            &mut tx,
            &self.keyring,
            &self.storage,
            documents::NewDocument {
                patient_id,
                category: documents::Category::Correspondence,
                filename: kernel::Phi::new("letter.txt".to_owned()),
                content_type: "text/plain".to_owned(),
            },
            bytes::Bytes::from_static(b"Discharge summary, as released."),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        document.id.into_uuid()
    }

    /// A clinic with a committed patient who consented to releasing information to
    /// [`CANARY`], with no end date: the clinic, the patient and the consent.
    pub async fn consented_clinic(&self) -> (TenantId, PatientId, Consent) {
        let tenant_id = self.tenant("Clinic").await;
        let patient_id = self.patient(tenant_id).await;
        let consent = self
            .grant(
                tenant_id,
                patient_id,
                Scope::ReleaseOfInformation,
                Some(CANARY),
                None,
            )
            .await;
        (tenant_id, patient_id, consent)
    }

    /// A committed consent.
    pub async fn grant(
        &self,
        tenant_id: TenantId,
        patient_id: PatientId,
        scope: Scope,
        recipient: Option<&str>,
        valid_until: Option<OffsetDateTime>,
    ) -> Consent {
        let mut tx = self.tx(tenant_id).await;
        let consent = consent::grant(
            &mut tx,
            &self.keyring,
            NewConsent {
                patient_id,
                scope,
                recipient: recipient.map(crate::recipient),
                granted_at: None,
                valid_until,
                evidence_document_id: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        consent
    }
}

/// Runs `sql` (`$1` tenant, `$2` row id) in a tenant transaction on `pool`; the
/// SQLSTATE it failed with, or the rows it touched.
pub async fn try_sql(
    pool: &sqlx::PgPool,
    tenant_id: TenantId,
    row_id: uuid::Uuid,
    sql: &str,
) -> Result<u64, String> {
    let mut tx = TenantTx::begin_as(pool, tenant_id, "user:attacker", None)
        .await
        .unwrap();
    let result = sqlx::query(sql)
        .bind(tenant_id.as_uuid())
        .bind(row_id)
        .execute(&mut *tx)
        .await;
    match result {
        Ok(done) => {
            tx.commit().await.unwrap();
            Ok(done.rows_affected())
        }
        Err(err) => Err(err
            .as_database_error()
            .and_then(|err| err.code())
            .expect("a database error")
            .into_owned()),
    }
}
