//! Content: sealed round trips through the local filesystem store, tampering,
//! truncation, the size limit, sniffing, and tenant isolation.

use bytes::Bytes;
use documents::document::{self, NewDocument, OpenError, PutError};
use documents::sniff::SniffError;
use documents::{Category, Status};
use futures::StreamExt;
use kernel::Phi;

use crate::{CANARY, text_document, world};

#[tokio::test]
async fn a_document_round_trips_and_its_stored_object_is_ciphertext() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    // Several chunks, so that the frames are stitched back in order.
    let content = format!("{CANARY}\n").repeat(10_000);
    let document = world
        .stored(tenant_id, patient_id, Category::Correspondence, &content)
        .await;
    assert_eq!(document.size_bytes, content.len() as i64);
    assert_eq!(document.content_type, "text/plain");

    let object = std::fs::read(world.object_path(tenant_id, &document)).unwrap();
    assert_eq!(object.len() as u64, document::sealed_len(&document));
    assert!(
        !object.windows(9).any(|window| window == b"Zqxcanary"),
        "the stored object holds plaintext"
    );
    assert_eq!(
        world.read(tenant_id, &document).await.unwrap(),
        content.as_bytes()
    );

    // Neither the metadata, the audit log nor the events hold the content or the name.
    let canary_hits: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM documents.documents d
                  WHERE position(convert_to($1, 'UTF8') IN d.filename_sealed) > 0 OR d::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM documents.outbox o WHERE o::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM audit.events e WHERE e::text LIKE '%' || $1 || '%')",
    )
    .bind("Zqxcanary")
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(canary_hits, 0);
    assert_eq!(
        world.audit_actions(tenant_id, &document).await,
        vec![
            ("document.create".to_owned(), "user:test".to_owned()),
            ("document.read".to_owned(), "user:test".to_owned())
        ]
    );
}

#[tokio::test]
async fn the_file_name_is_returned_only_by_an_audited_open() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let document = world
        .stored(tenant_id, patient_id, Category::IntakeForm, "hello")
        .await;
    let mut tx = world.tx(tenant_id).await;
    let opened = documents::open(
        &mut tx,
        &world.keyring,
        &world.storage,
        document.id,
        "treatment",
        false,
    )
    .await
    .unwrap();
    assert_eq!(opened.filename.expose(), &format!("{CANARY}.txt"));
    assert!(!format!("{opened:?}").contains("Zqxcanary"));
}

#[tokio::test]
async fn an_altered_object_does_not_open() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let document = world
        .stored(tenant_id, patient_id, Category::LabResult, "potassium 6.9")
        .await;
    let path = world.object_path(tenant_id, &document);
    let mut object = std::fs::read(&path).unwrap();
    let last = object.len() - 20;
    object[last] ^= 1;
    std::fs::write(&path, object).unwrap();
    assert!(matches!(
        world.read(tenant_id, &document).await,
        Err(OpenError::Undecryptable(_))
    ));
}

#[tokio::test]
async fn a_truncated_object_does_not_open_even_at_a_frame_boundary() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let content = "x".repeat(3 * documents::sealing::CHUNK_LEN);
    let document = world
        .stored(tenant_id, patient_id, Category::Other, &content)
        .await;
    let path = world.object_path(tenant_id, &document);
    let object = std::fs::read(&path).unwrap();
    let boundary = documents::sealing::HEADER.len() + 2 * documents::sealing::FRAME_LEN;
    std::fs::write(&path, &object[..boundary]).unwrap();
    assert!(matches!(
        world.read(tenant_id, &document).await,
        Err(OpenError::Undecryptable(_))
    ));
}

#[tokio::test]
async fn an_object_copied_over_another_documents_object_does_not_open() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let first = world
        .stored(tenant_id, patient_id, Category::Other, "first")
        .await;
    let second = world
        .stored(tenant_id, patient_id, Category::Other, "second")
        .await;
    std::fs::copy(
        world.object_path(tenant_id, &first),
        world.object_path(tenant_id, &second),
    )
    .unwrap();
    assert!(matches!(
        world.read(tenant_id, &second).await,
        Err(OpenError::Undecryptable(_))
    ));
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_while_streaming_and_leaves_nothing() {
    let world = world().await;
    let storage = world.storage.clone().with_size_max_bytes(100_000);
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let mut n_pulled = 0usize;
    // An endless body: the limit, not the body's end, must stop the upload.
    let body =
        futures::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from_static(&[b'a'; 8192])))
            .inspect(|_| n_pulled += 1);
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
    assert!(
        matches!(
            err,
            PutError::TooLarge {
                limit_bytes: 100_000
            }
        ),
        "{err:?}"
    );
    tx.commit().await.unwrap();
    assert!(n_pulled <= 100_000 / 8192 + 1);
    let n_files = walk(world.dir.path());
    assert_eq!(n_files, 0, "a refused upload left an object");
    let mut tx = world.tx(tenant_id).await;
    let listed = document::list_for_patient(&mut tx, patient_id, &Category::ALL, true, 10)
        .await
        .unwrap();
    assert!(listed.is_empty());
}

