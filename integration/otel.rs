//! Traces end to end, against a real OTLP receiver in the test (gRPC with tonic, and HTTP with
//! protobuf bodies): two gateways on one Redis; a client publishes on node A with a
//! `traceparent`, a subscriber receives on node B. The receiver must get A's PRODUCER span,
//! child of the client's span, and B's CONSUMER span in the same trace, with the messaging
//! attributes and each node named in its resource; the delivered event carries the trace.
//! A collector that is down or never answers costs dropped spans, never a publish.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use support::common::{http, metric, metric_until, Client};
use support::*;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// A span as received, with its resource's attributes.
#[derive(Debug, Clone)]
struct Got {
    span: Span,
    resource: Vec<KeyValue>,
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<Got>>>);

impl Sink {
    fn take(&self, req: ExportTraceServiceRequest) {
        let mut all = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                all.extend(ss.spans.into_iter().map(|span| Got { span, resource: resource.clone() }));
            }
        }
    }

    /// Waits until a span matches `pred`.
    async fn wait(&self, what: &str, pred: impl Fn(&Got) -> bool) -> Got {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(g) = self.0.lock().unwrap().iter().find(|g| pred(g)) {
                return g.clone();
            }
            assert!(Instant::now() < deadline, "no {what} span came: {:#?}", self.0.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// An OTLP/gRPC receiver on a free port.
async fn grpc_receiver() -> (SocketAddr, Sink) {
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(sink.clone());
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming).await;
    });
    (addr, sink)
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on a free port.
async fn http_receiver() -> (SocketAddr, Sink) {
    let sink = Sink::default();
    let s = sink.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        s.take(req);
                        let ok = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                        (axum::http::StatusCode::OK, [("content-type", "application/x-protobuf")], ok)
                    }
                    Err(_) => (axum::http::StatusCode::BAD_REQUEST, [("content-type", "text/plain")], Vec::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, sink)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn gateways(redis: &Redis, otlp: &[(&str, String)]) -> (Gateway, Gateway) {
    gateways_logging(redis, otlp, &[]).await
}

