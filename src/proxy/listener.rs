//! The accept loop shared by every local listener: it only accepts and spawns. Each
//! connection runs in its own task on the drain tracker, so shutdown waits for it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::drain::Drain;

/// Accepts until the drain starts, handing each connection to `handle` in a new task.
pub async fn accept_loop<F, Fut>(listener: TcpListener, drain: Drain, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            biased;
            _ = drain.stopping() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    drain.spawn(handle(tcp, remote));
                }
                Err(e) => accept_error(&e).await,
            },
        }
    }
}

/// Logs an accept error and, when the process is out of file descriptors, pauses briefly so
/// the loop does not spin while connections close.
pub async fn accept_error(e: &io::Error) {
    tracing::warn!(error = %e, "accept failed");
    // ENFILE (23) and EMFILE (24).
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
