//! The `cellgate` command line as a user runs it: exit codes and messages.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::{EchoCell, Gateway};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

/// Writes `text` to `name` in a fresh temp dir, removed when the returned guard drops.
fn write_config(name: &str, text: &str) -> (test_support::TempDir, PathBuf) {
    let dir = test_support::TempDir::new("cellgate-cli");
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

#[test]
fn check_config_accepts_the_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for example in ["config/minimal.toml", "config/cellgate.example.toml"] {
        let path = root.join(example);
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .env("CELLGATE_ADMIN_TOKEN", "t0ken")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
    }
}

#[test]
fn check_config_reports_file_and_line_and_exits_1() {
    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n\n[[cells]]\nname = \"c\"\nupstreams = [\"127.0.0.1:1\"]\n",
            ":3:",
            "bogus",
        ),
        (
            "[server]\nrequest_timeout = \"5 parsecs\"\n\n[[cells]]\nname = \"c\"\nupstreams = [\"127.0.0.1:1\"]\n",
            ":2:",
            "5 parsecs",
        ),
        (
            "[[cells]]\nname = \"c\"\nupstreams = []\n",
            ":3:",
            "upstream",
        ),
        (
            "[[cells]]\nname = \"c\"\nupstreams = [\"127.0.0.1:1\"]\n\n[[cells]]\nname = \"c\"\nupstreams = [\"127.0.0.1:2\"]\n",
            ":6:",
            "duplicate",
        ),
        (
            "[[cells]]\nname = \"c\"\nupstreams = [\"http://127.0.0.1:1\"]\n",
            ":3:",
            "http://",
        ),
        (
            "[server]\nadmin_token = \"${CELLGATE_TEST_SURELY_UNSET_VAR}\"\n\n[[cells]]\nname = \"c\"\nupstreams = [\"127.0.0.1:1\"]\n",
            ":2:",
            "CELLGATE_TEST_SURELY_UNSET_VAR",
        ),
        (
            "[server]\nadmin_listen = \"0.0.0.0:9901\"\n\n[[cells]]\nname = \"c\"\nupstreams = [\"127.0.0.1:1\"]\n",
            ":2:",
            "admin_token",
        ),
    ];
    for (text, line, needle) in cases {
        let (_dir, path) = write_config("bad.toml", text);
        let path_str = path.to_str().unwrap();
        for command in ["check-config", "serve"] {
            let out = run(&[command, "--config", path_str]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command} {text:?}: {stderr}");
            assert!(
                stderr.contains(&format!("{path_str}{line}")),
                "{command}: expected {path_str}{line} in {stderr:?}"
            );
            assert!(stderr.contains(needle), "expected {needle:?} in {stderr:?}");
        }
    }
    let out = run(&["check-config", "--config", "/nonexistent/cellgate.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cellgate.toml"));
}

#[test]
fn usage_errors_exit_2_and_help_helps() {
    assert_eq!(run(&["serve"]).status.code(), Some(2));
    assert_eq!(run(&["no-such-command"]).status.code(), Some(2));
    let zero = run(&[
        "--worker-threads",
        "0",
        "check-config",
        "--config",
        "x.toml",
    ]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--worker-threads"));
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["serve", "check-config", "demo", "echo-cell"] {
        assert!(text.contains(command), "--help lacks {command}: {text}");
    }
}

#[test]
fn a_single_threaded_gateway_serves() {
    let cell = EchoCell::start(bin(), "cell-1");
    let gateway = Gateway::start_with_env(
        bin(),
        &format!(
            "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n\n[[cells]]\nname = \"cell-1\"\nupstreams = [\"{}\"]\n",
            cell.addr
        ),
        &[("CELLGATE_WORKER_THREADS", "1")],
    );
    for i in 0..20 {
        let user = format!("u{i}");
        let response = test_support::http::request(
            gateway.addr,
            "GET",
            "/one-thread",
            &[("x-user-id", &user)],
            b"",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-cell"), Some("cell-1"));
    }
}

#[test]
fn cellctl_talks_to_a_real_gateway() {
    let cellctl = test_support::workspace_bin("cellctl");
    let cell = EchoCell::start(bin(), "cell-1");
    let gateway = Gateway::start(
        bin(),
        &format!(
            "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\nadmin_token = \"s3cret\"\n\n[[cells]]\nname = \"cell-1\"\nupstreams = [\"{}\"]\n",
            cell.addr
        ),
    );
    let admin = gateway.admin_url("");
    let ctl = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(&cellctl);
        cmd.arg("--admin").arg(&admin).args(args);
        cmd.env_remove("CELLCTL_TOKEN");
        if let Some(token) = token {
            cmd.env("CELLCTL_TOKEN", token);
        }
        cmd.output().unwrap()
    };

    let out = ctl(&["-o", "json", "status"], Some("s3cret"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cells"][0]["name"], "cell-1");

    let out = ctl(&["where", "alice"], Some("s3cret"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice -> cell-1"));
    let out = ctl(&["-o", "json", "where", "alice"], Some("s3cret"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cell"], "cell-1");

    // Wrong or missing token: refused (1), with the reason.
    for token in [None, Some("wrong")] {
        let out = ctl(&["status"], token);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
    }
    // Open endpoints need no token.
    let health = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(gateway.admin_url("/healthz"))
        .output();
    if let Ok(health) = health {
        assert_eq!(String::from_utf8_lossy(&health.stdout), "200");
    }
    // Usage error: 2. Unreachable admin API: 3.
    assert_eq!(ctl(&["where"], Some("s3cret")).status.code(), Some(2));
    let out = Command::new(&cellctl)
        .args(["--admin", "http://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

#[test]
fn demo_serves_three_cells_and_stops_on_ctrl_c() {
    use std::io::Read as _;
    use std::time::{Duration, Instant};

    let (listen, admin) = (test_support::free_addr(), test_support::free_addr());
    let mut child = Command::new(bin())
        .args([
            "demo",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while test_support::http::get(admin, "/readyz")
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "demo never became ready");
        assert!(child.try_wait().unwrap().is_none(), "demo exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cells = std::collections::BTreeSet::new();
    for i in 0..60 {
        let response = test_support::http::get(listen, &format!("/hello?user=demo-{i}")).unwrap();
        assert_eq!(response.status, 200);
        cells.insert(response.header("x-cell").unwrap().to_owned());
    }
    assert_eq!(
        cells.into_iter().collect::<Vec<_>>(),
        ["cell-1", "cell-2", "cell-3"]
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let mut banner = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut banner)
        .unwrap();
    assert!(
        banner.contains(&format!(
            "curl -s -H 'x-user-id: alice' http://{listen}/hello"
        )),
        "{banner}"
    );
    assert!(banner.contains("cellctl"), "{banner}");
}
