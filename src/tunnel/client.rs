//! The dialing side of tunnels: per peer, a pool of long-lived mTLS + HTTP/2 connections.
//!
//! - A maintenance task keeps `connections_per_peer` connections up, reconnecting with
//!   exponential backoff and jitter; a dial is never attempted before the backoff allows it,
//!   so a dead peer costs traffic nothing but a check.
//! - Streams go to the least-loaded live connection under the stream cap; past the cap one
//!   more connection is dialed, single-flight (concurrent openers share one dial).
//! - Every connection sends an HTTP/2 PING each `ping_interval`; one not answered within
//!   `ping_timeout` marks the connection dead at once, and with it the peer if it was the last.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use bytes::Bytes;
use h2::client::SendRequest;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::balancer::ZoneHealth;
use crate::config::{PeerConfig, ServiceKey, TunnelConfig};
use crate::metrics::Metrics;
use crate::tls::HandshakeFailure;
use crate::tunnel::health;
use crate::tunnel::stream::H2Stream;
use crate::tunnel::wire::{self, Refusal};
use crate::tunnel::{self, TunnelError};

/// Why a stream to a peer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("peer is down (no live tunnel; next dial allowed after backoff)")]
    Down,
    #[error("peer refused the stream: {0}")]
    Refused(Refusal),
    #[error("tunnel stream failed: {0}")]
    Stream(#[from] h2::Error),
    #[error("peer did not answer the stream request within {0:?}")]
    Timeout(Duration),
    #[error("the tunnel connection was lost while the stream was opening")]
    ConnectionLost,
}

/// Every peer's pool, in configured order (the failover order).
pub struct Peers {
    pools: Vec<Arc<PeerPool>>,
    stop: CancellationToken,
}

