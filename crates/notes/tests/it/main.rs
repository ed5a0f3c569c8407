//! The integration tests of the `notes` crate, on a real PostgreSQL: drafts and
//! optimistic concurrency, signing, co-signing, amendments, the immutability trigger
//! (tried as the service role and the owner), tenant isolation, sealing at rest,
//! the audit trail, the late-signing list and signed notes rendered to PDF.

mod cosign;
mod immutability;
mod lifecycle;
mod pdf;
mod sealing;

use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use kernel::{PatientId, TenantId, UserId};
use notes::note::{self, NewNote};
use notes::{Content, Draft, Note, Template};
use time::OffsetDateTime;

/// A PHI canary: it must appear in no table as plaintext, no event, no audit detail.
pub const CANARY: &str = "Zqxcanary reports hearing voices";

pub struct World {
    pub db: TestDb,
    pub keyring: Keyring,
}

pub async fn world() -> World {
    World {
        db: TestDb::migrated(&schema::migrator()).await,
        keyring: Keyring::new(MasterKey::generate()),
    }
}

pub fn soap() -> &'static Template {
    Template::find("soap", 1).expect("published")
}

/// Every SOAP section filled, the plan with `plan`.
pub fn soap_content(plan: &str) -> Content {
    Content::from_sections([
        ("subjective", CANARY),
        ("objective", "Calm, oriented."),
        ("assessment", "Improving."),
        ("plan", plan),
    ])
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

    /// A committed draft by `author_id` for a new patient.
    pub async fn draft(
        &self,
        tenant_id: TenantId,
        author_id: UserId,
        service_at: Option<OffsetDateTime>,
    ) -> Note<Draft> {
        let mut tx = self.tx(tenant_id).await;
        let draft = note::create(
            &mut tx,
            &self.keyring,
            NewNote {
                patient_id: PatientId::generate(),
                author_id,
                template: soap(),
                encounter_id: None,
                appointment_id: Some(uuid::Uuid::now_v7()),
                service_at,
                content: soap_content("Follow up in two weeks."),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        draft
    }

    /// A committed, signed note by `author_id`.
    pub async fn signed(&self, tenant_id: TenantId, author_id: UserId) -> Note<notes::Signed> {
        let draft = self.draft(tenant_id, author_id, None).await;
        let mut tx = self.tx(tenant_id).await;
        let signed = draft.sign(&mut tx, author_id).await.unwrap();
        tx.commit().await.unwrap();
        signed
    }
}
