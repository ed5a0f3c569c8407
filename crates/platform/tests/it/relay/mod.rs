//! The outbox relay on a real PostgreSQL, a real HTTP receiver and a real
//! `nats-server`: ordering per aggregate with two relays, idempotent handlers, signed
//! webhooks with retries, disabling and dead letters, NATS outages and de-duplication,
//! and tenant isolation.

mod nats_server;
mod receiver;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db::TenantTx;
use db::testing::TestDb;
use kernel::TenantId;
use platform::outbox::{self, Outbox};
use platform::relay::admin::{self, NewSubscription};
use platform::relay::{
    Envelope, EventHandler, HandlerError, Handlers, NatsConfig, Relay, RelayConfig,
};
use sqlx::Executor;
use tokio::sync::watch;
use uuid::Uuid;

use nats_server::NatsServer;
use receiver::Receiver;

/// Records each event it handles in `public.relay_effects`, in its own transaction.
struct Recorder;

impl EventHandler for Recorder {
    const CONSUMER: &'static str = "test.recorder";
    const EVENT_TYPES: &'static [&'static str] = &["test.ordered", "test.twice"];

    async fn handle(&self, tx: &mut TenantTx, event: &Envelope) -> Result<(), HandlerError> {
        record_effect(tx, Self::CONSUMER, event).await
    }
}

/// Writes its effect, then fails the first time it sees an event: the effect must roll
/// back with the failure.
#[derive(Default)]
struct FailsFirst {
    seen: Mutex<HashSet<Uuid>>,
}

impl EventHandler for FailsFirst {
    const CONSUMER: &'static str = "test.fails_first";
    const EVENT_TYPES: &'static [&'static str] = &["test.twice"];

    async fn handle(&self, tx: &mut TenantTx, event: &Envelope) -> Result<(), HandlerError> {
        record_effect(tx, Self::CONSUMER, event).await?;
        if self.seen.lock().unwrap().insert(event.id) {
            return Err(HandlerError::Retry("failed after its effect".to_owned()));
        }
        Ok(())
    }
}

/// Refuses, for good, the events whose `n` is 1, after writing its effect.
struct Picky;

impl EventHandler for Picky {
    const CONSUMER: &'static str = "test.picky";
    const EVENT_TYPES: &'static [&'static str] = &["test.picky"];

    async fn handle(&self, tx: &mut TenantTx, event: &Envelope) -> Result<(), HandlerError> {
        record_effect(tx, Self::CONSUMER, event).await?;
        if event.payload["n"] == 1 {
            return Err(HandlerError::Fail("event 1 cannot be handled".to_owned()));
        }
        Ok(())
    }
}

