//! A set of gateways on loopback, described in code and written out as real TOML files with
//! real certificates: what `strait demo` runs, and what the integration tests start (in
//! process, or as `strait run` processes).
//!
//! Every gateway gets its own 127.x.y.z address. Its admin, tunnel and listener sockets are
//! bound to port 0 up front and held, so addresses are known before any config is written; an
//! in-process gateway takes the held sockets over ([`crate::app::bind_prebound`]).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::certs::{Ca, IssueOptions};
use crate::config::Config;

/// Trust domain of the demo and test PKI.
pub const TRUST_DOMAIN: &str = "strait.local";

/// One gateway of a topology.
pub struct GatewayPlan {
    pub name: String,
    pub region: String,
    pub zone: String,
    pub ip: Ipv4Addr,
    pub admin: SocketAddr,
    pub tunnel: SocketAddr,
    /// Peers by name, in failover order.
    pub peers: Vec<String>,
    pub services: Vec<ServicePlan>,
    pub listeners: Vec<ListenerPlan>,
    /// Extra keys for the `[tunnel]` section, as TOML lines.
    pub tunnel_extra: String,
    /// Extra keys for the `[gateway]` section, as TOML lines.
    pub gateway_extra: String,
    /// Held sockets, taken over by an in-process gateway or released for a process.
    sockets: Vec<TcpListener>,
}

/// A service of one gateway.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// `name.namespace:port`.
    pub key: String,
    pub protocol: &'static str,
    pub exported: bool,
    pub hosts: Vec<String>,
    pub endpoints: Vec<(SocketAddr, String)>,
    /// Extra TOML lines for the service, written last: plain keys first, then any
    /// sub-tables (`[services.outlier_detection]`, `[services.health_check]`, ...).
    pub extra: String,
}

/// A local listener of one gateway.
#[derive(Debug, Clone)]
pub struct ListenerPlan {
    pub name: String,
    pub protocol: &'static str,
    pub address: SocketAddr,
    pub service: Option<String>,
}

/// Gateways, their PKI and the folder their files live in.
pub struct Topology {
    pub dir: PathBuf,
    pub ca: Ca,
    pub gateways: Vec<GatewayPlan>,
}

