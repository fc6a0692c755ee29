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

/// A child process of the `strait` binary: stdout read line by line on demand, stderr kept in
/// a file (printed if the test panics), killed on drop so a failing test leaves nothing behind.
pub struct StraitProcess {
    pub child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr_path: std::path::PathBuf,
    label: String,
}

impl StraitProcess {
    /// Starts `strait ARGS`, its stderr going to `stderr_path` (appended to).
    pub fn spawn<I, S>(label: &str, args: I, stderr_path: &Path) -> StraitProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use tokio::io::AsyncBufReadExt;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr_path)
            .expect("stderr log file");
        let mut child = tokio::process::Command::new(strait_bin())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn strait");
        let stdout = child.stdout.take().expect("piped stdout");
        StraitProcess {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            stderr_path: stderr_path.to_owned(),
            label: label.to_owned(),
        }
    }

    /// The next stdout line; `None` once stdout is closed. Panics after `limit`.
    pub async fn line(&mut self, limit: Duration) -> Option<String> {
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Ok(line) => line.expect("read child stdout"),
            Err(_) => panic!(
                "{}: no stdout line within {limit:?}; stderr:\n{}",
                self.label,
                self.stderr()
            ),
        }
    }

    /// The next stdout line as JSON. Panics on EOF, timeout or a line that is not JSON.
    pub async fn json_line(&mut self, limit: Duration) -> serde_json::Value {
        let Some(line) = self.line(limit).await else {
            panic!("{}: stdout closed; stderr:\n{}", self.label, self.stderr());
        };
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: stdout line {line:?} is not JSON: {e}", self.label))
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit. Panics after `limit`.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for child"),
            Err(_) => panic!(
                "{}: did not exit within {limit:?}; stderr:\n{}",
                self.label,
                self.stderr()
            ),
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for StraitProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.label, self.stderr());
        }
    }
}

/// One sample from Prometheus text: `series` is the name with its labels exactly as exposed,
/// e.g. `strait_tunnel_up{peer="gw-b"}`. `None` when the series is absent.
pub fn scrape_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(s, _)| *s == series))
        .and_then(|(_, v)| v.parse().ok())
}

pub mod relay;
