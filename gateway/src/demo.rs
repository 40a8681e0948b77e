//! `cellgate demo`: a gateway and three in-process echo cells, no Redis, nothing to configure.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::Gateway;
use crate::config::{Config, ProcessEnv};
use crate::echo::{self, EchoOptions};

/// Flags of `cellgate demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Data-plane address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,
}

const CELLS: [&str; 3] = ["cell-1", "cell-2", "cell-3"];

/// Runs the demo until `shutdown` resolves.
///
/// # Errors
/// When a port cannot be bound (another gateway running on 8080 or 9901?).
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (stop_cells, cells_stopped) = tokio::sync::watch::channel(false);
    let mut upstreams = Vec::new();
    let mut tasks = Vec::new();
    for name in CELLS {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a demo cell")?;
        let addr = listener.local_addr().context("demo cell address")?;
        upstreams.push((name, addr));
        let mut stopped = cells_stopped.clone();
        tasks.push(tokio::spawn(echo::serve(
            listener,
            EchoOptions::new(name),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )));
    }
    let config = Config::parse(&demo_config(&args, &upstreams), "<demo>", &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let gateway = Gateway::bind(&config)
        .await
        .context("starting the demo gateway")?;
    print_banner(&args, &upstreams);
    gateway.run(shutdown).await;
    let _ = stop_cells.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

fn demo_config(args: &DemoArgs, upstreams: &[(&str, SocketAddr)]) -> String {
    let mut text = format!(
        "[server]\nlisten = \"{}\"\nadmin_listen = \"{}\"\ngateway_id = \"demo\"\n\n\
         [routing]\nkey = [\"header:x-user-id\", \"query:user\"]\nmissing_key = \"ip\"\n",
        args.listen, args.admin_listen
    );
    for (name, addr) in upstreams {
        text.push_str(&format!(
            "\n[[cells]]\nname = \"{name}\"\nupstreams = [\"{addr}\"]\n"
        ));
    }
    text
}

fn print_banner(args: &DemoArgs, upstreams: &[(&str, SocketAddr)]) {
    let gw = args.listen;
    let admin = args.admin_listen;
    let cells: Vec<String> = upstreams
        .iter()
        .map(|(name, addr)| format!("{name} ({addr})"))
        .collect();
    println!(
        "Cellgate demo is running.\n\
         \n  gateway  http://{gw}\n  admin    http://{admin}\n  cells    {}\n\
         \nTry:\n\
         \x20 curl -s -H 'x-user-id: alice' http://{gw}/hello\n\
         \x20 curl -s 'http://{gw}/orders?user=bob'\n\
         \x20 curl -si http://{gw}/hello            # no key: routed by client IP\n\
         \x20 curl -s http://{admin}/admin/where/alice\n\
         \x20 curl -s http://{admin}/metrics | grep cellgate_requests\n\
         \x20 cellctl --admin http://{admin} status\n\
         \x20 cellctl --admin http://{admin} where alice\n\
         \nCtrl-C stops it.",
        cells.join(", ")
    );
}
