//! The shipped example configs load, and every invalid fixture fails with the error its first
//! line (`# expect: <text>`) announces, naming the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strait::config::{
    Config, ConfigError, HealthCheckConfig, HealthCheckKind, LoadBalancerConfig, OutlierConfig,
    Protocol, RetryConfig,
};

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

#[test]
fn example_configs_load() {
    let files = toml_files("config");
    assert!(!files.is_empty(), "no config/*.toml found");
    for path in &files {
        if let Err(e) = Config::load(path) {
            panic!("{} does not load:\n{e}", path.display());
        }
    }
}

#[test]
fn gateway_a_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let c = Config::load(&dir.join("gateway-a.toml")).unwrap();
    assert_eq!(c.gateway.name, "gw-a");
    assert_eq!(c.gateway.zone, "zone-a1");
    assert_eq!(c.admin.listen, "127.0.0.1:15021".parse().unwrap());
    assert_eq!(c.tunnel.listen, "127.0.0.1:15443".parse().unwrap());
    assert_eq!(c.tunnel.reconnect_backoff_min, Duration::from_millis(100));

    // Relative TLS paths are joined onto the config file's folder, not the working directory.
    assert!(c.tls.trust_bundle.ends_with("certs/out/ca.pem"));
    assert!(
        c.tls.trust_bundle.starts_with(&dir),
        "{}",
        c.tls.trust_bundle.display()
    );
    assert!(c.tls.key.ends_with("certs/out/gw-a-key.pem"));

    assert_eq!(c.peers.len(), 1);
    assert_eq!(
        c.peers[0].identity.to_string(),
        "spiffe://strait.local/gateway/gw-b"
    );
    assert_eq!(c.peers[0].trust_bundle, None);

    let keys: Vec<String> = c.services.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "web.default:8080",
            "secure.default:8443",
            "echo.default:9000"
        ]
    );
    assert!(
        c.services
            .iter()
            .all(|s| s.exported && s.endpoints.is_empty())
    );

    let echo = &c.listeners[2];
    assert_eq!(echo.protocol, Protocol::Tcp);
    assert_eq!(
        echo.service.as_ref().map(ToString::to_string).as_deref(),
        Some("echo.default:9000")
    );
}

#[test]
fn gateway_b_holds_the_endpoints() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway-b.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.peers[0].name, "gw-a");
    for s in &c.services {
        assert_eq!(s.endpoints.len(), 1, "{}", s.key);
        assert_eq!(s.endpoints[0].zone, "zone-b1");
        assert_eq!(s.endpoints[0].weight, 1);
    }
    assert_eq!(
        c.services[0].endpoints[0].address,
        "127.0.0.2:8081".parse().unwrap()
    );
}

#[test]
fn outlier_walkthrough_values() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/outlier-walkthrough.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.gateway.name, "gw-1a");
    assert_eq!(c.gateway.region, "ap-northeast-1");
    assert_eq!(c.gateway.zone, "ap-northeast-1a");
    let peers: Vec<(&str, &str)> = c
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.region.as_str()))
        .collect();
    assert_eq!(peers, [("gw-h", "cn-hangzhou"), ("gw-k", "cn-hangzhou")]);

    let keys: Vec<String> = c.services.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "mocka.default:8000",
            "mockb.default:8001",
            "mockc.default:8002"
        ]
    );
    let walkthrough = OutlierConfig {
        consecutive_5xx_errors: 1,
        split_external_local_origin_errors: true,
        consecutive_local_origin_failures: 1,
        interval: Duration::from_secs(30),
        base_ejection_time: Duration::from_secs(300),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 100,
        ..OutlierConfig::default()
    };
    for s in &c.services {
        assert!(s.exported && s.protocol == Protocol::Http, "{}", s.key);
        let zones: Vec<&str> = s.endpoints.iter().map(|e| e.zone.as_str()).collect();
        assert_eq!(zones, ["ap-northeast-1a", "ap-northeast-1b"], "{}", s.key);
        assert_eq!(s.outlier_detection, walkthrough, "{}", s.key);
        assert_eq!(s.load_balancer, LoadBalancerConfig::default());
        assert_eq!(s.retry, RetryConfig::default());
    }
    assert_eq!(
        c.services[1].health_check,
        Some(HealthCheckConfig {
            kind: HealthCheckKind::Http {
                path: "/".to_owned()
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        })
    );
    assert_eq!(c.services[0].health_check, None);
    assert_eq!(c.services[2].health_check, None);
}

/// gateway-a.toml shows the failover sub-tables commented out with their defaults; with the
/// keys uncommented it must load and hold exactly the defaults, so the comments cannot drift.
#[test]
fn gateway_a_commented_failover_tables_show_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway-a.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let is_setting = |l: &str| {
        l.starts_with("[services.")
            || l.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
    };
    let mut uncommented = 0;
    let text: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(setting) if is_setting(setting) => {
                uncommented += 1;
                format!("{setting}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(uncommented > 30, "only {uncommented} commented settings");
    let c = Config::from_toml(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    let web = &c.services[0];
    assert_eq!(web.key.to_string(), "web.default:8080");
    assert_eq!(web.outlier_detection, OutlierConfig::default());
    assert_eq!(web.load_balancer, LoadBalancerConfig::default());
    assert_eq!(web.retry, RetryConfig::default());
    assert_eq!(
        web.health_check,
        Some(HealthCheckConfig {
            kind: HealthCheckKind::Http {
                path: "/healthz".to_owned()
            },
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        })
    );
}

#[test]
fn invalid_fixtures_fail_with_their_expected_error() {
    let files = toml_files("tests/fixtures/invalid");
    assert!(files.len() >= 37, "only {} invalid fixtures", files.len());
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a `# expect: ` first line", path.display()));
        let err = match Config::load(path) {
            Ok(_) => panic!("{} loaded but should fail with {expect:?}", path.display()),
            Err(e) => e.to_string(),
        };
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            err.contains(expect),
            "{name}: error lacks {expect:?}:\n{err}"
        );
        assert!(
            err.contains(&*name),
            "{name}: error does not name the file:\n{err}"
        );
    }
}

#[test]
fn unreadable_file_names_the_path() {
    let path = Path::new("does/not/exist.toml");
    let err = Config::load(path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot read config file does/not/exist.toml: "),
        "{msg}"
    );
}
