//! The admin listener: probes, debug views and a metrics exposition that passes
//! `promtool check metrics`.

mod support;

use std::process::Stdio;

use serde_json::Value;
use support::Pair;
use tokio::io::AsyncWriteExt;

async fn get(pair: &Pair, path: &str) -> (http::StatusCode, String) {
    let (status, _, body) = strait::demo::mocks::http_get(pair.admin("gw-a"), "admin", path)
        .await
        .unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_debug_views() {
    let pair = Pair::start().await;
    assert_eq!(get(&pair, "/healthz").await.0, 200);
    assert_eq!(get(&pair, "/readyz").await.0, 200);
    assert_eq!(get(&pair, "/nope").await.0, 404);

    let tunnels: Value = serde_json::from_str(&get(&pair, "/debug/tunnels").await.1).unwrap();
    assert_eq!(tunnels["peers"][0]["peer"], "gw-b");
    assert_eq!(tunnels["peers"][0]["up"], true);
    assert_eq!(
        tunnels["peers"][0]["identity"],
        "spiffe://strait.local/gateway/gw-b"
    );

    // Traffic first, so endpoint counters move on gw-b.
    strait::demo::mocks::http_get(pair.listener("http"), "web.default", "/")
        .await
        .unwrap();
    let (_, _, body) =
        strait::demo::mocks::http_get(pair.admin("gw-b"), "admin", "/debug/endpoints")
            .await
            .unwrap();
    let endpoints: Value = serde_json::from_str(&body).unwrap();
    let web = endpoints["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web.default:8080")
        .unwrap();
    let endpoint = &web["hosts"][0];
    assert_eq!(endpoint["kind"], "endpoint");
    assert_eq!(endpoint["zone"], "zone-b1");
    assert_eq!(endpoint["tier"], 0);
    assert_eq!(endpoint["health"], "healthy");
    assert_eq!(
        endpoint["successes"], 1,
        "one request reached it: {endpoint}"
    );
    assert_eq!(endpoint["outlier"]["ejections"], 0);
    assert_eq!(web["serving_tier"], 0);
    assert_eq!(web["tier_loads"][0], 100);
    // gw-a has no endpoint for web: its peer tier (2) serves, weighted by gw-b's advert.
    let (_, _, body) =
        strait::demo::mocks::http_get(pair.admin("gw-a"), "admin", "/debug/endpoints")
            .await
            .unwrap();
    let a: Value = serde_json::from_str(&body).unwrap();
    let web_a = a["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web.default:8080")
        .unwrap();
    assert_eq!(web_a["serving_tier"], 2, "{web_a}");
    assert_eq!(web_a["hosts"][0]["host"], "peer:gw-b");

    let (_, config) = get(&pair, "/debug/config").await;
    let json: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(json["tls"]["key"], "***");
    assert!(!config.contains("gw-a-key.pem"), "key path masked");
    assert!(!config.contains("PRIVATE KEY"));
    assert_eq!(json["gateway"]["name"], "gw-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let pair = Pair::start().await;
    // Move every kind of series: requests, streams, bytes, refusals.
    strait::demo::mocks::http_get(pair.listener("http"), "web.default", "/")
        .await
        .unwrap();
    strait::demo::mocks::http_get(pair.listener("http"), "internal.default", "/")
        .await
        .unwrap();
    strait::demo::echo_roundtrip(pair.listener("echo"), b"x")
        .await
        .unwrap();
    // Bytes are counted when the proxied connection ends, just after the client sees EOF.
    let counted = support::eventually(std::time::Duration::from_secs(5), || async {
        support::metric(
            pair.metrics("gw-a"),
            "strait_tunnel_sent_bytes_total",
            &[("peer", "gw-b"), ("direction", "outbound")],
        ) > 0.0
    })
    .await;
    assert!(counted, "tunnel bytes counted");
    let (status, body) = get(&pair, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "strait_tunnel_up{peer=\"gw-b\"} 1",
        "strait_tunnel_rtt_seconds",
        "strait_tunnel_streams_active",
        "strait_tunnel_sent_bytes_total",
        "strait_requests_total",
        "strait_connections_total",
        "strait_certificate_expiry_timestamp_seconds",
    ] {
        assert!(body.contains(name), "/metrics has {name}");
    }
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .await
        .unwrap();
    let out = promtool.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
