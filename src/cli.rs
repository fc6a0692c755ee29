//! Command-line interface: `run`, `check`, `certs`, `demo` and `status`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use crate::certs::{Ca, IssueOptions};
use crate::config::Config;

/// Strait: an east-west gateway for service-level disaster recovery.
#[derive(Debug, Parser)]
#[command(name = "strait", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `strait=debug`.
    #[arg(long, global = true, env = "STRAIT_LOG")]
    pub log: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file (and the TLS files it names) without running.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Check only the TOML, not the certificate and key files it names.
        #[arg(long)]
        no_files: bool,
    },
    /// Make a CA and gateway certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run two regions of gateways with backends on loopback and show failover.
    Demo(crate::demo::DemoArgs),
    /// Show a running gateway's tunnels and endpoints.
    Status {
        /// The gateway's admin address.
        #[arg(long, default_value = "127.0.0.1:15021")]
        admin: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA: DIR/ca.pem and DIR/ca-key.pem.
    Ca {
        #[arg(long)]
        trust_domain: String,
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue a gateway certificate with the URI SAN spiffe://TD/gateway/NAME.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Folder holding ca.pem and ca-key.pem.
    #[arg(long)]
    ca: PathBuf,
    /// Gateway name.
    #[arg(long)]
    name: String,
    /// Output folder for NAME.pem and NAME-key.pem.
    #[arg(long)]
    out: PathBuf,
    /// Extra DNS (or IP) SANs; default is the gateway name.
    #[arg(long)]
    dns: Vec<String>,
}

/// Sets up logging on stderr (stdout is for machine-readable lines such as readiness).
pub fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Command::Demo(_) => "error",
        _ => "info",
    };
    let filter = cli.log.clone().unwrap_or_else(|| default.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a command; errors carry the context a user needs.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => run_gateway(&config).await,
        Command::Check { config, no_files } => check(&config, no_files),
        Command::Certs(cmd) => certs(cmd),
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Status { admin } => crate::status::print(&admin).await,
    }
}

async fn run_gateway(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let bound = crate::app::bind(config).await?;
    bound.ready().await;
    // One JSON line on stdout says the gateway is ready and where it listens.
    println!(
        "{}",
        serde_json::json!({ "event": "ready", "gateway": bound.addresses })
    );
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    let outcome = bound.shutdown().await;
    println!(
        "{}",
        serde_json::json!({ "event": "stopped", "forced": outcome.forced })
    );
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path, no_files: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    if !no_files {
        crate::tls::TunnelTls::load(&config)?;
    }
    println!(
        "{}: ok (gateway {} in {}/{}, {} peers, {} services, {} listeners)",
        path.display(),
        config.gateway.name,
        config.gateway.region,
        config.gateway.zone,
        config.peers.len(),
        config.services.len(),
        config.listeners.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn certs(cmd: CertsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertsCommand::Ca {
            trust_domain,
            out,
            force,
        } => {
            let existing = out.join(crate::certs::CA_CERT_FILE);
            if existing.exists() && !force {
                anyhow::bail!(
                    "{} exists; pass --force to replace the CA",
                    existing.display()
                );
            }
            let ca = Ca::generate(&trust_domain)?;
            ca.write(&out)?;
            println!(
                "wrote {} and {}",
                existing.display(),
                out.join(crate::certs::CA_KEY_FILE).display()
            );
        }
        CertsCommand::Issue(args) => {
            let ca = Ca::load(&args.ca)?;
            let opts = IssueOptions {
                dns: args.dns,
                ..Default::default()
            };
            let issued = ca.issue_gateway(&args.name, &opts)?;
            let (cert, key) = issued.write(&args.out, &args.name)?;
            println!(
                "wrote {} and {} for spiffe://{}/gateway/{}",
                cert.display(),
                key.display(),
                ca.trust_domain(),
                args.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
