//! HTTP request retries: an endpoint that accepts and never answers costs a request one
//! per-try timeout, not the request itself; the timeouts eject it.

mod support;

use std::time::{Duration, Instant};

use strait::demo::mocks::{Fault, MockHttp, http_get};
use strait::demo::topology::Topology;
use support::metric;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_endpoint_costs_one_per_try_timeout_and_gets_ejected() {
    strait::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    // Tier 0: an endpoint that accepts and never answers; tier 1: one that works.
    let stuck = MockHttp::start("api", "zone-1", "127.0.80.11:0".parse().unwrap(), None)
        .await
        .unwrap();
    stuck.set_fault(Fault::Blackhole).await.unwrap();
    let good = MockHttp::start("api", "zone-2", "127.0.80.12:0".parse().unwrap(), None)
        .await
        .unwrap();

    let mut topo = Topology::new(dir.path()).unwrap();
    let gw = topo
        .gateway("gw-r", "region-r", "zone-1", "127.0.80.1".parse().unwrap())
        .unwrap();
    let svc = gw.service(
        "api.default:8080",
        "http",
        false,
        vec![
            (stuck.address(), "zone-1".into()),
            (good.address(), "zone-2".into()),
        ],
    );
    svc.extra = "\n[services.retry]\nper_try_timeout = \"200ms\"\n\n[services.outlier_detection]\nconsecutive_5xx_errors = 2\nmax_ejection_percent = 100\n".into();
    let http = gw.listener("http", "http", None).unwrap();
    topo.write_configs().unwrap();
    let config = topo.load("gw-r").unwrap();
    let metrics = strait::metrics::Metrics::new();
    let sockets = topo.take_sockets("gw-r");
    let _bound = strait::app::bind_prebound(config, metrics.clone(), sockets)
        .await
        .unwrap();

    for i in 0..10 {
        let start = Instant::now();
        let (status, _, body) = http_get(http, "api.default", "/").await.unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(
            body.contains("zone-2"),
            "request {i} answered by the working endpoint: {body}"
        );
        // One per-try timeout at most, plus a retry backoff: never the client's patience.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            start.elapsed()
        );
    }
    let svc = "api.default:8080";
    assert_eq!(
        metric(
            &metrics,
            "strait_request_retries_total",
            &[("service", svc)]
        ),
        2.0,
        "two timeouts, then ejected"
    );
    assert_eq!(
        metric(
            &metrics,
            "strait_outlier_ejections_enforced_total",
            &[
                ("service", svc),
                ("tier", "0"),
                ("reason", "consecutive_5xx")
            ]
        ),
        1.0
    );
    assert_eq!(
        metric(&metrics, "strait_serving_tier", &[("service", svc)]),
        1.0
    );
    assert_eq!(good.requests(), 10);
}