pub fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path())
            } else {
                1
            }
        })
        .sum()
}

/// A declared type, the content, and whether the refusal is the expected one.
type Case = (&'static str, &'static [u8], fn(&PutError) -> bool);

#[tokio::test]
async fn content_that_contradicts_its_declared_type_or_is_not_allowed_is_refused() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let cases: [Case; 3] = [
        ("image/png", b"%PDF-1.7 pretend", |err| {
            matches!(
                err,
                PutError::ContentType(SniffError::Mismatch {
                    sniffed: "application/pdf",
                    ..
                })
            )
        }),
        ("application/x-msdownload", b"MZ\x90\x00", |err| {
            matches!(err, PutError::ContentType(SniffError::NotAllowed(_)))
        }),
        ("application/pdf", b"\x7fELF\x02\x01\x01", |err| {
            matches!(err, PutError::ContentType(SniffError::Unrecognised))
        }),
    ];
    for (declared, content, expected) in cases {
        let mut tx = world.tx(tenant_id).await;
        let err = documents::put_bytes(
            &mut tx,
            &world.keyring,
            &world.storage,
            NewDocument {
                patient_id,
                category: Category::Imaging,
                filename: Phi::from("scan".to_owned()),
                content_type: declared.to_owned(),
            },
            Bytes::from_static(content),
        )
        .await
        .unwrap_err();
        assert!(expected(&err), "{declared}: {err:?}");
    }
    assert_eq!(walk(world.dir.path()), 0);

    let mut tx = world.tx(tenant_id).await;
    let pdf = documents::put_bytes(
        &mut tx,
        &world.keyring,
        &world.storage,
        NewDocument {
            patient_id,
            category: Category::LabResult,
            filename: Phi::from("result.pdf".to_owned()),
            content_type: "application/pdf".to_owned(),
        },
        Bytes::from_static(b"%PDF-1.7\n%%EOF\n"),
    )
    .await
    .unwrap();
    assert_eq!(pdf.content_type, "application/pdf");
}

#[tokio::test]
async fn another_tenants_document_is_not_found() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let other_id = world.tenant("Other clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let document = world
        .stored(tenant_id, patient_id, Category::Other, "mine")
        .await;
    let mut tx = world.tx(other_id).await;
    assert_eq!(document::get(&mut tx, document.id).await.unwrap(), None);
    assert!(!documents::exists(&mut tx, document.id).await.unwrap());
    assert!(matches!(
        documents::open(
            &mut tx,
            &world.keyring,
            &world.storage,
            document.id,
            "treatment",
            false
        )
        .await,
        Err(OpenError::NotFound)
    ));
    assert!(matches!(
        document::delete(&mut tx, document.id).await,
        Err(documents::DeleteError::NotFound)
    ));
    tx.commit().await.unwrap();
    assert_eq!(world.read(tenant_id, &document).await.unwrap(), b"mine");
}

#[tokio::test]
async fn a_deleted_document_keeps_its_metadata_but_not_its_content() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let document = world
        .stored(tenant_id, patient_id, Category::Other, "to go")
        .await;
    let mut tx = world.tx(tenant_id).await;
    let deleted = document::delete(&mut tx, document.id).await.unwrap();
    // Until the deletion commits, the content stays: a failed commit must not leave a
    // stored row without it.
    assert!(world.object_path(tenant_id, &document).exists());
    tx.commit().await.unwrap();
    document::remove_content(&world.storage, tenant_id, document.id)
        .await
        .unwrap();
    assert_eq!(deleted.status, Status::Deleted);
    assert!(!world.object_path(tenant_id, &document).exists());
    assert!(matches!(
        world.read(tenant_id, &document).await,
        Err(OpenError::Deleted)
    ));
    let mut tx = world.tx(tenant_id).await;
    assert!(!documents::exists(&mut tx, document.id).await.unwrap());
    assert!(matches!(
        document::delete(&mut tx, document.id).await,
        Err(documents::DeleteError::AlreadyDeleted)
    ));
    drop(tx);
    let actions: Vec<String> = world
        .audit_actions(tenant_id, &document)
        .await
        .into_iter()
        .map(|(action, _)| action)
        .collect();
    assert_eq!(actions, ["document.create", "document.delete"]);
}
