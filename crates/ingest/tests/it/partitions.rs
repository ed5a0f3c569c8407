//! `ingest.messages` in daily partitions: de-duplication through `ingest.message_keys`
//! across partitions and within a group, the default partition as a safety net,
//! retention by dropping whole days, what the service role may not do, tenant
//! isolation through partitions, the migration of existing rows, and the audited read
//! of a raw message.

use std::time::Duration;

use bytes::Bytes;
use db::TenantTx;
use db::testing::TestDb;
use hl7::ack::{AckCode, AckMode};
use identity::keyring::{Keyring, MasterKey};
use ingest::admin;
use ingest::partitions::{self, Retention};
use ingest::store::{Committer, CommitterConfig, CommitterHandle, NewMessage, Status, Stored};
use kernel::TenantId;
use sqlx::PgPool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Ingest {
    pub(crate) db: TestDb,
    pub(crate) tenant_id: TenantId,
    pub(crate) keyring: Keyring,
    pub(crate) committer: CommitterHandle,
}

/// A tenant with its data key, a committer, and today's partitions.
pub(crate) async fn setup(config: CommitterConfig) -> Ingest {
    let db = TestDb::migrated(&schema::migrator()).await;
    partitions::ensure(&db.owner, LOCK_TIMEOUT).await.unwrap();
    let keyring = Keyring::new(MasterKey::generate());
    let tenant_id = identity::tenant::create(&db.app, &keyring, "Harbor Lab")
        .await
        .unwrap();
    let (committer, _task) = Committer::spawn(db.app.clone(), keyring.clone(), config);
    Ingest {
        db,
        tenant_id,
        keyring,
        committer,
    }
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// Noon (UTC) `n` days ago: far from a partition bound.
fn days_ago(n: i64) -> OffsetDateTime {
    (today() - time::Duration::days(n))
        .with_hms(12, 0, 0)
        .unwrap()
        .assume_utc()
}

fn partition_name(at: OffsetDateTime) -> String {
    let date = at.date();
    format!(
        "messages_{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// A parsed ADT from LAB^HOSP with MSH-10 `control_id`, received at `at`, with an id
/// from the same instant (as the listener makes them), answered `ack`.
pub(crate) fn message(at: OffsetDateTime, control_id: &str, ack: &str) -> NewMessage {
    let nanos = at.nanosecond();
    let id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(at.unix_timestamp()).unwrap(),
        nanos,
    ));
    let ack_code = AckCode::from_code(ack).unwrap();
    NewMessage {
        id,
        received_at: at,
        listener: "test".to_owned(),
        sending_application: Some("LAB".to_owned()),
        sending_facility: Some("HOSP".to_owned()),
        control_id: Some(control_id.to_owned()),
        message_type: Some("ADT".to_owned()),
        trigger_event: Some("A01".to_owned()),
        processing_id: Some("P".to_owned()),
        version: Some("2.5.1".to_owned()),
        ack_mode: if ack.starts_with('C') {
            AckMode::Enhanced
        } else {
            AckMode::Original
        },
        status: Status::Accepted,
        ack_code,
        error: None,
        // Storage only: these tests are about partitions, not processing.
        process: false,
        patient_identifier: None,
        application_ack_type: None,
        reply_to: None,
        raw: Bytes::from(format!(
            "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ADT^A01|{control_id}|P|2.5.1\rPID|1||12345^^^HOSP^MR||DOE^JANE\r"
        )),
    }
}

/// The table a message's row is in, as the superuser sees it (`None`: not stored).
async fn table_of(db: &TestDb, id: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM ingest.messages WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.admin)
        .await
        .unwrap()
}

async fn create_partition(db: &TestDb, at: OffsetDateTime) {
    let created: Option<String> = sqlx::query_scalar("SELECT ingest.create_partition($1)")
        .bind(at.date())
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(created, Some(partition_name(at)));
}

async fn partition_exists(db: &TestDb, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass('ingest.' || $1) IS NOT NULL")
        .bind(name)
        .fetch_one(&db.admin)
        .await
        .unwrap()
}

/// How many of its messages the tenant sees with `filter`, as the service role.
pub(crate) async fn visible(pool: &PgPool, tenant_id: TenantId, filter: &str) -> i64 {
    let mut tx = TenantTx::begin_as(pool, tenant_id, "system", None)
        .await
        .unwrap();
    let n = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM ingest.messages WHERE {filter}"
    ))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    n
}

