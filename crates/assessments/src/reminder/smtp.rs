//! The SMTP client of reminders: one conversation per message, in two phases, so the
//! caller knows whether a failure may be retried without sending twice.
//!
//! 1. Everything before the message body — connect, EHLO, STARTTLS, AUTH, `MAIL`,
//!    `RCPT`, `DATA`. A failure here delivered nothing: [`SendOutcome::Refused`],
//!    transient (retry) unless the server answered 5xx.
//! 2. The body and the server's verdict on it. A reply is a verdict — 2xx accepted,
//!    4xx/5xx refused (nothing delivered) — but a connection that breaks or times out
//!    here leaves the outcome [`SendOutcome::Unknown`]: the server may have accepted
//!    the message. The caller must never retry that on its own.
//!
//! Errors name the phase and the SMTP reply code, never the server's text (which often
//! echoes the recipient's address) nor the message.

use std::fmt;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;

/// The longest one whole conversation may take.
pub const CONVERSATION_TIMEOUT_MAX: Duration = Duration::from_secs(45);

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a trusted network.
    None,
    /// `STARTTLS`, required: a server that does not offer it is refused.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

/// Where and how reminders are sent.
#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User name and password for `AUTH PLAIN`/`LOGIN`.
    pub credentials: Option<(String, String)>,
    /// The `From:` and envelope sender: `Clinic reminders <reminders@clinic.example>`.
    pub from: lettre::message::Mailbox,
    /// The name given in EHLO.
    pub hello_name: String,
    /// Bounds each phase of the conversation.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[redacted]"),
            )
            .field("from", &self.from.email.to_string())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmtpConfigError {
    #[error(
        "the SMTP URL must be smtp://, smtp+starttls:// or smtps://[user[:password]@]host[:port]"
    )]
    InvalidUrl,
    #[error("the from address must be an address, optionally with a name: `Name <user@host>`")]
    InvalidFrom,
}

impl SmtpConfig {
    /// Reads `smtp://host[:25]` (plain), `smtp+starttls://host[:587]` (STARTTLS
    /// required) or `smtps://host[:465]` (implicit TLS), each with optional
    /// percent-encoded `user:password@`.
    pub fn from_url(url: &str, from: &str) -> Result<Self, SmtpConfigError> {
        let (scheme, rest) = url.split_once("://").ok_or(SmtpConfigError::InvalidUrl)?;
        let (tls, default_port) = match scheme {
            "smtp" => (SmtpTls::None, 25),
            "smtp+starttls" => (SmtpTls::StartTls, 587),
            "smtps" => (SmtpTls::Implicit, 465),
            _ => return Err(SmtpConfigError::InvalidUrl),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some((percent_decode(user)?, percent_decode(password)?))
            }
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| SmtpConfigError::InvalidUrl)?,
            ),
            _ => (hostport, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !host_ok || port == 0 || rest.contains(['/', '?', '#']) {
            return Err(SmtpConfigError::InvalidUrl);
        }
        let from = from
            .parse::<lettre::message::Mailbox>()
            .map_err(|_| SmtpConfigError::InvalidFrom)?;
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            credentials,
            hello_name: from.email.domain().to_owned(),
            from,
            timeout: Duration::from_secs(15),
        })
    }
}

fn percent_decode(text: &str) -> Result<String, SmtpConfigError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or(SmtpConfigError::InvalidUrl)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| SmtpConfigError::InvalidUrl)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SmtpConfigError::InvalidUrl)
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The server answered 2xx to the message.
    Accepted,
    /// Nothing was delivered: the server refused, or the conversation failed before
    /// the message was handed over. `transient` unless the server answered 5xx.
    Refused { transient: bool, reason: String },
    /// The message was handed over and no verdict came back: it may have been
    /// delivered. Never retry this automatically.
    Unknown { reason: String },
}

