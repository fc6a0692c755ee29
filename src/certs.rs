//! Certificate tooling behind `strait certs`: a per-cluster CA and gateway certificates that
//! carry the gateway's SPIFFE ID (`spiffe://<trust-domain>/gateway/<name>`) as a URI SAN.
//!
//! Everything is ECDSA P-256 (small, fast and accepted by every TLS stack we talk to). The CA
//! carries its own trust domain as a URI SAN (`spiffe://<trust-domain>`) so that `strait certs
//! issue --ca DIR` can read it back without being told again.
//!
//! Files are written atomically (temporary file + rename) because running gateways reload
//! certificates from disk and must never read a half-written file; keys are created `0600`.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::identity::SpiffeId;

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Mode of certificate files: anyone may read a certificate.
const CERT_MODE: u32 = 0o644;
/// Mode of private key files: only the owner.
const KEY_MODE: u32 = 0o600;

/// Certificates are back-dated by this much so that peers whose clocks run a little behind
/// accept a freshly issued certificate.
const BACKDATE: Duration = Duration::hours(1);
/// Lifetime of a CA certificate.
const CA_LIFETIME: Duration = Duration::days(3650);
/// Default lifetime of a gateway certificate.
const LEAF_LIFETIME: Duration = Duration::days(365);

/// Why a CA or certificate could not be generated, loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file could not be read.
    #[error("cannot read {}: {source} (check that the file exists and is readable)", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source} (check that the directory exists or can be created and is writable)", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// A file does not hold the PEM material expected.
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    /// rcgen could not build or sign a certificate.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A trust domain, gateway name, SAN or file name is malformed.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// The requested validity period is empty.
    #[error(
        "invalid validity: not_after ({not_after}) must be later than not_before ({not_before})"
    )]
    InvalidValidity {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    /// A CA certificate without the `spiffe://<trust-domain>` URI SAN.
    #[error(
        "{}: the CA certificate has no spiffe://<trust-domain> URI SAN, so its trust domain is unknown (was it created by `strait certs ca`?)",
        path.display()
    )]
    NoTrustDomain { path: PathBuf },
}

/// A certificate authority for one trust domain (usually one cluster).
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    trust_domain: String,
}

/// Options for issuing a leaf certificate.
#[derive(Debug, Default, Clone)]
pub struct IssueOptions {
    /// DNS SANs of a gateway certificate; empty means the gateway name itself. Entries that
    /// parse as IP addresses become IP SANs.
    pub dns: Vec<String>,
    /// Start of validity; default one hour ago.
    pub not_before: Option<OffsetDateTime>,
    /// End of validity; default one year from now.
    pub not_after: Option<OffsetDateTime>,
}

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The leaf certificate (the CA is not included: peers hold it as their trust bundle).
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

// === impl Ca ===

