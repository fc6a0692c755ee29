//! The tunnel listener. The accept loop only accepts and spawns; each connection's TLS
//! handshake runs in its own task under `handshake_timeout`, so a slow or hostile caller never
//! delays another. Callers must present a certificate from the trust bundle of a configured
//! peer *and* that peer's identity (checked inside the handshake by
//! [`crate::tls::PeerClientVerifier`]). Streams may reach exported services and only their
//! local endpoints: nothing received from a peer is forwarded to another peer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use http::Request;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::gateway::Gateway;
use crate::identity::CertSans;
use crate::proxy::copy;
use crate::tls::HandshakeFailure;
use crate::tunnel::stream::H2Stream;
use crate::tunnel::wire::{self, Refusal};
use crate::upstream::{Origin, Target};

/// Accepts tunnel connections until the gateway starts draining.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, gw: Arc<Gateway>) {
    let drain = gw.drain.clone();
    loop {
        let (tcp, remote) = tokio::select! {
            biased;
            _ = drain.stopping() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    crate::proxy::listener::accept_error(&e).await;
                    continue;
                }
            },
        };
        drain.spawn(handle_connection(tcp, remote, acceptor.clone(), gw.clone()));
    }
}

/// Handshake, identify the peer, then serve its streams.
async fn handle_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    gw: Arc<Gateway>,
) {
    let _ = tcp.set_nodelay(true);
    let timeout = gw.config.tunnel.handshake_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return refuse(&gw, remote, HandshakeFailure::classify(&e), &e.to_string()),
        Err(_) => {
            return refuse(
                &gw,
                remote,
                HandshakeFailure::Timeout,
                "handshake timed out",
            );
        }
    };
    let Some(peer) = identify(&gw, tls.get_ref().1.peer_certificates()) else {
        // The verifier already refused unknown identities; this is defence in depth.
        return refuse(
            &gw,
            remote,
            HandshakeFailure::BadIdentity,
            "no configured peer matches",
        );
    };
    let max_streams = gw.config.tunnel.max_streams_per_connection.max(1000);
    let mut conn = match crate::tunnel::server_builder(max_streams)
        .handshake::<_, Bytes>(tls)
        .await
    {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(%remote, %peer, error = %e, "HTTP/2 handshake on tunnel failed");
            return;
        }
    };
    tracing::info!(%remote, %peer, "tunnel accepted");
    let gauge = gw
        .metrics
        .tunnel_connections
        .with_label_values(&[&peer, "inbound"]);
    gauge.inc();
    let mut draining = false;
    loop {
        let next = tokio::select! {
            next = conn.accept() => next,
            _ = gw.drain.stopping(), if !draining => {
                // GOAWAY: the peer stops opening streams here and redials elsewhere; streams
                // in flight finish.
                draining = true;
                conn.graceful_shutdown();
                continue;
            }
        };
        match next {
            Some(Ok((request, respond))) if crate::tunnel::health::is_health_request(&request) => {
                // Not on the drain tracker: it ends by itself when the drain starts.
                tokio::spawn(crate::tunnel::health::serve(
                    respond,
                    peer.clone(),
                    gw.clone(),
                ));
            }
            Some(Ok((request, respond))) => {
                gw.drain
                    .spawn(handle_stream(request, respond, peer.clone(), gw.clone()));
            }
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "tunnel connection ended with an error");
                break;
            }
            None => break,
        }
    }
    gauge.dec();
    tracing::info!(%remote, %peer, "tunnel closed");
}

fn refuse(gw: &Gateway, remote: SocketAddr, reason: HandshakeFailure, detail: &str) {
    gw.metrics
        .tunnel_handshake_failures_total
        .with_label_values(&["unknown", "inbound", reason.as_str()])
        .inc();
    tracing::warn!(%remote, reason = reason.as_str(), detail, "tunnel handshake refused");
}

/// The configured peer whose identity the verified certificate carries.
fn identify(
    gw: &Gateway,
    certs: Option<&[rustls_pki_types::CertificateDer<'_>]>,
) -> Option<String> {
    let sans = CertSans::from_der(certs?.first()?)?;
    gw.config
        .peers
        .iter()
        .find(|p| p.identity.matches(&sans))
        .map(|p| p.name.clone())
}

/// Serves one `CONNECT` stream: authorize, connect locally, answer, copy.
async fn handle_stream(
    request: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: String,
    gw: Arc<Gateway>,
) {
    let outcome = |o: &str| {
        gw.metrics
            .tunnel_streams_total
            .with_label_values(&[&peer, "inbound", o])
            .inc()
    };
    let svc = match authorize(&request, &gw) {
        Ok(svc) => svc,
        Err(refusal) => {
            tracing::info!(%peer, authority = ?request.uri().authority().map(|a| a.as_str()), reason = refusal.reason(), "tunnel stream refused");
            outcome(refusal.reason());
            let _ = respond.send_response(wire::refusal_response(refusal), true);
            return;
        }
    };
    let mut attempts = crate::upstream::Attempts::default();
    let connected = match crate::upstream::connect(&svc, Origin::Peer, &mut attempts, &gw.metrics)
        .await
    {
        Ok(connected) => connected,
        Err(e) => {
            tracing::warn!(%peer, service = %svc.key(), error = %e, "tunnel stream found no upstream");
            outcome(e.refusal().reason());
            let _ = respond.send_response(wire::refusal_response(e.refusal()), true);
            return;
        }
    };
    let zone = match &connected.target {
        Target::Endpoint { zone, .. } => zone.clone(),
        Target::Peer { .. } => unreachable!("Origin::Peer never reaches a peer"),
    };
    let send = match respond.send_response(wire::connected_response(&zone), false) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "peer reset the stream before it connected");
            return;
        }
    };
    outcome("connected");
    let active = gw
        .metrics
        .tunnel_streams_active
        .with_label_values(&[&peer, "inbound"]);
    active.inc();
    let downstream = H2Stream::new(send, request.into_body());
    let result = copy::proxy(downstream, connected.io, svc.config.idle_timeout, &gw.drain).await;
    drop(connected.in_flight);
    active.dec();
    gw.metrics
        .tunnel_received_bytes_total
        .with_label_values(&[&peer, "inbound"])
        .inc_by(result.downstream_to_upstream);
    gw.metrics
        .tunnel_sent_bytes_total
        .with_label_values(&[&peer, "inbound"])
        .inc_by(result.upstream_to_downstream);
    if let Err(e) = &result.result {
        tracing::debug!(%peer, service = %svc.key(), error = %e, "tunnel stream ended with an error");
    }
}

/// Parses the request and checks the service is known, exported and we are not draining.
fn authorize(
    request: &Request<h2::RecvStream>,
    gw: &Gateway,
) -> Result<Arc<crate::balancer::Balancer>, Refusal> {
    let req = wire::parse_connect(request)?;
    let svc = gw
        .balancers
        .get(&req.service)
        .ok_or(Refusal::UnknownService)?;
    if !svc.config.exported {
        return Err(Refusal::NotExported);
    }
    if gw.drain.is_stopping() {
        return Err(Refusal::Draining);
    }
    Ok(svc.clone())
}
