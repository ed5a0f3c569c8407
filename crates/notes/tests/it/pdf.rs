//! Signed notes to PDF: reproducible bytes, drafts refused, the render job recording
//! its rendition, the tenant's identifier setting, and a PDF that a real PDF reader
//! (poppler's `pdftoppm` and `pdftotext`) turns into pages and text.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use identity::vault::{self, Access, Demographics, Identifier};
use kernel::{PatientId, UserId};
use notes::note::{self, NewNote};
use notes::pdf::{self, RenderError};
use notes::settings::{self, PdfIdentifiers};
use notes::{Content, Note, Signed};
use platform::jobs::Registry;
use platform::jobs::worker::{Outcome, Worker, WorkerConfig};

use crate::{World, soap, soap_content, world};

/// Signs a SOAP note with `content` for `patient_id`, committed.
async fn signed_with(
    world: &World,
    tenant_id: kernel::TenantId,
    patient_id: PatientId,
    content: Content,
) -> Note<Signed> {
    let author_id = UserId::generate();
    let mut tx = world.tx(tenant_id).await;
    let draft = note::create(
        &mut tx,
        &world.keyring,
        NewNote {
            patient_id,
            author_id,
            template: soap(),
            encounter_id: None,
            appointment_id: None,
            service_at: None,
            content,
        },
    )
    .await
    .unwrap();
    let signed = draft.sign(&mut tx, author_id).await.unwrap();
    tx.commit().await.unwrap();
    signed
}

/// A plan long enough to fill several pages.
fn long_plan() -> String {
    (1..=300)
        .map(|i| format!("Step {i}: practise the agreed skill daily and note what helped."))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_signed_note_renders_to_the_same_bytes_every_time_and_another_note_does_not() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let signed = world.signed(tenant_id, UserId::generate()).await;
    let other = world.signed(tenant_id, UserId::generate()).await;

    let mut tx = world.tx(tenant_id).await;
    let first = pdf::render_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    let second = pdf::render_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    let another = pdf::render_signed(&mut tx, &world.keyring, other.id())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(first.bytes.starts_with(b"%PDF-"));
    assert_eq!(first.bytes, second.bytes, "the same note, the same bytes");
    assert_eq!(first.sha256, second.sha256);
    assert_ne!(first.sha256, another.sha256);
    assert_eq!(first.n_pages, 1);
}

#[tokio::test]
async fn a_draft_is_neither_rendered_nor_queued_nor_recorded() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let draft = world.draft(tenant_id, UserId::generate(), None).await;
    let mut tx = world.tx(tenant_id).await;
    assert!(matches!(
        pdf::render_signed(&mut tx, &world.keyring, draft.id()).await,
        Err(RenderError::NotSigned)
    ));
    assert!(matches!(
        pdf::job::enqueue(&mut tx, draft.id()).await,
        Err(RenderError::NotSigned)
    ));
    assert!(matches!(
        pdf::record_rendition(&mut tx, draft.id(), [0; 32], None).await,
        Err(RenderError::NotSigned)
    ));
    let unknown = notes::NoteId::generate();
    assert!(matches!(
        pdf::render_signed(&mut tx, &world.keyring, unknown).await,
        Err(RenderError::NotFound)
    ));
    assert!(matches!(
        pdf::job::enqueue(&mut tx, unknown).await,
        Err(RenderError::NotFound)
    ));
    // Refused before any content was opened: no read of the draft is recorded.
    let n_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE tenant_id = $1 AND action = 'note.read'",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(n_reads, 0);
}

#[tokio::test]
async fn the_render_job_records_the_rendition_hash_when_it_completes() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let signed = world.signed(tenant_id, UserId::generate()).await;

    let mut tx = world.tx(tenant_id).await;
    let job_id = pdf::job::enqueue(&mut tx, signed.id()).await.unwrap();
    // Asked twice while pending: one job.
    assert_eq!(
        pdf::job::enqueue(&mut tx, signed.id()).await.unwrap(),
        job_id
    );
    assert_eq!(
        pdf::latest_rendition(&mut tx, signed.id()).await.unwrap(),
        None
    );
    tx.commit().await.unwrap();

    // The job's arguments are the note id and nothing else.
    let args: serde_json::Value =
        sqlx::query_scalar("SELECT args FROM platform.jobs WHERE id = $1")
            .bind(job_id.as_uuid())
            .fetch_one(&world.db.admin)
            .await
            .unwrap();
    assert_eq!(
        args,
        serde_json::json!({ "note_id": signed.id().as_uuid() })
    );

    // A real document store on the local filesystem, as `tenet up` has by default.
    let store_dir = std::env::temp_dir().join(format!("tenet-notes-pdf-{}", uuid::Uuid::now_v7()));
    let storage = documents::Storage::local(&store_dir).unwrap();
    let mut config = WorkerConfig::new("test-worker");
    config.poll_interval = Duration::from_millis(20);
    let worker = Arc::new(Worker::new(
        world.db.owner.clone(),
        world.db.app.clone(),
        Registry::new().register(pdf::RenderPdf {
            keyring: world.keyring.clone(),
            storage: storage.clone(),
        }),
        config,
    ));
    let outcome = worker.try_run_one().await.unwrap();
    assert!(
        matches!(outcome, Some(Outcome::Succeeded(id)) if id == job_id),
        "{outcome:?}"
    );

    let mut tx = world.tx(tenant_id).await;
    let rendition = pdf::latest_rendition(&mut tx, signed.id())
        .await
        .unwrap()
        .expect("the job recorded a rendition");
    let expected = pdf::render_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    assert_eq!(rendition.sha256, expected.sha256);
    assert_eq!(rendition.note_version, signed.header().version);
    assert_eq!(rendition.content_sha256, signed.state().content_sha256);
    assert_eq!(rendition.n_amendments, 0);
    // The PDF is stored as the patient's clinical-note document, sealed at rest, and
    // reads back byte for byte.
    let document_id = documents::DocumentId::new_unchecked(
        rendition
            .document_id
            .expect("the job stored the PDF as a document"),
    );
    let (document, content) = documents::document::read_bytes(
        &mut tx,
        &world.keyring,
        &storage,
        document_id,
        "treatment",
    )
    .await
    .unwrap();
    assert_eq!(document.category, documents::Category::ClinicalNote);
    assert_eq!(document.content_type, "application/pdf");
    assert_eq!(content.expose().as_slice(), expected.bytes.as_slice());
    let stored = std::fs::read_dir(&store_dir)
        .unwrap()
        .flat_map(|tenant_dir| std::fs::read_dir(tenant_dir.unwrap().path()).unwrap())
        .map(|object| std::fs::read(object.unwrap().path()).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].windows(5).any(|window| window == b"%PDF-"),
        "stored sealed"
    );
    std::fs::remove_dir_all(&store_dir).unwrap();
    let n_renders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE tenant_id = $1 AND action = 'note.render'
             AND details->>'sha256' = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(hex::encode(rendition.sha256))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(n_renders, 1);
}

