//! Local listeners and the path a client connection takes through this gateway:
//! accept ([`listener`]) → route by port ([`tcp`]), SNI ([`passthrough`]) or Host ([`http`]) →
//! connect an upstream ([`crate::upstream`]) → copy bytes ([`copy`]).

pub mod copy;
pub mod http;
pub mod listener;
pub mod passthrough;
pub mod route;
pub mod sni;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::balancer::Balancer;
use crate::gateway::Gateway;
use crate::upstream::{self, Attempts, Origin, Target};

/// Connects the service and proxies `tcp` to it, first replaying `initial` bytes already
/// read from the client (a ClientHello). Used by `tcp` and `tls` listeners.
pub(crate) async fn forward(
    tcp: TcpStream,
    initial: &[u8],
    remote: SocketAddr,
    balancer: &Arc<Balancer>,
    protocol: &'static str,
    gw: &Gateway,
) {
    let service = balancer.key().to_string();
    let count = |tier: &str, outcome: &str| {
        gw.metrics
            .connections_total
            .with_label_values(&[protocol, &service, tier, outcome])
            .inc()
    };
    let mut attempts = Attempts::default();
    let mut connected = match upstream::connect(balancer, Origin::Local, &mut attempts, &gw.metrics)
        .await
    {
        Ok(connected) => connected,
        Err(e) => {
            tracing::warn!(%remote, %service, error = %e, "no upstream; closing the client connection");
            return count("none", e.outcome());
        }
    };
    let tier = connected.tier.to_string();
    if !initial.is_empty()
        && let Err(e) = connected.io.write_all(initial).await
    {
        tracing::warn!(%remote, %service, error = %e, "upstream failed while replaying the ClientHello");
        return count(&tier, "upstream_failed");
    }
    let active = gw.metrics.connections_active.with_label_values(&[&service]);
    active.inc();
    let target = connected.target.clone();
    let result = copy::proxy(tcp, connected.io, balancer.config.idle_timeout, &gw.drain).await;
    active.dec();
    if let Target::Peer { peer, .. } = &target {
        let sent = result.downstream_to_upstream + initial.len() as u64;
        gw.metrics
            .tunnel_sent_bytes_total
            .with_label_values(&[peer, "outbound"])
            .inc_by(sent);
        gw.metrics
            .tunnel_received_bytes_total
            .with_label_values(&[peer, "outbound"])
            .inc_by(result.upstream_to_downstream);
    }
    match &result.result {
        Ok(()) => count(&tier, "ok"),
        Err(e) => {
            tracing::debug!(%remote, %service, error = %e, "proxied connection ended with an error");
            count(&tier, "error");
        }
    }
}
