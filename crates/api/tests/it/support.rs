//! The world every test starts from, and a client that drives the router without a
//! socket.
//!
//! A [`World`] is a freshly migrated database with two tenants, A and B, each with one
//! user and one API key per role, served by `api::router` exactly as `tenet serve`
//! builds it (OIDC with a fixed key set, a checkpoint key). Every exchange the client
//! makes is kept in a journal, so a test can inspect every URL, header and body that
//! crossed the wire. Database inspection runs as the cluster superuser, which row-level
//! security does not restrict: it sees what an attacker with the disk would see.

use std::collections::{BTreeMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use api::metrics::Metrics;
use api::{AppState, Settings};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use db::TenantTx;
use db::testing::TestDb;
use http_body_util::BodyExt;
use identity::keyring::{Keyring, MasterKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kernel::{ApiKeyId, Role, TenantId, UserId};
use oidc::{OidcConfig, OidcVerifier};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;
use uuid::Uuid;

pub const ISSUER: &str = "https://login.example.test/realms/tenet";
pub const AUDIENCE: &str = "tenet-api";
pub const RSA_PEM: &str = include_str!("fixtures/rsa.pem");
pub const RSA_PUBLIC_PEM: &str = include_str!("fixtures/rsa.pub.pem");
pub const JWKS: &str = include_str!("fixtures/jwks.json");

/// The upload limit of the test API's document store.
pub const DOCUMENT_SIZE_MAX_BYTES: u64 = 1024 * 1024;

/// The schemas whose tables the tests inspect.
pub const SCHEMAS: [&str; 4] = ["identity", "clinical", "audit", "platform"];

/// A user of a tenant, with an API key issued to them and an OIDC subject.
pub struct Principal {
    pub role: Role,
    pub user_id: UserId,
    pub key_id: ApiKeyId,
    /// The API key (`tk_…`).
    pub token: String,
    /// The `sub` of this user's OIDC tokens.
    pub subject: String,
}

/// A tenant and one principal per role.
pub struct Tenant {
    pub id: TenantId,
    pub admin: Principal,
    pub clinician: Principal,
    pub care_coordinator: Principal,
    pub auditor: Principal,
    pub integration: Principal,
}

impl Tenant {
    async fn create(pool: &sqlx::PgPool, keyring: &Keyring, name: &str) -> Self {
        let id = identity::tenant::create(pool, keyring, name).await.unwrap();
        let mut tx = TenantTx::begin_as(pool, id, "system", None).await.unwrap();
        let mut principals = Vec::new();
        for role in Role::ALL {
            let handle = format!("{}-{role}", name.to_lowercase());
            let subject = format!("sub-{handle}");
            let user_id = identity::user::create(&mut tx, &handle, role, Some(&subject))
                .await
                .unwrap();
            let key = identity::api_key::create(&mut tx, role, &handle, Some(user_id))
                .await
                .unwrap();
            principals.push(Principal {
                role,
                user_id,
                key_id: key.id,
                token: key.token,
                subject,
            });
        }
        tx.commit().await.unwrap();
        let mut by_role = |role: Role| {
            let i = principals.iter().position(|p| p.role == role).unwrap();
            principals.swap_remove(i)
        };
        Self {
            id,
            admin: by_role(Role::Admin),
            clinician: by_role(Role::Clinician),
            care_coordinator: by_role(Role::CareCoordinator),
            auditor: by_role(Role::Auditor),
            integration: by_role(Role::Integration),
        }
    }

    pub fn principals(&self) -> [&Principal; 5] {
        [
            &self.admin,
            &self.clinician,
            &self.care_coordinator,
            &self.auditor,
            &self.integration,
        ]
    }
}

/// One request and its response, as the client saw them.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: Method,
    pub uri: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("header is text"))
    }

    /// Asserts the status and that the body is problem JSON of that status; returns
    /// its `type`.
    #[track_caller]
    pub fn problem(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let problem = self.json();
        assert_eq!(problem["status"], status.as_u16(), "{problem}");
        assert!(problem["title"].is_string(), "{problem}");
        problem["type"]
            .as_str()
            .expect("a problem has a type")
            .to_owned()
    }

    /// Asserts the status and an empty body.
    #[track_caller]
    pub fn ok_empty(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(self.body.is_empty(), "{}", self.text());
    }

    /// Asserts the status and returns the body as JSON.
    #[track_caller]
    pub fn ok(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        self.json()
    }
}

