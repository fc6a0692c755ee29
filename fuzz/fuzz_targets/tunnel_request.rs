//! `wire::parse_connect` on requests built from arbitrary bytes, plus the `ServiceKey` and
//! `PeerIdentity` parsers on the raw input.
//!
//! Input layout: `method \n authority \n strait-version \n strait-caller`; missing parts are
//! left out of the request, and an empty method means `CONNECT` (without sanitizer hooks the
//! fuzzer cannot guess that word, and every other method stops at the first check). Requests
//! `http::Request::builder()` rejects are skipped.
#![no_main]

use http::Request;
use libfuzzer_sys::fuzz_target;
use strait::config::ServiceKey;
use strait::identity::PeerIdentity;
use strait::tunnel::wire::{CALLER_HEADER, VERSION_HEADER, parse_connect};

fn raw_string_parsers(text: &str) {
    if let Ok(key) = text.parse::<ServiceKey>() {
        assert_eq!(key.to_string().parse::<ServiceKey>(), Ok(key));
    }
    if let Ok(id) = text.parse::<PeerIdentity>() {
        assert_eq!(id.to_string().parse::<PeerIdentity>(), Ok(id));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        raw_string_parsers(text);
    }

    let mut parts = data.splitn(4, |&b| b == b'\n');
    let method = match parts.next().unwrap_or_default() {
        b"" => b"CONNECT".as_slice(),
        m => m,
    };
    let authority = parts.next();
    let version = parts.next();
    let caller = parts.next();

    let mut builder = Request::builder().method(method);
    if let Some(authority) = authority {
        let Ok(authority) = std::str::from_utf8(authority) else {
            return;
        };
        builder = builder.uri(authority);
    }
    if let Some(version) = version {
        builder = builder.header(VERSION_HEADER, version);
    }
    if let Some(caller) = caller {
        builder = builder.header(CALLER_HEADER, caller);
    }
    let Ok(req) = builder.body(()) else {
        return;
    };

    if let Ok(connect) = parse_connect(&req) {
        let service = connect.service;
        assert_eq!(service.to_string().parse::<ServiceKey>(), Ok(service));
    }
});
