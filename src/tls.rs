//! Tunnel TLS: loading PEM material, rustls configs for both ends of a tunnel (TLS 1.3 only,
//! client certificates required both ways), and the peer-identity checks layered on top of
//! webpki's chain validation.

mod verifier;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, PeerConfig};
pub use verifier::{PeerClientVerifier, PeerServerVerifier};

/// ALPN of the TCP tunnel: it carries HTTP/2, so it says so.
pub const TUNNEL_ALPN: &[u8] = b"h2";

/// Why TLS material could not be loaded or assembled.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path} holds no PEM {expected}; check the file is the right one")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{what} {path} is not valid PEM: {message}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("trust bundle {path} has an unusable CA certificate: {source}")]
    Trust {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("certificate {cert} does not go with key {key}: {source}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The one crypto provider used everywhere (rustls, rcgen and the tests agree on aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs [`provider`] as the process default, for code paths that use `builder()`.
pub fn install_default_provider() {
    // Err means one is installed already, which is the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Everything the tunnel needs to accept and dial, built from one [`Config`].
#[derive(Clone)]
pub struct TunnelTls {
    /// Used by the tunnel listener.
    pub server: Arc<ServerConfig>,
    /// One client config per peer, each checking that peer's identity and trust bundle.
    pub clients: HashMap<String, Arc<ClientConfig>>,
    /// The peers' identities, for naming the caller of an accepted connection.
    pub peers: Vec<PeerConfig>,
    /// `notAfter` of our own leaf certificate, Unix seconds.
    pub cert_not_after: i64,
}

impl TunnelTls {
    /// Loads the certificate, key and trust bundles named by `config`.
    pub fn load(config: &Config) -> Result<Self, TlsError> {
        let provider = provider();
        let chain = load_certs(&config.tls.cert, "certificate")?;
        let key = load_key(&config.tls.key)?;
        let default_roots = load_roots(&config.tls.trust_bundle)?;

        let mut peer_roots = Vec::new();
        for peer in &config.peers {
            let roots = match &peer.trust_bundle {
                Some(path) => load_roots(path)?,
                None => default_roots.clone(),
            };
            peer_roots.push((peer.clone(), Arc::new(roots)));
        }

        let server = server_config(&provider, &peer_roots, &default_roots, chain.clone(), &key)
            .map_err(|source| TlsError::KeyMismatch {
                cert: config.tls.cert.clone(),
                key: config.tls.key.clone(),
                source,
            })?;
        let mut clients = HashMap::new();
        for (peer, roots) in &peer_roots {
            let verifier = PeerServerVerifier::new(peer.identity.clone(), roots.clone(), &provider);
            let client = client_config(&provider, Arc::new(verifier), chain.clone(), &key)?;
            clients.insert(peer.name.clone(), Arc::new(client));
        }
        Ok(TunnelTls {
            server: Arc::new(server),
            clients,
            peers: config.peers.clone(),
            cert_not_after: not_after(&chain[0]).unwrap_or_default(),
        })
    }
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    peers: &[(PeerConfig, Arc<RootCertStore>)],
    default_roots: &RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let verifier = PeerClientVerifier::new(peers, default_roots, provider)?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key.clone_key())?;
    server.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    Ok(server)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<PeerServerVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        // Not dangerous: the verifier runs webpki's chain validation, then checks the peer's
        // configured identity instead of a DNS name.
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key.clone_key())?;
    client.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
    Ok(client)
}

/// Reads every certificate in a PEM file, leaf first.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            expected: "CERTIFICATE block",
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "private key",
            path: path.to_owned(),
            expected: "PRIVATE KEY block",
        },
        other => TlsError::Pem {
            what: "private key",
            path: path.to_owned(),
            message: other.to_string(),
        },
    })
}

/// Reads a trust bundle into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "trust bundle")? {
        roots.add(cert).map_err(|source| TlsError::Trust {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// `notAfter` of a DER certificate as Unix seconds.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// Why a tunnel handshake failed, as the `reason` label of
/// `strait_tunnel_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The caller sent no client certificate.
    NoClientCert,
    /// The certificate chain does not lead to a trusted CA (for that peer).
    UnknownCa,
    /// A valid certificate, but not for the identity configured for any (or that) peer.
    BadIdentity,
    /// The certificate is expired or not yet valid.
    Expired,
    /// The other side offered no TLS 1.3.
    ProtocolVersion,
    /// The bytes were not TLS at all.
    NotTls,
    /// The other side refused our certificate (seen when dialing).
    RejectedByPeer,
    /// The handshake did not finish within `tunnel.handshake_timeout`.
    Timeout,
    /// The TCP connection failed or was closed mid-handshake.
    Io,
    Other,
}

impl HandshakeFailure {
    /// Classifies the error a tokio-rustls accept or connect returned.
    pub fn classify(err: &io::Error) -> Self {
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            return match err.kind() {
                io::ErrorKind::TimedOut => HandshakeFailure::Timeout,
                _ => HandshakeFailure::Io,
            };
        };
        Self::from_rustls(tls)
    }

    fn from_rustls(err: &rustls::Error) -> Self {
        use rustls::{CertificateError as C, Error as E};
        match err {
            E::NoCertificatesPresented => HandshakeFailure::NoClientCert,
            E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                HandshakeFailure::UnknownCa
            }
            E::InvalidCertificate(
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
            ) => HandshakeFailure::Expired,
            E::InvalidCertificate(
                C::ApplicationVerificationFailure
                | C::NotValidForName
                | C::NotValidForNameContext { .. },
            ) => HandshakeFailure::BadIdentity,
            E::PeerIncompatible(_) => HandshakeFailure::ProtocolVersion,
            E::InvalidMessage(_) => HandshakeFailure::NotTls,
            E::AlertReceived(_) => HandshakeFailure::RejectedByPeer,
            _ => HandshakeFailure::Other,
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::NoClientCert => "no_client_cert",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::BadIdentity => "bad_identity",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::ProtocolVersion => "protocol_version",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::RejectedByPeer => "rejected_by_peer",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Io => "io",
            HandshakeFailure::Other => "other",
        }
    }
}