/// Drives the router in-process and journals every exchange. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    router: Router,
    journal: Arc<Mutex<Vec<Exchange>>>,
}

/// A request with an optional bearer credential.
pub fn request(method: Method, uri: &str, token: Option<&str>) -> axum::http::request::Builder {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder
}

/// A request with a JSON body.
pub fn json_request(method: Method, uri: &str, token: Option<&str>, body: &Value) -> Request<Body> {
    request(method, uri, token)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

impl Client {
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        self.journal.lock().unwrap().push(Exchange {
            method,
            uri,
            status,
            headers: headers.clone(),
            body: body.clone(),
        });
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A request with a bearer credential and, if given, a JSON body.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Reply {
        match body {
            None => {
                self.send(
                    request(method, uri, Some(token))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
            }
            Some(body) => {
                self.send(json_request(method, uri, Some(token), body))
                    .await
            }
        }
    }

    pub async fn get(&self, uri: &str, token: &str) -> Reply {
        self.send(
            request(Method::GET, uri, Some(token))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, uri: &str, token: &str, body: &Value) -> Reply {
        self.send(json_request(Method::POST, uri, Some(token), body))
            .await
    }

    pub async fn put(&self, uri: &str, token: &str, body: &Value) -> Reply {
        self.send(json_request(Method::PUT, uri, Some(token), body))
            .await
    }

    pub async fn delete(&self, uri: &str, token: &str) -> Reply {
        self.send(
            request(Method::DELETE, uri, Some(token))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Registers a patient and returns their id.
    pub async fn create_patient(&self, token: &str, body: &Value) -> Uuid {
        let created = self
            .post("/v1/patients", token, body)
            .await
            .ok(StatusCode::CREATED);
        created["id"].as_str().unwrap().parse().unwrap()
    }

    /// Every exchange so far.
    pub fn journal(&self) -> Vec<Exchange> {
        self.journal.lock().unwrap().clone()
    }
}

/// A patient with the given family name and an MRN, born in 1984.
pub fn patient(family_name: &str, mrn: &str) -> Value {
    json!({
        "family_name": family_name,
        "given_names": ["Alex"],
        "birth_date": "1984-02-29",
        "sex": "female",
        "identifiers": [{ "authority": "GENERAL-HOSPITAL", "value": mrn }],
    })
}

/// Row counts and content digests of every table: equal fingerprints mean nothing
/// was written. An API key's `last_used_at` is left out: authenticating records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<String, (i64, String)>);

impl Fingerprint {
    /// Asserts nothing changed since `self`, naming each table that did.
    #[track_caller]
    pub fn assert_unchanged(&self, after: &Fingerprint, what: &str) {
        let changed: Vec<String> = self
            .0
            .iter()
            .filter(|(table, before)| after.0.get(*table) != Some(before))
            .map(|(table, (n_before, _))| {
                format!("{table} (rows {n_before} -> {})", after.0[table].0)
            })
            .collect();
        assert!(changed.is_empty(), "{what} wrote to: {changed:?}");
        assert_eq!(self.0.len(), after.0.len(), "{what} created a table");
    }
}

/// The audit events that existed at some moment.
pub struct AuditMark(HashSet<Uuid>);

/// One audit event, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub actor: String,
    pub action: String,
    pub patient_id: Option<Uuid>,
    pub purpose: Option<String>,
    pub break_glass: bool,
    pub request_id: Option<Uuid>,
}

/// Two tenants with a principal per role, on a fresh database, behind the router.
pub struct World {
    pub db: TestDb,
    pub a: Tenant,
    pub b: Tenant,
    pub client: Client,
    /// The document store's directory, removed with the world.
    pub documents_dir: tempfile::TempDir,
}

impl Deref for World {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// The job kinds the test API knows: what a schedule may name.
pub fn job_registry() -> platform::jobs::Registry {
    platform::jobs::Registry::new()
        .register(platform::jobs::Noop)
        .register(platform::jobs::Probe {
            worker_id: "api-test".to_owned(),
        })
        .register(platform::sagas::SagaStep::new(
            platform::sagas::SagaRegistry::new(),
        ))
}

pub fn schema_version() -> i64 {
    schema::migrator()
        .migrations()
        .last()
        .expect("at least one migration")
        .version
}

impl World {
    pub async fn new() -> Self {
        let db = TestDb::migrated(&schema::migrator()).await;
        let keyring = Keyring::new(MasterKey::generate());
        let documents_dir = tempfile::tempdir().unwrap();
        let oidc = OidcVerifier::with_static_jwks(OidcConfig::new(ISSUER, AUDIENCE), JWKS)
            .expect("the fixture key set parses");
        let state = AppState {
            pool: db.app.clone(),
            keyring: keyring.clone(),
            oidc: Some(oidc),
            checkpoint_key: Some(Arc::new(audit::CheckpointKey::generate())),
            metrics: Metrics::new(),
            settings: Settings {
                break_glass_secs: 3600,
                schema_version: schema_version(),
                webhook_allow_private_hosts: false,
            },
            jobs: job_registry(),
            // A small limit, so the size test sends little.
            documents: documents::Storage::local(documents_dir.path())
                .unwrap()
                .with_size_max_bytes(DOCUMENT_SIZE_MAX_BYTES),
        };
        let a = Tenant::create(&db.app, &keyring, "A").await;
        let b = Tenant::create(&db.app, &keyring, "B").await;
        let client = Client {
            router: api::router(state),
            journal: Arc::default(),
        };
        Self {
            db,
            a,
            b,
            client,
            documents_dir,
        }
    }

    /// Every table of the inspected schemas, as `schema.table`.
    pub async fn tables(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') ORDER BY 1",
        )
        .bind(&SCHEMAS[..])
        .fetch_all(&self.db.admin)
        .await
        .unwrap()
    }

    pub async fn fingerprint(&self) -> Fingerprint {
        let mut tables = BTreeMap::new();
        for table in self.tables().await {
            let row: (i64, String) = sqlx::query_as(&format!(
                "SELECT count(*), coalesce(md5(string_agg(r, '|' ORDER BY r)), '')
                 FROM (SELECT (to_jsonb(t) - 'last_used_at')::text AS r FROM {table} t) s"
            ))
            .fetch_one(&self.db.admin)
            .await
            .unwrap();
            tables.insert(table, row);
        }
        Fingerprint(tables)
    }

    pub async fn audit_mark(&self) -> AuditMark {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM audit.events")
            .fetch_all(&self.db.admin)
            .await
            .unwrap();
        AuditMark(ids.into_iter().collect())
    }

    /// The audit events written since `mark`, oldest first.
    pub async fn audit_since(&self, mark: &AuditMark) -> Vec<AuditRow> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, tenant_id, actor, action, patient_id, purpose, break_glass, request_id
             FROM audit.events ORDER BY occurred_at, id",
        )
        .fetch_all(&self.db.admin)
        .await
        .unwrap();
        rows.into_iter()
            .filter(|row| !mark.0.contains(&row.id))
            .collect()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.db.admin)
            .await
            .unwrap()
    }
}

/// Claims that pass every check of the test verifier, for `subject` in `tenant_id`.
pub fn claims(subject: &str, tenant_id: TenantId) -> Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + 300,
        "tenet_tenant": tenant_id.to_string(),
    })
}

/// A JWT signed with `alg` by `key`, naming key id `kid`.
pub fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// An RS256 JWT signed by the issuer's key `rsa-1`.
pub fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        "rsa-1",
        &EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap(),
        claims,
    )
}

/// Every log line written on this thread while it lives, as JSON at TRACE: what the
/// PHI-canary tests search. Run such a test on a current-thread runtime.
pub struct LogCapture {
    buffer: LogBuffer,
    // tracing-core caches each callsite's interest process-wide. While only one
    // dispatcher exists, a callsite first hit on another test's thread is decided by
    // that thread's default (none) and cached as "never", which would silence it here
    // too. A second, silent dispatcher alive for the whole test makes every callsite
    // "sometimes": decided per event by the current thread's subscriber.
    _silent: tracing::Dispatch,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> Self {
        let silent = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let buffer = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(buffer.clone())
            .finish();
        Self {
            buffer,
            _silent: silent,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.buffer.0.lock().unwrap().clone()).unwrap()
    }
}

/// A buffer every log line is written into.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
