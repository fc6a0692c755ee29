//! Connecting a proxied connection or request to a host the balancer picks, with connect
//! failures retried at once on the next pick. Refused, reset, timed out or TLS-failed before
//! the upstream accepted a byte — and a tunnel stream the peer refused — all count as connect
//! failures: they go to outlier detection and the next host is tried, in the same tier first,
//! then the next tiers, within `retry.connect_attempts`. So a dead endpoint costs a connection
//! a few milliseconds and never the connection itself.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::balancer::outlier::{HostId, Outcome};
use crate::balancer::{Balancer, HostKind, InFlight};
use crate::config::{Protocol, ServiceKey};
use crate::metrics::Metrics;
use crate::tunnel::client::OpenError;
use crate::tunnel::stream::H2Stream;
use crate::tunnel::wire::Refusal;

/// Where a connection came from, which decides where it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client in this cluster: every tier.
    Local,
    /// A stream from a peer gateway: local tiers only (no transit, no loops).
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
    pub host: HostId,
    pub tier: usize,
    /// Keeps the host's in-flight count up while the connection lives.
    pub in_flight: InFlight,
}

/// Attempts made so far for one connection or request (across request retries too).
#[derive(Debug, Default)]
pub struct Attempts {
    pub tried: Vec<HostId>,
    pub last_tier: Option<usize>,
    /// Connect attempts, counted against `retry.connect_attempts`.
    pub connects: u32,
    /// Connect attempts that failed.
    pub failed: u32,
}

/// Why no upstream could be connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("service {0} has no healthy endpoint here or at any reachable peer")]
    NoHealthyUpstream(ServiceKey),
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
            ConnectError::NoHealthyUpstream(_) => Refusal::NoHealthyEndpoint,
            ConnectError::AllFailed { .. } => Refusal::UpstreamFailed,
        }
    }

    /// The `outcome` metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            ConnectError::NoHealthyUpstream(_) => "no_healthy_upstream",
            ConnectError::AllFailed { .. } => "upstream_failed",
        }
    }
}

/// Connects to the next host the balancer picks, retrying connect failures.
pub async fn connect(
    balancer: &Arc<Balancer>,
    origin: Origin,
    attempts: &mut Attempts,
    metrics: &Metrics,
) -> Result<Connected, ConnectError> {
    let budget = balancer.config.retry.connect_attempts;
    let mut last = String::new();
    while attempts.connects < budget {
        let Some((host, tier)) =
            balancer.pick(&attempts.tried, attempts.last_tier, origin == Origin::Peer)
        else {
            break;
        };
        attempts.tried.push(host);
        attempts.last_tier = Some(tier);
        attempts.connects += 1;
        let in_flight = InFlight::new(balancer.clone(), host);
        match connect_host(balancer, host).await {
            Ok((io, target)) => {
                // tcp and tls services have no status to report later: the connect is the result.
                let outcome = match balancer.config.protocol {
                    Protocol::Http => Outcome::ConnectSuccess,
                    Protocol::Tls | Protocol::Tcp => Outcome::ConnectSuccessFinal,
                };
                balancer.report(host, outcome);
                return Ok(Connected {
                    io,
                    target,
                    host,
                    tier,
                    in_flight,
                });
            }
            Err(failure) => {
                // A peer that is down or does not serve the service was never really tried.
                let Some(outcome) = failure.outcome else {
                    continue;
                };
                balancer.report(host, outcome);
                attempts.failed += 1;
                let kind = if matches!(balancer.hosts[host].kind, HostKind::Peer(_)) {
                    "peer"
                } else {
                    "endpoint"
                };
                metrics
                    .connect_retries_total
                    .with_label_values(&[&balancer.key().to_string(), kind])
                    .inc();
                tracing::debug!(service = %balancer.key(), host = %balancer.host_label(host), error = %failure.message, "connect failed; trying the next host");
                last = format!("{}: {}", balancer.host_label(host), failure.message);
            }
        }
    }
    if attempts.failed == 0 {
        return Err(ConnectError::NoHealthyUpstream(balancer.key().clone()));
    }
    Err(ConnectError::AllFailed {
        service: balancer.key().clone(),
        attempts: attempts.connects,
        last,
    })
}

/// A failed connect: what to tell outlier detection (nothing when the host was never really
/// tried) and what to log.
struct Failure {
    outcome: Option<Outcome>,
    message: String,
}

async fn connect_host(balancer: &Balancer, host: HostId) -> Result<(UpstreamIo, Target), Failure> {
    match &balancer.hosts[host].kind {
        HostKind::Endpoint { address, zone } => {
            let tcp = connect_endpoint(*address, balancer.config.connect_timeout)
                .await
                .map_err(|e| Failure {
                    outcome: Some(if e.kind() == io::ErrorKind::TimedOut {
                        Outcome::Timeout
                    } else {
                        Outcome::ConnectFailed
                    }),
                    message: e.to_string(),
                })?;
            let target = Target::Endpoint {
                address: *address,
                zone: zone.clone(),
            };
            Ok((UpstreamIo::Tcp(tcp), target))
        }
        HostKind::Peer(pool) => match pool.open(balancer.key()).await {
            Ok((stream, zone)) => {
                let target = Target::Peer {
                    peer: pool.name().to_owned(),
                    zone,
                };
                Ok((UpstreamIo::Tunnel(stream), target))
            }
            Err(e) => {
                let outcome = match &e {
                    // Liveness already took the peer out; nothing to learn per service.
                    OpenError::Down | OpenError::ConnectionLost => None,
                    // The peer does not serve the service; its advertisement will say so.
                    OpenError::Refused(Refusal::UnknownService | Refusal::NotExported) => None,
                    OpenError::Timeout(_) => Some(Outcome::Timeout),
                    OpenError::Refused(_) | OpenError::Stream(_) => Some(Outcome::ConnectFailed),
                };
                Err(Failure {
                    outcome,
                    message: e.to_string(),
                })
            }
        },
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
