//! What may cross a tunnel: only exported services, only to local endpoints, never onward to
//! another peer; and what local listeners do with traffic that matches no route.

mod support;

use std::time::Duration;

use http::StatusCode;
use strait::certs::IssueOptions;
use strait::config::ServiceKey;
use strait::tunnel::wire::{self, REASON_HEADER};
use support::{Pair, gateway_cert, metric, peer_client, tls_connect};

/// Opens a tunnel to `gateway` as the peer `as_peer` and asks for `service`.
async fn ask(
    pair: &Pair,
    gateway: &str,
    as_peer: &str,
    request: http::Request<()>,
) -> http::Response<h2::RecvStream> {
    let cert = gateway_cert(pair.ca(), as_peer, &IssueOptions::default());
    let tls = tls_connect(
        pair.tunnel(gateway),
        gateway,
        peer_client(&pair.ca_path(), Some(&cert)),
    )
    .await
    .unwrap();
    let mut h2 = support::h2_over(tls).await;
    let (resp, _send) = h2.send_request(request, false).unwrap();
    tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("answered")
        .unwrap()
}

fn connect(service: &str) -> http::Request<()> {
    let key: ServiceKey = service.parse().unwrap();
    wire::connect_request(&key, "test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexported_and_unknown_services_are_refused_and_reach_nothing() {
    let pair = Pair::start().await;
    let resp = ask(&pair, "gw-b", "gw-a", connect("internal.default:8081")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()[REASON_HEADER], "not-exported");

    let resp = ask(&pair, "gw-b", "gw-a", connect("nothing.default:1")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()[REASON_HEADER], "unknown-service");

    assert_eq!(
        pair.demo.internal.requests(),
        0,
        "the unexported backend saw nothing"
    );
    let b = pair.metrics("gw-b");
    assert_eq!(
        metric(
            b,
            "strait_tunnel_streams_total",
            &[
                ("peer", "gw-a"),
                ("direction", "inbound"),
                ("outcome", "not-exported")
            ]
        ),
        1.0
    );
    assert_eq!(
        metric(
            b,
            "strait_tunnel_streams_total",
            &[
                ("peer", "gw-a"),
                ("direction", "inbound"),
                ("outcome", "unknown-service")
            ]
        ),
        1.0
    );

    // The same through a local listener: gw-a finds no tier that serves it and says 503.
    let (status, _, _) =
        strait::demo::mocks::http_get(pair.listener("http"), "internal.default", "/")
            .await
            .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(pair.demo.internal.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_future_version_requests_are_refused() {
    let pair = Pair::start().await;
    let mut future = connect("echo.default:9000");
    future
        .headers_mut()
        .insert(wire::VERSION_HEADER, http::HeaderValue::from(99));
    let resp = ask(&pair, "gw-b", "gw-a", future).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[REASON_HEADER], "unsupported-version");

    let mut get = connect("echo.default:9000");
    *get.method_mut() = http::Method::GET;
    *get.uri_mut() = http::Uri::from_static("https://echo.default:9000/");
    let resp = ask(&pair, "gw-b", "gw-a", get).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// gw-a has no endpoint for web.default; its peer gw-b has. A stream *from* gw-b asking gw-a
/// for web.default must not be sent back out to gw-b (no transit, no loops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_from_a_peer_never_go_to_another_peer() {
    let pair = Pair::start().await;
    let before = pair.demo.web.requests();
    let resp = ask(&pair, "gw-a", "gw-b", connect("web.default:8080")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[REASON_HEADER], "no-healthy-endpoint");
    assert_eq!(pair.demo.web.requests(), before);
    let a = pair.metrics("gw-a");
    assert_eq!(
        metric(
            a,
            "strait_tunnel_streams_total",
            &[
                ("peer", "gw-b"),
                ("direction", "outbound"),
                ("outcome", "connected")
            ]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_and_unknown_host_are_closed_and_counted() {
    let pair = Pair::start().await;
    // A real TLS client naming a host no service answers to: the gateway closes the
    // connection before any upstream is involved.
    let roots = strait::tls::load_roots(&pair.ca_path()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(strait::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(pair.listener("tls"))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("unknown.example.com").unwrap();
    let result = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await;
    assert!(
        result.is_err(),
        "handshake cannot complete: the connection was closed"
    );
    let a = pair.metrics("gw-a");
    let counted = support::eventually(Duration::from_secs(5), || async {
        metric(
            a,
            "strait_unrouted_total",
            &[("listener", "tls"), ("reason", "unknown_sni")],
        ) == 1.0
    })
    .await;
    assert!(counted, "unknown SNI counted");

    let (status, headers, _) =
        strait::demo::mocks::http_get(pair.listener("http"), "nobody.example", "/")
            .await
            .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["strait-local-reply"], "1");
    assert_eq!(
        metric(
            a,
            "strait_unrouted_total",
            &[("listener", "http"), ("reason", "unknown_host")]
        ),
        1.0
    );
}
