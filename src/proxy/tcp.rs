//! `tcp` listeners: one port, one service; bytes are proxied as they are.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::config::ServiceKey;
use crate::gateway::Gateway;
use crate::proxy::forward;

/// Serves one client connection of a `tcp` listener.
pub async fn handle(tcp: TcpStream, remote: SocketAddr, service: ServiceKey, gw: Arc<Gateway>) {
    let Some(balancer) = gw.balancers.get(&service).cloned() else {
        tracing::error!(%service, "tcp listener names a service that is not configured");
        return;
    };
    forward(tcp, &[], remote, &balancer, "tcp", &gw).await;
}
