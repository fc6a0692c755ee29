//! Tunnels between gateways: mutually authenticated TLS 1.3 over TCP with HTTP/2 inside, one
//! `CONNECT` stream per proxied connection (the shape of Istio's HBONE). The wire contract is
//! written down in `WIRE.md` beside this file and implemented in [`wire`].
//!
//! - [`client`]: the dialing side, a pool per peer with liveness and reconnects.
//! - [`server`]: the tunnel listener, which authorizes peers and serves exported services.
//! - [`stream`]: an HTTP/2 stream as `AsyncRead + AsyncWrite`.

pub mod client;
pub mod health;
pub mod server;
pub mod stream;
pub mod wire;

use std::io;
use std::time::Duration;

use crate::tls::HandshakeFailure;

/// HTTP/2 stream window: large enough for one stream to fill a long fat pipe on its own.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 connection window: several streams at full speed.
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest frame we accept; bigger frames mean fewer frame headers on bulk transfers.
const MAX_FRAME: u32 = 1024 * 1024;

/// Why a tunnel connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "cannot connect to the peer's tunnel address: {0}; check the address and that the peer is running"
    )]
    Connect(#[source] io::Error),
    #[error("tunnel TLS handshake failed ({}): {source}", reason.as_str())]
    Handshake {
        reason: HandshakeFailure,
        #[source]
        source: io::Error,
    },
    #[error("tunnel handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("HTTP/2 handshake inside the tunnel failed: {0}")]
    Http2(#[source] h2::Error),
}

/// HTTP/2 settings of the dialing side.
pub(crate) fn client_builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .enable_push(false);
    b
}

/// HTTP/2 settings of the tunnel listener.
pub(crate) fn server_builder(max_streams: u32) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(max_streams);
    b
}
