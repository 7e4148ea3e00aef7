//! The membership loop against a mocked Kubernetes API: kube's own `Client` over a tower mock
//! service, answering EndpointSlice list and watch requests as an API server would.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_test::mock;

use super::*;

type Handle = mock::Handle<Request<Body>, Response<Body>>;
type Reply = mock::SendResponse<Response<Body>>;

const PATH: &str = "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices";
const SELECTOR: &str = "labelSelector=kubernetes.io%2Fservice-name%3Darqonbus-headless";

fn timing() -> Timing {
    Timing {
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        watch_timeout_s: 290,
        request_timeout: Duration::from_secs(5),
    }
}

fn start() -> (Peers, Handle, CancellationToken) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let stop = CancellationToken::new();
    let peers = spawn(client, "prod", "arqonbus-headless", timing(), &TaskTracker::new(), stop.clone());
    (peers, handle, stop)
}

/// A slice of pods: (pod name, ready condition).
fn slice(name: &str, version: &str, pods: &[(&str, Option<bool>)]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, (pod, ready))| {
            let mut conditions = json!({});
            if let Some(r) = ready {
                conditions["ready"] = json!(r);
            }
            json!({
                "addresses": [format!("10.0.0.{}", i + 1)],
                "conditions": conditions,
                "targetRef": {"kind": "Pod", "name": pod, "namespace": "prod"},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": name, "namespace": "prod", "resourceVersion": version,
            "labels": {"kubernetes.io/service-name": "arqonbus-headless"}},
        "endpoints": endpoints,
    })
}

fn list(version: &str, items: Vec<Value>) -> Response<Body> {
    let body = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": version}, "items": items});
    ok(body.to_string())
}

/// A watch response: one JSON event per line, then the end of the stream.
fn events(lines: &[(&str, Value)]) -> Response<Body> {
    let text: String =
        lines.iter().map(|(kind, object)| json!({"type": kind, "object": object}).to_string() + "\n").collect();
    ok(text)
}

fn ok(body: String) -> Response<Body> {
    Response::builder().status(StatusCode::OK).body(Body::from(body.into_bytes())).expect("response")
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code})
}

/// The next request, which must be a list (`watch: false`) or a watch from `from`.
async fn next(handle: &mut Handle, watch: bool, from: Option<&str>) -> Reply {
    let (req, reply) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("the loop asks the API again")
        .expect("a request");
    let uri = req.uri().clone();
    assert_eq!(uri.path(), PATH, "{uri}");
    let query = uri.query().unwrap_or_default();
    assert!(query.contains(SELECTOR), "{uri}");
    assert_eq!(query.contains("watch=true"), watch, "{uri}");
    if let Some(v) = from {
        assert!(query.contains(&format!("resourceVersion={v}")), "{uri}");
    }
    reply
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn until(peers: &Peers, want: &[&str]) {
    let want = set(want);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = peers.current();
        if now.as_deref() == Some(&want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "peers {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn peers_appear_and_disappear_as_endpoints_change() {
    let (peers, mut api, stop) = start();
    assert_eq!(peers.current(), None, "nothing is known before the first list");
    next(&mut api, false, None)
        .await
        .send_response(list("10", vec![slice("s1", "9", &[("gw-a", Some(true)), ("gw-b", Some(false))])]));
    until(&peers, &["gw-a"]).await;

    // gw-b turns ready, and a second slice brings gw-c (no condition: ready).
    next(&mut api, true, Some("10")).await.send_response(events(&[
        ("MODIFIED", slice("s1", "11", &[("gw-a", Some(true)), ("gw-b", Some(true))])),
        ("ADDED", slice("s2", "12", &[("gw-c", None)])),
    ]));
    until(&peers, &["gw-a", "gw-b", "gw-c"]).await;

    // The server ended that watch: the next one resumes from the last version seen.
    next(&mut api, true, Some("12")).await.send_response(events(&[
        ("DELETED", slice("s2", "13", &[("gw-c", None)])),
        ("MODIFIED", slice("s1", "14", &[("gw-a", Some(false)), ("gw-b", Some(true))])),
        ("BOOKMARK", json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": {"resourceVersion": "20"}})),
    ]));
    until(&peers, &["gw-b"]).await;
    let _resumed = next(&mut api, true, Some("20")).await;
    stop.cancel();
}

#[tokio::test]
async fn the_watch_restarts_after_errors_and_keeps_the_last_peers_meanwhile() {
    let (peers, mut api, stop) = start();
    // The first list fails: retried after a pause.
    let refused = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .body(Body::from(status(403, "Forbidden").to_string().into_bytes()))
        .expect("response");
    next(&mut api, false, None).await.send_response(refused);
    next(&mut api, false, None).await.send_response(list("5", vec![slice("s1", "5", &[("gw-a", Some(true))])]));
    until(&peers, &["gw-a"]).await;

    // A watch that fails (HTTP 500) is followed by a fresh list; the peers stay meanwhile.
    let broken = Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .body(Body::from(status(500, "InternalError").to_string().into_bytes()))
        .expect("response");
    next(&mut api, true, Some("5")).await.send_response(broken);
    assert_eq!(peers.current().as_deref(), Some(&set(&["gw-a"])));
    next(&mut api, false, None)
        .await
        .send_response(list("30", vec![slice("s1", "30", &[("gw-a", Some(true)), ("gw-b", Some(true))])]));
    until(&peers, &["gw-a", "gw-b"]).await;

    // An expired resource version (410 in the stream) is listed again at once.
    next(&mut api, true, Some("30")).await.send_response(events(&[("ERROR", status(410, "Expired"))]));
    next(&mut api, false, None).await.send_response(list("40", vec![slice("s1", "40", &[("gw-b", Some(true))])]));
    until(&peers, &["gw-b"]).await;

    // A request that never gets an answer (the mock drops it) fails like any error.
    drop(next(&mut api, true, Some("40")).await);
    next(&mut api, false, None).await.send_response(list("41", vec![]));
    until(&peers, &[]).await;
    stop.cancel();
}

#[test]
fn endpoints_count_ready_pods_of_every_slice_once() {
    let parse = |v: Value| serde_json::from_value::<EndpointSlice>(v).expect("slice");
    let mut e = Endpoints::default();
    e.replace(&[
        parse(slice("s1", "1", &[("a", Some(true)), ("b", None), ("c", Some(false))])),
        parse(slice("s2", "1", &[("a", Some(true)), ("d", Some(true))])),
    ]);
    assert_eq!(e.peers(), set(&["a", "b", "d"]));
    e.remove(&parse(slice("s1", "2", &[])));
    assert_eq!(e.peers(), set(&["a", "d"]));
    e.upsert(&parse(slice("s2", "3", &[])));
    assert_eq!(e.peers(), set(&[]));
}

#[test]
fn backoff_doubles_up_to_its_ceiling_with_jitter_in_the_upper_half() {
    let t = timing();
    let mut b = Backoff { step: t.min_backoff, t };
    let steps = [10, 20, 40, 40, 40];
    for step in steps {
        let pause = b.next();
        let step = Duration::from_millis(step);
        assert!(pause >= step / 2 && pause <= step, "{pause:?} for a step of {step:?}");
    }
    b.step = t.min_backoff;
    assert!(b.next() <= t.min_backoff, "a reset starts over");
}
