//! The one error type of configuration loading.

use std::io;
use std::path::PathBuf;

/// Why a configuration file could not be loaded. Every variant names the file, so the message
/// alone tells an operator where to look.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file is not valid TOML or does not match the schema (unknown key, missing section,
    /// wrong type, bad duration). `message` is the TOML parser's, with line, column and the
    /// expected keys or values.
    #[error("{}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },

    /// A value is well-formed TOML but not acceptable, e.g.
    /// `config/gateway-a.toml: services[0].port = 0: expected a port number 1-65535`.
    #[error("{}: {key} = {value}: expected {expected}", .path.display())]
    Invalid {
        path: PathBuf,
        /// Where the value sits, e.g. `services[2].endpoints[0].address`.
        key: String,
        /// The offending value as written in TOML (strings quoted), or `(not set)`.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
}
