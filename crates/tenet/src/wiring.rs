//! Building the running system: pools, keys, the router, background tasks, and
//! shutdown on Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use db::TenantTx;
use identity::keyring::Keyring;
use ingest::listener::Listener;
use ingest::partitions::Retention;
use ingest::store::{Committer, CommitterConfig};
use platform::jobs::worker::{Worker, WorkerConfig};
use platform::jobs::{Noop, Probe, Registry};
use platform::relay::{Handlers, NatsConfig, Relay, RelayConfig};
use platform::sagas::{SagaRegistry, SagaStep};
use platform::schedules::scheduler::{Scheduler, SchedulerConfig};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{Global, MllpRole, ServeArgs};
use crate::listeners;
use crate::settings::{self, Database};

/// Runs this node's roles (the API, the background work, the MLLP listeners) until a
/// shutdown signal, then returns.
pub async fn serve(global: &Global, args: &ServeArgs, database: &Database) -> anyhow::Result<()> {
    let roles = args.roles();
    // The MLLP listeners are checked whole before anything starts: a mistake in their
    // configuration fails the start, not a message later.
    let mut mllp_specs = listeners::load(args)?;
    match roles.mllp {
        MllpRole::Required if mllp_specs.is_empty() => bail!(
            "this node has the mllp role but no MLLP listener is configured: \
             give --mllp-config FILE, or --mllp ADDR --mllp-tenant ID"
        ),
        MllpRole::Off if !mllp_specs.is_empty() => {
            tracing::info!(
                n_listeners = mllp_specs.len(),
                "MLLP listeners are configured, but this node's roles leave them out"
            );
            mllp_specs.clear();
        }
        _ => {}
    }
    if !mllp_specs.is_empty() && u32::from(args.mllp_commits_in_flight) > args.db_connections {
        bail!(
            "--mllp-commits-in-flight {} needs as many connections: --db-connections is {}",
            args.mllp_commits_in_flight,
            args.db_connections
        );
    }
    let (owner, app) = database
        .config
        .connect(args.db_connections)
        .await
        .context("connecting to the database")?;
    let migrator = schema::migrator();
    let status = migrator.status(&owner).await?;
    if !status.is_current() {
        anyhow::bail!(
            "the database has {} pending migration(s); run `tenet migrate` first",
            status.pending.len()
        );
    }
    listeners::check_tenants(&app, &mllp_specs).await?;
    let keyring = Keyring::new(settings::master_key(global)?);
    let documents = settings::documents_storage(global)?;
    tracing::info!(store = %documents.description(), "documents stored");
    let smtp = settings::smtp(args)?.map(Arc::new);
    let checkpoint_key = Arc::new(settings::checkpoint_key(global)?);
    let oidc = args.oidc_issuer.as_ref().map(|issuer| {
        let mut config = oidc::OidcConfig::new(issuer.clone(), args.oidc_audience.clone());
        config.jwks_url = args.oidc_jwks_url.clone();
        config.tenant_claim = args.oidc_tenant_claim.clone();
        oidc::OidcVerifier::new(config)
    });
    // The job worker, the outbox relay and the scheduler are the background half of a
    // node: the worker role, when it has workers.
    let background = roles.worker && args.workers > 0;
    let job_worker = background.then(|| {
        let mut config =
            WorkerConfig::new(worker_id()).with_lease(Duration::from_secs(args.job_lease_secs));
        config.concurrency = usize::from(args.workers);
        config.queue_limits = args.queue_limits.iter().cloned().collect();
        Arc::new(Worker::new(
            owner.clone(),
            app.clone(),
            job_registry(&keyring, smtp.is_some(), &documents),
            config,
        ))
    });
    let relay = if background {
        let mut config = RelayConfig::new(worker_id());
        config.nats = args.nats_url.as_ref().map(|url| {
            let mut nats = NatsConfig::new(url.clone());
            nats.stream.clone_from(&args.nats_stream);
            nats
        });
        Some(Arc::new(
            Relay::new(
                owner.clone(),
                app.clone(),
                event_handlers(&app, &keyring, smtp.clone(), args),
                config,
            )
            .await
            .context("starting the outbox relay")?,
        ))
    } else {
        None
    };
    // Schedules fire where jobs run; any number of nodes may run a scheduler.
    let scheduler = background.then(|| {
        Arc::new(Scheduler::new(
            owner.clone(),
            app.clone(),
            SchedulerConfig::new(worker_id()),
        ))
    });
    let metrics = api::metrics::Metrics::new();
    let jobs = job_registry(&keyring, smtp.is_some(), &documents);
    // HL7 v2 over MLLP: every listener bound before anything is served, so a taken
    // port fails the start. One committer groups the commits of every listener.
    let mllp = if mllp_specs.is_empty() {
        None
    } else {
        let committer_config = CommitterConfig {
            commits_in_flight: usize::from(args.mllp_commits_in_flight),
            ..CommitterConfig::default()
        };
        let (committer, committer_task) =
            Committer::spawn(app.clone(), keyring.clone(), committer_config);
        let mut bound = Vec::with_capacity(mllp_specs.len());
        for spec in mllp_specs {
            let config = &spec.config;
            let (name, tenant_id) = (config.name.clone(), config.tenant_id);
            let (tls, client_auth) = match &config.tls {
                Some(tls) => (true, tls.client_auth()),
                None => (false, false),
            };
            let n_senders = config.senders.len();
            let listener = Listener::bind(spec.addr, spec.config, committer.clone())
                .await
                .with_context(|| format!("MLLP listener {name:?}: listening on {}", spec.addr))?;
            tracing::info!(
                listener = %name,
                mllp = %listener.local_addr().unwrap_or(spec.addr),
                %tenant_id,
                tls,
                client_auth,
                n_senders,
                "receiving HL7 v2 over MLLP"
            );
            bound.push(listener);
        }
        metrics.watch_mllp(
            bound.iter().map(Listener::stats).collect(),
            Some(committer.backlog()),
        );
        Some((bound, committer_task))
    };
    let state = api::AppState {
        pool: app,
        keyring,
        oidc,
        checkpoint_key: Some(checkpoint_key.clone()),
        metrics: metrics.clone(),
        settings: api::Settings {
            break_glass_secs: args.break_glass_secs,
            schema_version: migrator.migrations().last().map_or(0, |m| m.version),
            webhook_allow_private_hosts: args.webhook_allow_private_hosts,
        },
        jobs,
        documents,
    };
    let http = if roles.api {
        Some(
            TcpListener::bind(args.http)
                .await
                .with_context(|| format!("listening on {}", args.http))?,
        )
    } else {
        None
    };
    let ops_http = match args.ops_http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for the operations endpoints on {addr}"))?,
        ),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let checkpoints = (roles.worker && args.checkpoint_secs > 0).then(|| {
        tokio::spawn(checkpoint_loop(
            owner.clone(),
            checkpoint_key,
            Duration::from_secs(args.checkpoint_secs),
            shutdown_rx.clone(),
        ))
    });
    // The queue gauges are sampled wherever `/metrics` is served.
    let sampler = if http.is_some() || ops_http.is_some() {
        sample_queues(&owner, &metrics).await;
        Some(tokio::spawn(queue_sampler(
            owner.clone(),
            metrics,
            shutdown_rx.clone(),
        )))
    } else {
        None
    };
    // Partitions of received HL7 messages are made ahead and dropped after the
    // retention wherever messages arrive or background work runs; every such node
    // may do it (the database serialises them).
    let partitions = (background || mllp.is_some()).then(|| {
        tokio::spawn(partition_loop(
            owner.clone(),
            Retention::from_days(args.ingest_retention_days),
            shutdown_rx.clone(),
        ))
    });
    // On shutdown the worker stops claiming, lets in-flight jobs finish for its grace
    // period and hands back the rest.
    let jobs = job_worker.map(|worker| tokio::spawn(worker.run(shutdown_rx.clone())));
    let relay = relay.map(|relay| tokio::spawn(relay.run(shutdown_rx.clone())));
    let scheduler = scheduler.map(|scheduler| tokio::spawn(scheduler.run(shutdown_rx.clone())));
    // The committer stops once the listeners and their connections are gone.
    let mut mllp_listeners = JoinSet::new();
    let mllp_committer = mllp.map(|(bound, committer)| {
        for listener in bound {
            mllp_listeners.spawn(listener.run(shutdown_rx.clone()));
        }
        committer
    });
    let mut servers = JoinSet::new();
    for (what, listener, router) in [
        ("HTTP", http, api::router(state.clone())),
        ("the operations endpoints", ops_http, api::ops_router(state)),
    ] {
        let Some(listener) = listener else { continue };
        let mut server_shutdown = shutdown_rx.clone();
        // As a make-service, a connection shares the router, whose routes already
        // hold the state; served as a bare `Router`, axum would copy every route for
        // each new connection.
        let serving =
            axum::serve(listener, router.into_make_service()).with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            });
        servers.spawn(async move { (what, serving.await) });
    }
    tracing::info!(
        http = ?roles.api.then_some(args.http),
        ops_http = ?args.ops_http,
        workers = if background { args.workers } else { 0 },
        n_mllp_listeners = mllp_listeners.len(),
        "tenet is serving"
    );
    // Whatever ends the serving (a signal, or a server's error), every background task
    // is told to stop and awaited before the first error is returned: the worker hands
    // back its jobs instead of leaving them to expire.
    let mut ended = Vec::new();
    tokio::select! {
        first = async {
            match servers.join_next().await {
                Some(first) => first,
                None => std::future::pending().await,
            }
        } => ended.push(first),
        () = shutdown_signal() => {
            tracing::info!("shutting down: finishing requests, messages and jobs in flight");
        }
    }
    let _ = shutdown_tx.send(true);
    while let Some(server) = servers.join_next().await {
        ended.push(server);
    }
    let mut stopped: Vec<anyhow::Result<()>> = ended
        .into_iter()
        .map(|server| match server {
            Ok((what, served)) => served.with_context(|| format!("serving {what}")),
            Err(error) => Err(anyhow::Error::new(error).context("an HTTP server panicked")),
        })
        .collect();
    while let Some(listener) = mllp_listeners.join_next().await {
        stopped.push(listener.context("an MLLP listener panicked"));
    }
    for (task, what) in [
        (jobs, "the job worker panicked"),
        (relay, "the outbox relay panicked"),
        (scheduler, "the scheduler panicked"),
        (mllp_committer, "the MLLP committer panicked"),
        (checkpoints, "the checkpoint loop panicked"),
        (sampler, "the metrics sampler panicked"),
        (partitions, "the partition maintenance panicked"),
    ] {
        if let Some(task) = task {
            stopped.push(task.await.context(what));
        }
    }
    owner.close().await;
    stopped.into_iter().collect()
}

