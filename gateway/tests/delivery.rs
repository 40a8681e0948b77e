//! The async delivery queue (SPEC §4 "Async delivery") through real processes and real
//! faults: `redis-server`, echo cells that record every request they receive
//! (`echo-cell --record`), and `cellgate serve` gateways, all on free loopback ports.
//!
//! | scenario | file |
//! |---|---|
//! | a cell down for 20 s under 5,000 async requests: all delivered once per key, no attempt burnt while its breaker is open | `outage.rs` |
//! | a gateway SIGKILLed mid-delivery: another claims its work, nothing lost | `crash.rs` |
//! | a gateway SIGKILLed with outcomes not yet recorded: those entries are delivered again | `lost_outcomes.rs` |
//! | batched take and outcome scripts: each entry judged alone, stale outcomes refused; delivered records rewritten compact | `batch.rs` |
//! | Redis (AOF, `appendfsync always`) killed and restarted under load: every 202 delivered, 503 while down | `redis_restart.rs` |
//! | Redis frozen: 503 `queue_unavailable` within the Redis timeout, never 202 | `redis_down.rs` |
//! | `max_pending` and `max_body`: 503 `queue_full`, 413 `payload_too_large` | `backpressure.rs` |
//! | a drained cell's users are delivered to their fallback cell | `drain.rs` |
//! | a repeated `Idempotency-Key` gets the original id | `idempotency.rs` |
//!
//! The tests run one at a time (see `support::serial`) and wait on conditions with deadlines.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "delivery/backpressure.rs"]
mod backpressure;
#[path = "delivery/batch.rs"]
mod batch;
#[path = "delivery/crash.rs"]
mod crash;
#[path = "delivery/drain.rs"]
mod drain;
#[path = "delivery/idempotency.rs"]
mod idempotency;
#[path = "delivery/lost_outcomes.rs"]
mod lost_outcomes;
#[path = "delivery/outage.rs"]
mod outage;
#[path = "delivery/redis_down.rs"]
mod redis_down;
#[path = "delivery/redis_restart.rs"]
mod redis_restart;
#[path = "delivery/support.rs"]
mod support;
