//! The pub/sub side of [`RedisStore::subscribe`](super::RedisStore): a dedicated connection
//! that survives Redis restarts.
//!
//! One task per subscription owns the pub/sub connection. It reconnects with backoff when the
//! connection drops or stops answering pings, and after every (re)subscription announces the
//! version then stored, so a change published while it was disconnected is not missed. The
//! task ends when the returned stream is dropped.

use std::sync::Arc;
use std::time::Duration;

use ::redis::Value;
use ::redis::aio::{PubSubSink, PubSubStream};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{ANNOUNCE_CHANNEL, Inner};
use crate::control::backoff::Backoff;

/// How often an idle subscription is checked with a PING: a connection to a frozen or
/// partitioned server never reports an error by itself.
const PING_EVERY: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

pub(super) fn spawn(inner: Arc<Inner>) -> BoxStream<'static, u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(run(inner, tx));
    stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let version = *rx.borrow_and_update();
        Some((version, rx))
    })
    .boxed()
}

/// Why a subscription session ended.
enum End {
    /// The stream was dropped: stop.
    Closed,
    /// The connection failed: reconnect.
    Lost(String),
}

async fn run(inner: Arc<Inner>, tx: watch::Sender<u64>) {
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    // On a cluster, any node carries classic pub/sub: after a failure try the next seed, so
    // a dead node does not keep the subscription down.
    let clients = inner.client.pubsub_clients();
    let mut next = 0usize;
    // Log state changes, not every failed attempt.
    let mut lost = false;
    loop {
        let client = &clients[next % clients.len()];
        next = next.wrapping_add(1);
        let session = tokio::select! {
            () = tx.closed() => return,
            session = subscribe(&inner, client) => session,
        };
        let failure = match session {
            Ok((sink, messages)) => {
                backoff.reset();
                if lost {
                    info!(
                        channel = ANNOUNCE_CHANNEL,
                        "directory announcements restored"
                    );
                    lost = false;
                }
                match pump(&inner, &tx, sink, messages).await {
                    End::Closed => return,
                    End::Lost(reason) => reason,
                }
            }
            Err(reason) => reason,
        };
        if lost {
            debug!(error = %failure, "directory announcements still unavailable");
        } else {
            warn!(
                channel = ANNOUNCE_CHANNEL,
                error = %failure,
                "directory announcements lost; reconnecting (the version poll covers the gap)"
            );
            lost = true;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn subscribe(
    inner: &Inner,
    client: &::redis::Client,
) -> Result<(PubSubSink, PubSubStream), String> {
    let connect = async {
        let (mut sink, messages) = client.get_async_pubsub().await?.split();
        sink.subscribe(ANNOUNCE_CHANNEL).await?;
        Ok::<_, ::redis::RedisError>((sink, messages))
    };
    match tokio::time::timeout(inner.options.timeout, connect).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(format!("subscribe: {e}")),
        Err(_) => Err("subscribe: no answer from Redis in time".to_owned()),
    }
}

async fn pump(
    inner: &Inner,
    tx: &watch::Sender<u64>,
    mut sink: PubSubSink,
    mut messages: PubSubStream,
) -> End {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Announce the version stored now, to cover whatever was announced while we were not
    // subscribed. Retried (the command connection may still be reconnecting) until it works.
    let mut check = Some(Instant::now());
    let mut check_backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    loop {
        tokio::select! {
            () = tx.closed() => return End::Closed,
            () = sleep_until_some(check) => {
                match inner.version().await {
                    Ok(version) => {
                        announce(tx, version);
                        check = None;
                    }
                    Err(e) => {
                        debug!(error = %e, "version check after subscribing failed; retrying");
                        check = Some(Instant::now() + check_backoff.next_delay());
                    }
                }
            }
            message = messages.next() => {
                let Some(message) = message else {
                    return End::Lost("connection closed".to_owned());
                };
                match parse_version(message.get_payload_bytes()) {
                    Some(version) => announce(tx, version),
                    None => debug!("ignoring a malformed directory announcement"),
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(inner.options.timeout, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return End::Lost(format!("ping: {e}")),
                    Err(_) => return End::Lost("ping: no answer in time".to_owned()),
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever if `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn announce(tx: &watch::Sender<u64>, version: u64) {
    tx.send_if_modified(|current| {
        let changed = *current != version;
        *current = version;
        changed
    });
}

fn parse_version(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_decimal_versions() {
        assert_eq!(parse_version(b"42"), Some(42));
        assert_eq!(parse_version(b" 7\n"), Some(7));
        assert_eq!(parse_version(b"-1"), None);
        assert_eq!(parse_version(b"\xff"), None);
    }
}
