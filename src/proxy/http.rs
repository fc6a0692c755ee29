//! `http` listeners: HTTP/1.1 and h2c (detected per connection by hyper), routed by `Host` or
//! `:authority`. The gateway sees each request and its status, so it can count outcomes per
//! service (and, with outlier detection, eject endpoints that answer 5xx). Upstreams always
//! speak HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::gateway::Gateway;
use crate::upstream::{Origin, ServicePool, Target};

/// Response body: the upstream's streamed body or a short local message.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Serves one client connection of an `http` listener until the client or the drain ends it.
pub async fn handle(tcp: TcpStream, remote: SocketAddr, listener: String, gw: Arc<Gateway>) {
    let drain = gw.drain.clone();
    let service = service_fn(move |req| {
        let gw = gw.clone();
        let listener = listener.clone();
        async move { Ok::<_, Infallible>(serve_request(req, remote, &listener, &gw).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = drain.stopping() => {
            // Finish the request in flight, then close (HTTP/1.1 `Connection: close`, h2 GOAWAY).
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                _ = drain.forced() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "http client connection ended with an error");
    }
}

/// Routes, connects and forwards one request.
async fn serve_request(
    req: Request<Incoming>,
    remote: SocketAddr,
    listener: &str,
    gw: &Gateway,
) -> Response<Body> {
    let start = Instant::now();
    let Some(svc) = route(&req, gw) else {
        gw.metrics
            .unrouted_total
            .with_label_values(&[listener, "unknown_host"])
            .inc();
        tracing::info!(%remote, listener, host = ?authority(&req), "no service for host");
        return local_response(StatusCode::NOT_FOUND, "no service for this host\n");
    };
    let service = svc.key().to_string();
    let (outcome, response) = match forward(req, &svc, gw).await {
        Ok(resp) => (status_class(resp.status()), resp),
        Err((outcome, resp)) => (outcome, resp),
    };
    gw.metrics
        .requests_total
        .with_label_values(&[&service, outcome])
        .inc();
    gw.metrics
        .request_duration_seconds
        .with_label_values(&[&service])
        .observe(start.elapsed().as_secs_f64());
    response
}

/// The service a request's authority names.
fn route(req: &Request<Incoming>, gw: &Gateway) -> Option<Arc<ServicePool>> {
    let key = gw.http_routes.lookup_authority(&authority(req)?)?;
    gw.services.get(key).cloned()
}

/// `:authority` for HTTP/2 and absolute-form requests, else the `Host` header.
fn authority(req: &Request<Incoming>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
}

/// Connects an upstream and sends the request over a fresh HTTP/1.1 connection.
async fn forward(
    req: Request<Incoming>,
    svc: &ServicePool,
    gw: &Gateway,
) -> Result<Response<Body>, (&'static str, Response<Body>)> {
    let connected = gw
        .upstreams
        .connect(svc, Origin::Local)
        .await
        .map_err(|e| {
            tracing::warn!(service = %svc.key(), error = %e, "no upstream for request");
            let status = match e.refusal().status() {
                StatusCode::SERVICE_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            (
                e.outcome(),
                local_response(status, "no upstream could be reached\n"),
            )
        })?;
    let upstream_failed = |e: hyper::Error| {
        tracing::warn!(service = %svc.key(), error = %e, "upstream request failed");
        (
            "upstream_failed",
            local_response(StatusCode::BAD_GATEWAY, "upstream request failed\n"),
        )
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connected.io))
        .await
        .map_err(upstream_failed)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream http connection ended with an error");
        }
    });
    let mut response = sender
        .send_request(to_upstream(req))
        .await
        .map_err(upstream_failed)?;
    strip_hop_by_hop(response.headers_mut());
    if let Target::Peer { peer, .. } = &connected.target {
        // Lets clients and the demo see which region answered.
        if let Ok(v) = HeaderValue::from_str(peer) {
            response.headers_mut().insert("strait-served-by", v);
        }
    }
    Ok(response.map(BodyExt::boxed))
}

/// Rewrites a client request for an HTTP/1.1 upstream: origin-form URI, `Host` set from the
/// authority, hop-by-hop headers removed.
fn to_upstream(mut req: Request<Incoming>) -> Request<Incoming> {
    if let Some(authority) = req.uri().authority().cloned()
        && !req.headers().contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, host);
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    if let Ok(uri) = path.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_11;
    strip_hop_by_hop(req.headers_mut());
    req
}

/// Removes RFC 9110 §7.6.1 connection-specific headers, including those named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A response generated by the gateway itself.
fn local_response(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert("strait-local-reply", HeaderValue::from_static("1"));
    resp
}
