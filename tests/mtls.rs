//! Who gets into a tunnel: every refusal is made during a real TLS handshake, counted under
//! its reason, and logged. One refusal comes from an independent client, `openssl s_client`.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use strait::certs::{Ca, IssueOptions};
use support::{Pair, eventually, gateway_cert, metric, peer_client, tls_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Log lines of this test binary, captured so refusals can be checked as logged.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("strait=info")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

/// Waits until gw-b counted a refusal with `reason`, and it was logged.
async fn refused_with(pair: &Pair, reason: &str) {
    let labels = [
        ("peer", "unknown"),
        ("direction", "inbound"),
        ("reason", reason),
    ];
    let counted = eventually(Duration::from_secs(5), || async {
        metric(
            pair.metrics("gw-b"),
            "strait_tunnel_handshake_failures_total",
            &labels,
        ) >= 1.0
    })
    .await;
    assert!(counted, "refusal counted under reason {reason}");
    assert!(
        logged(&format!("reason=\"{reason}\"")) || logged(&format!("reason={reason}")),
        "refusal logged with reason {reason}"
    );
}

/// Connects as a would-be peer and expects the tunnel to be closed on it: TLS 1.3 lets the
/// client finish its handshake before the server has judged the client certificate, so the
/// refusal shows as an alert or EOF on the first read.
async fn expect_refused(pair: &Pair, config: Arc<rustls::ClientConfig>) {
    match tls_connect(pair.tunnel("gw-b"), "gw-b", config).await {
        Err(_) => {}
        Ok(mut tls) => {
            let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                .await
                .expect("server answers");
            assert!(
                matches!(read, Err(_) | Ok(0)),
                "tunnel must not be usable: {read:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_peer_gets_in() {
    logs();
    let pair = Pair::start().await;
    let cert = gateway_cert(pair.ca(), "gw-a", &IssueOptions::default());
    let tls = tls_connect(
        pair.tunnel("gw-b"),
        "gw-b",
        peer_client(&pair.ca_path(), Some(&cert)),
    )
    .await
    .unwrap();
    let mut h2 = support::h2_over(tls).await;
    let key = "echo.default:9000".parse().unwrap();
    let (resp, _send) = h2
        .send_request(strait::tunnel::wire::connect_request(&key, "gw-a"), false)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused() {
    logs();
    let pair = Pair::start().await;
    expect_refused(&pair, peer_client(&pair.ca_path(), None)).await;
    refused_with(&pair, "no_client_cert").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    logs();
    let pair = Pair::start().await;
    let other = Ca::generate(strait::demo::topology::TRUST_DOMAIN).unwrap();
    let cert = gateway_cert(&other, "gw-a", &IssueOptions::default());
    expect_refused(&pair, peer_client(&pair.ca_path(), Some(&cert))).await;
    refused_with(&pair, "unknown_ca").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_ca_but_another_identity_is_refused() {
    logs();
    let pair = Pair::start().await;
    let cert = gateway_cert(pair.ca(), "intruder", &IssueOptions::default());
    expect_refused(&pair, peer_client(&pair.ca_path(), Some(&cert))).await;
    refused_with(&pair, "bad_identity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    logs();
    let pair = Pair::start().await;
    let now = time::OffsetDateTime::now_utc();
    let opts = IssueOptions {
        not_before: Some(now - time::Duration::days(30)),
        not_after: Some(now - time::Duration::days(1)),
        ..Default::default()
    };
    let cert = gateway_cert(pair.ca(), "gw-a", &opts);
    expect_refused(&pair, peer_client(&pair.ca_path(), Some(&cert))).await;
    refused_with(&pair, "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused() {
    logs();
    let pair = Pair::start().await;
    let mut tcp = tokio::net::TcpStream::connect(pair.tunnel("gw-b"))
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: gw-b\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));
    refused_with(&pair, "not_tls").await;
}

/// An independent client: OpenSSL offering only TLS 1.2, with a valid peer certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_tls12_only_client_is_refused() {
    logs();
    let pair = Pair::start().await;
    let dir = pair.dir.path();
    let cert = gateway_cert(pair.ca(), "gw-a", &IssueOptions::default());
    std::fs::write(dir.join("client.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("client-key.pem"), &cert.key_pem).unwrap();
    let out = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &pair.tunnel("gw-b").to_string(),
            "-tls1_2",
            "-brief",
        ])
        .arg("-cert")
        .arg(dir.join("client.pem"))
        .arg("-key")
        .arg(dir.join("client-key.pem"))
        .arg("-CAfile")
        .arg(pair.ca_path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl is installed (.ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "openssl must fail: {stderr}");
    assert!(
        stderr.contains("alert") || stderr.contains("version"),
        "openssl reports the refusal: {stderr}"
    );
    refused_with(&pair, "protocol_version").await;

    // The same client offering TLS 1.3 gets in: the refusal was about the version only.
    let ok = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &pair.tunnel("gw-b").to_string(),
            "-tls1_3",
            "-brief",
            "-verify_return_error",
        ])
        .arg("-cert")
        .arg(dir.join("client.pem"))
        .arg("-key")
        .arg(dir.join("client-key.pem"))
        .arg("-CAfile")
        .arg(pair.ca_path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(
        stderr.contains("TLSv1.3"),
        "openssl TLS 1.3 handshake succeeds: {stderr}"
    );
}
