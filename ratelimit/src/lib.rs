//! Rate limiting for Cellgate: local decisions, demand-proportional shares synchronised
//! through Redis, fail-open.
//!
//! Policies ([`PolicyConfig`], counted per [`PolicyKey`]) say how many requests each user,
//! client address, header value, cell or the whole fleet may make per window. A [`Limiter`]
//! decides each request from in-memory per-key state, with no network I/O and no lock
//! ([`Limiter::check`]: a lock-free table lookup, or none when this thread's last check under
//! the policy was the same key, then a counter increment and one compare-and-swap on the key's
//! bucket; nothing shared is written but the key's own state). Time comes from a coarse clock
//! ([`SystemClock`]: a word a background thread refreshes every [`CLOCK_TICK`], 1 ms), and a
//! thread that checks one key over and over decides on a small lease of its tokens (up to 8,
//! taken from the bucket while a quarter of it is left) without writing shared memory at all;
//! see [Leases](#leases-and-the-coarse-clock). A background task
//! ([`Limiter::spawn_sync`]) exchanges the active keys' demand with Redis and sets this
//! gateway's share of the limit.
//!
//! ```
//! use std::time::Duration;
//! use ratelimit::{Limiter, LimiterOptions, PolicyConfig, PolicyKey};
//!
//! let policy = PolicyConfig::new("per-user", "user".parse()?, 100, Duration::from_secs(1))
//!     .with_burst(20);
//! assert_eq!(policy.key, PolicyKey::User);
//! let limiter = Limiter::new(vec![policy], LimiterOptions::new("gw-1"))?;
//! let admitted = (0..50).filter(|_| limiter.check(0, b"alice").allowed).count();
//! assert_eq!(admitted, 20); // the burst; then 100 per second
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Algorithm: demand-proportional shares
//!
//! Notation: `R = limit / per` (the policy's rate), `B` its burst, `N` live gateways, `T` the
//! sync interval, `d_g` gateway `g`'s demand for a key (requests *seen* per second, allowed
//! or denied, as an EWMA with time constant `T`, or longer for a thin key so that the average
//! spans at least 4 of its requests, at most 1 s), `D = Σ d_g`.
//!
//! * **Local decision.** Each tracked key has a token bucket of rate `R·s_g` and capacity
//!   `max(B·s_g, 1)`, where `s_g` is this gateway's share. A request takes a token or is
//!   denied; either way it counts as demand. The bucket is GCRA in one `AtomicU64` (see
//!   `bucket.rs`): a check is a compare-and-swap, never a wait.
//! * **Sync.** Every `T` (±10% jitter) the gateway reports the keys that need it, in one Lua
//!   script call (`EVALSHA`) per *slot group*: each policy's keys are spread by a fixed hash
//!   over 8 Redis hashes `{rl:<policy>:g<n>}`, field = key, value = the gateways' entries. For
//!   each reported key the script writes `d_g` with an expiry on Redis's clock, drops expired
//!   entries of other gateways, and returns `D`, the number of live entries `n` and the floored
//!   sum `E = Σ max(d_i, D/(10n))`. The new share is `s_g = max(d_g, D/(10n)) / E`. Shares from
//!   one snapshot sum to exactly 1, so **the fleet admits `R`**, whatever the offered load.
//!   The floor keeps a gateway whose traffic paused from being starved when it resumes (every
//!   reporting gateway keeps at least `1/(11n)` of the limit).
//! * **Which keys sync.** A key is *hot* when this gateway denied a request or dropped under a
//!   quarter of its bucket since the last tick, uses half its local rate, or the fleet's
//!   demand is at least `R/2`; hot keys report every tick (entry kept `3T`). Other active keys
//!   report every 10 ticks (entry kept `13T`), all cold keys of a group on the same tick (the
//!   group's turn), or at the next tick if their demand doubled since their last report. Keys
//!   whose demand decayed to ~0 stop reporting and their entries lapse.
//! * **Redis cost.** A script call costs about six commands (`EVALSHA`, `TIME`, `HMGET`,
//!   `HSCAN`, `HSET`, `PEXPIRE`; `HDEL` when its sweep finds dead fields) however many keys it
//!   carries (up to 128 per call). Per tick a gateway makes one call per group with due keys
//!   (and per 128 of them): `policies × 8` when every group has a hot key, and `8` per policy every 10 ticks when all
//!   keys are cold, **whatever the number of keys or requests**. At `T = 100ms`, 1,000 cold
//!   keys cost ~50 commands per second (~0.005 per request at 10,000 requests per second);
//!   Redis's CPU work grows with the keys reported (~9–14 µs each on this machine), its
//!   command count does not. Calls go in round trips of at most 128 keys, each bounded by the
//!   timeout, so a tick of many keys never needs a longer budget.
//! * **New keys** start with `s = 1/N_live` ([`Limiter::set_live_gateways`], default 1). This
//!   never lets the fleet exceed `R` (if `N_live` is right) but can under-admit a key whose
//!   traffic is concentrated on one gateway until its first answer (≤ `T` once the key is hot).
//!
//! ## Bounds (Redis healthy, `N` gateways, key offered `D` requests per second)
//!
//! Cold entries are at most `10T` old, as when each key was its own Redis hash: grouping
//! changes how reports travel, not when they are made nor the shares computed from them.
//!
//! * **Overshoot.** In steady state the fleet admits at most `R·W + Σ_g max(B·s_g, 1) ≤
//!   R·W + B + N` in any window `W` — independent of the offered load, because every gateway
//!   is capped by its own bucket. After a demand shift, shares computed from snapshots up to
//!   `T` apart can sum to more than 1 for about `2T`; the excess is at most the change of the
//!   demand split in that time, `R·T·Σ|Δs_g|`, bounded by `2·R·T` per shift. A new key (or a
//!   key back from idle) on a gateway adds at most `R/N_live · T + B/N_live` before its first
//!   answer if `N_live` underestimates the fleet.
//! * **Under-admission.** With `D ≥ R` and a stable split each gateway's demand exceeds its
//!   rate and the fleet admits `R`. After a shift the shares converge with the EWMA, as
//!   `e^(-t/T)`: within 2% after `4T` plus the sync delay, so a 1 s window is within ±5% from
//!   about `5T` after the shift (0.5 s at `T = 100ms`).
//! * **Keys under their limit** (`D ≤ R`): each gateway's rate `R·d_g/D ≥ d_g` and its bucket
//!   `B·d_g/D`, so steady traffic is never refused; only a burst larger than `B·d_g/D` on one
//!   gateway within `T` of a change of split can be.
//!
//! ## Leases and the coarse clock
//!
//! Neither changes what the bounds above allow; they change who pays for a check.
//!
//! * **Coarse clock.** Checks read the time a background thread published at most one tick
//!   (1 ms, plus that thread's wake-up delay) ago, not `clock_gettime` (~40 ns here, half a
//!   check). A bucket read late refills late by the same amount, never loses tokens: the
//!   admitted total over any window is unchanged. On a saturated machine the thread can wake
//!   several milliseconds late; time then stands still that long (buckets refill late, leases
//!   stay valid longer, a refusal's `Retry-After` is that much too long).
//! * **Leases** (`recent.rs`). A thread's memo entry for a key asks the bucket for twice as
//!   many tokens as its last lease once that one was used up within one clock tick (up to 8),
//!   half as many after one that ended unused. The bucket grants them only if a quarter of its
//!   capacity remains afterwards, else decides the request alone. Tokens are taken before they
//!   are used. A lease ends at the thread's next check under the policy once the clock has
//!   moved on or the key differs; then its requests are counted as demand and its unused
//!   tokens go back to the bucket as far as they are still owed: tokens whose refill time
//!   has passed are not returned (the bucket may have filled up and handed them out since),
//!   nor any after the bucket was reconfigured. So admissions never exceed the bucket's.
//!   Until a lease ends, up to 7 tokens per thread and key are held back (a thread that stops
//!   checking altogether holds them until it checks again; at exit they are dropped) and up to
//!   7 requests are not yet counted (demand and the decision metric lag by that much; if the
//!   key is forgotten first, they are not counted). Held-back tokens can refuse a request only
//!   if the bucket drains from a quarter full to empty meanwhile.
//!
//! ## Redis slow or down: fail open
//!
//! Every Redis call (connect, script load, each pipeline) is bounded by `[redis].timeout`.
//! On a timeout or error the limiter enters [`LimiterMode::Degraded`]: each key keeps its
//! last-known share (so the fleet still admits about `R`, at most `R·W + B + N`), keys with
//! nothing known get `1/N_live` (with `N_live = 1`, the full limit locally: at most `N·R`
//! fleet-wide if the live count is stale). Checks never wait for Redis. Sync attempts back
//! off, doubling from `T` up to 1 s, jittered (one cheap attempt per second per gateway does
//! not hammer a struggling Redis, and recovery is noticed within a second). The mode becomes
//! `Degraded` at the first tick that times out: within `T·1.1 + timeout` of Redis freezing.
//!
//! On recovery the first successful tick only reports (the other gateways' entries have
//! lapsed, so its answer would overstate this gateway's share); the next three ticks apply
//! answers but never shrink a share by more than half per tick, so keys under their limit
//! see no burst of false denials; then normal operation resumes.
//!
//! ## Bounded memory
//!
//! A key with no request for `max(idle_after, per·burst/limit)` is evicted by the sync task
//! (after that long its bucket would be full again, so forgetting it is invisible). At most
//! `max_keys` keys are tracked over all policies: above 90% of it the sync task evicts the
//! least recently used keys down to 80%; a key arriving while `max_keys` are tracked shares
//! its policy's overflow bucket (one key's limit at share `1/N_live`), so a flood of new keys
//! can never grow memory, and keys already tracked (the ones being hammered) keep their state.
//! A tracked key costs at most [`BYTES_PER_KEY`] bytes (its `Arc`'d state, with the key inline
//! up to 46 bytes, and its share of the table's slots), plus its length if longer: memory is
//! at most `max_keys × (BYTES_PER_KEY + key length)`, ~345 MB for 1,000,000 keys of 16 bytes.
//! The state gives each kind of access its own cache line (written by every check, read by
//! every check, the sync task's), so that cores checking the same key contend on one line
//! only; see `state.rs`. Each thread that checks also keeps up to four states alive in its
//! memo of recent keys (`recent.rs`), forgotten or not.
//!
//! The table (`table.rs`) hashes keys with xxh3 under a random per-process seed: keys are
//! attacker-chosen, and a predictable hash would let them collide (HashDoS). The slot group of
//! a key, which every gateway must agree on, uses unseeded xxh3; a crafted key can only pick
//! its group.
//!
//! ## Metrics
//!
//! Checks count their decisions on their key, not on the shared
//! `ratelimit_decisions_total` counters (a cache line written by every core on every request);
//! the sync task adds the keys' counts to the metric at each tick and when it forgets a key,
//! so the metric lags by at most one sync interval (and the requests of open leases).

mod bucket;
mod clock;
mod error;
mod hash;
mod key;
mod limiter;
mod metrics;
mod policy;
mod recent;
mod redis;
mod share;
mod state;
mod sync;
mod table;

pub use clock::{Clock, ManualClock, SystemClock, TICK as CLOCK_TICK};
pub use error::LimiterError;
pub use limiter::{Decision, KeyView, Limiter, LimiterMode, LimiterOptions};
pub use policy::{MAX_POLICY_NAME_LEN, PolicyConfig, PolicyError, PolicyKey, PolicyKeyError};
pub use redis::RedisSync;
pub use sync::SyncTask;

/// Most memory per tracked key, excluding the bytes of a key longer than 46 bytes: the `Arc`'d
/// per-key state (three cache lines and the `Arc`'s counts, padded to a line) and the table's
/// slots at their lowest load, twice over for the emptied arrays growth leaves behind.
/// Checked against `size_of` in the tests. Allocator overhead aside: the state is a 256-byte
/// block aligned to 64 bytes, which mimalloc (the gateway's allocator) serves exactly and
/// glibc's `malloc` with ~100 bytes of slack.
pub const BYTES_PER_KEY: usize = 344;
