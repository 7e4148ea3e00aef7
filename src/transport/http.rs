//! HTTP endpoints: health, readiness, version, metrics, and the API-key publish/history API.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use super::{http_error, Shared};
use crate::commands::{history, publish_event, take_token, Origin};
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
pub async fn metrics_text() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::render()).into_response()
}

/// Checks the API key; `Some` is the refusal: a bare 404 when no key is configured (the API
/// then does not exist rather than run open), 401 when the key is missing or wrong.
fn check_api_key(st: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(key) = &st.node.config.http.api_key else {
        return Some(StatusCode::NOT_FOUND.into_response());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(key.expose().as_bytes())) {
        None
    } else {
        Some(http_error(ErrorBody::new(ErrorCode::Unauthorized, "missing or invalid API key")))
    }
}

/// `POST /v1/publish` with `{"room","channel","payload","metadata"?,"idempotency_key"?}`.
pub async fn publish(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = check_api_key(&st, &headers) {
        return r;
    }
    let limit = st.node.config.limits.max_frame_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return http_error(ErrorBody::new(ErrorCode::LimitExceeded, format!("body larger than {limit} bytes")));
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return http_error(ErrorBody::new(ErrorCode::InvalidJson, "body is not UTF-8"));
    };
    let ev = match parse_http_publish(text) {
        Ok(ev) => ev,
        Err(e) => return http_error(e),
    };
    if let Err(e) = take_token(&st.node.http_limiter, "publish") {
        return http_error(e);
    }
    match publish_event(&st.node, &Origin { client_id: "http", user: None }, ev).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => http_error(e),
    }
}

/// `GET /v1/history?room=&channel=&limit=&since=&before=&reverse=`.
pub async fn history(State(st): State<Shared>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = check_api_key(&st, &headers) {
        return r;
    }
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
    match history::query(&st.node, req).await {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => http_error(e),
    }
}
