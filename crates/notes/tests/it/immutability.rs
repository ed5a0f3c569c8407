//! I7: a signed note cannot be changed by SQL — as the service role or the owner —
//! while a draft can; the trigger, not a missing grant, is what refuses.

use db::TenantTx;
use kernel::{TenantId, UserId};
use notes::note::{self, NoteError};
use sqlx::PgPool;

use crate::world;

/// Runs `sql` (`$1` tenant, `$2` note) in a tenant transaction on `pool`; the SQLSTATE
/// it failed with, or `None` with the rows it touched.
async fn try_sql(
    pool: &PgPool,
    tenant_id: TenantId,
    note_id: uuid::Uuid,
    sql: &str,
) -> Result<u64, String> {
    let mut tx = TenantTx::begin_as(pool, tenant_id, "user:attacker", None)
        .await
        .unwrap();
    let result = sqlx::query(sql)
        .bind(tenant_id.as_uuid())
        .bind(note_id)
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

const TAMPERING: &[&str] = &[
    "UPDATE notes.notes SET body_sealed = body_sealed || '\\x00'::bytea WHERE tenant_id = $1 AND id = $2",
    "UPDATE notes.notes SET content_sha256 = sha256('x') WHERE tenant_id = $1 AND id = $2",
    "UPDATE notes.notes SET signed_by = gen_random_uuid() WHERE tenant_id = $1 AND id = $2",
    "UPDATE notes.notes SET signed_at = signed_at - interval '1 day' WHERE tenant_id = $1 AND id = $2",
    "UPDATE notes.notes SET status = 'draft', signed_by = NULL, signed_at = NULL, content_sha256 = NULL WHERE tenant_id = $1 AND id = $2",
    "UPDATE notes.notes SET version = version + 1 WHERE tenant_id = $1 AND id = $2",
    "UPDATE notes.notes SET patient_id = gen_random_uuid() WHERE tenant_id = $1 AND id = $2",
    "UPDATE notes.notes SET cosign_required = NOT cosign_required WHERE tenant_id = $1 AND id = $2",
    "DELETE FROM notes.notes WHERE tenant_id = $1 AND id = $2",
];

#[tokio::test]
async fn a_signed_note_refuses_every_update_and_delete_as_the_service_role_and_the_owner() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let signed = world.signed(tenant_id, author_id).await;
    let note_id = signed.id().into_uuid();

    for (role, pool) in [
        ("tenet_app", &world.db.app),
        ("tenet_owner", &world.db.owner),
    ] {
        for sql in TAMPERING {
            assert_eq!(
                try_sql(pool, tenant_id, note_id, sql).await,
                Err("55000".to_owned()),
                "{role}: `{sql}` was not refused"
            );
        }
    }
    let truncated = sqlx::query("TRUNCATE notes.notes CASCADE")
        .execute(&world.db.owner)
        .await
        .unwrap_err();
    assert_eq!(
        truncated.as_database_error().unwrap().code().unwrap(),
        "55000"
    );

    // Nothing moved: the note reads back exactly as signed.
    let mut tx = world.tx(tenant_id).await;
    let read = note::load_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    assert_eq!(read.content(), signed.content());
    assert_eq!(read.state().content_sha256, signed.state().content_sha256);
    assert_eq!(read.header().version, signed.header().version);
}

#[tokio::test]
async fn a_draft_can_still_be_changed_so_the_trigger_refuses_only_signed_notes() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let draft = world.draft(tenant_id, UserId::generate(), None).await;
    let note_id = draft.id().into_uuid();
    assert_eq!(
        try_sql(
            &world.db.app,
            tenant_id,
            note_id,
            "UPDATE notes.notes SET service_at = service_at - interval '1 hour' WHERE tenant_id = $1 AND id = $2",
        )
        .await,
        Ok(1)
    );
    assert_eq!(
        try_sql(
            &world.db.app,
            tenant_id,
            note_id,
            "DELETE FROM notes.notes WHERE tenant_id = $1 AND id = $2",
        )
        .await,
        Ok(1)
    );
}

#[tokio::test]
async fn a_note_is_never_written_already_signed_and_a_draft_keeps_its_patient() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let draft = world.draft(tenant_id, UserId::generate(), None).await;
    let note_id = draft.id().into_uuid();
    for sql in [
        // A signed copy of the draft, signature and hash made up.
        "INSERT INTO notes.notes (tenant_id, id, patient_id, author_id, template_code, template_version,
             data_key_id, body_sealed, service_at, status, signed_by, signed_at, content_sha256)
         SELECT tenant_id, gen_random_uuid(), patient_id, author_id, template_code, template_version,
             data_key_id, body_sealed, service_at, 'signed', author_id, now(), sha256('forged')
         FROM notes.notes WHERE tenant_id = $1 AND id = $2",
        "UPDATE notes.notes SET patient_id = gen_random_uuid() WHERE tenant_id = $1 AND id = $2",
        "UPDATE notes.notes SET author_id = gen_random_uuid() WHERE tenant_id = $1 AND id = $2",
    ] {
        assert!(
            try_sql(&world.db.app, tenant_id, note_id, sql).await.is_err(),
            "refused as the service role: {sql}"
        );
    }
}

#[tokio::test]
async fn a_cosignature_is_written_once_and_then_frozen_too() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let supervisor_id = UserId::generate();
    let mut tx = world.tx(tenant_id).await;
    notes::settings::add_supervisor(&mut tx, supervisor_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let signed = world.signed(tenant_id, UserId::generate()).await;
    let mut tx = world.tx(tenant_id).await;
    signed.clone().cosign(&mut tx, supervisor_id).await.unwrap();
    tx.commit().await.unwrap();
    for sql in [
        "UPDATE notes.notes SET cosigned_by = gen_random_uuid() WHERE tenant_id = $1 AND id = $2",
        "UPDATE notes.notes SET cosigned_by = NULL, cosigned_at = NULL WHERE tenant_id = $1 AND id = $2",
    ] {
        assert_eq!(
            try_sql(&world.db.app, tenant_id, signed.id().into_uuid(), sql).await,
            Err("55000".to_owned()),
            "`{sql}`"
        );
    }
}

#[tokio::test]
async fn another_tenants_note_is_not_found_and_cannot_be_touched() {
    let world = world().await;
    let clinic = world.tenant("Clinic").await;
    let other = world.tenant("Other clinic").await;
    let author_id = UserId::generate();
    let draft = world.draft(clinic, author_id, None).await;

    let mut tx = world.tx(other).await;
    assert!(matches!(
        note::read(&mut tx, &world.keyring, draft.id()).await,
        Err(NoteError::NotFound)
    ));
    assert!(matches!(
        note::load_draft(&mut tx, &world.keyring, draft.id()).await,
        Err(NoteError::NotFound)
    ));
    // The in-memory draft replayed in the other tenant's transaction touches nothing.
    assert!(matches!(
        draft
            .clone()
            .edit(&mut tx, &world.keyring, author_id, crate::soap_content("x"))
            .await,
        Err(NoteError::NotFound)
    ));
    tx.rollback().await.unwrap();
    assert_eq!(
        try_sql(
            &world.db.app,
            other,
            draft.id().into_uuid(),
            "UPDATE notes.notes SET service_at = now() WHERE id = $2 OR tenant_id = $1",
        )
        .await,
        Ok(0)
    );
}
