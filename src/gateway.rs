//! The state every connection task of one running gateway shares: config, one balancer per
//! service, routes, tunnels, metrics and the drain handle. Built once by [`crate::app`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::balancer::{Balancer, health_check};
use crate::config::{Config, Protocol, ServiceKey};
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::proxy::route::RouteTable;
use crate::tunnel::client::Peers;

/// Shared state of one gateway.
pub struct Gateway {
    pub config: Arc<Config>,
    pub balancers: HashMap<ServiceKey, Arc<Balancer>>,
    pub http_routes: RouteTable,
    pub tls_routes: RouteTable,
    pub peers: Arc<Peers>,
    pub metrics: Metrics,
    pub drain: Drain,
    /// Bumped whenever any service's local health may have changed (drives advertisements).
    pub local_health: Arc<watch::Sender<u64>>,
    /// Stops outlier timers and health checks.
    background: CancellationToken,
    ready: watch::Sender<bool>,
}

impl Gateway {
    /// Builds every service's balancer and starts its timers and health checks.
    pub fn new(config: Arc<Config>, peers: Arc<Peers>, metrics: Metrics, drain: Drain) -> Self {
        let local_health = Arc::new(watch::channel(0u64).0);
        let pools: Vec<_> = peers.iter().cloned().collect();
        let background = CancellationToken::new();
        let balancers: HashMap<ServiceKey, Arc<Balancer>> = config
            .services
            .iter()
            .map(|s| {
                let b = Arc::new(Balancer::new(
                    s.clone(),
                    &config.gateway.zone,
                    &pools,
                    metrics.clone(),
                    local_health.clone(),
                ));
                tokio::spawn(b.clone().run_timers(background.clone()));
                health_check::spawn_all(&b, &background);
                (s.key.clone(), b)
            })
            .collect();
        // A tunnel going down or a peer's advertisement changing rebuilds every snapshot at
        // once, on the thread that saw it, so the very next pick knows.
        let weak: Vec<Weak<Balancer>> = balancers.values().map(Arc::downgrade).collect();
        for pool in &pools {
            let weak = weak.clone();
            pool.set_on_change(move || {
                for b in weak.iter().filter_map(Weak::upgrade) {
                    b.rebuild();
                }
            });
        }
        Gateway {
            http_routes: RouteTable::new(&config.services, Protocol::Http),
            tls_routes: RouteTable::new(&config.services, Protocol::Tls),
            balancers,
            peers,
            metrics,
            drain,
            local_health,
            background,
            config,
            ready: watch::channel(false).0,
        }
    }

    /// Ready once every listener is bound, until draining starts.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() && !self.drain.is_stopping()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// Watches the ready flag (set once at startup).
    pub fn ready_watch(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Stops background work (outlier timers, health checks).
    pub fn stop_background(&self) {
        self.background.cancel();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.background.cancel();
    }
}
