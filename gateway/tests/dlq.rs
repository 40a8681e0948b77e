//! The dead-letter queue of async deliveries, from the operator's side: real echo cells that
//! refuse or fail deliveries, a real gateway on a real `redis-server`, and the admin API and
//! `cellctl dlq` on top.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "dlq/support.rs"]
mod support;

use serde_json::Value;
use test_support::{EchoCell, Gateway, free_port, http, wait_until};

use support::{PATIENCE, Stack, bin, cellctl, exited, ids, json_exit, now_ms, sorted, stderr};

/// Fast retries; one retry before the dead-letter queue.
const TWO_ATTEMPTS: &str =
    "workers = 8\nmax_attempts = 2\nbackoff_base = \"20ms\"\nbackoff_max = \"50ms\"\n";

#[test]
fn a_non_retryable_answer_is_dead_lettered_after_one_attempt() {
    let s = Stack::start(TWO_ATTEMPTS, None);
    let id = s.send_async("alice", &[("x-echo-status", "400")], "hello");
    let status = s.settled(&id);
    assert_eq!(status["state"], "dead", "{status}");
    assert!(
        status.get("request").is_none(),
        "the public status hides the stored request: {status}"
    );

    // The admin view: full record, with the stored request and the partition's cell.
    let r = s.admin("GET", &format!("/admin/deliveries/dead/{id}"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let dead = r.json();
    assert_eq!(dead["id"], id.as_str());
    assert_eq!(dead["cell"], s.home("alice").as_str());
    assert_eq!(dead["reason"], "non_retryable_status");
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["last_status"], 400);
    let history = dead["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "exactly one attempt: {dead}");
    assert_eq!(history[0]["attempt"], 1);
    assert!(
        history[0]["outcome"]
            .as_str()
            .unwrap()
            .ends_with("answered 400"),
        "{dead}"
    );
    let request = &dead["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["uri"], "/orders?n=1");
    assert_eq!(request["target"], "alice");
    assert_eq!(request["body_bytes"], 5);

    // cellctl shows the same record, as JSON and for humans.
    let shown = json_exit(&s.cellctl(&["-o", "json", "dlq", "show", &id]), 0);
    assert_eq!(shown["reason"], "non_retryable_status");
    assert_eq!(shown["attempts"], 1);
    assert_eq!(shown["history"].as_array().unwrap().len(), 1);
    assert_eq!(shown["request"]["target"], "alice");
    let text = exited(&s.cellctl(&["dlq", "show", &id]), 0);
    assert!(text.contains("dead (non_retryable_status)"), "{text}");
    assert!(text.contains("POST /orders?n=1"), "{text}");
    assert!(text.contains("answered 400"), "{text}");

    // And lists it.
    let listed = json_exit(&s.cellctl(&["-o", "json", "dlq", "list"]), 0);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["dead"][0]["id"], id.as_str());
    let table = exited(&s.cellctl(&["dlq", "list"]), 0);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&id), "{table}");
    assert!(table.contains("non_retryable_status"), "{table}");
    assert!(table.contains("POST /orders?n=1"), "{table}");

    // A delivered entry is not a dead letter; neither is an unknown id.
    let ok = s.send_async("alice", &[], "fine");
    assert_eq!(s.settled(&ok)["state"], "delivered");
    let r = s.admin("GET", &format!("/admin/deliveries/dead/{ok}"), "");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], "not_dead");
    let unknown = "cell-1.0123456789abcdef0123456789abcdef";
    let r = s.admin("GET", &format!("/admin/deliveries/dead/{unknown}"), "");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], "unknown_delivery");
    let out = s.cellctl(&["dlq", "show", unknown]);
    exited(&out, 1);
    assert!(stderr(&out).contains(unknown), "{}", stderr(&out));

    // An unknown cell is refused with the known ones.
    let r = s.admin("GET", "/admin/deliveries/dead?cell=cell-9", "");
    assert_eq!(r.status, 404, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "unknown_cell");
    assert!(
        body["message"].as_str().unwrap().contains("cell-1, cell-2"),
        "{body}"
    );
    let out = s.cellctl(&["dlq", "list", "--cell", "cell-9"]);
    exited(&out, 1);
    assert!(stderr(&out).contains("cell-1, cell-2"), "{}", stderr(&out));
}

