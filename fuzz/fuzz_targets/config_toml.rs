//! `Config::from_toml` on arbitrary UTF-8: parse errors and validation errors are fine, a panic
//! is not. Validation is pure (no file reads), so every input exercises the whole path.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strait::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_toml(text, Path::new("fuzz.toml")) {
        // A config that validated can be queried for each of its own services.
        for svc in &config.services {
            assert!(config.service(&svc.key).is_some());
        }
    }
});
