//! One module per subcommand.

mod status;
mod where_key;

use std::time::Duration;

use crate::cli::{Cli, Command};
use crate::client::{Admin, CtlError};

/// Runs the parsed command.
pub fn run(cli: &Cli) -> Result<(), CtlError> {
    let admin = Admin::new(
        &cli.admin,
        cli.token.clone(),
        Duration::from_secs(cli.timeout),
    )?;
    match &cli.command {
        Command::Status => status::run(&admin, cli.output),
        Command::Where { key } => where_key::run(&admin, cli.output, key),
    }
}
