//! Cellgate: an edge HTTP gateway that places each user in a **cell** (an independent copy of
//! the backend) so that a bad cell hurts only its own users.
//!
//! The crate holds the data plane ([`proxy`]), the admin API ([`admin`]), config ([`config`]),
//! the shared cell directory ([`control`]) and its guarded automation ([`evacuation`]),
//! metrics and telemetry, the demo backend ([`echo`]) and the `cellgate` CLI ([`cli`]).
//! [`app::Gateway`] assembles a gateway from a [`config::Config`]:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = gateway::config::Config::load("cellgate.toml".as_ref())?;
//! let gateway = gateway::app::Gateway::bind(&config).await?;
//! gateway.run(gateway::shutdown::signal()).await;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod delivery;
pub mod demo;
pub mod echo;
pub mod evacuation;
pub mod metrics;
pub mod proxy;
pub mod redis_conn;
pub mod shutdown;
pub mod stats;
pub mod telemetry;
