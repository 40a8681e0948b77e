//! What the control plane reports about itself: [`ControlPlaneStatus`], [`GatewayList`].

use serde::Serialize;

use super::store::GatewayStatus;

/// Where the directory this gateway currently applies came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Read from the store.
    Store,
    /// Read at startup from `state_dir/directory.json` because the store was unavailable.
    StateDir,
    /// Nothing known yet: the store was unavailable at startup and nothing was persisted.
    /// Every key routes to its home cell.
    Empty,
}

impl Source {
    /// `"store"`, `"state_dir"` or `"empty"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Store => "store",
            Source::StateDir => "state_dir",
            Source::Empty => "empty",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(value: u8) -> Source {
        match value {
            0 => Source::Store,
            1 => Source::StateDir,
            _ => Source::Empty,
        }
    }
}

/// A snapshot of the control plane's state, for the admin API, `cellctl status` and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlPlaneStatus {
    /// Whether the store answered the latest calls. `false` means this gateway serves from
    /// its last-known directory (static stability) and retries with backoff.
    pub connected: bool,
    /// The directory version this gateway applies.
    pub version: u64,
    /// When this gateway last confirmed with the store that its directory is current, unix
    /// milliseconds; `None` if it never has.
    pub last_sync_ms: Option<u64>,
    /// Where the applied directory came from.
    pub source: Source,
}

/// The live gateways as last read from the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GatewayList {
    /// Gateways with a heartbeat within their ttl, sorted by id.
    pub gateways: Vec<GatewayStatus>,
    /// `true` when the store could not be read and this is the last list read successfully
    /// (empty if there never was one).
    pub stale: bool,
    /// When the list was read from the store, unix milliseconds; `None` if never.
    pub fetched_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_round_trips_and_serializes_snake_case() {
        for source in [Source::Store, Source::StateDir, Source::Empty] {
            assert_eq!(Source::from_u8(source.to_u8()), source);
            let json = serde_json::to_string(&source).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", source.as_str()));
        }
    }
}
