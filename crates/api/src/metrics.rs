//! Prometheus metrics.
//!
//! Labels are route templates, methods and status codes — never a raw path, an id or
//! anything a client typed — so no label can carry PHI and cardinality stays bounded.

use std::time::Duration;

use platform::health::QueueStat;
use platform::jobs::worker::{self, Outcome};
use platform::relay::admin::RelayLag;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sqlx::PgPool;

/// The API's metrics and their registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_connections: IntGaugeVec,
    audit_appends: IntCounter,
    job_runs: IntCounterVec,
    job_queue_depth: IntGaugeVec,
    job_queue_oldest: GaugeVec,
    relay_pending: IntGaugeVec,
    relay_oldest: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Panics on a wiring mistake (a metric registered twice), at start-up.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("tenet".into()), None).expect("BUG: registry prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests served, by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("BUG: metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency, by route and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )
        .expect("BUG: metric definition");
        let pool_connections = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections, by state"),
            &["state"],
        )
        .expect("BUG: metric definition");
        let audit_appends = IntCounter::new(
            "audit_appends_total",
            "Audit events appended by this process",
        )
        .expect("BUG: metric definition");
        let job_runs = IntCounterVec::new(
            Opts::new(
                "job_runs_total",
                "Job runs ended by this process's worker, by outcome (retrying counts retries)",
            ),
            &["outcome"],
        )
        .expect("BUG: metric definition");
        let job_queue_depth = IntGaugeVec::new(
            Opts::new(
                "job_queue_depth",
                "Jobs not finished (and dead letters), by queue and state, across tenants",
            ),
            &["queue", "state"],
        )
        .expect("BUG: metric definition");
        let job_queue_oldest = GaugeVec::new(
            Opts::new(
                "job_queue_oldest_seconds",
                "Age of the oldest job, by queue and state: since due, or since dead",
            ),
            &["queue", "state"],
        )
        .expect("BUG: metric definition");
        let relay_pending = IntGaugeVec::new(
            Opts::new(
                "relay_pending",
                "Events not yet fanned out (by context outbox) and deliveries not yet delivered or dead",
            ),
            &["queue"],
        )
        .expect("BUG: metric definition");
        let relay_oldest = GaugeVec::new(
            Opts::new(
                "relay_lag_seconds",
                "Age of the oldest event not fanned out (by context outbox) and of the oldest pending delivery",
            ),
            &["queue"],
        )
        .expect("BUG: metric definition");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(pool_connections.clone()),
            Box::new(audit_appends.clone()),
            Box::new(job_runs.clone()),
            Box::new(job_queue_depth.clone()),
            Box::new(job_queue_oldest.clone()),
            Box::new(relay_pending.clone()),
            Box::new(relay_oldest.clone()),
        ] {
            registry
                .register(collector)
                .expect("BUG: metric registered twice");
        }
        Self {
            registry,
            requests,
            latency,
            pool_connections,
            audit_appends,
            job_runs,
            job_queue_depth,
            job_queue_oldest,
            relay_pending,
            relay_oldest,
        }
    }

    /// Replaces the relay gauges with a fresh sample: per context outbox
    /// (`outbox:clinical`), deliveries (`deliveries`) and dead deliveries
    /// (`deliveries_dead`).
    pub fn observe_relay(&self, lag: &RelayLag) {
        self.relay_pending.reset();
        self.relay_oldest.reset();
        for outbox in &lag.outboxes {
            let queue = format!("outbox:{}", outbox.context.schema());
            self.relay_pending
                .with_label_values(&[queue.as_str()])
                .set(outbox.n_pending);
            self.relay_oldest
                .with_label_values(&[queue.as_str()])
                .set(outbox.oldest_pending_age_secs.unwrap_or(0.0));
        }
        self.relay_pending
            .with_label_values(&["deliveries"])
            .set(lag.n_deliveries_pending);
        self.relay_oldest
            .with_label_values(&["deliveries"])
            .set(lag.oldest_delivery_pending_age_secs.unwrap_or(0.0));
        self.relay_pending
            .with_label_values(&["deliveries_dead"])
            .set(lag.n_deliveries_dead);
    }

    /// Replaces the queue gauges with a fresh sample (queues that emptied drop out).
    pub fn observe_queues(&self, stats: &[QueueStat]) {
        self.job_queue_depth.reset();
        self.job_queue_oldest.reset();
        for stat in stats {
            let labels = [stat.queue.as_str(), stat.state.as_str()];
            self.job_queue_depth
                .with_label_values(&labels)
                .set(stat.n_jobs);
            self.job_queue_oldest
                .with_label_values(&labels)
                .set(stat.oldest_secs);
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format, with gauges read now.
    pub fn render(&self, pool: &PgPool) -> String {
        let size = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        self.pool_connections.with_label_values(&["idle"]).set(idle);
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(size - idle);
        // The audit crate counts appends itself; bring the counter up to its total.
        let total = audit::appends_total();
        self.audit_appends
            .inc_by(total.saturating_sub(self.audit_appends.get()));
        for (name, total) in Outcome::NAMES.iter().zip(worker::outcomes_total()) {
            let counter = self.job_runs.with_label_values(&[name]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("BUG: text encoding of metrics cannot fail");
        String::from_utf8(buffer).expect("BUG: metrics text is UTF-8")
    }
}
