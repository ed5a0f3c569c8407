//! The MLLP listeners a node runs: the `[[listener]]` tables of `--mllp-config FILE`
//! and the one-listener shorthand `--mllp ADDR --mllp-tenant ID`, checked together
//! before anything binds: names and ports unique, limits in range, senders well
//! formed, TLS files readable and consistent. Whether each tenant exists is checked
//! against the database by the caller ([`check_tenants`]).
//!
//! ```toml
//! [[listener]]
//! name = "lab"
//! addr = "0.0.0.0:2575"
//! tenant = "0192f3a4-…"
//! senders = ["LAB^HOSP", "ADT^HOSP"]   # MSH-3.1^MSH-4.1; absent or empty: anyone
//! idle_timeout_secs = 300
//! connections_max = 64
//! frame_bytes_max = 1048576
//! reply_to = "lab-gateway.example:2576"  # optional: where application ACKs go (enhanced mode)
//!
//! [listener.tls]                        # optional
//! cert = "tls/lab.crt"                  # PEM: the server's certificate, then intermediates
//! key = "tls/lab.key"                   # PEM: PKCS#8, PKCS#1 or SEC1
//! client_ca = "tls/senders-ca.pem"      # optional: require client certificates from these CAs
//! ```
//!
//! Relative paths are relative to the file's directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ingest::listener::ListenerConfig;
use ingest::tls::TlsConfig;
use kernel::TenantId;
use serde::Deserialize;
use uuid::Uuid;

use crate::cli::ServeArgs;

/// The name of the listener `--mllp ADDR --mllp-tenant ID` makes.
pub const SHORTHAND_NAME: &str = "mllp";

/// The longest listener name (it is stored with each message and labels metrics).
pub const NAME_LEN_MAX: usize = 64;

/// The most listeners one node runs.
pub const LISTENERS_MAX: usize = 64;

/// The most senders on one listener's allow-list.
pub const SENDERS_MAX: usize = 10_000;

/// The longest idle timeout: a day.
pub const IDLE_TIMEOUT_SECS_MAX: u64 = 86_400;

/// The most connections one listener serves at once.
pub const CONNECTIONS_MAX_MAX: usize = 65_536;

