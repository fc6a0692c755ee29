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
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::balancer::Balancer;
use crate::balancer::outlier::Outcome;
use crate::config::RetryOn;
use crate::gateway::Gateway;
use crate::upstream::{self, Attempts, ConnectError, Connected, Origin, Target};

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
    let Some(balancer) = route(&req, gw) else {
        gw.metrics
            .unrouted_total
            .with_label_values(&[listener, "unknown_host"])
            .inc();
        tracing::info!(%remote, listener, host = ?authority(&req), "no service for host");
        return local_response(StatusCode::NOT_FOUND, "no service for this host\n");
    };
    let service = balancer.key().to_string();
    let (tier, outcome, response) = match forward(req, &balancer, gw).await {
        Ok((tier, resp)) => (tier.to_string(), status_class(resp.status()), resp),
        Err(e) => ("none".to_owned(), e.outcome, e.response),
    };
    gw.metrics
        .requests_total
        .with_label_values(&[&service, &tier, outcome])
        .inc();
    gw.metrics
        .request_duration_seconds
        .with_label_values(&[&service])
        .observe(start.elapsed().as_secs_f64());
    response
}

/// The service a request's authority names.
fn route(req: &Request<Incoming>, gw: &Gateway) -> Option<Arc<Balancer>> {
    let key = gw.http_routes.lookup_authority(&authority(req)?)?;
    gw.balancers.get(key).cloned()
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

/// A request that got no upstream response worth returning.
struct Failed {
    outcome: &'static str,
    response: Response<Body>,
}

/// Sends the request upstream. Connect failures are retried inside [`upstream::connect`];
/// responses matching `retry.retry_on` (and resets before a response) are retried here on
/// another host, for idempotent requests without a body, with jittered exponential backoff.
async fn forward(
    req: Request<Incoming>,
    balancer: &Arc<Balancer>,
    gw: &Gateway,
) -> Result<(usize, Response<Body>), Failed> {
    let policy = &balancer.config.retry;
    let replayable = is_replayable(&req);
    let head = RequestHead::of(&req);
    let mut body = Some(req.into_body().boxed());
    let mut attempts = Attempts::default();
    let mut backoff = retry_backoff(policy.backoff_base, policy.backoff_max);
    let mut retries_left = if replayable { policy.attempts } else { 0 };
    loop {
        let connected = upstream::connect(balancer, Origin::Local, &mut attempts, &gw.metrics)
            .await
            .map_err(|e| {
                tracing::warn!(service = %balancer.key(), error = %e, "no upstream for request");
                let status = match e {
                    ConnectError::NoHealthyUpstream(_) => StatusCode::SERVICE_UNAVAILABLE,
                    ConnectError::AllFailed { .. } => StatusCode::BAD_GATEWAY,
                };
                Failed {
                    outcome: e.outcome(),
                    response: local_response(status, "no upstream could be reached\n"),
                }
            })?;
        let (host, tier) = (connected.host, connected.tier);
        let request_body = body.take().unwrap_or_else(empty_body);
        let result = tokio::time::timeout(
            policy.per_try_timeout,
            send(head.build(request_body), connected),
        )
        .await;
        let Ok(result) = result else {
            // No response head in time: Envoy's per-try timeout, a 504 to retries and a
            // local-origin timeout to outlier detection.
            tracing::warn!(service = %balancer.key(), host = %balancer.host_label(host), timeout = ?policy.per_try_timeout, "upstream did not answer in time");
            balancer.report(host, Outcome::Timeout);
            if should_retry(&policy.retry_on, Some(StatusCode::GATEWAY_TIMEOUT)) && retries_left > 0
            {
                retries_left -= 1;
                gw.metrics
                    .request_retries_total
                    .with_label_values(&[&balancer.key().to_string()])
                    .inc();
                tokio::time::sleep(backoff.next().unwrap_or(policy.backoff_max)).await;
                continue;
            }
            return Err(Failed {
                outcome: "upstream_timeout",
                response: local_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream did not answer in time\n",
                ),
            });
        };
        let retry_on = match &result {
            Ok(resp) => {
                balancer.report(host, Outcome::Http(resp.status().as_u16()));
                should_retry(&policy.retry_on, Some(resp.status()))
            }
            Err(e) => {
                // Reset or closed before any response: Envoy counts it as a local-origin failure.
                tracing::debug!(service = %balancer.key(), host = %balancer.host_label(host), error = %e, "upstream reset before responding");
                balancer.report(host, Outcome::ConnectFailed);
                should_retry(&policy.retry_on, None)
            }
        };
        if retry_on && retries_left > 0 {
            retries_left -= 1;
            gw.metrics
                .request_retries_total
                .with_label_values(&[&balancer.key().to_string()])
                .inc();
            tokio::time::sleep(backoff.next().unwrap_or(policy.backoff_max)).await;
            continue;
        }
        return match result {
            Ok(resp) => Ok((tier, resp)),
            Err(_) => Err(Failed {
                outcome: "upstream_reset",
                response: local_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream closed the connection before responding\n",
                ),
            }),
        };
    }
}

/// One request over a fresh HTTP/1.1 connection on `connected`.
async fn send(req: Request<Body>, connected: Connected) -> Result<Response<Body>, hyper::Error> {
    let Connected {
        io,
        target,
        in_flight,
        ..
    } = connected;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // The host counts as busy until its connection (and so the response body) is done.
        let _in_flight = in_flight;
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream http connection ended with an error");
        }
    });
    let mut response = sender.send_request(req).await?;
    strip_hop_by_hop(response.headers_mut());
    if let Target::Peer { peer, .. } = &target
        && let Ok(v) = HeaderValue::from_str(peer)
    {
        // Lets clients and the demo see which region answered.
        response.headers_mut().insert("strait-served-by", v);
    }
    Ok(response.map(BodyExt::boxed))
}

/// Whether a response (or a reset, `None`) matches the retry policy.
fn should_retry(retry_on: &[RetryOn], status: Option<StatusCode>) -> bool {
    retry_on.iter().any(|r| match (r, status) {
        (RetryOn::Reset, None) => true,
        (RetryOn::Status5xx, Some(s)) => s.is_server_error(),
        (RetryOn::GatewayError, Some(s)) => matches!(s.as_u16(), 502..=504),
        (RetryOn::Status(code), Some(s)) => s.as_u16() == *code,
        _ => false,
    })
}

/// Idempotent methods without a body can be sent again (RFC 9110 §9.2.2).
fn is_replayable(req: &Request<Incoming>) -> bool {
    use http::Method;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    idempotent && req.body().size_hint().exact() == Some(0)
}

fn retry_backoff(
    base: std::time::Duration,
    max: std::time::Duration,
) -> impl Iterator<Item = std::time::Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What is needed to send the same request again.
struct RequestHead {
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl RequestHead {
    fn of(req: &Request<Incoming>) -> Self {
        RequestHead {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        }
    }

    fn build(&self, body: Body) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        to_upstream(req)
    }
}

/// Rewrites a client request for an HTTP/1.1 upstream: origin-form URI, `Host` set from the
/// authority, hop-by-hop headers removed.
fn to_upstream(mut req: Request<Body>) -> Request<Body> {
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
