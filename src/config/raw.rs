//! The configuration file as written: serde types mirroring the TOML schema one-to-one.
//!
//! Every struct denies unknown keys, so a typo is an error naming the expected keys rather than
//! a silently ignored setting. Values whose checks need context (addresses, names, ports,
//! references between sections) are kept as written here and checked by `validate`, which can
//! then name the key path and explain what was expected. Defaults live in [`defaults`], except
//! those of `outlier_detection`, `load_balancer` and `retry`, which are the `Default` impls of
//! the validated [`OutlierConfig`], [`LoadBalancerConfig`] and [`RetryConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, LbPolicy, LoadBalancerConfig, OutlierConfig, Protocol, RetryConfig};

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
    /// `[services.outlier_detection]`.
    #[serde(default)]
    pub outlier_detection: OutlierSection,
    /// `[services.load_balancer]`.
    #[serde(default)]
    pub load_balancer: LoadBalancerSection,
    /// `[services.retry]`.
    #[serde(default)]
    pub retry: RetrySection,
    /// `[services.health_check]`; no active health checking when omitted.
    #[serde(default)]
    pub health_check: Option<HealthCheckSection>,
}

/// `[services.outlier_detection]`: Istio's field names in snake_case, Envoy's defaults (those
/// of [`OutlierConfig`]). Counts are `i64` so that validation reports a bad value with its key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSection {
    pub consecutive_5xx_errors: i64,
    pub consecutive_gateway_errors: i64,
    pub split_external_local_origin_errors: bool,
    pub consecutive_local_origin_failures: i64,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// `None` means max(300s, `base_ejection_time`), as in Envoy.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub max_ejection_time_jitter: Duration,
    pub max_ejection_percent: i64,
    pub enforcing_consecutive_5xx: i64,
    pub enforcing_consecutive_gateway_errors: i64,
    pub enforcing_consecutive_local_origin_failures: i64,
    pub success_rate_minimum_hosts: i64,
    pub success_rate_request_volume: i64,
    pub success_rate_stdev_factor: i64,
    pub enforcing_success_rate: i64,
    pub failure_percentage_threshold: i64,
    pub failure_percentage_minimum_hosts: i64,
    pub failure_percentage_request_volume: i64,
    pub enforcing_failure_percentage: i64,
}

/// `[services.load_balancer]`; defaults are those of [`LoadBalancerConfig`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancerSection {
    /// Choice of endpoint within a tier.
    pub policy: LbPolicyName,
    /// Envoy's overprovisioning factor, in percent.
    pub overprovisioning_factor: i64,
}

/// `policy = "least_request" | "round_robin"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicyName {
    /// Weighted least-request, power of two choices.
    LeastRequest,
    /// Weighted round robin.
    RoundRobin,
}

/// `[services.retry]`; defaults are those of [`RetryConfig`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// Upstream connect attempts per connection or request.
    pub connect_attempts: i64,
    /// `http` only: extra attempts of a whole request.
    pub attempts: i64,
    /// `http` only: `"5xx"`, `"gateway-error"`, `"reset"` or a status code such as `"503"`.
    /// `None` (omitted) means the default; an explicit list is kept apart so that validation
    /// can reject one on a service that does not retry requests.
    pub retry_on: Option<Vec<String>>,
    /// Base of the request retry backoff.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Ceiling of the request retry backoff.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Limit on waiting for one attempt's response head.
    #[serde(with = "humantime_serde")]
    pub per_try_timeout: Duration,
}

/// `[services.health_check]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// How endpoints are checked. Required.
    pub kind: HealthCheckKindName,
    /// Request path of an `http` check; required for `http`, not allowed for `tcp`.
    #[serde(default)]
    pub path: Option<String>,
    /// Check period.
    #[serde(default = "defaults::health_check_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Limit on one check.
    #[serde(default = "defaults::health_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Passes that mark an unhealthy endpoint healthy.
    #[serde(default = "defaults::healthy_threshold")]
    pub healthy_threshold: i64,
    /// Failures that mark a healthy endpoint unhealthy.
    #[serde(default = "defaults::unhealthy_threshold")]
    pub unhealthy_threshold: i64,
}

