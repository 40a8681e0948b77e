//! Command-line definition.

use clap::{Parser, Subcommand, ValueEnum};

/// Operate Cellgate gateways through their admin API.
#[derive(Debug, Parser)]
#[command(name = "cellctl", version, propagate_version = true)]
pub struct Cli {
    /// Admin API base URL of a gateway.
    #[arg(
        long,
        global = true,
        env = "CELLCTL_ADMIN",
        default_value = "http://127.0.0.1:9901",
        value_name = "URL"
    )]
    pub admin: String,
    /// Bearer token for the admin API.
    #[arg(long, global = true, env = "CELLCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t)]
    pub output: Output,
    /// Seconds to wait for the admin API.
    #[arg(long, global = true, default_value_t = 5)]
    pub timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    #[default]
    Text,
    /// The admin API's JSON, for scripts.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per-cell state, weight, upstreams and in-flight requests.
    Status,
    /// Which cell serves a routing key, and why.
    Where {
        /// The routing key (e.g. a user id).
        key: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
