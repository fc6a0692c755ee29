//! A userspace TCP relay for impairing a link in tests (the test kernel has no `tc netem`).
//!
//! It listens on a loopback address and forwards each accepted connection to one target. At
//! run time it can be switched between:
//! - [`Mode::Pass`]: bytes flow both ways, half-close propagated, each chunk after the
//!   configured latency (0 by default);
//! - [`Mode::Blackhole`]: connections stay open but every byte, both ways, is read and
//!   discarded; new connections are accepted and go nowhere. A connection that lost bytes stays
//!   black-holed after a switch back to `Pass` (its byte stream is broken, as after a partition
//!   TCP could not recover from);
//! - [`Mode::Reset`]: every connection is aborted with RST (zero linger, then dropped) and new
//!   ones are accepted and reset at once.
//!
//! Dropping the relay resets every connection it holds.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the relay does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Blackhole,
    Reset,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    mode: Mode,
    latency: Duration,
}

/// A running relay; see the module docs.
pub struct Relay {
    address: SocketAddr,
    settings: watch::Sender<Settings>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on `listen` (port 0 picks one) and forwards to `target`, in [`Mode::Pass`].
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let (settings, rx) = watch::channel(Settings {
            mode: Mode::Pass,
            latency: Duration::ZERO,
        });
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, target, rx.clone()));
            }
        });
        Ok(Relay {
            address,
            settings,
            task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn mode(&self) -> Mode {
        self.settings.borrow().mode
    }

    /// Switches the mode; connections see it before their next chunk.
    pub fn set_mode(&self, mode: Mode) {
        self.settings.send_modify(|s| s.mode = mode);
    }

    /// Delay added before each forwarded chunk, in both directions.
    pub fn set_latency(&self, latency: Duration) {
        self.settings.send_modify(|s| s.latency = latency);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.set_mode(Mode::Reset);
    }
}

/// Aborts a connection: RST instead of FIN.
fn abort(tcp: TcpStream) {
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

/// Resolves when the relay switches to `Reset` or goes away.
async fn reset(mut rx: watch::Receiver<Settings>) {
    let _ = rx.wait_for(|s| s.mode == Mode::Reset).await;
}

/// One accepted connection, from accept to close or reset.
async fn connection(client: TcpStream, target: SocketAddr, rx: watch::Receiver<Settings>) {
    let mode = rx.borrow().mode;
    let upstream = match mode {
        Mode::Reset => return abort(client),
        Mode::Blackhole => None,
        Mode::Pass => match TcpStream::connect(target).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                Some(tcp)
            }
            // Nothing behind the relay: the client sees its connection reset.
            Err(_) => return abort(client),
        },
    };
    let _ = client.set_nodelay(true);
    // Set once any byte is dropped: from then on this connection only swallows bytes.
    let tainted = AtomicBool::new(upstream.is_none());
    {
        let work = async {
            match &upstream {
                Some(up) => {
                    tokio::join!(
                        pump(&client, Some(up), &rx, &tainted),
                        pump(up, Some(&client), &rx, &tainted)
                    );
                }
                None => pump(&client, None, &rx, &tainted).await,
            }
            if tainted.load(Ordering::Relaxed) {
                // Black-holed connections are kept open until reset.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = reset(rx.clone()) => {}
        }
    }
    if rx.borrow().mode == Mode::Reset || tainted.load(Ordering::Relaxed) {
        abort(client);
        if let Some(up) = upstream {
            abort(up);
        }
    }
}

/// Copies `from` to `to` chunk by chunk, obeying the current mode; returns at EOF or error.
/// Both directions of a connection run concurrently on shared references, through readiness
/// and `try_read`/`try_write`.
async fn pump(
    from: &TcpStream,
    to: Option<&TcpStream>,
    rx: &watch::Receiver<Settings>,
    tainted: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match read(from, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let settings = *rx.borrow();
        if settings.mode != Mode::Pass {
            tainted.store(true, Ordering::Relaxed);
        }
        let Some(writer) = to.filter(|_| !tainted.load(Ordering::Relaxed)) else {
            continue; // discarded
        };
        if !settings.latency.is_zero() {
            tokio::time::sleep(settings.latency).await;
        }
        if write_all(writer, &buf[..n]).await.is_err() {
            return;
        }
    }
    // EOF: pass the half-close on, unless the connection is black-holed.
    if let Some(writer) = to.filter(|_| !tainted.load(Ordering::Relaxed)) {
        let _ = socket2::SockRef::from(writer).shutdown(std::net::Shutdown::Write);
    }
}

async fn read(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        tcp.readable().await?;
        match tcp.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

async fn write_all(tcp: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        tcp.writable().await?;
        match tcp.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
