//! The tunnel's wire contract for proxied connections (see `WIRE.md` beside this file): one
//! HTTP/2 `CONNECT` stream per connection, `:authority` naming the service, a version header,
//! and a status that says whether the stream is connected or why not. Pure functions, so the
//! parsing is fuzzed and unit-tested without sockets.

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use crate::config::ServiceKey;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Header carrying the protocol version, on requests and responses.
pub const VERSION_HEADER: &str = "strait-version";
/// Informational header naming the calling gateway (the certificate is authoritative).
pub const CALLER_HEADER: &str = "strait-caller";
/// Header explaining a refusal.
pub const REASON_HEADER: &str = "strait-reason";
/// Header naming the zone of the endpoint a connected stream reached.
pub const ZONE_HEADER: &str = "strait-zone";

/// A parsed request to open a stream to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub service: ServiceKey,
    /// The calling gateway's self-declared name, if sent.
    pub caller: Option<String>,
}

/// Why a stream was not connected. Each maps to one status and one `strait-reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed tunnel request")]
    BadRequest,
    #[error("unsupported tunnel protocol version")]
    UnsupportedVersion,
    #[error("service is not known to the peer")]
    UnknownService,
    #[error("service is not exported by the peer")]
    NotExported,
    #[error("peer has no healthy endpoint for the service")]
    NoHealthyEndpoint,
    #[error("peer is draining")]
    Draining,
    #[error("every upstream attempt at the peer failed")]
    UpstreamFailed,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::BadRequest | Refusal::UnsupportedVersion => StatusCode::BAD_REQUEST,
            Refusal::UnknownService | Refusal::NotExported => StatusCode::FORBIDDEN,
            Refusal::NoHealthyEndpoint | Refusal::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UpstreamFailed => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `strait-reason` value; also a metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad-request",
            Refusal::UnsupportedVersion => "unsupported-version",
            Refusal::UnknownService => "unknown-service",
            Refusal::NotExported => "not-exported",
            Refusal::NoHealthyEndpoint => "no-healthy-endpoint",
            Refusal::Draining => "draining",
            Refusal::UpstreamFailed => "upstream-failed",
        }
    }

    /// Reads a refusal back from a response; unknown reasons fall back on the status.
    pub fn from_response(status: StatusCode, headers: &HeaderMap) -> Refusal {
        let reason = headers.get(REASON_HEADER).and_then(|v| v.to_str().ok());
        let all = [
            Refusal::BadRequest,
            Refusal::UnsupportedVersion,
            Refusal::UnknownService,
            Refusal::NotExported,
            Refusal::NoHealthyEndpoint,
            Refusal::Draining,
            Refusal::UpstreamFailed,
        ];
        if let Some(r) = all.iter().find(|r| Some(r.reason()) == reason) {
            return *r;
        }
        match status {
            StatusCode::FORBIDDEN => Refusal::NotExported,
            StatusCode::SERVICE_UNAVAILABLE => Refusal::NoHealthyEndpoint,
            StatusCode::BAD_GATEWAY => Refusal::UpstreamFailed,
            _ => Refusal::BadRequest,
        }
    }
}

/// Builds the request a dialing gateway sends for `service`.
pub fn connect_request(service: &ServiceKey, caller: &str) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::CONNECT;
    // `ServiceKey` displays as `name.namespace:port`, always a valid authority.
    *req.uri_mut() = http::Uri::builder()
        .authority(service.to_string())
        .build()
        .expect("a service key is a valid authority");
    let headers = req.headers_mut();
    headers.insert(VERSION_HEADER, HeaderValue::from(VERSION));
    if let Ok(caller) = HeaderValue::from_str(caller) {
        headers.insert(CALLER_HEADER, caller);
    }
    req
}

/// Parses a received stream request; the error is the refusal to answer with.
pub fn parse_connect<B>(req: &Request<B>) -> Result<ConnectRequest, Refusal> {
    if req.method() != Method::CONNECT {
        return Err(Refusal::BadRequest);
    }
    let version = req
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or(Refusal::BadRequest)?;
    if version != VERSION {
        return Err(Refusal::UnsupportedVersion);
    }
    let authority = req.uri().authority().ok_or(Refusal::BadRequest)?;
    let service = authority
        .as_str()
        .parse()
        .map_err(|_| Refusal::BadRequest)?;
    let caller = req
        .headers()
        .get(CALLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(ConnectRequest { service, caller })
}

/// The answer to a stream that reached an endpoint in `zone`.
pub fn connected_response(zone: &str) -> Response<()> {
    let mut resp = Response::new(());
    resp.headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from(VERSION));
    if let Ok(zone) = HeaderValue::from_str(zone) {
        resp.headers_mut().insert(ZONE_HEADER, zone);
    }
    resp
}

/// The answer to a refused stream.
pub fn refusal_response(refusal: Refusal) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = refusal.status();
    let headers = resp.headers_mut();
    headers.insert(VERSION_HEADER, HeaderValue::from(VERSION));
    headers.insert(REASON_HEADER, HeaderValue::from_static(refusal.reason()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let key: ServiceKey = "mockb.default:8080".parse().unwrap();
        let req = connect_request(&key, "gw-a");
        assert_eq!(
            parse_connect(&req),
            Ok(ConnectRequest {
                service: key,
                caller: Some("gw-a".into())
            })
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let key: ServiceKey = "mockb.default:8080".parse().unwrap();
        let mut no_version = connect_request(&key, "gw-a");
        no_version.headers_mut().remove(VERSION_HEADER);
        assert_eq!(parse_connect(&no_version), Err(Refusal::BadRequest));

        let mut future = connect_request(&key, "gw-a");
        future
            .headers_mut()
            .insert(VERSION_HEADER, HeaderValue::from(2));
        assert_eq!(parse_connect(&future), Err(Refusal::UnsupportedVersion));

        let mut get = connect_request(&key, "gw-a");
        *get.method_mut() = Method::GET;
        assert_eq!(parse_connect(&get), Err(Refusal::BadRequest));

        let mut bad = connect_request(&key, "gw-a");
        *bad.uri_mut() = http::Uri::from_static("mockb:8080");
        assert_eq!(parse_connect(&bad), Err(Refusal::BadRequest));
    }

    #[test]
    fn refusals_round_trip_through_responses() {
        for r in [
            Refusal::NotExported,
            Refusal::UnknownService,
            Refusal::NoHealthyEndpoint,
            Refusal::UpstreamFailed,
            Refusal::Draining,
        ] {
            let resp = refusal_response(r);
            assert_eq!(Refusal::from_response(resp.status(), resp.headers()), r);
        }
        assert_eq!(
            Refusal::from_response(StatusCode::FORBIDDEN, &HeaderMap::new()),
            Refusal::NotExported
        );
    }
}
