//! One keep-alive HTTP/1.1 connection to an upstream and the exchanges on it.
//!
//! The request's own task writes the request and reads the response: no connection task, no
//! channel between them (hyper's client has both, and every request then crosses tasks twice
//! and wakes both). A request body that is not already at hand is the exception: it is
//! uploaded by a task of its own, so that an upstream that answers while it still reads (an
//! echo, an early error) is never stuck behind an upload nobody drives.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use cell_router::containment::RetryPolicy;
use futures_util::FutureExt as _;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::h1::{self, BodyKind, ChunkedDecoder, Decoded, RequestFraming};
use super::{Error, Shared};
use crate::proxy::body::LimitedBody;
use crate::proxy::headers::{Added, IDEMPOTENCY_KEY};

/// Room kept free for one read: a small response arrives whole.
const READ_SIZE: usize = 16 * 1024;
/// Request body bytes gathered into the head's write when the body is already at hand.
const INLINE_BODY: usize = 64 * 1024;
/// How long a finished response waits for its upload to end before the connection is given
/// up rather than pooled.
const UPLOAD_GRACE: Duration = Duration::from_secs(1);

/// An open connection, idle in the pool or carrying one exchange.
pub(super) struct Conn {
    /// Shared with an upload task while one runs.
    io: Arc<TcpStream>,
    /// Bytes read from the upstream and not yet consumed.
    read: BytesMut,
    /// The request head (and a body at hand) being written; kept for its allocation.
    write: Vec<u8>,
    pool: Arc<Shared>,
    /// Whether it carried an exchange before: only then can it be stale.
    reused: bool,
}

/// An exchange that failed; `retry` gives the request back when none of it can have reached
/// the upstream.
pub(super) struct Failed {
    pub(super) error: Error,
    pub(super) retry: Option<Request<LimitedBody>>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Failed {
        Failed { error, retry: None }
    }
}

impl Conn {
    pub(super) fn new(io: TcpStream, pool: Arc<Shared>) -> Box<Conn> {
        Box::new(Conn {
            io: Arc::new(io),
            read: BytesMut::new(),
            write: Vec::new(),
            pool,
            reused: false,
        })
    }

    /// Back to the pool, to carry another request.
    fn pool(mut self: Box<Self>) {
        self.reused = true;
        Arc::clone(&self.pool).put(self);
    }

