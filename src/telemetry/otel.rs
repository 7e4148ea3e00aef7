//! The OpenTelemetry pipeline: `tracing` spans → `tracing-opentelemetry` → a bounded batch
//! processor → the OTLP exporter (gRPC or HTTP/protobuf).
//!
//! Settings come from `[telemetry]` first, then the standard `OTEL_*` variables (the exporter,
//! the sampler and the resource read theirs themselves; `OTEL_BSP_*` are read here), then
//! defaults. The processor never blocks a publish: a span that finds its queue full is dropped
//! and counted (`arqonbus_trace_spans_dropped_total`), and so is every span of a batch the
//! collector did not take in time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use tokio::sync::mpsc;

use super::metrics;
use crate::config::{OtlpProtocol, TelemetryConfig};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are being recorded (cheap: callers skip all tracing work when not).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn env_num(name: &str, default: u64) -> u64 {
    env(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the pipeline was resolved to (config over `OTEL_*` over defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Base URL from `[telemetry]`, if set there (else the exporter reads `OTEL_*` itself).
    pub endpoint: Option<String>,
    /// Transport.
    pub protocol: OtlpProtocol,
    /// Sampling ratio from `[telemetry]` (else `OTEL_TRACES_SAMPLER*`).
    pub ratio: Option<f64>,
}

/// `None` when tracing is off: disabled, or no endpoint configured anywhere.
pub fn resolve(cfg: &TelemetryConfig) -> Option<Resolved> {
    let env_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let sdk_disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let on = cfg.enabled.unwrap_or(!sdk_disabled && (cfg.endpoint.is_some() || env_endpoint.is_some()));
    if !on {
        return None;
    }
    let protocol = cfg
        .protocol
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").and_then(|p| OtlpProtocol::parse(&p)))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL").and_then(|p| OtlpProtocol::parse(&p)))
        .unwrap_or(OtlpProtocol::Grpc);
    Some(Resolved { endpoint: cfg.endpoint.clone(), protocol, ratio: cfg.sampler_ratio })
}

/// A running pipeline; [`Tracing::shutdown`] flushes it (bounded).
pub struct Tracing {
    resolved: Resolved,
    provider: SdkTracerProvider,
    flush: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl Tracing {
    /// What the pipeline was resolved to.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// The provider the `tracing` layer records into.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Sends what is queued (waiting at most `within`) and stops recording.
    pub async fn shutdown(self, within: Duration) {
        ENABLED.store(false, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.flush.try_send(tx).is_ok() {
            let _ = tokio::time::timeout(within, rx).await;
        }
    }
}

/// Builds the pipeline for node `node`; `None` (with a warning) when it cannot be built: tracing
/// fails open.
pub fn start(cfg: &TelemetryConfig, node: &str) -> Option<Tracing> {
    let resolved = resolve(cfg)?;
    let mut exporter = match build_exporter(&resolved) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot set up the OTLP exporter; tracing stays off");
            return None;
        }
    };
    let resource = resource(node);
    // The exporter sends the resource with every batch (the processor owns the exporter).
    exporter.set_resource(&resource);
    let (processor, flush) = BoundedProcessor::start(exporter);
    let mut builder = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource);
    if let Some(r) = resolved.ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))));
    }
    ENABLED.store(true, Ordering::Relaxed);
    Some(Tracing { resolved, provider: builder.build(), flush })
}

fn build_exporter(r: &Resolved) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let retry = opentelemetry_otlp::RetryPolicy::default().with_max_retries(1);
    let built = match r.protocol {
        OtlpProtocol::Grpc => {
            use opentelemetry_otlp::WithTonicConfig;
            let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_retry_policy(retry);
            if let Some(e) = &r.endpoint {
                b = b.with_endpoint(e.clone());
                if e.starts_with("https://") {
                    let tls = opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_webpki_roots();
                    b = b.with_tls_config(tls);
                }
            }
            b.build()
        }
        OtlpProtocol::HttpProtobuf => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(ReqwestClient::new()?)
                .with_retry_policy(retry);
            if let Some(e) = &r.endpoint {
                b = b.with_endpoint(format!("{}/v1/traces", e.trim_end_matches('/')));
            }
            b.build()
        }
    };
    built.map_err(|e| e.to_string())
}

/// `service.name` (`arqonbus` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` name one),
/// `service.version`, `service.instance.id` (the node), and the pod from the downward API.
fn resource(node: &str) -> Resource {
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")));
    let mut b = Resource::builder();
    if !named {
        b = b.with_service_name("arqonbus");
    }
    let mut attrs = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("service.instance.id", node.to_owned()),
    ];
    if let Some(pod) = env("POD_NAME") {
        attrs.push(KeyValue::new("k8s.pod.name", pod));
    }
    if let Some(ns) = env("POD_NAMESPACE") {
        attrs.push(KeyValue::new("k8s.namespace.name", ns));
    }
    b.with_attributes(attrs).build()
}