/// How often the queue gauges of `/metrics` are sampled.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Samples queue depth and age, and the relay's lag, into the metrics, across tenants (the owner's view):
/// the service role's pool would see no tenant's jobs outside a request. The caller
/// takes the first sample (`sample_queues`) before anything is served, so the first
/// scrape already sees the queues; this samples every `QUEUE_SAMPLE_EVERY` after it.
async fn queue_sampler(
    owner: PgPool,
    metrics: api::metrics::Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(QUEUE_SAMPLE_EVERY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        sample_queues(&owner, &metrics).await;
    }
}

/// One sample of the queue gauges and the relay's lag.
async fn sample_queues(owner: &PgPool, metrics: &api::metrics::Metrics) {
    match platform::health::queue_stats(owner).await {
        Ok(stats) => metrics.observe_queues(&stats),
        Err(err) => tracing::warn!(error = %err, "sampling job queues failed"),
    }
    match platform::relay::admin::relay_lag(owner).await {
        Ok(lag) => metrics.observe_relay(&lag),
        Err(err) => tracing::warn!(error = %err, "sampling the relay's lag failed"),
    }
}

/// After a failed round of partition maintenance, how long until the next try.
const PARTITIONS_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Maintains the partitions of `ingest.messages` at start and then hourly: the days
/// ahead, messages out of the default partition, and the retention. A round that
/// fails (a table lock not granted in time, say) is tried again in a few minutes;
/// partitions exist a week ahead, so nothing waits on it.
async fn partition_loop(owner: PgPool, retention: Retention, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait = match ingest::partitions::maintain(
            &owner,
            retention,
            ingest::partitions::SERVER_LOCK_TIMEOUT,
        )
        .await
        {
            Ok(report) => {
                if !report.created.is_empty() || !report.retention.partitions.is_empty() {
                    tracing::info!(
                        created = ?report.created,
                        dropped = ?report.retention.partitions.iter().map(|p| &p.name).collect::<Vec<_>>(),
                        n_keys_deleted = report.retention.n_keys_deleted,
                        "HL7 message partitions maintained"
                    );
                }
                ingest::partitions::MAINTENANCE_EVERY
            }
            Err(error) => {
                tracing::warn!(%error, "maintaining the HL7 message partitions failed; retrying in a few minutes");
                PARTITIONS_RETRY_AFTER
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// The in-process event handlers this binary runs. Contexts add theirs here as they
/// gain them.
pub fn event_handlers(
    app: &PgPool,
    keyring: &Keyring,
    smtp: Option<Arc<assessments::reminder::SmtpConfig>>,
    args: &ServeArgs,
) -> Handlers {
    let mut handlers = Handlers::new();
    if let Some(smtp) = smtp {
        // Reminder emails carry a one-time answer link.
        handlers = handlers.register(assessments::reminder::ReminderMailer {
            app: app.clone(),
            keyring: keyring.clone(),
            smtp,
            links: assessments::reminder::TokenLinks {
                base_url: args.reminder_link_base.clone().unwrap_or_default(),
            },
        });
    }
    handlers
}

/// The job kinds this binary runs. Contexts add theirs here as they gain jobs.
/// `email_reminders`: whether an SMTP server is configured, so reminders may go by email.
/// `documents`: where the lifecycle job deletes expired content.
pub fn job_registry(
    keyring: &Keyring,
    email_reminders: bool,
    documents: &documents::Storage,
) -> Registry {
    use assessments::reminder::{Channel, ReminderSweep, Sweep};
    let available = if email_reminders {
        vec![Channel::Email, Channel::Webhook]
    } else {
        vec![Channel::Webhook]
    };
    Registry::new()
        .register(ReminderSweep {
            sweep: Sweep { available },
        })
        .register(Noop)
        .register(ingest::process::Process {
            keyring: keyring.clone(),
        })
        .register(ingest::reply::ApplicationAck {
            keyring: keyring.clone(),
        })
        .register(Probe {
            worker_id: worker_id(),
        })
        .register(SagaStep::new(sagas()))
        .register(assessments::materialize::Materialize {
            keyring: keyring.clone(),
        })
        .register(assessments::backfill::Backfill {
            keyring: keyring.clone(),
        })
        .register(notes::pdf::RenderPdf {
            keyring: keyring.clone(),
            storage: documents.clone(),
        })
        .register(documents::lifecycle::Lifecycle {
            storage: documents.clone(),
        })
}

/// The sagas this binary drives. Contexts add theirs here as they gain them.
pub fn sagas() -> SagaRegistry {
    SagaRegistry::new()
}

/// `host:pid`, recorded on the jobs this process holds.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|host| host.trim().to_owned())
        .unwrap_or_else(|_| "tenet".to_owned());
    format!("{host}:{}", std::process::id())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Signs every tenant's chain heads periodically (only where something changed).
async fn checkpoint_loop(
    owner: PgPool,
    key: Arc<audit::CheckpointKey>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match checkpoint_all(&owner, &key, None).await {
            Ok(n) => tracing::info!(n_checkpoints = n, "audit checkpoints written"),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "audit checkpoint failed; retrying next round")
            }
        }
    }
}

/// Writes a checkpoint for every tenant (or one) whose chain moved; returns how many.
pub async fn checkpoint_all(
    owner: &PgPool,
    key: &audit::CheckpointKey,
    only: Option<kernel::TenantId>,
) -> anyhow::Result<usize> {
    let mut n_written = 0;
    for tenant in identity::tenant::list_all(owner).await? {
        if only.is_some_and(|only| only != tenant.tenant_id) {
            continue;
        }
        let mut tx = TenantTx::begin_as(owner, tenant.tenant_id, "system", None).await?;
        if audit::write_checkpoint(&mut tx, key).await?.is_some() {
            n_written += 1;
        }
        tx.commit().await?;
    }
    Ok(n_written)
}
