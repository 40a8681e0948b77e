//! [`DirectoryStore`]: the storage contract of the control plane, and the records it keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use cell_router::Directory;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::lease::{Lease, LeaseState};

/// Audit entries kept by a store; older ones are dropped.
pub const AUDIT_CAP: usize = 1000;

/// Where the shared directory lives: versioned reads, compare-and-set writes with an audit
/// trail, change announcements and gateway heartbeats.
///
/// Object safe (`Arc<dyn DirectoryStore>`). Implementations bound every call by their own
/// timeout and never panic on bad data: failures are [`StoreError`]s.
pub trait DirectoryStore: fmt::Debug + Send + Sync + 'static {
    /// The stored directory; the empty directory (version 0) when nothing is stored yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Corrupt`] when the stored document does
    /// not parse.
    fn load(&self) -> BoxFuture<'_, Result<Directory, StoreError>>;

    /// Atomically replaces the directory if the stored version is still `expected_version`:
    /// stores `next`, appends `audit` to the audit list (capped at [`AUDIT_CAP`]) and
    /// announces `next.version` to [`subscribe`](Self::subscribe)rs.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] with the stored version when another writer got there first
    /// (nothing is written); [`StoreError::InvalidVersion`] unless
    /// `next.version == expected_version + 1`; [`StoreError::Unavailable`] when the store did
    /// not confirm the write in time, in which case it was not applied.
    fn compare_and_set<'a>(
        &'a self,
        expected_version: u64,
        next: &'a Directory,
        audit: &'a AuditEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// [`compare_and_set`](Self::compare_and_set) on behalf of the automation: also refused,
    /// atomically with the version check, unless `lease` is still the automation lease in
    /// force (same holder, same token). See [`Lease`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the lease expired or another term began (nothing is
    /// written), and the errors of [`compare_and_set`](Self::compare_and_set).
    fn compare_and_set_fenced<'a>(
        &'a self,
        expected_version: u64,
        next: &'a Directory,
        audit: &'a AuditEntry,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Takes the automation lease for `holder` for `ttl`, or renews it: `held` is the term
    /// the caller believes it holds (`None` if none). A free (or expired) lease is granted
    /// with a fresh fencing token; the term in `held` is renewed with its token if it is still
    /// in force; any other term is reported as [`LeaseState::Taken`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Corrupt`] when the stored lease does not
    /// parse.
    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        held: Option<&'a Lease>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseState, StoreError>>;

    /// Gives up `lease` if it is still in force (on shutdown, so another gateway takes over
    /// at once instead of after the ttl). Another term is left alone.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Writes back a directory the store lost: stores `directory` and appends `audit` only if
    /// the stored version is lower than `directory.version`, and announces it.
    ///
    /// Compare-and-sets only ever raise the version, so a gateway that applied a higher
    /// version than the store holds proves the store lost data (Redis restarted without
    /// persistence, a flush, a failover to a lagging replica). Restoring keeps drains and pins
    /// in force instead of silently undoing them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] with the stored version when the store is not behind (nothing
    /// is written), [`StoreError::Unavailable`].
    fn restore<'a>(
        &'a self,
        directory: &'a Directory,
        audit: &'a AuditEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The stored version alone: the cheap poll. 0 when nothing is stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn version(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Versions announced by successful compare-and-sets, from now on, including other
    /// gateways' writes. Best effort: an announcement can be missed (e.g. while the store is
    /// unreachable), which is why readers also poll [`version`](Self::version). After a
    /// reconnection the current version is announced again. The stream ends only when the
    /// store is gone.
    fn subscribe(&self) -> BoxStream<'static, u64>;

    /// Records that gateway `status.id` is alive and which directory version it applied;
    /// [`gateways`](Self::gateways) lists it until `status.seen_ms + ttl`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    fn heartbeat<'a>(
        &'a self,
        status: &'a GatewayStatus,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The live gateways (heartbeat within its ttl), sorted by id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    fn gateways(&self) -> BoxFuture<'_, Result<Vec<GatewayStatus>, StoreError>>;

    /// Up to `limit` audit entries, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    fn audit(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>>;
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the directory since it was loaded: reload and decide again.
    /// Not retryable as is.
    #[error("directory changed concurrently: the stored version is now {current}")]
    Conflict {
        /// The version now stored.
        current: u64,
    },
    /// The store did not answer in time or could not be reached. Retryable; a write that
    /// failed this way was not applied.
    #[error("control-plane store unavailable: {0}")]
    Unavailable(String),
    /// The store holds data that does not parse (hand-edited, or written by an incompatible
    /// version). Not retryable until someone fixes the data.
    #[error("control-plane store holds corrupt data: {0}")]
    Corrupt(String),
    /// A fenced write ([`DirectoryStore::compare_and_set_fenced`]) whose lease is no longer in
    /// force: the writer lost the automation lease, so its decision is void. Nothing was
    /// written. Not retryable as is: acquire the lease again and decide again.
    #[error("the automation lease {lease} is no longer in force; nothing was written")]
    Fenced {
        /// The lease the write was made under.
        lease: Lease,
    },
    /// A write whose version is not the expected version + 1: a bug in the caller.
    #[error("refusing to store version {next} over version {expected}: must be {expected} + 1")]
    InvalidVersion {
        /// The version the write was based on.
        expected: u64,
        /// The version of the document to store.
        next: u64,
    },
    /// The store is misconfigured (e.g. an invalid Redis URL).
    #[error("control-plane store misconfigured: {0}")]
    Config(String),
}

