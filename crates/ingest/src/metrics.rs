//! What each MLLP listener counts, for Prometheus: plain atomics here, rendered by
//! the `api` crate (this crate knows no HTTP and no metrics format).
//!
//! Every label value is a listener's configured name or a fixed word (an ACK code, a
//! reason): nothing read from a message, so no label can carry PHI and cardinality
//! stays bounded. Messages per second are the rate of [`ListenerSnapshot::messages`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hl7::ack::AckCode;

/// The upper bounds of the ACK latency histogram, in seconds (those of the HTTP
/// latency histogram: one scale for every latency Tenet reports).
pub const ACK_LATENCY_BUCKETS_SECS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How a received message was answered: one of the six table 0008 codes, or
/// `none` when it was not stored and the connection closed without an ACK.
pub const ACK_LABELS: [&str; 7] = ["AA", "AE", "AR", "CA", "CE", "CR", "none"];

/// Why a frame was refused: `oversized` (over `frame_bytes_max`) or `truncated`
/// (the connection ended inside it). Either closes the connection.
pub const FRAME_REFUSED_REASONS: [&str; 2] = ["oversized", "truncated"];

/// Why a connection closed: `peer` (the sender closed it), `idle` (silent past the
/// idle timeout), `framing` (a refused frame or a read error), `not_stored` (a
/// commit failed, so no ACK was sent), `write` (an ACK could not be written),
/// `tls` (the TLS handshake failed or timed out) or `shutdown`.
pub const CLOSE_REASONS: [&str; 7] = [
    "peer",
    "idle",
    "framing",
    "not_stored",
    "write",
    "tls",
    "shutdown",
];

/// Why a connection closed; see [`CLOSE_REASONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    Peer,
    Idle,
    Framing,
    NotStored,
    Write,
    Tls,
    Shutdown,
}

impl Close {
    fn index(self) -> usize {
        match self {
            Close::Peer => 0,
            Close::Idle => 1,
            Close::Framing => 2,
            Close::NotStored => 3,
            Close::Write => 4,
            Close::Tls => 5,
            Close::Shutdown => 6,
        }
    }
}

/// A refused frame; see [`FRAME_REFUSED_REASONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameRefused {
    Oversized,
    Truncated,
}

fn ack_index(code: Option<AckCode>) -> usize {
    match code {
        Some(AckCode::ApplicationAccept) => 0,
        Some(AckCode::ApplicationError) => 1,
        Some(AckCode::ApplicationReject) => 2,
        Some(AckCode::CommitAccept) => 3,
        Some(AckCode::CommitError) => 4,
        Some(AckCode::CommitReject) => 5,
        None => 6,
    }
}

/// One listener's counters. Created by [`crate::listener::Listener::bind`]; read with
/// [`ListenerStats::snapshot`].
#[derive(Debug)]
pub struct ListenerStats {
    name: String,
    connections_max: u64,
    messages: [AtomicU64; ACK_LABELS.len()],
    /// Per bucket of [`ACK_LATENCY_BUCKETS_SECS`], then one for larger latencies;
    /// not cumulative.
    latency_buckets: [AtomicU64; ACK_LATENCY_BUCKETS_SECS.len() + 1],
    latency_sum_micros: AtomicU64,
    in_flight: AtomicU64,
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
    connections_closed: [AtomicU64; CLOSE_REASONS.len()],
    frames_refused: [AtomicU64; FRAME_REFUSED_REASONS.len()],
    bytes_skipped: AtomicU64,
}

/// A reading of one listener's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerSnapshot {
    /// The listener's name (the `listener` label).
    pub listener: String,
    /// Messages answered, by ACK code (or `none`), in the order of [`ACK_LABELS`].
    pub messages: [u64; ACK_LABELS.len()],
    /// From a frame's arrival to its ACK written, for every message answered.
    pub ack_latency: LatencySnapshot,
    /// Messages read and not yet answered (parsing, or waiting for their commit).
    pub messages_in_flight: u64,
    pub connections_open: u64,
    pub connections_max: u64,
    pub connections_accepted: u64,
    /// Connections closed, by reason, in the order of [`CLOSE_REASONS`].
    pub connections_closed: [u64; CLOSE_REASONS.len()],
    /// Frames refused, by reason, in the order of [`FRAME_REFUSED_REASONS`].
    pub frames_refused: [u64; FRAME_REFUSED_REASONS.len()],
    /// Bytes the MLLP framing discarded: outside any frame, in frames abandoned by a
    /// new start block, and in refused frames.
    pub bytes_skipped: u64,
}

/// A latency histogram, ready for Prometheus.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySnapshot {
    /// (upper bound in seconds, observations at or below it): cumulative, one per
    /// bound of [`ACK_LATENCY_BUCKETS_SECS`]. The `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_secs: f64,
}