impl Ca {
    /// New self-signed CA (ECDSA P-256), CN "Strait CA <td>", URI SAN `spiffe://<td>` so the
    /// trust domain can be read back, basic constraints CA, key usages cert-sign + crl-sign,
    /// valid from now-1h for 10 years.
    pub fn generate(trust_domain: &str) -> Result<Ca, CertsError> {
        validate_trust_domain(trust_domain)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&format!("Strait CA {trust_domain}"));
        params.subject_alt_names = vec![uri_san(&format!("spiffe://{trust_domain}"))?];
        // Path length 0: this CA signs gateway certificates only, never intermediates.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_LIFETIME;

        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// Load DIR/ca.pem + DIR/ca-key.pem (trust domain read from the CA's spiffe URI SAN).
    pub fn load(dir: &Path) -> Result<Ca, CertsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;

        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            pem_error(&cert_path, format!("no PEM certificate found ({e}); expected the CA certificate written by `strait certs ca`"))
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| {
            pem_error(&key_path, format!("not a usable private key ({e}); expected the PKCS#8 PEM key written by `strait certs ca`"))
        })?;
        let trust_domain = inspect_ca_cert(&der, &cert_path, &key_path, &key)?;
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| pem_error(&cert_path, format!("cannot use as an issuer: {e}")))?;
        Ok(Ca {
            issuer,
            cert_pem,
            key_pem,
            trust_domain,
        })
    }

    /// Write DIR/ca.pem (0644) and DIR/ca-key.pem (0600), creating DIR. Existing files are
    /// replaced.
    pub fn write(&self, dir: &Path) -> Result<(), CertsError> {
        create_dir(dir)?;
        // Key first: a certificate without its key on disk is useless, the reverse is harmless.
        write_file(&dir.join(CA_KEY_FILE), &self.key_pem, KEY_MODE)?;
        write_file(&dir.join(CA_CERT_FILE), &self.cert_pem, CERT_MODE)
    }

    /// The trust domain this CA issues identities in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificate, PEM: the trust bundle peers configure for this cluster.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Gateway certificate: URI SAN `spiffe://<td>/gateway/<name>`, plus DNS SANs (default: the
    /// name itself), EKU serverAuth+clientAuth, CN = name, ECDSA P-256, validity per `opts`
    /// (default now-1h .. now+1 year).
    pub fn issue_gateway(&self, name: &str, opts: &IssueOptions) -> Result<Issued, CertsError> {
        validate_gateway_name(name)?;
        let id = SpiffeId::gateway(&self.trust_domain, name).map_err(|e| invalid(name, e))?;
        let dns = match opts.dns.is_empty() {
            true => vec![name.to_owned()],
            false => opts.dns.clone(),
        };
        for d in &dns {
            validate_dns_san(d)?;
        }
        self.issue(name, &[id.to_string()], &dns, opts)
    }

    /// Leaf with exactly the given URI SANs and DNS SANs (DNS entries that parse as IP
    /// addresses become IP SANs). Tests use it for wrong identities and plain TLS servers.
    pub fn issue(
        &self,
        common_name: &str,
        uris: &[String],
        dns: &[String],
        opts: &IssueOptions,
    ) -> Result<Issued, CertsError> {
        let params = leaf_params(common_name, uris, dns, opts)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl fmt::Debug for Ca {
    // The key stays out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

// === impl Issued ===

impl Issued {
    /// Write DIR/NAME.pem (chain: leaf) 0644 and DIR/NAME-key.pem 0600, creating DIR; returns
    /// (certificate path, key path).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertsError> {
        validate_file_stem(name)?;
        create_dir(dir)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        write_file(&key_path, &self.key_pem, KEY_MODE)?;
        write_file(&cert_path, &self.cert_pem, CERT_MODE)?;
        Ok((cert_path, key_path))
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

// === certificate parameters ===

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn uri_san(uri: &str) -> Result<SanType, CertsError> {
    Ia5String::try_from(uri)
        .map(SanType::URI)
        .map_err(|e| invalid(uri, e))
}

fn dns_san(name: &str) -> Result<SanType, CertsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    Ia5String::try_from(name)
        .map(SanType::DnsName)
        .map_err(|e| invalid(name, e))
}

fn leaf_params(
    cn: &str,
    uris: &[String],
    dns: &[String],
    opts: &IssueOptions,
) -> Result<CertificateParams, CertsError> {
    let now = OffsetDateTime::now_utc();
    let not_before = opts.not_before.unwrap_or(now - BACKDATE);
    let not_after = opts.not_after.unwrap_or(now + LEAF_LIFETIME);
    if not_after <= not_before {
        return Err(CertsError::InvalidValidity {
            not_before,
            not_after,
        });
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.subject_alt_names = uris
        .iter()
        .map(|u| uri_san(u))
        .chain(dns.iter().map(|d| dns_san(d)))
        .collect::<Result<_, _>>()?;
    // Explicit CA:false so no verifier can mistake a gateway certificate for an issuer.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Gateways both accept tunnels (server) and dial them (client) with the same certificate.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// Checks that `der` is a CA certificate whose public key matches `key_pem` and returns the
/// trust domain from its `spiffe://<td>` URI SAN.
fn inspect_ca_cert(
    der: &CertificateDer<'_>,
    cert_path: &Path,
    key_path: &Path,
    key: &KeyPair,
) -> Result<String, CertsError> {
    use x509_parser::extensions::GeneralName;

    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| pem_error(cert_path, format!("not a valid X.509 certificate: {e}")))?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(pem_error(
            cert_path,
            "not a CA certificate (basic constraints CA:TRUE missing); pass the directory written by `strait certs ca`".into(),
        ));
    }
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        // A CA key that does not belong to the CA certificate would issue certificates nobody
        // trusts; catch that when loading rather than at the first failed handshake.
        return Err(pem_error(
            key_path,
            format!("this key does not belong to the CA certificate {CA_CERT_FILE} next to it"),
        ));
    }

    let uris = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.clone(),
        _ => Vec::new(),
    };
    uris.iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => trust_domain_of(u),
            _ => None,
        })
        .next()
        .ok_or_else(|| CertsError::NoTrustDomain {
            path: cert_path.to_owned(),
        })
}

