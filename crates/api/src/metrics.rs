//! Prometheus metrics.
//!
//! Labels are route templates, methods and status codes — never a raw path, an id or
//! anything a client typed — so no label can carry PHI and cardinality stays bounded.
//! The MLLP listeners' metrics (`tenet_mllp_*`) are read from the `ingest` crate's
//! counters at each scrape; their labels are listener names from the configuration
//! and fixed words.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ingest::metrics::{
    ACK_LABELS, CLOSE_REASONS, FRAME_REFUSED_REASONS, ListenerSnapshot, ListenerStats,
};
use ingest::store::Backlog;
use platform::health::QueueStat;
use platform::jobs::worker::{self, Outcome};
use platform::relay::admin::RelayLag;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
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
    mllp: Arc<RwLock<MllpSources>>,
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
        let mllp = Arc::new(RwLock::new(MllpSources::default()));
        registry
            .register(Box::new(MllpCollector::new(mllp.clone())))
            .expect("BUG: metric registered twice");
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
            mllp,
        }
    }

    /// Reports these MLLP listeners and this committer's backlog from now on
    /// (replacing any reported before).
    pub fn watch_mllp(&self, listeners: Vec<Arc<ListenerStats>>, backlog: Option<Backlog>) {
        let mut sources = self.mllp.write().expect("BUG: MLLP metrics lock poisoned");
        *sources = MllpSources { listeners, backlog };
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

/// What the MLLP metrics are read from.
#[derive(Default)]
struct MllpSources {
    listeners: Vec<Arc<ListenerStats>>,
    backlog: Option<Backlog>,
}

/// Renders the `ingest` crate's listener counters at each scrape.
struct MllpCollector {
    sources: Arc<RwLock<MllpSources>>,
    descs: Vec<Desc>,
}

/// (name, help, type, labels) of each MLLP metric family, in the order
/// [`MllpCollector::collect`] builds them.
const MLLP_FAMILIES: [(&str, &str, MetricType, &[&str]); 10] = [
    (
        "mllp_messages_total",
        "HL7 messages answered by MLLP listeners, by listener and ACK code (none: not stored, no ACK sent)",
        MetricType::COUNTER,
        &["listener", "ack"],
    ),
    (
        "mllp_ack_latency_seconds",
        "From a message's frame arriving to its ACK written (after its commit), by listener",
        MetricType::HISTOGRAM,
        &["listener"],
    ),
    (
        "mllp_messages_in_flight",
        "HL7 messages read and not yet answered, by listener",
        MetricType::GAUGE,
        &["listener"],
    ),
    (
        "mllp_connections_open",
        "Open MLLP connections, by listener",
        MetricType::GAUGE,
        &["listener"],
    ),
    (
        "mllp_connections_max",
        "The most MLLP connections a listener serves at once; more wait to be accepted",
        MetricType::GAUGE,
        &["listener"],
    ),
    (
        "mllp_connections_accepted_total",
        "MLLP connections accepted, by listener",
        MetricType::COUNTER,
        &["listener"],
    ),
    (
        "mllp_connections_closed_total",
        "MLLP connections closed, by listener and reason",
        MetricType::COUNTER,
        &["listener", "reason"],
    ),
    (
        "mllp_frames_refused_total",
        "MLLP frames refused (each closes its connection), by listener and reason",
        MetricType::COUNTER,
        &["listener", "reason"],
    ),
    (
        "mllp_bytes_skipped_total",
        "Bytes the MLLP framing discarded (outside frames, abandoned or refused frames), by listener",
        MetricType::COUNTER,
        &["listener"],
    ),
    (
        "mllp_committer_backlog",
        "HL7 messages waiting for the committer to take them into a group",
        MetricType::GAUGE,
        &[],
    ),
];

impl MllpCollector {
    fn new(sources: Arc<RwLock<MllpSources>>) -> Self {
        let descs = MLLP_FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels.iter().map(|label| (*label).to_owned()).collect(),
                    HashMap::new(),
                )
                .expect("BUG: metric definition")
            })
            .collect();
        Self { sources, descs }
    }
}

/// Label pairs, sorted by name as Prometheus writes them.
fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    let mut pairs = pairs.to_vec();
    pairs.sort_unstable_by_key(|(name, _)| *name);
    pairs
        .iter()
        .map(|(name, value)| {
            let mut label = proto::LabelPair::default();
            label.set_name((*name).to_owned());
            label.set_value((*value).to_owned());
            label
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut counter = proto::Counter::default();
    counter.set_value(value as f64);
    let mut metric = proto::Metric::from_label(labels(pairs));
    metric.set_counter(counter);
    metric
}

fn gauge(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut gauge = proto::Gauge::default();
    gauge.set_value(value as f64);
    let mut metric = proto::Metric::from_label(labels(pairs));
    metric.set_gauge(gauge);
    metric
}

fn latency(listener: &str, snapshot: &ListenerSnapshot) -> proto::Metric {
    let latency = &snapshot.ack_latency;
    let mut histogram = proto::Histogram::default();
    histogram.set_sample_count(latency.count);
    histogram.set_sample_sum(latency.sum_secs);
    histogram.set_bucket(
        latency
            .buckets
            .iter()
            .map(|&(bound, count)| {
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(bound);
                bucket.set_cumulative_count(count);
                bucket
            })
            .collect(),
    );
    let mut metric = proto::Metric::from_label(labels(&[("listener", listener)]));
    metric.set_histogram(histogram);
    metric
}

impl Collector for MllpCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sources = self
            .sources
            .read()
            .expect("BUG: MLLP metrics lock poisoned");
        let mut families: [Vec<proto::Metric>; MLLP_FAMILIES.len()] = Default::default();
        for stats in &sources.listeners {
            let snapshot = stats.snapshot();
            let listener = snapshot.listener.as_str();
            for (ack, n) in ACK_LABELS.iter().zip(snapshot.messages) {
                families[0].push(counter(&[("listener", listener), ("ack", ack)], n));
            }
            families[1].push(latency(listener, &snapshot));
            let one = [("listener", listener)];
            families[2].push(gauge(&one, snapshot.messages_in_flight));
            families[3].push(gauge(&one, snapshot.connections_open));
            families[4].push(gauge(&one, snapshot.connections_max));
            families[5].push(counter(&one, snapshot.connections_accepted));
            for (reason, n) in CLOSE_REASONS.iter().zip(snapshot.connections_closed) {
                families[6].push(counter(&[("listener", listener), ("reason", reason)], n));
            }
            for (reason, n) in FRAME_REFUSED_REASONS.iter().zip(snapshot.frames_refused) {
                families[7].push(counter(&[("listener", listener), ("reason", reason)], n));
            }
            families[8].push(counter(&one, snapshot.bytes_skipped));
        }
        if let Some(backlog) = &sources.backlog {
            let n = u64::try_from(backlog.get()).unwrap_or(u64::MAX);
            families[9].push(gauge(&[], n));
        }
        MLLP_FAMILIES
            .iter()
            .zip(families)
            .map(|((name, help, kind, _), metrics)| {
                let mut family = MetricFamily::default();
                family.set_name((*name).to_owned());
                family.set_help((*help).to_owned());
                family.set_field_type(*kind);
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}
