//! Which service a Host header or SNI names. Pure lookups over a table built once per config,
//! so they are unit-tested and fuzzed without sockets.
//!
//! A service `name.namespace:port` answers to `name`, `name.namespace`, `name.namespace.svc`,
//! `name.namespace.svc.<cluster-domain>` and its configured `hosts`, with or without the port.
//! TLS also accepts Istio's SNI form `outbound_.<port>_.<subset>_.<host>`.

use std::collections::HashMap;

use crate::config::{Protocol, ServiceConfig, ServiceKey};

/// Host names to services, for one protocol.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    by_host: HashMap<String, Vec<ServiceKey>>,
}

impl RouteTable {
    /// Routes for every service of `protocol`.
    pub fn new<'a>(
        services: impl IntoIterator<Item = &'a ServiceConfig>,
        protocol: Protocol,
    ) -> Self {
        let mut by_host: HashMap<String, Vec<ServiceKey>> = HashMap::new();
        for svc in services.into_iter().filter(|s| s.protocol == protocol) {
            let k = &svc.key;
            let names = [
                k.name.clone(),
                format!("{}.{}", k.name, k.namespace),
                format!("{}.{}.svc", k.name, k.namespace),
            ];
            for host in names.into_iter().chain(svc.hosts.iter().cloned()) {
                by_host.entry(host).or_default().push(k.clone());
            }
        }
        RouteTable { by_host }
    }

    /// The service for an HTTP `Host` / `:authority` value (`host` or `host:port`).
    pub fn lookup_authority(&self, authority: &str) -> Option<&ServiceKey> {
        let (host, port) = split_port(authority);
        self.lookup(host, port)
    }

    /// The service for a TLS SNI, plain or in Istio's `outbound_.<port>_.<subset>_.<host>` form.
    pub fn lookup_sni(&self, sni: &str) -> Option<&ServiceKey> {
        match parse_istio_sni(sni) {
            Some((port, host)) => self.lookup(host, Some(port)),
            None => self.lookup(sni, None),
        }
    }

    /// Looks `host` up, trying the cluster-local FQDN reduced to `name.namespace.svc` too.
    /// Without a port, a host shared by several services matches none (ambiguous).
    fn lookup(&self, host: &str, port: Option<u16>) -> Option<&ServiceKey> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let candidates = self.by_host.get(&host).or_else(|| {
            let i = host.find(".svc.")?;
            self.by_host.get(&host[..i + 4])
        })?;
        match port {
            Some(port) => candidates.iter().find(|k| k.port == port),
            None if candidates.len() == 1 => candidates.first(),
            None => None,
        }
    }
}

/// Splits `host:port`; IPv6 literals keep their brackets off. A bad port means "no port".
fn split_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

/// `outbound_.8080_.v1_.mockb.default.svc.cluster.local` → (8080, "mockb.default.svc.cluster.local").
pub fn parse_istio_sni(sni: &str) -> Option<(u16, &str)> {
    let rest = sni.strip_prefix("outbound_.")?;
    let (port, rest) = rest.split_once("_.")?;
    let (_subset, host) = rest.split_once("_.")?;
    Some((port.parse().ok()?, host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn svc(key: &str, protocol: Protocol, hosts: &[&str]) -> ServiceConfig {
        ServiceConfig {
            key: key.parse().unwrap(),
            protocol,
            exported: true,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            endpoints: vec![],
            outlier_detection: Default::default(),
            load_balancer: Default::default(),
            retry: Default::default(),
            health_check: None,
        }
    }

    #[test]
    fn hosts_route_in_every_form() {
        let services = [
            svc("web.default:8080", Protocol::Http, &["www.example.com"]),
            svc("api.prod:80", Protocol::Http, &[]),
            svc("api.prod:81", Protocol::Http, &[]),
            svc("secure.default:8443", Protocol::Tls, &[]),
        ];
        let t = RouteTable::new(&services, Protocol::Http);
        let web: ServiceKey = "web.default:8080".parse().unwrap();
        for host in [
            "web",
            "web:8080",
            "web.default",
            "WEB.default.svc",
            "web.default.svc.cluster.local:8080",
            "www.example.com",
        ] {
            assert_eq!(t.lookup_authority(host), Some(&web), "{host}");
        }
        assert_eq!(t.lookup_authority("web:9999"), None);
        assert_eq!(
            t.lookup_authority("api.prod"),
            None,
            "ambiguous without a port"
        );
        assert_eq!(t.lookup_authority("api.prod:81").map(|k| k.port), Some(81));
        assert_eq!(
            t.lookup_authority("secure.default"),
            None,
            "tls services are not http routes"
        );
        assert_eq!(t.lookup_authority("unknown.example"), None);
    }

    #[test]
    fn istio_sni_form() {
        let services = [svc(
            "secure.default:8443",
            Protocol::Tls,
            &["secure.example.com"],
        )];
        let t = RouteTable::new(&services, Protocol::Tls);
        let key: ServiceKey = "secure.default:8443".parse().unwrap();
        assert_eq!(
            t.lookup_sni("outbound_.8443_._.secure.default.svc.cluster.local"),
            Some(&key)
        );
        assert_eq!(
            t.lookup_sni("outbound_.8443_.v1_.secure.default.svc.cluster.local"),
            Some(&key)
        );
        assert_eq!(
            t.lookup_sni("outbound_.9999_._.secure.default.svc.cluster.local"),
            None
        );
        assert_eq!(t.lookup_sni("secure.example.com"), Some(&key));
        assert_eq!(parse_istio_sni("outbound_.x_._.h"), None);
    }
}
