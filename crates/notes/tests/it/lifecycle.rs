//! Drafts, optimistic concurrency, signing, amendments and the late-signing list.

use kernel::UserId;
use notes::note::{self, AnyNote, Kind, NoteError};
use notes::{Content, ContentError, Status, listing, settings};
use time::{Duration, OffsetDateTime};

use crate::{soap_content, world};

#[tokio::test]
async fn a_draft_is_edited_by_its_author_and_a_stale_version_gets_a_conflict() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let draft = world.draft(tenant_id, author_id, None).await;
    assert_eq!(draft.header().version, 1);

    let mut tx = world.tx(tenant_id).await;
    let loaded = note::load_draft(&mut tx, &world.keyring, draft.id())
        .await
        .unwrap();
    let edited = loaded
        .edit(
            &mut tx,
            &world.keyring,
            author_id,
            soap_content("Weekly sessions."),
        )
        .await
        .unwrap();
    assert_eq!(edited.header().version, 2);
    tx.commit().await.unwrap();

    // A client that read version 1 writes again: refused, and told the current version.
    let mut tx = world.tx(tenant_id).await;
    let loaded = note::load_draft(&mut tx, &world.keyring, draft.id())
        .await
        .unwrap();
    assert!(matches!(
        loaded.expect_version(1),
        Err(NoteError::VersionConflict { current: 2 })
    ));
    // The in-memory draft of version 1 cannot overwrite version 2 either.
    assert!(matches!(
        draft
            .edit(&mut tx, &world.keyring, author_id, soap_content("Stale."))
            .await,
        Err(NoteError::VersionConflict { current: 2 })
    ));
    tx.rollback().await.unwrap();

    let mut tx = world.tx(tenant_id).await;
    let loaded = note::load_draft(&mut tx, &world.keyring, edited.id())
        .await
        .unwrap();
    assert_eq!(loaded.content().section("plan"), Some("Weekly sessions."));
    assert!(matches!(
        loaded
            .edit(
                &mut tx,
                &world.keyring,
                UserId::generate(),
                soap_content("Not mine.")
            )
            .await,
        Err(NoteError::NotAuthor)
    ));
}

#[tokio::test]
async fn signing_needs_every_required_section_and_fixes_signer_time_and_hash() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let draft = world.draft(tenant_id, author_id, None).await;

    let mut tx = world.tx(tenant_id).await;
    let loaded = note::load_draft(&mut tx, &world.keyring, draft.id())
        .await
        .unwrap();
    let partial = loaded
        .edit(
            &mut tx,
            &world.keyring,
            author_id,
            Content::from_sections([("subjective", "s"), ("plan", "p")]),
        )
        .await
        .unwrap();
    assert!(matches!(
        partial.clone().sign(&mut tx, author_id).await,
        Err(NoteError::Content(ContentError::MissingSection { key })) if key == "objective"
    ));
    assert!(matches!(
        partial.clone().sign(&mut tx, UserId::generate()).await,
        Err(NoteError::NotAuthor)
    ));
    let complete = partial
        .edit(&mut tx, &world.keyring, author_id, soap_content("Plan."))
        .await
        .unwrap();
    let expected_hash = complete.content().sha256();
    let signed = complete.sign(&mut tx, author_id).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = world.tx(tenant_id).await;
    let AnyNote::Signed(read) = note::read(&mut tx, &world.keyring, draft.id())
        .await
        .unwrap()
    else {
        panic!("a signed note reads back signed");
    };
    assert_eq!(read.state().signed_by, author_id);
    assert_eq!(read.state().content_sha256, expected_hash);
    assert_eq!(read.state().signed_at, signed.state().signed_at);
    assert!(read.is_complete());
    assert!(matches!(
        note::load_draft(&mut tx, &world.keyring, draft.id()).await,
        Err(NoteError::Signed)
    ));
}

#[tokio::test]
async fn amendments_point_at_the_original_carry_a_reason_and_read_as_a_chain() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let original = world.signed(tenant_id, author_id).await;

    let mut tx = world.tx(tenant_id).await;
    assert!(matches!(
        original
            .amend(
                &mut tx,
                &world.keyring,
                author_id,
                soap_content("No reason.")
            )
            .await,
        Err(NoteError::Content(ContentError::Reason))
    ));
    tx.rollback().await.unwrap();

    let mut tx = world.tx(tenant_id).await;
    let first = original
        .amend(
            &mut tx,
            &world.keyring,
            author_id,
            soap_content("Fortnightly, not weekly.").with_reason("Wrong frequency recorded"),
        )
        .await
        .unwrap();
    assert_eq!(
        first.header().kind,
        Kind::Amendment {
            amends: original.id()
        }
    );
    let first = first.sign(&mut tx, author_id).await.unwrap();
    // Amending the amendment still points at the original: one chain.
    let second = first
        .amend(
            &mut tx,
            &world.keyring,
            author_id,
            soap_content("Monthly.").with_reason("Changed again after review"),
        )
        .await
        .unwrap();
    assert_eq!(
        second.header().kind,
        Kind::Amendment {
            amends: original.id()
        }
    );
    let second = second.sign(&mut tx, author_id).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = world.tx(tenant_id).await;
    let chain = note::read_chain(&mut tx, &world.keyring, original.id())
        .await
        .unwrap();
    assert_eq!(chain.note.header().id, original.id());
    assert_eq!(
        chain.note.content().section("plan"),
        Some("Follow up in two weeks."),
        "the original is unchanged"
    );
    let ids: Vec<_> = chain.amendments.iter().map(|a| a.header().id).collect();
    assert_eq!(ids, [first.id(), second.id()]);
    assert_eq!(
        chain.amendments[0].content().reason(),
        Some("Wrong frequency recorded")
    );
    assert_eq!(
        chain.amendments[1].content().section("plan"),
        Some("Monthly.")
    );
    assert!(chain.amendments.iter().all(|a| a.signed().is_some()));
}

#[tokio::test]
async fn notes_unsigned_past_the_tenant_deadline_are_listed_late() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let mut tx = world.tx(tenant_id).await;
    settings::configure(
        &mut tx,
        &settings::Settings {
            cosign_required: false,
            late_after_minutes: 24 * 60,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let author_id = UserId::generate();
    let now = OffsetDateTime::now_utc();
    let old = world
        .draft(tenant_id, author_id, Some(now - Duration::hours(30)))
        .await;
    let _recent = world
        .draft(tenant_id, author_id, Some(now - Duration::hours(2)))
        .await;
    let old_signed = world
        .draft(tenant_id, author_id, Some(now - Duration::hours(40)))
        .await;
    let mut tx = world.tx(tenant_id).await;
    old_signed.sign(&mut tx, author_id).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = world.tx(tenant_id).await;
    let late = listing::late(&mut tx, now).await.unwrap();
    let ids: Vec<_> = late.iter().map(|late| late.summary.id).collect();
    assert_eq!(ids, [old.id()]);
    assert_eq!(late[0].summary.status, Status::Draft);
    assert_eq!(
        late[0].due_at,
        old.header().service_at + Duration::hours(24)
    );
    // A day later the recent one is late too.
    let later = listing::late(&mut tx, now + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(later.len(), 2);
    tx.commit().await.unwrap();

    // `tenet check` counts the late note for the compliance view, naming the tenant.
    let findings = listing::findings(&world.db.owner).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].check, "notes-late");
    assert!(findings[0].object.contains(&tenant_id.to_string()));
    assert!(findings[0].detail.starts_with("1 note(s)"));
}
