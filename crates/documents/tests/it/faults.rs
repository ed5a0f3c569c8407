//! A store that fails mid-upload: the real local filesystem store, with a part that
//! fails after the first. Nothing of the upload may stay behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use documents::{Category, PutError, Storage};
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

use crate::{text_document, world};

/// The local filesystem store, except that every multipart upload's parts after the
/// first fail, and aborts are counted.
#[derive(Debug)]
struct FailingParts {
    inner: LocalFileSystem,
    aborts: Arc<AtomicUsize>,
}

impl std::fmt::Display for FailingParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailingParts({})", self.inner)
    }
}

#[derive(Debug)]
struct FailingUpload {
    inner: Box<dyn MultipartUpload>,
    n_parts: usize,
    aborts: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl MultipartUpload for FailingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.n_parts += 1;
        if self.n_parts == 1 {
            return self.inner.put_part(data);
        }
        Box::pin(async {
            Err(object_store::Error::Generic {
                store: "FailingParts",
                source: "the store lost a part".into(),
            })
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailingParts {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(FailingUpload {
            inner: self.inner.put_multipart_opts(location, opts).await?,
            n_parts: 0,
            aborts: self.aborts.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[tokio::test]
async fn an_upload_whose_last_part_fails_is_aborted_and_leaves_nothing() {
    let world = world().await;
    let aborts = Arc::new(AtomicUsize::new(0));
    let storage = Storage::new(
        Arc::new(FailingParts {
            inner: LocalFileSystem::new_with_prefix(world.dir.path()).unwrap(),
            aborts: aborts.clone(),
        }),
        "failing parts".to_owned(),
    );
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    // A part and a half: the first part goes while the body streams, the failing
    // second one only when the upload is finished.
    let body = futures::stream::iter(
        (0..12).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; 512 * 1024]))),
    );
    let mut tx = world.tx(tenant_id).await;
    let err = documents::put(
        &mut tx,
        &world.keyring,
        &storage,
        text_document(patient_id, Category::Other),
        body,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PutError::Storage(_)), "{err:?}");
    tx.commit().await.unwrap();
    assert_eq!(
        aborts.load(Ordering::SeqCst),
        1,
        "the upload was not aborted"
    );
    assert_eq!(
        crate::content::walk(world.dir.path()),
        0,
        "a failed upload left its parts in the store"
    );
}