/// The largest listeners file read.
const FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// A listener ready to bind.
#[derive(Debug)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub config: ListenerConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenersFile {
    #[serde(default)]
    listener: Vec<ListenerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerEntry {
    name: String,
    addr: SocketAddr,
    tenant: Uuid,
    #[serde(default)]
    senders: Vec<String>,
    frame_bytes_max: Option<usize>,
    idle_timeout_secs: Option<u64>,
    connections_max: Option<usize>,
    reply_to: Option<String>,
    tls: Option<TlsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsEntry {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// Every listener `args` configures, checked; empty if none is.
pub fn load(args: &ServeArgs) -> anyhow::Result<Vec<ListenerSpec>> {
    let mut specs = Vec::new();
    if let Some(path) = &args.mllp_config {
        specs = read_file(path)?;
    }
    if let (Some(addr), Some(tenant)) = (args.mllp, args.mllp_tenant) {
        specs.push(ListenerSpec {
            addr,
            config: ListenerConfig::new(TenantId::new_unchecked(tenant), SHORTHAND_NAME),
        });
    }
    check_unique(&specs)?;
    Ok(specs)
}

/// The listeners of a TOML file; TLS paths are taken relative to its directory.
fn read_file(path: &Path) -> anyhow::Result<Vec<ListenerSpec>> {
    let what = || format!("the MLLP listeners file {}", path.display());
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", what()))?
        .len();
    if size > FILE_BYTES_MAX {
        bail!("{} is over {FILE_BYTES_MAX} bytes", what());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", what()))?;
    let file: ListenersFile = toml::from_str(&text).with_context(what)?;
    if file.listener.is_empty() {
        bail!("{} has no [[listener]] table", what());
    }
    if file.listener.len() > LISTENERS_MAX {
        bail!(
            "{} has {} listeners; at most {LISTENERS_MAX}",
            what(),
            file.listener.len()
        );
    }
    let base = path.parent().unwrap_or(Path::new("."));
    file.listener
        .into_iter()
        .map(|entry| {
            let name = entry.name.clone();
            spec(entry, base)
                .with_context(|| format!("MLLP listener {name:?} in {}", path.display()))
        })
        .collect()
}

fn spec(entry: ListenerEntry, base: &Path) -> anyhow::Result<ListenerSpec> {
    check_name(&entry.name)?;
    let mut config = ListenerConfig::new(TenantId::new_unchecked(entry.tenant), &entry.name);
    if entry.senders.len() > SENDERS_MAX {
        bail!("at most {SENDERS_MAX} senders, got {}", entry.senders.len());
    }
    config.senders = entry
        .senders
        .iter()
        .map(|sender| parse_sender(sender))
        .collect::<anyhow::Result<_>>()?;
    if let Some(bytes) = entry.frame_bytes_max {
        if !(1..=hl7::mllp::FRAME_BYTES_MAX).contains(&bytes) {
            bail!(
                "frame_bytes_max must be 1 to {} (the largest HL7 message), got {bytes}",
                hl7::mllp::FRAME_BYTES_MAX
            );
        }
        config.frame_bytes_max = bytes;
    }
    if let Some(secs) = entry.idle_timeout_secs {
        if !(1..=IDLE_TIMEOUT_SECS_MAX).contains(&secs) {
            bail!("idle_timeout_secs must be 1 to {IDLE_TIMEOUT_SECS_MAX}, got {secs}");
        }
        config.idle_timeout = Duration::from_secs(secs);
    }
    if let Some(n) = entry.connections_max {
        if !(1..=CONNECTIONS_MAX_MAX).contains(&n) {
            bail!("connections_max must be 1 to {CONNECTIONS_MAX_MAX}, got {n}");
        }
        config.connections_max = n;
    }
    if let Some(reply_to) = entry.reply_to {
        check_reply_to(&reply_to)?;
        config.reply_to = Some(reply_to);
    }
    if let Some(tls) = entry.tls {
        config.tls = Some(load_tls(&tls, base)?);
    }
    Ok(ListenerSpec {
        addr: entry.addr,
        config,
    })
}

/// `host:port`: where the senders' own listener takes application acknowledgements.
fn check_reply_to(reply_to: &str) -> anyhow::Result<()> {
    let ok = reply_to
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        bail!("reply_to must be host:port, got {reply_to:?}");
    }
    Ok(())
}

/// 1 to 64 of `A-Z a-z 0-9 . _ -`: it is stored with each message and is a metric
/// label.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        bail!("a listener name is 1 to {NAME_LEN_MAX} of A-Z, a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

/// `APPLICATION^FACILITY`: MSH-3.1 and MSH-4.1, both present.
fn parse_sender(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('^') {
        Some((application, facility))
            if !application.is_empty() && !facility.is_empty() && !facility.contains('^') =>
        {
            Ok((application.to_owned(), facility.to_owned()))
        }
        _ => {
            bail!("a sender is \"APPLICATION^FACILITY\" (MSH-3.1^MSH-4.1, both set), got {text:?}")
        }
    }
}

fn load_tls(tls: &TlsEntry, base: &Path) -> anyhow::Result<TlsConfig> {
    let read = |path: &Path, what: &str| {
        let path = base.join(path);
        std::fs::read(&path).with_context(|| format!("reading the TLS {what} {}", path.display()))
    };
    let cert = read(&tls.cert, "certificate chain")?;
    let key = read(&tls.key, "private key")?;
    let client_ca = match &tls.client_ca {
        Some(path) => Some(read(path, "client CA bundle")?),
        None => None,
    };
    TlsConfig::from_pem(&cert, &key, client_ca.as_deref()).context("setting up TLS")
}

/// No two listeners share a name, or a port on overlapping addresses (the same
/// address, or either one unspecified: `0.0.0.0` takes the port on every address).
fn check_unique(specs: &[ListenerSpec]) -> anyhow::Result<()> {
    let mut names = HashMap::new();
    for spec in specs {
        if names.insert(spec.config.name.as_str(), ()).is_some() {
            bail!(
                "two MLLP listeners are named {:?}; names must be unique",
                spec.config.name
            );
        }
    }
    for (i, a) in specs.iter().enumerate() {
        for b in &specs[i + 1..] {
            let overlap = a.addr.ip() == b.addr.ip()
                || a.addr.ip().is_unspecified()
                || b.addr.ip().is_unspecified();
            if a.addr.port() != 0 && a.addr.port() == b.addr.port() && overlap {
                bail!(
                    "MLLP listeners {:?} ({}) and {:?} ({}) both take port {}",
                    a.config.name,
                    a.addr,
                    b.config.name,
                    b.addr,
                    a.addr.port()
                );
            }
        }
    }
    Ok(())
}

/// Every listener's tenant exists and is active; checked as the service role in the
/// tenant's own transaction, as the committer will write.
pub async fn check_tenants(app: &sqlx::PgPool, specs: &[ListenerSpec]) -> anyhow::Result<()> {
    for spec in specs {
        let tenant_id = spec.config.tenant_id;
        let mut tx = db::TenantTx::begin_as(app, tenant_id, "system:ingest", None).await?;
        let active = identity::tenant::is_active(&mut tx).await?;
        tx.rollback().await?;
        if !active {
            bail!(
                "MLLP listener {:?}: no active tenant {tenant_id}",
                spec.config.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ingest::listener::{CONNECTIONS_MAX_DEFAULT, IDLE_TIMEOUT_DEFAULT};

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_file(text: &str) -> anyhow::Result<Vec<ListenerSpec>> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "mllp.toml", text);
        let specs = read_file(&path)?;
        check_unique(&specs)?;
        Ok(specs)
    }

    const TENANT: &str = "0192f3a4-0000-7000-8000-000000000001";

    #[test]
    fn a_listeners_file_sets_every_option_and_leaves_the_rest_at_their_defaults() {
        let specs = load_file(&format!(
            r#"
            [[listener]]
            name = "lab"
            addr = "127.0.0.1:2575"
            tenant = "{TENANT}"
            senders = ["LAB^HOSP", "ADT^HOSP"]
            frame_bytes_max = 65536
            idle_timeout_secs = 30
            connections_max = 8
            reply_to = "lab-gateway.example:2576"

            [[listener]]
            name = "adt"
            addr = "127.0.0.1:2576"
            tenant = "{TENANT}"
            "#
        ))
        .unwrap();
        assert_eq!(specs.len(), 2);
        let lab = &specs[0].config;
        assert_eq!(lab.name, "lab");
        assert_eq!(
            lab.senders,
            [
                ("LAB".to_owned(), "HOSP".to_owned()),
                ("ADT".to_owned(), "HOSP".to_owned())
            ]
        );
        assert_eq!(
            (lab.frame_bytes_max, lab.idle_timeout, lab.connections_max),
            (65536, Duration::from_secs(30), 8)
        );
        assert_eq!(lab.reply_to.as_deref(), Some("lab-gateway.example:2576"));
        let adt = &specs[1].config;
        assert!(adt.senders.is_empty());
        assert_eq!(
            (adt.idle_timeout, adt.connections_max, adt.frame_bytes_max),
            (
                IDLE_TIMEOUT_DEFAULT,
                CONNECTIONS_MAX_DEFAULT,
                hl7::mllp::FRAME_BYTES_MAX
            )
        );
        assert!(adt.tls.is_none());
        assert!(adt.reply_to.is_none());
    }

    #[test]
    fn a_listeners_file_with_a_mistake_is_refused_naming_the_listener_and_the_mistake() {
        let cases = [
            (
                "addr = \"127.0.0.1:2575\"\ntenant = \"{T}\"\nname = \"lab\"\nsendrs = []",
                "unknown field",
            ),
            (
                "name = \"lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{T}\"\nsenders = [\"LAB\"]",
                "APPLICATION^FACILITY",
            ),
            (
                "name = \"lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{T}\"\nconnections_max = 0",
                "connections_max must be 1 to",
            ),
            (
                "name = \"lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{T}\"\nidle_timeout_secs = 0",
                "idle_timeout_secs must be 1 to",
            ),
            (
                "name = \"lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{T}\"\nframe_bytes_max = 999999999",
                "frame_bytes_max must be 1 to",
            ),
            (
                "name = \"lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{T}\"\nreply_to = \"lab-gateway\"",
                "reply_to must be host:port",
            ),
            (
                "name = \"lab lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{T}\"",
                "a listener name is",
            ),
            (
                "name = \"lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{T}\"\n[listener.tls]\ncert = \"missing.crt\"\nkey = \"missing.key\"",
                "reading the TLS certificate chain",
            ),
        ];
        for (body, expected) in cases {
            let text = format!("[[listener]]\n{}", body.replace("{T}", TENANT));
            let error = format!("{:#}", load_file(&text).unwrap_err());
            assert!(
                error.contains(expected),
                "{text:?} gave {error:?}, not {expected:?}"
            );
        }
    }

    #[test]
    fn two_listeners_with_one_name_or_one_port_are_refused() {
        let listener = |name: &str, addr: &str| {
            format!("[[listener]]\nname = \"{name}\"\naddr = \"{addr}\"\ntenant = \"{TENANT}\"\n")
        };
        let same_name = listener("lab", "127.0.0.1:2575") + &listener("lab", "127.0.0.1:2576");
        let error = format!("{:#}", load_file(&same_name).unwrap_err());
        assert!(error.contains("named \"lab\""), "{error}");
        let same_port = listener("lab", "0.0.0.0:2575") + &listener("adt", "127.0.0.1:2575");
        let error = format!("{:#}", load_file(&same_port).unwrap_err());
        assert!(error.contains("both take port 2575"), "{error}");
        let other_addresses =
            listener("lab", "127.0.0.1:2575") + &listener("adt", "127.0.0.2:2575");
        assert_eq!(load_file(&other_addresses).unwrap().len(), 2);
    }

    #[test]
    fn tls_files_are_read_relative_to_the_listeners_file_and_a_key_of_another_certificate_is_refused()
     {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        write(dir.path(), "tls/server.crt", &cert.pem());
        write(dir.path(), "tls/server.key", &key.serialize_pem());
        write(dir.path(), "tls/other.key", &ca_key.serialize_pem());
        write(dir.path(), "tls/ca.pem", &ca.pem());
        let file = |key: &str| {
            format!(
                "[[listener]]\nname = \"lab\"\naddr = \"127.0.0.1:2575\"\ntenant = \"{TENANT}\"\n\
                 [listener.tls]\ncert = \"tls/server.crt\"\nkey = \"{key}\"\nclient_ca = \"tls/ca.pem\"\n"
            )
        };
        let path = write(dir.path(), "mllp.toml", &file("tls/server.key"));
        let specs = read_file(&path).unwrap();
        let tls = specs[0].config.tls.as_ref().expect("TLS is set up");
        assert!(tls.client_auth());

        let path = write(dir.path(), "mllp.toml", &file("tls/other.key"));
        let error = format!("{:#}", read_file(&path).unwrap_err());
        assert!(
            error.contains("the certificate and key do not make a server configuration"),
            "{error}"
        );
    }
}
