//! Paths of the workspace's binaries, for tests of one package that need another's binary.

use std::path::{Path, PathBuf};
use std::process::Command;
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
