//! `strait demo`: the reference scenario of DESIGN §1 ([`scenario`]) on one machine. Two
//! regions with two zones each, every zone on its own loopback block, every gateway a real
//! gateway with real mTLS tunnels and certificates made on the fly, and real backends. The demo
//! sends traffic through every listener kind, then walks the scenario's steps (healthy, mockb
//! refusing connections in one zone, mockb down in a whole region, recovery and failback),
//! checks every answer and prints what happened. `--serve` keeps it running instead, with a
//! small control API (`strait demo fault ...`) to inject and clear the same faults.
//!
//! [`Demo`] is the smaller pair the integration tests use: gw-a (region-a) with listeners and
//! no local endpoints, gw-b (region-b) with the backends.

pub mod mocks;
pub mod scenario;
pub mod topology;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::app::Bound;
use crate::certs::IssueOptions;
use crate::metrics::Metrics;
use mocks::{EchoTcp, Fault, MockHttp, TlsHello};
use scenario::Scenario;
use topology::Topology;

/// Arguments of `strait demo`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    /// Keep everything running; print the addresses as one JSON line on stdout.
    #[arg(long)]
    pub serve: bool,
    #[command(subcommand)]
    pub command: Option<DemoCommand>,
}

/// Subcommands of `strait demo`.
#[derive(Debug, clap::Subcommand)]
pub enum DemoCommand {
    /// Inject or clear a fault in a running `strait demo --serve`.
    Fault(FaultArgs),
}

/// Arguments of `strait demo fault`.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// The control address `demo --serve` printed (`control` in its JSON line).
    #[arg(long)]
    pub control: String,
    /// The mock: mocka, mockb or mockc.
    #[arg(long)]
    pub service: String,
    /// A zone (e.g. ap-northeast-1a), or a region for every zone in it.
    #[arg(long)]
    pub zone: String,
    /// refuse: connections refused; unavailable: answers 503; blackhole: accepts and never
    /// answers; none: clears the fault.
    #[arg(long, value_parser = ["none", "refuse", "unavailable", "blackhole"])]
    pub kind: String,
}

/// The SNI the demo's TLS backend has a certificate for.
pub const TLS_HOST: &str = "secure.example.com";

/// The demo pair the integration tests use: gateways and backends.
pub struct Demo {
    pub topology: Topology,
    pub gateways: Vec<(Bound, Metrics)>,
    pub web: Arc<MockHttp>,
    pub internal: Arc<MockHttp>,
    pub tls: TlsHello,
    pub echo: EchoTcp,
}

