//! The copy loop shared by every proxied connection: both directions at once with half-close
//! respected (EOF on one side becomes a write shutdown on the other, via
//! `tokio::io::copy_bidirectional`), byte counts, an idle timeout, and errors named by side.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::drain::Drain;

/// Copy buffer per direction: 64 KiB keeps syscalls per byte low on bulk transfers without
/// holding much memory per idle connection (the buffers are allocated lazily).
const BUF_SIZE: usize = 64 * 1024;

/// Which side of a proxied connection an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (or, on the peer side, the tunnel stream).
    Downstream,
    /// The endpoint or the tunnel stream towards the peer.
    Upstream,
}

/// Why a proxied connection ended other than by both sides closing.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{side:?} failed: {source}")]
    Io {
        side: Side,
        #[source]
        source: io::Error,
    },
    #[error("no traffic either way for {0:?}")]
    Idle(Duration),
    #[error("closed by the drain deadline")]
    Drained,
}

/// How a copy ended.
#[derive(Debug)]
pub struct CopyResult {
    pub downstream_to_upstream: u64,
    pub upstream_to_downstream: u64,
    pub result: Result<(), CopyError>,
}

/// Shared between the two tracked halves and the idle watcher.
#[derive(Default)]
struct Counters {
    /// Milliseconds since `start` of the last read or write on either side.
    last_activity_ms: AtomicU64,
    read_downstream: AtomicU64,
    read_upstream: AtomicU64,
    downstream_failed: AtomicBool,
    upstream_failed: AtomicBool,
}

/// Proxies bytes between `downstream` and `upstream` until both are closed, one fails, the
/// connection idles out, or the drain deadline passes.
pub async fn proxy<D, U>(downstream: D, upstream: U, idle: Duration, drain: &Drain) -> CopyResult
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let counters = Arc::new(Counters::default());
    let mut down = Tracked {
        inner: downstream,
        side: Side::Downstream,
        start,
        counters: counters.clone(),
    };
    let mut up = Tracked {
        inner: upstream,
        side: Side::Upstream,
        start,
        counters: counters.clone(),
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, BUF_SIZE, BUF_SIZE);
    let result = tokio::select! {
        r = copy => r.map(|_| ()).map_err(|source| CopyError::Io { side: failed_side(&counters), source }),
        _ = idle_timeout(&counters, start, idle) => Err(CopyError::Idle(idle)),
        _ = drain.forced() => Err(CopyError::Drained),
    };
    CopyResult {
        downstream_to_upstream: counters.read_downstream.load(Ordering::Relaxed),
        upstream_to_downstream: counters.read_upstream.load(Ordering::Relaxed),
        result,
    }
}

fn failed_side(c: &Counters) -> Side {
    // copy_bidirectional reports write errors of one side while reading the other; the
    // tracked halves recorded which inner stream actually failed.
    if c.upstream_failed.load(Ordering::Relaxed) && !c.downstream_failed.load(Ordering::Relaxed) {
        Side::Upstream
    } else {
        Side::Downstream
    }
}

/// Resolves once nothing has moved for `idle`.
async fn idle_timeout(c: &Counters, start: Instant, idle: Duration) {
    loop {
        let last = start + Duration::from_millis(c.last_activity_ms.load(Ordering::Relaxed));
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// One side of the copy, counting bytes and noting activity and failures.
struct Tracked<T> {
    inner: T,
    side: Side,
    start: Instant,
    counters: Arc<Counters>,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.counters.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    fn note<R>(&self, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if let Poll::Ready(Err(_)) = &r {
            let flag = match self.side {
                Side::Downstream => &self.counters.downstream_failed,
                Side::Upstream => &self.counters.upstream_failed,
            };
            flag.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.touch();
            let counter = match self.side {
                Side::Downstream => &self.counters.read_downstream,
                Side::Upstream => &self.counters.read_upstream,
            };
            counter.fetch_add(n, Ordering::Relaxed);
        }
        self.note(r)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.touch();
        }
        self.note(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn half_close_and_counts() {
        let (client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, server) = tokio::io::duplex(1024);
        let drain = Drain::new();
        let task = tokio::spawn(async move {
            proxy(proxy_down, proxy_up, Duration::from_secs(60), &drain).await
        });
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut sr, mut sw) = tokio::io::split(server);
        cw.write_all(b"hello").await.unwrap();
        cw.shutdown().await.unwrap();
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        // The other direction still works after the client's half-close.
        sw.write_all(b"world!").await.unwrap();
        sw.shutdown().await.unwrap();
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world!");
        let result = task.await.unwrap();
        assert!(result.result.is_ok());
        assert_eq!(
            (result.downstream_to_upstream, result.upstream_to_downstream),
            (5, 6)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed() {
        let (_client, proxy_down) = tokio::io::duplex(64);
        let (proxy_up, _server) = tokio::io::duplex(64);
        let result = proxy(proxy_down, proxy_up, Duration::from_secs(5), &Drain::new()).await;
        assert!(matches!(result.result, Err(CopyError::Idle(_))));
    }
}
