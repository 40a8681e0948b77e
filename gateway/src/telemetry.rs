//! Logs and traces: `tracing` with text or JSON output, OTLP export when configured.
//!
//! OTLP export is on exactly when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
//! OpenTelemetry variable; `OTEL_SERVICE_NAME` and the other `OTEL_*` variables apply too).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::proxy::trace_context::TraceParent;

/// Set once at startup when an OTLP exporter is installed.
static OTEL_ON: AtomicBool = AtomicBool::new(false);

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Keeps the trace exporter alive; flushes pending spans when dropped.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Why telemetry could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the `OTEL_*` environment.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(String),
}

/// Installs the global subscriber. Filter from `CELLGATE_LOG`, else `RUST_LOG`, else `info`.
///
/// # Errors
/// When the OTLP exporter cannot be built or a subscriber is already installed.
pub fn init(format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    let filter = std::env::var("CELLGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut guard = TelemetryGuard::default();
    let otel = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(endpoint) if !endpoint.is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(
                    std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "cellgate".into()),
                )
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("cellgate");
            guard.provider = Some(provider);
            OTEL_ON.store(true, Ordering::Relaxed);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        _ => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    Ok(guard)
}

/// Whether spans are exported over OTLP (then the per-request span is worth recording at
/// `info`).
pub fn exporting() -> bool {
    OTEL_ON.load(Ordering::Relaxed)
}

/// Joins the request span to the caller's trace and returns the context to send upstream.
/// Call it before the span is first entered: the exporter fixes a span's parent then.
///
/// With OTLP export on, the upstream sees the gateway's exported span as its parent, so the
/// trace shows the hop. Without it, the gateway still keeps the trace connected: same trace
/// id, a fresh span id, the caller's flags (a new trace when the caller sent none).
pub fn join_trace(span: &Span, incoming: Option<TraceParent>) -> TraceParent {
    if !OTEL_ON.load(Ordering::Relaxed) {
        return incoming.map_or_else(|| TraceParent::new_root(false), |tp| tp.child());
    }
    if let Some(parent) = incoming {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.span_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return incoming.map_or_else(|| TraceParent::new_root(true), |tp| tp.child());
    }
    TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    }
}

/// Links `span` (a delivery attempt, its own trace) to `origin` (the enqueuing request's
/// trace) and returns the context to send upstream.
///
/// With OTLP export on, the attempt is a new trace whose span carries a link to the
/// enqueuing span, the OpenTelemetry model for work that outlives its request; the upstream
/// sees the attempt's span as its parent. Without export there are no links to carry, so the
/// upstream gets a child of the enqueuing trace and can still correlate by trace id.
pub fn link_trace(span: &Span, origin: Option<TraceParent>) -> TraceParent {
    if !OTEL_ON.load(Ordering::Relaxed) {
        return origin.map_or_else(|| TraceParent::new_root(false), |tp| tp.child());
    }
    if let Some(origin) = origin {
        span.add_link(SpanContext::new(
            TraceId::from_bytes(origin.trace_id),
            SpanId::from_bytes(origin.span_id),
            TraceFlags::new(origin.flags),
            true,
            TraceState::default(),
        ));
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return origin.map_or_else(|| TraceParent::new_root(true), |tp| tp.child());
    }
    TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    }
}