/// Runs `strait demo`, `strait demo --serve` or `strait demo fault`.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(DemoCommand::Fault(fault)) = args.command {
        return fault_command(fault).await;
    }
    crate::tls::install_default_provider();
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("strait-demo-").tempdir()?;
    let scenario = Scenario::start(dir.path(), scenario::DEMO_BLOCK).await?;
    scenario.wait_ready(Duration::from_secs(10)).await?;
    if args.serve {
        let dir = dir.keep();
        return serve(scenario, &dir).await;
    }
    let (sent, failed) = scenario.walk().await;
    scenario.shutdown().await;
    println!(
        "\nthe demo took {:.1} s (gateways, certificates and backends included)",
        started.elapsed().as_secs_f64()
    );
    println!("demo: {sent} requests, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--serve`: the JSON line first, the control API, then wait for SIGINT or SIGTERM.
async fn serve(scenario: Scenario, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let control = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let control_addr = control.local_addr()?;
    let control_task = tokio::spawn(serve_control(control, scenario.mocks.clone()));
    println!("{}", scenario.serve_json(control_addr));
    let http = scenario.http(scenario::ENTRY);
    let (a, b) = (scenario::ZONES[0].zone, scenario::ZONES[1].zone);
    let region = scenario::ZONES[0].region;
    eprintln!("demo running; files in {}; Ctrl-C stops", dir.display());
    eprintln!("  a request:        curl -H 'Host: mocka.default' http://{http}/");
    eprintln!("  faults (--kind refuse | unavailable | blackhole | none):");
    for (what, zone, kind) in [
        ("mockb down in 1a:", a, "refuse"),
        ("mockb down in 1b:", b, "refuse"),
        ("mockb down in region:", region, "refuse"),
        ("clear:", region, "none"),
    ] {
        eprintln!(
            "    {what:<22} strait demo fault --control {control_addr} --service mockb --zone {zone} --kind {kind}"
        );
    }
    eprintln!("  faults now:       curl http://{control_addr}/faults");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    control_task.abort();
    scenario.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The control API of `--serve`: `GET /faults` lists the mocks and their faults;
/// `POST /fault?service=S&zone=Z&kind=K` sets one (zone may name a region).
async fn serve_control(listener: TcpListener, mocks: Vec<Arc<MockHttp>>) {
    let mocks = Arc::new(mocks);
    while let Ok((tcp, _)) = listener.accept().await {
        let mocks = mocks.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let mocks = mocks.clone();
                async move { Ok::<_, std::convert::Infallible>(control(req, &mocks).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn control<B>(req: Request<B>, mocks: &[Arc<MockHttp>]) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: serde_json::Value| {
        let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    };
    let list = |mocks: &[Arc<MockHttp>]| -> serde_json::Value {
        mocks
            .iter()
            .map(|m| json!({ "service": m.name(), "zone": m.zone(), "address": m.address(), "fault": m.fault().as_str() }))
            .collect()
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/faults" | "/") => reply(StatusCode::OK, list(mocks)),
        (&Method::POST, "/fault") => {
            let query = req.uri().query().unwrap_or_default();
            let param = |name: &str| {
                query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_owned())
            };
            let (Some(service), Some(zone), Some(kind)) =
                (param("service"), param("zone"), param("kind"))
            else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "expected ?service=NAME&zone=ZONE_OR_REGION&kind=none|refuse|unavailable|blackhole" }),
                );
            };
            let fault: Fault = match kind.parse() {
                Ok(f) => f,
                Err(e) => return reply(StatusCode::BAD_REQUEST, json!({ "error": e })),
            };
            match scenario::set_fault(mocks, &service, &zone, fault).await {
                Ok(changed) => {
                    let changed: Vec<Arc<MockHttp>> = changed.into_iter().cloned().collect();
                    reply(
                        StatusCode::OK,
                        json!({ "fault": fault.as_str(), "changed": list(&changed) }),
                    )
                }
                Err(e) => reply(StatusCode::NOT_FOUND, json!({ "error": format!("{e:#}") })),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({ "error": "GET /faults or POST /fault?service=..&zone=..&kind=.." }),
        ),
    }
}

/// `strait demo fault`: asks a running `demo --serve` to set a fault.
async fn fault_command(args: FaultArgs) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = args.control.parse().with_context(|| {
        format!(
            "--control {:?} is not an address like 127.0.0.1:PORT",
            args.control
        )
    })?;
    let path = format!(
        "/fault?service={}&zone={}&kind={}",
        args.service, args.zone, args.kind
    );
    let (status, body) = control_request(addr, Method::POST, &path)
        .await
        .with_context(|| {
            format!(
                "cannot reach the demo's control address {addr}; is `strait demo --serve` running?"
            )
        })?;
    let value: serde_json::Value = serde_json::from_str(&body).unwrap_or(json!({ "error": body }));
    if status != StatusCode::OK {
        anyhow::bail!(
            "the demo refused: {}",
            value["error"].as_str().unwrap_or(body.trim_end())
        );
    }
    for m in value["changed"].as_array().into_iter().flatten() {
        println!(
            "{} in {} ({}): {}",
            m["service"].as_str().unwrap_or("?"),
            m["zone"].as_str().unwrap_or("?"),
            m["address"].as_str().unwrap_or("?"),
            m["fault"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One request to the control API; returns status and body.
pub async fn control_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
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
