//! The MLLP listener: one task per connection, one message at a time per connection,
//! each ACK written only after the message's group committed.
//!
//! Decisions of this slice:
//! - A message that parses is stored as `accepted` and answered `AA` (`CA` in
//!   enhanced mode) whatever its type: processing is a later slice.
//! - A message that does not parse is stored as `rejected` and answered `AR` (`CR`)
//!   with an ERR saying why.
//! - A sender (MSH-3.1, MSH-4.1) not on a non-empty allow-list is answered `AR`
//!   (`CR`) with an ERR and is **not** stored: it is not ours to keep.
//! - A frame over the limit closes the connection (logged with its limit, never its
//!   content).
//! - When the commit fails, nothing is sent and the connection is closed: the
//!   sender did not get an ACK, so it resends, and duplicate detection makes the
//!   resend safe. An `AA` is never sent for an uncommitted message.
//!
//! The connection code is generic over the stream: plain TCP, or TLS (rustls, with
//! client certificates checked against a CA bundle when configured). A listener
//! serves at most `connections_max` connections; further ones wait to be accepted.
//! Each connection's counters go to its listener's [`ListenerStats`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hl7::ack::{AckBuilder, AckCode, AckError, AckMode, ErrorCode};
use hl7::mllp::{MllpCodec, MllpError};
use hl7::{DateTime, Message};
use kernel::TenantId;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use uuid::Uuid;

use crate::metrics::{Close, FrameRefused, ListenerStats};
use crate::process::{Event, UNSUPPORTED, patient_identifier};
use crate::store::{CommitterHandle, NewMessage, Status, Stored};
use crate::tls::TlsConfig;

/// The default idle timeout: a connection silent this long is closed.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// The default most connections a listener serves at once.
pub const CONNECTIONS_MAX_DEFAULT: usize = 256;

/// How long a client has to finish its TLS handshake (it holds a connection slot
/// meanwhile).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener's settings.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// The tenant every message on this listener belongs to.
    pub tenant_id: TenantId,
    /// The listener's name, stored with each message and the `listener` label of
    /// its metrics.
    pub name: String,
    /// The senders allowed, as (MSH-3.1, MSH-4.1) pairs; empty allows anyone.
    pub senders: Vec<(String, String)>,
    /// The largest MLLP payload accepted; a larger frame closes the connection.
    pub frame_bytes_max: usize,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// The most connections served at once. More are not refused: they wait in the
    /// operating system's accept queue until a served connection closes.
    pub connections_max: usize,
    /// TLS, if set: every connection must complete a handshake (within
    /// [`TLS_HANDSHAKE_TIMEOUT`]) before its first frame is read.
    pub tls: Option<TlsConfig>,
    /// Where this listener's senders receive application acknowledgements
    /// (`host:port`), for messages that ask for one in enhanced mode (MSH-16). None:
    /// only commit acknowledgements are sent.
    pub reply_to: Option<String>,
}

impl ListenerConfig {
    /// A listener for `tenant_id` with the default limits, no allow-list and no TLS.
    pub fn new(tenant_id: TenantId, name: impl Into<String>) -> Self {
        Self {
            tenant_id,
            name: name.into(),
            senders: Vec::new(),
            frame_bytes_max: hl7::mllp::FRAME_BYTES_MAX,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            tls: None,
            reply_to: None,
        }
    }
}

/// A bound MLLP listener.
pub struct Listener {
    socket: TcpListener,
    config: Arc<ListenerConfig>,
    committer: CommitterHandle,
    stats: Arc<ListenerStats>,
}

