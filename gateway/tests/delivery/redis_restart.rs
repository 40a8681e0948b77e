//! Redis crashes (SIGKILL) and restarts from its append-only file under enqueue load: every
//! request answered 202 is delivered afterwards, and requests made while Redis was down are
//! refused with 503 `queue_unavailable`, never acknowledged.
//!
//! Redis runs with `appendfsync always` ([`RedisServer::start_durable`]): it fsyncs each write
//! before replying, which is what makes a 202 survive a crash of Redis itself (with the
//! default `everysec`, only a clean shutdown would be safe; see `docs/delivery.md`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use test_support::{Gateway, RedisServer, wait_until};

use crate::support::{
    Answer, bin, client, config, recorded_keys, recording_cells, redis_int, send_async, serial,
    statuses, wait_settled,
};

const CELLS: [&str; 3] = ["cell-1", "cell-2", "cell-3"];
/// Accepted requests wanted before the crash and after the restart.
const ACCEPTED_EACH_SIDE: usize = 200;
/// Refusals wanted while Redis is down.
const REFUSED_WHILE_DOWN: usize = 20;
/// How long Redis stays down at least: long enough for every Redis user in the gateway
/// (enqueue, readers, claims, promotion, control plane) to fail and back off.
const DOWN_FOR: Duration = Duration::from_secs(2);

struct Sent {
    key: String,
    started: Instant,
    finished: Instant,
    answer: Answer,
}

#[test]
fn every_accepted_request_survives_a_redis_crash_and_restart() {
    let _serial = serial();
    let mut redis = RedisServer::start_durable();
    // Slowish cells, so a backlog of accepted, undelivered entries exists when Redis dies.
    let cells = recording_cells(3, &["--latency", "50ms"]);
    let refs: Vec<_> = cells.iter().collect();
    let gateway = Gateway::start(bin(), &config(&redis, &refs, "300ms", "workers = 8"));

    let log: Mutex<Vec<Sent>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let count = |f: &dyn Fn(&Sent) -> bool| log.lock().unwrap().iter().filter(|s| f(s)).count();
    let (down, up_begin, up, backlog) = thread::scope(|s| {
        for t in 0..4 {
            let (log, stop, gateway) = (&log, &stop, &gateway);
            s.spawn(move || {
                let http = client();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (user, key) = (format!("user-{t}-{n}"), format!("restart-{t}-{n}"));
                    n += 1;
                    let started = Instant::now();
                    let answer = send_async(&http, gateway, &user, Some(&key), "{}")
                        .unwrap_or_else(|e| panic!("async request {key}: {e}"));
                    log.lock().unwrap().push(Sent {
                        key,
                        started,
                        finished: Instant::now(),
                        answer,
                    });
                }
            });
        }
        let stop_load = StopOnDrop(&stop);
        wait_until(
            Duration::from_secs(20),
            "requests accepted before the crash",
            || count(&|s| s.answer.status == 202) >= ACCEPTED_EACH_SIDE,
        );
        let down = Instant::now();
        let down_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        redis.kill();
        wait_until(
            Duration::from_secs(20),
            "requests refused while Redis is down",
            || {
                down.elapsed() >= DOWN_FOR
                    && count(&|s| s.started > down && s.answer.status == 503) >= REFUSED_WHILE_DOWN
            },
        );
        let up_begin = Instant::now();
        redis.restart(); // same port and data dir; returns once the AOF is loaded
        let up = Instant::now();
        // Entries accepted before the crash and not delivered yet: reloaded from the AOF.
        let backlog: i64 = CELLS
            .iter()
            .map(|c| {
                let key = format!("{{dq:{c}}}:live");
                redis_int(&redis, &["ZCOUNT", &key, "-inf", &down_ms.to_string()])
            })
            .sum();
        assert!(backlog > 0, "undelivered entries came back from the AOF");
        wait_until(
            Duration::from_secs(20),
            "requests accepted after the restart",
            || count(&|s| s.started > up && s.answer.status == 202) >= ACCEPTED_EACH_SIDE,
        );
        drop(stop_load);
        (down, up_begin, up, backlog)
    });
    let log = log.into_inner().unwrap();

    for s in &log {
        let a = &s.answer;
        match a.status {
            202 => {}
            503 => {
                assert_eq!(a.error.as_deref(), Some("queue_unavailable"), "{}", a.body);
                assert!(a.retry_after.is_some(), "{}: no Retry-After", s.key);
            }
            other => panic!("{}: unexpected {other}: {}", s.key, a.body),
        }
        if s.started > down && s.finished < up_begin {
            assert_eq!(a.status, 503, "{} was answered while Redis was down", s.key);
        }
    }

    let accepted: Vec<&Sent> = log.iter().filter(|s| s.answer.status == 202).collect();
    let ids: Vec<String> = accepted
        .iter()
        .map(|s| s.answer.id.clone().unwrap())
        .collect();
    wait_settled(&redis, &CELLS, Duration::from_secs(60));
    for (s, record) in accepted.iter().zip(statuses(&gateway, &ids, 4)) {
        assert_eq!(record["state"], "delivered", "{}: {record}", s.key);
    }
    let received = recorded_keys(&cells);
    let lost: Vec<&str> = accepted
        .iter()
        .map(|s| s.key.as_str())
        .filter(|k| !received.contains(*k))
        .collect();
    assert!(lost.is_empty(), "accepted but never received: {lost:?}");
    let refused: HashSet<&str> = log
        .iter()
        .filter(|s| s.answer.status == 503)
        .map(|s| s.key.as_str())
        .collect();
    eprintln!(
        "redis restart: {} accepted, {} refused ({} of those received anyway), down for {:?}, \
         restart took {:?}, {backlog} undelivered entries reloaded from the AOF",
        accepted.len(),
        refused.len(),
        refused.iter().filter(|k| received.contains(**k)).count(),
        up_begin - down,
        up - up_begin
    );
}

/// Stops the load threads when dropped: at the end of the scenario, and when a wait fails
/// (the scope would otherwise never end).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