impl Peers {
    /// Creates a pool per peer and starts their maintenance tasks.
    pub fn start(
        local_name: &str,
        peers: &[PeerConfig],
        clients: &HashMap<String, Arc<ClientConfig>>,
        settings: &TunnelConfig,
        metrics: &Metrics,
    ) -> Arc<Peers> {
        let stop = CancellationToken::new();
        let pools = peers
            .iter()
            .map(|peer| {
                let tls = clients[&peer.name].clone();
                let pool = Arc::new(PeerPool::new(local_name, peer, tls, settings, metrics));
                tokio::spawn(pool.clone().maintain(stop.clone()));
                pool
            })
            .collect();
        Arc::new(Peers { pools, stop })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<PeerPool>> {
        self.pools.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<PeerPool>> {
        self.pools.iter().find(|p| p.name() == name)
    }

    /// Waits until every peer's first dial has finished (connected or failed), at most
    /// `limit`: a gateway that reports ready before then would answer its first requests for
    /// peer-only services with "no healthy upstream".
    pub async fn first_dials(&self, limit: Duration) {
        let all = self.pools.iter().map(|p| {
            let mut done = p.dials_done.subscribe();
            async move {
                let _ = done.wait_for(|n| *n >= 1).await;
            }
        });
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(all)).await;
    }

    /// Stops dialing: a draining gateway keeps its tunnels for streams in flight but does not
    /// replace lost ones.
    pub fn stop_dialing(&self) {
        self.stop.cancel();
    }

    /// Stops maintenance and closes every tunnel connection.
    pub fn close(&self) {
        self.stop.cancel();
        for pool in &self.pools {
            pool.close_all();
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.close();
    }
}

/// One peer's connections and state.
pub struct PeerPool {
    config: PeerConfig,
    local_name: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    settings: TunnelConfig,
    metrics: Metrics,
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Single-flight dialing.
    dial_lock: tokio::sync::Mutex<()>,
    /// No dial before this instant (reconnect backoff).
    next_dial: Mutex<Instant>,
    backoff: Mutex<Box<dyn Iterator<Item = Duration> + Send>>,
    /// Woken when a connection dies, so maintenance redials.
    changed: Notify,
    status: Mutex<PeerStatus>,
    next_conn_id: AtomicU64,
    /// What the peer last advertised, per service.
    adverts: RwLock<HashMap<ServiceKey, Advert>>,
    /// Whether a health stream is open on some connection.
    health_stream: AtomicBool,
    /// Dial attempts finished, for waiting on the first one at startup.
    dials_done: tokio::sync::watch::Sender<u64>,
    /// Whether the peer has advertised at all (then a service it omits is one it does not serve).
    advert_seen: AtomicBool,
    /// Called on every change of liveness or advertisement (rebuilds balancer snapshots).
    on_change: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// A peer's advertised health for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub healthy: u32,
    pub total: u32,
    pub zones: Vec<ZoneHealth>,
}

/// What `/debug/tunnels` shows of a peer beyond its connections.
#[derive(Debug, Clone, Default)]
pub struct PeerStatus {
    pub last_error: Option<String>,
    pub reconnects: u64,
    pub dials: u64,
    pub ever_connected: bool,
}

/// One live tunnel connection.
pub struct Conn {
    pub id: u64,
    send: SendRequest<Bytes>,
    pub streams: AtomicU32,
    alive: AtomicBool,
    pub rtt_micros: AtomicU64,
    pub established: Instant,
    /// Aborts the connection's driver and ping tasks.
    cancel: CancellationToken,
}

impl Conn {
    /// A handle for opening streams on this connection.
    pub(crate) fn sender(&self) -> SendRequest<Bytes> {
        self.send.clone()
    }
}

/// Snapshot of a connection for `/debug/tunnels`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnInfo {
    pub id: u64,
    pub streams: u32,
    pub rtt_ms: f64,
    pub age_s: f64,
}

impl PeerPool {
    fn new(
        local_name: &str,
        config: &PeerConfig,
        tls: Arc<ClientConfig>,
        settings: &TunnelConfig,
        metrics: &Metrics,
    ) -> Self {
        // Our verifier checks the configured identity, not the name; SNI just says who we
        // think we are calling, which helps the peer's logs and a load balancer's routing.
        let server_name = ServerName::try_from(config.name.clone()).unwrap_or_else(|_| {
            ServerName::try_from("strait-peer")
                .expect("static name")
                .to_owned()
        });
        metrics.tunnel_up.with_label_values(&[&config.name]).set(0);
        PeerPool {
            config: config.clone(),
            local_name: local_name.to_owned(),
            server_name,
            tls: TlsConnector::from(tls),
            settings: settings.clone(),
            metrics: metrics.clone(),
            conns: Mutex::new(Vec::new()),
            dial_lock: tokio::sync::Mutex::new(()),
            next_dial: Mutex::new(Instant::now()),
            backoff: Mutex::new(new_backoff(settings)),
            changed: Notify::new(),
            status: Mutex::new(PeerStatus::default()),
            next_conn_id: AtomicU64::new(1),
            adverts: RwLock::new(HashMap::new()),
            health_stream: AtomicBool::new(false),
            advert_seen: AtomicBool::new(false),
            dials_done: tokio::sync::watch::channel(0).0,
            on_change: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// This gateway's name, as sent to the peer.
    pub fn local_name(&self) -> &str {
        &self.local_name
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Whether at least one connection is live.
    pub fn is_up(&self) -> bool {
        self.live().next().is_some()
    }

    /// Registers the callback run on every liveness or advertisement change.
    pub fn set_on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_change.set(Box::new(f));
    }

    fn notify_listeners(&self) {
        if let Some(f) = self.on_change.get() {
            f();
        }
    }

    /// What the peer advertises for `service`; `None` until it has said anything about it.
    pub fn advertised(&self, service: &ServiceKey) -> Option<Advert> {
        let advert = self
            .adverts
            .read()
            .expect("adverts lock")
            .get(service)
            .cloned();
        match advert {
            Some(a) => Some(a),
            None if self.advert_seen.load(Ordering::Acquire) => Some(Advert {
                healthy: 0,
                total: 0,
                zones: Vec::new(),
            }),
            None => None,
        }
    }

    /// Every advertisement, for `/debug/tunnels`.
    pub fn adverts(&self) -> Vec<(ServiceKey, Advert)> {
        let mut all: Vec<_> = self
            .adverts
            .read()
            .expect("adverts lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn status(&self) -> PeerStatus {
        self.status.lock().expect("status lock").clone()
    }

    pub fn connections(&self) -> Vec<ConnInfo> {
        self.live()
            .map(|c| ConnInfo {
                id: c.id,
                streams: c.streams.load(Ordering::Relaxed),
                rtt_ms: c.rtt_micros.load(Ordering::Relaxed) as f64 / 1000.0,
                age_s: c.established.elapsed().as_secs_f64(),
            })
            .collect()
    }

    fn live(&self) -> impl Iterator<Item = Arc<Conn>> {
        let conns = self.conns.lock().expect("conns lock").clone();
        conns
            .into_iter()
            .filter(|c| c.alive.load(Ordering::Acquire))
    }

    /// Opens a stream to `service` at this peer; the zone is the one the peer reported.
    pub async fn open(
        self: &Arc<Self>,
        service: &ServiceKey,
    ) -> Result<(H2Stream, Option<String>), OpenError> {
        let conn = match self.pick() {
            Some(conn) => conn,
            None => self.dial_for_stream().await.ok_or(OpenError::Down)?,
        };
        let guard = StreamGuard::new(conn.clone(), &self.metrics, self.name());
        let timeout = self.settings.handshake_timeout;
        let request = async {
            let mut send = conn.send.clone().ready().await?;
            let (response, stream) =
                send.send_request(wire::connect_request(service, &self.local_name), false)?;
            let response = tokio::time::timeout(timeout, response)
                .await
                .map_err(|_| OpenError::Timeout(timeout))??;
            Ok::<_, OpenError>((response, stream))
        };
        let (response, stream) = match request.await {
            Ok(opened) => opened,
            // The connection died under the stream (liveness closed it, or the peer went
            // away): that is the tunnel's failure, already acted on, not the service's.
            Err(_) if !conn.alive.load(Ordering::Acquire) => return Err(OpenError::ConnectionLost),
            Err(e) => return Err(e),
        };
        let outcome = |o: &str| {
            self.metrics
                .tunnel_streams_total
                .with_label_values(&[self.name(), "outbound", o])
                .inc()
        };
        if response.status() != http::StatusCode::OK {
            let refusal = Refusal::from_response(response.status(), response.headers());
            outcome(refusal.reason());
            return Err(OpenError::Refused(refusal));
        }
        outcome("connected");
        let zone = response
            .headers()
            .get(wire::ZONE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((
            H2Stream::new(stream, response.into_body()).with_guard(guard),
            zone,
        ))
    }

    /// The least-loaded live connection under the stream cap.
    fn pick(&self) -> Option<Arc<Conn>> {
        let cap = self.settings.max_streams_per_connection;
        self.live()
            .filter(|c| c.streams.load(Ordering::Relaxed) < cap)
            .min_by_key(|c| c.streams.load(Ordering::Relaxed))
    }

    /// Dials one more connection for a stream that found none with room, unless backoff
    /// forbids it. Concurrent callers share the one dial.
    async fn dial_for_stream(self: &Arc<Self>) -> Option<Arc<Conn>> {
        let _single = self.dial_lock.lock().await;
        if let Some(conn) = self.pick() {
            return Some(conn);
        }
        if Instant::now() < *self.next_dial.lock().expect("next_dial lock") {
            return None;
        }
        self.dial_once().await
    }

    /// The maintenance loop: keep `connections_per_peer` connections up.
    async fn maintain(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let notified = self.changed.notified();
            let want = self.settings.connections_per_peer as usize;
            if self.live().count() >= want {
                tokio::select! {
                    _ = notified => continue,
                    _ = stop.cancelled() => return,
                }
            }
            let wait = self
                .next_dial
                .lock()
                .expect("next_dial lock")
                .saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            let _single = self.dial_lock.lock().await;
            if self.live().count() < want {
                tokio::select! {
                    _ = self.dial_once() => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }

    /// One dial; on failure records it and pushes `next_dial` out by the next backoff step.
    async fn dial_once(self: &Arc<Self>) -> Option<Arc<Conn>> {
        let reconnect = {
            let mut status = self.status.lock().expect("status lock");
            status.dials += 1;
            status.ever_connected
        };
        let result = self.dial().await;
        self.dials_done.send_modify(|n| *n += 1);
        match result {
            Ok(conn) => {
                *self.backoff.lock().expect("backoff lock") = new_backoff(&self.settings);
                let mut status = self.status.lock().expect("status lock");
                if reconnect {
                    status.reconnects += 1;
                    self.metrics
                        .tunnel_reconnects_total
                        .with_label_values(&[self.name()])
                        .inc();
                }
                status.ever_connected = true;
                status.last_error = None;
                Some(conn)
            }
            Err(e) => {
                let delay = self
                    .backoff
                    .lock()
                    .expect("backoff lock")
                    .next()
                    .unwrap_or(self.settings.reconnect_backoff_max);
                *self.next_dial.lock().expect("next_dial lock") = Instant::now() + delay;
                tracing::warn!(peer = self.name(), address = %self.config.address, error = %e, retry_in = ?delay, "tunnel dial failed");
                self.status.lock().expect("status lock").last_error = Some(e.to_string());
                None
            }
        }
    }

    /// TCP connect, TLS handshake and HTTP/2 handshake, all under `handshake_timeout`.
    async fn dial(self: &Arc<Self>) -> Result<Arc<Conn>, TunnelError> {
        let timeout = self.settings.handshake_timeout;
        let handshake = async {
            let tcp = TcpStream::connect(&self.config.address)
                .await
                .map_err(TunnelError::Connect)?;
            tcp.set_nodelay(true).map_err(TunnelError::Connect)?;
            let tls = self
                .tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| {
                    let reason = HandshakeFailure::classify(&e);
                    self.count_handshake_failure(reason);
                    TunnelError::Handshake { reason, source: e }
                })?;
            tunnel::client_builder()
                .handshake::<_, Bytes>(tls)
                .await
                .map_err(TunnelError::Http2)
        };
        let (send, connection) = match tokio::time::timeout(timeout, handshake).await {
            Ok(result) => result?,
            Err(_) => {
                self.count_handshake_failure(HandshakeFailure::Timeout);
                return Err(TunnelError::Timeout(timeout));
            }
        };
        Ok(self.adopt(send, connection))
    }

    fn count_handshake_failure(&self, reason: HandshakeFailure) {
        self.metrics
            .tunnel_handshake_failures_total
            .with_label_values(&[self.name(), "outbound", reason.as_str()])
            .inc();
    }

    /// Registers a fresh connection and starts its driver and liveness tasks.
    fn adopt<T>(
        self: &Arc<Self>,
        send: SendRequest<Bytes>,
        mut connection: h2::client::Connection<T, Bytes>,
    ) -> Arc<Conn>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let ping_pong = connection
            .ping_pong()
            .expect("ping_pong is taken once, here");
        let conn = Arc::new(Conn {
            id: self.next_conn_id.fetch_add(1, Ordering::Relaxed),
            send,
            streams: AtomicU32::new(0),
            alive: AtomicBool::new(true),
            rtt_micros: AtomicU64::new(0),
            established: Instant::now(),
            cancel: CancellationToken::new(),
        });
        self.conns.lock().expect("conns lock").push(conn.clone());
        self.metrics
            .tunnel_up
            .with_label_values(&[self.name()])
            .set(1);
        self.metrics
            .tunnel_connections
            .with_label_values(&[self.name(), "outbound"])
            .inc();
        tracing::info!(peer = self.name(), conn = conn.id, address = %self.config.address, "tunnel connected");

        let liveness = Liveness {
            interval: self.settings.ping_interval,
            timeout: self.settings.ping_timeout,
            rtt: self
                .metrics
                .tunnel_rtt_seconds
                .with_label_values(&[self.name()]),
        };
        let (pool, conn2) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            let reason = tokio::select! {
                result = &mut connection => match result {
                    Ok(()) => "closed by peer".to_owned(),
                    Err(e) => e.to_string(),
                },
                reason = liveness.run(ping_pong, &conn2) => reason,
                _ = conn2.cancel.cancelled() => "closed".to_owned(),
            };
            // Retire first, then drop the connection: streams failing with it find the
            // connection already dead and are not blamed on the service.
            pool.retire(&conn2, &reason);
            drop(connection);
        });
        self.notify_listeners();
        self.ensure_health_stream(&conn);
        conn
    }

    /// Opens the health stream on `conn` unless one is open already.
    fn ensure_health_stream(self: &Arc<Self>, conn: &Arc<Conn>) {
        if self.health_stream.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, conn) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            let result = health::receive(&pool, &conn).await;
            if let Err(e) = &result {
                tracing::debug!(peer = pool.name(), error = %e, "health stream ended");
                // On a live connection the peer refused the stream (an older peer, used
                // unweighted): ask again later, not in a loop. A lost connection is not the
                // stream's fault: reopen on the next connection at once.
                if conn.alive.load(Ordering::Acquire) {
                    tokio::time::sleep(health::HEARTBEAT).await;
                }
            }
            pool.health_stream.store(false, Ordering::Release);
            if let Some(next) = pool.live().next() {
                pool.ensure_health_stream(&next);
            }
        });
    }

