//! HTTP endpoints: health, readiness, version, metrics, and the API-key publish/history API.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{http_error, Shared};
use crate::auth::api_keys::{self, ApiGrant, ApiRefusal};
use crate::commands::{history, publish_event, take_token, Origin};
use crate::config::ApiScope;
use crate::protocol::{parse_http_publish, ErrorBody, ErrorCode, PROTOCOL_VERSION};

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while accepting and the backplane is reachable.
pub async fn readyz(State(st): State<Shared>) -> Response {
    let reason = if st.node.is_draining() {
        Some("draining")
    } else if !st.node.backplane.healthy().await {
        Some("backplane unavailable")
    } else {
        None
    };
    match reason {
        None => Json(json!({ "ready": true })).into_response(),
        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "reason": r }))).into_response(),
    }
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    Json(json!({ "name": "arqonbus", "version": env!("CARGO_PKG_VERSION"), "protocol": PROTOCOL_VERSION }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_text(State(st): State<Shared>) -> Response {
    let healthy = st.node.backplane.healthy().await;
    crate::telemetry::metrics().backplane_healthy.set(i64::from(healthy));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::render()).into_response()
}

/// The grant of the presented API key if it has `scope`, or the refusal: 404 when no key is
/// configured (the API is off rather than open), 401 when the key is missing or wrong, 403
/// when it lacks the scope.
fn api_grant<'a>(st: &'a Shared, headers: &HeaderMap, scope: ApiScope) -> Result<ApiGrant<'a>, ErrorBody> {
    let http = &st.node.config.http;
    if !http.api_enabled() {
        let msg = "the HTTP API is disabled: set http.api_key or http.api_keys";
        return Err(ErrorBody::new(ErrorCode::NotFound, msg));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let grant = api_keys::find(http, given)
        .ok_or_else(|| ErrorBody::new(ErrorCode::Unauthorized, "missing or invalid API key"))?;
    grant.has(scope).map_err(forbidden)?;
    Ok(grant)
}

/// A valid key that may not do this: 403.
fn forbidden(r: ApiRefusal) -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, r.to_string())
}

/// 408: the body did not arrive within `server.body_timeout_ms`; nothing was published.
fn body_timeout() -> Response {
    crate::telemetry::metrics().errors.with_label_values(&["TIMEOUT"]).inc();
    let msg = "the request body did not arrive in time (server.body_timeout_ms); nothing was published";
    let body = json!({ "error": { "code": "TIMEOUT", "message": msg } });
    (StatusCode::REQUEST_TIMEOUT, [(header::CONNECTION, "close")], Json(body)).into_response()
}

/// `POST /v1/publish` with `{"room","channel","payload","metadata"?,"idempotency_key"?}`.
pub async fn publish(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let grant = match api_grant(&st, &headers, ApiScope::Publish) {
        Ok(g) => g,
        Err(e) => return http_error(e),
    };
    let limit = st.node.config.limits.max_frame_bytes;
    let wait = std::time::Duration::from_millis(st.node.config.server.body_timeout_ms);
    let bytes = match tokio::time::timeout(wait, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return http_error(ErrorBody::new(ErrorCode::LimitExceeded, format!("body larger than {limit} bytes")))
        }
        Err(_) => return body_timeout(),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return http_error(ErrorBody::new(ErrorCode::InvalidJson, "body is not UTF-8"));
    };
    let ev = match parse_http_publish(text) {
        Ok(ev) => ev,
        Err(e) => return http_error(e),
    };
    if let Err(e) = grant.allows(ApiScope::Publish, &ev.key) {
        return http_error(forbidden(e));
    }
    if let Err(e) = take_token(&st.node.http_limiter, "publish") {
        return http_error(e);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let parent = header("traceparent").map(|tp| (tp, header("tracestate")));
    let started = std::time::Instant::now();
    let origin = Origin { client_id: "http", user: None, source: "http", parent };
    match publish_event(&st.node, &origin, ev).await {
        Ok(p) => {
            let took = started.elapsed().as_secs_f64();
            crate::telemetry::metrics().publish_duration.with_label_values(&["http"]).observe(took);
            Json(p).into_response()
        }
        Err(e) => http_error(e),
    }
}

/// `GET /v1/history?room=&channel=&limit=&since=&before=&reverse=`.
pub async fn history(State(st): State<Shared>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    let grant = match api_grant(&st, &headers, ApiScope::History) {
        Ok(g) => g,
        Err(e) => return http_error(e),
    };
    let mut map = Map::new();
    for (k, v) in q {
        let value = match k.as_str() {
            "limit" | "since" | "before" => v.parse::<u64>().map(Value::from).unwrap_or(Value::String(v)),
            "reverse" => match v.as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => Value::String(v),
            },
            _ => Value::String(v),
        };
        map.insert(k, value);
    }
    if let Err(e) = take_token(&st.node.http_history_limiter, "history") {
        return http_error(e);
    }
    let mut args = crate::commands::Args::new(map);
    let req = match history::HistoryRequest::parse(&mut args).and_then(|r| args.finish().map(|_| r)) {
        Ok(r) => r,
        Err(e) => return http_error(e),
    };
    if req.key.is_reserved() {
        return http_error(ErrorBody::new(ErrorCode::Forbidden, "rooms beginning with _ are reserved for the server"));
    }
    if let Err(e) = grant.allows(ApiScope::History, &req.key) {
        return http_error(forbidden(e));
    }
    match history::query(&st.node, req).await {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => http_error(e),
    }
}
