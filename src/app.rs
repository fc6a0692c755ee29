//! Wiring: binds every socket of a gateway from its [`Config`], starts the tasks, and returns a
//! [`Bound`] handle that knows the real addresses (tests bind port 0 and read them back) and
//! runs the graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Protocol};
use crate::drain::{Drain, DrainOutcome};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::proxy;
use crate::tls::{TlsError, TunnelTls};
use crate::tunnel;
use crate::tunnel::client::Peers;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {what} address {addr}: {source}; is another process using it?")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// A running gateway.
pub struct Bound {
    pub gateway: Arc<Gateway>,
    pub addresses: Addresses,
}

/// The addresses a gateway actually listens on.
#[derive(Debug, Clone, Serialize)]
pub struct Addresses {
    pub name: String,
    pub region: String,
    pub zone: String,
    pub admin: SocketAddr,
    pub tunnel: SocketAddr,
    /// Local listeners by name, with their protocol.
    pub listeners: Vec<ListenerAddress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerAddress {
    pub name: String,
    pub protocol: String,
    pub address: SocketAddr,
}

/// Binds and starts a gateway.
pub async fn bind(config: Config) -> Result<Bound, AppError> {
    bind_with_metrics(config, Metrics::new()).await
}

/// Like [`bind`], with a caller-provided registry (tests and the demo read it directly).
pub async fn bind_with_metrics(config: Config, metrics: Metrics) -> Result<Bound, AppError> {
    bind_prebound(config, metrics, Vec::new()).await
}

/// Like [`bind_with_metrics`], taking over already-bound sockets: a configured address equal
/// to one of theirs uses that socket instead of binding anew (tests reserve ports this way).
pub async fn bind_prebound(
    config: Config,
    metrics: Metrics,
    prebound: Vec<std::net::TcpListener>,
) -> Result<Bound, AppError> {
    let mut prebound = Prebound(prebound);
    crate::tls::install_default_provider();
    let config = Arc::new(config);
    let tls = TunnelTls::load(&config)?;
    metrics
        .certificate_expiry_timestamp_seconds
        .set(tls.cert_not_after as f64);

    let admin = prebound.bind("admin", config.admin.listen).await?;
    let tunnel_listener = prebound.bind("tunnel", config.tunnel.listen).await?;
    let mut locals = Vec::new();
    for l in &config.listeners {
        locals.push((
            l.clone(),
            prebound
                .bind(&format!("listener {}", l.name), l.listen)
                .await?,
        ));
    }

    let drain = Drain::new();
    let peers = Peers::start(
        &config.gateway.name,
        &config.peers,
        &tls.clients,
        &config.tunnel,
        &metrics,
    );
    let gw = Arc::new(Gateway::new(config.clone(), peers, metrics, drain.clone()));

    let addresses = Addresses {
        name: config.gateway.name.clone(),
        region: config.gateway.region.clone(),
        zone: config.gateway.zone.clone(),
        admin: local_addr(&admin)?,
        tunnel: local_addr(&tunnel_listener)?,
        listeners: locals
            .iter()
            .map(|(l, sock)| {
                Ok(ListenerAddress {
                    name: l.name.clone(),
                    protocol: l.protocol.to_string(),
                    address: local_addr(sock)?,
                })
            })
            .collect::<Result<_, AppError>>()?,
    };

    tokio::spawn(crate::admin::serve(admin, gw.clone()));
    tokio::spawn(tunnel::server::serve(
        tunnel_listener,
        TlsAcceptor::from(tls.server.clone()),
        gw.clone(),
    ));
    for (l, sock) in locals {
        spawn_listener(l, sock, gw.clone());
    }
    // Ready once listeners are bound and every peer's first dial has finished (bounded by the
    // handshake timeout), so the first requests do not find peer-only services unreachable.
    let (gw2, limit) = (gw.clone(), config.tunnel.handshake_timeout);
    tokio::spawn(async move {
        gw2.peers.first_dials(limit).await;
        gw2.set_ready(true);
    });
    tracing::info!(
        gateway = %config.gateway.name, region = %config.gateway.region, zone = %config.gateway.zone,
        admin = %addresses.admin, tunnel = %addresses.tunnel, "gateway running"
    );
    Ok(Bound {
        gateway: gw,
        addresses,
    })
}

fn spawn_listener(l: crate::config::ListenerConfig, sock: TcpListener, gw: Arc<Gateway>) {
    let drain = gw.drain.clone();
    let name = l.name.clone();
    match (l.protocol, l.service) {
        (Protocol::Tcp, Some(service)) => {
            tokio::spawn(proxy::listener::accept_loop(
                sock,
                drain,
                move |tcp, remote| proxy::tcp::handle(tcp, remote, service.clone(), gw.clone()),
            ));
        }
        (Protocol::Tls, _) => {
            tokio::spawn(proxy::listener::accept_loop(
                sock,
                drain,
                move |tcp, remote| {
                    proxy::passthrough::handle(tcp, remote, name.clone(), gw.clone())
                },
            ));
        }
        (Protocol::Http, _) => {
            tokio::spawn(proxy::listener::accept_loop(
                sock,
                drain,
                move |tcp, remote| proxy::http::handle(tcp, remote, name.clone(), gw.clone()),
            ));
        }
        (Protocol::Tcp, None) => unreachable!("validated config: tcp listeners name a service"),
    }
}

/// Sockets bound by the caller, handed over by address.
struct Prebound(Vec<std::net::TcpListener>);

impl Prebound {
    async fn bind(&mut self, what: &str, addr: SocketAddr) -> Result<TcpListener, AppError> {
        let err = |source| AppError::Bind {
            what: what.to_owned(),
            addr,
            source,
        };
        if let Some(i) = self
            .0
            .iter()
            .position(|s| s.local_addr().ok() == Some(addr))
        {
            let std = self.0.swap_remove(i);
            std.set_nonblocking(true).map_err(err)?;
            return TcpListener::from_std(std).map_err(err);
        }
        TcpListener::bind(addr).await.map_err(err)
    }
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr, AppError> {
    l.local_addr().map_err(|source| AppError::Bind {
        what: "bound".into(),
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

impl Bound {
    /// Resolves once the gateway reports ready (see `/readyz`).
    pub async fn ready(&self) {
        let mut ready = self.gateway.ready_watch();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Graceful shutdown: not ready, stop accepting, GOAWAY on accepted tunnels, wait for
    /// in-flight connections up to `gateway.drain_timeout`, then close the rest and our tunnels.
    pub async fn shutdown(self) -> DrainOutcome {
        let deadline = self.gateway.config.gateway.drain_timeout;
        // Not ready from here on: `is_ready` is false once the drain has begun.
        tracing::info!(gateway = %self.gateway.config.gateway.name, ?deadline, "draining");
        self.gateway.peers.stop_dialing();
        let outcome = self.gateway.drain.run(deadline).await;
        self.gateway.peers.close();
        self.gateway.stop_background();
        tracing::info!(forced = outcome.forced, "drained");
        outcome
    }
}
