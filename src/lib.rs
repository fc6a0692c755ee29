//! Strait: an east-west gateway for service-level disaster recovery.
#![forbid(unsafe_code)]

pub mod certs;
pub mod config;
pub mod identity;
