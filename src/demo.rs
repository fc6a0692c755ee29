//! `strait demo` (being written).
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep everything running and print the addresses as JSON.
    #[arg(long)]
    pub serve: bool,
}

pub async fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("demo not built yet")
}
