//! A real webhook receiver on 127.0.0.1: verifies each request's signature with its
//! subscription's secret, answers as the test tells it to, and logs what it saw.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use platform::relay::{SIGNATURE_HEADER, verify_signature};
use time::OffsetDateTime;
use uuid::Uuid;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub hook: String,
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub aggregate_id: Uuid,
    pub n: i64,
    pub signature_ok: bool,
    pub answered: u16,
}

#[derive(Default)]
pub struct Receiver {
    /// Each hook's subscription secret.
    secrets: Mutex<HashMap<String, String>>,
    log: Mutex<Vec<Received>>,
    /// Requests still to answer with 500, whatever they carry.
    failures_left: AtomicUsize,
    /// Hooks that answer 500 to everything.
    broken_hooks: Mutex<HashSet<String>>,
    /// Payload `n`s answered with 500 (poison events).
    poison: Mutex<HashSet<i64>>,
}

impl Receiver {
    /// Starts a receiver; returns it and its base URL.
    pub async fn start() -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver::default());
        let app = Router::new()
            .route("/hook/{name}", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, format!("http://{address}"))
    }

    pub fn set_secret(&self, hook: &str, secret: &str) {
        self.secrets
            .lock()
            .unwrap()
            .insert(hook.to_owned(), secret.to_owned());
    }

    pub fn fail_next(&self, n: usize) {
        self.failures_left.store(n, Ordering::SeqCst);
    }

    pub fn break_hook(&self, hook: &str, broken: bool) {
        let mut broken_hooks = self.broken_hooks.lock().unwrap();
        if broken {
            broken_hooks.insert(hook.to_owned());
        } else {
            broken_hooks.remove(hook);
        }
    }

    pub fn poison(&self, n: i64, poisoned: bool) {
        let mut poison = self.poison.lock().unwrap();
        if poisoned {
            poison.insert(n);
        } else {
            poison.remove(&n);
        }
    }

    pub fn log(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The events `hook` accepted (answered 2xx), first acceptance of each, in order.
    pub fn accepted(&self, hook: &str) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.log()
            .into_iter()
            .filter(|r| r.hook == hook && r.answered == 200 && seen.insert(r.event_id))
            .collect()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let secret = receiver.secrets.lock().unwrap().get(&hook).cloned();
    let signature_ok = match (secret, headers.get(SIGNATURE_HEADER)) {
        (Some(secret), Some(header)) => verify_signature(
            &secret,
            header.to_str().unwrap_or(""),
            &body,
            OffsetDateTime::now_utc(),
            Duration::from_secs(300),
        )
        .is_ok(),
        _ => false,
    };
    let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let n = envelope["payload"]["n"].as_i64().unwrap();
    let failing = receiver
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
        || receiver.broken_hooks.lock().unwrap().contains(&hook)
        || receiver.poison.lock().unwrap().contains(&n);
    let answered = if !signature_ok {
        StatusCode::BAD_REQUEST
    } else if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    receiver.log.lock().unwrap().push(Received {
        hook,
        event_id: envelope["id"].as_str().unwrap().parse().unwrap(),
        tenant_id: envelope["tenant_id"].as_str().unwrap().parse().unwrap(),
        aggregate_id: envelope["aggregate_id"].as_str().unwrap().parse().unwrap(),
        n,
        signature_ok,
        answered: answered.as_u16(),
    });
    let body = if answered == StatusCode::OK {
        "ok"
    } else {
        "receiver says no"
    };
    (answered, body)
}
