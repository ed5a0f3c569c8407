//! The listener's transport and operations surface on real sockets and a real
//! PostgreSQL: TLS with client certificates (made fresh by `rcgen` in each test, so
//! no key sits in the repository and none expires), the connection limit, the idle
//! timeout, and the counters its metrics are rendered from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use db::testing::TestDb;
use futures::{SinkExt, StreamExt};
use hl7::Message;
use hl7::mllp::MllpCodec;
use identity::keyring::{Keyring, MasterKey};
use ingest::listener::{Listener, ListenerConfig};
use ingest::metrics::{ListenerSnapshot, ListenerStats};
use ingest::store::{Backlog, Committer, CommitterConfig};
use ingest::tls::TlsConfig;
use kernel::TenantId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::codec::Framed;

use crate::{adt, count};

/// A running listener, its counters and the committer's backlog.
struct Running {
    addr: SocketAddr,
    tenant_id: TenantId,
    stats: Arc<ListenerStats>,
    backlog: Backlog,
    _shutdown: watch::Sender<bool>,
}

async fn run(
    db: &TestDb,
    committer_config: CommitterConfig,
    configure: impl FnOnce(&mut ListenerConfig),
) -> Running {
    let keyring = Keyring::new(MasterKey::generate());
    let tenant_id = identity::tenant::create(&db.app, &keyring, "Harbor Lab")
        .await
        .unwrap();
    let (committer, _task) = Committer::spawn(db.app.clone(), keyring, committer_config);
    let backlog = committer.backlog();
    let mut config = ListenerConfig::new(tenant_id, "lab");
    configure(&mut config);
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), config, committer)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = listener.stats();
    let (shutdown, rx) = watch::channel(false);
    tokio::spawn(listener.run(rx));
    Running {
        addr,
        tenant_id,
        stats,
        backlog,
        _shutdown: shutdown,
    }
}

/// Sends `message` and returns the ACK's MSA-1, or `None` if the connection ended
/// (or failed) without one.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Framed<S, MllpCodec>,
    message: &str,
) -> Option<String> {
    client.send(message.as_bytes()).await.ok()?;
    let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("an ACK or the end of the connection within 10 s")?
        .ok()?;
    let ack = Message::parse(&frame).unwrap();
    Some(ack.segment("MSA")?.field(1)?.as_str().to_owned())
}

async fn plain(addr: SocketAddr) -> Framed<TcpStream, MllpCodec> {
    Framed::new(TcpStream::connect(addr).await.unwrap(), MllpCodec::new())
}

