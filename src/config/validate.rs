//! Conversion of the file as written ([`FileConfig`]) into the validated [`Config`].
//!
//! Checks run in file order and stop at the first problem, which is reported with its key path
//! (`services[2].endpoints[0].address`), the value as written and what was expected. Files named
//! by `[tls]` and `peers[].trust_bundle` are only resolved here, never opened: TLS loading checks
//! them, so a config can be validated on a machine that does not hold the certificates.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{
    EndpointSection, FileConfig, GatewaySection, HealthCheckKindName, HealthCheckSection,
    ListenerSection, LoadBalancerSection, OutlierSection, PeerSection, RetrySection,
    ServiceSection, TlsSection, TunnelSection,
};
use super::{
    AdminConfig, Config, ConfigError, EndpointConfig, GatewayConfig, HealthCheckConfig,
    HealthCheckKind, ListenerConfig, LoadBalancerConfig, OutlierConfig, PeerConfig, Protocol,
    RetryConfig, RetryOn, ServiceConfig, ServiceKey, TlsConfig, TunnelConfig, is_dns_label,
};
use crate::identity::{IdentityError, PeerIdentity};

const DNS_LABEL: &str =
    "a DNS label: 1-63 lower-case letters, digits or '-', not starting or ending with '-'";
const LISTEN_ADDR: &str = "an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"";
const RETRY_ON: &str = "\"5xx\", \"gateway-error\", \"reset\" or a status code 500-599 written \
                        as a string, e.g. \"503\"";
/// Envoy's floor of the default `max_ejection_time`.
const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
/// Highest `retry.attempts`.
const MAX_RETRY_ATTEMPTS: u32 = 10;
/// Highest `load_balancer.overprovisioning_factor`.
const MAX_OVERPROVISIONING_FACTOR: u32 = 1000;

/// Checks `raw`, read from `path`, and converts it into a [`Config`].
pub(super) fn validate(raw: FileConfig, path: &Path) -> Result<Config, ConfigError> {
    let v = Validator::new(path);
    let gateway = v.gateway(raw.gateway)?;
    let admin = AdminConfig {
        listen: v.listen_addr("admin.listen", &raw.admin.listen)?,
    };
    let tls = v.tls(raw.tls)?;
    let tunnel = v.tunnel(raw.tunnel)?;
    let peers = v.peers(raw.peers, &gateway)?;
    let services = v.services(raw.services, &gateway)?;
    let listeners = v.listeners(raw.listeners, &services)?;
    v.distinct_listen_addrs(&admin, &tunnel, &listeners)?;
    Ok(Config {
        source: path.to_owned(),
        gateway,
        admin,
        tls,
        tunnel,
        peers,
        services,
        listeners,
    })
}

/// The file being validated: where errors point and what relative paths are relative to.
struct Validator<'a> {
    path: &'a Path,
    folder: &'a Path,
}

impl<'a> Validator<'a> {
    fn new(path: &'a Path) -> Self {
        // A bare file name has the empty parent, which joins into a path relative to the
        // working directory: the folder the file was read from.
        let folder = path.parent().unwrap_or(Path::new(""));
        Validator { path, folder }
    }

