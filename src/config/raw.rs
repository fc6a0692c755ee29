//! The configuration file as written: serde types mirroring the TOML schema one-to-one.
//!
//! Every struct denies unknown keys, so a typo is an error naming the expected keys rather than
//! a silently ignored setting. Values whose checks need context (addresses, names, ports,
//! references between sections) are kept as written here and checked by `validate`, which can
//! then name the key path and explain what was expected. All defaults live in [`defaults`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Protocol};

/// The whole configuration file. Only `[gateway]` and `[tls]` are required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[gateway]`: who this gateway is.
    pub gateway: GatewaySection,
    /// `[admin]`: the admin HTTP listener.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[tls]`: this gateway's certificate, key and trust bundle.
    pub tls: TlsSection,
    /// `[tunnel]`: the tunnel listener and tunnel settings.
    #[serde(default)]
    pub tunnel: TunnelSection,
    /// `[[peers]]`: peer gateways.
    #[serde(default)]
    pub peers: Vec<PeerSection>,
    /// `[[services]]`: services this gateway routes.
    #[serde(default)]
    pub services: Vec<ServiceSection>,
    /// `[[listeners]]`: local listeners for in-cluster traffic.
    #[serde(default)]
    pub listeners: Vec<ListenerSection>,
}

/// `[gateway]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// This gateway's name (a DNS label).
    pub name: String,
    /// The region it runs in (a DNS label).
    pub region: String,
    /// The zone it runs in (a DNS label); the default zone of local endpoints.
    pub zone: String,
    /// How long SIGTERM waits for in-flight connections.
    #[serde(default = "defaults::drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Socket address of the admin HTTP listener.
    #[serde(default = "defaults::admin_listen")]
    pub listen: String,
}

/// `[tls]`; relative paths are relative to the config file's folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM trust bundle for peers that do not name their own.
    pub trust_bundle: PathBuf,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

/// `[tunnel]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// Socket address of the tunnel listener.
    #[serde(default = "defaults::tunnel_listen")]
    pub listen: String,
    /// Limit on TCP connect + TLS handshake.
    #[serde(default = "defaults::handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// HTTP/2 PING period.
    #[serde(default = "defaults::ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long a PING may go unanswered.
    #[serde(default = "defaults::ping_timeout", with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Streams per tunnel connection before another is dialed.
    #[serde(default = "defaults::max_streams_per_connection")]
    pub max_streams_per_connection: i64,
    /// Long-lived connections kept open to each peer.
    #[serde(default = "defaults::connections_per_peer")]
    pub connections_per_peer: i64,
    /// First reconnect delay.
    #[serde(default = "defaults::reconnect_backoff_min", with = "humantime_serde")]
    pub reconnect_backoff_min: Duration,
    /// Ceiling of the reconnect delay.
    #[serde(default = "defaults::reconnect_backoff_max", with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
}

/// One `[[peers]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The peer gateway's `gateway.name`.
    pub name: String,
    /// The peer gateway's `gateway.region`.
    pub region: String,
    /// `host:port` of the peer's tunnel listener.
    pub address: String,
    /// `spiffe://<trust-domain>/<path>` or `dns:<name>`.
    pub identity: String,
    /// PEM trust bundle for this peer; defaults to `tls.trust_bundle`.
    #[serde(default)]
    pub trust_bundle: Option<PathBuf>,
}

/// One `[[services]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Service name (a DNS label).
    pub name: String,
    /// Namespace (a DNS label).
    #[serde(default = "defaults::namespace")]
    pub namespace: String,
    /// Service port, 1-65535. Wider than `u16` so that validation, not serde, reports a bad
    /// value, with the key path and the accepted range.
    pub port: i64,
    /// Wire protocol.
    pub protocol: ProtocolName,
    /// Whether peers may reach this service through the tunnel.
    #[serde(default)]
    pub exported: bool,
    /// Extra host names (Host header or SNI) routing to this service.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Limit on one upstream TCP connect.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Idle connections are closed after this long.
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Static endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointSection>,
}