async fn assert_check_clean(db: &TestDb) {
    let violations = schema::check::run(&db.owner).await.unwrap();
    assert!(
        violations.is_empty(),
        "{}",
        schema::check::render_text(&violations)
    );
    let findings = partitions::findings(&db.owner).await.unwrap();
    assert!(findings.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn a_resend_days_later_is_a_duplicate_across_partitions_answered_like_the_first() {
    let ingest = setup(CommitterConfig::default()).await;
    let earlier = days_ago(10);
    create_partition(&ingest.db, earlier).await;
    let first = message(earlier, "X1", "AA");
    let first_id = first.id;
    assert_eq!(
        ingest
            .committer
            .store(ingest.tenant_id, first)
            .await
            .unwrap(),
        Stored::New
    );
    // Today, in enhanced mode: a different answer of its own, but a duplicate.
    let resend = message(OffsetDateTime::now_utc(), "X1", "CA");
    let resend_id = resend.id;
    assert_eq!(
        ingest
            .committer
            .store(ingest.tenant_id, resend)
            .await
            .unwrap(),
        Stored::Duplicate {
            ack_code: AckCode::from_code("AA").unwrap()
        }
    );
    assert_eq!(
        table_of(&ingest.db, first_id).await,
        Some(format!("ingest.{}", partition_name(earlier)))
    );
    assert_eq!(table_of(&ingest.db, resend_id).await, None);
    assert_eq!(
        visible(&ingest.db.app, ingest.tenant_id, "control_id = 'X1'").await,
        1
    );
    assert_check_clean(&ingest.db).await;
}

#[tokio::test]
async fn duplicates_within_one_group_are_stored_once_and_answered_like_the_first_of_them() {
    let ingest = setup(CommitterConfig {
        commits_in_flight: 1,
        group_max: 3,
        queue_max: 16,
    })
    .await;
    let now = OffsetDateTime::now_utc();
    // One group commits at a time: while a first message waits on a lock of the
    // table, the three below queue, and then form the next group together.
    let mut lock = ingest.db.admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE ingest.messages IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let blocked = {
        let committer = ingest.committer.clone();
        let tenant_id = ingest.tenant_id;
        let message = message(now, "G0", "AA");
        tokio::spawn(async move { committer.store(tenant_id, message).await.unwrap() })
    };
    lock_waits_until(&ingest.db, 1).await;
    let sent = [
        message(now, "G1", "AA"),
        message(now, "G1", "CA"),
        message(now, "G2", "AA"),
    ];
    let mut stores = Vec::new();
    for message in sent.clone() {
        let committer = ingest.committer.clone();
        let tenant_id = ingest.tenant_id;
        stores.push(tokio::spawn(async move {
            committer.store(tenant_id, message).await.unwrap()
        }));
        // In this order: the first G1 is the first of the group.
        let queued = stores.len();
        let backlog = ingest.committer.backlog();
        wait_until(|| backlog.get() == queued).await;
    }
    lock.commit().await.unwrap();
    assert_eq!(blocked.await.unwrap(), Stored::New);
    let mut outcomes = Vec::new();
    for store in stores {
        outcomes.push(store.await.unwrap());
    }
    assert_eq!(outcomes[0], Stored::New, "the first of the group is stored");
    assert_eq!(
        outcomes[1],
        Stored::Duplicate {
            ack_code: sent[0].ack_code
        }
    );
    assert_eq!(outcomes[2], Stored::New);
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM ingest.messages WHERE tenant_id = $1 AND control_id <> 'G0'",
    )
    .bind(ingest.tenant_id.as_uuid())
    .fetch_one(&ingest.db.admin)
    .await
    .unwrap();
    assert_eq!(transactions, 1, "the three were one group");
    assert_eq!(visible(&ingest.db.app, ingest.tenant_id, "true").await, 3);
    let n_keys: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest.message_keys")
        .fetch_one(&ingest.db.admin)
        .await
        .unwrap();
    assert_eq!(n_keys, 3);
}

/// Waits (at most 10 s) until `n` sessions of the test's database wait on a lock.
pub(crate) async fn lock_waits_until(db: &TestDb, n: i64) {
    let started = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db.admin)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{waiting} sessions wait on a lock, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (at most 10 s) until `done` holds.
pub(crate) async fn wait_until(mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not done within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_message_for_a_day_without_a_partition_lands_in_the_default_partition_and_is_still_found()
{
    let ingest = setup(CommitterConfig::default()).await;
    let lost_day = days_ago(40);
    let sent = message(lost_day, "D1", "AA");
    let id = sent.id;
    assert_eq!(
        ingest
            .committer
            .store(ingest.tenant_id, sent)
            .await
            .unwrap(),
        Stored::New
    );
    assert_eq!(
        table_of(&ingest.db, id).await.as_deref(),
        Some("ingest.messages_default")
    );
    // Found by the tenant, by an operator, and as the original of a resend.
    assert_eq!(
        visible(&ingest.db.app, ingest.tenant_id, &format!("id = '{id}'")).await,
        1
    );
    let shown = admin::show(&mut ingest.db.owner.acquire().await.unwrap(), id)
        .await
        .unwrap()
        .expect("an operator finds it");
    assert_eq!(shown.control_id.as_deref(), Some("D1"));
    assert_eq!(
        ingest
            .committer
            .store(
                ingest.tenant_id,
                message(OffsetDateTime::now_utc(), "D1", "AA")
            )
            .await
            .unwrap(),
        Stored::Duplicate {
            ack_code: AckCode::from_code("AA").unwrap()
        }
    );
    // `tenet check` says so.
    let findings = partitions::findings(&ingest.db.owner).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].check, "ingest-default-partition");
    assert!(
        findings[0].detail.starts_with("1 message(s)"),
        "{findings:?}"
    );

    // Maintenance gives the day its partition and moves the message in.
    let created = partitions::ensure(&ingest.db.owner, LOCK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(created, [partition_name(lost_day)]);
    assert_eq!(
        table_of(&ingest.db, id).await,
        Some(format!("ingest.{}", partition_name(lost_day)))
    );
    assert_eq!(
        visible(&ingest.db.app, ingest.tenant_id, &format!("id = '{id}'")).await,
        1
    );
    assert_check_clean(&ingest.db).await;
}

#[tokio::test]
async fn retention_drops_whole_days_past_it_with_their_keys_and_keeps_the_rest() {
    let ingest = setup(CommitterConfig::default()).await;
    let (old, recent) = (days_ago(100), days_ago(10));
    create_partition(&ingest.db, old).await;
    create_partition(&ingest.db, recent).await;
    let old_message = message(old, "OLD", "AA");
    let recent_message = message(recent, "RECENT", "AA");
    let (old_id, recent_id) = (old_message.id, recent_message.id);
    for sent in [old_message, recent_message] {
        assert_eq!(
            ingest
                .committer
                .store(ingest.tenant_id, sent)
                .await
                .unwrap(),
            Stored::New
        );
    }

    // Keeping them forever drops nothing; a dry run only says what would go.
    let kept = partitions::apply_retention(&ingest.db.owner, Retention::Forever, LOCK_TIMEOUT)
        .await
        .unwrap();
    assert!(kept.partitions.is_empty());
    let plan = partitions::expired(&ingest.db.owner, Retention::Days(90))
        .await
        .unwrap();
    let planned: Vec<&str> = plan.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(planned, [partition_name(old)]);
    assert!(partition_exists(&ingest.db, &partition_name(old)).await);

    let report = partitions::apply_retention(&ingest.db.owner, Retention::Days(90), LOCK_TIMEOUT)
        .await
        .unwrap();
    let dropped: Vec<&str> = report.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(dropped, [partition_name(old)]);
    assert_eq!(report.n_keys_deleted, 1);
    assert!(!partition_exists(&ingest.db, &partition_name(old)).await);
    assert!(partition_exists(&ingest.db, &partition_name(recent)).await);
    assert!(partition_exists(&ingest.db, &partition_name(OffsetDateTime::now_utc())).await);
    assert_eq!(table_of(&ingest.db, old_id).await, None);
    assert_eq!(
        visible(&ingest.db.app, ingest.tenant_id, "true").await,
        1,
        "the newer message stays"
    );
    assert!(table_of(&ingest.db, recent_id).await.is_some());

    // De-duplication holds within the retention window only.
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        ingest
            .committer
            .store(ingest.tenant_id, message(now, "OLD", "AA"))
            .await
            .unwrap(),
        Stored::New
    );
    assert_eq!(
        ingest
            .committer
            .store(ingest.tenant_id, message(now, "RECENT", "AA"))
            .await
            .unwrap(),
        Stored::Duplicate {
            ack_code: AckCode::from_code("AA").unwrap()
        }
    );
    // A second run finds nothing more to do.
    let again = partitions::apply_retention(&ingest.db.owner, Retention::Days(90), LOCK_TIMEOUT)
        .await
        .unwrap();
    assert!(again.partitions.is_empty() && again.n_keys_deleted == 0);
    assert_check_clean(&ingest.db).await;
}