/// Waits until `ready` holds of the listener's counters (they move just after the
/// socket does).
async fn counters_until(
    stats: &ListenerStats,
    ready: impl Fn(&ListenerSnapshot) -> bool,
) -> ListenerSnapshot {
    let started = Instant::now();
    loop {
        let snapshot = stats.snapshot();
        if ready(&snapshot) {
            return snapshot;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the counters never got there: {snapshot:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A certificate authority and what it signs.
struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Authority {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Self { params, key, pem }
    }

    /// A leaf certificate and its key, as PEM.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.extended_key_usages = vec![usage];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client trusting `server_ca`, presenting `identity` (certificate and key PEM)
/// if given.
async fn tls_client(
    addr: SocketAddr,
    server_ca: &Authority,
    identity: Option<&(String, String)>,
) -> std::io::Result<Framed<tokio_rustls::client::TlsStream<TcpStream>, MllpCodec>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server_ca.pem.as_bytes()).unwrap())
        .unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    Ok(Framed::new(stream, MllpCodec::new()))
}

#[tokio::test]
async fn a_tls_listener_accepts_a_client_certificate_from_its_ca_and_refuses_others() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server_ca = Authority::new("Tenet test server CA");
    let senders_ca = Authority::new("Tenet test senders CA");
    let stranger_ca = Authority::new("Someone else's CA");
    let (cert, key) = server_ca.issue(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let tls = TlsConfig::from_pem(
        cert.as_bytes(),
        key.as_bytes(),
        Some(senders_ca.pem.as_bytes()),
    )
    .unwrap();
    assert!(tls.client_auth());
    let server = run(&db, CommitterConfig::default(), |config| {
        config.tls = Some(tls);
    })
    .await;

    let lab = senders_ca.issue(&["lab-sender"], ExtendedKeyUsagePurpose::ClientAuth);
    let mut client = tls_client(server.addr, &server_ca, Some(&lab))
        .await
        .unwrap();
    assert_eq!(
        send(&mut client, &adt("LAB", "TLS1")).await.as_deref(),
        Some("AA")
    );

    // Without a certificate, and with one from another CA: whether the client's
    // handshake fails at once (TLS 1.2) or its first read does (TLS 1.3, where the
    // server checks the client's certificate after the client thinks it is done), no
    // message gets through.
    let stranger = stranger_ca.issue(&["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
    for (who, identity) in [("no certificate", None), ("a stranger's", Some(&stranger))] {
        if let Ok(mut client) = tls_client(server.addr, &server_ca, identity).await {
            let control_id = format!("TLS-{}", who.len());
            assert_eq!(
                send(&mut client, &adt("LAB", &control_id)).await,
                None,
                "a client with {who} was answered"
            );
        }
    }
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 1);
    let snapshot = counters_until(&server.stats, |s| s.connections_closed[5] == 2).await;
    assert_eq!(snapshot.messages[0], 1, "one AA");

    // Plain MLLP on a TLS port gets nowhere either.
    let mut plain = plain(server.addr).await;
    assert_eq!(send(&mut plain, &adt("LAB", "PLAIN1")).await, None);
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 1);
}

#[tokio::test]
async fn tls_set_up_from_a_key_that_is_not_the_certificates_is_refused() {
    let ca = Authority::new("Tenet test CA");
    let (cert, _) = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let (_, other_key) = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let error = TlsConfig::from_pem(cert.as_bytes(), other_key.as_bytes(), None).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("do not make a server configuration"),
        "{error}"
    );
    let error = TlsConfig::from_pem(b"", other_key.as_bytes(), None).unwrap_err();
    assert!(error.to_string().contains("no PEM certificate"), "{error}");
    let error = TlsConfig::from_pem(cert.as_bytes(), b"not a key", None).unwrap_err();
    assert!(error.to_string().contains("no PEM private key"), "{error}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_a_served_one_closes() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = run(&db, CommitterConfig::default(), |config| {
        config.connections_max = 1;
    })
    .await;
    let mut first = plain(server.addr).await;
    assert_eq!(
        send(&mut first, &adt("LAB", "MAX1")).await.as_deref(),
        Some("AA")
    );

    // The operating system completes the second connection, but the listener does
    // not take it: its message waits, unanswered and not stored.
    let mut second = plain(server.addr).await;
    second.send(adt("LAB", "MAX2").as_bytes()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), second.next())
            .await
            .is_err(),
        "the second connection was served while the first held the only slot"
    );
    assert_eq!(
        count(&db.app, server.tenant_id, "control_id = 'MAX2'").await,
        0
    );
    let snapshot = server.stats.snapshot();
    assert_eq!(
        (snapshot.connections_open, snapshot.connections_max),
        (1, 1)
    );

    drop(first);
    let frame = tokio::time::timeout(Duration::from_secs(10), second.next())
        .await
        .expect("served once the first connection closed")
        .expect("an ACK")
        .unwrap();
    let ack = Message::parse(&frame).unwrap();
    assert_eq!(ack.segment("MSA").unwrap().field(1).unwrap().as_str(), "AA");
    assert_eq!(
        count(&db.app, server.tenant_id, "control_id = 'MAX2'").await,
        1
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let idle_timeout = Duration::from_millis(300);
    let server = run(&db, CommitterConfig::default(), |config| {
        config.idle_timeout = idle_timeout;
    })
    .await;
    let mut client = plain(server.addr).await;
    assert_eq!(
        send(&mut client, &adt("LAB", "IDLE1")).await.as_deref(),
        Some("AA")
    );
    let silent_since = Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("the listener closes an idle connection");
    assert!(next.is_none(), "closed, not answered");
    assert!(
        silent_since.elapsed() >= idle_timeout,
        "closed after {:?}, before the idle timeout",
        silent_since.elapsed()
    );
    let snapshot = counters_until(&server.stats, |s| s.connections_open == 0).await;
    assert_eq!(snapshot.connections_closed[1], 1, "closed as idle");
}

