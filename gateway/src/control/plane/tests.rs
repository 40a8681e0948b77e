//! Unit tests of the plane on the in-memory store (Redis behaviour: `tests/control`).
#![allow(clippy::unwrap_used)]

use cell_router::{Guard, Pin};
use futures_util::FutureExt;
use prometheus_client::registry::Registry;

use super::*;
use crate::control::{ManualClock, MemoryStore};

const T0: u64 = 1_700_000_000_000;

fn placement() -> Placement {
    Placement::new([("cell-1", 1.0), ("cell-2", 1.0), ("cell-3", 1.0)]).unwrap()
}

struct Fixture {
    store: Arc<MemoryStore>,
    plane: ControlPlane,
    clock: ManualClock,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fixture() -> Fixture {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let stop = CancellationToken::new();
    let options = ControlPlaneOptions {
        heartbeat_interval: Duration::from_millis(10),
        ..ControlPlaneOptions::new("gw-1")
    };
    let plane = ControlPlane::start_with_clock(
        store.clone(),
        placement(),
        options,
        Arc::new(clock.clone()),
        stop.clone(),
    )
    .await;
    Fixture {
        store,
        plane,
        clock,
        stop,
    }
}

fn drain(
    p: &Placement,
    cell: &'static str,
    now: u64,
) -> impl FnOnce(&Directory) -> Result<Directory, DirectoryError> + Send {
    let p = p.clone();
    move |dir: &Directory| dir.drain(&p, cell, 60_000, now, Guard::default())
}

#[tokio::test]
async fn starts_from_the_store_connected() {
    let f = fixture().await;
    let status = f.plane.status();
    assert_eq!(
        status,
        ControlPlaneStatus {
            connected: true,
            version: 0,
            last_sync_ms: Some(T0),
            source: Source::Store,
        }
    );
    assert_eq!(f.plane.gateway_id(), "gw-1");
    assert_eq!(f.plane.now_ms(), T0);
}

#[tokio::test]
async fn apply_installs_at_once_and_audits_from_and_to() {
    let f = fixture().await;
    let p = f.plane.placement().clone();
    let next = f
        .plane
        .apply(
            "admin@gw-1",
            "drain",
            "cell-2",
            Some("bad deploy".into()),
            drain(&p, "cell-2", T0),
        )
        .await
        .unwrap();
    assert_eq!(next.version, 1);
    assert_eq!(f.plane.load_table().version(), 1);
    assert_eq!(*f.plane.versions().borrow(), 1);
    let audit = f.plane.audit(10).await;
    assert_eq!(audit.len(), 1);
    let entry = &audit[0];
    assert_eq!(
        (
            entry.actor.as_str(),
            entry.action.as_str(),
            entry.target.as_str()
        ),
        ("admin@gw-1", "drain", "cell-2")
    );
    assert_eq!(entry.from, "active");
    assert_eq!(entry.to, "draining over 1m (0% done)");
    assert_eq!(entry.reason.as_deref(), Some("bad deploy"));
    assert_eq!((entry.version, entry.at_ms), (1, T0));

    f.clock.advance(Duration::from_secs(15));
    let now = f.plane.now_ms();
    f.plane
        .apply("admin@gw-1", "pin", "alice", None, |dir| {
            dir.pin(&p, "alice", "cell-3", true)
        })
        .await
        .unwrap();
    let undrained = f
        .plane
        .apply("admin@gw-1", "undrain", "cell-2", None, |dir| {
            dir.undrain(&p, "cell-2", 0, now)
        })
        .await
        .unwrap();
    assert_eq!(undrained.version, 3);
    let audit = f.plane.audit(2).await;
    assert_eq!(audit[0].from, "draining over 1m (25% done)");
    assert_eq!(audit[0].to, "active");
    assert_eq!(
        (audit[1].from.as_str(), audit[1].to.as_str()),
        ("unpinned", "pinned to cell-3")
    );
}

#[tokio::test]
async fn a_refused_operation_changes_nothing() {
    let f = fixture().await;
    let p = f.plane.placement().clone();
    let err = f
        .plane
        .apply("admin", "drain", "cell-9", None, drain(&p, "cell-9", T0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::Rejected(DirectoryError::UnknownCell { .. })
        ),
        "{err}"
    );
    assert_eq!(f.store.version().await.unwrap(), 0);
    assert!(f.plane.audit(10).await.is_empty());
}

#[tokio::test]
async fn a_write_between_load_and_compare_and_set_is_a_conflict() {
    let f = fixture().await;
    let p = f.plane.placement().clone();
    let racer = f.store.clone();
    let err = f
        .plane
        .apply("admin", "pin", "alice", None, |dir| {
            // Another gateway's change lands after our load.
            let theirs = dir.pin(&p, "bob", "cell-1", true)?;
            let audit = AuditEntry {
                at_ms: T0,
                actor: "other".into(),
                action: "pin".into(),
                target: "bob".into(),
                from: String::new(),
                to: String::new(),
                reason: None,
                version: theirs.version,
            };
            racer
                .compare_and_set(dir.version, &theirs, &audit)
                .now_or_never()
                .unwrap()
                .unwrap();
            dir.pin(&p, "alice", "cell-2", true)
        })
        .await
        .unwrap_err();
    assert_eq!(err, ApplyError::Conflict { current: 1 });
    let stored = f.store.load().await.unwrap();
    assert_eq!(
        stored.pins.keys().collect::<Vec<_>>(),
        ["bob"],
        "no silent overwrite"
    );
}

#[tokio::test]
async fn installs_never_go_back_unless_the_store_does() {
    let f = fixture().await;
    let shared = &f.plane.shared;
    let v = |version| Directory {
        version,
        ..Directory::default()
    };
    assert!(shared.install(v(2), Origin::Apply));
    assert!(
        !shared.install(v(1), Origin::Apply),
        "an older write never replaces a newer"
    );
    assert!(!shared.install(v(2), Origin::Apply));

    // A load that started before an install and returns an older version is stale.
    let seen = shared.installs();
    assert!(shared.install(v(3), Origin::Apply));
    assert!(!shared.install(v(2), Origin::Load { installs: seen }));
    assert_eq!(shared.version(), 3);

    // A load with nothing installed meanwhile is the store's truth, even if older (reset).
    let seen = shared.installs();
    assert!(shared.install(v(1), Origin::Load { installs: seen }));
    assert_eq!(shared.version(), 1);

    // Same version, same contents: nothing to do. Same version, other contents: follow.
    let seen = shared.installs();
    assert!(!shared.install(v(1), Origin::Load { installs: seen }));
    let mut other = v(1);
    other.pins.insert("alice".into(), Pin::new("cell-1"));
    assert!(shared.install(other, Origin::Load { installs: seen }));
}

#[tokio::test]
async fn heartbeats_carry_version_and_rates_and_expire_after_the_ttl() {
    let f = fixture().await;
    let p = f.plane.placement().clone();
    f.plane
        .set_cell_rps(BTreeMap::from([("cell-1".to_owned(), 42.0)]));
    f.plane
        .apply("admin", "drain", "cell-1", None, drain(&p, "cell-1", T0))
        .await
        .unwrap();
    let mut versions = f.plane.versions();
    versions.wait_for(|v| *v == 1).await.unwrap();
    let listed = loop {
        let list = f.plane.gateways().await;
        if list
            .gateways
            .first()
            .is_some_and(|g| g.version == 1 && !g.cell_rps.is_empty())
        {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!listed.stale);
    assert_eq!(listed.gateways[0].id, "gw-1");
    assert_eq!(listed.gateways[0].cell_rps["cell-1"], 42.0);

    // The manual clock stands still, so every heartbeat says `seen_ms = T0`: once the clock
    // passes T0 + ttl the gateway is gone, whether or not its task still runs.
    f.stop.cancel();
    f.clock.advance(Duration::from_millis(9_999));
    assert_eq!(f.plane.gateways().await.gateways.len(), 1);
    f.clock.advance(Duration::from_millis(1));
    assert!(f.plane.gateways().await.gateways.is_empty());
}

#[tokio::test]
async fn metrics_are_computed_at_scrape_time() {
    let f = fixture().await;
    let mut registry = Registry::with_prefix("cellgate");
    f.plane.register(&mut registry);
    f.clock.advance(Duration::from_millis(2500));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "cellgate_directory_version 0",
        "cellgate_control_plane_connected 1",
        "cellgate_control_plane_errors_total 0",
        "cellgate_directory_sync_age_seconds 2.5",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn describe_names_states_and_pins() {
    let mut dir = Directory::default();
    assert_eq!(describe(&dir, "drain", "cell-1", T0), "active");
    dir.cells.push(cell_router::DirectoryCell {
        name: "cell-1".into(),
        state: CellState::Undraining {
            since_ms: T0,
            over_ms: 90_000,
        },
        auto: false,
    });
    assert_eq!(
        describe(&dir, "undrain", "cell-1", T0 + 45_000),
        "undraining over 1m 30s (50% done)"
    );
    assert_eq!(describe(&dir, "undrain", "cell-1", T0 + 90_000), "active");
    dir.pins.insert(
        "alice".into(),
        Pin {
            cell: "cell-2".into(),
            follow_drain: false,
        },
    );
    assert_eq!(
        describe(&dir, "pin", "alice", T0),
        "pinned to cell-2 (stays through drains)"
    );
    assert_eq!(describe(&dir, "unpin", "bob", T0), "unpinned");
}

#[tokio::test]
async fn an_automatic_change_needs_its_lease_in_force() {
    let f = fixture().await;
    let p = f.plane.placement().clone();
    let ttl = Duration::from_secs(5);
    let mine = f.plane.acquire_lease(None, ttl).await.unwrap();
    let mine = mine.held().cloned().unwrap();
    assert_eq!(mine.holder, "gw-1");
    // This gateway stalls past its lease and another gateway takes over.
    f.clock.advance(Duration::from_secs(6));
    let theirs = f.store.acquire_lease("gw-2", None, ttl).await.unwrap();
    let theirs = theirs.held().cloned().unwrap();
    let now = f.plane.now_ms();
    let auto_drain = |p: &Placement| {
        let p = p.clone();
        move |dir: &Directory| dir.auto_drain(&p, "cell-2", 10_000, now, Guard::default())
    };
    let reason = || Some("breaker open for 31s".to_owned());
    let err = f
        .plane
        .apply_fenced(
            &mine,
            "auto-evacuation@gw-1",
            "drain",
            "cell-2",
            reason(),
            auto_drain(&p),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Fenced {
            lease: mine.clone()
        }
    );
    assert_eq!(f.store.version().await.unwrap(), 0, "nothing written");
    assert_eq!(
        f.plane.acquire_lease(Some(&mine), ttl).await.unwrap(),
        LeaseState::Taken(theirs.clone())
    );

    let applied = f
        .plane
        .apply_fenced(
            &theirs,
            "auto-evacuation@gw-2",
            "drain",
            "cell-2",
            reason(),
            auto_drain(&p),
        )
        .await
        .unwrap();
    assert!(applied.is_auto("cell-2"));
    assert!(f.plane.table().directory().is_auto("cell-2"));
    let entry = &f.plane.audit(1).await[0];
    assert_eq!(entry.actor, "auto-evacuation@gw-2");
    assert_eq!(entry.reason.as_deref(), Some("breaker open for 31s"));
    assert_eq!(entry.to, "draining over 10s (0% done)");
}