#[tokio::test]
async fn the_service_role_can_neither_create_nor_drop_partitions() {
    let ingest = setup(CommitterConfig::default()).await;
    let today_partition = partition_name(OffsetDateTime::now_utc());
    for statement in [
        "CREATE TABLE ingest.messages_29991231 (LIKE ingest.messages)".to_owned(),
        "CREATE TABLE ingest.messages_29991231 PARTITION OF ingest.messages \
         FOR VALUES FROM ('2999-12-31') TO ('3000-01-01')"
            .to_owned(),
        format!("DROP TABLE ingest.{today_partition}"),
        format!("ALTER TABLE ingest.messages DETACH PARTITION ingest.{today_partition}"),
        "TRUNCATE ingest.messages".to_owned(),
        "SELECT ingest.ensure_partitions(1)".to_owned(),
        "SELECT ingest.create_partition('2999-12-31')".to_owned(),
        "SELECT * FROM ingest.drop_partitions_before('2999-12-31', false, 1000)".to_owned(),
        "SELECT ingest.delete_expired_keys('2999-12-31', 1000)".to_owned(),
    ] {
        let error = sqlx::raw_sql(&statement)
            .execute(&ingest.db.app)
            .await
            .expect_err(&statement);
        let code = error
            .as_database_error()
            .and_then(|error| error.code())
            .map(|code| code.into_owned());
        assert!(
            matches!(code.as_deref(), Some("42501")),
            "{statement}: {error}"
        );
    }
    assert!(partition_exists(&ingest.db, &today_partition).await);
    let owned_by_app: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'ingest' AND pg_get_userbyid(c.relowner) <> 'tenet_owner'",
    )
    .fetch_one(&ingest.db.admin)
    .await
    .unwrap();
    assert_eq!(owned_by_app, 0, "every partition belongs to the owner role");
}