    /// Whether a connection that sat idle can carry a request: the upstream neither closed it
    /// nor sent anything meanwhile.
    ///
    /// Unless `verify`, as far as the I/O driver has seen: no syscall unless the socket is
    /// marked readable. A close the driver has not seen yet (it reached the socket since the
    /// driver's last turn) is then found by the read, and the request goes again on a new
    /// connection, which only a [`replayable`] request may. For any other request, `verify`
    /// asks the kernel (a one-byte `MSG_PEEK`), so that only a close still on the wire can
    /// catch it.
    pub(super) fn survived_idle(&mut self, verify: bool) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        if verify {
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            return matches!(
                socket2::SockRef::from(&*self.io).peek(&mut probe),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            );
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Whether a failed exchange found a pooled connection closed by the upstream without a
    /// byte of answer, for a request safe to send again ([`replayable`]).
    ///
    /// The checkout only sees a close once the I/O driver has noticed it. An upstream that
    /// closes a connection right after a response, without `Connection: close`, can have its
    /// close still on the way when the connection is taken again under load. The request
    /// then meets the end of the stream here instead of at checkout.
    ///
    /// `answered`: whether any byte of answer arrived (an interim `1xx` the head parser has
    /// already consumed counts: the upstream had the request).
    fn closed_before_answering(
        &self,
        error: &Error,
        parts: &http::request::Parts,
        answered: bool,
    ) -> bool {
        let closed = match error {
            Error::Closed => true,
            Error::Read(e) => e.kind() == io::ErrorKind::ConnectionReset,
            _ => false,
        };
        closed && self.reused && !answered && safe_to_repeat(&parts.method, &parts.headers)
    }

    /// Writes `req` and reads the response head. The connection travels on in the body and
    /// returns to the pool when the body has been read.
    pub(super) async fn send(
        mut self: Box<Self>,
        req: Request<LimitedBody>,
        added: Option<&Added<'_>>,
    ) -> Result<Response<ResponseBody>, Failed> {
        let (mut parts, mut body) = req.into_parts();
        let framing = h1::request_framing(
            &parts.method,
            &mut parts.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        )
        .map_err(Error::Protocol)?;
        self.write.clear();
        h1::encode_head(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &self.pool.host,
            added,
            &mut self.write,
        );
        let mut upload = Upload::None;
        // A bodiless request, kept until the answer begins in case it must go again.
        let mut replay = None;
        if framing == RequestFraming::Empty {
            if let Err(e) = write_all(&self.io, &self.write).await {
                // A write that fails at once on a pooled connection means the upstream had
                // closed it: nothing of this request reached it.
                return Err(Failed {
                    error: Error::Write(e),
                    retry: self.reused.then(|| Request::from_parts(parts, body)),
                });
            }
            replay = Some(body);
        } else {
            let mut framer = Framer::new(framing);
            let ended =
                poll_fn(|cx| Poll::Ready(framer.gather(cx, &mut body, &mut self.write))).await?;
            // A body larger than that is uploaded alongside: an upstream that answers
            // without reading all of it must not leave the write blocked forever.
            if ended && self.write.len() <= INLINE_BODY {
                write_all(&self.io, &self.write)
                    .await
                    .map_err(Error::Write)?;
            } else {
                let pending = std::mem::take(&mut self.write);
                let io = Arc::clone(&self.io);
                upload =
                    Upload::Running(UploadTask(tokio::spawn(framer.upload(io, body, pending))));
            }
        }
        // Whether any byte of answer came, a 1xx the head parser has consumed included.
        let mut answered = false;
        let head = match poll_fn(|cx| self.poll_head(cx, &parts.method, &mut upload, &mut answered))
            .await
        {
            Ok(head) => head,
            Err(error) => {
                let retry = match replay {
                    Some(body) if self.closed_before_answering(&error, &parts, answered) => {
                        Some(Request::from_parts(parts, body))
                    }
                    _ => None,
                };
                return Err(Failed { error, retry });
            }
        };
        let (head, kind, keep_alive) = (head.response, head.body, head.keep_alive);
        let mut body = ResponseBody {
            conn: Some(self),
            state: match kind {
                BodyKind::Empty => State::Done,
                BodyKind::Length(n) => State::Length(n),
                BodyKind::Chunked => State::Chunked(ChunkedDecoder::default()),
                BodyKind::Eof => State::Eof,
            },
            upload,
            keep_alive,
        };
        if kind == BodyKind::Empty {
            body.finish();
        }
        Ok(head.map(|()| body))
    }

    /// Reads until a response head has arrived, watching the upload meanwhile.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
        upload: &mut Upload,
        answered: &mut bool,
    ) -> Poll<Result<h1::ResponseHead, Error>> {
        loop {
            if let Some(head) =
                h1::parse_response(&mut self.read, method).map_err(Error::Protocol)?
            {
                return Poll::Ready(Ok(head));
            }
            if let Upload::Running(task) = upload {
                if let Poll::Ready(result) = Pin::new(&mut task.0).poll(cx) {
                    match result.unwrap_or_else(|e| Err(Error::Write(io::Error::other(e)))) {
                        Ok(()) => *upload = Upload::Done,
                        // The client's body failed (too large, cut off, not the length it
                        // declared): the upstream waits for the rest and will not answer.
                        Err(e @ (Error::Body(_) | Error::BodyLength)) => {
                            return Poll::Ready(Err(e));
                        }
                        // The upstream may have stopped reading to answer early: wait for it.
                        Err(e) => *upload = Upload::Failed(e),
                    }
                }
            }
            match ready!(poll_fill(&self.io, &mut self.read, cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(match std::mem::replace(upload, Upload::None) {
                        Upload::Failed(e) => e,
                        _ => Error::Closed,
                    }));
                }
                Ok(_) => *answered = true,
                Err(e) => return Poll::Ready(Err(Error::Read(e))),
            }
        }
    }
}

/// Whether `req` may be sent again after an upstream closed its connection without a byte of
/// answer: it has no body, and an idempotent method or an `Idempotency-Key` (RFC 9110 §9.2.2;
/// Go's client follows the same rule). The upstream may have acted on it before closing.
pub(super) fn replayable(req: &Request<LimitedBody>) -> bool {
    req.body().is_end_stream() && safe_to_repeat(req.method(), req.headers())
}

/// [`replayable`] but for the body, which the caller has checked.
fn safe_to_repeat(method: &Method, headers: &http::HeaderMap) -> bool {
    RetryPolicy::is_idempotent(method.as_str()) || headers.contains_key(&IDEMPOTENCY_KEY)
}

