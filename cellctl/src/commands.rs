//! One module per subcommand.

mod change;
mod dlq;
mod limits;
mod pin;
mod plan;
mod status;
mod where_key;

use std::time::Duration;

use crate::cli::{Cli, Command, DlqAction, PlanAction};
use crate::client::{Admin, CtlError};

/// Runs the parsed command.
pub fn run(cli: &Cli) -> Result<(), CtlError> {
    let admin = Admin::new(
        &cli.admin,
        cli.token.clone(),
        Duration::from_secs(cli.timeout),
    )?;
    let out = cli.output;
    match &cli.command {
        Command::Status => status::run(&admin, out),
        Command::Where { key } => where_key::run(&admin, out, key),
        Command::Drain(args) => change::ramp(&admin, out, "drain", args),
        Command::Undrain(args) => change::ramp(&admin, out, "undrain", args),
        Command::Evacuate(args) => change::evacuate(&admin, out, args),
        Command::Pin(args) => pin::pin(&admin, out, args),
        Command::Unpin { key, reason } => pin::unpin(&admin, out, key, reason.as_deref()),
        Command::Limits { key, policy } => limits::run(&admin, out, key, policy.as_deref()),
        Command::Plan {
            action: PlanAction::Drain { cell },
        } => plan::drain(&admin, out, cell),
        Command::Dlq { action } => match action {
            DlqAction::List(args) => dlq::list(&admin, out, args),
            DlqAction::Show { id } => dlq::show(&admin, out, id),
            DlqAction::Replay(selection) => dlq::act(&admin, out, dlq::Action::Replay, selection),
            DlqAction::Purge(selection) => dlq::act(&admin, out, dlq::Action::Purge, selection),
        },
    }
}

/// Who is acting, for the audit log.
fn actor() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "cellctl".to_owned())
}
