//! Paths of the workspace's binaries, for tests of one package that need another's binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The path of workspace binary `name` (e.g. `cellctl`) in the same profile as the running
/// test, brought up to date by `cargo build` once per test process (`cargo test -p gateway`
/// alone does not build other packages' binaries, and a stale one would test old code).
///
/// # Panics
///
/// When the build fails.
pub fn workspace_bin(name: &str) -> PathBuf {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "--workspace", "--bin", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_owned());
    }
    bin
}

/// Runs the real `cellctl` binary against the admin API at `admin` (`http://host:port`), with
/// `token` if given and the environment cleared of its flags (`CELLCTL_TOKEN`,
/// `CELLCTL_ADMIN`), so only `args` decide what it does.
///
/// # Panics
///
/// When the binary cannot be built or run.
pub fn cellctl(admin: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(workspace_bin("cellctl"));
    cmd.arg("--admin")
        .arg(admin)
        .env_remove("CELLCTL_TOKEN")
        .env_remove("CELLCTL_ADMIN");
    if let Some(token) = token {
        cmd.arg("--token").arg(token);
    }
    cmd.args(args).output().expect("run cellctl")
}