impl Topology {
    /// A new topology with a fresh CA, writing into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ca = Ca::generate(TRUST_DOMAIN)?;
        ca.write(dir)?;
        Ok(Topology {
            dir: dir.to_owned(),
            ca,
            gateways: Vec::new(),
        })
    }

    /// Adds a gateway on `ip`, reserving its admin and tunnel sockets and issuing its cert.
    pub fn gateway(
        &mut self,
        name: &str,
        region: &str,
        zone: &str,
        ip: Ipv4Addr,
    ) -> anyhow::Result<&mut GatewayPlan> {
        let (admin_sock, admin) = reserve(ip)?;
        let (tunnel_sock, tunnel) = reserve(ip)?;
        self.ca
            .issue_gateway(name, &IssueOptions::default())?
            .write(&self.dir, name)?;
        self.gateways.push(GatewayPlan {
            name: name.to_owned(),
            region: region.to_owned(),
            zone: zone.to_owned(),
            ip,
            admin,
            tunnel,
            peers: Vec::new(),
            services: Vec::new(),
            listeners: Vec::new(),
            tunnel_extra: String::new(),
            gateway_extra: String::new(),
            sockets: vec![admin_sock, tunnel_sock],
        });
        Ok(self.gateways.last_mut().expect("just pushed"))
    }

    pub fn get(&self, name: &str) -> &GatewayPlan {
        self.gateways
            .iter()
            .find(|g| g.name == name)
            .expect("gateway in topology")
    }

    pub fn get_mut(&mut self, name: &str) -> &mut GatewayPlan {
        self.gateways
            .iter_mut()
            .find(|g| g.name == name)
            .expect("gateway in topology")
    }

    /// Path of a gateway's config file.
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    /// Writes every gateway's TOML file.
    pub fn write_configs(&self) -> anyhow::Result<()> {
        for g in &self.gateways {
            std::fs::write(self.config_path(&g.name), self.toml(g))?;
        }
        Ok(())
    }

    /// Loads a gateway's config back through the real parser.
    pub fn load(&self, name: &str) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config_path(name))?)
    }

    /// Takes the held sockets of a gateway (for an in-process start).
    pub fn take_sockets(&mut self, name: &str) -> Vec<TcpListener> {
        std::mem::take(&mut self.get_mut(name).sockets)
    }

    /// The TOML of one gateway.
    pub fn toml(&self, g: &GatewayPlan) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "[gateway]\nname = \"{}\"\nregion = \"{}\"\nzone = \"{}\"",
            g.name, g.region, g.zone
        );
        t.push_str(&g.gateway_extra);
        let _ = writeln!(t, "\n[admin]\nlisten = \"{}\"", g.admin);
        let _ = writeln!(
            t,
            "\n[tls]\ntrust_bundle = \"ca.pem\"\ncert = \"{0}.pem\"\nkey = \"{0}-key.pem\"",
            g.name
        );
        let _ = writeln!(t, "\n[tunnel]\nlisten = \"{}\"", g.tunnel);
        t.push_str(&g.tunnel_extra);
        for peer in &g.peers {
            let p = self.get(peer);
            let _ = writeln!(
                t,
                "\n[[peers]]\nname = \"{}\"\nregion = \"{}\"\naddress = \"{}\"\nidentity = \"spiffe://{TRUST_DOMAIN}/gateway/{}\"",
                p.name, p.region, p.tunnel, p.name
            );
        }
        for s in &g.services {
            let (name_ns, port) = s.key.rsplit_once(':').expect("service key has a port");
            let (name, ns) = name_ns
                .split_once('.')
                .expect("service key has a namespace");
            let _ = writeln!(
                t,
                "\n[[services]]\nname = \"{name}\"\nnamespace = \"{ns}\"\nport = {port}\nprotocol = \"{}\"\nexported = {}",
                s.protocol, s.exported
            );
            if !s.hosts.is_empty() {
                let _ = writeln!(t, "hosts = {:?}", s.hosts);
            }
            let eps: Vec<String> = s
                .endpoints
                .iter()
                .map(|(a, z)| format!("{{ address = \"{a}\", zone = \"{z}\" }}"))
                .collect();
            let _ = writeln!(t, "endpoints = [{}]", eps.join(", "));
            t.push_str(&s.extra);
        }
        for l in &g.listeners {
            let _ = writeln!(
                t,
                "\n[[listeners]]\nname = \"{}\"\nprotocol = \"{}\"\nlisten = \"{}\"",
                l.name, l.protocol, l.address
            );
            if let Some(svc) = &l.service {
                let _ = writeln!(t, "service = \"{svc}\"");
            }
        }
        t
    }
}

impl GatewayPlan {
    /// Adds a local listener on this gateway's address, reserving its socket.
    pub fn listener(
        &mut self,
        name: &str,
        protocol: &'static str,
        service: Option<&str>,
    ) -> anyhow::Result<SocketAddr> {
        let (sock, address) = reserve(self.ip)?;
        self.sockets.push(sock);
        self.listeners.push(ListenerPlan {
            name: name.to_owned(),
            protocol,
            address,
            service: service.map(str::to_owned),
        });
        Ok(address)
    }

    /// Adds a service.
    pub fn service(
        &mut self,
        key: &str,
        protocol: &'static str,
        exported: bool,
        endpoints: Vec<(SocketAddr, String)>,
    ) -> &mut ServicePlan {
        self.services.push(ServicePlan {
            key: key.to_owned(),
            protocol,
            exported,
            hosts: Vec::new(),
            endpoints,
            extra: String::new(),
        });
        self.services.last_mut().expect("just pushed")
    }

    /// Address of a listener by name.
    pub fn listener_address(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .expect("listener in plan")
            .address
    }
}

/// Binds `ip:0` and keeps the socket, so the port stays ours.
fn reserve(ip: Ipv4Addr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let sock = TcpListener::bind((ip, 0))?;
    let addr = sock.local_addr()?;
    Ok((sock, addr))
}
