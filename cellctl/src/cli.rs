//! Command-line definition.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate Cellgate gateways through their admin API.
///
/// Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage, 3 admin API
/// unreachable.
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
    /// Seconds to wait for each admin API call.
    #[arg(long, global = true, default_value_t = 5, value_name = "SECONDS")]
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
    /// Cells (state, weight, rps, errors, p99, in-flight), gateways and the directory version
    /// each applied, and recent changes.
    Status,
    /// Which cell serves a routing key, and why (hash rank, pin, moved by drain).
    Where {
        /// The routing key (e.g. a user id).
        key: String,
    },
    /// Move a cell's users to their next-ranked cells, gradually.
    Drain(RampArgs),
    /// Bring a drained cell's users back, gradually (slow start).
    Undrain(RampArgs),
    /// Drain a cell at once, with no ramp: for emergencies.
    Evacuate(EvacuateArgs),
    /// Pin a routing key to a cell.
    Pin(PinArgs),
    /// Remove a key's pin.
    Unpin {
        /// The routing key.
        key: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// A key's rate-limit usage: local tokens and rate, global demand, share, limiter mode,
    /// last sync age.
    Limits {
        /// The key (user id, IP or header value, as the policy counts by).
        key: String,
        /// Only this policy.
        #[arg(long)]
        policy: Option<String>,
    },
    /// Dry run: what a change would do, without doing it.
    Plan {
        /// What to plan.
        #[command(subcommand)]
        action: PlanAction,
    },
    /// The dead-letter queue of async deliveries (`Prefer: respond-async`): list, inspect,
    /// replay or purge deliveries that ran out of attempts, got a non-retryable answer
    /// (4xx other than 408 and 429) or expired. Dead letters stay until replayed or purged.
    Dlq {
        /// What to do with dead letters.
        #[command(subcommand)]
        action: DlqAction,
    },
}

/// Flags of drain and undrain.
#[derive(Debug, Args)]
pub struct RampArgs {
    /// The cell.
    pub cell: String,
    /// Ramp duration (e.g. 30s, 10m).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub over: String,
    /// Wait until the ramp has finished and every live gateway applied the change.
    #[arg(long)]
    pub wait: bool,
    /// Drain even if fewer than `min_active_cells` would keep serving.
    #[arg(long)]
    pub force: bool,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Flags of evacuate.
#[derive(Debug, Args)]
pub struct EvacuateArgs {
    /// The cell.
    pub cell: String,
    /// Evacuate even if fewer than `min_active_cells` would keep serving.
    #[arg(long)]
    pub force: bool,
    /// Wait until every live gateway applied the change.
    #[arg(long)]
    pub wait: bool,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Flags of pin.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// The routing key.
    pub key: String,
    /// The cell to pin it to.
    pub cell: String,
    /// Keep the key on its cell even while that cell is drained.
    #[arg(long)]
    pub no_follow_drain: bool,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Dead-letter queue operations.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Dead letters, oldest first across the selected cells: id, cell, reason, attempts, time
    /// since it died, and the request.
    List(DlqListArgs),
    /// One dead letter: its stored request, why it died, and every attempt.
    Show {
        /// The delivery id (as in `Location: /_cellgate/deliveries/<id>`).
        id: String,
    },
    /// Put dead letters back in the queue with their attempts reset; they keep their
    /// idempotency key, so a target that saw an earlier attempt can recognise the repeat.
    ///
    /// Exits 1 when a named id is not in the dead-letter queue (it is listed under
    /// not_found); `--all` on an empty queue does nothing and exits 0.
    #[command(after_help = "Examples:\n  \
        cellctl dlq replay cell-1.4f1c0d9e8a7b6c5d4e3f2a1b0c9d8e7f\n  \
        cellctl dlq replay --all --cell cell-2")]
    Replay(DlqSelection),
    /// Delete dead letters for good.
    ///
    /// Exits 1 when a named id is not in the dead-letter queue (it is listed under
    /// not_found); `--all` on an empty queue does nothing and exits 0.
    #[command(after_help = "Examples:\n  \
        cellctl dlq purge cell-1.4f1c0d9e8a7b6c5d4e3f2a1b0c9d8e7f\n  \
        cellctl dlq purge --all --cell cell-2")]
    Purge(DlqSelection),
}

/// Flags of `dlq list`.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Only dead letters whose target's home cell is this one.
    #[arg(long)]
    pub cell: Option<String>,
    /// Show at most this many (1-1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
}

/// Which dead letters `dlq replay` and `dlq purge` act on.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("selection").required(true).args(["ids", "all"]))]
pub struct DlqSelection {
    /// Delivery ids, as `cellctl dlq list` shows them.
    #[arg(value_name = "ID", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every dead letter (of `--cell` only, when given).
    #[arg(long)]
    pub all: bool,
    /// With `--all`: only dead letters whose target's home cell is this one.
    #[arg(long, requires = "all")]
    pub cell: Option<String>,
}

/// Plannable actions.
#[derive(Debug, Subcommand)]
pub enum PlanAction {
    /// Where a cell's users would go, and the receiving cells' load afterwards.
    Drain {
        /// The cell.
        cell: String,
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
