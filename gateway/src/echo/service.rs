//! Answers one request: the echo cell's pipeline, top to bottom.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

use super::{
    args::{EchoOptions, valid_error_rate},
    body::EchoBody,
    error::EchoError,
    fault::{FaultUpdate, Faults},
    record::Recorder,
    reply::{BodyStats, Fault, Replies, json_content_type},
    shape::Shape,
};

/// Largest accepted `POST /_fault` body.
const MAX_FAULT_BODY: usize = 64 * 1024;

/// One echo cell: its identity and its fault state, shared by all connections.
#[derive(Debug)]
pub(crate) struct Echo {
    faults: Faults,
    replies: Replies,
    /// Stats of an empty body, the common case of GETs.
    empty_body: BodyStats,
    /// `--record`: where echoed requests are logged.
    recorder: Option<Recorder>,
}

/// What the per-request headers ask for.
struct Directives {
    status: Option<StatusCode>,
    /// `x-echo-fail-until-ms`, in unix milliseconds.
    fail_until_ms: Option<u64>,
}

impl Echo {
    /// A cell with `opts`, reachable at `local` (for the default instance name).
    pub(crate) fn new(opts: &EchoOptions, local: SocketAddr) -> std::io::Result<Self> {
        if !valid_error_rate(opts.error_rate) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "echo cell error rate {} is not between 0 and 1",
                    opts.error_rate
                ),
            ));
        }
        let instance = opts
            .instance
            .clone()
            .unwrap_or_else(|| format!("{}@{local}", opts.name));
        let replies = Replies::new(&opts.name, &instance).map_err(std::io::Error::other)?;
        let recorder = opts.record.as_deref().map(Recorder::open).transpose()?;
        Ok(Self {
            faults: Faults::new(opts.latency, opts.error_rate),
            replies,
            empty_body: BodyStats {
                bytes: 0,
                xxh3: xxh3_64(b""),
                spread_ms: 0,
            },
            recorder,
        })
    }

    /// Answers `req`; errors become JSON error responses here and nowhere else.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<EchoBody>, Infallible> {
        let answer = if req.uri().path() == "/_fault" {
            // Never held by hang: this is how a test un-hangs the cell.
            self.fault_endpoint(req).await
        } else {
            self.faults.wait_while_hung().await;
            if req.uri().path() == "/healthz" && matches!(*req.method(), Method::GET | Method::HEAD)
            {
                self.delay().await;
                Ok(json(StatusCode::OK, EchoBody::full(self.replies.healthz())))
            } else {
                self.echo(req).await
            }
        };
        Ok(answer.unwrap_or_else(EchoError::into_response))
    }

    async fn echo(&self, req: Request<Incoming>) -> Result<Response<EchoBody>, EchoError> {
        // On arrival, before anything can fail or wait: the test asks what reached the cell.
        if let Some(recorder) = &self.recorder {
            recorder.record(req.headers());
        }
        // Malformed directives are refused before the body is read: nothing to echo.
        let directives = Directives::from_headers(req.headers())?;
        let shape = Shape::from_query(req.uri().query())?;
        let (parts, body) = req.into_parts();
        // The whole body is read before answering, so a test sees what actually arrived.
        let stats = self.read_body(body).await?;
        self.delay().await;

        // Per-request directives beat the random error rate: a request that asks for a
        // status gets it deterministically.
        let fault = if directives.failing_now() {
            Some(Fault::FailUntil)
        } else if directives.status.is_none() && self.faults.roll_error() {
            Some(Fault::ErrorRate)
        } else {
            None
        };
        if fault.is_some() {
            let body = self.replies.echo(&parts, stats, fault)?;
            return Ok(json(
                StatusCode::INTERNAL_SERVER_ERROR,
                EchoBody::full(body),
            ));
        }
        let status = directives.status.unwrap_or(StatusCode::OK);
        match shape.generated_body() {
            Some(body) => {
                let mut response = Response::new(body);
                *response.status_mut() = status;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/octet-stream"),
                );
                Ok(response)
            }
            None => {
                let body = self.replies.echo(&parts, stats, None)?;
                Ok(json(status, EchoBody::full(body)))
            }
        }
    }

    /// `GET /_fault` shows the fault state; `POST /_fault` updates it, then shows it.
    async fn fault_endpoint(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<EchoBody>, EchoError> {
        match *req.method() {
            Method::GET | Method::HEAD => {}
            Method::POST => {
                let body = Limited::new(req.into_body(), MAX_FAULT_BODY)
                    .collect()
                    .await
                    .map_err(|e| EchoError::InvalidFault(e.to_string()))?
                    .to_bytes();
                let update: FaultUpdate = serde_json::from_slice(&body)
                    .map_err(|e| EchoError::InvalidFault(e.to_string()))?;
                self.faults.apply(update)?;
            }
            _ => return Err(EchoError::MethodNotAllowed),
        }
        let state = serde_json::to_vec(&self.faults.snapshot())?;
        Ok(json(StatusCode::OK, EchoBody::full(state)))
    }

    async fn delay(&self) {
        if let Some(latency) = self.faults.latency() {
            tokio::time::sleep(latency).await;
        }
    }

    /// Reads the body to its end, hashing as it streams: never held in memory whole.
    async fn read_body(&self, mut body: Incoming) -> Result<BodyStats, EchoError> {
        use http_body::Body as _;
        if body.is_end_stream() {
            return Ok(self.empty_body);
        }
        let mut hasher = Xxh3Default::new();
        let mut bytes = 0u64;
        let mut first_last: Option<(Instant, Instant)> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| EchoError::Body)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if data.is_empty() {
                continue;
            }
            let now = Instant::now();
            first_last = Some((first_last.map_or(now, |(first, _)| first), now));
            hasher.update(&data);
            bytes += data.len() as u64;
        }
        let spread = first_last.map_or(0, |(first, last)| (last - first).as_millis());
        Ok(BodyStats {
            bytes,
            xxh3: hasher.digest(),
            spread_ms: u64::try_from(spread).unwrap_or(u64::MAX),
        })
    }
}

impl Directives {
    fn from_headers(headers: &HeaderMap) -> Result<Self, EchoError> {
        let status = headers
            .get("x-echo-status")
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u16>().ok())
                    .filter(|code| (200..=599).contains(code))
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or(EchoError::InvalidStatus)
            })
            .transpose()?;
        let fail_until_ms = headers
            .get("x-echo-fail-until-ms")
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or(EchoError::InvalidFailUntil)
            })
            .transpose()?;
        Ok(Self {
            status,
            fail_until_ms,
        })
    }

    fn failing_now(&self) -> bool {
        self.fail_until_ms
            .is_some_and(|until| now_unix_ms() < until)
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn json(status: StatusCode, body: EchoBody) -> Response<EchoBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, json_content_type());
    response
}
