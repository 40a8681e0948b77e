//! `cellgate serve` as a fixture.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use crate::{
    ChildGuard, TempDir, free_addr, http,
    launch::{Startup, await_ready, launch},
};

/// Placeholder for the data-plane address in a [`Gateway`] config template.
pub const LISTEN_PLACEHOLDER: &str = "{listen}";
/// Placeholder for the admin address in a [`Gateway`] config template.
pub const ADMIN_LISTEN_PLACEHOLDER: &str = "{admin_listen}";

/// How long [`Gateway::restart`] lets a running gateway drain after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A `cellgate serve` process on free loopback ports, killed on drop.
///
/// The config is a TOML template in which the fixture replaces every `{listen}` and
/// `{admin_listen}` with `127.0.0.1:<free port>`; write them as quoted values:
///
/// ```toml
/// [server]
/// listen = "{listen}"
/// admin_listen = "{admin_listen}"
///
/// [[cells]]
/// name = "cell-1"
/// upstreams = ["127.0.0.1:7001"]
/// ```
#[derive(Debug)]
pub struct Gateway {
    /// Data-plane address (`{listen}`).
    pub addr: SocketAddr,
    /// Admin API address (`{admin_listen}`).
    pub admin_addr: SocketAddr,
    // Declared before `dir`: the process dies before its config and log are removed.
    child: ChildGuard,
    dir: TempDir,
    bin: PathBuf,
    envs: Vec<(String, String)>,
}

impl Gateway {
    /// Renders `config_toml` with free ports, runs `<cellgate_bin> serve --config <file>` and
    /// waits until the admin `GET /readyz` answers 200.
    ///
    /// # Panics
    ///
    /// Panics when the template lacks a placeholder, or, with the process's logs, when it
    /// does not get ready.
    pub fn start(cellgate_bin: &Path, config_toml: &str) -> Gateway {
        Self::start_with_env(cellgate_bin, config_toml, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables (e.g. for `${ENV}`
    /// substitution in the config or `RUST_LOG`).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_env(
        cellgate_bin: &Path,
        config_toml: &str,
        envs: &[(&str, &str)],
    ) -> Gateway {
        for placeholder in [LISTEN_PLACEHOLDER, ADMIN_LISTEN_PLACEHOLDER] {
            assert!(
                config_toml.contains(placeholder),
                "gateway config template must contain {placeholder}:\n{config_toml}"
            );
        }
        let dir = TempDir::new("gateway");
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (child, (addr, admin_addr)) = launch(
            "gateway",
            || {
                let (addr, admin_addr) = (free_addr(), free_addr());
                std::fs::write(
                    dir.path().join("cellgate.toml"),
                    render_config(config_toml, addr, admin_addr),
                )
                .expect("writing the gateway config");
                (spawn(cellgate_bin, dir.path(), &envs), (addr, admin_addr))
            },
            |&(_, admin_addr)| ready(admin_addr),
        );
        Gateway {
            addr,
            admin_addr,
            child,
            dir,
            bin: cellgate_bin.to_owned(),
            envs,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<admin_addr><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// Runs `cellctl` against this gateway's admin API, without a token (see
    /// [`crate::cellctl`]).
    pub fn cellctl(&self, args: &[&str]) -> std::process::Output {
        crate::cellctl(&self.admin_url(""), None, args)
    }

    /// The rendered config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cellgate.toml")
    }

    /// Sends `signal` to the process (e.g. `libc::SIGTERM` to test draining).
    pub fn signal(&self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(timeout)
    }

    /// Starts the gateway again on the same ports and config, and waits until it is ready.
    /// A running gateway is first stopped with SIGTERM (SIGKILL after 15 s); after
    /// [`kill`](Self::kill) this is a crash-restart.
    ///
    /// # Panics
    ///
    /// Panics, with the logs, when the new process does not get ready.
    pub fn restart(&mut self) {
        if self.child.try_exit().is_none() {
            self.child.signal(libc::SIGTERM);
            if self.child.wait_exit(STOP_GRACE).is_none() {
                self.child.kill();
            }
        }
        self.child = spawn(&self.bin, self.dir.path(), &self.envs);
        let admin_addr = self.admin_addr;
        if let Startup::Exited(status) =
            await_ready(&mut self.child, "gateway", || ready(admin_addr))
        {
            panic!(
                "restarted gateway exited with {status}; logs:\n{}",
                self.child.logs()
            );
        }
    }

    /// The process, e.g. for its pid.
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }

    /// What the process (all its runs) logged so far.
    pub fn logs(&self) -> String {
        self.child.logs()
    }
}

/// Replaces the `{listen}` and `{admin_listen}` placeholders of a config template.
pub fn render_config(template: &str, listen: SocketAddr, admin_listen: SocketAddr) -> String {
    template
        .replace(LISTEN_PLACEHOLDER, &listen.to_string())
        .replace(ADMIN_LISTEN_PLACEHOLDER, &admin_listen.to_string())
}

fn spawn(bin: &Path, dir: &Path, envs: &[(String, String)]) -> ChildGuard {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("cellgate.toml"))
        .envs(envs.iter().map(|(k, v)| (k, v)));
    ChildGuard::spawn_logged("gateway", cmd, &dir.join("gateway.log"))
}

fn ready(admin_addr: SocketAddr) -> bool {
    http::get_with_timeout(admin_addr, "/readyz", Duration::from_secs(1))
        .is_ok_and(|r| r.status == 200)
}
