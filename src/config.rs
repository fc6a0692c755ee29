//! Gateway configuration: one TOML file, parsed into [`raw::FileConfig`] (serde, every section
//! `deny_unknown_fields`) and converted into the validated [`Config`], whose types cannot hold
//! an invalid value. Every error names the file, the key, the bad value and what was expected.

mod error;
pub mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use error::ConfigError;

use crate::identity::PeerIdentity;

/// A validated gateway configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from (relative paths inside it were resolved
    /// against its folder).
    pub source: PathBuf,
    pub gateway: GatewayConfig,
    pub admin: AdminConfig,
    pub tls: TlsConfig,
    pub tunnel: TunnelConfig,
    pub peers: Vec<PeerConfig>,
    pub services: Vec<ServiceConfig>,
    pub listeners: Vec<ListenerConfig>,
}

/// Who this gateway is and where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// The gateway's name; its certificate carries `spiffe://<trust-domain>/gateway/<name>`.
    pub name: String,
    pub region: String,
    pub zone: String,
    /// How long SIGTERM waits for in-flight connections before closing them.
    pub drain_timeout: Duration,
}

/// The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/debug/*`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// This gateway's TLS material, every path already resolved against the config folder.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// PEM trust bundle used for peers that do not name their own.
    pub trust_bundle: PathBuf,
    /// PEM certificate chain presented to peers (leaf first).
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

/// The tunnel listener and the settings of tunnels in both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelConfig {
    pub listen: SocketAddr,
    /// Limit on TCP connect + TLS handshake, for accepted and dialed tunnels alike.
    pub handshake_timeout: Duration,
    /// HTTP/2 PING period.
    pub ping_interval: Duration,
    /// A PING unanswered for this long marks the tunnel down.
    pub ping_timeout: Duration,
    /// Streams one tunnel connection carries before the pool dials another.
    pub max_streams_per_connection: u32,
    /// Long-lived connections kept open to each peer.
    pub connections_per_peer: u32,
    /// First reconnect delay; doubles per failed attempt, with jitter.
    pub reconnect_backoff_min: Duration,
    /// Ceiling of the reconnect delay.
    pub reconnect_backoff_max: Duration,
}

/// A peer gateway this one dials and accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub name: String,
    pub region: String,
    /// `host:port` of the peer's tunnel listener (an IP address or a DNS name).
    pub address: String,
    /// The identity the peer's certificate must carry.
    pub identity: PeerIdentity,
    /// PEM trust bundle for this peer; `None` means the gateway's own `tls.trust_bundle`.
    pub trust_bundle: Option<PathBuf>,
}

/// Wire protocol of a service, which decides how its listeners route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 or h2c, routed by Host / `:authority`.
    Http,
    /// TLS passthrough, routed by the ClientHello's SNI.
    Tls,
    /// Raw TCP, one listener port per service.
    Tcp,
}

/// `<name>.<namespace>:<port>`: how a service is named on the tunnel and in config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub name: String,
    pub namespace: String,
    pub port: u16,
}

/// A service this gateway routes.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub key: ServiceKey,
    pub protocol: Protocol,
    /// Whether peers may reach this service through the tunnel.
    pub exported: bool,
    /// Extra host names (Host header or SNI) that route to this service, lower-case.
    pub hosts: Vec<String>,
    /// Limit on one upstream TCP connect.
    pub connect_timeout: Duration,
    /// Connections with no traffic either way for this long are closed.
    pub idle_timeout: Duration,
    /// Static endpoints in this gateway's region.
    pub endpoints: Vec<EndpointConfig>,
}

/// One static endpoint of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub address: SocketAddr,
    /// Zone of the endpoint; defaults to the gateway's zone.
    pub zone: String,
    pub weight: u32,
}

/// A local listener for in-cluster traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub protocol: Protocol,
    pub listen: SocketAddr,
    /// The one service of a `tcp` listener; `None` for `http` and `tls`, which route.
    pub service: Option<ServiceKey>,
}

// === impl Config ===

impl Config {
    /// Reads and validates the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its folder).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw = raw::FileConfig::from_toml(text, path)?;
        validate::validate(raw, path)
    }

    /// The service named by `key`, if configured.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| &s.key == key)
    }
}

// === impl Protocol ===

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Tls => "tls",
            Protocol::Tcp => "tcp",
        })
    }
}

// === impl ServiceKey ===

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}:{}", self.name, self.namespace, self.port)
    }
}

/// Why a string is not a `<name>.<namespace>:<port>` service key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a service key: expected <name>.<namespace>:<port>, e.g. \"mockb.default:8080\""
)]
pub struct ServiceKeyError(pub String);

impl FromStr for ServiceKey {
    type Err = ServiceKeyError;

    /// Accepts `<name>.<namespace>:<port>` and the FQDN form
    /// `<name>.<namespace>.svc.cluster.local:<port>` (any suffix after `.svc`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ServiceKeyError(s.to_owned());
        let (host, port) = s.rsplit_once(':').ok_or_else(err)?;
        let port: u16 = port.parse().map_err(|_| err())?;
        let host = host.to_ascii_lowercase();
        let host = match host.find(".svc") {
            Some(i) if host[i..] == *".svc" || host[i..].starts_with(".svc.") => &host[..i],
            _ => host.as_str(),
        };
        let (name, namespace) = host.split_once('.').ok_or_else(err)?;
        if port == 0 || !is_dns_label(name) || !is_dns_label(namespace) {
            return Err(err());
        }
        Ok(ServiceKey {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            port,
        })
    }
}

/// RFC 1123 label, as Kubernetes requires of service and namespace names.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_key_forms() {
        let k: ServiceKey = "mockb.default:8080".parse().unwrap();
        assert_eq!(k.to_string(), "mockb.default:8080");
        let fqdn: ServiceKey = "mockb.default.svc.cluster.local:8080".parse().unwrap();
        assert_eq!(fqdn, k);
        for bad in [
            "mockb:8080",
            "mockb.default",
            "mockb.default:0",
            "Mo_b.default:1",
            "",
        ] {
            assert!(
                bad.parse::<ServiceKey>().is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