    fn invalid(&self, key: &str, value: String, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            value,
            expected: expected.into(),
        }
    }

    // --- sections ---

    fn gateway(&self, raw: GatewaySection) -> Result<GatewayConfig, ConfigError> {
        Ok(GatewayConfig {
            name: self.dns_label("gateway.name", raw.name)?,
            region: self.dns_label("gateway.region", raw.region)?,
            zone: self.dns_label("gateway.zone", raw.zone)?,
            drain_timeout: raw.drain_timeout,
        })
    }

    fn tls(&self, raw: TlsSection) -> Result<TlsConfig, ConfigError> {
        Ok(TlsConfig {
            trust_bundle: self.file("tls.trust_bundle", raw.trust_bundle)?,
            cert: self.file("tls.cert", raw.cert)?,
            key: self.file("tls.key", raw.key)?,
        })
    }

    fn tunnel(&self, raw: TunnelSection) -> Result<TunnelConfig, ConfigError> {
        let tunnel = TunnelConfig {
            listen: self.listen_addr("tunnel.listen", &raw.listen)?,
            handshake_timeout: self.nonzero("tunnel.handshake_timeout", raw.handshake_timeout)?,
            ping_interval: self.nonzero("tunnel.ping_interval", raw.ping_interval)?,
            ping_timeout: self.nonzero("tunnel.ping_timeout", raw.ping_timeout)?,
            max_streams_per_connection: self.count(
                "tunnel.max_streams_per_connection",
                raw.max_streams_per_connection,
            )?,
            connections_per_peer: self
                .count("tunnel.connections_per_peer", raw.connections_per_peer)?,
            // Zero would make every doubled delay zero too: a reconnect busy loop.
            reconnect_backoff_min: self
                .nonzero("tunnel.reconnect_backoff_min", raw.reconnect_backoff_min)?,
            reconnect_backoff_max: raw.reconnect_backoff_max,
        };
        if tunnel.reconnect_backoff_min > tunnel.reconnect_backoff_max {
            return Err(self.invalid(
                "tunnel.reconnect_backoff_min",
                duration_value(tunnel.reconnect_backoff_min),
                format!(
                    "at most tunnel.reconnect_backoff_max ({})",
                    duration_value(tunnel.reconnect_backoff_max)
                ),
            ));
        }
        Ok(tunnel)
    }

    fn peers(
        &self,
        raw: Vec<PeerSection>,
        gateway: &GatewayConfig,
    ) -> Result<Vec<PeerConfig>, ConfigError> {
        let mut seen = Seen::new("peers", "a peer name");
        let mut peers = Vec::with_capacity(raw.len());
        for (i, peer) in raw.into_iter().enumerate() {
            let key = format!("peers[{i}]");
            let peer = self.peer(&key, peer)?;
            if peer.name == gateway.name {
                return Err(self.invalid(
                    &format!("{key}.name"),
                    quote(&peer.name),
                    "a name other than this gateway's own gateway.name",
                ));
            }
            let value = quote(&peer.name);
            seen.insert(self, peer.name.clone(), i, &format!("{key}.name"), value)?;
            peers.push(peer);
        }
        Ok(peers)
    }

    fn peer(&self, key: &str, raw: PeerSection) -> Result<PeerConfig, ConfigError> {
        Ok(PeerConfig {
            // The peer's own gateway.name and gateway.region, held to the same rules.
            name: self.dns_label(&format!("{key}.name"), raw.name)?,
            region: self.dns_label(&format!("{key}.region"), raw.region)?,
            address: self.host_port(&format!("{key}.address"), raw.address)?,
            identity: self.identity(&format!("{key}.identity"), &raw.identity)?,
            trust_bundle: raw
                .trust_bundle
                .map(|p| self.file(&format!("{key}.trust_bundle"), p))
                .transpose()?,
        })
    }

    fn services(
        &self,
        raw: Vec<ServiceSection>,
        gateway: &GatewayConfig,
    ) -> Result<Vec<ServiceConfig>, ConfigError> {
        let mut seen = Seen::new("services", "a service <name>.<namespace>:<port>");
        let mut services = Vec::with_capacity(raw.len());
        for (i, service) in raw.into_iter().enumerate() {
            let key = format!("services[{i}]");
            let service = self.service(&key, service, gateway)?;
            // Name, namespace and port together identify a service on the tunnel.
            let value = quote(&service.key.to_string());
            seen.insert(self, service.key.clone(), i, &key, value)?;
            services.push(service);
        }
        Ok(services)
    }

    fn service(
        &self,
        key: &str,
        raw: ServiceSection,
        gateway: &GatewayConfig,
    ) -> Result<ServiceConfig, ConfigError> {
        let service_key = ServiceKey {
            name: self.dns_label(&format!("{key}.name"), raw.name)?,
            namespace: self.dns_label(&format!("{key}.namespace"), raw.namespace)?,
            port: self.port(&format!("{key}.port"), raw.port)?,
        };
        let hosts = raw
            .hosts
            .into_iter()
            .enumerate()
            .map(|(j, h)| self.host_name(&format!("{key}.hosts[{j}]"), h))
            .collect::<Result<_, _>>()?;
        let endpoints = raw
            .endpoints
            .into_iter()
            .enumerate()
            .map(|(j, e)| self.endpoint(&format!("{key}.endpoints[{j}]"), e, gateway))
            .collect::<Result<_, _>>()?;
        let protocol = Protocol::from(raw.protocol);
        Ok(ServiceConfig {
            key: service_key,
            protocol,
            exported: raw.exported,
            hosts,
            connect_timeout: self
                .nonzero(&format!("{key}.connect_timeout"), raw.connect_timeout)?,
            // Zero would close every connection as soon as it opens.
            idle_timeout: self.nonzero(&format!("{key}.idle_timeout"), raw.idle_timeout)?,
            endpoints,
            outlier_detection: self
                .outlier(&format!("{key}.outlier_detection"), raw.outlier_detection)?,
            load_balancer: self
                .load_balancer(&format!("{key}.load_balancer"), raw.load_balancer)?,
            retry: self.retry(&format!("{key}.retry"), raw.retry, protocol)?,
            health_check: raw
                .health_check
                .map(|h| self.health_check(&format!("{key}.health_check"), h))
                .transpose()?,
        })
    }

    fn outlier(&self, key: &str, raw: OutlierSection) -> Result<OutlierConfig, ConfigError> {
        let k = |field: &str| format!("{key}.{field}");
        let interval = self.nonzero(&k("interval"), raw.interval)?;
        let base_ejection_time = self.nonzero(&k("base_ejection_time"), raw.base_ejection_time)?;
        let max_ejection_time = match raw.max_ejection_time {
            None => base_ejection_time.max(DEFAULT_MAX_EJECTION_TIME),
            // Envoy rejects a ceiling below the base rather than clamping either.
            Some(max) if max < base_ejection_time => {
                return Err(self.invalid(
                    &k("max_ejection_time"),
                    duration_value(max),
                    format!(
                        "at least {} ({})",
                        k("base_ejection_time"),
                        duration_value(base_ejection_time)
                    ),
                ));
            }
            Some(max) => max,
        };
        Ok(OutlierConfig {
            consecutive_5xx_errors: self
                .number(&k("consecutive_5xx_errors"), raw.consecutive_5xx_errors)?,
            consecutive_gateway_errors: self.number(
                &k("consecutive_gateway_errors"),
                raw.consecutive_gateway_errors,
            )?,
            split_external_local_origin_errors: raw.split_external_local_origin_errors,
            consecutive_local_origin_failures: self.number(
                &k("consecutive_local_origin_failures"),
                raw.consecutive_local_origin_failures,
            )?,
            interval,
            base_ejection_time,
            max_ejection_time,
            max_ejection_time_jitter: raw.max_ejection_time_jitter,
            max_ejection_percent: self
                .percent(&k("max_ejection_percent"), raw.max_ejection_percent)?,
            enforcing_consecutive_5xx: self.percent(
                &k("enforcing_consecutive_5xx"),
                raw.enforcing_consecutive_5xx,
            )?,
            enforcing_consecutive_gateway_errors: self.percent(
                &k("enforcing_consecutive_gateway_errors"),
                raw.enforcing_consecutive_gateway_errors,
            )?,
            enforcing_consecutive_local_origin_failures: self.percent(
                &k("enforcing_consecutive_local_origin_failures"),
                raw.enforcing_consecutive_local_origin_failures,
            )?,
            success_rate_minimum_hosts: self.number(
                &k("success_rate_minimum_hosts"),
                raw.success_rate_minimum_hosts,
            )?,
            success_rate_request_volume: self.number(
                &k("success_rate_request_volume"),
                raw.success_rate_request_volume,
            )?,
            success_rate_stdev_factor: self.number(
                &k("success_rate_stdev_factor"),
                raw.success_rate_stdev_factor,
            )?,
            enforcing_success_rate: self
                .percent(&k("enforcing_success_rate"), raw.enforcing_success_rate)?,
            failure_percentage_threshold: self.percent(
                &k("failure_percentage_threshold"),
                raw.failure_percentage_threshold,
            )?,
            failure_percentage_minimum_hosts: self.number(
                &k("failure_percentage_minimum_hosts"),
                raw.failure_percentage_minimum_hosts,
            )?,
            failure_percentage_request_volume: self.number(
                &k("failure_percentage_request_volume"),
                raw.failure_percentage_request_volume,
            )?,
            enforcing_failure_percentage: self.percent(
                &k("enforcing_failure_percentage"),
                raw.enforcing_failure_percentage,
            )?,
        })
    }

    fn load_balancer(
        &self,
        key: &str,
        raw: LoadBalancerSection,
    ) -> Result<LoadBalancerConfig, ConfigError> {
        let factor = raw.overprovisioning_factor;
        let overprovisioning_factor = u32::try_from(factor)
            .ok()
            .filter(|f| (1..=MAX_OVERPROVISIONING_FACTOR).contains(f))
            .ok_or_else(|| {
                self.invalid(
                    &format!("{key}.overprovisioning_factor"),
                    factor.to_string(),
                    format!(
                        "a percentage 1-{MAX_OVERPROVISIONING_FACTOR} (Envoy's default is 140)"
                    ),
                )
            })?;
        Ok(LoadBalancerConfig {
            policy: raw.policy.into(),
            overprovisioning_factor,
        })
    }

    fn retry(
        &self,
        key: &str,
        raw: RetrySection,
        protocol: Protocol,
    ) -> Result<RetryConfig, ConfigError> {
        let k = |field: &str| format!("{key}.{field}");
        let connect_attempts = self.count(&k("connect_attempts"), raw.connect_attempts)?;
        let attempts = u32::try_from(raw.attempts)
            .ok()
            .filter(|n| *n <= MAX_RETRY_ATTEMPTS)
            .ok_or_else(|| {
                self.invalid(
                    &k("attempts"),
                    raw.attempts.to_string(),
                    format!("a number 0-{MAX_RETRY_ATTEMPTS}"),
                )
            })?;
        let retry_on = match raw.retry_on {
            None => RetryConfig::default().retry_on,
            Some(list) => {
                if protocol != Protocol::Http && !list.is_empty() {
                    return Err(self.invalid(
                        &k("retry_on"),
                        list_value(&list),
                        format!(
                            "no retry_on on a protocol = \"{protocol}\" service: only http \
                             services retry whole requests; connect failures are always retried \
                             (up to {})",
                            k("connect_attempts")
                        ),
                    ));
                }
                list.iter()
                    .enumerate()
                    .map(|(j, v)| {
                        parse_retry_on(v).ok_or_else(|| {
                            self.invalid(&k(&format!("retry_on[{j}]")), quote(v), RETRY_ON)
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        if raw.backoff_base > raw.backoff_max {
            return Err(self.invalid(
                &k("backoff_base"),
                duration_value(raw.backoff_base),
                format!(
                    "at most {} ({})",
                    k("backoff_max"),
                    duration_value(raw.backoff_max)
                ),
            ));
        }
        Ok(RetryConfig {
            connect_attempts,
            attempts,
            retry_on,
            backoff_base: raw.backoff_base,
            backoff_max: raw.backoff_max,
            per_try_timeout: self.nonzero(&k("per_try_timeout"), raw.per_try_timeout)?,
        })
    }

    fn health_check(
        &self,
        key: &str,
        raw: HealthCheckSection,
    ) -> Result<HealthCheckConfig, ConfigError> {
        let k = |field: &str| format!("{key}.{field}");
        let kind = match (raw.kind, raw.path) {
            (HealthCheckKindName::Http, Some(path)) => {
                let valid =
                    path.starts_with('/') && path.parse::<http::uri::PathAndQuery>().is_ok();
                if !valid {
                    return Err(self.invalid(
                        &k("path"),
                        quote(&path),
                        "a request path starting with '/', e.g. \"/healthz\"",
                    ));
                }
                HealthCheckKind::Http { path }
            }
            (HealthCheckKindName::Http, None) => {
                return Err(self.invalid(
                    &k("path"),
                    "(not set)".to_owned(),
                    "a request path starting with '/' for kind = \"http\", e.g. \"/healthz\"",
                ));
            }
            (HealthCheckKindName::Tcp, Some(path)) => {
                return Err(self.invalid(
                    &k("path"),
                    quote(&path),
                    "no path for kind = \"tcp\", which only connects; kind = \"http\" \
                     requests a path",
                ));
            }
            (HealthCheckKindName::Tcp, None) => HealthCheckKind::Tcp,
        };
        let interval = self.nonzero(&k("interval"), raw.interval)?;
        let timeout = self.nonzero(&k("timeout"), raw.timeout)?;
        if timeout > interval {
            return Err(self.invalid(
                &k("timeout"),
                duration_value(timeout),
                format!("at most {} ({})", k("interval"), duration_value(interval)),
            ));
        }
        Ok(HealthCheckConfig {
            kind,
            interval,
            timeout,
            healthy_threshold: self.count(&k("healthy_threshold"), raw.healthy_threshold)?,
            unhealthy_threshold: self.count(&k("unhealthy_threshold"), raw.unhealthy_threshold)?,
        })
    }

    fn endpoint(
        &self,
        key: &str,
        raw: EndpointSection,
        gateway: &GatewayConfig,
    ) -> Result<EndpointConfig, ConfigError> {
        let address_key = format!("{key}.address");
        let address = self.listen_addr(&address_key, &raw.address)?;
        if address.port() == 0 {
            return Err(self.invalid(
                &address_key,
                quote(&raw.address),
                "an IP address and a port 1-65535, e.g. \"10.0.0.5:8080\"",
            ));
        }
        let zone = match raw.zone {
            Some(zone) => self.dns_label(&format!("{key}.zone"), zone)?,
            None => gateway.zone.clone(),
        };
        let weight = u32::try_from(raw.weight)
            .ok()
            .filter(|w| *w >= 1)
            .ok_or_else(|| {
                self.invalid(
                    &format!("{key}.weight"),
                    raw.weight.to_string(),
                    format!("a weight 1-{}", u32::MAX),
                )
            })?;
        Ok(EndpointConfig {
            address,
            zone,
            weight,
        })
    }

    fn listeners(
        &self,
        raw: Vec<ListenerSection>,
        services: &[ServiceConfig],
    ) -> Result<Vec<ListenerConfig>, ConfigError> {
        let mut seen = Seen::new("listeners", "a listener name");
        let mut listeners = Vec::with_capacity(raw.len());
        for (i, listener) in raw.into_iter().enumerate() {
            let key = format!("listeners[{i}]");
            let listener = self.listener(&key, listener, services)?;
            let value = quote(&listener.name);
            seen.insert(
                self,
                listener.name.clone(),
                i,
                &format!("{key}.name"),
                value,
            )?;
            listeners.push(listener);
        }
        Ok(listeners)
    }

    fn listener(
        &self,
        key: &str,
        raw: ListenerSection,
        services: &[ServiceConfig],
    ) -> Result<ListenerConfig, ConfigError> {
        let name = self.non_empty(&format!("{key}.name"), raw.name)?;
        let protocol = Protocol::from(raw.protocol);
        let listen = self.listen_addr(&format!("{key}.listen"), &raw.listen)?;
        let service_key = format!("{key}.service");
        let service = match (protocol, raw.service) {
            (Protocol::Tcp, Some(s)) => Some(self.tcp_service(&service_key, &s, services)?),
            (Protocol::Tcp, None) => {
                return Err(self.invalid(
                    &service_key,
                    "(not set)".to_owned(),
                    "the tcp service this listener forwards to, as \"<name>.<namespace>:<port>\"",
                ));
            }
            (Protocol::Http | Protocol::Tls, Some(s)) => {
                return Err(self.invalid(
                    &service_key,
                    quote(&s),
                    format!(
                        "no service on a protocol = \"{protocol}\" listener: http listeners \
                         route by Host header, tls listeners by SNI; only tcp listeners name a \
                         service"
                    ),
                ));
            }
            (Protocol::Http | Protocol::Tls, None) => None,
        };
        Ok(ListenerConfig {
            name,
            protocol,
            listen,
            service,
        })
    }

    /// The service a `tcp` listener names: it must be configured, with protocol `tcp`.
    fn tcp_service(
        &self,
        key: &str,
        value: &str,
        services: &[ServiceConfig],
    ) -> Result<ServiceKey, ConfigError> {
        let tcp_services = || {
            let keys: Vec<String> = services
                .iter()
                .filter(|s| s.protocol == Protocol::Tcp)
                .map(|s| s.key.to_string())
                .collect();
            if keys.is_empty() {
                "none configured".to_owned()
            } else {
                keys.join(", ")
            }
        };
        let service_key: ServiceKey = value.parse().map_err(|_| {
            self.invalid(
                key,
                quote(value),
                "\"<name>.<namespace>:<port>\" of a tcp service, e.g. \"echo.default:9000\"",
            )
        })?;
        match services.iter().find(|s| s.key == service_key) {
            Some(s) if s.protocol == Protocol::Tcp => Ok(service_key),
            Some(s) => Err(self.invalid(
                key,
                quote(value),
                format!(
                    "a service with protocol = \"tcp\", but {} has protocol = \"{}\"",
                    s.key, s.protocol
                ),
            )),
            None => Err(self.invalid(
                key,
                quote(value),
                format!("a tcp service defined in [[services]] ({})", tcp_services()),
            )),
        }
    }

    /// Two sockets cannot listen on the same address; port 0 (any free port) never collides.
    fn distinct_listen_addrs(
        &self,
        admin: &AdminConfig,
        tunnel: &TunnelConfig,
        listeners: &[ListenerConfig],
    ) -> Result<(), ConfigError> {
        let mut taken: Vec<(String, SocketAddr)> = vec![("admin.listen".to_owned(), admin.listen)];
        let all = std::iter::once(("tunnel.listen".to_owned(), tunnel.listen)).chain(
            listeners
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("listeners[{i}].listen"), l.listen)),
        );
        for (key, addr) in all {
            if let Some((owner, _)) = taken.iter().find(|(_, t)| collide(*t, addr)) {
                return Err(self.invalid(
                    &key,
                    quote(&addr.to_string()),
                    format!("an address and port not already used by {owner}"),
                ));
            }
            taken.push((key, addr));
        }
        Ok(())
    }

    // --- values ---

    fn dns_label(&self, key: &str, value: String) -> Result<String, ConfigError> {
        if is_dns_label(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, quote(&value), DNS_LABEL))
        }
    }

    fn non_empty(&self, key: &str, value: String) -> Result<String, ConfigError> {
        if value.trim().is_empty() {
            Err(self.invalid(key, quote(&value), "a non-empty name"))
        } else {
            Ok(value)
        }
    }

    /// A Host header / SNI name, lower-cased because both compare case-insensitively.
    fn host_name(&self, key: &str, value: String) -> Result<String, ConfigError> {
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ':') {
            return Err(self.invalid(
                key,
                quote(&value),
                "a host name without port, e.g. \"web.example.com\"",
            ));
        }
        Ok(value.to_ascii_lowercase())
    }

    fn listen_addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value
            .parse()
            .map_err(|_| self.invalid(key, quote(value), LISTEN_ADDR))
    }

    /// `host:port` where host is an IPv4 address, a bracketed IPv6 address or a DNS name.
    fn host_port(&self, key: &str, value: String) -> Result<String, ConfigError> {
        if is_host_port(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                key,
                quote(&value),
                "host:port with a port 1-65535, e.g. \"gw-b.example.com:15443\", \
                 \"10.0.0.2:15443\" or \"[fd00::2]:15443\"",
            ))
        }
    }

    fn identity(&self, key: &str, value: &str) -> Result<PeerIdentity, ConfigError> {
        value.parse().map_err(|e| {
            let expected = match e {
                IdentityError::NotSpiffe(_) => {
                    "a SPIFFE ID spiffe://<trust-domain>/<path>, e.g. \
                     \"spiffe://strait.local/gateway/gw-b\" (lower-case trust domain; path \
                     segments of letters, digits, '.', '_' or '-')"
                }
                IdentityError::Unknown(_) => {
                    "spiffe://<trust-domain>/<path> (e.g. \"spiffe://strait.local/gateway/gw-b\") \
                     or dns:<name> (e.g. \"dns:gw-b.example.com\")"
                }
            };
            self.invalid(key, quote(value), expected)
        })
    }

    fn port(&self, key: &str, value: i64) -> Result<u16, ConfigError> {
        u16::try_from(value)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| self.invalid(key, value.to_string(), "a port number 1-65535"))
    }

    fn count(&self, key: &str, value: i64) -> Result<u32, ConfigError> {
        u32::try_from(value)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| self.invalid(key, value.to_string(), format!("a number 1-{}", u32::MAX)))
    }

    /// A count where 0 means "off" or "no minimum".
    fn number(&self, key: &str, value: i64) -> Result<u32, ConfigError> {
        u32::try_from(value)
            .map_err(|_| self.invalid(key, value.to_string(), format!("a number 0-{}", u32::MAX)))
    }

    fn percent(&self, key: &str, value: i64) -> Result<u32, ConfigError> {
        u32::try_from(value)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| self.invalid(key, value.to_string(), "a percentage 0-100"))
    }

    fn nonzero(&self, key: &str, value: Duration) -> Result<Duration, ConfigError> {
        if value.is_zero() {
            Err(self.invalid(
                key,
                duration_value(value),
                "a duration greater than zero, e.g. \"500ms\" or \"5s\"",
            ))
        } else {
            Ok(value)
        }
    }

    /// A file path, relative ones resolved against the config file's folder. The file itself is
    /// not checked: TLS loading reports missing or bad files.
    fn file(&self, key: &str, value: PathBuf) -> Result<PathBuf, ConfigError> {
        if value.as_os_str().is_empty() {
            return Err(self.invalid(key, quote(""), "a file path"));
        }
        Ok(self.folder.join(value))
    }
}