#[tokio::test]
async fn the_pdf_shows_vault_identifiers_only_when_the_tenant_allows_them() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = PatientId::generate();
    let access = Access {
        purpose: Some("treatment".to_owned()),
        break_glass: false,
    };
    let mut tx = world.tx(tenant_id).await;
    vault::insert(
        &mut tx,
        &world.keyring,
        patient_id,
        &Demographics {
            family_name: "Zqxfamily".to_owned(),
            given_names: vec!["Ada".to_owned()],
            identifiers: vec![Identifier {
                authority: "GENERAL-HOSPITAL".to_owned(),
                kind: "MR".to_owned(),
                value: "MRN-0042".to_owned(),
            }],
            ..Demographics::default()
        },
        &access,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let signed = signed_with(&world, tenant_id, patient_id, soap_content("Weekly.")).await;

    let mut tx = world.tx(tenant_id).await;
    let default = pdf::render_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&default.bytes);
    assert!(text.contains(&format!("(Patient {patient_id})")));
    assert!(!text.contains("Zqxfamily") && !text.contains("MRN-0042"));

    settings::configure_pdf_identifiers(
        &mut tx,
        PdfIdentifiers {
            record_number: true,
            name: true,
            birth_date: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        settings::pdf_identifiers(&mut tx).await.unwrap(),
        PdfIdentifiers {
            record_number: true,
            name: true,
            birth_date: false,
        }
    );
    let allowed = pdf::render_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&allowed.bytes);
    assert!(text.contains("Record number: MRN-0042"));
    assert!(text.contains("Name: Ada Zqxfamily"));
    // The vault read that put them there is on the record.
    let n_patient_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE tenant_id = $1 AND patient_id = $2
             AND action = 'patient.read'",
    )
    .bind(tenant_id.as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(n_patient_reads, 1);
}

/// Runs `program` with `args`; a missing program fails the test (poppler-utils is
/// part of the CI machine's packages).
fn run(program: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} (poppler-utils) must be installed: {err}"));
    assert!(output.status.success(), "{program} failed: {output:?}");
    output
}

#[tokio::test]
async fn a_rendered_note_is_read_by_poppler_as_png_pages_with_its_headings_and_page_numbers() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let signed = signed_with(
        &world,
        tenant_id,
        PatientId::generate(),
        soap_content(&long_plan()),
    )
    .await;
    let mut tx = world.tx(tenant_id).await;
    let amendment = signed
        .amend(
            &mut tx,
            &world.keyring,
            author_id,
            soap_content("Fortnightly sessions.").with_reason("Frequency agreed with the patient."),
        )
        .await
        .unwrap();
    let amendment_id = amendment.id();
    amendment.sign(&mut tx, author_id).await.unwrap();
    let rendered = pdf::render_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(rendered.n_pages >= 3, "{rendered:?}");

    let dir = std::env::temp_dir().join(format!("tenet-pdf-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let pdf_path = dir.join("note.pdf");
    std::fs::write(&pdf_path, &rendered.bytes).unwrap();

    run(
        "pdftoppm",
        &[
            "-png".as_ref(),
            "-r".as_ref(),
            "50".as_ref(),
            pdf_path.as_os_str(),
            dir.join("page").as_os_str(),
        ],
    );
    let mut pngs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "png"))
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), rendered.n_pages, "one PNG per page: {pngs:?}");
    for png in &pngs {
        let bytes = std::fs::read(png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", png.display());
        assert!(bytes.len() > 2_000, "{} is nearly empty", png.display());
    }

    let text = String::from_utf8(
        run(
            "pdftotext",
            &["-layout".as_ref(), pdf_path.as_os_str(), "-".as_ref()],
        )
        .stdout,
    )
    .unwrap();
    for heading in [
        "SOAP progress note",
        "Subjective",
        "Objective",
        "Assessment",
        "Plan",
        "Signature",
        "Co-signature",
        "Amendment history",
        "Frequency agreed with the patient.",
        "Step 300: practise the agreed skill daily",
        crate::CANARY,
    ] {
        assert!(text.contains(heading), "{heading} missing from the text");
    }
    for page in 1..=rendered.n_pages {
        let label = format!("Page {page} of {}", rendered.n_pages);
        assert!(text.contains(&label), "{label} missing");
    }
    assert!(text.contains(&format!("Amendment 1: note {amendment_id}")));
    std::fs::remove_dir_all(&dir).unwrap();
}
