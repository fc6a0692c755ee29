//! The `strait` binary as a user runs it: `check`, `certs`, `demo`, `demo --serve` and `demo fault`.

mod support;

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{StraitProcess, strait_bin};

/// Runs `strait ARGS` to completion, killing it if it takes longer than `limit`.
async fn strait<I, S>(args: I, limit: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let run = tokio::process::Command::new(strait_bin())
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, run).await {
        Ok(out) => out.expect("run strait"),
        Err(_) => panic!("strait {args:?} did not finish within {limit:?}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

const QUICK: Duration = Duration::from_secs(30);

#[tokio::test]
async fn check_accepts_the_examples_and_rejects_each_fixture() {
    let examples = toml_files("config");
    assert!(!examples.is_empty(), "no config/*.toml");
    for path in &examples {
        let out = strait(
            [
                "check".as_ref(),
                "--config".as_ref(),
                path.as_os_str(),
                "--no-files".as_ref(),
            ],
            QUICK,
        )
        .await;
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "check {}: {}\n{stdout}{}",
            path.display(),
            out.status,
            text(&out.stderr)
        );
        assert!(
            stdout.contains(": ok"),
            "check {}: {stdout}",
            path.display()
        );
    }

    let fixtures = toml_files("tests/fixtures/invalid");
    assert!(!fixtures.is_empty(), "no invalid fixtures");
    for path in &fixtures {
        let source = std::fs::read_to_string(path).unwrap();
        let expect = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a `# expect: ` first line", path.display()));
        let out = strait(
            [
                "check".as_ref(),
                "--config".as_ref(),
                path.as_os_str(),
                "--no-files".as_ref(),
            ],
            QUICK,
        )
        .await;
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "check {} should fail; stdout: {}",
            path.display(),
            text(&out.stdout)
        );
        assert!(
            stderr.contains(expect),
            "check {}: stderr lacks {expect:?}:\n{stderr}",
            path.display()
        );
        assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    }
}

#[tokio::test]
async fn check_names_a_missing_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut topo = strait::demo::topology::Topology::new(dir.path()).unwrap();
    topo.gateway("gw-x", "region-x", "zone-x1", Ipv4Addr::new(127, 0, 65, 1))
        .unwrap();
    topo.write_configs().unwrap();
    let config = topo.config_path("gw-x");
    let check = || {
        strait(
            ["check".as_ref(), "--config".as_ref(), config.as_os_str()],
            QUICK,
        )
    };

    let out = check().await;
    assert!(
        out.status.success(),
        "with its files in place: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(": ok"));

    let cert = dir.path().join("gw-x.pem");
    std::fs::remove_file(&cert).unwrap();
    let out = check().await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a missing certificate fails check");
    assert!(
        stderr.contains(&*cert.to_string_lossy()),
        "the error names {}:\n{stderr}",
        cert.display()
    );

    // --no-files does not look at them.
    let out = strait(
        [
            "check".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--no-files".as_ref(),
        ],
        QUICK,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn certs_makes_a_ca_and_a_gateway_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("pki");
    let out = out_dir.as_os_str();
    let ca = |force: bool| {
        let mut args: Vec<&OsStr> = ["certs", "ca", "--trust-domain", "example.test", "--out"]
            .map(OsStr::new)
            .to_vec();
        args.push(out);
        if force {
            args.push("--force".as_ref());
        }
        strait(args, QUICK)
    };

    let made = ca(false).await;
    assert!(made.status.success(), "certs ca: {}", text(&made.stderr));
    let issued = strait(
        [
            "certs".as_ref(),
            "issue".as_ref(),
            "--ca".as_ref(),
            out,
            "--name".as_ref(),
            "gw-a".as_ref(),
            "--out".as_ref(),
            out,
        ],
        QUICK,
    )
    .await;
    assert!(
        issued.status.success(),
        "certs issue: {}",
        text(&issued.stderr)
    );
    assert!(
        text(&issued.stdout).contains("spiffe://example.test/gateway/gw-a"),
        "{}",
        text(&issued.stdout)
    );

    for file in ["ca.pem", "ca-key.pem", "gw-a.pem", "gw-a-key.pem"] {
        assert!(out_dir.join(file).is_file(), "{file} written");
    }
    for key in ["ca-key.pem", "gw-a-key.pem"] {
        let mode = std::fs::metadata(out_dir.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key} mode {mode:o}");
    }

    let ca_pem = std::fs::read(out_dir.join("ca.pem")).unwrap();
    let again = ca(false).await;
    assert!(
        !again.status.success(),
        "a second `certs ca` without --force fails"
    );
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read(out_dir.join("ca.pem")).unwrap(),
        ca_pem,
        "the existing CA is left alone"
    );
    let forced = ca(true).await;
    assert!(
        forced.status.success(),
        "with --force: {}",
        text(&forced.stderr)
    );
    assert_ne!(
        std::fs::read(out_dir.join("ca.pem")).unwrap(),
        ca_pem,
        "--force replaced the CA"
    );

    // An independent reader of the certificate: OpenSSL.
    let san = tokio::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(out_dir.join("gw-a.pem"))
        .output()
        .await
        .expect("run openssl (installed in CI)");
    let san_text = text(&san.stdout);
    assert!(san.status.success(), "openssl: {}", text(&san.stderr));
    assert!(
        san_text.contains("URI:spiffe://example.test/gateway/gw-a"),
        "{san_text}"
    );
}

