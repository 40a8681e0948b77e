//! A gateway with the async delivery queue on a real `redis-server`, echo cells behind it,
//! and `cellctl` pointed at its admin API.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use test_support::{EchoCell, Gateway, RedisServer, http, wait_until};

/// Generous on purpose: a loaded 2-core machine runs these tests in parallel.
pub const PATIENCE: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cellgate"))
}

pub fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Redis, two echo cells and one gateway with `[delivery]`.
pub struct Stack {
    pub gateway: Gateway,
    _cells: Vec<EchoCell>,
    pub token: Option<&'static str>,
    redis: RedisServer,
}

impl Stack {
    /// `delivery` is the body of the `[delivery]` section; `token` the admin token, if any.
    pub fn start(delivery: &str, token: Option<&'static str>) -> Stack {
        let redis = RedisServer::start();
        let cells: Vec<EchoCell> = ["cell-1", "cell-2"]
            .iter()
            .map(|n| EchoCell::start(bin(), n))
            .collect();
        let mut config = String::from(
            "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin_listen}\"\n\
             request_timeout = \"5s\"\n",
        );
        if let Some(token) = token {
            config.push_str(&format!("admin_token = \"{token}\"\n"));
        }
        // The default Redis budget (10ms) is for a quiet production Redis, not a busy CI box.
        config.push_str(&format!(
            "\n[redis]\nurl = \"{}\"\ntimeout = \"2s\"\n\n[routing]\nkey = [\"header:x-user-id\"]\n\n\
             [delivery]\n{delivery}\n",
            redis.url()
        ));
        for cell in &cells {
            config.push_str(&format!(
                "\n[[cells]]\nname = \"{}\"\nupstreams = [\"{}\"]\n",
                cell.name, cell.addr
            ));
        }
        let gateway = Gateway::start(bin(), &config);
        Stack {
            gateway,
            _cells: cells,
            token,
            redis,
        }
    }

    /// The Redis server the queue lives in.
    pub fn redis(&self) -> &RedisServer {
        &self.redis
    }

    /// Sends `POST /orders` for `key` with `Prefer: respond-async` and `extra` headers;
    /// returns the delivery id from the `202`.
    pub fn send_async(&self, key: &str, extra: &[(&str, &str)], body: &str) -> String {
        let mut headers = vec![
            ("x-user-id", key),
            ("prefer", "respond-async"),
            ("content-type", "text/plain"),
        ];
        headers.extend_from_slice(extra);
        let r = http::request(
            self.gateway.addr,
            "POST",
            "/orders?n=1",
            &headers,
            body.as_bytes(),
            CALL_TIMEOUT,
        )
        .unwrap();
        assert_eq!(r.status, 202, "async request not accepted: {}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(
            r.header("location"),
            Some(format!("/_cellgate/deliveries/{id}").as_str())
        );
        id
    }

    /// The public status record of `id`; `None` on 404.
    pub fn status(&self, id: &str) -> Option<Value> {
        let r = http::get_with_timeout(
            self.gateway.addr,
            &format!("/_cellgate/deliveries/{id}"),
            CALL_TIMEOUT,
        )
        .unwrap();
        match r.status {
            200 => Some(r.json()),
            404 => None,
            other => panic!("status of {id}: {other} {}", r.text()),
        }
    }

    /// Waits until `id` reaches a final state (`delivered` or `dead`), returns its record.
    pub fn settled(&self, id: &str) -> Value {
        let mut last = None;
        wait_until(PATIENCE, &format!("delivery {id} to settle"), || {
            last = self.status(id);
            last.as_ref()
                .is_some_and(|r| r["state"] == "delivered" || r["state"] == "dead")
        });
        last.unwrap()
    }

    /// One admin API call, with the token when the gateway has one.
    pub fn admin(&self, method: &str, path: &str, body: &str) -> http::Response {
        let auth = self.token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        http::request(
            self.gateway.admin_addr,
            method,
            path,
            &headers,
            body.as_bytes(),
            CALL_TIMEOUT,
        )
        .unwrap()
    }

    /// The home cell of routing key `key`, as the admin API explains it.
    pub fn home(&self, key: &str) -> String {
        let r = self.admin("GET", &format!("/admin/where/{key}"), "");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["home"].as_str().unwrap().to_owned()
    }

    /// Runs `cellctl` against this gateway's admin API.
    pub fn cellctl(&self, args: &[&str]) -> Output {
        cellctl(&self.gateway.admin_url(""), self.token, args)
    }
}

/// Runs the real `cellctl` binary against `admin` (see [`test_support::cellctl`]), with a
/// 20 s timeout: DLQ operations on a loaded machine can take a while.
pub fn cellctl(admin: &str, token: Option<&str>, args: &[&str]) -> Output {
    let args: Vec<&str> = ["--timeout", "20"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    test_support::cellctl(admin, token, &args)
}

/// Asserts that `out` exited with `code`; returns its stdout.
pub fn exited(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit `code` and parses stdout as JSON.
pub fn json_exit(out: &Output, code: i32) -> Value {
    let stdout = exited(out, code);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The ids of a JSON array, sorted.
pub fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `ids` sorted, for comparisons with [`ids`].
pub fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}