impl Listener {
    /// Binds `addr`; messages go to `committer`.
    pub async fn bind(
        addr: SocketAddr,
        config: ListenerConfig,
        committer: CommitterHandle,
    ) -> std::io::Result<Self> {
        let socket = TcpListener::bind(addr).await?;
        let stats = Arc::new(ListenerStats::new(&config.name, config.connections_max));
        Ok(Self {
            socket,
            config: Arc::new(config),
            committer,
            stats,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// This listener's counters, live.
    pub fn stats(&self) -> Arc<ListenerStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` turns true; then stops accepting, lets each connection
    /// finish the message in hand, and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.config.connections_max.max(1)));
        let mut connections = JoinSet::new();
        loop {
            if permits.available_permits() == 0 {
                // Once per time the limit is reached: the wait below lasts until a
                // connection closes.
                tracing::warn!(
                    listener = %self.config.name,
                    connections_max = self.config.connections_max,
                    "the MLLP listener is at its connection limit; new connections wait"
                );
            }
            let permit = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                permit = permits.clone().acquire_owned() => permit.expect("BUG: semaphore closed"),
            };
            let accepted = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                accepted = self.socket.accept() => accepted,
            };
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
            match accepted {
                Ok((stream, peer)) => {
                    let config = self.config.clone();
                    let committer = self.committer.clone();
                    let stats = self.stats.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        connection(stream, peer, &config, &committer, &stats, shutdown).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, listener = %self.config.name, "accepting an MLLP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        while connections.join_next().await.is_some() {}
    }
}

/// One accepted connection: the TLS handshake if the listener has TLS, then MLLP.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ListenerConfig,
    committer: &CommitterHandle,
    stats: &ListenerStats,
    mut shutdown: watch::Receiver<bool>,
) {
    let _open = stats.connection_opened();
    let _ = stream.set_nodelay(true);
    let close = match &config.tls {
        None => serve(stream, peer, config, committer, stats, shutdown).await,
        Some(tls) => {
            let handshake = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => None,
                handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)) => Some(handshake),
            };
            match handshake {
                None => Close::Shutdown,
                Some(Ok(Ok(stream))) => {
                    serve(stream, peer, config, committer, stats, shutdown).await
                }
                Some(Ok(Err(error))) => {
                    // rustls names the failure (an unknown issuer, no certificate, a
                    // protocol error); the peer's bytes are never in it.
                    tracing::warn!(%peer, listener = %config.name, %error, "a TLS handshake failed; closing the connection");
                    Close::Tls
                }
                Some(Err(_)) => {
                    tracing::warn!(%peer, listener = %config.name, timeout_secs = TLS_HANDSHAKE_TIMEOUT.as_secs(), "a TLS handshake did not finish in time; closing the connection");
                    Close::Tls
                }
            }
        }
    };
    stats.connection_closed(close);
}

/// Reads frames and answers each, one at a time, until the connection ends; says why
/// it ended.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    config: &ListenerConfig,
    committer: &CommitterHandle,
    stats: &ListenerStats,
    mut shutdown: watch::Receiver<bool>,
) -> Close {
    let mut framed = Framed::new(
        stream,
        MllpCodec::with_frame_bytes_max(config.frame_bytes_max),
    );
    let mut n_messages = 0u64;
    let mut n_bytes_skipped = 0u64;
    let close = loop {
        let next = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break Close::Shutdown,
            next = tokio::time::timeout(config.idle_timeout, framed.next()) => next,
        };
        let skipped = framed.codec().n_bytes_skipped();
        stats.bytes_skipped(skipped - n_bytes_skipped);
        n_bytes_skipped = skipped;
        let frame = match next {
            Err(_) => {
                tracing::info!(%peer, listener = %config.name, "closing an idle MLLP connection");
                break Close::Idle;
            }
            Ok(None) => break Close::Peer,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(MllpError::FrameTooLarge { bytes_max }))) => {
                stats.frame_refused(FrameRefused::Oversized);
                tracing::warn!(%peer, listener = %config.name, bytes_max, "an MLLP frame is over the limit; closing the connection");
                break Close::Framing;
            }
            Ok(Some(Err(MllpError::TruncatedFrame { bytes }))) => {
                stats.frame_refused(FrameRefused::Truncated);
                tracing::warn!(%peer, listener = %config.name, bytes, "the connection ended inside an MLLP frame");
                break Close::Framing;
            }
            Ok(Some(Err(error))) => {
                tracing::warn!(%peer, listener = %config.name, %error, "MLLP framing failed; closing the connection");
                break Close::Framing;
            }
        };
        n_messages += 1;
        let received = Instant::now();
        let in_flight = stats.message_received();
        let answer = handle(frame, config, committer).await;
        drop(in_flight);
        let Some(ack) = answer else {
            // Not stored: send nothing, the sender resends.
            stats.message_answered(None, None);
            break Close::NotStored;
        };
        let code = ack_code_of(&ack);
        if let Err(error) = framed.send(ack).await {
            stats.message_answered(code, None);
            tracing::warn!(%peer, listener = %config.name, %error, "sending an ACK failed");
            break Close::Write;
        }
        stats.message_answered(code, Some(received.elapsed()));
    };
    tracing::debug!(%peer, listener = %config.name, messages = n_messages, "MLLP connection closed");
    close
}

/// MSA-1 of an ACK this listener built, for its metrics.
fn ack_code_of(ack: &[u8]) -> Option<AckCode> {
    let ack = Message::parse(ack).ok()?;
    let msa = ack.segment("MSA")?;
    AckCode::from_code(msa.field(1)?.as_str())
}

/// Stores one message and returns its ACK; `None` when it could not be stored.
async fn handle(
    frame: Bytes,
    config: &ListenerConfig,
    committer: &CommitterHandle,
) -> Option<Vec<u8>> {
    let received_at = OffsetDateTime::now_utc();
    let id = Uuid::now_v7();
    let ack_control_id = ack_control_id(id);
    let timestamp = hl7_timestamp(received_at);
    let raw = frame.clone();
    match Message::parse(&frame) {
        Ok(message) => {
            let mode = AckMode::of(&message);
            let msh = message.msh();
            let application = msh.sending_application().namespace_id().map(|v| text(&v));
            let facility = msh.sending_facility().namespace_id().map(|v| text(&v));
            let allowed = config.senders.is_empty()
                || config.senders.iter().any(|(a, f)| {
                    Some(a.as_str()) == application.as_deref()
                        && Some(f.as_str()) == facility.as_deref()
                });
            if !allowed {
                tracing::warn!(listener = %config.name, "refused a message from a sender not on the allow-list");
                return Some(
                    AckBuilder::new(&message, AckCode::reject(mode), &ack_control_id, timestamp)
                        .error(AckError::new(
                            ErrorCode::UnknownKeyIdentifier,
                            "MSH-3/MSH-4: the sender is not allowed on this listener",
                        ))
                        .build(),
                );
            }
            let message_type = msh.message_type();
            let code = message_type.code().map(|v| text(&v));
            let trigger = message_type.trigger().map(|v| text(&v));
            let event = Event::of(code.as_deref(), trigger.as_deref());
            // An unsupported type is kept, as rejected, and answered AR (CR).
            let unsupported = event.is_none().then(|| {
                let known_type = matches!(code.as_deref(), Some("ADT" | "ORU"));
                AckError::new(
                    if known_type {
                        ErrorCode::UnsupportedEventCode
                    } else {
                        ErrorCode::UnsupportedMessageType
                    },
                    UNSUPPORTED,
                )
            });
            let row = NewMessage {
                id,
                received_at,
                listener: config.name.clone(),
                // Present but empty routing fields are stored as '' so duplicates of
                // a message without MSH-3 or MSH-4 are still found by MSH-10.
                sending_application: Some(application.unwrap_or_default()),
                sending_facility: Some(facility.unwrap_or_default()),
                control_id: msh.control_id().map(|v| text(&v)),
                message_type: code,
                trigger_event: trigger,
                processing_id: msh.processing_id().map(|v| text(&v)),
                version: msh.version().map(|v| text(&v)),
                ack_mode: mode,
                status: if unsupported.is_some() {
                    Status::Rejected
                } else {
                    Status::Accepted
                },
                ack_code: if unsupported.is_some() {
                    AckCode::reject(mode)
                } else {
                    AckCode::accept(mode)
                },
                error: unsupported.is_some().then(|| UNSUPPORTED.to_owned()),
                process: unsupported.is_none(),
                patient_identifier: message.pid().and_then(|pid| patient_identifier(&pid)),
                application_ack_type: match mode {
                    AckMode::Enhanced => msh
                        .application_ack_type()
                        .ok()
                        .flatten()
                        .map(|condition| condition.code()),
                    AckMode::Original => None,
                },
                reply_to: config.reply_to.clone(),
                raw,
            };
            let code = store(committer, config, row).await?;
            let mut ack = AckBuilder::new(&message, code, &ack_control_id, timestamp);
            if let Some(error) = unsupported
                && !matches!(code, AckCode::ApplicationAccept | AckCode::CommitAccept)
            {
                ack = ack.error(error);
            }
            Some(ack.build())
        }
        Err(error) => {
            let mode = sniff_mode(&frame);
            let ack_error = AckError::from_parse_error(&error);
            let row = NewMessage {
                id,
                received_at,
                listener: config.name.clone(),
                sending_application: None,
                sending_facility: None,
                control_id: None,
                message_type: None,
                trigger_event: None,
                processing_id: None,
                version: None,
                ack_mode: mode,
                status: Status::Rejected,
                ack_code: AckCode::reject(mode),
                error: Some(error.to_string()),
                process: false,
                patient_identifier: None,
                application_ack_type: None,
                reply_to: None,
                raw,
            };
            let code = store(committer, config, row).await?;
            Some(
                AckBuilder::for_unparsed(&frame, code, &ack_control_id, timestamp)
                    .error(ack_error)
                    .build(),
            )
        }
    }
}

async fn store(
    committer: &CommitterHandle,
    config: &ListenerConfig,
    row: NewMessage,
) -> Option<AckCode> {
    let id = row.id;
    let original = row.ack_code;
    match committer.store(config.tenant_id, row).await {
        Ok(stored) => Some(match stored {
            Stored::New => original,
            Stored::Duplicate { ack_code } => ack_code,
        }),
        Err(error) => {
            tracing::error!(message_id = %id, listener = %config.name, %error, "an HL7 message was not stored; no ACK sent");
            None
        }
    }
}

/// A field's text as PostgreSQL can store it: NUL, which `text` refuses (and which
/// would fail the whole group), becomes U+FFFD.
fn text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

/// Our ACK's MSH-10: 20 characters (the v2.5 limit) from the stored message's id.
pub(crate) fn ack_control_id(id: Uuid) -> String {
    id.simple().to_string()[12..].to_owned()
}

pub(crate) fn hl7_timestamp(at: OffsetDateTime) -> DateTime {
    DateTime::from_ymd_hms(
        u16::try_from(at.year()).unwrap_or(1970),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
    )
    .and_then(|value| value.with_offset_minutes(0))
    .expect("BUG: a UTC clock reading is a valid HL7 timestamp")
}

/// The acknowledgement mode of bytes that did not parse: enhanced when MSH-15 or
/// MSH-16 of a readable first line is set.
fn sniff_mode(bytes: &[u8]) -> AckMode {
    if bytes.len() < 4 || !bytes.starts_with(b"MSH") {
        return AckMode::Original;
    }
    let separator = bytes[3];
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    // Field n (n >= 2) is split part n - 1: "MSH" is part 0 and MSH-1 is the separator.
    let parts: Vec<&[u8]> = bytes[..line_end].split(|&b| b == separator).collect();
    let set = |n: usize| parts.get(n - 1).is_some_and(|part| !part.is_empty());
    if set(15) || set(16) {
        AckMode::Enhanced
    } else {
        AckMode::Original
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_of_unparsed_bytes_is_read_from_msh_15_and_16() {
        let original = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r";
        let enhanced = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1|||AL|NE\r";
        assert_eq!(sniff_mode(original), AckMode::Original);
        assert_eq!(sniff_mode(enhanced), AckMode::Enhanced);
        assert_eq!(sniff_mode(b"garbage"), AckMode::Original);
    }

    #[test]
    fn the_ack_control_id_fits_msh_10_of_v2_5() {
        assert_eq!(ack_control_id(Uuid::now_v7()).len(), 20);
    }
}