#[tokio::test]
async fn demo_runs_to_completion() {
    let start = Instant::now();
    let out = strait(["demo"], Duration::from_secs(60)).await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "demo: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let counts = last
        .strip_prefix("demo: ")
        .and_then(|rest| rest.strip_suffix(" failed"))
        .and_then(|rest| rest.split_once(" requests, "))
        .and_then(|(n, failed)| Some((n.parse::<u32>().ok()?, failed.parse::<u32>().ok()?)));
    assert!(
        matches!(counts, Some((n, 0)) if n > 0),
        "last line {last:?} is `demo: N requests, 0 failed`:\n{stdout}"
    );
    // The scenario's steps, each with its tally; the region outage is served from tier 2.
    for step in 0..=4 {
        assert!(
            stdout.contains(&format!("\nstep {step}: ")),
            "step {step} printed:\n{stdout}"
        );
    }
    for tally in [
        "step 1: sent 20, failed 0, mockb served by tier 0: 20, tier 1: 0, tier 2: 0",
        "step 2: sent 40, failed 0, mockb served by tier 0: 0, tier 1: 40, tier 2: 0",
        "step 3: sent 40, failed 0, mockb served by tier 0: 0, tier 1: 0, tier 2: 40",
    ] {
        assert!(stdout.contains(tally), "{tally:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("strait_failovers_total{from_tier=\"1\",service=\"mockb.default:8001\",to_tier=\"2\"} 0 -> 1"),
        "{stdout}"
    );
    eprintln!("strait demo took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serve_keeps_the_gateways_up_until_sigint() {
    let logs = tempfile::tempdir().unwrap();
    let mut demo = StraitProcess::spawn(
        "strait demo --serve",
        ["demo", "--serve"],
        &logs.path().join("demo.log"),
    );
    let info = demo.json_line(Duration::from_secs(30)).await;
    let ca_dir = PathBuf::from(info["ca_dir"].as_str().expect("ca_dir"));
    let _cleanup = RemoveDir(ca_dir.clone());
    assert!(ca_dir.join("ca.pem").is_file(), "{info}");

    let gateways = info["gateways"].as_array().expect("gateways");
    assert!(gateways.len() >= 2, "{info}");
    for g in gateways {
        for key in ["name", "region", "zone", "admin", "tunnel", "listeners"] {
            assert!(!g[key].is_null(), "gateway lacks {key}: {g}");
        }
    }
    let names: Vec<&str> = gateways.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["gw-1a", "gw-1b", "gw-h", "gw-k"], "{info}");
    let a = gateways
        .iter()
        .find(|g| g["name"] == "gw-1a")
        .expect("gw-1a in the demo");
    assert_eq!(a["region"], "ap-northeast-1");
    assert_eq!(a["zone"], "ap-northeast-1a");
    let addr = |v: &Value| -> SocketAddr { v.as_str().expect("address").parse().unwrap() };
    let admin = addr(&a["admin"]);
    let http = addr(
        &a["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["protocol"] == "http")
            .expect("gw-1a has an http listener")["address"],
    );
    let control = info["control"]
        .as_str()
        .expect("control address")
        .to_owned();

    let (status, _, body) = strait::demo::mocks::http_get(admin, "admin", "/readyz")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Through the tunnel: web runs only in cn-hangzhou.
    let (status, headers, body) = strait::demo::mocks::http_get(http, "web.default", "/")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("-> web("), "{body}");
    let served_by = headers["strait-served-by"].to_str().unwrap();
    assert!(["gw-h", "gw-k"].contains(&served_by), "{served_by}");

    // The scenario's chain, then the same faults `strait demo` shows, from the command line.
    let chain = || async {
        let (status, _, body) = strait::demo::mocks::http_get(http, "mocka.default", "/")
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        strait::demo::scenario::parse_chain(&body)
    };
    let zones = |hops: &[strait::demo::scenario::Hop]| -> Vec<String> {
        hops.iter().map(|h| h.zone.clone()).collect()
    };
    assert_eq!(zones(&chain().await), ["ap-northeast-1a"; 3]);
    let fault = |zone: &'static str, kind: &'static str| {
        let control = control.clone();
        async move {
            strait(
                [
                    "demo",
                    "fault",
                    "--control",
                    &control,
                    "--service",
                    "mockb",
                    "--zone",
                    zone,
                    "--kind",
                    kind,
                ],
                QUICK,
            )
            .await
        }
    };
    let out = fault("ap-northeast-1a", "refuse").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("mockb in ap-northeast-1a"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        zones(&chain().await),
        ["ap-northeast-1a", "ap-northeast-1b", "ap-northeast-1b"],
        "the first request after the fault already avoids mockb(1a)"
    );
    let out = fault("ap-northeast-1", "refuse").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hops = chain().await;
    assert!(hops[1].zone.starts_with("cn-hangzhou"), "{hops:?}");
    let out = fault("ap-northeast-1", "none").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut back = false;
    let start = Instant::now();
    while !back && start.elapsed() < Duration::from_secs(10) {
        back = zones(&chain().await) == ["ap-northeast-1a"; 3];
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "failback after the faults are cleared");
    let out = fault("eu-west-1a", "refuse").await;
    assert!(!out.status.success(), "an unknown zone is refused");
    assert!(
        text(&out.stderr).contains("no mock"),
        "{}",
        text(&out.stderr)
    );

    demo.signal("INT");
    let status = demo.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "demo --serve exits 0 on SIGINT: {status}");
}

/// Removes a folder the process under test kept (`demo --serve` keeps its files).
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
