//! The workers' batched scripts on a real `redis-server`, through the store's API: one call
//! starts or records many entries of a partition, and each entry in it is judged alone.

use std::time::Duration;

use bytes::Bytes;
use gateway::delivery::keys::{Partition, new_id};
use gateway::delivery::record::StoredRequest;
use gateway::delivery::store::{
    Enqueued, Outcome, OutcomeKind, QueueStore, Reader, Settled, TAKE_REPLY_BYTES, Take,
    TakeRequest, Token,
};
use test_support::{RedisServer, Resp};

use crate::support::{redis_int, serial};

const MAX_AGE: Duration = Duration::from_secs(3600);
const RETENTION: Duration = Duration::from_secs(60);
const NOW: u64 = 1_700_000_000_000;

/// A store on a fresh Redis, one partition with its consumer group.
struct Fixture {
    redis: RedisServer,
    store: QueueStore,
    reader: Reader,
    p: Partition,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let redis = RedisServer::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(async {
            QueueStore::open_url(&redis.url(), Duration::from_secs(2), Duration::from_secs(2))
                .unwrap()
        });
        let p = Partition::new("cell-1");
        rt.block_on(store.ensure_group(&p)).unwrap();
        let reader = store.reader("gw-a");
        Fixture {
            redis,
            store,
            reader,
            p,
            rt,
        }
    }

    /// Enqueues one entry per target and reads their tokens, in order.
    fn enqueue_and_read(&mut self, targets: &[&str]) -> Vec<Token> {
        self.enqueue_and_read_with(targets, &Bytes::from_static(b"hello"))
    }

    /// Enqueues one entry per target with `body` and reads their tokens, in order.
    fn enqueue_and_read_with(&mut self, targets: &[&str], body: &Bytes) -> Vec<Token> {
        for target in targets {
            let request = StoredRequest {
                method: "POST".into(),
                uri: "/orders".into(),
                headers: b"content-type: text/plain\r\n".to_vec(),
                body: body.clone(),
                target: target.as_bytes().to_vec(),
                idempotency_key: format!("key-{target}"),
                traceparent: String::new(),
            };
            let id = new_id(self.p.cell());
            let enqueued = self
                .rt
                .block_on(self.store.enqueue(&self.p, &id, NOW, 1000, None, &request));
            assert_eq!(enqueued.unwrap(), Enqueued::Accepted);
        }
        let tokens = self
            .rt
            .block_on(self.reader.read(&self.p, targets.len(), None))
            .unwrap();
        assert_eq!(tokens.len(), targets.len());
        tokens
    }

    fn take(&self, batch: &[(&Token, Option<u64>)], now: u64) -> Vec<Take> {
        let batch: Vec<TakeRequest> = batch
            .iter()
            .map(|(token, defer_until)| TakeRequest {
                token: (*token).clone(),
                defer_until: *defer_until,
            })
            .collect();
        self.rt
            .block_on(self.store.take(&self.p, &batch, now, MAX_AGE, 5))
            .unwrap()
    }

    fn settle(&self, outcomes: Vec<(&Token, u32, OutcomeKind)>) -> Vec<Settled> {
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|(token, attempt, kind)| Outcome {
                token: token.clone(),
                attempt,
                at_ms: NOW + 10,
                kind,
            })
            .collect();
        self.rt
            .block_on(self.store.settle(&self.p, &outcomes, RETENTION))
            .unwrap()
    }

    fn field(&self, token: &Token, name: &str) -> Option<String> {
        let key = format!("{{dq:cell-1}}:d:{}", token.id);
        match self.redis.command(&["HGET", &key, name]).unwrap() {
            Resp::Bulk(b) => b.map(|b| String::from_utf8_lossy(&b).into_owned()),
            other => panic!("HGET {key} {name}: {other:?}"),
        }
    }

    fn score(&self, set: &str, token: &Token) -> Option<u64> {
        let key = format!("{{dq:cell-1}}:{set}");
        match self.redis.command(&["ZSCORE", &key, &token.id]).unwrap() {
            Resp::Bulk(b) => b.map(|b| String::from_utf8_lossy(&b).parse().unwrap()),
            other => panic!("ZSCORE {key}: {other:?}"),
        }
    }

    /// The stream entries still pending with some worker.
    fn pending(&self) -> Vec<String> {
        let reply = self
            .redis
            .command(&["XPENDING", "{dq:cell-1}:stream", "workers", "-", "+", "100"])
            .unwrap();
        let Resp::Array(Some(entries)) = reply else {
            panic!("XPENDING: {reply:?}");
        };
        entries
            .iter()
            .map(|e| match e {
                Resp::Array(Some(fields)) => fields[0].as_text().unwrap(),
                other => panic!("XPENDING entry: {other:?}"),
            })
            .collect()
    }

    fn stream_len(&self) -> i64 {
        redis_int(&self.redis, &["XLEN", "{dq:cell-1}:stream"])
    }

    /// Script calls Redis has run so far.
    fn script_calls(&self) -> u64 {
        let info = self.redis.command(&["INFO", "commandstats"]).unwrap();
        let text = info.as_text().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

fn attempt_of(take: &Take) -> u32 {
    match take {
        Take::Go { attempt, .. } => *attempt,
        other => panic!("expected an attempt, got {other:?}"),
    }
}

fn retry_at(at: u64) -> OutcomeKind {
    OutcomeKind::Failed {
        retry_at: Some(at),
        reason: "max_attempts",
        error: "cell-1 answered 503".into(),
        status: Some(503),
    }
}

#[test]
fn a_stale_outcome_in_a_batch_is_refused_for_that_entry_only() {
    let _serial = serial();
    let mut f = Fixture::new();
    let tokens = f.enqueue_and_read(&["alice", "bob"]);
    let (a, b) = (&tokens[0], &tokens[1]);
    assert_eq!(
        a.target.as_deref(),
        Some(&b"alice"[..]),
        "tokens carry their target"
    );
    let takes = f.take(&[(a, None), (b, None)], NOW);
    assert_eq!(takes.iter().map(attempt_of).collect::<Vec<_>>(), [1, 1]);

    // `a`'s worker is presumed dead: another claims its token and starts attempt 2.
    let (_, claimed) =
        f.rt.block_on(f.store.claim(&f.p, "gw-b", Duration::ZERO, "0-0", 1))
            .unwrap();
    assert_eq!(claimed, vec![a.clone()]);
    assert_eq!(attempt_of(&f.take(&[(a, None)], NOW + 5)[0]), 2);

    // The first worker's late failure of attempt 1 changes nothing for `a` (and leaves the
    // token the other worker holds pending); `b`'s, in the same batch, is recorded.
    let settled = f.settle(vec![
        (a, 1, retry_at(NOW + 1000)),
        (b, 1, retry_at(NOW + 1000)),
    ]);
    assert_eq!(settled, [Settled::Stale, Settled::Retrying]);
    assert_eq!(f.field(a, "state").as_deref(), Some("delivering"));
    assert_eq!(f.field(a, "attempts").as_deref(), Some("2"));
    assert_eq!(f.score("delayed", a), None);
    assert_eq!(f.field(b, "state").as_deref(), Some("retrying"));
    assert_eq!(f.score("delayed", b), Some(NOW + 1000));
    assert_eq!(
        f.pending(),
        vec![a.entry.clone()],
        "only b's token acknowledged"
    );
    assert_eq!(f.stream_len(), 1, "acknowledged tokens are deleted");

    // A stale deferral is refused too; the current attempt's outcome is recorded.
    let defer = OutcomeKind::Deferred {
        due_ms: NOW + 500,
        note: String::new(),
    };
    let settled = f.settle(vec![
        (a, 1, defer.clone()),
        (
            a,
            2,
            OutcomeKind::Delivered {
                status: 200,
                cell: "cell-1".into(),
            },
        ),
    ]);
    assert_eq!(settled, [Settled::Stale, Settled::Delivered]);
    assert_eq!(f.field(a, "state").as_deref(), Some("delivered"));
    assert!(f.pending().is_empty());
    assert_eq!(f.stream_len(), 0);
}

#[test]
fn one_batch_records_every_kind_of_outcome() {
    let _serial = serial();
    let mut f = Fixture::new();
    let tokens = f.enqueue_and_read(&["ok", "retry", "poison", "busy", "probe"]);
    let [ok, retry, poison, busy, probe] = &tokens[..] else {
        unreachable!()
    };
    let all: Vec<(&Token, Option<u64>)> = tokens.iter().map(|t| (t, None)).collect();
    assert!(f.take(&all, NOW).iter().all(|t| attempt_of(t) == 1));

    let delivered = OutcomeKind::Delivered {
        status: 201,
        cell: "cell-1".into(),
    };
    let settled = f.settle(vec![
        (ok, 1, delivered.clone()),
        (retry, 1, retry_at(NOW + 700)),
        (
            poison,
            1,
            OutcomeKind::Failed {
                retry_at: None,
                reason: "non_retryable_status",
                error: "cell-1 answered 422".into(),
                status: Some(422),
            },
        ),
        (
            busy,
            1,
            OutcomeKind::Deferred {
                due_ms: NOW + 300,
                note: String::new(),
            },
        ),
        (
            probe,
            1,
            OutcomeKind::Deferred {
                due_ms: NOW + 400,
                note: "cell-1: upstream_timeout (breaker probe; not counted)".into(),
            },
        ),
        // The same success twice in one batch: the second finds it delivered.
        (ok, 1, delivered),
    ]);
    assert_eq!(
        settled,
        [
            Settled::Delivered,
            Settled::Retrying,
            Settled::Dead,
            Settled::Deferred,
            Settled::Deferred,
            Settled::Stale,
        ]
    );

    // Delivered: out of the live set, stored request dropped, kept for the retention.
    assert_eq!(f.field(ok, "state").as_deref(), Some("delivered"));
    assert_eq!(f.field(ok, "status").as_deref(), Some("201"));
    assert_eq!(f.field(ok, "body"), None);
    assert_eq!(f.score("live", ok), None);
    let ttl = redis_int(&f.redis, &["PTTL", &format!("{{dq:cell-1}}:d:{}", ok.id)]);
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    let history = f.field(ok, "history").unwrap();
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.ends_with("cell-1 answered 201"), "{history}");
    // Retrying: scheduled, still live, the error kept.
    assert_eq!(f.field(retry, "state").as_deref(), Some("retrying"));
    assert_eq!(f.field(retry, "status").as_deref(), Some("503"));
    assert_eq!(f.score("delayed", retry), Some(NOW + 700));
    assert!(f.score("live", retry).is_some());
    // Dead: in the DLQ, out of the live set.
    assert_eq!(f.field(poison, "state").as_deref(), Some("dead"));
    assert_eq!(
        f.field(poison, "reason").as_deref(),
        Some("non_retryable_status")
    );
    assert_eq!(f.field(poison, "status").as_deref(), Some("422"));
    assert_eq!(f.score("dead", poison), Some(NOW + 10));
    assert_eq!(f.score("live", poison), None);
    // Deferred: the attempt given back; a probe's failure noted, a full bulkhead's not.
    assert_eq!(f.field(busy, "state").as_deref(), Some("pending"));
    assert_eq!(f.field(busy, "attempts").as_deref(), Some("0"));
    assert_eq!(f.field(busy, "history"), None);
    assert_eq!(f.score("delayed", busy), Some(NOW + 300));
    assert_eq!(f.field(probe, "attempts").as_deref(), Some("0"));
    assert!(f.field(probe, "history").unwrap().ends_with("not counted)"));
    // Every token acknowledged and deleted.
    assert!(f.pending().is_empty());
    assert_eq!(f.stream_len(), 0);

    // Promotion moves only what is due, with the target in the token.
    let moved =
        f.rt.block_on(f.store.promote(&f.p, NOW + 350, 100))
            .unwrap();
    assert_eq!(moved, 1, "only busy is due");
    let moved =
        f.rt.block_on(f.store.promote(&f.p, NOW + 1000, 100))
            .unwrap();
    assert_eq!(moved, 2);
    let back = f.rt.block_on(f.reader.read(&f.p, 10, None)).unwrap();
    let ids: Vec<&str> = back.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [busy.id.as_str(), probe.id.as_str(), retry.id.as_str()]
    );
    assert_eq!(back[2].target.as_deref(), Some(&b"retry"[..]));

    // Taken again: a deferral asked for before the attempt counts none; an entry older
    // than max_age is dead-lettered instead.
    let old = NOW + u64::try_from(MAX_AGE.as_millis()).unwrap() + 1;
    let takes = f.take(
        &[(&back[0], Some(NOW + 5000)), (&back[1], None)],
        NOW + 1000,
    );
    assert!(matches!(takes[0], Take::Deferred), "{takes:?}");
    assert_eq!(attempt_of(&takes[1]), 1);
    assert_eq!(f.field(busy, "state").as_deref(), Some("pending"));
    assert_eq!(f.field(busy, "attempts").as_deref(), Some("0"));
    assert_eq!(f.score("delayed", busy), Some(NOW + 5000));
    let takes = f.take(&[(&back[2], None)], old);
    assert!(
        matches!(&takes[0], Take::Dead(r) if r == "expired"),
        "{takes:?}"
    );
    assert_eq!(f.field(retry, "state").as_deref(), Some("dead"));
    assert_eq!(f.score("delayed", retry), None);
    assert_eq!(f.pending(), vec![back[1].entry.clone()]);
}