async fn record_effect(
    tx: &mut TenantTx,
    consumer: &str,
    event: &Envelope,
) -> Result<(), HandlerError> {
    sqlx::query(
        "INSERT INTO public.relay_effects (tenant_id, consumer, event_id, aggregate_id, n)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.tenant_id.as_uuid())
    .bind(consumer)
    .bind(event.id)
    .bind(event.aggregate_id)
    .bind(event.payload["n"].as_i64().unwrap())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn handlers() -> Handlers {
    Handlers::new()
        .register(Recorder)
        .register(FailsFirst::default())
        .register(Picky)
}

async fn setup() -> TestDb {
    let db = TestDb::migrated(&schema::migrator()).await;
    // A tenant table of the test's own, under the same rules as ours. No key on
    // purpose: an effect made twice shows up as two rows. `seq` is commit order per
    // aggregate, since an aggregate's next event is handled only after this commits.
    db.admin
        .execute(
            "CREATE TABLE public.relay_effects (
                 seq bigserial, tenant_id uuid NOT NULL, consumer text NOT NULL,
                 event_id uuid NOT NULL, aggregate_id uuid NOT NULL, n bigint NOT NULL);
             ALTER TABLE public.relay_effects ENABLE ROW LEVEL SECURITY;
             ALTER TABLE public.relay_effects FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON public.relay_effects
                 USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
             GRANT SELECT, INSERT ON public.relay_effects TO tenet_app;
             GRANT USAGE ON SEQUENCE public.relay_effects_seq_seq TO tenet_app;",
        )
        .await
        .unwrap();
    db
}

fn config(name: &str) -> RelayConfig {
    let mut config = RelayConfig::new(name);
    config.claim_batch = 8;
    config.lease = Duration::from_secs(10);
    config.poll_interval = Duration::from_millis(10);
    config.backoff_base = Duration::from_millis(100);
    config.backoff_max = Duration::from_millis(400);
    config.webhook_timeout = Duration::from_secs(2);
    config
}

async fn relay(db: &TestDb, config: RelayConfig) -> Relay {
    Relay::new(db.owner.clone(), db.app.clone(), handlers(), config)
        .await
        .unwrap()
}

/// Emits one event with payload `{"n": n}` in a transaction of its own.
async fn emit(
    db: &TestDb,
    tenant_id: TenantId,
    context: Outbox,
    event_type: &'static str,
    aggregate_id: Uuid,
    n: i64,
) -> Uuid {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let event_id = outbox::emit(
        &mut tx,
        context,
        outbox::Event {
            event_type,
            event_version: 1,
            aggregate_type: "test_aggregate",
            aggregate_id,
            payload: serde_json::json!({ "n": n }),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    event_id
}

/// Creates a webhook subscription of `tenant_id` to `<base>/hook/<hook>` and tells the
/// receiver its secret.
async fn subscribe(
    db: &TestDb,
    tenant_id: TenantId,
    receiver: &Receiver,
    base: &str,
    hook: &str,
    event_types: &[&str],
) -> Uuid {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let created = admin::create_subscription(
        &mut tx,
        NewSubscription {
            url: format!("{base}/hook/{hook}"),
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    receiver.set_secret(hook, &created.secret);
    created.subscription.id
}

/// Polls `condition` until it holds; fails the test after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Steps `relay` until `condition` holds.
async fn step_until<F, Fut>(relay: &Relay, what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let step = relay.run_once().await.unwrap();
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        if step.is_idle() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.admin).await.unwrap()
}

async fn deliveries_in(db: &TestDb, consumer_like: &str, state: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM platform.relay_deliveries WHERE consumer LIKE $1 AND state::text = $2",
    )
    .bind(consumer_like)
    .bind(state)
    .fetch_one(&db.admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn each_subscriber_sees_each_aggregates_events_in_order_with_two_relays_running() {
    let db = setup().await;
    let (receiver, base) = Receiver::start().await;
    let tenants: Vec<TenantId> = (0..3).map(|_| TenantId::generate()).collect();
    for (i, tenant_id) in tenants.iter().enumerate() {
        subscribe(
            &db,
            *tenant_id,
            &receiver,
            &base,
            &format!("t{i}"),
            &["test.ordered"],
        )
        .await;
    }
    // Some requests fail, so retries interleave with first attempts.
    receiver.fail_next(5);
    let (stop, shutdown) = watch::channel(false);
    let relays: Vec<_> = (0..2)
        .map(|i| {
            let db_owner = db.owner.clone();
            let db_app = db.app.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let relay = Relay::new(db_owner, db_app, handlers(), config(&format!("relay-{i}")))
                    .await
                    .unwrap();
                Arc::new(relay).run(shutdown).await;
            })
        })
        .collect();

    // Three aggregates per tenant, two in one context and one in another; their
    // events interleaved and emitted while both relays run.
    let aggregates: Vec<(TenantId, Outbox, Uuid)> = tenants
        .iter()
        .flat_map(|tenant_id| {
            [Outbox::Clinical, Outbox::Clinical, Outbox::Platform]
                .into_iter()
                .map(|context| (*tenant_id, context, Uuid::now_v7()))
        })
        .collect();
    let n_per_aggregate = 8;
    for n in 0..n_per_aggregate {
        for (tenant_id, context, aggregate_id) in &aggregates {
            emit(&db, *tenant_id, *context, "test.ordered", *aggregate_id, n).await;
        }
    }
    let n_events = aggregates.len() * usize::try_from(n_per_aggregate).unwrap();

    eventually(
        "every event reached the handler and the webhooks",
        Duration::from_secs(30),
        || async {
            let n_webhook: usize = (0..3)
                .map(|i| receiver.accepted(&format!("t{i}")).len())
                .sum();
            let n_handled = count(
                &db,
                "SELECT count(*) FROM public.relay_effects WHERE consumer = 'test.recorder'",
            )
            .await;
            n_webhook == n_events && usize::try_from(n_handled).unwrap() == n_events
        },
    )
    .await;
    stop.send(true).unwrap();
    for relay in relays {
        relay.await.unwrap();
    }

    // The handler: each aggregate's events committed in order, each exactly once.
    let effects: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT aggregate_id, n FROM public.relay_effects WHERE consumer = 'test.recorder' ORDER BY seq",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_in_order_per_aggregate(&effects, n_per_aggregate);
    // The webhooks: each tenant's receiver accepted its aggregates' events in order.
    for (i, tenant_id) in tenants.iter().enumerate() {
        let accepted = receiver.accepted(&format!("t{i}"));
        assert!(
            accepted
                .iter()
                .all(|r| r.tenant_id == *tenant_id.as_uuid() && r.signature_ok)
        );
        let seen: Vec<(Uuid, i64)> = accepted.iter().map(|r| (r.aggregate_id, r.n)).collect();
        assert_in_order_per_aggregate(&seen, n_per_aggregate);
        assert_eq!(seen.len(), 3 * usize::try_from(n_per_aggregate).unwrap());
    }
    // Every outbox row was handed on, and says when.
    let n_not_delivered = count(
        &db,
        "SELECT (SELECT count(*) FROM clinical.outbox WHERE status <> 'delivered' OR delivered_at IS NULL)
              + (SELECT count(*) FROM platform.outbox WHERE status <> 'delivered' OR delivered_at IS NULL)",
    )
    .await;
    assert_eq!(n_not_delivered, 0);
    assert_eq!(deliveries_in(&db, "%", "pending").await, 0);
    // Both relays took part.
    let n_relays = count(
        &db,
        "SELECT count(DISTINCT relay_id) FROM platform.relay_attempts",
    )
    .await;
    assert_eq!(n_relays, 2);
}

/// Each aggregate's `n`s appear as 0, 1, 2, … with nothing skipped or repeated.
fn assert_in_order_per_aggregate(seen: &[(Uuid, i64)], n_per_aggregate: i64) {
    let mut next: HashMap<Uuid, i64> = HashMap::new();
    for (aggregate_id, n) in seen {
        let expected = next.entry(*aggregate_id).or_insert(0);
        assert_eq!(
            n, expected,
            "aggregate {aggregate_id} out of order: {seen:?}"
        );
        *expected += 1;
    }
    assert!(next.values().all(|n| *n == n_per_aggregate), "{next:?}");
}

#[tokio::test]
async fn a_handler_given_an_event_twice_makes_its_effect_once() {
    let db = setup().await;
    let relay = relay(&db, config("relay")).await;
    let tenant_id = TenantId::generate();
    let aggregate_id = Uuid::now_v7();
    for n in 0..3 {
        emit(
            &db,
            tenant_id,
            Outbox::Clinical,
            "test.twice",
            aggregate_id,
            n,
        )
        .await;
    }
    let lag = admin::relay_lag(&db.owner).await.unwrap();
    let clinical = lag
        .outboxes
        .iter()
        .find(|o| o.context == Outbox::Clinical)
        .unwrap();
    assert_eq!(clinical.n_pending, 3);
    assert!(clinical.oldest_pending_age_secs.is_some());

    step_until(
        &relay,
        "both handlers had every event",
        Duration::from_secs(20),
        || async { deliveries_in(&db, "test.%", "delivered").await == 6 },
    )
    .await;
    // FailsFirst failed once per event after writing its effect: those rolled back.
    let n_attempts = count(
        &db,
        "SELECT count(*) FROM platform.relay_attempts a JOIN platform.relay_deliveries d
             ON d.tenant_id = a.tenant_id AND d.id = a.delivery_id
         WHERE d.consumer = 'test.fails_first'",
    )
    .await;
    assert_eq!(n_attempts, 6);

    // A relay that died after the handlers committed but before it recorded that:
    // every delivery is pending again and goes out a second time.
    db.admin
        .execute(
            "UPDATE platform.relay_deliveries SET state = 'pending', finished_at = NULL, attempts = 0",
        )
        .await
        .unwrap();
    step_until(
        &relay,
        "the redeliveries were confirmed",
        Duration::from_secs(20),
        || async { deliveries_in(&db, "test.%", "delivered").await == 6 },
    )
    .await;

    for consumer in ["test.recorder", "test.fails_first"] {
        let effects: Vec<i64> = sqlx::query_scalar(
            "SELECT n FROM public.relay_effects WHERE consumer = $1 ORDER BY seq",
        )
        .bind(consumer)
        .fetch_all(&db.admin)
        .await
        .unwrap();
        assert_eq!(effects, [0, 1, 2], "{consumer}");
    }
    let n_processed = count(&db, "SELECT count(*) FROM platform.processed_events").await;
    assert_eq!(n_processed, 6);
    let lag = admin::relay_lag(&db.owner).await.unwrap();
    assert!(
        lag.outboxes
            .iter()
            .all(|o| o.n_pending == 0 && o.oldest_pending_age_secs.is_none())
    );
    assert_eq!(lag.n_deliveries_pending, 0);
}

#[tokio::test]
async fn a_handler_that_refuses_an_event_leaves_a_dead_letter_and_its_aggregate_moves_on() {
    let db = setup().await;
    let relay = relay(&db, config("relay")).await;
    let tenant_id = TenantId::generate();
    let aggregate_id = Uuid::now_v7();
    let mut event_ids = Vec::new();
    for n in 0..3 {
        event_ids.push(
            emit(
                &db,
                tenant_id,
                Outbox::Platform,
                "test.picky",
                aggregate_id,
                n,
            )
            .await,
        );
    }
    step_until(
        &relay,
        "every delivery ended",
        Duration::from_secs(20),
        || async { deliveries_in(&db, "test.picky", "pending").await == 0 },
    )
    .await;

    let effects: Vec<i64> = sqlx::query_scalar(
        "SELECT n FROM public.relay_effects WHERE consumer = 'test.picky' ORDER BY seq",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(effects, [0, 2], "the refused event's effect rolled back");
    let dead = admin::list_dead(&mut db.owner.acquire().await.unwrap(), Some(tenant_id), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    // A `Fail` is not retried.
    assert_eq!((dead[0].event_id, dead[0].attempts), (event_ids[1], 1));
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("event 1 cannot be handled")
    );
    // Nor is it recorded as processed: a retry by an operator runs the handler again.
    let processed: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM platform.processed_events WHERE consumer = 'test.picky' ORDER BY event_id",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(processed, [event_ids[0], event_ids[2]]);
}

#[tokio::test]
async fn webhooks_retry_on_schedule_until_the_receiver_recovers_and_every_event_arrives_signed() {
    let db = setup().await;
    let relay = relay(&db, config("relay")).await;
    let (receiver, base) = Receiver::start().await;
    let tenant_id = TenantId::generate();
    let subscription_id = subscribe(&db, tenant_id, &receiver, &base, "h", &[]).await;
    receiver.fail_next(3);
    let aggregate_id = Uuid::now_v7();
    let mut event_ids = Vec::new();
    for n in 0..4 {
        event_ids.push(
            emit(
                &db,
                tenant_id,
                Outbox::Platform,
                "test.webhook",
                aggregate_id,
                n,
            )
            .await,
        );
    }

    step_until(
        &relay,
        "the receiver accepted every event",
        Duration::from_secs(20),
        || async { receiver.accepted("h").len() == 4 },
    )
    .await;

    let accepted = receiver.accepted("h");
    assert_eq!(
        accepted.iter().map(|r| r.n).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        accepted.iter().map(|r| r.event_id).collect::<Vec<_>>(),
        event_ids
    );
    // Every request, failed or not, was signed with the subscription's secret.
    assert!(receiver.log().iter().all(|r| r.signature_ok));
    assert_eq!(receiver.log().len(), 7);

    // The first event took four attempts, each recorded with the answer, and each retry
    // came no earlier than scheduled, after its attempt's own, growing backoff.
    let deliveries = admin::deliveries_of_event(&db.owner, event_ids[0])
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state, "delivered");
    let detail = admin::show(&mut db.owner.acquire().await.unwrap(), deliveries[0].id)
        .await
        .unwrap()
        .unwrap();
    let codes: Vec<Option<i16>> = detail.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(500), Some(200)]);
    assert!(detail.attempts[..3].iter().all(|a| !a.succeeded
        && a.response_excerpt.as_deref() == Some("receiver says no")
        && a.error.as_deref().is_some_and(|e| e.contains("500"))));
    assert!(detail.attempts[3].succeeded && detail.attempts[3].retry_at.is_none());
    for (n, pair) in detail.attempts.windows(2).enumerate() {
        let retry_at = pair[0]
            .retry_at
            .expect("a retried attempt records its schedule");
        assert!(pair[1].started_at >= retry_at, "{:?}", detail.attempts);
        // Counted from the attempt's end: how long the receiver took to answer is not
        // part of the backoff (a first connection took 36 ms once, more than the
        // jitter between two backoffs). Attempt n waits 100 ms · 2^(n-1), capped at
        // 400 ms, half of it fixed and half jittered; recording the attempt after it
        // ended adds a few ms.
        let ended = pair[0].started_at + time::Duration::milliseconds(pair[0].duration_ms.into());
        let backoff: Duration = (retry_at - ended).try_into().unwrap();
        let full = Duration::from_millis(100 << n).min(Duration::from_millis(400));
        assert!(
            backoff >= full / 2 && backoff <= full + Duration::from_millis(100),
            "attempt {}: a backoff of {backoff:?}, not within {:?}..{full:?}: {:?}",
            n + 1,
            full / 2,
            detail.attempts
        );
    }
    // A success ends the subscription's run of failures.
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let subscription = admin::show_subscription(&mut tx, subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            subscription.state.as_str(),
            subscription.consecutive_failures
        ),
        ("active", 0)
    );
}

