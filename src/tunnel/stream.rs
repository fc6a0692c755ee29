//! [`H2Stream`]: one HTTP/2 stream seen as a byte stream (`AsyncRead + AsyncWrite`), so the
//! proxy's copy loop treats a tunnel stream exactly like a TCP connection. Flow control is h2's:
//! received bytes release window as they are handed to the reader, and writes wait for send
//! capacity. Shutdown sends END_STREAM, which is how half-close crosses the tunnel.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes larger than this are split, so one stream cannot hog the connection window.
const MAX_WRITE_CHUNK: usize = 256 * 1024;

/// A bidirectional HTTP/2 stream as a byte stream.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Data received but not yet read.
    pending: Bytes,
    write_closed: bool,
    /// Runs when the stream is dropped (used to keep per-connection stream counts).
    _guard: Option<Box<dyn Send + Sync>>,
}

impl H2Stream {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Stream {
            send,
            recv,
            pending: Bytes::new(),
            write_closed: false,
            _guard: None,
        }
    }

    /// Keeps `guard` alive as long as the stream.
    pub fn with_guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }
}

/// Maps an h2 error to an io error; a stream reset by the other side reads as a reset.
fn to_io(err: h2::Error) -> io::Error {
    if err.is_io() {
        return err
            .into_io()
            .unwrap_or_else(|| io::Error::other("h2 i/o error"));
    }
    let kind = if err.is_reset() || err.is_go_away() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, err)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Give the window back at once: the reader's buffer is the backpressure.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                None => return Poll::Ready(Ok(())), // END_STREAM: EOF
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(MAX_WRITE_CHUNK);
        self.send.reserve_capacity(want);
        let granted = loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => break n.min(want),
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        };
        let chunk = Bytes::copy_from_slice(&buf[..granted]);
        self.send.send_data(chunk, false).map_err(to_io)?;
        Poll::Ready(Ok(granted))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 frames are queued on the connection, which flushes them itself.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write_closed {
            self.write_closed = true;
            self.send.send_data(Bytes::new(), true).map_err(to_io)?;
        }
        Poll::Ready(Ok(()))
    }
}