#[test]
fn large_stored_requests_are_taken_over_several_calls() {
    let _serial = serial();
    let mut f = Fixture::new();
    // Three bodies of 60% of the budget: one call answers with two (it stops once past the
    // budget), the next with the third.
    // A first take loads the script, so that the count below is of calls that ran it.
    let warm = f.enqueue_and_read(&["warm"]);
    assert_eq!(attempt_of(&f.take(&[(&warm[0], None)], NOW)[0]), 1);
    let body = Bytes::from(vec![b'x'; TAKE_REPLY_BYTES * 3 / 5]);
    let tokens = f.enqueue_and_read_with(&["a", "b", "c"], &body);
    let before = f.script_calls();
    let all: Vec<(&Token, Option<u64>)> = tokens.iter().map(|t| (t, None)).collect();
    let takes = f.take(&all, NOW);
    let calls = f.script_calls() - before;
    assert_eq!(takes.len(), 3);
    for take in &takes {
        let Take::Go { attempt, request } = take else {
            panic!("{take:?}");
        };
        assert_eq!(*attempt, 1);
        assert_eq!(request.body, body);
    }
    assert_eq!(calls, 2, "two calls for three large requests");
}

/// The record's field names, sorted.
fn field_names(f: &Fixture, token: &Token) -> Vec<String> {
    let key = format!("{{dq:cell-1}}:d:{}", token.id);
    let Resp::Array(Some(names)) = f.redis.command(&["HKEYS", &key]).unwrap() else {
        panic!("HKEYS {key}");
    };
    let mut names: Vec<String> = names.iter().map(|n| n.as_text().unwrap()).collect();
    names.sort_unstable();
    names
}