/// `spiffe://<td>` (optionally with a trailing `/`) → `<td>`.
fn trust_domain_of(uri: &str) -> Option<String> {
    let td = uri.strip_prefix("spiffe://")?;
    let td = td.strip_suffix('/').unwrap_or(td);
    validate_trust_domain(td).ok()?;
    Some(td.to_owned())
}

// === validation ===

/// Trust domains: lower-case letters, digits, '-' and '.', dot-separated non-empty labels.
fn validate_trust_domain(td: &str) -> Result<(), CertsError> {
    const EXPECTED: &str =
        "expected a trust domain of lower-case letters, digits, '-' and '.', e.g. strait.local";
    let chars_ok = td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if td.is_empty() || td.len() > 255 || !chars_ok || td.split('.').any(str::is_empty) {
        return Err(invalid(td, EXPECTED));
    }
    Ok(())
}

/// Gateway names: one DNS label of lower-case letters, digits and '-', because the name is both
/// a SPIFFE path segment and the default DNS SAN.
fn validate_gateway_name(name: &str) -> Result<(), CertsError> {
    const EXPECTED: &str = "expected a gateway name of 1-63 lower-case letters, digits and '-', not starting or ending with '-', e.g. gw-a";
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty()
        || name.len() > 63
        || !chars_ok
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(invalid(name, EXPECTED));
    }
    Ok(())
}

/// DNS SANs of gateway certificates: a valid DNS name or an IP address.
fn validate_dns_san(name: &str) -> Result<(), CertsError> {
    if name.parse::<IpAddr>().is_ok() || rustls_pki_types::DnsName::try_from(name).is_ok() {
        return Ok(());
    }
    Err(invalid(
        name,
        "expected a DNS name (e.g. gw-a.example.com) or an IP address",
    ))
}

/// Certificate file names: no path separators or hidden files.
fn validate_file_stem(name: &str) -> Result<(), CertsError> {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if name.is_empty() || name.starts_with('.') || !chars_ok {
        return Err(invalid(
            name,
            "expected a file name of letters, digits, '-', '_' and '.', not starting with '.'",
        ));
    }
    Ok(())
}

fn invalid(name: &str, reason: impl fmt::Display) -> CertsError {
    CertsError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_string(),
    }
}

fn pem_error(path: &Path, message: String) -> CertsError {
    CertsError::Pem {
        path: path.to_owned(),
        message,
    }
}

// === files ===