    /// Replaces the advertisement from the peer's latest message.
    pub(crate) fn apply_advert(&self, message: health::Message) {
        let mut adverts = HashMap::new();
        for svc in message.services {
            let Ok(key) = svc.service.parse::<ServiceKey>() else {
                continue;
            };
            let healthy = svc.zones.iter().map(|z| z.healthy).sum();
            let total = svc.zones.iter().map(|z| z.total).sum();
            self.metrics
                .remote_healthy_endpoints
                .with_label_values(&[self.name(), &key.to_string()])
                .set(i64::from(healthy));
            adverts.insert(
                key,
                Advert {
                    healthy,
                    total,
                    zones: svc.zones,
                },
            );
        }
        self.metrics
            .health_adverts_received_total
            .with_label_values(&[self.name()])
            .inc();
        let first = !self.advert_seen.swap(true, Ordering::AcqRel);
        let differs = {
            let mut current = self.adverts.write().expect("adverts lock");
            let differs = *current != adverts;
            *current = adverts;
            differs
        };
        let changed = first || differs;
        if changed {
            tracing::info!(peer = self.name(), seq = message.seq, "peer health changed");
            self.notify_listeners();
        }
    }

    /// Takes a dead connection out of the pool, at once, so the next pick cannot use it.
    fn retire(&self, conn: &Conn, reason: &str) {
        conn.alive.store(false, Ordering::Release);
        conn.cancel.cancel();
        let up = {
            let mut conns = self.conns.lock().expect("conns lock");
            conns.retain(|c| c.id != conn.id);
            conns.iter().any(|c| c.alive.load(Ordering::Acquire))
        };
        self.metrics
            .tunnel_connections
            .with_label_values(&[self.name(), "outbound"])
            .dec();
        self.metrics
            .tunnel_up
            .with_label_values(&[self.name()])
            .set(i64::from(up));
        self.status.lock().expect("status lock").last_error = Some(reason.to_owned());
        tracing::warn!(
            peer = self.name(),
            conn = conn.id,
            reason,
            peer_up = up,
            "tunnel connection lost"
        );
        self.changed.notify_one();
        self.notify_listeners();
    }