#[tokio::test]
async fn the_counters_follow_real_traffic_by_ack_code_latency_and_refused_frames() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = run(&db, CommitterConfig::default(), |config| {
        config.senders = vec![("LAB".to_owned(), "HOSP".to_owned())];
        config.frame_bytes_max = 1024;
    })
    .await;
    let mut client = plain(server.addr).await;
    assert_eq!(
        send(&mut client, &adt("LAB", "M1")).await.as_deref(),
        Some("AA")
    );
    assert_eq!(
        send(&mut client, &adt("INTRUDER", "M2")).await.as_deref(),
        Some("AR")
    );
    assert_eq!(
        send(&mut client, "PID|1||12345\rMSH|not a header\r")
            .await
            .as_deref(),
        Some("AR")
    );
    let enhanced = "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ADT^A01|M4|P|2.5.1|||AL|NE\r";
    assert_eq!(send(&mut client, enhanced).await.as_deref(), Some("CA"));
    // Bytes outside any frame are skipped; the frame after them is served.
    client.get_mut().write_all(b"noise").await.unwrap();
    assert_eq!(
        send(&mut client, &adt("LAB", "M5")).await.as_deref(),
        Some("AA")
    );
    drop(client);

    let mut oversized = plain(server.addr).await;
    let mut big = adt("LAB", "BIG");
    big.push_str(&format!("NTE|1||{}\r", "x".repeat(4096)));
    assert_eq!(send(&mut oversized, &big).await, None);

    let snapshot = counters_until(&server.stats, |s| s.connections_open == 0).await;
    assert_eq!(snapshot.listener, "lab");
    // AA AE AR CA CE CR none
    assert_eq!(snapshot.messages, [2, 0, 2, 1, 0, 0, 0]);
    assert_eq!(snapshot.ack_latency.count, 5, "one latency per ACK written");
    assert!(snapshot.ack_latency.sum_secs > 0.0);
    assert_eq!(
        snapshot.ack_latency.buckets.last().map(|b| b.1),
        Some(5),
        "no ACK took over 5 s"
    );
    assert_eq!(snapshot.frames_refused, [1, 0], "one oversized frame");
    assert!(snapshot.bytes_skipped >= 5, "{snapshot:?}");
    assert_eq!(snapshot.connections_accepted, 2);
    // peer idle framing not_stored write tls shutdown
    assert_eq!(snapshot.connections_closed, [1, 0, 1, 0, 0, 0, 0]);
    assert_eq!(snapshot.messages_in_flight, 0);
}

#[tokio::test]
async fn messages_behind_a_blocked_commit_show_as_in_flight_and_in_the_committer_backlog() {
    let db = TestDb::migrated(&schema::migrator()).await;
    // Groups of one, one at a time: the committer takes one message and the others
    // queue.
    let committer_config = CommitterConfig {
        commits_in_flight: 1,
        group_max: 1,
        ..CommitterConfig::default()
    };
    let server = run(&db, committer_config, |_| {}).await;
    // Hold the table so the committer's INSERT waits.
    let mut lock = db.admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE ingest.messages IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut client = plain(server.addr).await;
        clients.push(tokio::spawn(async move {
            send(&mut client, &adt("LAB", &format!("B{i}"))).await
        }));
    }
    counters_until(&server.stats, |s| s.messages_in_flight == 3).await;
    let started = Instant::now();
    while server.backlog.get() != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the backlog is {}, not 2",
            server.backlog.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    lock.commit().await.unwrap();
    for client in clients {
        assert_eq!(client.await.unwrap().as_deref(), Some("AA"));
    }
    assert_eq!(server.backlog.get(), 0);
    assert_eq!(server.stats.snapshot().messages_in_flight, 0);
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 3);
}
