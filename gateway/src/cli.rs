//! The `cellgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::echo::EchoArgs;
use crate::telemetry::{self, LogFormat};

/// Cellgate: a cell-based edge HTTP gateway with global rate limits.
#[derive(Debug, Parser)]
#[command(name = "cellgate", version, propagate_version = true)]
pub struct Cli {
    /// Log line format (filter with CELLGATE_LOG or RUST_LOG, e.g. "info,gateway=debug").
    #[arg(
        long,
        global = true,
        env = "CELLGATE_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,
    /// Threads serving requests (default: one per CPU). `1` runs everything on a single
    /// thread without work stealing, like one nginx worker: the cheapest setup on a small box
    /// that also runs other processes.
    #[arg(long, global = true, env = "CELLGATE_WORKER_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands of `cellgate`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway from a config file.
    Serve(ConfigArgs),
    /// Validate a config file: exit 0, or 1 with `file:line: message`.
    CheckConfig(ConfigArgs),
    /// Run a demo cell backend that echoes what it receives (with fault knobs).
    EchoCell(EchoArgs),
    /// Run a self-contained demo: a gateway with three in-process cells, no Redis.
    Demo(crate::demo::DemoArgs),
}

/// The `--config` flag.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Path of the TOML config (see docs/config.md).
    #[arg(long, short, env = "CELLGATE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
}

/// Parses the command line and runs it; the process exit code comes back.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CheckConfig(args) = &cli.command {
        return check_config(args);
    }
    let _guard = match telemetry::init(cli.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("cellgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = match cli.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cellgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::EchoCell(args) => crate::echo::run(args, crate::shutdown::signal()).await,
            Command::Demo(args) => crate::demo::run(args, crate::shutdown::signal()).await,
            Command::CheckConfig(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cellgate failed");
            eprintln!("cellgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(args: &ConfigArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(config) => {
            println!(
                "{}: ok ({} cells, listen {}, admin {})",
                args.config.display(),
                config.cells.len(),
                config.server.listen,
                config.server.admin_listen
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ConfigArgs) -> anyhow::Result<()> {
    // A bad config is reported like check-config does, before any port is bound.
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let gateway = crate::app::Gateway::bind(&config).await?;
    gateway.run(crate::shutdown::signal()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
