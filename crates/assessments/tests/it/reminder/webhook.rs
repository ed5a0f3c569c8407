//! A real HTTP receiver for webhooks on 127.0.0.1: keeps every request whose
//! signature verifies with the subscription's secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use platform::relay::{SIGNATURE_HEADER, verify_signature};
use time::OffsetDateTime;

#[derive(Default)]
pub struct Receiver {
    secret: Mutex<String>,
    /// Envelopes received with a valid signature.
    pub received: Mutex<Vec<serde_json::Value>>,
    /// Raw bodies, signed or not.
    pub bodies: Mutex<Vec<String>>,
}

impl Receiver {
    pub async fn start() -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver::default());
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, format!("http://{address}/hook"))
    }

    pub fn set_secret(&self, secret: &str) {
        *self.secret.lock().unwrap() = secret.to_owned();
    }

    /// The payloads of received `assessment.reminder_due` events on `channel`.
    pub fn reminders(&self, channel: &str) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|envelope| {
                envelope["type"] == "assessment.reminder_due"
                    && envelope["payload"]["channel"] == channel
            })
            .map(|envelope| envelope["payload"].clone())
            .collect()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    receiver
        .bodies
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    let secret = receiver.secret.lock().unwrap().clone();
    let signed = headers.get(SIGNATURE_HEADER).is_some_and(|header| {
        verify_signature(
            &secret,
            header.to_str().unwrap_or(""),
            &body,
            OffsetDateTime::now_utc(),
            Duration::from_secs(300),
        )
        .is_ok()
    });
    if !signed {
        return StatusCode::BAD_REQUEST;
    }
    receiver
        .received
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}