#[tokio::test]
async fn a_subscription_failing_past_the_threshold_is_disabled_and_resumes_when_enabled() {
    let db = setup().await;
    let mut config = config("relay");
    config.webhook_failures_to_disable = 3;
    let relay = relay(&db, config).await;
    let (receiver, base) = Receiver::start().await;
    let tenant_id = TenantId::generate();
    let subscription_id = subscribe(&db, tenant_id, &receiver, &base, "h", &[]).await;
    receiver.break_hook("h", true);
    let aggregate_id = Uuid::now_v7();
    for n in 0..2 {
        emit(
            &db,
            tenant_id,
            Outbox::Platform,
            "test.webhook",
            aggregate_id,
            n,
        )
        .await;
    }

    let show = |db: &TestDb| {
        let app = db.app.clone();
        async move {
            let mut tx = TenantTx::begin_as(&app, tenant_id, "user:test", None)
                .await
                .unwrap();
            admin::show_subscription(&mut tx, subscription_id)
                .await
                .unwrap()
                .unwrap()
        }
    };
    step_until(
        &relay,
        "the subscription was disabled",
        Duration::from_secs(20),
        || async { show(&db).await.state == "disabled" },
    )
    .await;
    let subscription = show(&db).await;
    assert_eq!(subscription.consecutive_failures, 3);
    assert!(
        subscription
            .disabled_reason
            .unwrap()
            .contains("3 failed attempts")
    );

    // Disabled, it gets nothing more; its deliveries wait, neither lost nor dead.
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        relay.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.log().len(), 3);
    assert_eq!(deliveries_in(&db, "webhook:%", "pending").await, 2);

    receiver.break_hook("h", false);
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    assert!(
        admin::enable_subscription(&mut tx, subscription_id)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    step_until(
        &relay,
        "the waiting events arrived",
        Duration::from_secs(20),
        || async { receiver.accepted("h").len() == 2 },
    )
    .await;
    assert_eq!(
        receiver
            .accepted("h")
            .iter()
            .map(|r| r.n)
            .collect::<Vec<_>>(),
        [0, 1]
    );
}

