//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz` (the process is alive),
//! `/readyz` (listeners bound and not draining), and JSON debug views of tunnels, endpoints
//! and the effective config with secrets masked.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::gateway::Gateway;

/// Serves admin requests until the process exits (it outlives the drain so probes and
/// scrapes keep answering while connections finish).
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                crate::proxy::listener::accept_error(&e).await;
                continue;
            }
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(route(&req, &gw)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn route(req: &Request<Incoming>, gw: &Gateway) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut resp = text(StatusCode::OK, gw.metrics.encode());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if gw.is_ready() => text(StatusCode::OK, "ready\n".into()),
        "/readyz" if gw.drain.is_stopping() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n".into()),
        "/debug/tunnels" => json_response(tunnels(gw)),
        "/debug/endpoints" => json_response(endpoints(gw)),
        "/debug/config" => json_response(config_json(&gw.config)),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics /healthz /readyz /debug/tunnels /debug/endpoints /debug/config\n".into(),
        ),
    }
}

fn tunnels(gw: &Gateway) -> Value {
    let peers: Vec<Value> = gw
        .peers
        .iter()
        .map(|p| {
            let status = p.status();
            json!({
                "peer": p.name(),
                "region": p.config().region,
                "address": p.config().address,
                "identity": p.config().identity.to_string(),
                "up": p.is_up(),
                "connections": p.connections(),
                "dials": status.dials,
                "reconnects": status.reconnects,
                "last_error": status.last_error,
                "advertised": p.adverts().into_iter().map(|(service, a)| json!({
                    "service": service.to_string(), "healthy": a.healthy, "total": a.total, "zones": a.zones,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "gateway": gw.config.gateway.name, "peers": peers })
}

/// Per service: tier health and loads, the serving tier, and per host its tier, zone,
/// health, counters, ejection count and ejected-until.
fn endpoints(gw: &Gateway) -> Value {
    let mut balancers: Vec<_> = gw.balancers.values().collect();
    balancers.sort_by(|a, b| a.key().cmp(b.key()));
    let services: Vec<Value> = balancers
        .into_iter()
        .map(|b| {
            let mut v = b.debug();
            v["protocol"] = json!(b.config.protocol.to_string());
            v["exported"] = json!(b.config.exported);
            v
        })
        .collect();
    json!({ "gateway": gw.config.gateway.name, "services": services })
}

/// The effective config. Key material is never loaded into it, but its path is masked too:
/// a debug endpoint should not map out where secrets live.
pub fn config_json(c: &Config) -> Value {
    json!({
        "source": c.source,
        "gateway": {
            "name": c.gateway.name, "region": c.gateway.region, "zone": c.gateway.zone,
            "drain_timeout": humantime::format_duration(c.gateway.drain_timeout).to_string(),
        },
        "admin": { "listen": c.admin.listen.to_string() },
        "tls": { "trust_bundle": c.tls.trust_bundle, "cert": c.tls.cert, "key": "***" },
        "tunnel": {
            "listen": c.tunnel.listen.to_string(),
            "handshake_timeout": humantime::format_duration(c.tunnel.handshake_timeout).to_string(),
            "ping_interval": humantime::format_duration(c.tunnel.ping_interval).to_string(),
            "ping_timeout": humantime::format_duration(c.tunnel.ping_timeout).to_string(),
            "max_streams_per_connection": c.tunnel.max_streams_per_connection,
            "connections_per_peer": c.tunnel.connections_per_peer,
        },
        "peers": c.peers.iter().map(|p| json!({
            "name": p.name, "region": p.region, "address": p.address,
            "identity": p.identity.to_string(), "trust_bundle": p.trust_bundle,
        })).collect::<Vec<_>>(),
        "services": c.services.iter().map(|s| json!({
            "service": s.key.to_string(), "protocol": s.protocol.to_string(), "exported": s.exported,
            "hosts": s.hosts,
            "endpoints": s.endpoints.iter().map(|e| json!({
                "address": e.address.to_string(), "zone": e.zone, "weight": e.weight,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "listeners": c.listeners.iter().map(|l| json!({
            "name": l.name, "protocol": l.protocol.to_string(), "listen": l.listen.to_string(),
            "service": l.service.as_ref().map(ToString::to_string),
        })).collect::<Vec<_>>(),
    })
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(value: Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(&value).expect("JSON values serialize");
    body.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}