/// `kind = "tcp" | "http"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKindName {
    /// A TCP connect.
    Tcp,
    /// `GET path`, expecting 2xx.
    Http,
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

    /// `tunnel.ping_timeout`: with the 1 s interval, a black-holed peer is dropped within
    /// 2.5 s in the worst case (the PING goes out up to 1 s after the last answer).
    pub fn ping_timeout() -> Duration {
        Duration::from_millis(1500)
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

    /// `services[].health_check.interval`.
    pub fn health_check_interval() -> Duration {
        Duration::from_secs(5)
    }

    /// `services[].health_check.timeout`.
    pub fn health_check_timeout() -> Duration {
        Duration::from_secs(1)
    }

    /// `services[].health_check.healthy_threshold`.
    pub fn healthy_threshold() -> i64 {
        1
    }

    /// `services[].health_check.unhealthy_threshold`.
    pub fn unhealthy_threshold() -> i64 {
        3
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

// === impl OutlierSection ===

/// An omitted section or key takes [`OutlierConfig`]'s default.
impl Default for OutlierSection {
    fn default() -> Self {
        let d = OutlierConfig::default();
        OutlierSection {
            consecutive_5xx_errors: d.consecutive_5xx_errors.into(),
            consecutive_gateway_errors: d.consecutive_gateway_errors.into(),
            split_external_local_origin_errors: d.split_external_local_origin_errors,
            consecutive_local_origin_failures: d.consecutive_local_origin_failures.into(),
            interval: d.interval,
            base_ejection_time: d.base_ejection_time,
            // Derived from base_ejection_time, which may be set on its own.
            max_ejection_time: None,
            max_ejection_time_jitter: d.max_ejection_time_jitter,
            max_ejection_percent: d.max_ejection_percent.into(),
            enforcing_consecutive_5xx: d.enforcing_consecutive_5xx.into(),
            enforcing_consecutive_gateway_errors: d.enforcing_consecutive_gateway_errors.into(),
            enforcing_consecutive_local_origin_failures: d
                .enforcing_consecutive_local_origin_failures
                .into(),
            success_rate_minimum_hosts: d.success_rate_minimum_hosts.into(),
            success_rate_request_volume: d.success_rate_request_volume.into(),
            success_rate_stdev_factor: d.success_rate_stdev_factor.into(),
            enforcing_success_rate: d.enforcing_success_rate.into(),
            failure_percentage_threshold: d.failure_percentage_threshold.into(),
            failure_percentage_minimum_hosts: d.failure_percentage_minimum_hosts.into(),
            failure_percentage_request_volume: d.failure_percentage_request_volume.into(),
            enforcing_failure_percentage: d.enforcing_failure_percentage.into(),
        }
    }
}

// === impl LoadBalancerSection ===

/// An omitted section or key takes [`LoadBalancerConfig`]'s default.
impl Default for LoadBalancerSection {
    fn default() -> Self {
        let d = LoadBalancerConfig::default();
        LoadBalancerSection {
            policy: d.policy.into(),
            overprovisioning_factor: d.overprovisioning_factor.into(),
        }
    }
}

// === impl LbPolicyName ===

impl From<LbPolicyName> for LbPolicy {
    fn from(p: LbPolicyName) -> Self {
        match p {
            LbPolicyName::LeastRequest => LbPolicy::LeastRequest,
            LbPolicyName::RoundRobin => LbPolicy::RoundRobin,
        }
    }
}

impl From<LbPolicy> for LbPolicyName {
    fn from(p: LbPolicy) -> Self {
        match p {
            LbPolicy::LeastRequest => LbPolicyName::LeastRequest,
            LbPolicy::RoundRobin => LbPolicyName::RoundRobin,
        }
    }
}

// === impl RetrySection ===

/// An omitted section or key takes [`RetryConfig`]'s default (`retry_on` stays `None` and is
/// filled in by validation).
impl Default for RetrySection {
    fn default() -> Self {
        let d = RetryConfig::default();
        RetrySection {
            connect_attempts: d.connect_attempts.into(),
            attempts: d.attempts.into(),
            retry_on: None,
            backoff_base: d.backoff_base,
            backoff_max: d.backoff_max,
            per_try_timeout: d.per_try_timeout,
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
