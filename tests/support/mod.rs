//! Shared test support: the demo pair started in process, readiness polling, metric reads,
//! and peer-side TLS clients with certificates made in the test.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use strait::certs::{Ca, IssueOptions, Issued};
use strait::demo::Demo;
use strait::demo::topology::TRUST_DOMAIN;
use tokio::net::TcpStream;

/// The demo pair (gw-a with listeners, gw-b with backends) in a temp folder.
pub struct Pair {
    pub demo: Demo,
    pub dir: tempfile::TempDir,
}

impl Pair {
    pub async fn start() -> Pair {
        strait::tls::install_default_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let demo = Demo::start(dir.path()).await.expect("demo pair starts");
        demo.wait_for_tunnels(Duration::from_secs(10))
            .await
            .expect("tunnels up");
        Pair { demo, dir }
    }

    pub fn listener(&self, name: &str) -> SocketAddr {
        self.demo.topology.get("gw-a").listener_address(name)
    }

    pub fn tunnel(&self, gateway: &str) -> SocketAddr {
        self.demo.topology.get(gateway).tunnel
    }

    pub fn admin(&self, gateway: &str) -> SocketAddr {
        self.demo.topology.get(gateway).admin
    }

    pub fn metrics(&self, gateway: &str) -> &strait::metrics::Metrics {
        self.demo.gateway(gateway).1
    }

    pub fn ca(&self) -> &Ca {
        &self.demo.topology.ca
    }

    pub fn ca_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// Polls `check` until it returns true or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads a counter or gauge from a registry by name and exact labels (0 when absent).
pub fn metric(metrics: &strait::metrics::Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    for family in metrics.registry().gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let pairs = m.get_label();
            let matches = labels.len() == pairs.len()
                && labels
                    .iter()
                    .all(|(k, v)| pairs.iter().any(|p| p.name() == *k && p.value() == *v));
            if matches {
                return match family.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    _ => m.get_gauge().get_value(),
                };
            }
        }
    }
    0.0
}

/// A certificate for `spiffe://<TRUST_DOMAIN>/gateway/<name>` from `ca`.
pub fn gateway_cert(ca: &Ca, name: &str, opts: &IssueOptions) -> Issued {
    ca.issue(
        name,
        &[format!("spiffe://{TRUST_DOMAIN}/gateway/{name}")],
        &[name.to_owned()],
        opts,
    )
    .expect("issue cert")
}

/// A TLS 1.3 client config presenting `cert` (if any) and trusting `ca_pem` without name
/// checks beyond the chain (the test plays a peer gateway).
pub fn peer_client(ca_path: &Path, cert: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let roots = Arc::new(strait::tls::load_roots(ca_path).expect("roots"));
    let builder = rustls::ClientConfig::builder_with_provider(strait::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots);
    let mut config = match cert {
        Some(c) => {
            let chain = CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("cert pem");
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key pem");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Connects to a tunnel listener as a peer would (server name: the gateway's DNS SAN).
pub async fn tls_connect(
    addr: SocketAddr,
    server: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server.to_owned()).expect("server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Opens an HTTP/2 connection over an established tunnel TLS stream, as a peer would.
pub async fn h2_over(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> h2::client::SendRequest<bytes::Bytes> {
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// The path of the `strait` binary built for these tests.
pub fn strait_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strait")
}

/// A minimal pair for one raw TCP service: a `tcp` listener on gw-x, the endpoint behind gw-y.
/// Each pair gets its own loopback addresses from `next_ip_block`, so tests run in parallel.
pub struct TcpPair {
    pub listen: SocketAddr,
    pub gateways: Vec<strait::app::Bound>,
    pub metrics: Vec<strait::metrics::Metrics>,
    pub dir: tempfile::TempDir,
}

impl TcpPair {
    pub async fn start(upstream: SocketAddr) -> TcpPair {
        Self::start_with(upstream, "").await
    }

    /// `tunnel_extra`: extra `[tunnel]` TOML lines for both gateways.
    pub async fn start_with(upstream: SocketAddr, tunnel_extra: &str) -> TcpPair {
        strait::tls::install_default_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let block = next_ip_block();
        let mut topo = strait::demo::topology::Topology::new(dir.path()).expect("topology");
        let x = topo
            .gateway(
                "gw-x",
                "region-x",
                "zone-x1",
                std::net::Ipv4Addr::new(127, 0, block, 1),
            )
            .unwrap();
        x.peers.push("gw-y".into());
        x.tunnel_extra = tunnel_extra.to_owned();
        x.service("svc.default:7000", "tcp", true, vec![]);
        let listen = x.listener("svc", "tcp", Some("svc.default:7000")).unwrap();
        let y = topo
            .gateway(
                "gw-y",
                "region-y",
                "zone-y1",
                std::net::Ipv4Addr::new(127, 0, block, 2),
            )
            .unwrap();
        y.peers.push("gw-x".into());
        y.tunnel_extra = tunnel_extra.to_owned();
        y.service(
            "svc.default:7000",
            "tcp",
            true,
            vec![(upstream, "zone-y1".into())],
        );
        topo.write_configs().unwrap();
        let (mut gateways, mut metrics) = (Vec::new(), Vec::new());
        for name in ["gw-y", "gw-x"] {
            let config = topo.load(name).unwrap();
            let sockets = topo.take_sockets(name);
            let m = strait::metrics::Metrics::new();
            gateways.push(
                strait::app::bind_prebound(config, m.clone(), sockets)
                    .await
                    .unwrap(),
            );
            metrics.push(m);
        }
        let up = eventually(Duration::from_secs(10), || async {
            gateways
                .iter()
                .all(|b| b.gateway.peers.iter().all(|p| p.is_up()))
        })
        .await;
        assert!(up, "tunnel gw-x <-> gw-y up");
        TcpPair {
            listen,
            gateways,
            metrics,
            dir,
        }
    }
}

/// A distinct 127.0.N.0/24 block per call within a test process (100..=199).
pub fn next_ip_block() -> u8 {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(100);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
