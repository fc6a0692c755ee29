//! `tls` listeners: TLS passthrough routed by SNI. The ClientHello is read without terminating
//! TLS, routed, and replayed to the upstream byte for byte, so the client verifies the real
//! server's certificate end to end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::gateway::Gateway;
use crate::proxy::forward;
use crate::proxy::sni::{self, ClientHello, SniError};

/// How long a client may take to send its ClientHello.
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one client connection of a `tls` listener.
pub async fn handle(mut tcp: TcpStream, remote: SocketAddr, listener: String, gw: Arc<Gateway>) {
    let unrouted = |reason: &str| {
        gw.metrics
            .unrouted_total
            .with_label_values(&[&listener, reason])
            .inc();
    };
    let mut buf = Vec::with_capacity(2048);
    let hello =
        tokio::time::timeout(CLIENT_HELLO_TIMEOUT, read_client_hello(&mut tcp, &mut buf)).await;
    let sni = match hello {
        Ok(Ok(Some(sni))) => sni,
        Ok(Ok(None)) => {
            tracing::info!(%remote, %listener, "ClientHello without SNI; closing");
            return unrouted("no_sni");
        }
        Ok(Err(e)) => {
            tracing::info!(%remote, %listener, error = %e, "not a routable ClientHello; closing");
            return unrouted("bad_client_hello");
        }
        Err(_) => {
            tracing::info!(%remote, %listener, "no ClientHello in time; closing");
            return unrouted("timeout");
        }
    };
    let Some(balancer) = gw
        .tls_routes
        .lookup_sni(&sni)
        .and_then(|k| gw.balancers.get(k))
        .cloned()
    else {
        // The raw SNI goes to the log, never to a metric label (unbounded).
        tracing::info!(%remote, %listener, sni, "no service for SNI; closing");
        return unrouted("unknown_sni");
    };
    forward(tcp, &buf, remote, &balancer, "tls", &gw).await;
}

/// Reads until `buf` holds a whole ClientHello; returns its SNI.
async fn read_client_hello(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<String>, ReadHelloError> {
    loop {
        match sni::parse_client_hello(buf)? {
            ClientHello::Complete { sni } => return Ok(sni),
            ClientHello::Incomplete if buf.len() >= sni::MAX_CLIENT_HELLO => {
                return Err(SniError::Fragmented.into());
            }
            ClientHello::Incomplete => {}
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(ReadHelloError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadHelloError {
    #[error(transparent)]
    Sni(#[from] SniError),
    #[error("reading the ClientHello failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("client closed before sending a whole ClientHello")]
    Closed,
}