#[tokio::test]
async fn another_tenant_sees_none_of_the_messages_even_through_a_partition_granted_to_it() {
    let ingest = setup(CommitterConfig::default()).await;
    let other = identity::tenant::create(&ingest.db.app, &ingest.keyring, "Other Lab")
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    for (tenant_id, control_id) in [(ingest.tenant_id, "MINE"), (other, "THEIRS")] {
        assert_eq!(
            ingest
                .committer
                .store(tenant_id, message(now, control_id, "AA"))
                .await
                .unwrap(),
            Stored::New
        );
    }
    // The same sender and MSH-10 in another tenant is not a duplicate.
    assert_eq!(
        ingest
            .committer
            .store(other, message(now, "MINE", "AA"))
            .await
            .unwrap(),
        Stored::New
    );
    assert_eq!(visible(&ingest.db.app, ingest.tenant_id, "true").await, 1);
    assert_eq!(visible(&ingest.db.app, other, "true").await, 2);
    assert_eq!(
        visible(&ingest.db.app, other, "control_id = 'MINE'").await,
        1,
        "only its own MINE"
    );

    // A partition named directly: no grant at all.
    let partition = partition_name(now);
    let direct = format!("SELECT count(*) FROM ingest.{partition}");
    let refused = sqlx::query_scalar::<_, i64>(&direct)
        .fetch_one(&ingest.db.app)
        .await
        .expect_err("the service role has no grant on a partition");
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("42501")
    );
    // Granted by a careless operator, its own forced policy still holds.
    sqlx::raw_sql(&format!(
        "GRANT SELECT ON ingest.{partition}, ingest.messages_default, ingest.message_keys TO tenet_app"
    ))
    .execute(&ingest.db.admin)
    .await
    .unwrap();
    for (tenant_id, n) in [(ingest.tenant_id, 1), (other, 2)] {
        let mut tx = TenantTx::begin_as(&ingest.db.app, tenant_id, "system", None)
            .await
            .unwrap();
        let (n_rows, n_foreign): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1) FROM ingest.{partition}"
        ))
        .bind(tenant_id.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!((n_rows, n_foreign), (n, 0));
        let n_foreign_keys: i64 =
            sqlx::query_scalar("SELECT count(*) FROM ingest.message_keys WHERE tenant_id <> $1")
                .bind(tenant_id.as_uuid())
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(n_foreign_keys, 0);
        tx.rollback().await.unwrap();
    }
    // With no tenant in the transaction, nothing at all.
    let n_untenanted: i64 = sqlx::query_scalar(&direct)
        .fetch_one(&ingest.db.app)
        .await
        .unwrap();
    assert_eq!(n_untenanted, 0);
    // And a tenant cannot write a row as another.
    let mut tx = TenantTx::begin_as(&ingest.db.app, other, "system", None)
        .await
        .unwrap();
    let forged = sqlx::query(
        "INSERT INTO ingest.messages (tenant_id, id, received_at, listener, ack_mode, status,
             ack_code, raw_sealed, data_key_id)
         VALUES ($1, $2, now(), 'x', 'original', 'accepted', 'AA', '\\x00', $2)",
    )
    .bind(ingest.tenant_id.as_uuid())
    .bind(Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .expect_err("row-level security refuses another tenant's row");
    assert_eq!(
        forged.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501")
    );
}

