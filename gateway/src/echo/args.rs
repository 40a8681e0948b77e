//! Flags of `cellgate echo-cell` and the options they produce.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// How long [`serve`](super::serve) waits for in-flight requests after shutdown by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Command-line flags of `cellgate echo-cell`.
#[derive(clap::Args, Debug, Clone)]
pub struct EchoArgs {
    /// Cell name reported as `"cell"` in every answer.
    #[arg(long)]
    pub name: String,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,

    /// Instance name reported as `"instance"` [default: <name>@<listen address>].
    #[arg(long)]
    pub instance: Option<String>,

    /// Latency added to every request, e.g. `5ms` (millisecond granularity).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,

    /// Fraction of requests answered 500, between 0 and 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_error_rate)]
    pub error_rate: f64,

    /// Append one line per echoed request (not `/healthz`, not `/_fault`) to this file: its
    /// `Idempotency-Key`, then a tab and its `X-Delivery-Attempt` if present. Written as each
    /// request arrives, so the file survives SIGKILL.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

impl EchoArgs {
    /// The serving options these flags describe.
    pub fn options(&self) -> EchoOptions {
        EchoOptions {
            name: self.name.clone(),
            instance: self.instance.clone(),
            latency: self.latency,
            error_rate: self.error_rate,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            record: self.record.clone(),
        }
    }
}

/// Options of one echo cell, as used by [`serve`](super::serve).
#[derive(Debug, Clone, PartialEq)]
pub struct EchoOptions {
    /// Cell name reported as `"cell"`.
    pub name: String,
    /// Instance name reported as `"instance"`; `None` means `<name>@<local address>`.
    pub instance: Option<String>,
    /// Initial latency added to every request (millisecond granularity).
    pub latency: Duration,
    /// Initial fraction of echo requests answered 500, in `[0, 1]`.
    pub error_rate: f64,
    /// How long in-flight requests may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// File to append one line per echoed request to (see [`EchoArgs::record`]).
    pub record: Option<PathBuf>,
}

impl EchoOptions {
    /// Options for a healthy cell named `name`: no latency, no errors.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            instance: None,
            latency: Duration::ZERO,
            error_rate: 0.0,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            record: None,
        }
    }
}

/// Whether `rate` is a usable error rate: a finite fraction in `[0, 1]`.
pub(crate) fn valid_error_rate(rate: f64) -> bool {
    (0.0..=1.0).contains(&rate)
}

fn parse_error_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if valid_error_rate(rate) => Ok(rate),
        _ => Err(format!(
            "`{s}` is not an error rate: expected a number between 0 and 1, e.g. 0.1"
        )),
    }
}