/// The values one list has used so far, so that a duplicate can name the entry it repeats.
struct Seen<T> {
    /// The list's key, e.g. `peers`.
    list: &'static str,
    /// What the values are, for the message, e.g. `a peer name`.
    what: &'static str,
    first: HashMap<T, usize>,
}

impl<T: Hash + Eq> Seen<T> {
    fn new(list: &'static str, what: &'static str) -> Self {
        Seen {
            list,
            what,
            first: HashMap::new(),
        }
    }

    /// Records `item` of entry `i`; if an earlier entry has it, reports `key = value`.
    fn insert(
        &mut self,
        v: &Validator<'_>,
        item: T,
        i: usize,
        key: &str,
        value: String,
    ) -> Result<(), ConfigError> {
        match self.first.entry(item) {
            Entry::Occupied(first) => Err(v.invalid(
                key,
                value,
                format!(
                    "{} not already used by {}[{}]",
                    self.what,
                    self.list,
                    first.get()
                ),
            )),
            Entry::Vacant(slot) => {
                slot.insert(i);
                Ok(())
            }
        }
    }
}

/// Whether two listen addresses would fail to bind together: same port and the same IP, or
/// either a wildcard IP (which also takes the port on every specific address).
fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => {
            host.parse::<Ipv4Addr>().is_ok() || rustls_pki_types::DnsName::try_from(host).is_ok()
        }
    };
    port_ok && host_ok
}

