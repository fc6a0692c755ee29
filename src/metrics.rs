//! Every metric Strait exports, registered in one place on a private registry whose prefix is
//! `strait_`. Labels are bounded: configured peer and service names, fixed reason and outcome
//! enums, never client addresses or raw SNI.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Handles to every metric; cloned cheaply (each field is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// 1 while at least one tunnel connection to the peer is live.
    pub tunnel_up: IntGaugeVec,
    /// Last measured HTTP/2 PING round trip to the peer.
    pub tunnel_rtt_seconds: GaugeVec,
    /// Established tunnel connections by peer and direction.
    pub tunnel_connections: IntGaugeVec,
    /// Proxied streams open right now, by peer and direction.
    pub tunnel_streams_active: IntGaugeVec,
    /// Proxied streams by peer, direction and outcome.
    pub tunnel_streams_total: IntCounterVec,
    /// Payload bytes carried by tunnel streams, sent towards the peer.
    pub tunnel_sent_bytes_total: IntCounterVec,
    /// Payload bytes carried by tunnel streams, received from the peer.
    pub tunnel_received_bytes_total: IntCounterVec,
    /// Failed tunnel handshakes by peer (`unknown` when the caller could not be identified),
    /// direction and reason.
    pub tunnel_handshake_failures_total: IntCounterVec,
    /// Tunnel connections dialed again after one was lost.
    pub tunnel_reconnects_total: IntCounterVec,
    /// Local-listener connections by listener protocol, service, serving tier (`none` when no
    /// upstream was reached) and outcome.
    pub connections_total: IntCounterVec,
    /// Local-listener connections open right now by service.
    pub connections_active: IntGaugeVec,
    /// HTTP requests by service, serving tier and outcome (status class, or the failure).
    pub requests_total: IntCounterVec,
    /// HTTP request duration until the response head, by service.
    pub request_duration_seconds: HistogramVec,
    /// Upstream connect attempts that failed and were retried elsewhere, by service and
    /// target kind (`endpoint`, `peer`).
    pub connect_retries_total: IntCounterVec,
    /// Traffic that matched no route, by listener and reason.
    pub unrouted_total: IntCounterVec,
    /// `notAfter` of the gateway's own certificate, as a Unix timestamp.
    pub certificate_expiry_timestamp_seconds: Gauge,
    /// Always 1; labels carry the version.
    pub build_info: IntGaugeVec,
    /// Hosts ejected now, by service and tier.
    pub outlier_ejections_active: IntGaugeVec,
    /// Ejections carried out, by service, tier and reason.
    pub outlier_ejections_enforced_total: IntCounterVec,
    /// Outliers detected (enforced or not), by service, tier and reason.
    pub outlier_ejections_detected_total: IntCounterVec,
    /// Ejections skipped because the tier was at `max_ejection_percent`.
    pub outlier_ejections_overflow_total: IntCounterVec,
    /// 1 per ejected host, by service and endpoint; the series exists only while ejected.
    pub outlier_ejected: IntGaugeVec,
    /// Changes of the tier taking most of a service's traffic, by service and from/to tier.
    pub failovers_total: IntCounterVec,
    /// The tier taking most of a service's traffic now (-1: none can serve).
    pub serving_tier: IntGaugeVec,
    /// Health advertisements sent to a peer.
    pub health_adverts_sent_total: IntCounterVec,
    /// Health advertisements received from a peer.
    pub health_adverts_received_total: IntCounterVec,
    /// Healthy endpoints a peer advertises for a service.
    pub remote_healthy_endpoints: IntGaugeVec,
    /// HTTP requests sent again after a retriable response or reset, by service.
    pub request_retries_total: IntCounterVec,
}