#[tokio::test]
async fn a_poison_delivery_goes_dead_and_the_events_behind_it_still_arrive() {
    let db = setup().await;
    let mut config = config("relay");
    config.webhook_attempts_max = 3;
    let relay = relay(&db, config).await;
    let (receiver, base) = Receiver::start().await;
    let tenant_id = TenantId::generate();
    subscribe(&db, tenant_id, &receiver, &base, "h", &[]).await;
    receiver.poison(1, true);
    let aggregate_id = Uuid::now_v7();
    let mut event_ids = Vec::new();
    for n in 0..4 {
        event_ids.push(
            emit(
                &db,
                tenant_id,
                Outbox::Clinical,
                "test.webhook",
                aggregate_id,
                n,
            )
            .await,
        );
    }

    step_until(
        &relay,
        "the events behind the poison arrived",
        Duration::from_secs(20),
        || async { receiver.accepted("h").len() == 3 },
    )
    .await;
    assert_eq!(
        receiver
            .accepted("h")
            .iter()
            .map(|r| r.n)
            .collect::<Vec<_>>(),
        [0, 2, 3]
    );

    let dead = admin::list_dead(&mut db.owner.acquire().await.unwrap(), Some(tenant_id), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].event_id, dead[0].attempts), (event_ids[1], 3));
    assert!(dead[0].last_error.as_deref().unwrap().contains("500"));
    let detail = admin::show(&mut db.owner.acquire().await.unwrap(), dead[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.attempts.len(), 3);
    assert!(detail.attempts.iter().all(|a| a.status_code == Some(500)));
    assert_eq!(
        admin::relay_lag(&db.owner).await.unwrap().n_deliveries_dead,
        1
    );

    // An operator fixes the receiver and retries the dead letter: it arrives.
    receiver.poison(1, false);
    assert!(
        admin::retry(&mut db.owner.acquire().await.unwrap(), dead[0].id)
            .await
            .unwrap()
    );
    assert!(
        !admin::retry(&mut db.owner.acquire().await.unwrap(), dead[0].id)
            .await
            .unwrap(),
        "only a dead delivery is retried"
    );
    step_until(
        &relay,
        "the retried event arrived",
        Duration::from_secs(20),
        || async { receiver.accepted("h").len() == 4 },
    )
    .await;
    assert!(
        admin::list_dead(&mut db.owner.acquire().await.unwrap(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !admin::discard(&mut db.owner.acquire().await.unwrap(), dead[0].id)
            .await
            .unwrap(),
        "a delivered one is not discarded"
    );

    // Another poison event, discarded: it stays, as discarded, and is not delivered.
    receiver.poison(4, true);
    emit(
        &db,
        tenant_id,
        Outbox::Clinical,
        "test.webhook",
        aggregate_id,
        4,
    )
    .await;
    step_until(
        &relay,
        "the new poison went dead",
        Duration::from_secs(20),
        || async { deliveries_in(&db, "webhook:%", "dead").await == 1 },
    )
    .await;
    let dead = admin::list_dead(&mut db.owner.acquire().await.unwrap(), None, 10)
        .await
        .unwrap();
    assert!(
        admin::discard(&mut db.owner.acquire().await.unwrap(), dead[0].id)
            .await
            .unwrap()
    );
    assert_eq!(
        admin::show(&mut db.owner.acquire().await.unwrap(), dead[0].id)
            .await
            .unwrap()
            .unwrap()
            .delivery
            .state,
        "discarded"
    );
}

#[tokio::test]
async fn a_tenants_webhook_never_receives_another_tenants_events() {
    let db = setup().await;
    let relay = relay(&db, config("relay")).await;
    let (receiver, base) = Receiver::start().await;
    let (a, b, c) = (
        TenantId::generate(),
        TenantId::generate(),
        TenantId::generate(),
    );
    let subscription_a = subscribe(&db, a, &receiver, &base, "a", &[]).await;
    let subscription_b = subscribe(&db, b, &receiver, &base, "b", &["test.webhook"]).await;
    for tenant_id in [a, b, c] {
        for n in 0..3 {
            emit(
                &db,
                tenant_id,
                Outbox::Clinical,
                "test.webhook",
                Uuid::now_v7(),
                n,
            )
            .await;
        }
    }
    // Of a type b did not subscribe to.
    emit(&db, b, Outbox::Clinical, "test.other", Uuid::now_v7(), 9).await;

    step_until(
        &relay,
        "a and b received their events",
        Duration::from_secs(20),
        || async { receiver.accepted("a").len() == 3 && receiver.accepted("b").len() == 3 },
    )
    .await;
    // Let anything stray arrive before looking.
    for _ in 0..5 {
        relay.run_once().await.unwrap();
    }
    let log = receiver.log();
    assert!(
        log.iter()
            .filter(|r| r.hook == "a")
            .all(|r| r.tenant_id == *a.as_uuid())
    );
    assert!(
        log.iter()
            .filter(|r| r.hook == "b")
            .all(|r| r.tenant_id == *b.as_uuid() && r.n != 9)
    );
    assert_eq!(log.len(), 6);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM platform.relay_deliveries WHERE sink = 'webhook'"
        )
        .await,
        6
    );

    // A tenant sees and manages only its own subscriptions.
    let mut tx = TenantTx::begin_as(&db.app, a, "user:test", None)
        .await
        .unwrap();
    let listed: Vec<Uuid> = admin::list_subscriptions(&mut tx)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, [subscription_a]);
    assert!(
        !admin::disable_subscription(&mut tx, subscription_b)
            .await
            .unwrap()
    );
    let snooped: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.webhook_subscriptions")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(snooped, 1);
}

