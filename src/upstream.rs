//! Choosing and connecting to where a proxied connection goes: the service's local endpoints
//! first, then peer gateways through the tunnel. A connect failure (refused, reset, timeout, a
//! tunnel stream the peer refused) is retried at once on the next candidate, so a dead endpoint
//! costs a connection nothing but a few milliseconds.
//!
//! This is the seam the locality-tier balancer and outlier detection plug into: candidates are
//! produced by [`ServicePool::candidates`], and every attempt's result is reported back to it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{EndpointConfig, ServiceConfig, ServiceKey};
use crate::metrics::Metrics;
use crate::tunnel::client::{OpenError, Peers};
use crate::tunnel::stream::H2Stream;
use crate::tunnel::wire::Refusal;

/// Where a connection came from, which decides where it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client in this cluster: local endpoints, then peers.
    Local,
    /// A stream from a peer gateway: local endpoints only (no transit, no loops).
    Peer,
}

/// A connected upstream byte stream: a TCP connection to an endpoint or a tunnel stream.
pub enum UpstreamIo {
    Tcp(TcpStream),
    Tunnel(H2Stream),
}

/// What a connection reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local endpoint.
    Endpoint { address: SocketAddr, zone: String },
    /// A peer gateway, and the zone it reported for its endpoint.
    Peer { peer: String, zone: Option<String> },
}

/// A successful connect.
pub struct Connected {
    pub io: UpstreamIo,
    pub target: Target,
    /// Attempts made, including the successful one.
    pub attempts: u32,
}

/// Why no upstream could be connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("service {0} has no endpoint to try here or at any reachable peer")]
    NoEndpoint(ServiceKey),
    #[error("every upstream of {service} failed ({attempts} attempts); last: {last}")]
    AllFailed {
        service: ServiceKey,
        attempts: u32,
        last: String,
    },
}

impl ConnectError {
    /// How a tunnel stream that ended here is refused.
    pub fn refusal(&self) -> Refusal {
        match self {
            ConnectError::NoEndpoint(_) => Refusal::NoHealthyEndpoint,
            ConnectError::AllFailed { .. } => Refusal::UpstreamFailed,
        }
    }

    /// The `outcome` metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            ConnectError::NoEndpoint(_) => "no_endpoint",
            ConnectError::AllFailed { .. } => "upstream_failed",
        }
    }
}

/// One static endpoint and its live counters.
#[derive(Debug)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub zone: String,
    pub weight: u32,
    /// Connections opened successfully.
    pub connects: AtomicU64,
    /// Connect attempts that failed.
    pub connect_failures: AtomicU64,
}

/// The runtime view of one service.
#[derive(Debug)]
pub struct ServicePool {
    pub config: ServiceConfig,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Round-robin cursor over endpoints.
    next: AtomicUsize,
}

impl ServicePool {
    pub fn new(config: ServiceConfig) -> Self {
        let endpoints = config
            .endpoints
            .iter()
            .map(Endpoint::new)
            .map(Arc::new)
            .collect();
        ServicePool {
            config,
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    pub fn key(&self) -> &ServiceKey {
        &self.config.key
    }

    /// Local endpoints in the order to try them: round robin, then the rest, each once.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| &self.endpoints[(start + i) % n])
    }
}

impl Endpoint {
    fn new(config: &EndpointConfig) -> Self {
        Endpoint {
            address: config.address,
            zone: config.zone.clone(),
            weight: config.weight,
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
        }
    }
}

/// Connects proxied connections for every service of the gateway.
pub struct Upstreams {
    peers: Arc<Peers>,
    metrics: Metrics,
}

impl Upstreams {
    pub fn new(peers: Arc<Peers>, metrics: Metrics) -> Self {
        Upstreams { peers, metrics }
    }

    /// Connects to the first candidate that answers: local endpoints, then (for local
    /// traffic) peers in configured order.
    pub async fn connect(
        &self,
        svc: &ServicePool,
        origin: Origin,
    ) -> Result<Connected, ConnectError> {
        let mut attempts = 0u32;
        let mut last: Option<String> = None;
        for ep in svc.candidates() {
            attempts += 1;
            match connect_endpoint(ep.address, svc.config.connect_timeout).await {
                Ok(tcp) => {
                    ep.connects.fetch_add(1, Ordering::Relaxed);
                    let target = Target::Endpoint {
                        address: ep.address,
                        zone: ep.zone.clone(),
                    };
                    return Ok(Connected {
                        io: UpstreamIo::Tcp(tcp),
                        target,
                        attempts,
                    });
                }
                Err(e) => {
                    ep.connect_failures.fetch_add(1, Ordering::Relaxed);
                    self.retrying(svc, "endpoint");
                    tracing::debug!(service = %svc.key(), endpoint = %ep.address, error = %e, "endpoint connect failed, trying the next");
                    last = Some(format!("endpoint {}: {e}", ep.address));
                }
            }
        }
        if origin == Origin::Local {
            for peer in self.peers.iter() {
                attempts += 1;
                match peer.open(svc.key()).await {
                    Ok((stream, zone)) => {
                        let target = Target::Peer {
                            peer: peer.name().to_owned(),
                            zone,
                        };
                        return Ok(Connected {
                            io: UpstreamIo::Tunnel(stream),
                            target,
                            attempts,
                        });
                    }
                    Err(OpenError::Down) => attempts -= 1,
                    Err(e @ OpenError::Refused(Refusal::UnknownService | Refusal::NotExported)) => {
                        tracing::debug!(service = %svc.key(), peer = peer.name(), error = %e, "peer does not serve the service");
                        attempts -= 1;
                    }
                    Err(e) => {
                        self.retrying(svc, "peer");
                        tracing::debug!(service = %svc.key(), peer = peer.name(), error = %e, "peer stream failed, trying the next");
                        last = Some(format!("peer {}: {e}", peer.name()));
                    }
                }
            }
        }
        match last {
            None => Err(ConnectError::NoEndpoint(svc.key().clone())),
            Some(last) => Err(ConnectError::AllFailed {
                service: svc.key().clone(),
                attempts,
                last,
            }),
        }
    }

    fn retrying(&self, svc: &ServicePool, target: &str) {
        self.metrics
            .connect_retries_total
            .with_label_values(&[&svc.key().to_string(), target])
            .inc();
    }
}

/// One TCP connect under a timeout, with Nagle off (the proxy forwards what it gets at once).
async fn connect_endpoint(address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )
        })??;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

// === impl UpstreamIo ===

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tunnel(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tunnel(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tunnel(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tunnel(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