/// Buckets from 0.5 ms to 10 s: loopback hops through cross-ocean ones.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// Creates a private registry with prefix `strait` and registers every metric in it.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("strait".into()), None).expect("static registry prefix");
        let r = &registry;
        let m = Metrics {
            tunnel_up: gauge_vec(
                r,
                "tunnel_up",
                "1 while at least one tunnel connection to the peer is live",
                &["peer"],
            ),
            tunnel_rtt_seconds: float_gauge_vec(
                r,
                "tunnel_rtt_seconds",
                "Last HTTP/2 PING round trip to the peer",
                &["peer"],
            ),
            tunnel_connections: gauge_vec(
                r,
                "tunnel_connections",
                "Established tunnel connections",
                &["peer", "direction"],
            ),
            tunnel_streams_active: gauge_vec(
                r,
                "tunnel_streams_active",
                "Proxied streams open now",
                &["peer", "direction"],
            ),
            tunnel_streams_total: counter_vec(
                r,
                "tunnel_streams_total",
                "Proxied tunnel streams by outcome",
                &["peer", "direction", "outcome"],
            ),
            tunnel_sent_bytes_total: counter_vec(
                r,
                "tunnel_sent_bytes_total",
                "Stream payload bytes sent to the peer",
                &["peer", "direction"],
            ),
            tunnel_received_bytes_total: counter_vec(
                r,
                "tunnel_received_bytes_total",
                "Stream payload bytes received from the peer",
                &["peer", "direction"],
            ),
            tunnel_handshake_failures_total: counter_vec(
                r,
                "tunnel_handshake_failures_total",
                "Failed tunnel handshakes by reason",
                &["peer", "direction", "reason"],
            ),
            tunnel_reconnects_total: counter_vec(
                r,
                "tunnel_reconnects_total",
                "Tunnel connections dialed again after one was lost",
                &["peer"],
            ),
            connections_total: counter_vec(
                r,
                "connections_total",
                "Local listener connections by outcome",
                &["protocol", "service", "tier", "outcome"],
            ),
            connections_active: gauge_vec(
                r,
                "connections_active",
                "Local listener connections open now",
                &["service"],
            ),
            requests_total: counter_vec(
                r,
                "requests_total",
                "HTTP requests by outcome",
                &["service", "tier", "outcome"],
            ),
            request_duration_seconds: histogram_vec(
                r,
                "request_duration_seconds",
                "HTTP request duration until the response head",
                &["service"],
            ),
            connect_retries_total: counter_vec(
                r,
                "connect_retries_total",
                "Failed upstream connects retried on another target",
                &["service", "target"],
            ),
            unrouted_total: counter_vec(
                r,
                "unrouted_total",
                "Traffic that matched no route",
                &["listener", "reason"],
            ),
            certificate_expiry_timestamp_seconds: {
                let g = Gauge::new(
                    "certificate_expiry_timestamp_seconds",
                    "notAfter of the gateway certificate (Unix time)",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            build_info: gauge_vec(r, "build_info", "Build information; always 1", &["version"]),
            outlier_ejections_active: gauge_vec(
                r,
                "outlier_ejections_active",
                "Hosts ejected now",
                &["service", "tier"],
            ),
            outlier_ejections_enforced_total: counter_vec(
                r,
                "outlier_ejections_enforced_total",
                "Ejections carried out",
                &["service", "tier", "reason"],
            ),
            outlier_ejections_detected_total: counter_vec(
                r,
                "outlier_ejections_detected_total",
                "Outliers detected, enforced or not",
                &["service", "tier", "reason"],
            ),
            outlier_ejections_overflow_total: counter_vec(
                r,
                "outlier_ejections_overflow_total",
                "Ejections skipped at max_ejection_percent",
                &["service", "tier"],
            ),
            outlier_ejected: gauge_vec(
                r,
                "outlier_ejected",
                "1 while the endpoint is ejected",
                &["service", "endpoint"],
            ),
            failovers_total: counter_vec(
                r,
                "failovers_total",
                "Changes of the tier serving most traffic",
                &["service", "from_tier", "to_tier"],
            ),
            serving_tier: gauge_vec(
                r,
                "serving_tier",
                "Tier serving most traffic now (-1: none)",
                &["service"],
            ),
            health_adverts_sent_total: counter_vec(
                r,
                "health_adverts_sent_total",
                "Health advertisements sent",
                &["peer"],
            ),
            health_adverts_received_total: counter_vec(
                r,
                "health_adverts_received_total",
                "Health advertisements received",
                &["peer"],
            ),
            remote_healthy_endpoints: gauge_vec(
                r,
                "remote_healthy_endpoints",
                "Healthy endpoints a peer advertises",
                &["peer", "service"],
            ),
            request_retries_total: counter_vec(
                r,
                "request_retries_total",
                "HTTP requests retried",
                &["service"],
            ),
            registry: registry.clone(),
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// The registry, for tests that gather directly.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn float_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let m = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let m = HistogramVec::new(opts, labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}
