//! `redis-server` as a fixture.

use std::{
    io::{BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use crate::{
    ChildGuard, TempDir, free_port,
    launch::{Startup, await_ready, launch},
};

mod cluster;
mod resp;

pub use cluster::{ClusterNode, RedisCluster};
pub use resp::Resp;

/// What a test needs of a Redis deployment, one server or a cluster, so that one test body
/// runs on both.
pub trait Redis {
    /// The `[redis]` target line of a Cellgate config (`url = …` or `cluster = […]`).
    fn config_target(&self) -> String;

    /// Runs a command whose key (if any) is `args[1]` on the node that serves that key, on a
    /// fresh connection.
    ///
    /// # Errors
    ///
    /// As [`RedisServer::command`].
    fn command(&self, args: &[&str]) -> std::io::Result<Resp>;
}

impl Redis for RedisServer {
    fn config_target(&self) -> String {
        RedisServer::config_target(self)
    }

    fn command(&self, args: &[&str]) -> std::io::Result<Resp> {
        RedisServer::command(self, args)
    }
}

/// How long [`RedisServer::restart`] lets a running server shut down after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Timeout of [`RedisServer::ping`] and [`RedisServer::command`].
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A `redis-server` on a free loopback port with its own data dir, killed on drop.
///
/// Runs `redis-server --port <free> --bind 127.0.0.1 --save "" --appendonly no --dir <tmp>`;
/// any of these but `--port` and `--dir` can be overridden with
/// [`start_with`](Self::start_with), e.g. `&["--appendonly", "yes"]`.
#[derive(Debug)]
pub struct RedisServer {
    /// The port it listens on, kept across [`restart`](Self::restart).
    pub port: u16,
    // Declared before `dir`: the server dies before its data dir is removed.
    child: ChildGuard,
    dir: TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server without persistence and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// Panics when `redis-server` is not installed, or, with its logs, when it does not get
    /// ready.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server that writes every command to its append-only file and fsyncs it
    /// before replying (`--appendonly yes --appendfsync always`), so whatever it acknowledged
    /// survives [`kill`](Self::kill) (SIGKILL) followed by [`restart`](Self::restart), which
    /// reloads the AOF from the same data dir on the same port.
    ///
    /// `appendfsync everysec` (Redis's default) would only survive a clean shutdown: a crash
    /// may lose the last second of acknowledged writes.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_durable() -> RedisServer {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Like [`start`](Self::start) with extra arguments, which override the defaults of the
    /// same name (e.g. `&["--appendonly", "yes", "--appendfsync", "always"]`).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), and when `extra` sets `--port` or `--dir`.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        assert!(
            !extra.iter().any(|a| *a == "--port" || *a == "--dir"),
            "RedisServer chooses --port and --dir itself"
        );
        let bin = redis_server_bin();
        let dir = TempDir::new("redis");
        let args = server_args(dir.path(), extra);
        let (child, port) = launch(
            "redis-server",
            || {
                let port = free_port();
                (spawn(&bin, port, dir.path(), &args), port)
            },
            |&port| ping(addr(port)),
        );
        RedisServer {
            port,
            child,
            dir,
            args,
        }
    }

    /// Starts an empty Redis Cluster node (`--cluster-enabled yes`, its bus on a second free
    /// port, `--cluster-node-timeout` as given) and waits until it answers `PING`. It serves
    /// nothing until [`RedisCluster`] assigns it slots or a master.
    pub(crate) fn start_cluster_node(node_timeout: Duration) -> RedisServer {
        let bin = redis_server_bin();
        let dir = TempDir::new("redis-cluster-node");
        let timeout_ms = node_timeout.as_millis().to_string();
        let (child, (port, args)) = launch(
            "redis-server (cluster node)",
            || {
                let port = free_port();
                let bus = free_port().to_string();
                let args = server_args(
                    dir.path(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        &bus,
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout_ms,
                    ],
                );
                (spawn(&bin, port, dir.path(), &args), (port, args))
            },
            |(port, _)| ping(addr(*port)),
        );
        RedisServer {
            port,
            child,
            dir,
            args,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `[redis]` target line of a Cellgate config: `url = "redis://127.0.0.1:<port>"`.
    pub fn config_target(&self) -> String {
        format!("url = \"{}\"", self.url())
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        addr(self.port)
    }

    /// The data directory (AOF and RDB files live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server answers `PING` with `+PONG` within 2 s.
    pub fn ping(&self) -> bool {
        ping(self.addr())
    }

    /// Runs one command on a fresh connection, e.g. `&["XLEN", "deliveries"]`.
    ///
    /// # Errors
    ///
    /// Fails on connection errors, timeouts and malformed replies; a Redis error reply is
    /// `Ok(Resp::Error(..))`.
    pub fn command(&self, args: &[&str]) -> std::io::Result<Resp> {
        let mut stream = connect(self.addr())?;
        stream.write_all(&resp::encode(args))?;
        resp::read(&mut BufReader::new(stream))
    }

    /// Freezes the server (SIGSTOP): connections hang, as with a stalled Redis.
    pub fn stop(&self) {
        self.child.signal(libc::SIGSTOP);
    }

    /// Resumes a server frozen by [`stop`](Self::stop) (SIGCONT).
    pub fn cont(&self) {
        self.child.signal(libc::SIGCONT);
    }

    /// Kills the server (SIGKILL), as in a crash.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill()
    }

    /// Starts the server again with the same port, data dir and arguments, and waits until it
    /// answers `PING` (so an AOF is loaded). A running server is first shut down with SIGTERM
    /// (SIGKILL after 10 s); after [`kill`](Self::kill) this is a crash-restart.
    ///
    /// # Panics
    ///
    /// Panics, with the logs, when the new server does not get ready (e.g. if another
    /// process took the port meanwhile).
    pub fn restart(&mut self) {
        if self.child.try_exit().is_none() {
            self.child.signal(libc::SIGCONT); // a stopped server cannot handle SIGTERM
            self.child.signal(libc::SIGTERM);
            if self.child.wait_exit(STOP_GRACE).is_none() {
                self.child.kill();
            }
        }
        self.child = spawn(&redis_server_bin(), self.port, self.dir.path(), &self.args);
        let addr = self.addr();
        if let Startup::Exited(status) = await_ready(&mut self.child, "redis-server", || ping(addr))
        {
            panic!(
                "restarted redis-server exited with {status}; logs:\n{}",
                self.child.logs()
            );
        }
    }

    /// The process.
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }

    /// What the server (all its runs) logged so far.
    pub fn logs(&self) -> String {
        self.child.logs()
    }
}

fn server_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let defaults: [(&str, &str); 3] = [
        ("--bind", "127.0.0.1"),
        ("--save", ""),
        ("--appendonly", "no"),
    ];
    let mut args = vec!["--dir".to_owned(), dir.display().to_string()];
    for (name, value) in defaults {
        if !extra.contains(&name) {
            args.extend([name.to_owned(), value.to_owned()]);
        }
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

fn spawn(bin: &Path, port: u16, dir: &Path, args: &[String]) -> ChildGuard {
    let mut cmd = Command::new(bin);
    cmd.arg("--port").arg(port.to_string()).args(args);
    ChildGuard::spawn_logged("redis-server", cmd, &dir.join("redis.log"))
}

fn redis_server_bin() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server is not on PATH; these tests need a real Redis: \
                 install it (e.g. `apt-get install redis-server`)"
            )
        })
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, COMMAND_TIMEOUT)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(stream)
}

fn ping(addr: SocketAddr) -> bool {
    let reply = connect(addr).and_then(|mut stream| {
        stream.write_all(b"PING\r\n")?;
        resp::read(&mut BufReader::new(stream))
    });
    matches!(reply, Ok(Resp::Simple(s)) if s == "PONG")
}