/// The OTLP/HTTP client: the reqwest (rustls) the node already uses for webhooks and JWK sets.
#[derive(Debug)]
struct ReqwestClient(reqwest::Client);

impl ReqwestClient {
    fn new() -> Result<Self, String> {
        reqwest::Client::builder().build().map(Self).map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ReqwestClient {
    async fn send_bytes(
        &self,
        request: http::Request<opentelemetry_http::Bytes>,
    ) -> Result<http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut req = self.0.request(parts.method, parts.uri.to_string()).body(body);
        for (k, v) in &parts.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await?;
        let mut out = http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let body = resp.bytes().await?;
        Ok(out.body(body)?)
    }
}

/// Rate limit of the "spans dropped" warning.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A batch span processor with a bounded queue that never blocks the span's thread.
#[derive(Debug)]
struct BoundedProcessor {
    tx: mpsc::Sender<SpanData>,
    last_warn: Arc<AtomicU64>,
    started: Instant,
}

impl BoundedProcessor {
    /// The processor and a flush handle; the export loop runs on the current runtime.
    fn start(exporter: opentelemetry_otlp::SpanExporter) -> (Self, mpsc::Sender<tokio::sync::oneshot::Sender<()>>) {
        let queue = env_num("OTEL_BSP_MAX_QUEUE_SIZE", 2048).clamp(1, 1 << 20) as usize;
        let batch = (env_num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512) as usize).clamp(1, queue);
        let delay = Duration::from_millis(env_num("OTEL_BSP_SCHEDULE_DELAY", 5000));
        let timeout = Duration::from_millis(env_num("OTEL_BSP_EXPORT_TIMEOUT", 30_000));
        let (tx, rx) = mpsc::channel(queue);
        let (flush_tx, flush_rx) = mpsc::channel(4);
        let last_warn = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        tokio::spawn(export_loop(
            exporter,
            rx,
            flush_rx,
            ExportRules { batch, delay, timeout },
            last_warn.clone(),
            started,
        ));
        (Self { tx, last_warn, started }, flush_tx)
    }
}

/// Counts `n` dropped spans and warns at most once a minute.
fn dropped(n: usize, why: &str, last_warn: &AtomicU64, started: Instant) {
    metrics().trace_spans_dropped.inc_by(n as u64);
    let now = started.elapsed().as_secs();
    let last = last_warn.load(Ordering::Relaxed);
    if (last == 0 || now >= last + WARN_EVERY.as_secs())
        && last_warn.compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed).is_ok()
    {
        tracing::warn!(spans = n, why, "trace spans dropped (counted in arqonbus_trace_spans_dropped_total)");
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            dropped(1, "the export queue is full", &self.last_warn, self.started);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Err(OTelSdkError::InternalFailure("use Tracing::shutdown".into()))
    }
}

struct ExportRules {
    batch: usize,
    delay: Duration,
    timeout: Duration,
}

async fn export_loop(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    mut flush: mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
    rules: ExportRules,
    last_warn: Arc<AtomicU64>,
    started: Instant,
) {
    let mut tick = tokio::time::interval(rules.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<SpanData> = Vec::with_capacity(rules.batch);
    loop {
        let mut done = None;
        tokio::select! {
            span = rx.recv() => match span {
                Some(s) => {
                    pending.push(s);
                    if pending.len() < rules.batch {
                        continue;
                    }
                }
                None => return,
            },
            _ = tick.tick() => {}
            f = flush.recv() => done = f,
        }
        while let Ok(s) = rx.try_recv() {
            pending.push(s);
            if pending.len() >= rules.batch {
                send(&exporter, std::mem::take(&mut pending), rules.timeout, &last_warn, started).await;
            }
        }
        if !pending.is_empty() {
            send(&exporter, std::mem::take(&mut pending), rules.timeout, &last_warn, started).await;
        }
        if let Some(d) = done {
            let _ = d.send(());
        }
    }
}

async fn send(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: Vec<SpanData>,
    within: Duration,
    last_warn: &AtomicU64,
    started: Instant,
) {
    let n = batch.len();
    match tokio::time::timeout(within, exporter.export(batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => dropped(n, &format!("the collector refused the batch: {e}"), last_warn, started),
        Err(_) => dropped(n, "the collector did not answer in time", last_warn, started),
    }
}
