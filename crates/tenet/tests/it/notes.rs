//! `tenet notes list|show|late` print a tenant's notes as metadata: statuses, the
//! amendment chain, the late list — and never a note's text; `tenet notes pdf` writes
//! a signed note's PDF to a file.

use identity::keyring::{Keyring, MasterKey};
use kernel::{PatientId, TenantId, UserId};
use notes::note::{self, NewNote};
use notes::{Content, Template};
use time::{Duration, OffsetDateTime};

use crate::{Tenet, single_line};

const CANARY: &str = "Zqxclicanary";

fn content(plan: &str) -> Content {
    Content::from_sections([
        ("subjective", CANARY),
        ("objective", "o"),
        ("assessment", "a"),
        ("plan", plan),
    ])
}

#[tokio::test]
async fn notes_list_show_and_late_print_metadata_and_the_amendment_chain_only() {
    let tenet = Tenet::new().await;
    let tenant =
        single_line(tenet.run(&["tenant", "create", "North Clinic"]).await.ok()).to_owned();
    let tenant_id = TenantId::new_unchecked(tenant.parse().unwrap());
    let keyring = Keyring::new(MasterKey::from_file(&tenet.master_key_path()).unwrap());
    let author_id = UserId::generate();
    let patient_id = PatientId::generate();
    let mut tx = db::TenantTx::begin_as(&tenet.db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let new = |plan: &str, service_at| NewNote {
        patient_id,
        author_id,
        template: Template::find("soap", 1).unwrap(),
        encounter_id: None,
        appointment_id: None,
        service_at: Some(service_at),
        content: content(plan),
    };
    let now = OffsetDateTime::now_utc();
    let signed = note::create(&mut tx, &keyring, new("p", now))
        .await
        .unwrap()
        .sign(&mut tx, author_id)
        .await
        .unwrap();
    let amendment = signed
        .amend(
            &mut tx,
            &keyring,
            author_id,
            content("p2").with_reason("typo"),
        )
        .await
        .unwrap();
    let late = note::create(&mut tx, &keyring, new("late", now - Duration::days(10)))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let listed = tenet
        .run(&[
            "notes",
            "list",
            "--tenant",
            &tenant,
            "--patient",
            &patient_id.to_string(),
        ])
        .await;
    assert_eq!(listed.ok().lines().count(), 3, "{listed}");
    let shown = tenet
        .run(&[
            "notes",
            "show",
            "--tenant",
            &tenant,
            "--note",
            &signed.id().to_string(),
        ])
        .await;
    let shown = shown.ok();
    assert!(shown.contains("complete"), "{shown}");
    assert!(
        shown.contains(&format!("amended by {}", amendment.id())),
        "{shown}"
    );
    let overdue = tenet.run(&["notes", "late", "--tenant", &tenant]).await;
    let overdue_out = overdue.failed();
    assert!(overdue_out.contains(&late.id().to_string()), "{overdue}");
    assert!(!overdue_out.contains(&signed.id().to_string()), "{overdue}");
    for run in [&listed, &overdue] {
        assert!(!run.to_string().contains(CANARY), "{run}");
    }
    assert!(!shown.contains(CANARY));
}

#[tokio::test]
async fn notes_pdf_writes_the_same_pdf_for_a_signed_note_every_time_and_refuses_a_draft() {
    let tenet = Tenet::new().await;
    let tenant =
        single_line(tenet.run(&["tenant", "create", "North Clinic"]).await.ok()).to_owned();
    let tenant_id = TenantId::new_unchecked(tenant.parse().unwrap());
    let keyring = Keyring::new(MasterKey::from_file(&tenet.master_key_path()).unwrap());
    let author_id = UserId::generate();
    let mut tx = db::TenantTx::begin_as(&tenet.db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let new = || NewNote {
        patient_id: PatientId::generate(),
        author_id,
        template: Template::find("soap", 1).unwrap(),
        encounter_id: None,
        appointment_id: None,
        service_at: None,
        content: content("Weekly sessions."),
    };
    let signed = note::create(&mut tx, &keyring, new())
        .await
        .unwrap()
        .sign(&mut tx, author_id)
        .await
        .unwrap();
    let draft = note::create(&mut tx, &keyring, new()).await.unwrap();
    tx.commit().await.unwrap();

    let dir = std::env::temp_dir().join(format!("tenet-cli-pdf-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut pdfs = Vec::new();
    for name in ["first.pdf", "second.pdf"] {
        let out = dir.join(name);
        let run = tenet
            .run(&[
                "notes",
                "pdf",
                "--tenant",
                &tenant,
                &signed.id().to_string(),
                "--out",
                out.to_str().unwrap(),
            ])
            .await;
        let printed = run.ok();
        assert!(printed.contains("1 pages sha256 "), "{printed}");
        assert!(!printed.contains(CANARY));
        pdfs.push(std::fs::read(&out).unwrap());
    }
    assert!(pdfs[0].starts_with(b"%PDF-"));
    assert_eq!(pdfs[0], pdfs[1], "the same note, the same bytes");
    let n_renditions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notes.renditions WHERE note_id = $1")
            .bind(signed.id().as_uuid())
            .fetch_one(&tenet.db.admin)
            .await
            .unwrap();
    assert_eq!(n_renditions, 2);

    let refused = tenet
        .run(&[
            "notes",
            "pdf",
            "--tenant",
            &tenant,
            &draft.id().to_string(),
            "--out",
            dir.join("draft.pdf").to_str().unwrap(),
        ])
        .await;
    refused.failed();
    assert!(refused.to_string().contains("is a draft"), "{refused}");
    assert!(!dir.join("draft.pdf").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