#[tokio::test]
async fn reading_a_raw_message_is_audited_and_another_tenant_cannot_read_it() {
    let ingest = setup(CommitterConfig::default()).await;
    let sent = message(OffsetDateTime::now_utc(), "RAW1", "AA");
    let (id, raw) = (sent.id, sent.raw.clone());
    ingest
        .committer
        .store(ingest.tenant_id, sent)
        .await
        .unwrap();
    let n_reads = async |tenant_id: TenantId| -> i64 {
        let mut tx = TenantTx::begin_as(&ingest.db.app, tenant_id, "system", None)
            .await
            .unwrap();
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM audit.events WHERE action = 'ingest_message.read'
               AND details->>'message_id' = $1",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        n
    };

    let mut tx = TenantTx::begin_as(&ingest.db.app, ingest.tenant_id, "operator", None)
        .await
        .unwrap();
    let contents = admin::read_raw(&mut tx, &ingest.keyring, id, "operations")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(contents.expose().as_slice(), raw.as_ref());
    assert_eq!(format!("{contents:?}"), "[redacted]");
    assert_eq!(n_reads(ingest.tenant_id).await, 1);

    // A read that rolls back leaves no event, and shows nothing it could not record.
    let mut tx = TenantTx::begin_as(&ingest.db.app, ingest.tenant_id, "operator", None)
        .await
        .unwrap();
    admin::read_raw(&mut tx, &ingest.keyring, id, "operations")
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(n_reads(ingest.tenant_id).await, 1);

    let other = identity::tenant::create(&ingest.db.app, &ingest.keyring, "Other Lab")
        .await
        .unwrap();
    let mut tx = TenantTx::begin_as(&ingest.db.app, other, "operator", None)
        .await
        .unwrap();
    let refused = admin::read_raw(&mut tx, &ingest.keyring, id, "operations").await;
    assert!(
        matches!(refused, Err(admin::ReadRawError::NotFound(found)) if found == id),
        "{refused:?}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(n_reads(other).await, 0);
}

#[tokio::test]
async fn the_partitioning_migration_keeps_existing_messages_and_their_duplicates() {
    let db = TestDb::empty().await;
    let all = schema::migrator();
    let before = db::Migrator::new(
        all.migrations()
            .iter()
            .filter(|migration| migration.version < 2026112502)
            .copied()
            .collect(),
    );
    before.up(&db.owner).await.unwrap();
    let keyring = Keyring::new(MasterKey::generate());
    let tenant_id = identity::tenant::create(&db.app, &keyring, "Harbor Lab")
        .await
        .unwrap();
    // Rows of the unpartitioned table, on three days; one did not parse.
    let (old, recent, now) = (days_ago(30), days_ago(2), OffsetDateTime::now_utc());
    let mut ids = Vec::new();
    for (at, control_id) in [(old, Some("M1")), (recent, Some("M2")), (now, None)] {
        let id = message(at, "unused", "AA").id;
        ids.push(id);
        sqlx::query(
            "INSERT INTO ingest.messages (tenant_id, id, received_at, listener,
                 sending_application, sending_facility, control_id, ack_mode, status,
                 ack_code, raw_sealed, data_key_id)
             VALUES ($1, $2, $3, 'test', $4, $5, $6, 'original', 'accepted', 'AA', '\\x00', $2)",
        )
        .bind(tenant_id.as_uuid())
        .bind(id)
        .bind(at)
        .bind(control_id.map(|_| "LAB"))
        .bind(control_id.map(|_| "HOSP"))
        .bind(control_id)
        .execute(&db.admin)
        .await
        .unwrap();
    }

    let n_later = all
        .migrations()
        .iter()
        .filter(|migration| migration.version >= 2026112502)
        .count();
    assert_eq!(all.up(&db.owner).await.unwrap(), n_later);
    for (id, at) in ids.iter().zip([old, recent, now]) {
        assert_eq!(
            table_of(&db, *id).await,
            Some(format!("ingest.{}", partition_name(at)))
        );
    }
    assert_eq!(visible(&db.app, tenant_id, "true").await, 3);
    let n_keys: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest.message_keys")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n_keys, 2, "a key for each parsed message");
    // A week of partitions ahead, and the catalog rules hold for every one.
    for ahead in 0..=7 {
        let at = OffsetDateTime::now_utc() + time::Duration::days(ahead);
        assert!(partition_exists(&db, &partition_name(at)).await, "{ahead}");
    }
    assert_check_clean(&db).await;
    let (committer, _task) = Committer::spawn(db.app.clone(), keyring, CommitterConfig::default());
    assert_eq!(
        committer
            .store(tenant_id, message(now, "M1", "CA"))
            .await
            .unwrap(),
        Stored::Duplicate {
            ack_code: AckCode::from_code("AA").unwrap()
        }
    );

    // And back: one plain table with the same rows, then partitioned again.
    assert_eq!(all.down(&db.owner, n_later).await.unwrap(), n_later);
    let kind: String = sqlx::query_scalar(
        "SELECT relkind::text FROM pg_class WHERE oid = 'ingest.messages'::regclass",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(kind, "r");
    assert_eq!(visible(&db.app, tenant_id, "true").await, 3);
    assert_eq!(all.up(&db.owner).await.unwrap(), n_later);
    assert_eq!(visible(&db.app, tenant_id, "true").await, 3);
    assert_check_clean(&db).await;
}

#[tokio::test]
async fn raw_messages_stay_in_the_row_in_every_partition_including_ones_made_later() {
    let ingest = setup(CommitterConfig::default()).await;
    let earlier = days_ago(10);
    create_partition(&ingest.db, earlier).await;
    let storage: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attstorage::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'raw_sealed' \
         WHERE i.inhparent = 'ingest.messages'::regclass ORDER BY 1",
    )
    .fetch_all(&ingest.db.admin)
    .await
    .unwrap();
    assert!(storage.len() >= 3, "{storage:?}");
    assert!(
        storage.iter().all(|(_, storage)| storage == "m"),
        "{storage:?}"
    );
    // A message of a few KB (the sealed bytes do not compress) is written in the row,
    // not to the partition's TOAST table.
    let mut sent = message(earlier, "BIG1", "AA");
    let mut raw = sent.raw.to_vec();
    raw.extend(
        std::iter::repeat_n(b"OBX|1|NM|1^X||42|mg|||||F\r".as_slice(), 200)
            .flatten()
            .copied(),
    );
    assert!(raw.len() > 5000);
    sent.raw = Bytes::from(raw);
    assert_eq!(
        ingest
            .committer
            .store(ingest.tenant_id, sent)
            .await
            .unwrap(),
        Stored::New
    );
    let toast_bytes: i64 = sqlx::query_scalar(
        "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = $1::regclass",
    )
    .bind(format!("ingest.{}", partition_name(earlier)))
    .fetch_one(&ingest.db.admin)
    .await
    .unwrap();
    assert_eq!(toast_bytes, 0);
}
