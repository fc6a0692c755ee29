//! `parse_client_hello` on arbitrary bytes, and the SNI route lookups on whatever server name it
//! returns (and on the raw input, so the lookups get exercised without a valid ClientHello).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strait::config::{Protocol, ServiceConfig};
use strait::proxy::route::{RouteTable, parse_istio_sni};
use strait::proxy::sni::{ClientHello, parse_client_hello};

fn svc(key: &str, protocol: Protocol, hosts: &[&str]) -> ServiceConfig {
    ServiceConfig {
        key: key.parse().unwrap(),
        protocol,
        exported: true,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        endpoints: vec![],
    }
}

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let services = [
            svc("secure.default:8443", Protocol::Tls, &["secure.example.com"]),
            svc("db.prod:5432", Protocol::Tls, &[]),
            svc("db.prod:5433", Protocol::Tls, &[]),
            svc("web.default:8080", Protocol::Http, &["www.example.com"]),
        ];
        RouteTable::new(&services, Protocol::Tls)
    })
}

fn lookups(name: &str) {
    let t = table();
    let _ = t.lookup_sni(name);
    let _ = t.lookup_authority(name);
    if let Some((port, host)) = parse_istio_sni(name) {
        assert!(name.ends_with(host));
        if let Some(key) = t.lookup_sni(name) {
            assert_eq!(key.port, port);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > strait::proxy::sni::MAX_CLIENT_HELLO {
        return;
    }
    if let Ok(ClientHello::Complete { sni: Some(name) }) = parse_client_hello(data) {
        lookups(&name);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        lookups(text);
    }
});
