//! `strait demo`: two regions on one machine. Every gateway is a real gateway with real mTLS
//! tunnels on its own loopback address, certificates are made on the fly, and real backends
//! answer behind the peer region. The demo sends traffic through all three listener kinds,
//! checks every answer, and prints what happened; `--serve` keeps it all running instead.

pub mod mocks;
pub mod topology;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::app::Bound;
use crate::certs::IssueOptions;
use crate::metrics::Metrics;
use mocks::{EchoTcp, MockHttp, TlsHello};
use topology::Topology;

/// Arguments of `strait demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep everything running; print the addresses as one JSON line on stdout.
    #[arg(long)]
    pub serve: bool,
}

/// The SNI the demo's TLS backend has a certificate for.
pub const TLS_HOST: &str = "secure.example.com";

/// The running demo: gateways and backends.
pub struct Demo {
    pub topology: Topology,
    pub gateways: Vec<(Bound, Metrics)>,
    pub web: Arc<MockHttp>,
    pub internal: Arc<MockHttp>,
    pub tls: TlsHello,
    pub echo: EchoTcp,
}

/// Tally of the checks the demo made.
#[derive(Debug, Default)]
struct Tally {
    sent: u32,
    failed: u32,
}

impl Tally {
    fn record(&mut self, ok: bool, what: &str) {
        self.sent += 1;
        if !ok {
            self.failed += 1;
            println!("  FAILED: {what}");
        }
    }
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::tls::install_default_provider();
    let dir = tempfile::Builder::new().prefix("strait-demo-").tempdir()?;
    let demo = Demo::start(dir.path()).await?;
    demo.wait_for_tunnels(Duration::from_secs(10)).await?;
    if args.serve {
        let dir = dir.keep();
        println!("{}", demo.serve_json(&dir));
        eprintln!("demo running; files in {}; Ctrl-C stops", dir.display());
        tokio::signal::ctrl_c().await?;
        demo.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    let tally = demo.exercise().await;
    demo.shutdown().await;
    println!("demo: {} requests, {} failed", tally.sent, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl Demo {
    /// Builds the pair: gw-a (region-a) with listeners and no local endpoints, gw-b
    /// (region-b) with the backends.
    pub async fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut topo = Topology::new(dir)?;
        let a_ip = Ipv4Addr::new(127, 0, 10, 1);
        let b_ip = Ipv4Addr::new(127, 0, 20, 1);

        let web = MockHttp::start(
            "web",
            "zone-b1",
            SocketAddr::from(([127, 0, 20, 11], 0)),
            None,
        )
        .await?;
        let internal = MockHttp::start(
            "internal",
            "zone-b1",
            SocketAddr::from(([127, 0, 20, 14], 0)),
            None,
        )
        .await?;
        let echo = EchoTcp::start(SocketAddr::from(([127, 0, 20, 13], 0))).await?;
        let tls_cert = topo.ca.issue(
            TLS_HOST,
            &[],
            &[TLS_HOST.to_owned()],
            &IssueOptions::default(),
        )?;
        let tls = TlsHello::start(
            SocketAddr::from(([127, 0, 20, 12], 0)),
            "secure",
            &tls_cert.cert_pem,
            &tls_cert.key_pem,
        )
        .await?;

        let zone_b = || "zone-b1".to_owned();
        let services = [
            ("web.default:8080", "http", true, web.address()),
            ("internal.default:8081", "http", false, internal.address()),
            ("secure.default:8443", "tls", true, tls.address()),
            ("echo.default:9000", "tcp", true, echo.address()),
        ];
        let a = topo.gateway("gw-a", "region-a", "zone-a1", a_ip)?;
        a.peers.push("gw-b".into());
        for (key, protocol, exported, _) in services {
            let svc = a.service(key, protocol, exported, vec![]);
            if protocol == "tls" {
                svc.hosts.push(TLS_HOST.into());
            }
        }
        a.listener("http", "http", None)?;
        a.listener("tls", "tls", None)?;
        a.listener("echo", "tcp", Some("echo.default:9000"))?;

        let b = topo.gateway("gw-b", "region-b", "zone-b1", b_ip)?;
        b.peers.push("gw-a".into());
        for (key, protocol, exported, endpoint) in services {
            let svc = b.service(key, protocol, exported, vec![(endpoint, zone_b())]);
            if protocol == "tls" {
                svc.hosts.push(TLS_HOST.into());
            }
        }
        b.listener("http", "http", None)?;

        topo.write_configs()?;
        let mut gateways = Vec::new();
        for name in ["gw-a", "gw-b"] {
            let config = topo.load(name)?;
            let metrics = Metrics::new();
            let sockets = topo.take_sockets(name);
            let bound = crate::app::bind_prebound(config, metrics.clone(), sockets).await?;
            gateways.push((bound, metrics));
        }
        Ok(Demo {
            topology: topo,
            gateways,
            web,
            internal,
            tls,
            echo,
        })
    }

    /// A gateway by name, with its metrics.
    pub fn gateway(&self, name: &str) -> (&Bound, &Metrics) {
        let (b, m) = self
            .gateways
            .iter()
            .find(|(b, _)| b.addresses.name == name)
            .expect("gateway in demo");
        (b, m)
    }

    /// Waits until every gateway's tunnels to its peers are up.
    pub async fn wait_for_tunnels(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let all_up = self
                .gateways
                .iter()
                .all(|(b, _)| b.gateway.peers.iter().all(|p| p.is_up()));
            if all_up {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "tunnels did not come up within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The `--serve` line: every gateway's addresses and the CA folder.
    pub fn serve_json(&self, dir: &std::path::Path) -> serde_json::Value {
        let gateways: Vec<_> = self.gateways.iter().map(|(b, _)| &b.addresses).collect();
        json!({
            "gateways": gateways,
            "ca_dir": dir,
            "configs": self.topology.gateways.iter().map(|g| self.topology.config_path(&g.name)).collect::<Vec<_>>(),
            "tls_host": TLS_HOST,
        })
    }

    /// Sends traffic through gw-a in every listener kind and checks each answer.
    async fn exercise(&self) -> Tally {
        let mut tally = Tally::default();
        let a = self.topology.get("gw-a");
        let b = self.topology.get("gw-b");
        println!("strait demo: two regions on loopback, mTLS tunnel between them");
        for g in [a, b] {
            println!(
                "  {:<5} {}/{:<8} tunnel {:<18} admin {}",
                g.name,
                g.region,
                g.zone,
                g.tunnel.to_string(),
                g.admin
            );
        }
        println!(
            "tunnel gw-a <-> gw-b up (TLS 1.3, client certificates both ways, SPIFFE identities)"
        );

        let http = a.listener_address("http");
        let expected = format!("-> web(version: zone-b1, ip: {})", self.web.address().ip());
        let mut sample = String::new();
        let mut ok = 0;
        for _ in 0..20 {
            let res = mocks::http_get(http, "web.default", "/").await;
            let good = matches!(&res, Ok((s, h, body)) if s.is_success() && *body == expected
                && h.get("strait-served-by").is_some_and(|v| v == "gw-b"));
            if let Ok((_, _, body)) = &res {
                sample.clone_from(body);
            }
            ok += u32::from(good);
            tally.record(good, &format!("http web.default: {res:?}"));
        }
        println!(
            "http  web.default      20 requests via gw-a -> tunnel -> gw-b: {ok} ok   {sample}"
        );

        let h2c = h2c_get(http, "web.default").await;
        let good = matches!(&h2c, Ok(body) if *body == expected);
        tally.record(good, &format!("h2c web.default: {h2c:?}"));
        println!(
            "h2c   web.default       1 request  (HTTP/2 prior knowledge):      {}",
            if good { "ok" } else { "FAILED" }
        );

        let tls = a.listener_address("tls");
        let mut ok = 0;
        for i in 0..5 {
            let res = tls_hello(tls, &self.topology.dir.join("ca.pem"), &format!("ping {i}")).await;
            let good = matches!(&res, Ok(line) if *line == format!("hello from secure: ping {i}"));
            ok += u32::from(good);
            tally.record(good, &format!("tls {TLS_HOST}: {res:?}"));
        }
        println!(
            "tls   {TLS_HOST}  5 connections, SNI passthrough, server cert verified end to end: {ok} ok"
        );

        let echo = a.listener_address("echo");
        let mut ok = 0;
        for i in 0..5u8 {
            let payload: Vec<u8> = (0..65536u32)
                .map(|n| (n as u8).wrapping_mul(i + 1))
                .collect();
            let res = echo_roundtrip(echo, &payload).await;
            let good = matches!(&res, Ok(back) if *back == payload);
            ok += u32::from(good);
            tally.record(good, "tcp echo round trip");
        }
        println!("tcp   echo.default      5 connections x 64 KiB echoed with half-close: {ok} ok");

        let res = mocks::http_get(http, "internal.default", "/").await;
        let good = matches!(&res, Ok((s, _, _)) if *s == http::StatusCode::SERVICE_UNAVAILABLE)
            && self.internal.requests() == 0;
        tally.record(good, &format!("internal.default must be refused: {res:?}"));
        println!(
            "policy internal.default (not exported by gw-b): gw-a answers {}, backend saw {} requests",
            res.as_ref()
                .map(|r| r.0.to_string())
                .unwrap_or_else(|e| e.to_string()),
            self.internal.requests()
        );

        let metrics = &self.gateways[0].1;
        let streams = metrics
            .tunnel_streams_total
            .with_label_values(&["gw-b", "outbound", "connected"])
            .get();
        let advertised = metrics
            .remote_healthy_endpoints
            .with_label_values(&["gw-b", "web.default:8080"])
            .get();
        println!(
            "metrics gw-a: strait_tunnel_streams_total{{peer=\"gw-b\",outcome=\"connected\"}} {streams}, \
             strait_remote_healthy_endpoints{{peer=\"gw-b\",service=\"web.default:8080\"}} {advertised}"
        );
        tally
    }

    /// Drains every gateway.
    pub async fn shutdown(self) {
        for (bound, _) in self.gateways {
            bound.shutdown().await;
        }
    }
}

/// One HTTP/2 (prior knowledge, h2c) GET.
pub async fn h2c_get(addr: SocketAddr, host: &str) -> anyhow::Result<String> {
    use http_body_util::BodyExt;
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await?;
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{host}/"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Connects with TLS (SNI [`TLS_HOST`], verified against `ca`), sends `line`, returns the reply.
pub async fn tls_hello(
    addr: SocketAddr,
    ca: &std::path::Path,
    line: &str,
) -> anyhow::Result<String> {
    let roots = crate::tls::load_roots(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(TLS_HOST)?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .context("TLS handshake through the gateway")?;
    tls.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(tls).read_line(&mut reply).await?;
    Ok(reply.trim_end().to_owned())
}

/// Writes `payload`, half-closes, reads everything back.
pub async fn echo_roundtrip(addr: SocketAddr, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut r, mut w) = tcp.into_split();
    let payload = payload.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await?;
        w.shutdown().await
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await?;
    writer.await??;
    Ok(back)
}
