//! `[server]`: listeners, timeouts and limits of the data plane and admin API.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawServer, Text};
use super::validate::{Ctx, Result, or_default};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Smallest accepted `max_header_bytes`: below this, ordinary browsers' requests fail.
pub const MIN_HEADER_BYTES: usize = 1024;
/// Largest accepted `max_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// `[server]`: where the gateway listens and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Data-plane address. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Admin API address. Default `127.0.0.1:9901`; a non-loopback address requires
    /// `admin_token`.
    pub admin_listen: SocketAddr,
    /// Bearer token for the admin API; `None` when absent or empty after substitution.
    pub admin_token: Option<String>,
    /// Whole-request deadline, also the cap on a client's `X-Request-Deadline-Ms`. Default 5s.
    pub request_timeout: Duration,
    /// Budget for opening a connection to an upstream (Cellgate extension). Default 1s.
    pub connect_timeout: Duration,
    /// Identity of this gateway in Redis and metrics; `None` means hostname + port.
    pub gateway_id: Option<String>,
    /// Largest request body accepted, in bytes (Cellgate extension); larger gets 413.
    /// Default 64 MiB.
    pub max_request_body: u64,
    /// Largest request head accepted, in bytes (Cellgate extension); larger gets 431.
    /// Default 32 KiB, between [`MIN_HEADER_BYTES`] and [`MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests before closing them (Cellgate
    /// extension). Default 30s.
    pub shutdown_grace: Duration,
    /// How long an idle upstream connection stays pooled (Cellgate extension). Default 90s.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per upstream; 0 disables pooling (Cellgate extension).
    /// Default 256.
    pub pool_max_idle_per_upstream: usize,
    /// **Extension.** Directory where the gateway persists its last-known cell directory, to
    /// boot from when the control plane (Redis) is down at start. Default: none.
    pub state_dir: Option<std::path::PathBuf>,
    /// **Extension.** Requests in flight through this gateway at which load shedding is
    /// complete: `batch` is shed above 70% of it, `normal` above 90%, `critical` at 100%.
    /// Default 10000.
    pub max_in_flight: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080)),
            admin_listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901)),
            admin_token: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            gateway_id: None,
            max_request_body: 64 * MIB,
            max_header_bytes: 32 * 1024,
            shutdown_grace: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_upstream: 256,
            state_dir: None,
            max_in_flight: 10_000,
        }
    }
}

pub(super) fn build(raw: &RawServer, ctx: &Ctx<'_>) -> Result<ServerConfig> {
    let d = ServerConfig::default();
    let listen = or_default(raw.listen.as_ref(), d.listen, |v| {
        ctx.socket_addr(v, "`server.listen`")
    })?;
    let admin_listen = or_default(raw.admin_listen.as_ref(), d.admin_listen, |v| {
        ctx.socket_addr(v, "`server.admin_listen`")
    })?;
    let admin_token = or_default(raw.admin_token.as_ref(), None, |v| {
        ctx.string(v)
            .map(|token| Some(token).filter(|t| !t.is_empty()))
    })?;
    let request_timeout = or_default(raw.request_timeout.as_ref(), d.request_timeout, |v| {
        ctx.positive_duration(v, "`server.request_timeout`")
    })?;
    let connect_timeout = or_default(raw.connect_timeout.as_ref(), d.connect_timeout, |v| {
        ctx.positive_duration(v, "`server.connect_timeout`")
    })?;
    let gateway_id = or_default(raw.gateway_id.as_ref(), None, |v| gateway_id(v, ctx))?;
    let max_request_body = or_default(raw.max_request_body.as_ref(), d.max_request_body, |v| {
        ctx.positive_bytes(v, "`server.max_request_body`")
    })?;
    let max_header_bytes = or_default(raw.max_header_bytes.as_ref(), d.max_header_bytes, |v| {
        let bytes = ctx.bytes(v, "`server.max_header_bytes`")?;
        usize::try_from(bytes)
            .ok()
            .filter(|b| (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(b))
            .ok_or_else(|| {
                ctx.error_at(
                    v.span(),
                    format!(
                        "`server.max_header_bytes` must be between 1KiB and 1MiB, got {bytes} bytes"
                    ),
                )
            })
    })?;
    let shutdown_grace = or_default(raw.shutdown_grace.as_ref(), d.shutdown_grace, |v| {
        ctx.duration(v, "`server.shutdown_grace`")
    })?;
    let pool_idle_timeout = or_default(raw.pool_idle_timeout.as_ref(), d.pool_idle_timeout, |v| {
        ctx.duration(v, "`server.pool_idle_timeout`")
    })?;
    let pool_max_idle_per_upstream = or_default(
        raw.pool_max_idle_per_upstream.as_ref(),
        d.pool_max_idle_per_upstream,
        |v| ctx.usize_at_least(v, 0, "`server.pool_max_idle_per_upstream`"),
    )?;

    let max_in_flight = or_default(raw.max_in_flight.as_ref(), d.max_in_flight, |v| {
        ctx.usize_at_least(v, 1, "`server.max_in_flight`")
    })?;
    let state_dir = raw
        .state_dir
        .as_ref()
        .map(|v| ctx.string(v))
        .transpose()?
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);

    // Blame admin_listen when it is written, else listen: a non-loopback admin bind is always
    // explicit (the default is loopback), and a clash with the default admin bind comes from
    // a `listen` on port 9901.
    let admin_span = || {
        raw.admin_listen
            .as_ref()
            .or(raw.listen.as_ref())
            .map_or(0..0, Spanned::span)
    };
    if !admin_listen.ip().is_loopback() && admin_token.is_none() {
        return Err(ctx.error_at(
            admin_span(),
            format!(
                "a non-loopback admin_listen requires admin_token: `{admin_listen}` is reachable from other hosts; set `server.admin_token` or bind to 127.0.0.1"
            ),
        ));
    }
    if binds_overlap(listen, admin_listen) {
        return Err(ctx.error_at(
            admin_span(),
            format!(
                "`server.admin_listen` ({admin_listen}) and `server.listen` ({listen}) must not bind the same address"
            ),
        ));
    }

    Ok(ServerConfig {
        listen,
        admin_listen,
        admin_token,
        request_timeout,
        connect_timeout,
        gateway_id,
        max_request_body,
        max_header_bytes,
        shutdown_grace,
        pool_idle_timeout,
        pool_max_idle_per_upstream,
        state_dir,
        max_in_flight,
    })
}

fn gateway_id(value: &Text, ctx: &Ctx<'_>) -> Result<Option<String>> {
    let id = ctx.string(value)?;
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.error_at(
            value.span(),
            format!("invalid `server.gateway_id` `{}`: use at most 128 characters, without spaces or control characters", id.escape_debug()),
        ));
    }
    Ok(Some(id))
}

/// Whether binding both addresses would fail: same port, and the same IP or a wildcard.
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overlapping_binds() {
        assert!(binds_overlap(addr("0.0.0.0:8080"), addr("0.0.0.0:8080")));
        assert!(binds_overlap(addr("0.0.0.0:8080"), addr("127.0.0.1:8080")));
        assert!(binds_overlap(addr("127.0.0.1:8080"), addr("[::]:8080")));
        assert!(!binds_overlap(
            addr("127.0.0.1:8080"),
            addr("127.0.0.2:8080")
        ));
        assert!(!binds_overlap(addr("0.0.0.0:8080"), addr("0.0.0.0:9901")));
        assert!(!binds_overlap(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }
}
