//! The `strait` binary: parse arguments, set up logging, hand over to [`strait::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = strait::cli::Cli::parse();
    strait::cli::init_tracing(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strait: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(strait::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