/// Writes all of `buf`.
async fn write_all(io: &TcpStream, buf: &[u8]) -> io::Result<()> {
    let mut at = 0;
    poll_fn(|cx| {
        while at < buf.len() {
            match io.try_write(&buf[at..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(io.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// Reads what the socket has into `buf`; `Ok(0)` at the end of the stream.
///
/// A read that leaves room in `buf` has drained the socket, so it also clears the socket's
/// readiness, as tokio's own `poll_read` does: the connection then idles in the pool marked
/// not readable, and [`Conn::survived_idle`] needs no syscall to find it alive. Left marked,
/// every checkout would pay a `recv` that only says `EAGAIN`.
fn poll_fill(io: &TcpStream, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    loop {
        let room = buf.capacity() - buf.len();
        let mut drained = None;
        // `try_io` clears readiness when its closure says `WouldBlock`; a short read says so
        // and hands its count back through `drained`. The clear is skipped if the driver saw
        // a newer event meanwhile, so no arrival is lost.
        let read = io.try_io(Interest::READABLE, || match io.try_read_buf(buf) {
            // As in tokio: on Windows a short read does not prove the socket drained.
            Ok(n) if n > 0 && n < room && cfg!(not(windows)) => {
                drained = Some(n);
                Err(io::ErrorKind::WouldBlock.into())
            }
            other => other,
        });
        match read {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(n) = drained {
                    return Poll::Ready(Ok(n));
                }
                ready!(io.poll_read_ready(cx))?;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Frames request body bytes and holds the sender to its declared length.
struct Framer {
    framing: RequestFraming,
    sent: u64,
}

impl Framer {
    fn new(framing: RequestFraming) -> Framer {
        Framer { framing, sent: 0 }
    }

    /// Appends one data frame, framed, to `out`.
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.sent += data.len() as u64;
        match self.framing {
            RequestFraming::Length(len) if self.sent > len => Err(Error::BodyLength),
            RequestFraming::Chunked if !data.is_empty() => {
                h1::chunk_header(data.len(), out);
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
                Ok(())
            }
            _ => {
                out.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// Whether a length-framed body has been sent in full.
    fn complete(&self) -> bool {
        matches!(self.framing, RequestFraming::Length(len) if self.sent == len)
    }

    /// Appends the body's end to `out`, or fails if it fell short of its declared length.
    fn end(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self.framing {
            RequestFraming::Length(len) if self.sent != len => Err(Error::BodyLength),
            RequestFraming::Chunked => {
                out.extend_from_slice(h1::LAST_CHUNK);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Appends the frames `body` has ready, up to [`INLINE_BODY`] bytes; whether it ended.
    fn gather(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut LimitedBody,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        while out.len() < INLINE_BODY {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        self.push(data, out)?;
                    }
                }
                Poll::Ready(Some(Err(e))) => return Err(Error::Body(e)),
                Poll::Ready(None) => {
                    self.end(out)?;
                    return Ok(true);
                }
                Poll::Pending => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Writes `pending`, then the rest of `body` as it arrives.
    async fn upload(
        mut self,
        io: Arc<TcpStream>,
        mut body: LimitedBody,
        mut pending: Vec<u8>,
    ) -> Result<(), Error> {
        loop {
            write_all(&io, &pending).await.map_err(Error::Write)?;
            pending.clear();
            if self.complete() {
                // Every declared byte is out: the upstream can answer now, and waiting for the
                // body's end to be polled would only delay the connection's return to the pool.
                return Ok(());
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.push(data, &mut pending)?;
                    }
                }
                Some(Err(e)) => return Err(Error::Body(e)),
                None => {
                    self.end(&mut pending)?;
                    return write_all(&io, &pending).await.map_err(Error::Write);
                }
            }
        }
    }
}

/// Where the request body's upload stands.
enum Upload {
    /// Written with the head, or there was none.
    None,
    Running(UploadTask),
    Done,
    /// The upload failed; kept to report if no response comes either.
    Failed(Error),
}

/// Stops the upload when the exchange is abandoned.
struct UploadTask(JoinHandle<Result<(), Error>>);

impl Drop for UploadTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An upstream response body, read from the connection as the client's side asks for it;
/// the connection returns to the pool when the body ends.
pub struct ResponseBody {
    /// `None` once the body ended or failed.
    conn: Option<Box<Conn>>,
    state: State,
    upload: Upload,
    keep_alive: bool,
}

enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    Eof,
    Done,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("done", &matches!(self.state, State::Done))
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// The body ended: back to the pool if the connection can carry another request.
    fn finish(&mut self) {
        self.state = State::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !self.keep_alive || !conn.read.is_empty() {
            return;
        }
        match std::mem::replace(&mut self.upload, Upload::None) {
            Upload::None | Upload::Done => conn.pool(),
            Upload::Failed(_) => {}
            Upload::Running(mut task) => match (&mut task.0).now_or_never() {
                Some(Ok(Ok(()))) => conn.pool(),
                Some(_) => {}
                // The answer came before the upload task saw its own end (a 204 to a POST is
                // often read before the task has returned): give it a moment, off this task.
                // An upstream that answered early and stopped reading leaves the upload
                // stuck, and the connection is closed once the moment is over.
                None => {
                    tokio::spawn(async move {
                        if let Ok(Ok(Ok(()))) =
                            tokio::time::timeout(UPLOAD_GRACE, &mut task.0).await
                        {
                            conn.pool();
                        }
                    });
                }
            },
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<bytes::Bytes>, Error>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ResponseBody {
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) if !conn.read.is_empty() => {
                    let take =
                        usize::try_from(*left).map_or(conn.read.len(), |l| l.min(conn.read.len()));
                    let data = conn.read.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(decoder) => match decoder.decode(&mut conn.read) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(Error::Protocol(e)),
                },
                State::Eof if !conn.read.is_empty() => {
                    let data = conn.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Length(_) | State::Eof => {}
            }
            match ready!(poll_fill(&conn.io, &mut conn.read, cx)) {
                Ok(0) if matches!(this.state, State::Eof) => {
                    // The end of a close-delimited body; the connection goes with it.
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Error::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(Error::Read(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(left) => SizeHint::with_exact(left),
            State::Done => SizeHint::with_exact(0),
            State::Chunked(_) | State::Eof => SizeHint::default(),
        }
    }
}
