//! Criterion benchmarks of the per-connection hot paths that are Strait's own code: routing a
//! Host or SNI, reading a ClientHello, the tier arithmetic, and a balancer pick.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use strait::balancer::Balancer;
use strait::balancer::tiers::{tier_health, tier_loads};
use strait::config::{EndpointConfig, Protocol, ServiceConfig};
use strait::proxy::route::RouteTable;
use strait::proxy::sni::parse_client_hello;

fn service(i: usize, protocol: Protocol) -> ServiceConfig {
    ServiceConfig {
        key: format!("svc{i}.default:8080").parse().expect("key"),
        protocol,
        exported: true,
        hosts: vec![format!("svc{i}.example.com")],
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        endpoints: (0..4)
            .map(|e| EndpointConfig {
                address: format!("127.0.0.{}:80", e + 1).parse().expect("addr"),
                zone: if e % 2 == 0 { "z1".into() } else { "z2".into() },
                weight: 1,
            })
            .collect(),
        outlier_detection: Default::default(),
        load_balancer: Default::default(),
        retry: Default::default(),
        health_check: None,
    }
}

fn client_hello(name: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(strait::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name.to_owned().try_into().expect("name"))
            .expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("hello");
    out
}

fn routing(c: &mut Criterion) {
    let services: Vec<_> = (0..200).map(|i| service(i, Protocol::Http)).collect();
    let table = RouteTable::new(&services, Protocol::Http);
    c.bench_function("route/authority_fqdn_200_services", |b| {
        b.iter(|| table.lookup_authority(black_box("svc137.default.svc.cluster.local:8080")))
    });
    let tls: Vec<_> = (0..200).map(|i| service(i, Protocol::Tls)).collect();
    let table = RouteTable::new(&tls, Protocol::Tls);
    c.bench_function("route/sni_istio_form", |b| {
        b.iter(|| {
            table.lookup_sni(black_box(
                "outbound_.8080_._.svc42.default.svc.cluster.local",
            ))
        })
    });
}

fn sni(c: &mut Criterion) {
    let hello = client_hello("svc42.example.com");
    c.bench_function("sni/parse_rustls_client_hello", |b| {
        b.iter(|| parse_client_hello(black_box(&hello)))
    });
}

fn tiers(c: &mut Criterion) {
    c.bench_function("tiers/health_and_loads_4_tiers", |b| {
        b.iter(|| {
            let health = [
                tier_health(black_box(3), 5, 140),
                tier_health(black_box(5), 5, 140),
                tier_health(black_box(2), 4, 140),
                tier_health(black_box(1), 1, 140),
            ];
            tier_loads(&health)
        })
    });
}

fn pick(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let health = Arc::new(tokio::sync::watch::channel(0u64).0);
    let balancer = Balancer::new(
        service(1, Protocol::Http),
        "z1",
        &[],
        strait::metrics::Metrics::new(),
        health,
    );
    c.bench_function("balancer/pick_least_request", |b| {
        b.iter(|| balancer.pick(black_box(&[]), None, false))
    });
}

criterion_group!(benches, routing, sni, tiers, pick);
criterion_main!(benches);
