//! `cellctl`: the Cellgate operator CLI. It talks only to a gateway's admin API.
//!
//! Exit codes (SPEC §7): 0 done, 1 refused or failed, 2 usage, 3 admin API unreachable.

mod cli;
mod client;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cellctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
