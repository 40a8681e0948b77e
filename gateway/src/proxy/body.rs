//! Body types of the proxy: streamed through, never buffered.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cell_router::containment::OwnedBulkheadPermit;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;

use super::pool::ResponseBody;

/// Holds a cell's in-flight gauge up while a request (and its response body) is alive.
#[derive(Debug)]
pub struct InFlightGuard(Gauge);

impl InFlightGuard {
    /// Increments `gauge` until the guard is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        InFlightGuard(gauge.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Response body sent to the client: an upstream stream or a gateway-made buffer.
#[derive(Debug)]
pub enum ProxyBody {
    /// A small body made by the gateway (errors, admin answers).
    Full(Option<Bytes>),
    /// The upstream's body, streamed frame by frame. The guard keeps the cell's in-flight count
    /// up until the last frame is sent or the client goes away.
    Upstream {
        /// The upstream response body.
        inner: ResponseBody,
        /// Released when the body is dropped.
        guard: InFlightGuard,
        /// The cell's bulkhead slot, held until the body is done.
        slot: OwnedBulkheadPermit,
        /// Stops an upstream that sent its head and then stalls from holding the slot forever.
        idle: IdleTimeout,
    },
}

/// The longest pause allowed between two frames of an upstream body.
///
/// The timer is only created once the body first has to wait, so a response that streams
/// without pausing costs no timer.
#[derive(Debug)]
pub struct IdleTimeout {
    after: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleTimeout {
    /// A timeout of `after` between frames.
    pub fn new(after: Duration) -> Self {
        IdleTimeout { after, sleep: None }
    }

    /// Called when the body made progress.
    fn progressed(&mut self) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + self.after);
        }
    }

    /// Called when the body has to wait: whether the pause has gone on too long.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let after = self.after;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// An upstream body paused longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream body idle for longer than {0:?}")]
pub struct BodyIdle(Duration);

impl ProxyBody {
    /// A body of the given bytes.
    pub fn full(bytes: Bytes) -> Self {
        ProxyBody::Full(Some(bytes))
    }

    /// The bytes of a gateway-made body (for tests); `None` for a streamed body.
    pub fn into_full(self) -> Option<Bytes> {
        match self {
            ProxyBody::Full(bytes) => Some(bytes.unwrap_or_default()),
            ProxyBody::Upstream { .. } => None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream { inner, idle, .. } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(frame) => {
                    idle.progressed();
                    Poll::Ready(frame.map(|f| f.map_err(Into::into)))
                }
                Poll::Pending if idle.expired(cx) => {
                    // Ending the body with an error aborts the response: the client sees a
                    // truncated body rather than a hang, and the slot and connection are freed.
                    Poll::Ready(Some(Err(Box::new(BodyIdle(idle.after)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

/// Why a request body stopped streaming.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The client sent more than the configured limit.
    #[error("request body exceeds the configured limit")]
    TooLarge,
    /// Reading from the client failed.
    #[error("reading the request body failed")]
    Read(#[source] hyper::Error),
}

/// The client's request body, streamed to the upstream, cut off past a byte limit.
///
/// A declared `Content-Length` above the limit is refused before forwarding; this wrapper
/// catches chunked bodies, whose size is only known as they arrive.
#[derive(Debug)]
pub struct LimitedBody {
    /// `None` once the limit tripped and the rest went to [`linger`], or for a buffered body.
    inner: Option<Incoming>,
    remaining: u64,
    /// A body already in memory (a retried bodiless request, a stored async delivery):
    /// `Some(rest)`, where `rest` is taken by the first poll.
    buffered: Option<Option<Bytes>>,
}

impl LimitedBody {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub fn new(inner: Incoming, limit: u64) -> Self {
        LimitedBody {
            inner: Some(inner),
            remaining: limit,
            buffered: None,
        }
    }

    /// An empty body, for a retried request that had none.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A body held in memory, sent as one frame.
    pub fn full(bytes: Bytes) -> Self {
        LimitedBody {
            inner: None,
            remaining: 0,
            buffered: Some((!bytes.is_empty()).then_some(bytes)),
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = self.get_mut();
        if let Some(rest) = this.buffered.as_mut() {
            return Poll::Ready(rest.take().map(|b| Ok(Frame::data(b))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.remaining = 0;
                        if let Some(rest) = this.inner.take() {
                            linger(rest);
                        }
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(RequestBodyError::Read(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.buffered {
            Some(rest) => rest.is_none(),
            None => self.inner.as_ref().is_none_or(Incoming::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.buffered {
            Some(rest) => SizeHint::with_exact(rest.as_ref().map_or(0, |b| b.len() as u64)),
            None => self
                .inner
                .as_ref()
                .map_or_else(SizeHint::default, Incoming::size_hint),
        }
    }
}

/// Most bytes of a refused body read and thrown away so the client can see its error.
const LINGER_BYTES: u64 = 4 * 1024 * 1024;
/// Longest time spent doing so.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards what is left of a refused request body, within a byte and time bound.
///
/// Closing a connection with unread request bytes makes the kernel send a reset, and the
/// client then loses our `413` before it reads it (nginx's `lingering_close` exists for the
/// same reason). When the bound is hit, the body is dropped and the connection closes.
pub fn linger(mut body: Incoming) {
    tokio::spawn(async move {
        let mut left = LINGER_BYTES;
        let drain = async {
            while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len >= left {
                    break;
                }
                left -= len;
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}