/// One entry of `services[].endpoints`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Socket address of the endpoint.
    pub address: String,
    /// Zone of the endpoint; defaults to `gateway.zone`.
    #[serde(default)]
    pub zone: Option<String>,
    /// Relative weight, at least 1.
    #[serde(default = "defaults::weight")]
    pub weight: i64,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Listener name, unique among listeners.
    pub name: String,
    /// What the listener accepts and how it routes.
    pub protocol: ProtocolName,
    /// Socket address to listen on.
    pub listen: String,
    /// `name.namespace:port` of the one service of a `tcp` listener.
    #[serde(default)]
    pub service: Option<String>,
}

/// `protocol = "http" | "tls" | "tcp"`; serde lists the accepted names on a bad value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// HTTP/1.1 or h2c.
    Http,
    /// TLS passthrough.
    Tls,
    /// Raw TCP.
    Tcp,
}

/// Every default of the schema, so the documented values and the code cannot drift apart.
pub mod defaults {
    use std::time::Duration;

    /// `gateway.drain_timeout`.
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(10)
    }

    /// `admin.listen`.
    pub fn admin_listen() -> String {
        "127.0.0.1:15021".to_owned()
    }

    /// `tunnel.listen`.
    pub fn tunnel_listen() -> String {
        "0.0.0.0:15443".to_owned()
    }

    /// `tunnel.handshake_timeout`.
    pub fn handshake_timeout() -> Duration {
        Duration::from_secs(5)
    }

    /// `tunnel.ping_interval`.
    pub fn ping_interval() -> Duration {
        Duration::from_secs(1)
    }

    /// `tunnel.ping_timeout`.
    pub fn ping_timeout() -> Duration {
        Duration::from_secs(2)
    }

    /// `tunnel.max_streams_per_connection`.
    pub fn max_streams_per_connection() -> i64 {
        100
    }

    /// `tunnel.connections_per_peer`.
    pub fn connections_per_peer() -> i64 {
        1
    }

    /// `tunnel.reconnect_backoff_min`.
    pub fn reconnect_backoff_min() -> Duration {
        Duration::from_millis(100)
    }

    /// `tunnel.reconnect_backoff_max`.
    pub fn reconnect_backoff_max() -> Duration {
        Duration::from_secs(10)
    }

    /// `services[].namespace`.
    pub fn namespace() -> String {
        "default".to_owned()
    }

    /// `services[].connect_timeout`.
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }

    /// `services[].idle_timeout`.
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(3600)
    }

    /// `services[].endpoints[].weight`.
    pub fn weight() -> i64 {
        1
    }
}

// === impl FileConfig ===

impl FileConfig {
    /// Parses `text` against the schema; errors carry `path` and the parser's line, column and
    /// expected keys or values.
    pub fn from_toml(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            // The parser's rendering ends with a newline; the caller adds its own.
            message: e.to_string().trim_end().to_owned(),
        })
    }
}

// === impl AdminSection ===

/// An omitted `[admin]` section means every key at its default.
impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: defaults::admin_listen(),
        }
    }
}

// === impl TunnelSection ===

/// An omitted `[tunnel]` section means every key at its default.
impl Default for TunnelSection {
    fn default() -> Self {
        TunnelSection {
            listen: defaults::tunnel_listen(),
            handshake_timeout: defaults::handshake_timeout(),
            ping_interval: defaults::ping_interval(),
            ping_timeout: defaults::ping_timeout(),
            max_streams_per_connection: defaults::max_streams_per_connection(),
            connections_per_peer: defaults::connections_per_peer(),
            reconnect_backoff_min: defaults::reconnect_backoff_min(),
            reconnect_backoff_max: defaults::reconnect_backoff_max(),
        }
    }
}

// === impl ProtocolName ===

impl From<ProtocolName> for Protocol {
    fn from(p: ProtocolName) -> Self {
        match p {
            ProtocolName::Http => Protocol::Http,
            ProtocolName::Tls => Protocol::Tls,
            ProtocolName::Tcp => Protocol::Tcp,
        }
    }
}