/// What a delivered record holds: what a status lookup shows, nothing of the stored request.
const DELIVERED_FIELDS: [&str; 11] = [
    "attempts",
    "cell",
    "created_ms",
    "delivered_ms",
    "history",
    "idem",
    "method",
    "state",
    "status",
    "updated_ms",
    "uri",
];

#[test]
fn a_delivered_record_is_rewritten_compact_with_what_status_shows() {
    let _serial = serial();
    let mut f = Fixture::new();
    let body = Bytes::from(vec![b'x'; 4096]);
    let tokens = f.enqueue_and_read_with(&["big", "late"], &body);
    let (t, late) = (&tokens[0], &tokens[1]);
    let takes = f.take(&[(t, None), (late, None)], NOW);
    assert!(takes.iter().all(|take| attempt_of(take) == 1));
    let key = format!("{{dq:cell-1}}:d:{}", t.id);
    let encoding = |f: &Fixture| f.redis.command(&["OBJECT", "ENCODING", &key]).unwrap();
    assert_eq!(encoding(&f).as_text().as_deref(), Some("hashtable"));
    let delivered = OutcomeKind::Delivered {
        status: 200,
        cell: "cell-1".into(),
    };
    // `late` is dead-lettered first; its attempt then succeeds after all.
    let poison = OutcomeKind::Failed {
        retry_at: None,
        reason: "non_retryable_status",
        error: "cell-1 answered 400".into(),
        status: Some(400),
    };
    assert_eq!(f.settle(vec![(late, 1, poison)]), [Settled::Dead]);
    let settled = f.settle(vec![(t, 1, delivered.clone()), (late, 1, delivered)]);
    assert_eq!(settled, [Settled::Delivered, Settled::Delivered]);

    // Trimming the hash would leave it in the large encoding Redis chose for the body.
    assert_eq!(encoding(&f).as_text().as_deref(), Some("listpack"));
    let bytes = redis_int(&f.redis, &["MEMORY", "USAGE", &key]);
    assert!(bytes < 512, "a delivered record takes {bytes} bytes");
    for token in [t, late] {
        assert_eq!(field_names(&f, token), DELIVERED_FIELDS, "{}", token.id);
    }
    assert_eq!(f.score("dead", late), None, "out of the DLQ");
    for (name, value) in [
        ("state", "delivered"),
        ("attempts", "1"),
        ("method", "POST"),
        ("uri", "/orders"),
        ("idem", "key-big"),
        ("status", "200"),
        ("cell", "cell-1"),
        ("created_ms", &NOW.to_string()),
        ("delivered_ms", &(NOW + 10).to_string()),
        ("updated_ms", &(NOW + 10).to_string()),
    ] {
        assert_eq!(f.field(t, name).as_deref(), Some(value), "{name}");
    }
    let ttl = redis_int(&f.redis, &["PTTL", &key]);
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    // The status view reads it as before.
    let record =
        f.rt.block_on(f.store.records(&f.p, std::slice::from_ref(&t.id)))
            .unwrap()
            .pop()
            .flatten()
            .unwrap();
    assert_eq!(record.state, "delivered");
    assert_eq!(record.attempts, 1);
    assert_eq!(record.last_status, Some(200));
    assert_eq!(record.delivered_to.as_deref(), Some("cell-1"));
    assert_eq!(record.created_ms, NOW);
    assert_eq!(record.delivered_ms, Some(NOW + 10));
    assert_eq!(record.last_error, None);
    assert_eq!(record.history.len(), 1);
    let late_history = f.field(late, "history").unwrap();
    assert_eq!(late_history.lines().count(), 2, "{late_history}");
}
