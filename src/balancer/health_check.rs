//! Active health checks of local endpoints: a TCP connect, or an HTTP `GET path` that must
//! answer 2xx, every `interval`. `unhealthy_threshold` failures in a row take an endpoint
//! out; `healthy_threshold` passes bring it back, and a pass also un-ejects an endpoint that
//! outlier detection ejected (Envoy's `successful_active_health_check_uneject_host`), which is
//! how failback can come long before a five-minute ejection ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Balancer, HostKind};
use crate::config::{HealthCheckConfig, HealthCheckKind};

/// Starts one checker task per local endpoint of `balancer`, if it has a health check.
pub fn spawn_all(balancer: &Arc<Balancer>, stop: &CancellationToken) {
    let Some(hc) = balancer.config.health_check.clone() else {
        return;
    };
    for host in &balancer.hosts {
        if let HostKind::Endpoint { address, .. } = host.kind {
            tokio::spawn(run(
                balancer.clone(),
                host.id,
                address,
                hc.clone(),
                stop.clone(),
            ));
        }
    }
}

/// Checks one endpoint until stopped, reporting verdict changes (and every pass while the
/// host is ejected) to the balancer.
async fn run(
    balancer: Arc<Balancer>,
    host: usize,
    address: SocketAddr,
    hc: HealthCheckConfig,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(hc.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut passes, mut failures, mut healthy) = (0u32, 0u32, true);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let ok = check(address, &hc.kind, hc.timeout).await;
        if ok {
            passes += 1;
            failures = 0;
            if !healthy && passes >= hc.healthy_threshold {
                healthy = true;
            }
            // A pass is reported even when the verdict stands: it un-ejects early.
            if healthy {
                balancer.health_checked(host, true);
            }
        } else {
            failures += 1;
            passes = 0;
            if healthy && failures >= hc.unhealthy_threshold {
                healthy = false;
                balancer.health_checked(host, false);
            }
        }
    }
}

/// One check under `timeout`.
pub async fn check(address: SocketAddr, kind: &HealthCheckKind, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, probe(address, kind))
        .await
        .unwrap_or(false)
}

async fn probe(address: SocketAddr, kind: &HealthCheckKind) -> bool {
    let Ok(tcp) = TcpStream::connect(address).await else {
        return false;
    };
    let HealthCheckKind::Http { path } = kind else {
        return true;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let Ok(req) = http::Request::get(path.as_str())
        .header(http::header::HOST, address.to_string())
        .header("user-agent", "strait-health-check")
        .body(Empty::<Bytes>::new())
    else {
        return false;
    };
    matches!(sender.send_request(req).await, Ok(resp) if resp.status().is_success())
}
