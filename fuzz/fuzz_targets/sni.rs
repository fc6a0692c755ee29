//! `parse_client_hello` on arbitrary bytes, and the SNI route lookups on whatever server name it
//! returns. The input is also wrapped as the server name of a well-formed ClientHello, which
//! must parse back to that name: random bytes alone rarely make a ClientHello with an SNI.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strait::config::{Config, Protocol};
use strait::proxy::route::{RouteTable, parse_istio_sni};
use strait::proxy::sni::{ClientHello, MAX_CLIENT_HELLO, parse_client_hello};

/// Services for the route table, built through the config parser so that new `ServiceConfig`
/// fields take their defaults here instead of breaking this target.
const SERVICES: &str = r#"
[gateway]
name = "gw-fuzz"
region = "region-a"
zone = "zone-a1"

[tls]
trust_bundle = "ca.pem"
cert = "gw.pem"
key = "gw-key.pem"

[[services]]
name = "secure"
port = 8443
protocol = "tls"
hosts = ["secure.example.com"]

[[services]]
name = "db"
namespace = "prod"
port = 5432
protocol = "tls"

[[services]]
name = "db"
namespace = "prod"
port = 5433
protocol = "tls"

[[services]]
name = "web"
port = 8080
protocol = "http"
hosts = ["www.example.com"]
"#;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let config = Config::from_toml(SERVICES, Path::new("fuzz.toml")).expect("valid config");
        let table = RouteTable::new(&config.services, Protocol::Tls);
        assert!(table.lookup_sni("secure.example.com").is_some());
        table
    })
}

/// Route lookups on a server name must not panic; an Istio-form match honours its port.
fn lookups(name: &str) {
    let t = table();
    let _ = t.lookup_authority(name);
    let found = t.lookup_sni(name);
    if let (Some((port, _)), Some(key)) = (parse_istio_sni(name), found) {
        assert_eq!(key.port, port, "{name:?}");
    }
}

/// A minimal TLS 1.2 ClientHello whose server_name extension carries `name`.
fn client_hello_with_sni(name: &[u8]) -> Vec<u8> {
    let len16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut sni_list = vec![0u8]; // host_name
    sni_list.extend(len16(name.len()));
    sni_list.extend(name);
    let mut ext = vec![0, 0]; // server_name
    ext.extend(len16(sni_list.len() + 2));
    ext.extend(len16(sni_list.len()));
    ext.extend(sni_list);

    let mut body = vec![3, 3]; // TLS 1.2
    body.extend([0x42; 32]); // random
    body.push(0); // session id
    body.extend([0, 2, 0x13, 0x01]); // one cipher suite
    body.extend([1, 0]); // null compression
    body.extend(len16(ext.len()));
    body.extend(ext);

    let mut hs = vec![1]; // client_hello
    hs.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    hs.extend(body);

    let mut record = vec![22, 3, 1];
    record.extend(len16(hs.len()));
    record.extend(hs);
    record
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_CLIENT_HELLO {
        return;
    }
    if let Ok(ClientHello::Complete { sni: Some(name) }) = parse_client_hello(data) {
        lookups(&name);
    }

    if data.len() <= 1024 {
        let hello = client_hello_with_sni(data);
        let parsed = parse_client_hello(&hello);
        match std::str::from_utf8(data) {
            Ok(name) => {
                assert_eq!(
                    parsed,
                    Ok(ClientHello::Complete {
                        sni: Some(name.to_owned())
                    })
                );
                lookups(name);
            }
            Err(_) => assert_eq!(parsed, Ok(ClientHello::Complete { sni: None })),
        }
        for cut in [0, 1, 4, 5, hello.len() - 1] {
            assert_eq!(
                parse_client_hello(&hello[..cut]),
                Ok(ClientHello::Incomplete)
            );
        }
    }
});
