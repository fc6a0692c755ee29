//! The state every connection task of one running gateway shares: config, services, routes,
//! tunnels, metrics and the drain handle. Built once by [`crate::app`]; read-only after that
//! except for the atomics inside.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{Config, Protocol, ServiceKey};
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::proxy::route::RouteTable;
use crate::tunnel::client::Peers;
use crate::upstream::{ServicePool, Upstreams};

/// Shared state of one gateway.
pub struct Gateway {
    pub config: Arc<Config>,
    pub services: HashMap<ServiceKey, Arc<ServicePool>>,
    pub http_routes: RouteTable,
    pub tls_routes: RouteTable,
    pub upstreams: Upstreams,
    pub peers: Arc<Peers>,
    pub metrics: Metrics,
    pub drain: Drain,
    ready: AtomicBool,
}

impl Gateway {
    pub fn new(config: Arc<Config>, peers: Arc<Peers>, metrics: Metrics, drain: Drain) -> Self {
        let services = config
            .services
            .iter()
            .map(|s| (s.key.clone(), Arc::new(ServicePool::new(s.clone()))))
            .collect();
        Gateway {
            http_routes: RouteTable::new(&config.services, Protocol::Http),
            tls_routes: RouteTable::new(&config.services, Protocol::Tls),
            services,
            upstreams: Upstreams::new(peers.clone(), metrics.clone()),
            peers,
            metrics,
            drain,
            config,
            ready: AtomicBool::new(false),
        }
    }

    /// Ready once every listener is bound, until draining starts.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.drain.is_stopping()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