impl ListenerStats {
    pub(crate) fn new(name: &str, connections_max: usize) -> Self {
        Self {
            name: name.to_owned(),
            connections_max: u64::try_from(connections_max).unwrap_or(u64::MAX),
            messages: Default::default(),
            latency_buckets: Default::default(),
            latency_sum_micros: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_closed: Default::default(),
            frames_refused: Default::default(),
            bytes_skipped: AtomicU64::new(0),
        }
    }

    /// The listener's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts a connection as open until the returned guard drops.
    pub(crate) fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection { stats: self }
    }

    pub(crate) fn connection_closed(&self, reason: Close) {
        self.connections_closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message as in hand until the returned guard drops.
    pub(crate) fn message_received(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { stats: self }
    }

    /// A message answered with `code` (`None`: not answered), `latency` after its
    /// frame arrived (`None`: its ACK was not written).
    pub(crate) fn message_answered(&self, code: Option<AckCode>, latency: Option<Duration>) {
        self.messages[ack_index(code)].fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = latency {
            let secs = latency.as_secs_f64();
            let bucket = ACK_LATENCY_BUCKETS_SECS
                .iter()
                .position(|&bound| secs <= bound)
                .unwrap_or(ACK_LATENCY_BUCKETS_SECS.len());
            self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        }
    }

    pub(crate) fn frame_refused(&self, reason: FrameRefused) {
        let index = match reason {
            FrameRefused::Oversized => 0,
            FrameRefused::Truncated => 1,
        };
        self.frames_refused[index].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bytes_skipped(&self, n: u64) {
        if n > 0 {
            self.bytes_skipped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counters now. Each is read atomically, not all together: a scrape during
    /// traffic may see one message in `messages` and not yet in the histogram.
    pub fn snapshot(&self) -> ListenerSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(ACK_LATENCY_BUCKETS_SECS.len());
        for (bound, counter) in ACK_LATENCY_BUCKETS_SECS.iter().zip(&self.latency_buckets) {
            cumulative += read(counter);
            buckets.push((*bound, cumulative));
        }
        // The +Inf bucket, so that the count always equals the buckets' total.
        let count = cumulative + read(&self.latency_buckets[ACK_LATENCY_BUCKETS_SECS.len()]);
        ListenerSnapshot {
            listener: self.name.clone(),
            messages: std::array::from_fn(|i| read(&self.messages[i])),
            ack_latency: LatencySnapshot {
                buckets,
                count,
                sum_secs: read(&self.latency_sum_micros) as f64 / 1e6,
            },
            messages_in_flight: read(&self.in_flight),
            connections_open: read(&self.connections_open),
            connections_max: self.connections_max,
            connections_accepted: read(&self.connections_accepted),
            connections_closed: std::array::from_fn(|i| read(&self.connections_closed[i])),
            frames_refused: std::array::from_fn(|i| read(&self.frames_refused[i])),
            bytes_skipped: read(&self.bytes_skipped),
        }
    }
}

/// An open connection; counted as closed when dropped.
pub(crate) struct OpenConnection<'a> {
    stats: &'a ListenerStats,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A message in hand; no longer counted when dropped.
pub(crate) struct InFlight<'a> {
    stats: &'a ListenerStats,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_lands_in_the_first_bucket_that_holds_it_and_buckets_are_cumulative() {
        let stats = ListenerStats::new("lab", 4);
        stats.message_answered(
            Some(AckCode::ApplicationAccept),
            Some(Duration::from_micros(900)),
        );
        stats.message_answered(
            Some(AckCode::ApplicationAccept),
            Some(Duration::from_millis(3)),
        );
        stats.message_answered(
            Some(AckCode::ApplicationReject),
            Some(Duration::from_secs(9)),
        );
        stats.message_answered(None, None);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.messages, [2, 0, 1, 0, 0, 0, 1]);
        let latency = &snapshot.ack_latency;
        assert_eq!(latency.count, 3, "a message not answered has no latency");
        assert_eq!(latency.buckets[0], (0.001, 1));
        assert_eq!(latency.buckets[1], (0.0025, 1));
        assert_eq!(latency.buckets[2], (0.005, 2));
        assert_eq!(
            latency.buckets.last(),
            Some(&(5.0, 2)),
            "9 s is only in +Inf"
        );
        assert!((latency.sum_secs - 9.0039).abs() < 1e-9);
    }

    #[test]
    fn open_connections_and_messages_in_flight_fall_when_their_guards_drop() {
        let stats = ListenerStats::new("lab", 4);
        let connection = stats.connection_opened();
        let message = stats.message_received();
        assert_eq!(stats.snapshot().connections_open, 1);
        assert_eq!(stats.snapshot().messages_in_flight, 1);
        drop(message);
        drop(connection);
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.connections_open, snapshot.messages_in_flight),
            (0, 0)
        );
        assert_eq!(snapshot.connections_accepted, 1);
    }
}
