//! Gateway identities: SPIFFE IDs (`spiffe://<trust-domain>/gateway/<name>`) carried as URI
//! SANs, or DNS names carried as DNS SANs, and how a peer's certificate is matched against the
//! identity configured for it.

use std::fmt;
use std::str::FromStr;

/// A SPIFFE ID: `spiffe://<trust-domain>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

/// The identity a peer gateway's certificate must present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A URI SAN equal to this SPIFFE ID.
    Spiffe(SpiffeId),
    /// A DNS SAN equal to this name (written `dns:<name>` in config).
    Dns(String),
}

/// Why a string is not a valid identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{0:?} is not a SPIFFE ID: expected spiffe://<trust-domain>/<path>, e.g. spiffe://strait.local/gateway/gw-a"
    )]
    NotSpiffe(String),
    #[error("{0:?} is not an identity: expected spiffe://<trust-domain>/<path> or dns:<name>")]
    Unknown(String),
}

// === impl SpiffeId ===

impl SpiffeId {
    /// The identity `strait certs issue` gives the gateway `name`.
    pub fn gateway(trust_domain: &str, name: &str) -> Result<Self, IdentityError> {
        format!("spiffe://{trust_domain}/gateway/{name}").parse()
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path after the trust domain, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdentityError::NotSpiffe(s.to_owned());
        let rest = s.strip_prefix("spiffe://").ok_or_else(err)?;
        let (td, path) = rest.split_once('/').ok_or_else(err)?;
        let td_ok = !td.is_empty()
            && td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        // SPIFFE path segments: non-empty, no `.`/`..`, characters [A-Za-z0-9._-].
        let path_ok = !path.is_empty()
            && path.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            });
        if !td_ok || !path_ok {
            return Err(err());
        }
        Ok(SpiffeId {
            trust_domain: td.to_owned(),
            path: format!("/{path}"),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

// === impl PeerIdentity ===

impl PeerIdentity {
    /// Whether a certificate with these SANs proves this identity.
    pub fn matches(&self, sans: &CertSans) -> bool {
        match self {
            PeerIdentity::Spiffe(id) => sans
                .uris
                .iter()
                .any(|u| u.parse().ok().as_ref() == Some(id)),
            PeerIdentity::Dns(name) => sans.dns.iter().any(|d| d.eq_ignore_ascii_case(name)),
        }
    }
}

impl FromStr for PeerIdentity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("spiffe://") {
            return s.parse().map(PeerIdentity::Spiffe);
        }
        match s.strip_prefix("dns:") {
            Some(name) if !name.is_empty() && rustls_pki_types::DnsName::try_from(name).is_ok() => {
                Ok(PeerIdentity::Dns(name.to_ascii_lowercase()))
            }
            _ => Err(IdentityError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Spiffe(id) => id.fmt(f),
            PeerIdentity::Dns(name) => write!(f, "dns:{name}"),
        }
    }
}

/// The subject alternative names of a certificate that identities are matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSans {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
}

impl CertSans {
    /// Reads the SANs of a DER certificate; `None` if it does not parse as X.509.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut sans = CertSans::default();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::URI(u) => sans.uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => sans.dns.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
        Some(sans)
    }

    /// The first SPIFFE URI SAN, for logs and labels.
    pub fn spiffe(&self) -> Option<&str> {
        self.uris
            .iter()
            .map(String::as_str)
            .find(|u| u.starts_with("spiffe://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_parse_and_print() {
        let id: SpiffeId = "spiffe://strait.local/gateway/gw-a".parse().unwrap();
        assert_eq!(id.trust_domain(), "strait.local");
        assert_eq!(id.path(), "/gateway/gw-a");
        assert_eq!(id.to_string(), "spiffe://strait.local/gateway/gw-a");
        for bad in [
            "spiffe://",
            "spiffe://td",
            "spiffe://td/",
            "spiffe://TD/x",
            "spiffe://td/a//b",
            "spiffe://td/../x",
            "https://td/x",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn identities_match_their_san_kind_only() {
        let sans = CertSans {
            uris: vec!["spiffe://td/gateway/a".into()],
            dns: vec!["gw-a.example".into()],
        };
        assert!(
            "spiffe://td/gateway/a"
                .parse::<PeerIdentity>()
                .unwrap()
                .matches(&sans)
        );
        assert!(
            !"spiffe://td/gateway/b"
                .parse::<PeerIdentity>()
                .unwrap()
                .matches(&sans)
        );
        assert!(
            "dns:GW-A.example"
                .parse::<PeerIdentity>()
                .unwrap()
                .matches(&sans)
        );
        assert!(!"dns:td".parse::<PeerIdentity>().unwrap().matches(&sans));
        assert!("gw-a".parse::<PeerIdentity>().is_err());
    }
}