    fn close_all(&self) {
        for conn in self.conns.lock().expect("conns lock").iter() {
            conn.cancel.cancel();
        }
    }
}

/// PING-based liveness and RTT for one connection.
struct Liveness {
    interval: Duration,
    timeout: Duration,
    rtt: prometheus::Gauge,
}

impl Liveness {
    /// Pings forever; returns why the connection must be considered dead.
    async fn run(self, mut ping_pong: h2::PingPong, conn: &Conn) -> String {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; the handshake just proved liveness
        loop {
            ticker.tick().await;
            let sent = Instant::now();
            match tokio::time::timeout(self.timeout, ping_pong.ping(h2::Ping::opaque())).await {
                Ok(Ok(_pong)) => {
                    let rtt = sent.elapsed();
                    conn.rtt_micros
                        .store(rtt.as_micros() as u64, Ordering::Relaxed);
                    self.rtt.set(rtt.as_secs_f64());
                }
                Ok(Err(e)) => return format!("ping failed: {e}"),
                Err(_) => return format!("ping unanswered for {:?}", self.timeout),
            }
        }
    }
}

/// Counts a stream against its connection (for the stream cap) and the active-streams gauge.
struct StreamGuard {
    conn: Arc<Conn>,
    gauge: prometheus::IntGauge,
}

impl StreamGuard {
    fn new(conn: Arc<Conn>, metrics: &Metrics, peer: &str) -> Self {
        conn.streams.fetch_add(1, Ordering::Relaxed);
        let gauge = metrics
            .tunnel_streams_active
            .with_label_values(&[peer, "outbound"]);
        gauge.inc();
        StreamGuard { conn, gauge }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.conn.streams.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

fn new_backoff(settings: &TunnelConfig) -> Box<dyn Iterator<Item = Duration> + Send> {
    Box::new(
        backon::ExponentialBuilder::default()
            .with_min_delay(settings.reconnect_backoff_min)
            .with_max_delay(settings.reconnect_backoff_max)
            .with_jitter()
            .without_max_times()
            .build(),
    )
}
