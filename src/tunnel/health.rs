//! Health advertisement over the tunnel (see `WIRE.md`). The dialing side opens one
//! `GET /strait/v1/health` stream per peer; the accepting side answers 200 and then writes one
//! JSON message per line: its exported services' healthy/total endpoints per zone, sent on
//! change (debounced) and as a heartbeat. It shares fate with the data path: no extra port and
//! no credentials for the other cluster's API.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::balancer::ZoneHealth;
use crate::gateway::Gateway;
use crate::tunnel::client::{Conn, PeerPool};
use crate::tunnel::wire;

/// Path of the health stream.
pub const PATH: &str = "/strait/v1/health";
/// Changes are batched for this long, so a burst of ejections is one message.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// A message is sent at least this often even without change.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Longest line accepted; a peer with thousands of services stays far below.
const MAX_LINE: usize = 1 << 20;

/// One advertisement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Message format version.
    pub v: u32,
    /// The sending gateway.
    pub gateway: String,
    /// Increases by one per message on a stream.
    pub seq: u64,
    /// Sender's wall clock, Unix milliseconds (for propagation measurements only).
    pub sent_ms: u64,
    pub services: Vec<ServiceHealth>,
}

/// One exported service's local health at the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub service: String,
    pub zones: Vec<ZoneHealth>,
}

/// Whether an accepted stream is the health stream.
pub fn is_health_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET && req.uri().path() == PATH
}

/// The request a dialing gateway sends.
pub fn request(caller: &str) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = http::Uri::builder()
        .scheme("https")
        .authority("strait")
        .path_and_query(PATH)
        .build()
        .expect("static health URI");
    req.headers_mut()
        .insert(wire::VERSION_HEADER, http::HeaderValue::from(wire::VERSION));
    if let Ok(v) = http::HeaderValue::from_str(caller) {
        req.headers_mut().insert(wire::CALLER_HEADER, v);
    }
    req
}

/// The current advertisement of `gw`: every exported service with its local zones.
pub fn snapshot(gw: &Gateway, seq: u64) -> Message {
    let mut services: Vec<ServiceHealth> = gw
        .balancers
        .values()
        .filter(|b| b.config.exported)
        .map(|b| ServiceHealth {
            service: b.key().to_string(),
            zones: b.local_health(),
        })
        .collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));
    Message {
        v: 1,
        gateway: gw.config.gateway.name.clone(),
        seq,
        sent_ms: unix_ms(),
        services,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Serves a peer's health stream until it or this gateway goes away.
pub async fn serve(mut respond: SendResponse<Bytes>, peer: String, gw: Arc<Gateway>) {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(wire::VERSION_HEADER, http::HeaderValue::from(wire::VERSION));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    let Ok(mut send) = respond.send_response(resp, false) else {
        return;
    };
    let mut changes = gw.local_health.subscribe();
    let mut last: Option<Vec<ServiceHealth>> = None;
    let mut seq = 0;
    let mut send_now = true;
    loop {
        if send_now {
            let message = snapshot(&gw, seq);
            let mut line = serde_json::to_vec(&message).expect("advert serializes");
            line.push(b'\n');
            if send.send_data(Bytes::from(line), false).is_err() {
                return;
            }
            gw.metrics
                .health_adverts_sent_total
                .with_label_values(&[&peer])
                .inc();
            last = Some(message.services);
            seq += 1;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(DEBOUNCE).await;
                changes.mark_unchanged();
                // Snapshots rebuild for many reasons; send only what the peer lacks.
                send_now = last.as_ref() != Some(&snapshot(&gw, seq).services);
            }
            _ = tokio::time::sleep(HEARTBEAT) => send_now = true,
            _ = gw.drain.stopping() => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
        }
    }
}

/// Reads a peer's health stream on `conn` until it ends, applying each message.
pub async fn receive(pool: &Arc<PeerPool>, conn: &Arc<Conn>) -> anyhow::Result<()> {
    let mut send = conn.sender().ready().await?;
    let (response, _) = send.send_request(request(pool.local_name()), true)?;
    let response = response.await?;
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "peer answered {} to the health stream",
        response.status()
    );
    let mut body = response.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            match serde_json::from_slice::<Message>(&line) {
                Ok(message) => pool.apply_advert(message),
                Err(e) => {
                    tracing::warn!(peer = pool.name(), error = %e, "unreadable health message ignored")
                }
            }
        }
        anyhow::ensure!(
            buf.len() <= MAX_LINE,
            "health message longer than {MAX_LINE} bytes"
        );
    }
    Ok(())
}
