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
    /// Envoy-style outlier detection for this service's endpoints and peers.
    pub outlier_detection: OutlierConfig,
    /// How load is spread between and within locality tiers.
    pub load_balancer: LoadBalancerConfig,
    /// Connect-failure retries, and for `http` services the request retry policy.
    pub retry: RetryConfig,
    /// Optional active health checking of local endpoints.
    pub health_check: Option<HealthCheckConfig>,
}

/// Outlier detection, with Istio DestinationRule field names in snake_case and Envoy's
/// defaults. Percentages are 0..=100; `success_rate_stdev_factor` is in thousandths (1900 = 1.9).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    /// 5xx in a row that eject (0 = off). Without split, connect failures count as 503 and
    /// connect timeouts as 504. Default 5.
    pub consecutive_5xx_errors: u32,
    /// 502/503/504 in a row that eject (0 = off). Default 0.
    pub consecutive_gateway_errors: u32,
    /// Count connect failures separately from responses. Default false.
    pub split_external_local_origin_errors: bool,
    /// Connect failures in a row that eject, when split. Default 5.
    pub consecutive_local_origin_failures: u32,
    /// Statistical sweep period (and backoff decay period). Default 10s.
    pub interval: Duration,
    /// Ejection time = min(base × backoff, max_ejection_time) + jitter. Default 30s.
    pub base_ejection_time: Duration,
    /// Default max(300s, base_ejection_time).
    pub max_ejection_time: Duration,
    /// Random extra ejection time in [0, jitter]. Default 0s.
    pub max_ejection_time_jitter: Duration,
    /// Cap on ejected hosts, applied per tier; one host may always be ejected. Default 10.
    pub max_ejection_percent: u32,
    /// Probability (%) a consecutive-5xx detection is enforced. Default 100.
    pub enforcing_consecutive_5xx: u32,
    /// Default 100 (Istio enforces gateway errors when the threshold is set).
    pub enforcing_consecutive_gateway_errors: u32,
    /// Default 100.
    pub enforcing_consecutive_local_origin_failures: u32,
    /// Default 5.
    pub success_rate_minimum_hosts: u32,
    /// Requests per host per interval to be judged by success rate. Default 100.
    pub success_rate_request_volume: u32,
    /// Default 1900.
    pub success_rate_stdev_factor: u32,
    /// Default 100.
    pub enforcing_success_rate: u32,
    /// Default 85.
    pub failure_percentage_threshold: u32,
    /// Default 5.
    pub failure_percentage_minimum_hosts: u32,
    /// Default 50.
    pub failure_percentage_request_volume: u32,
    /// Default 0 (off), as in Envoy.
    pub enforcing_failure_percentage: u32,
}

/// Balancing between tiers (Envoy priorities) and within one.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancerConfig {
    pub policy: LbPolicy,
    /// Envoy's overprovisioning factor in percent: tier health = min(100, factor × healthy%).
    /// Default 140.
    pub overprovisioning_factor: u32,
}

/// Choice of endpoint within a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    /// Weighted least-request, power of two choices (default).
    LeastRequest,
    RoundRobin,
}

/// Retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Upstream connect attempts per connection or request, across endpoints and tiers,
    /// before giving up. Connect failures are always retried within this budget. Default 5.
    pub connect_attempts: u32,
    /// `http` only: extra attempts of a whole request whose response matched `retry_on`
    /// (idempotent methods without a body only). Default 2.
    pub attempts: u32,
    /// `http` only: which responses are retried: `5xx`, `gateway-error` (502/503/504),
    /// `reset` (upstream closed before answering), or individual codes like `503`.
    /// Default `["gateway-error", "reset"]`.
    pub retry_on: Vec<RetryOn>,
    /// Base of the jittered exponential backoff between request retries. Default 25ms.
    pub backoff_base: Duration,
    /// Ceiling of that backoff. Default 250ms.
    pub backoff_max: Duration,
    /// `http` only: how long one attempt may wait for the response head before it counts as
    /// a timeout (a 504 to retry policy and outlier detection). Default 15s, Envoy's route
    /// timeout.
    pub per_try_timeout: Duration,
}

/// A condition under which an HTTP request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    Status5xx,
    GatewayError,
    Reset,
    Status(u16),
}

/// Active health checking.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    /// Default 5s.
    pub interval: Duration,
    /// Default 1s.
    pub timeout: Duration,
    /// Passes needed to mark an unhealthy endpoint healthy. Default 1.
    pub healthy_threshold: u32,
    /// Failures needed to mark a healthy endpoint unhealthy. Default 3.
    pub unhealthy_threshold: u32,
}

/// How an endpoint is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// A TCP connect that succeeds.
    Tcp,
    /// `GET path` answering 2xx.
    Http { path: String },
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

// === impl OutlierConfig ===

/// Envoy's outlier detection defaults, as each field documents. `max_ejection_time` is 300s,
/// which is max(300s, base_ejection_time) for the default base of 30s.
impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx_errors: 5,
            consecutive_gateway_errors: 0,
            split_external_local_origin_errors: false,
            consecutive_local_origin_failures: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_errors: 100,
            enforcing_consecutive_local_origin_failures: 100,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            enforcing_success_rate: 100,
            failure_percentage_threshold: 85,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            enforcing_failure_percentage: 0,
        }
    }
}

// === impl LoadBalancerConfig ===

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            policy: LbPolicy::LeastRequest,
            overprovisioning_factor: 140,
        }
    }
}

// === impl RetryConfig ===

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            connect_attempts: 5,
            attempts: 2,
            retry_on: vec![RetryOn::GatewayError, RetryOn::Reset],
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            per_try_timeout: Duration::from_secs(15),
        }
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