#[test]
fn poison_deliveries_run_out_of_attempts_and_replay_once_the_target_recovers() {
    let s = Stack::start(TWO_ATTEMPTS, None);
    let key = "poisoned-user";
    let home = s.home(key);
    // The target fails these until `fail_until`: long enough for both attempts even on a
    // loaded machine, short enough to wait for.
    let fail_until = now_ms() + 6_000;
    let fail_until_header = fail_until.to_string();
    let mut poison = Vec::new();
    let mut healthy = Vec::new();
    // Healthy traffic to the same cell around the poison keeps its error ratio low, so the
    // breaker stays closed and every poison attempt really reaches the cell.
    for i in 0..40 {
        healthy.push(s.send_async(key, &[], &format!("healthy {i}")));
        if i % 10 == 5 {
            poison.push(s.send_async(
                key,
                &[("x-echo-fail-until-ms", &fail_until_header)],
                &format!("poison {i}"),
            ));
        }
    }
    for id in &poison {
        let record = s.settled(id);
        assert_eq!(
            record["state"], "dead",
            "poison {id} must be dead-lettered before {fail_until}: {record}"
        );
    }
    assert!(
        now_ms() < fail_until,
        "the poison deliveries took too long to die for this test to mean anything"
    );
    for id in &healthy {
        assert_eq!(s.settled(id)["state"], "delivered", "healthy {id}");
    }
    let cells = s.admin("GET", "/admin/cells", "").json();
    let breaker = cells["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == home.as_str())
        .map(|c| c["breaker"].clone())
        .unwrap();
    assert_eq!(breaker, "closed", "{cells}");

    let listed = json_exit(&s.cellctl(&["-o", "json", "dlq", "list"]), 0);
    assert_eq!(listed["count"], poison.len());
    let dead = listed["dead"].as_array().unwrap();
    let listed_ids: Vec<String> = dead
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sorted(&listed_ids), sorted(&poison));
    for d in dead {
        assert_eq!(d["reason"], "max_attempts", "{d}");
        assert_eq!(d["attempts"], 2, "{d}");
        assert_eq!(d["cell"], home.as_str(), "{d}");
        assert_eq!(d["last_status"], 500, "{d}");
        let history = d["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{d}");
        assert_eq!(history[0]["attempt"], 1);
        assert_eq!(history[1]["attempt"], 2);
    }

    // Once the target recovers, one command sends them all again.
    wait_until(PATIENCE, "the poison deadline to pass", || {
        now_ms() > fail_until + 100
    });
    let replayed = json_exit(&s.cellctl(&["-o", "json", "dlq", "replay", "--all"]), 0);
    assert_eq!(ids(&replayed["replayed"]), sorted(&poison), "{replayed}");
    assert_eq!(ids(&replayed["not_found"]), Vec::<String>::new());
    for id in &poison {
        let record = s.settled(id);
        assert_eq!(record["state"], "delivered", "{record}");
        assert_eq!(
            record["attempts"], 1,
            "attempts reset by the replay: {record}"
        );
        let outcomes: Vec<&str> = record["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes.len(), 4, "{record}");
        assert_eq!(outcomes[2], "replayed", "{record}");
        assert!(outcomes[3].ends_with("answered 200"), "{record}");
    }
    let r = s.admin("GET", "/admin/deliveries/dead", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let listing = r.json();
    assert_eq!(listing["count"], 0, "{listing}");
    assert_eq!(listing["total"], 0, "{listing}");
    let text = exited(&s.cellctl(&["dlq", "list"]), 0);
    assert_eq!(text, "the dead-letter queue is empty\n");
}

#[test]
fn purge_and_replay_report_what_they_did_with_spec_exit_codes() {
    let s = Stack::start(TWO_ATTEMPTS, Some("dlq-test-token"));
    // Two keys with different home cells, so `--cell` has something to tell apart.
    let a = "alice";
    let cell_a = s.home(a);
    let b = (0..1000)
        .map(|i| format!("user-{i}"))
        .find(|k| s.home(k) != cell_a)
        .unwrap();
    let cell_b = s.home(&b);
    let refuse = [("x-echo-status", "422")];
    let a_ids: Vec<String> = (0..3).map(|_| s.send_async(a, &refuse, "a")).collect();
    let b_ids: Vec<String> = (0..2).map(|_| s.send_async(&b, &refuse, "b")).collect();
    for id in a_ids.iter().chain(&b_ids) {
        assert_eq!(s.settled(id)["state"], "dead");
    }

    // The token is required.
    let out = cellctl(&s.gateway.admin_url(""), None, &["dlq", "list"]);
    exited(&out, 1);
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // Purge one by id: its record is gone.
    let purged = json_exit(&s.cellctl(&["-o", "json", "dlq", "purge", &a_ids[0]]), 0);
    assert_eq!(ids(&purged["purged"]), vec![a_ids[0].clone()]);
    assert_eq!(ids(&purged["not_found"]), Vec::<String>::new());
    assert!(s.status(&a_ids[0]).is_none());
    // Again: nothing to purge, so exit 1, and the answer says which.
    let again = json_exit(&s.cellctl(&["-o", "json", "dlq", "purge", &a_ids[0]]), 1);
    assert_eq!(ids(&again["purged"]), Vec::<String>::new());
    assert_eq!(ids(&again["not_found"]), vec![a_ids[0].clone()]);

    // A purge forgets the idempotent acceptance too: the same Idempotency-Key is accepted
    // anew, not answered with the purged id.
    let keyed = [("x-echo-status", "422"), ("idempotency-key", "purge-me")];
    let first = s.send_async(a, &keyed, "k");
    assert_eq!(
        s.send_async(a, &keyed, "k"),
        first,
        "a repeat before the purge"
    );
    assert_eq!(s.settled(&first)["state"], "dead");
    json_exit(&s.cellctl(&["-o", "json", "dlq", "purge", &first]), 0);
    let second = s.send_async(a, &keyed, "k");
    assert_ne!(second, first, "the purged acceptance must be forgotten");
    assert_eq!(s.settled(&second)["state"], "dead");
    json_exit(&s.cellctl(&["-o", "json", "dlq", "purge", &second]), 0);

    // Replay of unknown ids: exit 1, both listed, the rest of the DLQ untouched.
    let unknown = format!("{cell_a}.0123456789abcdef0123456789abcdef");
    let out = s.cellctl(&["-o", "json", "dlq", "replay", &unknown, "not-an-id"]);
    let answer = json_exit(&out, 1);
    assert_eq!(ids(&answer["replayed"]), Vec::<String>::new());
    assert_eq!(
        ids(&answer["not_found"]),
        sorted(&[unknown.clone(), "not-an-id".to_owned()])
    );
    assert!(
        stderr(&out).contains("not in the dead-letter queue"),
        "{}",
        stderr(&out)
    );
    let text = exited(&s.cellctl(&["dlq", "replay", &unknown]), 1);
    assert!(text.contains(&unknown), "{text}");

    // Purge all of one cell: the other cell's dead letters stay.
    let out = s.cellctl(&["-o", "json", "dlq", "purge", "--all", "--cell", &cell_a]);
    let purged = json_exit(&out, 0);
    assert_eq!(ids(&purged["purged"]), sorted(&a_ids[1..]));
    let left = json_exit(&s.cellctl(&["-o", "json", "dlq", "list"]), 0);
    let left_ids: Vec<String> = left["dead"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sorted(&left_ids), sorted(&b_ids));
    let only_b = json_exit(
        &s.cellctl(&[
            "-o", "json", "dlq", "list", "--cell", &cell_b, "--limit", "1",
        ]),
        0,
    );
    assert_eq!(only_b["count"], 1);
    assert_eq!(only_b["total"], 2);
    assert_eq!(only_b["dead"][0]["cell"], cell_b.as_str());

    // Purge the rest; a second --all finds nothing and that is fine.
    let purged = json_exit(&s.cellctl(&["-o", "json", "dlq", "purge", "--all"]), 0);
    assert_eq!(ids(&purged["purged"]), sorted(&b_ids));
    let text = exited(&s.cellctl(&["dlq", "purge", "--all"]), 0);
    assert_eq!(text, "the dead-letter queue is empty: nothing to purge\n");
    let out = s.cellctl(&["dlq", "replay", "--all", "--cell", "cell-9"]);
    exited(&out, 1);
    assert!(stderr(&out).contains("cell-1, cell-2"), "{}", stderr(&out));

    // Usage errors: exit 2, before any call.
    for args in [
        &["dlq", "replay"][..],
        &["dlq", "purge"],
        &["dlq", "purge", "some-id", "--all"],
        &["dlq", "replay", "--cell", "cell-1"],
        &["dlq", "list", "--limit", "0"],
        &["dlq", "list", "--limit", "1001"],
        &["dlq", "show"],
    ] {
        exited(&s.cellctl(args), 2);
    }

    // Nobody listening: exit 3.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["dlq", "list"][..],
        &["dlq", "replay", "--all"],
        &["dlq", "purge", &b_ids[0]],
    ] {
        let out = cellctl(&nowhere, None, args);
        exited(&out, 3);
        assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    }

    // Malformed requests get JSON 400s.
    for (method, path, body) in [
        ("POST", "/admin/deliveries/dead/replay", "{"),
        ("POST", "/admin/deliveries/dead/replay", ""),
        ("POST", "/admin/deliveries/dead/replay", r#"{"ids":[]}"#),
        (
            "DELETE",
            "/admin/deliveries/dead",
            r#"{"ids":["x"],"all":true}"#,
        ),
        (
            "DELETE",
            "/admin/deliveries/dead",
            r#"{"ids":["x"],"cell":"cell-1"}"#,
        ),
        ("DELETE", "/admin/deliveries/dead", r#"{"every":true}"#),
        ("GET", "/admin/deliveries/dead?limit=many", ""),
    ] {
        let r = s.admin(method, path, body);
        assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.text());
        let error: Value = r.json();
        assert!(error["message"].is_string(), "{error}");
    }
}

#[test]
fn without_a_delivery_queue_the_dlq_says_so() {
    let cell = EchoCell::start(bin(), "cell-1");
    let gateway = Gateway::start(
        bin(),
        &format!(
            "[server]\nlisten = \"{{listen}}\"\nadmin_listen = \"{{admin_listen}}\"\n\n\
             [[cells]]\nname = \"cell-1\"\nupstreams = [\"{}\"]\n",
            cell.addr
        ),
    );
    let r = http::get(gateway.admin_addr, "/admin/deliveries/dead").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], "delivery_not_configured");
    let out = cellctl(&gateway.admin_url(""), None, &["dlq", "replay", "--all"]);
    exited(&out, 1);
    assert!(stderr(&out).contains("not configured"), "{}", stderr(&out));
}

/// A Redis that stops answering turns into a short 503, not a hang or an internal error.
#[test]
fn a_stalled_redis_is_a_503_without_internals() {
    let s = Stack::start(TWO_ATTEMPTS, None);
    let id = s.send_async("alice", &[("x-echo-status", "400")], "x");
    assert_eq!(s.settled(&id)["state"], "dead");
    s.redis().stop();
    let r = s.admin("GET", "/admin/deliveries/dead", "");
    s.redis().cont();
    assert_eq!(r.status, 503, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "queue_unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.contains("127.0.0.1") && !message.contains("redis://"),
        "{message}"
    );
    // And it recovers.
    wait_until(PATIENCE, "the DLQ to answer again", || {
        s.admin("GET", "/admin/deliveries/dead", "").status == 200
    });
}
