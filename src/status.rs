//! `strait status`: tables of tunnels and endpoints, read from a running gateway's admin API.

use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Fetches `/debug/tunnels` and `/debug/endpoints` from `admin` and prints them.
pub async fn print(admin: &str) -> anyhow::Result<ExitCode> {
    let tunnels = get_json(admin, "/debug/tunnels").await?;
    let endpoints = get_json(admin, "/debug/endpoints").await?;
    println!("gateway {}", tunnels["gateway"].as_str().unwrap_or("?"));
    println!();
    println!(
        "{:<16} {:<14} {:<24} {:<5} {:>5} {:>8} {:>10}",
        "PEER", "REGION", "ADDRESS", "UP", "CONNS", "RTT_MS", "RECONNECTS"
    );
    for p in tunnels["peers"].as_array().into_iter().flatten() {
        let conns = p["connections"].as_array().map_or(0, Vec::len);
        let rtt = p["connections"][0]["rtt_ms"].as_f64().unwrap_or(0.0);
        println!(
            "{:<16} {:<14} {:<24} {:<5} {:>5} {:>8.2} {:>10}",
            p["peer"].as_str().unwrap_or(""),
            p["region"].as_str().unwrap_or(""),
            p["address"].as_str().unwrap_or(""),
            if p["up"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            conns,
            rtt,
            p["reconnects"]
        );
    }
    println!();
    println!(
        "{:<28} {:<6} {:<22} {:<12} {:>9} {:>9}",
        "SERVICE", "PROTO", "ENDPOINT", "ZONE", "CONNECTS", "FAILURES"
    );
    for s in endpoints["services"].as_array().into_iter().flatten() {
        let name = s["service"].as_str().unwrap_or("");
        let proto = s["protocol"].as_str().unwrap_or("");
        let eps = s["endpoints"].as_array().cloned().unwrap_or_default();
        if eps.is_empty() {
            println!("{name:<28} {proto:<6} {:<22}", "(none here: peers only)");
        }
        for ep in eps {
            println!(
                "{name:<28} {proto:<6} {:<22} {:<12} {:>9} {:>9}",
                ep["address"].as_str().unwrap_or(""),
                ep["zone"].as_str().unwrap_or(""),
                ep["connects"],
                ep["connect_failures"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One GET over a fresh HTTP/1.1 connection.
pub(crate) async fn get_json(admin: &str, path: &str) -> anyhow::Result<Value> {
    let tcp = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| {
            format!("cannot reach the admin API at {admin}; is the gateway running?")
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, admin)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "GET {path} answered {}",
        resp.status()
    );
    let body = resp.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&body).with_context(|| format!("GET {path} did not return JSON"))
}
