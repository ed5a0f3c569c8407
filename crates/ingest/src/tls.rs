//! TLS for an MLLP listener (rustls, with the `ring` crypto provider): a certificate
//! chain and its key, and optionally a CA bundle that every client must present a
//! certificate from (mutual TLS).
//!
//! The provider is named explicitly rather than installed process-wide, so nothing
//! else in the process (the NATS client, say) can change which one a listener uses.

use std::fmt;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// A listener's TLS: the acceptor and whether it asks for client certificates.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
    client_auth: bool,
}

impl fmt::Debug for TlsConfig {
    // Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// Why a listener's TLS could not be set up. Names the file's role, never its
/// contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate chain holds no PEM certificate")]
    NoCertificate,
    #[error("the certificate chain is not valid PEM: {0}")]
    CertificatePem(String),
    #[error("the private key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey,
    #[error("the client CA bundle holds no usable PEM certificate")]
    NoClientCa,
    #[error("the client CA bundle is not valid PEM: {0}")]
    ClientCaPem(String),
    #[error("the certificate and key do not make a server configuration: {0}")]
    Certificate(tokio_rustls::rustls::Error),
    #[error("the client CA bundle cannot verify clients: {0}")]
    ClientVerifier(tokio_rustls::rustls::server::VerifierBuilderError),
}

impl TlsConfig {
    /// A server configuration from PEM text: `cert_chain` (the server's certificate
    /// first, then any intermediates), its `key`, and, for mutual TLS, the CAs whose
    /// client certificates are accepted. TLS 1.2 and 1.3.
    pub fn from_pem(
        cert_chain: &[u8],
        key: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TlsError::CertificatePem(err.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        // The key's own parse error is not repeated: it is about secret material.
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoPrivateKey)?;
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("BUG: ring supports the default protocol versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(bundle) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(bundle) {
                    let cert = cert.map_err(|err| TlsError::ClientCaPem(err.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|err| TlsError::ClientCaPem(err.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(TlsError::NoClientCa);
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(TlsError::ClientVerifier)?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(TlsError::Certificate)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            client_auth: client_ca.is_some(),
        })
    }

    /// Whether clients must present a certificate from the client CA bundle.
    pub fn client_auth(&self) -> bool {
        self.client_auth
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
