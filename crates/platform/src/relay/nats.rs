//! The NATS JetStream sink: every event is published to
//! `<subject_prefix>.<tenant id>.<event type>` (event types are dotted, so they become
//! subject tokens: `tenet.<tenant>.patient.created`) on the configured stream.
//!
//! Each message carries `Nats-Msg-Id: <event id>`: JetStream drops a second message
//! with the same id inside the stream's duplicate window, so a redelivery after a
//! relay crash does not reach subscribers twice. A delivery is marked delivered only
//! after the server's PubAck (which says the stream stored it, or already had it).
//!
//! The client connects and reconnects in the background. The relay claims NATS
//! deliveries only while it is connected, so an outage leaves them `pending` (they
//! do not use up their attempts) and they go out, in order, once it is back.
//!
//! This module must never log message bodies.

use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::OnceCell;

use super::{Attempt, Envelope};

/// The `consumer` of NATS deliveries.
pub const CONSUMER: &str = "nats";

/// Where and how events are published.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The JetStream stream; created (capturing `<subject_prefix>.>`) if missing.
    pub stream: String,
    pub subject_prefix: String,
    /// How long to wait for a PubAck before the attempt counts as failed.
    pub ack_timeout: Duration,
    /// The stream's de-duplication window, when the relay creates the stream. It must
    /// exceed the longest time a delivery can wait between a publish whose PubAck was
    /// lost and its retry.
    pub duplicate_window: Duration,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "TENET_EVENTS".to_owned(),
            subject_prefix: "tenet".to_owned(),
            ack_timeout: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(3600),
        }
    }

    /// The subject an event is published to.
    pub fn subject(&self, event: &Envelope) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix, event.tenant_id, event.event_type
        )
    }
}

pub(crate) struct NatsSink {
    config: NatsConfig,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: OnceCell<()>,
}

impl NatsSink {
    pub(crate) async fn connect(config: NatsConfig) -> Result<Self, async_nats::ConnectError> {
        let client = async_nats::ConnectOptions::new()
            .name("tenet-relay")
            .retry_on_initial_connect()
            // Keep trying for as long as the relay lives: an outage is waited out.
            .max_reconnects(None)
            .connect(config.url.as_str())
            .await?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(config.ack_timeout);
        Ok(Self {
            config,
            client,
            jetstream,
            stream: OnceCell::new(),
        })
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn ensure_stream(&self) -> Result<(), String> {
        self.stream
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(jetstream::stream::Config {
                        name: self.config.stream.clone(),
                        subjects: vec![format!("{}.>", self.config.subject_prefix)],
                        duplicate_window: self.config.duplicate_window,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|err| format!("creating stream {}: {err}", self.config.stream))
            })
            .await
            .copied()
    }

    /// Publishes `event` and waits for its PubAck.
    pub(crate) async fn publish(&self, event: &Envelope) -> Attempt {
        if let Err(error) = self.ensure_stream().await {
            return Attempt::failed(error);
        }
        let body = serde_json::to_vec(&event.to_json()).expect("BUG: JSON values serialize");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            event.id.to_string().as_str(),
        );
        headers.insert("Tenet-Event-Type", event.event_type.as_str());
        let subject = self.config.subject(event);
        let ack = match self
            .jetstream
            .publish_with_headers(subject, headers, body.into())
            .await
        {
            Ok(ack) => ack.await,
            Err(err) => return Attempt::failed(format!("publishing: {err}")),
        };
        match ack {
            Ok(ack) => {
                if ack.duplicate {
                    tracing::debug!(event_id = %event.id, "JetStream already had this event");
                }
                Attempt::ok()
            }
            Err(err) => Attempt::failed(format!("waiting for the PubAck: {err}")),
        }
    }
}