/// Gateways A and B; `a_env` is added to A's environment only.
async fn gateways_logging(redis: &Redis, otlp: &[(&str, String)], a_env: &[(&str, String)]) -> (Gateway, Gateway) {
    let mut env: Vec<(&str, String)> = vec![
        ("ARQONBUS_BACKPLANE__URL", redis.url()),
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", "200".into()),
        ("ARQONBUS_HTTP__API_KEY", "otel-test-key-0123456789".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ];
    env.extend(otlp.iter().cloned());
    let b = Gateway::spawn(&env).await;
    env.extend(a_env.iter().cloned());
    let a = Gateway::spawn(&env).await;
    a.wait_ready(200, Duration::from_secs(15)).await;
    b.wait_ready(200, Duration::from_secs(15)).await;
    (a, b)
}

/// Subscribes on `b` and waits until `a` sees the subscription (cross-node delivery is then on).
async fn subscriber(a: &Gateway, b: &Gateway) -> Client {
    let mut sub = Client::connect(b.addr()).await;
    sub.subscribe("r", "c").await;
    let mut probe = Client::connect(a.addr()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // NOT_FOUND until the channel exists everywhere: poll the reply, never assume success.
    while probe.command("channel_info", json!({"room":"r","channel":"c"})).await["result"]["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "node A never saw the subscription on node B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sub
}

/// Checks the PRODUCER span from `a` and the CONSUMER span from `b`, in the client's trace.
async fn assert_trace(sink: &Sink, a: &Gateway, b: &Gateway, delivered: &Value) {
    let node = |g: &Gateway| format!("gw-{}", g.addr().port());
    let producer = sink.wait("PRODUCER", |g| g.span.kind == SpanKind::Producer as i32).await;
    assert_eq!(hex(&producer.span.trace_id), TRACE_ID, "the publish span is in the client's trace");
    assert_eq!(hex(&producer.span.parent_span_id), CLIENT_SPAN, "its parent is the client's span");
    let attrs = &producer.span.attributes;
    assert_eq!(attr(attrs, "messaging.system"), Some("arqonbus"));
    assert_eq!(attr(attrs, "messaging.destination.name"), Some("r:c"));
    assert_eq!(attr(attrs, "messaging.operation.type"), Some("send"));
    assert_eq!(attr(attrs, "messaging.message.id"), delivered["id"].as_str());
    assert_eq!(int_attr(attrs, "arqonbus.offset"), delivered["offset"].as_i64(), "{attrs:?}");
    assert_eq!(attr(&producer.resource, "service.instance.id"), Some(node(a).as_str()));
    assert_eq!(attr(&producer.resource, "service.name"), Some("arqonbus"));
    let consumer =
        sink.wait("CONSUMER", |g| g.span.kind == SpanKind::Consumer as i32 && hex(&g.span.trace_id) == TRACE_ID).await;
    assert_eq!(attr(&consumer.resource, "service.instance.id"), Some(node(b).as_str()));
    assert_eq!(consumer.span.parent_span_id, producer.span.span_id, "delivered as the publish's child");
    assert_eq!(int_attr(&consumer.span.attributes, "messaging.batch.message_count"), Some(1));
    // The subscriber can continue the trace from the event.
    let tp = delivered["metadata"]["traceparent"].as_str().expect("a traceparent in the delivered event");
    assert_eq!(tp, format!("00-{TRACE_ID}-{}-01", hex(&producer.span.span_id)));
    assert_eq!(delivered["metadata"]["tracestate"], "vendor=1", "other metadata is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_one_trace_across_nodes_over_otlp_grpc() {
    let redis = Redis::start();
    let (addr, sink) = grpc_receiver().await;
    let otlp = [("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))];
    let (a, b) = gateways_logging(&redis, &otlp, &[("ARQONBUS_LOG__LEVEL", "info".into())]).await;
    let mut sub = subscriber(&a, &b).await;
    let mut p = Client::connect(a.addr()).await;
    let tp = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let meta = json!({"traceparent": tp, "tracestate": "vendor=1"});
    let ack = p.request(json!({"type":"event","room":"r","channel":"c","payload":1,"metadata":meta})).await;
    assert_eq!(ack["type"], "reply", "{ack}");
    let delivered = sub.event().await;
    assert_trace(&sink, &a, &b, &delivered).await;
    // History replays carry the trace too.
    let h = sub.ok("history", json!({"room":"r","channel":"c"})).await;
    assert_eq!(h["events"][0]["metadata"], delivered["metadata"]);
    // Text logs to a file have no colour codes.
    let out = a.output();
    assert!(out.contains("tracing to OTLP"), "{out}");
    assert!(!out.contains('\u{1b}'), "ANSI escapes in a log file: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_publish_with_a_traceparent_header_gives_the_same_chain_over_otlp_http() {
    let redis = Redis::start();
    let (addr, sink) = http_receiver().await;
    let otlp = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
    ];
    let json_logs = [("ARQONBUS_LOG__FORMAT", "json".into()), ("ARQONBUS_LOG__LEVEL", "arqonbus=debug,warn".into())];
    let (a, b) = gateways_logging(&redis, &otlp, &json_logs).await;
    let mut sub = subscriber(&a, &b).await;
    let tp = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let headers = [("authorization", "Bearer otel-test-key-0123456789"), ("traceparent", tp.as_str())];
    let body = r#"{"room":"r","channel":"c","payload":2,"metadata":{"tracestate":"vendor=1"}}"#;
    let (status, ack) = http(a.addr(), "POST", "/v1/publish", &headers, body).await;
    assert_eq!(status, 200, "{ack}");
    let delivered = sub.event().await;
    assert_trace(&sink, &a, &b, &delivered).await;
    // A JSON log line written inside the publish span names its trace and span.
    let stored = a
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "event stored")
        .expect("a JSON log line of the publish");
    assert_eq!(stored["span"]["trace_id"], TRACE_ID, "{stored}");
    let tp = delivered["metadata"]["traceparent"].as_str().unwrap();
    assert_eq!(stored["span"]["span_id"].as_str(), tp.split('-').nth(2), "{stored}");
}

/// 2,000 publishes while the collector is `unreachable`: all acked and delivered in order, and
/// the spans that could not be sent are counted.
async fn collector_down_costs_spans_not_publishes(endpoint: String) {
    let redis = Redis::start();
    let otlp = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".into()),
        ("OTEL_BSP_EXPORT_TIMEOUT", "500".into()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "256".into()),
    ];
    let (a, b) = gateways(&redis, &otlp).await;
    let mut sub = subscriber(&a, &b).await;
    let mut p = Client::connect(a.addr()).await;
    for i in 0..2000 {
        let tp = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
        let ack =
            p.request(json!({"type":"event","room":"r","channel":"c","payload":i,"metadata":{"traceparent":tp}})).await;
        assert_eq!(ack["type"], "reply", "publish {i}: {ack}");
    }
    for want in 1..=2000 {
        assert_eq!(sub.event().await["offset"], want);
    }
    let dropped =
        metric_until(a.addr(), "arqonbus_trace_spans_dropped_total", Duration::from_secs(20), |v| v > 0.0).await;
    assert!(dropped > 0.0, "dropped spans are counted");
    assert!(metric(a.addr(), "arqonbus_outbound_queued_bytes").await < 1_000_000.0);
    assert_eq!(a.ready().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_spans_never_a_publish() {
    let closed = support::free_port();
    collector_down_costs_spans_not_publishes(format!("http://127.0.0.1:{closed}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_collector_costs_spans_never_a_publish() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    collector_down_costs_spans_not_publishes(format!("http://{addr}")).await;
}