fn read(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|source| CertsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` with exactly `mode`, atomically: a temporary file in the same
/// directory is created with `mode` (so a key is never readable by others, not even briefly),
/// then renamed over `path`, which also replaces the mode of an existing file.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertsError> {
    let tmp = temp_path(path);
    let err = |source| CertsError::Write {
        path: path.to_owned(),
        source,
    };
    let result = write_new(&tmp, contents, mode).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

fn write_new(tmp: &Path, contents: &str, mode: u32) -> io::Result<()> {
    // A stale temporary file from an interrupted run may have a looser mode; start fresh.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have narrowed `mode` at creation; set it exactly (0644 certificates must
    // stay readable by a gateway running as another user).
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{CertificateError, RootCertStore};
    use rustls_pki_types::{ServerName, UnixTime};

    use super::*;
    use crate::identity::CertSans;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
    }

    fn verify(ca: &Ca, leaf: &Issued) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(der(ca.cert_pem())).expect("CA is a valid root");
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider))
                .build()
                .expect("verifier");
        verifier
            .verify_client_cert(&der(&leaf.cert_pem), &[], UnixTime::now())
            .map(|_| ())
    }

    /// The same certificate also serves the accepting side of a tunnel.
    fn verify_as_server(ca: &Ca, leaf: &Issued, name: &str) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(der(ca.cert_pem())).expect("CA is a valid root");
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider))
                .build()
                .expect("verifier");
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        verifier
            .verify_server_cert(&der(&leaf.cert_pem), &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ca_round_trips_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let ca = Ca::generate("strait.local").unwrap();
        ca.write(&out).unwrap();
        assert_eq!(mode(&out.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&out.join(CA_CERT_FILE)), 0o644);

        let loaded = Ca::load(&out).unwrap();
        assert_eq!(loaded.trust_domain(), "strait.local");
        assert_eq!(loaded.cert_pem(), ca.cert_pem());

        // A CA loaded from disk issues certificates that chain to the original.
        let leaf = loaded
            .issue_gateway("gw-a", &IssueOptions::default())
            .unwrap();
        verify(&ca, &leaf).unwrap();
    }

    #[test]
    fn writing_tightens_an_existing_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("gw-a-key.pem");
        fs::write(&key, "old").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o666)).unwrap();

        let ca = Ca::generate("strait.local").unwrap();
        let issued = ca.issue_gateway("gw-a", &IssueOptions::default()).unwrap();
        let (cert_path, key_path) = issued.write(dir.path(), "gw-a").unwrap();
        assert_eq!(key_path, key);
        assert_eq!(mode(&key_path), 0o600);
        assert_eq!(mode(&cert_path), 0o644);
        assert_eq!(fs::read_to_string(&key_path).unwrap(), issued.key_pem);
        assert_eq!(fs::read_to_string(&cert_path).unwrap(), issued.cert_pem);
    }

    #[test]
    fn load_reports_missing_and_mismatched_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = Ca::load(dir.path()).unwrap_err();
        assert!(matches!(err, CertsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");

        let a = Ca::generate("a.local").unwrap();
        let b = Ca::generate("b.local").unwrap();
        a.write(dir.path()).unwrap();
        fs::write(dir.path().join(CA_KEY_FILE), &b.key_pem).unwrap();
        let err = Ca::load(dir.path()).unwrap_err();
        assert!(matches!(err, CertsError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("ca-key.pem"), "{err}");
    }

    #[test]
    fn load_requires_a_trust_domain() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        fs::write(dir.path().join(CA_CERT_FILE), cert.pem()).unwrap();
        fs::write(dir.path().join(CA_KEY_FILE), key.serialize_pem()).unwrap();
        let err = Ca::load(dir.path()).unwrap_err();
        assert!(matches!(err, CertsError::NoTrustDomain { .. }), "{err}");
    }

    #[test]
    fn gateway_certificates_carry_spiffe_and_dns_sans() {
        let ca = Ca::generate("strait.local").unwrap();
        let leaf = ca.issue_gateway("gw-a", &IssueOptions::default()).unwrap();
        let sans = CertSans::from_der(&der(&leaf.cert_pem)).unwrap();
        assert_eq!(sans.uris, ["spiffe://strait.local/gateway/gw-a"]);
        assert_eq!(sans.dns, ["gw-a"]);
        verify(&ca, &leaf).unwrap();
        verify_as_server(&ca, &leaf, "gw-a").unwrap();
        assert!(verify_as_server(&ca, &leaf, "gw-b").is_err());

        let opts = IssueOptions {
            dns: vec!["gw-a.example.com".into(), "gw-a.internal".into()],
            ..Default::default()
        };
        let leaf = ca.issue_gateway("gw-a", &opts).unwrap();
        let sans = CertSans::from_der(&der(&leaf.cert_pem)).unwrap();
        assert_eq!(sans.spiffe(), Some("spiffe://strait.local/gateway/gw-a"));
        assert_eq!(sans.dns, ["gw-a.example.com", "gw-a.internal"]);
    }

    #[test]
    fn issue_uses_exactly_the_given_sans() {
        let ca = Ca::generate("strait.local").unwrap();
        let uris = vec!["spiffe://other.local/gateway/x".to_owned()];
        let leaf = ca.issue("x", &uris, &[], &IssueOptions::default()).unwrap();
        let sans = CertSans::from_der(&der(&leaf.cert_pem)).unwrap();
        assert_eq!(sans.uris, uris);
        assert!(sans.dns.is_empty());
        verify(&ca, &leaf).unwrap();
    }

    #[test]
    fn expired_certificates_are_rejected() {
        let ca = Ca::generate("strait.local").unwrap();
        let now = OffsetDateTime::now_utc();
        let opts = IssueOptions {
            not_before: Some(now - Duration::days(2)),
            not_after: Some(now - Duration::days(1)),
            ..Default::default()
        };
        let leaf = ca.issue_gateway("gw-a", &opts).unwrap();
        let err = verify(&ca, &leaf).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{err:?}"
        );
    }

    #[test]
    fn certificates_from_another_ca_are_rejected() {
        let a = Ca::generate("strait.local").unwrap();
        let b = Ca::generate("strait.local").unwrap();
        let leaf = b.issue_gateway("gw-a", &IssueOptions::default()).unwrap();
        assert!(verify(&a, &leaf).is_err());
    }

    #[test]
    fn invalid_names_are_rejected() {
        for td in [
            "",
            "Strait.local",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "a/b",
            "spiffe://a",
        ] {
            let err = Ca::generate(td).unwrap_err();
            assert!(
                matches!(err, CertsError::InvalidName { .. }),
                "{td:?}: {err}"
            );
        }
        let ca = Ca::generate("strait.local").unwrap();
        let long = "a".repeat(64);
        for name in [
            "",
            "GW-A",
            "gw_a",
            "gw.a",
            "-gw",
            "gw-",
            "gw/a",
            long.as_str(),
        ] {
            let err = ca
                .issue_gateway(name, &IssueOptions::default())
                .unwrap_err();
            assert!(
                matches!(err, CertsError::InvalidName { .. }),
                "{name:?}: {err}"
            );
            assert!(err.to_string().contains("gateway name"), "{err}");
        }
        let opts = IssueOptions {
            dns: vec!["not a name".into()],
            ..Default::default()
        };
        let err = ca.issue_gateway("gw-a", &opts).unwrap_err();
        assert!(matches!(err, CertsError::InvalidName { .. }), "{err}");

        let leaf = ca.issue_gateway("gw-a", &IssueOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "../x", ".hidden", "a/b"] {
            assert!(leaf.write(dir.path(), name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn empty_validity_is_rejected() {
        let ca = Ca::generate("strait.local").unwrap();
        let now = OffsetDateTime::now_utc();
        let opts = IssueOptions {
            not_before: Some(now),
            not_after: Some(now - Duration::hours(1)),
            ..Default::default()
        };
        let err = ca.issue_gateway("gw-a", &opts).unwrap_err();
        assert!(matches!(err, CertsError::InvalidValidity { .. }), "{err}");
    }

    #[test]
    fn ip_addresses_become_ip_sans() {
        let ca = Ca::generate("strait.local").unwrap();
        let dns = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let leaf = ca
            .issue("localhost", &[], &dns, &IssueOptions::default())
            .unwrap();
        let sans = CertSans::from_der(&der(&leaf.cert_pem)).unwrap();
        // CertSans only collects URI and DNS names; the IP became an IP SAN.
        assert_eq!(sans.dns, ["localhost"]);
        verify_as_server(&ca, &leaf, "127.0.0.1").unwrap();
        verify_as_server(&ca, &leaf, "localhost").unwrap();
    }
}
