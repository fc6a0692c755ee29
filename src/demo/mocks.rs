//! Mock backends for the demo and the tests: real servers on real sockets.
//!
//! - [`MockHttp`]: the reference scenario's `mocka`/`mockb`/`mockc`. Answers
//!   `-> NAME(version: ZONE, ip: ADDR)`, followed by its upstream's answer when it has one
//!   (called through its own zone's gateway). `GET /healthz` answers `ok` without calling the
//!   upstream, for active health checks of the mock itself. Faults can be injected: refuse
//!   connections, answer 503, or accept and never answer (blackhole); every one applies to
//!   `/healthz` too.
//! - [`EchoTcp`]: echoes bytes and honours half-close.
//! - [`TlsHello`]: a TLS server (its own certificate) that answers one line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A fault a mock can be told to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Close the listening socket: connects are refused.
    Refuse,
    /// Answer every request with 503.
    Unavailable,
    /// Accept connections and never answer (until the fault is cleared: then requests held
    /// on open connections are answered late and silent connections are closed).
    Blackhole,
}

impl Fault {
    /// Every fault, in the order of [`Fault::as_str`]'s names.
    pub const ALL: [Fault; 4] = [
        Fault::None,
        Fault::Refuse,
        Fault::Unavailable,
        Fault::Blackhole,
    ];

    /// `none`, `refuse`, `unavailable` or `blackhole`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Refuse => "refuse",
            Fault::Unavailable => "unavailable",
            Fault::Blackhole => "blackhole",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("unknown fault {s:?}; expected none, refuse, unavailable or blackhole")
            })
    }
}

/// Path a mock answers by itself (no upstream call), for active health checks.
pub const HEALTH_PATH: &str = "/healthz";

/// Where a mock sends its own upstream call: a gateway's http listener and a Host header.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    pub gateway: SocketAddr,
    pub host: String,
}

/// An HTTP mock service.
pub struct MockHttp {
    inner: Arc<MockInner>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct MockInner {
    name: String,
    zone: String,
    address: SocketAddr,
    upstream: Option<UpstreamCall>,
    fault: Mutex<Fault>,
    /// Woken whenever the fault changes, so black-holed connections can end.
    fault_changed: tokio::sync::Notify,
    /// Requests answered (any status), for "the backend was never reached" checks.
    requests: std::sync::atomic::AtomicU64,
}

impl MockHttp {
    /// Starts a mock listening on `address` (port 0 picks one).
    pub async fn start(
        name: &str,
        zone: &str,
        address: SocketAddr,
        upstream: Option<UpstreamCall>,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(address).await?;
        let inner = Arc::new(MockInner {
            name: name.to_owned(),
            zone: zone.to_owned(),
            address: listener.local_addr()?,
            upstream,
            fault: Mutex::new(Fault::None),
            fault_changed: tokio::sync::Notify::new(),
            requests: std::sync::atomic::AtomicU64::new(0),
        });
        let task = tokio::spawn(serve_http(listener, inner.clone()));
        Ok(Arc::new(MockHttp {
            inner,
            task: Mutex::new(Some(task)),
        }))
    }

    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn zone(&self) -> &str {
        &self.inner.zone
    }

    /// Requests this mock has received.
    pub fn requests(&self) -> u64 {
        self.inner
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn fault(&self) -> Fault {
        *self.inner.fault.lock().expect("fault lock")
    }

    /// Switches the fault. `Refuse` closes the socket; leaving it rebinds the same address.
    pub async fn set_fault(&self, fault: Fault) -> std::io::Result<()> {
        let was = std::mem::replace(&mut *self.inner.fault.lock().expect("fault lock"), fault);
        self.inner.fault_changed.notify_waiters();
        if fault == Fault::Refuse && was != Fault::Refuse {
            let task = self.task.lock().expect("task lock").take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        } else if fault != Fault::Refuse && was == Fault::Refuse {
            let listener = TcpListener::bind(self.inner.address).await?;
            let task = tokio::spawn(serve_http(listener, self.inner.clone()));
            *self.task.lock().expect("task lock") = Some(task);
        }
        Ok(())
    }
}

impl Drop for MockHttp {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().expect("task lock").take() {
            task.abort();
        }
    }
}

/// Accept loop of a mock; connections live in a `JoinSet` so aborting the loop (the `Refuse`
/// fault) also closes connections in flight, as a dead process would.
async fn serve_http(listener: TcpListener, inner: Arc<MockInner>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let inner = inner.clone();
        connections.spawn(async move {
            if inner.fault() == Fault::Blackhole {
                // Hold the connection open and silent while the fault lasts, then close it.
                inner.blackhole().await;
                return;
            }
            let service = service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(answer(req, &inner).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

impl MockInner {
    fn fault(&self) -> Fault {
        *self.fault.lock().expect("fault lock")
    }

    /// Returns once the fault is no longer [`Fault::Blackhole`].
    async fn blackhole(&self) {
        loop {
            // Created before the check, so a change in between still wakes it.
            let changed = self.fault_changed.notified();
            if self.fault() != Fault::Blackhole {
                return;
            }
            changed.await;
        }
    }
}

async fn answer(req: Request<Incoming>, inner: &MockInner) -> Response<Full<Bytes>> {
    inner
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if inner.fault() == Fault::Blackhole {
        inner.blackhole().await;
    }
    if inner.fault() == Fault::Unavailable {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} unavailable\n", inner.name),
        );
    }
    if req.uri().path() == HEALTH_PATH {
        return respond(StatusCode::OK, "ok\n".to_owned());
    }
    let mut body = format!(
        "-> {}(version: {}, ip: {})",
        inner.name,
        inner.zone,
        inner.address.ip()
    );
    let Some(upstream) = &inner.upstream else {
        return respond(StatusCode::OK, body);
    };
    match call(upstream).await {
        Ok((status, text)) if status.is_success() => {
            body.push_str(&text);
            respond(StatusCode::OK, body)
        }
        Ok((status, text)) => respond(status, format!("{body}-> upstream {status}: {text}")),
        Err(e) => respond(
            StatusCode::BAD_GATEWAY,
            format!("{body}-> upstream error: {e}"),
        ),
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// One GET through a gateway with the given Host; returns status and body.
pub async fn call(upstream: &UpstreamCall) -> anyhow::Result<(StatusCode, String)> {
    let (status, _, body) = http_get(upstream.gateway, &upstream.host, "/").await?;
    Ok((status, body))
}

/// A GET over a fresh HTTP/1.1 connection; returns status, headers and body.
pub async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, http::HeaderMap, String)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// A TCP echo server that honours half-close: after the client's EOF it finishes writing and
/// closes its side.
pub struct EchoTcp {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoTcp {
    pub async fn start(address: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        Ok(EchoTcp { address, task })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for EchoTcp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server with its own certificate: reads one line, answers `hello from NAME: LINE`.
pub struct TlsHello {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsHello {
    /// `cert_pem`/`key_pem`: the server's certificate (for the names clients will verify).
    pub async fn start(
        address: SocketAddr,
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, name) = (acceptor.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut tls = BufReader::new(tls);
                    let mut line = String::new();
                    if tls.read_line(&mut line).await.is_ok() {
                        let reply = format!("hello from {name}: {}\n", line.trim_end());
                        let _ = tls.get_mut().write_all(reply.as_bytes()).await;
                        let _ = tls.get_mut().shutdown().await;
                    }
                });
            }
        });
        Ok(TlsHello { address, task })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for TlsHello {
    fn drop(&mut self) {
        self.task.abort();
    }
}
