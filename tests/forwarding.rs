//! Traffic through a real gateway pair: each listener kind, half-close, a 1 GiB transfer and
//! a thousand concurrent connections.

mod support;

use std::time::Duration;

use support::{Pair, TcpPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_h2c_tls_and_tcp_round_trips_cross_the_tunnel() {
    let pair = Pair::start().await;
    let http = pair.listener("http");
    let expected = format!(
        "-> web(version: zone-b1, ip: {})",
        pair.demo.web.address().ip()
    );

    let (status, headers, body) = strait::demo::mocks::http_get(http, "web.default", "/x")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, expected);
    assert_eq!(headers["strait-served-by"], "gw-b");

    let fqdn = strait::demo::mocks::http_get(http, "web.default.svc.cluster.local:8080", "/")
        .await
        .unwrap();
    assert_eq!(fqdn.2, expected);

    assert_eq!(
        strait::demo::h2c_get(http, "web.default").await.unwrap(),
        expected
    );

    // TLS passthrough: the client verifies the backend's own certificate through two gateways.
    let reply = strait::demo::tls_hello(pair.listener("tls"), &pair.ca_path(), "hi")
        .await
        .unwrap();
    assert_eq!(reply, "hello from secure: hi");

    let payload = vec![7u8; 100_000];
    let back = strait::demo::echo_roundtrip(pair.listener("echo"), &payload)
        .await
        .unwrap();
    assert_eq!(back, payload);

    let a = pair.metrics("gw-a");
    // Connections are counted when they end, just after the client has seen EOF.
    let ended = |protocol: &'static str, service: &'static str| {
        let labels = [
            ("protocol", protocol),
            ("service", service),
            ("tier", "2"),
            ("outcome", "ok"),
        ];
        support::eventually(Duration::from_secs(5), move || async move {
            support::metric(a, "strait_connections_total", &labels) >= 1.0
        })
    };
    assert!(ended("tcp", "echo.default:9000").await && ended("tls", "secure.default:8443").await);
    assert_eq!(
        support::metric(
            a,
            "strait_requests_total",
            &[
                ("service", "web.default:8080"),
                ("tier", "2"),
                ("outcome", "2xx")
            ]
        ),
        3.0
    );
    assert_eq!(
        support::metric(
            a,
            "strait_connections_total",
            &[
                ("protocol", "tcp"),
                ("service", "echo.default:9000"),
                ("tier", "2"),
                ("outcome", "ok")
            ]
        ),
        1.0
    );
    assert_eq!(
        support::metric(
            a,
            "strait_connections_total",
            &[
                ("protocol", "tls"),
                ("service", "secure.default:8443"),
                ("tier", "2"),
                ("outcome", "ok")
            ]
        ),
        1.0
    );
    assert!(
        support::metric(
            a,
            "strait_tunnel_sent_bytes_total",
            &[("peer", "gw-b"), ("direction", "outbound")]
        ) >= 100_000.0
    );
    let b = pair.metrics("gw-b");
    assert!(
        support::metric(
            b,
            "strait_tunnel_streams_total",
            &[
                ("peer", "gw-a"),
                ("direction", "inbound"),
                ("outcome", "connected")
            ]
        ) >= 5.0
    );
}

/// A backend that reports what it saw: after the client's EOF it writes "got N" and, only
/// then, closes — so the client's half-closed connection must still carry the reply.
async fn half_close_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.20.21:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                tcp.read_to_end(&mut got).await.unwrap();
                tcp.write_all(format!("got {}", got.len()).as_bytes())
                    .await
                    .unwrap();
                tcp.shutdown().await.unwrap();
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_crosses_the_tunnel_both_ways() {
    let pair = Pair::start().await;
    // Client half-closes first; the server answers afterwards (client → server direction).
    let echo = pair.listener("echo");
    let mut tcp = TcpStream::connect(echo).await.unwrap();
    tcp.write_all(b"abc").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut back = Vec::new();
    tcp.read_to_end(&mut back).await.unwrap();
    assert_eq!(
        back, b"abc",
        "echo finished after the client's FIN crossed the tunnel"
    );

    // Server half-closes first while the client keeps sending (server → client direction):
    // an upstream that speaks, closes its write side, then still reads.
    let listener = TcpListener::bind("127.0.20.22:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        tcp.write_all(b"banner").await.unwrap();
        tcp.shutdown().await.unwrap(); // FIN towards the client, read side stays open
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.unwrap();
        rest
    });
    let gw = TcpPair::start(addr).await;
    let mut tcp = TcpStream::connect(gw.listen).await.unwrap();
    let mut banner = Vec::new();
    tcp.read_to_end(&mut banner).await.unwrap();
    assert_eq!(
        banner, b"banner",
        "EOF from the server arrived while our side is open"
    );
    tcp.write_all(b"still talking").await.unwrap();
    tcp.shutdown().await.unwrap();
    assert_eq!(server.await.unwrap(), b"still talking");

    let (addr, _task) = half_close_server().await;
    let gw2 = TcpPair::start(addr).await;
    let mut tcp = TcpStream::connect(gw2.listen).await.unwrap();
    tcp.write_all(&[1u8; 5000]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "got 5000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_through_one_pair() {
    let pair = Pair::start().await;
    let echo = pair.listener("echo");
    // Open all thousand first, so they are truly concurrent, then talk on each.
    let mut conns = Vec::with_capacity(1000);
    for _ in 0..1000 {
        conns.push(TcpStream::connect(echo).await.unwrap());
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut tcp)| {
            tokio::spawn(async move {
                let msg = format!("connection {i}");
                tcp.write_all(msg.as_bytes()).await.unwrap();
                tcp.shutdown().await.unwrap();
                let mut back = String::new();
                tcp.read_to_string(&mut back).await.unwrap();
                assert_eq!(back, msg);
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("in time")
            .expect("task ok");
    }
    let a = pair.metrics("gw-a");
    let labels = [
        ("protocol", "tcp"),
        ("service", "echo.default:9000"),
        ("tier", "2"),
        ("outcome", "ok"),
    ];
    // Connections are counted when they end, just after the client has seen EOF.
    let all = support::eventually(Duration::from_secs(10), || async {
        support::metric(a, "strait_connections_total", &labels) >= 1000.0
    })
    .await;
    assert!(all, "all 1000 connections counted ok");
    assert_eq!(
        support::metric(a, "strait_connections_total", &labels),
        1000.0
    );
    // A thousand streams need ten connections at the default cap of 100 streams each.
    let conns = support::metric(
        a,
        "strait_tunnel_connections",
        &[("peer", "gw-b"), ("direction", "outbound")],
    );
    assert!(
        conns >= 2.0,
        "the pool grew past one connection under the stream cap ({conns})"
    );
}
