//! Certificate verifiers that add Strait's peer-identity check to webpki's chain validation,
//! never replacing it: the chain is validated first (so an untrusted or expired certificate is
//! reported as such), then the SAN must carry the identity configured for the peer, and the
//! chain must lead to *that* peer's trust bundle (each cluster may have its own CA).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::PeerConfig;
use crate::identity::{CertSans, PeerIdentity};

/// The tunnel listener's client verifier: accepts a caller only if its certificate chains to
/// the trust bundle of the peer whose configured identity it carries.
#[derive(Debug)]
pub struct PeerClientVerifier {
    /// Validates against the union of every peer's bundle, for the first, generic check.
    any: Arc<dyn ClientCertVerifier>,
    /// Per peer: its identity and a verifier over only its own bundle.
    peers: Vec<(PeerIdentity, Arc<dyn ClientCertVerifier>)>,
}

impl PeerClientVerifier {
    pub fn new(
        peers: &[(PeerConfig, Arc<RootCertStore>)],
        default_roots: &RootCertStore,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, rustls::Error> {
        let mut union = default_roots.clone();
        for (_, roots) in peers {
            union.roots.extend(roots.roots.iter().cloned());
        }
        let any = build_client_verifier(Arc::new(union), provider)?;
        let peers = peers
            .iter()
            .map(|(peer, roots)| {
                Ok((
                    peer.identity.clone(),
                    build_client_verifier(roots.clone(), provider)?,
                ))
            })
            .collect::<Result<_, rustls::Error>>()?;
        Ok(PeerClientVerifier { any, peers })
    }
}

fn build_client_verifier(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
    WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(format!("client verifier: {e}")))
}

/// The error a valid certificate for an identity we do not expect gets: the caller receives an
/// `access_denied`-class alert and our metrics count it as `bad_identity`.
fn identity_mismatch() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

impl ClientCertVerifier for PeerClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.any.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.any
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = CertSans::from_der(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        let (_, own_bundle) = self
            .peers
            .iter()
            .find(|(identity, _)| identity.matches(&sans))
            .ok_or_else(identity_mismatch)?;
        own_bundle.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any.supported_verify_schemes()
    }
}

/// A dialing gateway's server verifier for one peer: webpki chain validation against that
/// peer's bundle, then its configured identity instead of a DNS-name match.
#[derive(Debug)]
pub struct PeerServerVerifier {
    identity: PeerIdentity,
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerServerVerifier {
    pub fn new(
        identity: PeerIdentity,
        roots: Arc<RootCertStore>,
        provider: &CryptoProvider,
    ) -> Self {
        PeerServerVerifier {
            identity,
            roots,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let sans = CertSans::from_der(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if !self.identity.matches(&sans) {
            return Err(identity_mismatch());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