impl StoreError {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Checks the version rule of [`DirectoryStore::compare_and_set`].
    pub(crate) fn check_next(expected: u64, next: &Directory) -> Result<(), StoreError> {
        if expected.checked_add(1) == Some(next.version) {
            Ok(())
        } else {
            Err(StoreError::InvalidVersion {
                expected,
                next: next.version,
            })
        }
    }
}

/// What a gateway reports about itself in its heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// The gateway's id (`[server].gateway_id`).
    pub id: String,
    /// The directory version it has applied.
    pub version: u64,
    /// When it sent this heartbeat, unix milliseconds (its own clock).
    pub seen_ms: u64,
    /// Its observed request rate per cell, requests per second: input for drain planning.
    #[serde(default)]
    pub cell_rps: BTreeMap<String, f64>,
}

/// One directory change, as kept in the audit list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the change was made, unix milliseconds.
    pub at_ms: u64,
    /// Who made it, e.g. `admin@gw-1` or `auto-evacuation@gw-2`.
    pub actor: String,
    /// `drain`, `undrain`, `evacuate`, `pin` or `unpin`; `restore` when a gateway wrote back
    /// a directory the store had lost ([`DirectoryStore::restore`]).
    pub action: String,
    /// The cell, or the routing key of a pin.
    pub target: String,
    /// The target's state before, e.g. `active` or `pinned to cell-2`.
    pub from: String,
    /// The target's state after, e.g. `draining over 1m`.
    pub to: String,
    /// Why, as given by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The directory version the change produced.
    pub version: u64,
}

/// Settings of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Budget of one store call, connection included. Default 1 s: control-plane calls are
    /// never on the request path, but they bound how fast a gateway notices an outage and how
    /// long an admin request can wait.
    pub timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
        }
    }
}

/// A heartbeat as stored: the status plus how long it stays valid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HeartbeatRecord {
    #[serde(flatten)]
    pub status: GatewayStatus,
    pub ttl_ms: u64,
}

impl HeartbeatRecord {
    pub fn new(status: &GatewayStatus, ttl: Duration) -> Self {
        Self {
            status: status.clone(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Whether the heartbeat is still valid at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.status.seen_ms.saturating_add(self.ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_version_must_follow_expected() {
        let next = Directory {
            version: 4,
            ..Directory::default()
        };
        assert_eq!(StoreError::check_next(3, &next), Ok(()));
        assert_eq!(
            StoreError::check_next(4, &next),
            Err(StoreError::InvalidVersion {
                expected: 4,
                next: 4
            })
        );
        let max = Directory {
            version: u64::MAX,
            ..Directory::default()
        };
        assert!(StoreError::check_next(u64::MAX, &max).is_err());
    }

    #[test]
    fn heartbeat_record_round_trips_flat() {
        let status = GatewayStatus {
            id: "gw-1".into(),
            version: 3,
            seen_ms: 1_000,
            cell_rps: BTreeMap::from([("cell-1".to_owned(), 12.5)]),
        };
        let json = serde_json::to_value(HeartbeatRecord::new(&status, Duration::from_secs(2)))
            .unwrap_or_default();
        assert_eq!(json["id"], "gw-1");
        assert_eq!(json["ttl_ms"], 2000);
        assert_eq!(json["cell_rps"]["cell-1"], 12.5);
        let back: HeartbeatRecord = serde_json::from_value(json).expect("parses");
        assert_eq!(back.status, status);
        assert!(back.is_live(2_999));
        assert!(!back.is_live(3_000));
    }

    #[test]
    fn audit_entry_omits_missing_reason() {
        let entry = AuditEntry {
            at_ms: 1,
            actor: "admin@gw-1".into(),
            action: "pin".into(),
            target: "alice".into(),
            from: "unpinned".into(),
            to: "pinned to cell-2".into(),
            reason: None,
            version: 2,
        };
        let json = serde_json::to_string(&entry).unwrap_or_default();
        assert!(!json.contains("reason"), "{json}");
        let back: AuditEntry = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, entry);
    }
}
