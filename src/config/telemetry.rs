//! `[telemetry]`: OpenTelemetry traces exported over OTLP.
//!
//! The standard `OTEL_*` variables work as documented by OpenTelemetry; a key set here overrides
//! its `OTEL_*` counterpart, which overrides the default. With no endpoint anywhere, tracing is
//! off.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (the OpenTelemetry default, port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL` naming it.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

/// `[telemetry]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Tracing on or off; unset: on when an OTLP endpoint is configured (here or in
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub enabled: Option<bool>,
    /// The collector's base URL, e.g. `http://otel-collector:4317` (gRPC) or
    /// `http://otel-collector:4318` (HTTP: `/v1/traces` is appended); overrides `OTEL_*`.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`; overrides `OTEL_EXPORTER_OTLP_PROTOCOL`; default `grpc`.
    pub protocol: Option<OtlpProtocol>,
    /// Fraction of new traces sampled (0.0–1.0), parent-based: a client's sampled trace is
    /// always followed. Overrides `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`.
    pub sampler_ratio: Option<f64>,
    /// `room:channel` names that get their own label on the per-channel metrics (an allow-list,
    /// so that label cardinality stays bounded); empty: no per-channel labels.
    pub metric_channels: Vec<String>,
}

/// Most channels that may have their own metric labels.
const MAX_METRIC_CHANNELS: usize = 100;

impl Config {
    /// The `[telemetry]` checks.
    pub(super) fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let t = &self.telemetry;
        if let Some(e) = &t.endpoint {
            let ok = reqwest::Url::parse(e).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return bad("telemetry.endpoint", format!("{e:?} is not an http:// or https:// URL with a host"));
            }
        }
        if t.sampler_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return bad("telemetry.sampler_ratio", "must be between 0.0 and 1.0".into());
        }
        if t.metric_channels.len() > MAX_METRIC_CHANNELS {
            return bad("telemetry.metric_channels", format!("may name at most {MAX_METRIC_CHANNELS} channels"));
        }
        for c in &t.metric_channels {
            let valid = c.split_once(':').is_some_and(|(r, ch)| crate::protocol::ChannelKey::parse(r, ch).is_ok());
            if !valid {
                return bad("telemetry.metric_channels", format!("{c:?} is not a room:channel name"));
            }
        }
        Ok(())
    }
}