#[tokio::test]
async fn nats_deliveries_wait_out_an_outage_and_the_stream_holds_each_event_once() {
    let db = setup().await;
    let mut server = NatsServer::start().await;
    let mut config = config("relay");
    let mut nats_config = NatsConfig::new(server.url());
    nats_config.ack_timeout = Duration::from_secs(1);
    config.nats = Some(nats_config);
    let relay = relay(&db, config).await;
    let tenant_id = TenantId::generate();
    let aggregate_id = Uuid::now_v7();
    let mut event_ids = Vec::new();
    for n in 0..3 {
        event_ids.push(
            emit(
                &db,
                tenant_id,
                Outbox::Clinical,
                "test.nats",
                aggregate_id,
                n,
            )
            .await,
        );
    }
    step_until(
        &relay,
        "the first events were acknowledged",
        Duration::from_secs(20),
        || async { deliveries_in(&db, "nats", "delivered").await == 3 },
    )
    .await;

    server.stop().await;
    for n in 3..6 {
        event_ids.push(
            emit(
                &db,
                tenant_id,
                Outbox::Clinical,
                "test.nats",
                aggregate_id,
                n,
            )
            .await,
        );
    }
    // Without the server there is no PubAck: the events are handed to their
    // deliveries, which stay pending, neither delivered nor dead.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        relay.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM clinical.outbox WHERE status = 'pending'"
        )
        .await,
        0
    );
    assert_eq!(deliveries_in(&db, "nats", "pending").await, 3);
    assert_eq!(deliveries_in(&db, "nats", "delivered").await, 3);

    server.resume().await;
    step_until(
        &relay,
        "the waiting events were acknowledged",
        Duration::from_secs(30),
        || async { deliveries_in(&db, "nats", "delivered").await == 6 },
    )
    .await;

    // A relay that died between the PubAck and recording it publishes again.
    db.admin
        .execute(
            "UPDATE platform.relay_deliveries SET state = 'pending', finished_at = NULL, attempts = 0
             WHERE consumer = 'nats'",
        )
        .await
        .unwrap();
    step_until(
        &relay,
        "the republished events were acknowledged",
        Duration::from_secs(20),
        || async { deliveries_in(&db, "nats", "delivered").await == 6 },
    )
    .await;

    let client = async_nats::connect(server.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("TENET_EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 6);
    let mut in_stream = Vec::new();
    for sequence in 1..=6 {
        let message = stream.get_raw_message(sequence).await.unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("tenet.{tenant_id}.test.nats")
        );
        let envelope: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let msg_id = message
            .headers
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str()
            .to_owned();
        assert_eq!(envelope["id"].as_str().unwrap(), msg_id);
        in_stream.push((
            msg_id.parse::<Uuid>().unwrap(),
            envelope["payload"]["n"].as_i64().unwrap(),
        ));
    }
    // Each event once, in the order it occurred.
    assert_eq!(
        in_stream,
        event_ids.into_iter().zip(0..6).collect::<Vec<_>>()
    );
}
