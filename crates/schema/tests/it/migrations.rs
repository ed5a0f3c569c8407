//! The migrations, run both ways on a real database.

use db::MigrationError;
use db::testing::TestDb;
use schema::check;

#[test]
fn the_migrator_holds_every_context_in_version_order() {
    let migrator = schema::migrator();
    let versions: Vec<i64> = migrator.migrations().iter().map(|m| m.version).collect();
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1]),
        "{versions:?}"
    );
    for context in check::CONTEXT_SCHEMAS {
        assert!(
            migrator.migrations().iter().any(|m| m.context == *context),
            "no migration for the {context} context"
        );
    }
}

#[tokio::test]
async fn migrations_run_up_then_all_down_leaving_nothing_then_up_again() {
    let db = TestDb::empty().await;
    let migrator = schema::migrator();
    let n_migrations = migrator.migrations().len();

    assert_eq!(migrator.up(&db.owner).await.unwrap(), n_migrations);
    assert_eq!(
        migrator.down(&db.owner, n_migrations).await.unwrap(),
        n_migrations
    );

    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = ANY ($1)")
            .bind(check::CONTEXT_SCHEMAS)
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert!(schemas.is_empty(), "schemas left behind: {schemas:?}");
    let enums: Vec<String> =
        sqlx::query_scalar("SELECT typnamespace::regnamespace::text || '.' || typname FROM pg_type WHERE typtype = 'e'")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert!(enums.is_empty(), "enum types left behind: {enums:?}");
    let relations: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
         ORDER BY 1",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    // The ledger itself stays: it records that nothing is applied.
    assert_eq!(relations, ["public.tenet_schema_migrations"]);
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert!(functions.is_empty(), "functions left behind: {functions:?}");
    let n_ledger_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.tenet_schema_migrations")
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(n_ledger_rows, 0);

    assert_eq!(migrator.up(&db.owner).await.unwrap(), n_migrations);
    let violations = check::run(&db.owner).await.unwrap();
    assert!(violations.is_empty(), "{}", check::render_text(&violations));
}

#[tokio::test]
async fn a_second_up_is_a_no_op() {
    let migrator = schema::migrator();
    let db = TestDb::migrated(&migrator).await;

    assert_eq!(migrator.up(&db.owner).await.unwrap(), 0);
    let status = migrator.status(&db.owner).await.unwrap();
    assert!(status.is_current(), "{status:?}");
    assert_eq!(status.applied.len(), migrator.migrations().len());
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let migrator = schema::migrator();
    let db = TestDb::migrated(&migrator).await;
    let mut migrations = migrator.migrations().to_vec();
    let edited = migrations.last_mut().expect("at least one migration");
    // Same version, different SQL: what a developer does who edits an applied file.
    let up: &'static str = format!("{}\n-- an afterthought\n", edited.up).leak();
    edited.up = up;
    let edited_version = edited.version;

    let result = db::Migrator::new(migrations).up(&db.owner).await;

    assert!(
        matches!(result, Err(MigrationError::Edited { version, .. }) if version == edited_version),
        "{result:?}"
    );
    let status = migrator.status(&db.owner).await.unwrap();
    assert!(
        status.is_current(),
        "the refused run changed the ledger: {status:?}"
    );
}