/// `"5xx"`, `"gateway-error"`, `"reset"` or a 5xx status code such as `"503"`, as Envoy's
/// `retry_on` and `retriable_status_codes` spell them.
fn parse_retry_on(s: &str) -> Option<RetryOn> {
    match s {
        "5xx" => Some(RetryOn::Status5xx),
        "gateway-error" => Some(RetryOn::GatewayError),
        "reset" => Some(RetryOn::Reset),
        code if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => code
            .parse()
            .ok()
            .filter(|c| (500..=599).contains(c))
            .map(RetryOn::Status),
        _ => None,
    }
}

/// A list of strings as TOML would show it.
fn list_value(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A string value as TOML would show it, quoted.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn duration_value(d: Duration) -> String {
    quote(&humantime::format_duration(d).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LbPolicy;

    const MINIMAL: &str = r#"
        [gateway]
        name = "gw-a"
        region = "region-a"
        zone = "zone-a1"

        [tls]
        trust_bundle = "certs/ca.pem"
        cert = "/etc/strait/gw-a.pem"
        key = "gw-a-key.pem"
    "#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("conf/gw.toml"))
    }

    fn with(extra: &str) -> String {
        format!("{MINIMAL}\n{extra}")
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn omitted_sections_and_keys_take_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.source, Path::new("conf/gw.toml"));
        assert_eq!(c.gateway.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.admin.listen, "127.0.0.1:15021".parse().unwrap());
        let t = &c.tunnel;
        assert_eq!(t.listen, "0.0.0.0:15443".parse().unwrap());
        assert_eq!(t.handshake_timeout, Duration::from_secs(5));
        assert_eq!(t.ping_interval, Duration::from_secs(1));
        assert_eq!(t.ping_timeout, Duration::from_millis(1500));
        assert_eq!(t.max_streams_per_connection, 100);
        assert_eq!(t.connections_per_peer, 1);
        assert_eq!(t.reconnect_backoff_min, Duration::from_millis(100));
        assert_eq!(t.reconnect_backoff_max, Duration::from_secs(10));
        assert!(c.peers.is_empty() && c.services.is_empty() && c.listeners.is_empty());
    }

    #[test]
    fn empty_tunnel_section_equals_omitted_one() {
        let omitted = parse(MINIMAL).unwrap();
        let empty = parse(&with("[tunnel]\n[admin]")).unwrap();
        assert_eq!(omitted, empty);
    }

    #[test]
    fn service_and_endpoint_defaults() {
        let c = parse(&with(
            r#"
            [[services]]
            name = "web"
            port = 8080
            protocol = "http"
            hosts = ["Web.Example.COM"]
            endpoints = [{ address = "10.0.0.1:80" }, { address = "10.0.0.2:80", zone = "z2", weight = 3 }]
            "#,
        ))
        .unwrap();
        let s = &c.services[0];
        assert_eq!(s.key.to_string(), "web.default:8080");
        assert_eq!(s.protocol, Protocol::Http);
        assert!(!s.exported);
        assert_eq!(s.hosts, ["web.example.com"]);
        assert_eq!(s.connect_timeout, Duration::from_secs(1));
        assert_eq!(s.idle_timeout, Duration::from_secs(3600));
        assert_eq!(s.endpoints[0].zone, "zone-a1");
        assert_eq!(s.endpoints[0].weight, 1);
        assert_eq!(s.endpoints[1].zone, "z2");
        assert_eq!(s.endpoints[1].weight, 3);
    }

    #[test]
    fn durations_accept_compound_forms() {
        let c = parse(&with(
            "[tunnel]\nhandshake_timeout = \"1s 500ms\"\nping_interval = \"5m\"",
        ))
        .unwrap();
        assert_eq!(c.tunnel.handshake_timeout, Duration::from_millis(1500));
        assert_eq!(c.tunnel.ping_interval, Duration::from_secs(300));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = parse(&with(
            r#"
            [[peers]]
            name = "gw-b"
            region = "region-b"
            address = "gw-b.example.com:15443"
            identity = "dns:GW-B.example.com"
            trust_bundle = "../peer-ca.pem"
            "#,
        ))
        .unwrap();
        assert_eq!(c.tls.trust_bundle, Path::new("conf/certs/ca.pem"));
        assert_eq!(c.tls.cert, Path::new("/etc/strait/gw-a.pem"));
        assert_eq!(c.tls.key, Path::new("conf/gw-a-key.pem"));
        assert_eq!(
            c.peers[0].trust_bundle.as_deref(),
            Some(Path::new("conf/../peer-ca.pem"))
        );
        assert_eq!(c.peers[0].identity.to_string(), "dns:gw-b.example.com");
    }

    #[test]
    fn bare_file_name_resolves_against_the_working_directory() {
        let c = Config::from_toml(MINIMAL, Path::new("gw.toml")).unwrap();
        assert_eq!(c.tls.trust_bundle, Path::new("certs/ca.pem"));
    }

    #[test]
    fn tcp_listener_resolves_its_service() {
        let c = parse(&with(
            r#"
            [[services]]
            name = "echo"
            port = 9000
            protocol = "tcp"

            [[listeners]]
            name = "echo"
            protocol = "tcp"
            listen = "127.0.0.1:0"
            service = "echo.default.svc.cluster.local:9000"

            [[listeners]]
            name = "http"
            protocol = "http"
            listen = "127.0.0.1:0"
            "#,
        ))
        .unwrap();
        let expected: ServiceKey = "echo.default:9000".parse().unwrap();
        assert_eq!(c.listeners[0].service.as_ref(), Some(&expected));
        assert_eq!(c.listeners[1].service, None);
    }

    #[test]
    fn error_names_file_key_value_and_expectation() {
        let e = error(&with(
            "[[services]]\nname = \"web\"\nport = 0\nprotocol = \"http\"",
        ));
        assert_eq!(
            e,
            "conf/gw.toml: services[0].port = 0: expected a port number 1-65535"
        );
    }

    #[test]
    fn listen_addresses_collide_on_wildcards_but_not_port_zero() {
        let e = error(&with(
            "[tunnel]\nlisten = \"0.0.0.0:8080\"\n\
             [[listeners]]\nname = \"h\"\nprotocol = \"http\"\nlisten = \"127.0.0.1:8080\"",
        ));
        assert!(
            e.contains("listeners[0].listen = \"127.0.0.1:8080\""),
            "{e}"
        );
        assert!(e.contains("tunnel.listen"), "{e}");
        parse(&with(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[tunnel]\nlisten = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"h\"\nprotocol = \"http\"\nlisten = \"127.0.0.1:0\"",
        ))
        .unwrap();
    }

    #[test]
    fn peer_addresses() {
        for good in [
            "gw-b.example.com:15443",
            "10.0.0.2:1",
            "[fd00::2]:15443",
            "gw-b:65535",
        ] {
            assert!(is_host_port(good), "{good}");
        }
        for bad in [
            "gw-b",
            "gw-b:",
            "gw-b:0",
            "gw-b:65536",
            "gw-b:+1",
            ":15443",
            "fd00::2:1",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    /// One `[[services]]` entry of `protocol`, followed by `tables` (its sub-tables).
    fn service_with(protocol: &str, tables: &str) -> String {
        with(&format!(
            "[[services]]\nname = \"web\"\nport = 8080\nprotocol = \"{protocol}\"\n{tables}"
        ))
    }

    fn only_service(text: &str) -> ServiceConfig {
        parse(text).unwrap().services.remove(0)
    }

    #[test]
    fn failover_tables_default_to_envoy() {
        let s = only_service(&service_with("http", ""));
        let o = &s.outlier_detection;
        assert_eq!(*o, OutlierConfig::default());
        assert_eq!(o.consecutive_5xx_errors, 5);
        assert_eq!(o.consecutive_gateway_errors, 0);
        assert!(!o.split_external_local_origin_errors);
        assert_eq!(o.interval, Duration::from_secs(10));
        assert_eq!(o.base_ejection_time, Duration::from_secs(30));
        assert_eq!(o.max_ejection_time, Duration::from_secs(300));
        assert_eq!(o.max_ejection_percent, 10);
        assert_eq!(o.success_rate_stdev_factor, 1900);
        assert_eq!(o.enforcing_failure_percentage, 0);
        assert_eq!(s.load_balancer, LoadBalancerConfig::default());
        assert_eq!(s.load_balancer.policy, LbPolicy::LeastRequest);
        assert_eq!(s.load_balancer.overprovisioning_factor, 140);
        assert_eq!(s.retry, RetryConfig::default());
        assert_eq!(s.retry.connect_attempts, 5);
        assert_eq!(s.retry.attempts, 2);
        assert_eq!(s.retry.retry_on, [RetryOn::GatewayError, RetryOn::Reset]);
        assert_eq!(s.retry.backoff_base, Duration::from_millis(25));
        assert_eq!(s.retry.backoff_max, Duration::from_millis(250));
        assert_eq!(s.health_check, None);

        let empty = only_service(&service_with(
            "http",
            "[services.outlier_detection]\n[services.load_balancer]\n[services.retry]",
        ));
        assert_eq!(empty, s);
    }

    #[test]
    fn max_ejection_time_defaults_to_at_least_base() {
        let max = |tables: &str| {
            only_service(&service_with("http", tables))
                .outlier_detection
                .max_ejection_time
        };
        let t = "[services.outlier_detection]\n";
        assert_eq!(
            max(&format!("{t}base_ejection_time = \"10m\"")),
            Duration::from_secs(600)
        );
        assert_eq!(
            max(&format!("{t}base_ejection_time = \"1m\"")),
            Duration::from_secs(300)
        );
        assert_eq!(
            max(&format!("{t}base_ejection_time = \"5m\"")),
            Duration::from_secs(300)
        );
        assert_eq!(
            max(&format!(
                "{t}base_ejection_time = \"1m\"\nmax_ejection_time = \"1m\""
            )),
            Duration::from_secs(60)
        );
        let e = error(&service_with(
            "http",
            &format!("{t}base_ejection_time = \"10m\"\nmax_ejection_time = \"5m\""),
        ));
        assert_eq!(
            e,
            "conf/gw.toml: services[0].outlier_detection.max_ejection_time = \"5m\": expected \
             at least services[0].outlier_detection.base_ejection_time (\"10m\")"
        );
    }

    #[test]
    fn every_failover_key_is_read() {
        let s = only_service(&service_with(
            "http",
            r#"
            [services.outlier_detection]
            consecutive_5xx_errors = 1
            consecutive_gateway_errors = 2
            split_external_local_origin_errors = true
            consecutive_local_origin_failures = 3
            interval = "30s"
            base_ejection_time = "5m"
            max_ejection_time = "10m"
            max_ejection_time_jitter = "1s"
            max_ejection_percent = 100
            enforcing_consecutive_5xx = 90
            enforcing_consecutive_gateway_errors = 80
            enforcing_consecutive_local_origin_failures = 70
            success_rate_minimum_hosts = 4
            success_rate_request_volume = 60
            success_rate_stdev_factor = 1500
            enforcing_success_rate = 50
            failure_percentage_threshold = 40
            failure_percentage_minimum_hosts = 6
            failure_percentage_request_volume = 30
            enforcing_failure_percentage = 20

            [services.load_balancer]
            policy = "round_robin"
            overprovisioning_factor = 100

            [services.retry]
            connect_attempts = 1
            attempts = 0
            retry_on = ["5xx", "gateway-error", "reset", "503"]
            backoff_base = "10ms"
            backoff_max = "10ms"

            [services.health_check]
            kind = "http"
            path = "/healthz?full=1"
            interval = "2s"
            timeout = "2s"
            healthy_threshold = 2
            unhealthy_threshold = 4
            "#,
        ));
        assert_eq!(
            s.outlier_detection,
            OutlierConfig {
                consecutive_5xx_errors: 1,
                consecutive_gateway_errors: 2,
                split_external_local_origin_errors: true,
                consecutive_local_origin_failures: 3,
                interval: Duration::from_secs(30),
                base_ejection_time: Duration::from_secs(300),
                max_ejection_time: Duration::from_secs(600),
                max_ejection_time_jitter: Duration::from_secs(1),
                max_ejection_percent: 100,
                enforcing_consecutive_5xx: 90,
                enforcing_consecutive_gateway_errors: 80,
                enforcing_consecutive_local_origin_failures: 70,
                success_rate_minimum_hosts: 4,
                success_rate_request_volume: 60,
                success_rate_stdev_factor: 1500,
                enforcing_success_rate: 50,
                failure_percentage_threshold: 40,
                failure_percentage_minimum_hosts: 6,
                failure_percentage_request_volume: 30,
                enforcing_failure_percentage: 20,
            }
        );
        assert_eq!(
            s.load_balancer,
            LoadBalancerConfig {
                policy: LbPolicy::RoundRobin,
                overprovisioning_factor: 100,
            }
        );
        assert_eq!(
            s.retry,
            RetryConfig {
                connect_attempts: 1,
                attempts: 0,
                retry_on: vec![
                    RetryOn::Status5xx,
                    RetryOn::GatewayError,
                    RetryOn::Reset,
                    RetryOn::Status(503),
                ],
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(10),
                per_try_timeout: Duration::from_secs(15),
            }
        );
        assert_eq!(
            s.health_check,
            Some(HealthCheckConfig {
                kind: HealthCheckKind::Http {
                    path: "/healthz?full=1".to_owned()
                },
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(2),
                healthy_threshold: 2,
                unhealthy_threshold: 4,
            })
        );
    }

    #[test]
    fn health_check_defaults() {
        let s = only_service(&service_with(
            "tcp",
            "[services.health_check]\nkind = \"tcp\"",
        ));
        assert_eq!(
            s.health_check,
            Some(HealthCheckConfig {
                kind: HealthCheckKind::Tcp,
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                healthy_threshold: 1,
                unhealthy_threshold: 3,
            })
        );
    }

    #[test]
    fn retry_on_only_on_http_services() {
        // Defaults and an explicitly empty list are fine on any protocol.
        for protocol in ["tcp", "tls"] {
            let s = only_service(&service_with(protocol, "[services.retry]\nattempts = 3"));
            assert_eq!(s.retry.attempts, 3);
            only_service(&service_with(protocol, "[services.retry]\nretry_on = []"));
        }
        let e = error(&service_with(
            "tls",
            "[services.retry]\nretry_on = [\"reset\", \"503\"]",
        ));
        assert!(
            e.starts_with(
                "conf/gw.toml: services[0].retry.retry_on = [\"reset\", \"503\"]: expected no \
                 retry_on on a protocol = \"tls\" service: only http services retry whole \
                 requests; connect failures are always retried"
            ),
            "{e}"
        );
    }

    #[test]
    fn retry_on_values() {
        assert_eq!(parse_retry_on("5xx"), Some(RetryOn::Status5xx));
        assert_eq!(parse_retry_on("gateway-error"), Some(RetryOn::GatewayError));
        assert_eq!(parse_retry_on("reset"), Some(RetryOn::Reset));
        assert_eq!(parse_retry_on("500"), Some(RetryOn::Status(500)));
        assert_eq!(parse_retry_on("599"), Some(RetryOn::Status(599)));
        for bad in [
            "",
            "5XX",
            "Reset",
            "404",
            "600",
            "+503",
            "0503",
            "50",
            "connect-failure",
        ] {
            assert_eq!(parse_retry_on(bad), None, "{bad}");
        }
        let e = error(&service_with(
            "http",
            "[services.retry]\nretry_on = [\"5xx\", \"404\"]",
        ));
        assert!(
            e.contains("services[0].retry.retry_on[1] = \"404\": expected \"5xx\""),
            "{e}"
        );
    }

    #[test]
    fn failover_values_out_of_range() {
        let cases = [
            (
                "[services.outlier_detection]\nmax_ejection_percent = 101",
                "services[0].outlier_detection.max_ejection_percent = 101: expected a percentage 0-100",
            ),
            (
                "[services.outlier_detection]\nenforcing_success_rate = -1",
                "services[0].outlier_detection.enforcing_success_rate = -1: expected a percentage 0-100",
            ),
            (
                "[services.outlier_detection]\nconsecutive_5xx_errors = -1",
                "services[0].outlier_detection.consecutive_5xx_errors = -1: expected a number 0-",
            ),
            (
                "[services.outlier_detection]\ninterval = \"0s\"",
                "services[0].outlier_detection.interval = \"0s\": expected a duration greater than zero",
            ),
            (
                "[services.outlier_detection]\nbase_ejection_time = \"0s\"",
                "services[0].outlier_detection.base_ejection_time = \"0s\": expected a duration",
            ),
            (
                "[services.load_balancer]\noverprovisioning_factor = 0",
                "services[0].load_balancer.overprovisioning_factor = 0: expected a percentage 1-1000",
            ),
            (
                "[services.load_balancer]\noverprovisioning_factor = 1001",
                "services[0].load_balancer.overprovisioning_factor = 1001: expected a percentage 1-1000",
            ),
            (
                "[services.retry]\nconnect_attempts = 0",
                "services[0].retry.connect_attempts = 0: expected a number 1-",
            ),
            (
                "[services.retry]\nattempts = 11",
                "services[0].retry.attempts = 11: expected a number 0-10",
            ),
            (
                "[services.retry]\nbackoff_base = \"1s\"",
                "services[0].retry.backoff_base = \"1s\": expected at most services[0].retry.backoff_max (\"250ms\")",
            ),
            (
                "[services.health_check]\nkind = \"http\"\npath = \"healthz\"",
                "services[0].health_check.path = \"healthz\": expected a request path starting with '/'",
            ),
            (
                "[services.health_check]\nkind = \"http\"\npath = \"/a b\"",
                "services[0].health_check.path = \"/a b\": expected a request path",
            ),
            (
                "[services.health_check]\nkind = \"http\"",
                "services[0].health_check.path = (not set): expected a request path",
            ),
            (
                "[services.health_check]\nkind = \"tcp\"\npath = \"/\"",
                "services[0].health_check.path = \"/\": expected no path for kind = \"tcp\"",
            ),
            (
                "[services.health_check]\nkind = \"tcp\"\ntimeout = \"6s\"",
                "services[0].health_check.timeout = \"6s\": expected at most services[0].health_check.interval (\"5s\")",
            ),
            (
                "[services.health_check]\nkind = \"tcp\"\ninterval = \"0s\"",
                "services[0].health_check.interval = \"0s\": expected a duration greater than zero",
            ),
            (
                "[services.health_check]\nkind = \"tcp\"\nhealthy_threshold = 0",
                "services[0].health_check.healthy_threshold = 0: expected a number 1-",
            ),
            (
                "[services.health_check]\nkind = \"tcp\"\nunhealthy_threshold = 0",
                "services[0].health_check.unhealthy_threshold = 0: expected a number 1-",
            ),
            (
                "[services.health_check]\npath = \"/\"",
                "missing field `kind`",
            ),
            (
                "[services.load_balancer]\npolicy = \"random\"",
                "unknown variant `random`, expected `least_request` or `round_robin`",
            ),
            (
                "[services.outlier_detection]\nconsecutive_errors = 1",
                "unknown field `consecutive_errors`",
            ),
        ];
        for (tables, expected) in cases {
            let e = error(&service_with("http", tables));
            assert!(e.contains(expected), "{tables}:\n{e}\nlacks {expected}");
        }
    }

    #[test]
    fn zero_durations_are_rejected_where_meaningless() {
        let e = error(&with("[tunnel]\nping_interval = \"0s\""));
        assert!(e.contains("tunnel.ping_interval = \"0s\": expected a duration greater than zero"));
        // Draining for zero seconds is a valid choice: close at once.
        parse(&MINIMAL.replace("zone-a1\"", "zone-a1\"\ndrain_timeout = \"0s\"")).unwrap();
    }
}