/// Sends `message` (formatted RFC 5322 bytes) to `envelope` through `config`'s server.
pub async fn send(config: &SmtpConfig, envelope: &Envelope, message: &[u8]) -> SendOutcome {
    let phase_timeout = config.timeout.min(CONVERSATION_TIMEOUT_MAX / 3);
    let mut connection = match tokio::time::timeout(phase_timeout, prepare(config, envelope)).await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err((step, err))) => return refused(step, &err),
        Err(_) => {
            return SendOutcome::Refused {
                transient: true,
                reason: "smtp timed out before the message was sent".to_owned(),
            };
        }
    };
    let outcome = match tokio::time::timeout(phase_timeout, connection.message(message)).await {
        Ok(Ok(_)) => SendOutcome::Accepted,
        // A reply code to the message is a verdict: refused, nothing delivered.
        Ok(Err(err)) if err.status().is_some() => refused("message", &err),
        Ok(Err(err)) => SendOutcome::Unknown {
            reason: format!(
                "smtp connection failed after the message was handed over ({})",
                kind(&err)
            ),
        },
        Err(_) => SendOutcome::Unknown {
            reason: "smtp timed out waiting for the verdict on the message".to_owned(),
        },
    };
    if outcome == SendOutcome::Accepted {
        // Best effort: the message is accepted whatever QUIT says.
        let _ = tokio::time::timeout(Duration::from_secs(2), connection.quit()).await;
    } else {
        connection.abort().await;
    }
    outcome
}

type StepError = (&'static str, lettre::transport::smtp::Error);

/// Connects and says everything up to `DATA` (answered 354).
async fn prepare(
    config: &SmtpConfig,
    envelope: &Envelope,
) -> Result<AsyncSmtpConnection, StepError> {
    let hello = ClientId::Domain(config.hello_name.clone());
    let tls_parameters = || {
        TlsParameters::builder(config.host.clone())
            .build_rustls()
            .map_err(|err| ("tls", err))
    };
    let implicit = match config.tls {
        SmtpTls::Implicit => Some(tls_parameters()?),
        SmtpTls::None | SmtpTls::StartTls => None,
    };
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        (config.host.as_str(), config.port),
        Some(config.timeout),
        &hello,
        implicit,
        None,
    )
    .await
    .map_err(|err| ("connect", err))?;
    if config.tls == SmtpTls::StartTls {
        connection
            .starttls(tls_parameters()?, &hello)
            .await
            .map_err(|err| ("starttls", err))?;
    }
    if let Some((user, password)) = &config.credentials {
        connection
            .auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(user.clone(), password.clone()),
            )
            .await
            .map_err(|err| ("auth", err))?;
    }
    connection
        .command(Mail::new(envelope.from().cloned(), vec![]))
        .await
        .map_err(|err| ("mail", err))?;
    for to in envelope.to() {
        connection
            .command(Rcpt::new(to.clone(), vec![]))
            .await
            .map_err(|err| ("rcpt", err))?;
    }
    connection
        .command(Data)
        .await
        .map_err(|err| ("data", err))?;
    Ok(connection)
}

fn refused(step: &str, err: &lettre::transport::smtp::Error) -> SendOutcome {
    SendOutcome::Refused {
        transient: !err.is_permanent(),
        reason: format!("smtp {step} failed ({})", kind(err)),
    }
}

/// The error's kind and reply code, never its text.
fn kind(err: &lettre::transport::smtp::Error) -> String {
    match err.status() {
        Some(code) => format!("reply {code}"),
        None if err.is_timeout() => "timeout".to_owned(),
        None if err.is_tls() => "tls".to_owned(),
        None if err.is_client() => "client".to_owned(),
        None => "network".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_tls_mode_port_and_credentials() {
        let config =
            SmtpConfig::from_url("smtp://127.0.0.1:2525", "Tenet <r@clinic.example>").unwrap();
        assert_eq!(
            (config.host.as_str(), config.port, config.tls),
            ("127.0.0.1", 2525, SmtpTls::None)
        );
        assert!(config.credentials.is_none());
        let config = SmtpConfig::from_url(
            "smtp+starttls://me%40x:p%3Ass@mail.example",
            "r@clinic.example",
        )
        .unwrap();
        assert_eq!((config.port, config.tls), (587, SmtpTls::StartTls));
        assert_eq!(
            config.credentials,
            Some(("me@x".to_owned(), "p:ss".to_owned()))
        );
        assert!(!format!("{config:?}").contains("p:ss"));
        assert_eq!(
            SmtpConfig::from_url("smtps://mail.example", "r@clinic.example")
                .unwrap()
                .port,
            465
        );
        for bad in [
            "http://mail.example",
            "smtp://",
            "smtp://mail.example:0",
            "smtp://mail.example:x",
            "smtp://mail.example/path",
        ] {
            assert_eq!(
                SmtpConfig::from_url(bad, "r@clinic.example").unwrap_err(),
                SmtpConfigError::InvalidUrl,
                "{bad}"
            );
        }
        assert_eq!(
            SmtpConfig::from_url("smtp://mail.example", "not an address").unwrap_err(),
            SmtpConfigError::InvalidFrom
        );
    }
}
