//! The integration tests of the `documents` crate, on a real PostgreSQL and a real
//! object store (the local filesystem; S3 when a server is configured): sealed round
//! trips, tampering and truncation, limits and sniffing, tenant isolation, signed
//! links, legal holds and the retention lifecycle.

mod content;
mod faults;
mod links;
mod retention;
mod s3;

use bytes::Bytes;
use db::TenantTx;
use db::testing::TestDb;
use documents::{Category, Document, NewDocument, Storage};
use identity::keyring::{Keyring, MasterKey};
use kernel::{PatientId, Phi, TenantId};

/// A PHI canary: it must appear in no stored object, no table, no event.
pub const CANARY: &str = "Zqxcanary was admitted after a suicide attempt";

pub struct World {
    pub db: TestDb,
    pub keyring: Keyring,
    pub storage: Storage,
    /// The store's directory; removed with the world.
    pub dir: tempfile::TempDir,
}

pub async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    World {
        db: TestDb::migrated(&schema::migrator()).await,
        keyring: Keyring::new(MasterKey::generate()),
        storage: Storage::local(dir.path()).unwrap(),
        dir,
    }
}

pub fn text_document(patient_id: PatientId, category: Category) -> NewDocument {
    NewDocument {
        patient_id,
        category,
        filename: Phi::from(format!("{CANARY}.txt")),
        content_type: "text/plain".to_owned(),
    }
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

    pub async fn patient(&self, tenant_id: TenantId) -> PatientId {
        let mut tx = self.tx(tenant_id).await;
        let patient_id = PatientId::generate();
        clinical::patient::insert(&mut tx, patient_id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        patient_id
    }

    /// A committed text document of `category` whose content is `content`.
    pub async fn stored(
        &self,
        tenant_id: TenantId,
        patient_id: PatientId,
        category: Category,
        content: &str,
    ) -> Document {
        let mut tx = self.tx(tenant_id).await;
        let document = documents::put_bytes(
            &mut tx,
            &self.keyring,
            &self.storage,
            text_document(patient_id, category),
            Bytes::from(content.to_owned()),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        document
    }

    /// The path of a document's object in the local store.
    pub fn object_path(&self, tenant_id: TenantId, document: &Document) -> std::path::PathBuf {
        self.dir
            .path()
            .join(tenant_id.to_string())
            .join(document.id.to_string())
    }

    pub async fn read(
        &self,
        tenant_id: TenantId,
        document: &Document,
    ) -> Result<Vec<u8>, documents::OpenError> {
        let mut tx = self.tx(tenant_id).await;
        let (_, content) = documents::document::read_bytes(
            &mut tx,
            &self.keyring,
            &self.storage,
            document.id,
            "treatment",
        )
        .await?;
        tx.commit().await.unwrap();
        Ok(content.into_inner())
    }

    /// The actions of the tenant's audit events about `document`, oldest first.
    pub async fn audit_actions(
        &self,
        tenant_id: TenantId,
        document: &Document,
    ) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT action, actor FROM audit.events
             WHERE tenant_id = $1 AND details->>'document_id' = $2 ORDER BY occurred_at, seq",
        )
        .bind(tenant_id.as_uuid())
        .bind(document.id.to_string())
        .fetch_all(&self.db.admin)
        .await
        .unwrap()
    }
}
