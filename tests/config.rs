//! The shipped example configs load, and every invalid fixture fails with the error its first
//! line (`# expect: <text>`) announces, naming the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strait::config::{Config, ConfigError, Protocol};

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
fn invalid_fixtures_fail_with_their_expected_error() {
    let files = toml_files("tests/fixtures/invalid");
    assert!(files.len() >= 12, "only {} invalid fixtures", files.len());
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
