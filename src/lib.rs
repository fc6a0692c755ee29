//! Strait: an east-west gateway for service-level disaster recovery.
//!
//! The data path, in the order a connection takes it:
//!
//! - [`proxy`]: local listeners (`http`, `tls` passthrough, `tcp`), routing by Host, SNI or
//!   port, and the copy loop.
//! - [`upstream`]: choosing local endpoints or a peer, retrying connect failures.
//! - [`tunnel`]: mTLS + HTTP/2 `CONNECT` tunnels to peer gateways, both directions.
//!
//! Around it: [`config`] (TOML → validated types), [`tls`] and [`identity`] (who may connect),
//! [`certs`] (rcgen tooling), [`metrics`] and [`admin`] (what operators see), [`drain`]
//! (graceful shutdown), [`app`] (wiring, returns a bound handle), [`cli`], [`demo`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod balancer;
pub mod certs;
pub mod cli;
pub mod config;
pub mod demo;
pub mod drain;
pub mod gateway;
pub mod identity;
pub mod metrics;
pub mod proxy;
mod status;
pub mod tls;
pub mod tunnel;
pub mod upstream;
