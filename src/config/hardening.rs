//! Checks of the settings that bound what a client can make a node hold, and how long it waits.

use super::net::{IpNet, OriginPattern};
use super::{Config, ConfigError};

/// Bytes a server frame adds around a client's payload and metadata (ids, names, timestamps),
/// with room to spare: a budget must hold at least one largest event.
pub const FRAME_OVERHEAD: usize = 8 * 1024;

impl Config {
    /// Byte budgets, deadlines, rates, origins and proxies.
    pub(super) fn validate_hardening(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let (l, s, c) = (&self.limits, &self.server, &self.channels);
        let largest_event = l.max_frame_bytes + FRAME_OVERHEAD;
        if !(64 * 1024..=1 << 30).contains(&l.outbound_queue_bytes) || l.outbound_queue_bytes < largest_event {
            let reason =
                format!("must be between 65536 and 1073741824 and at least max_frame_bytes + {FRAME_OVERHEAD}");
            return bad("limits.outbound_queue_bytes", reason);
        }
        if l.max_reply_bytes > l.outbound_queue_bytes || l.max_reply_bytes < largest_event {
            let reason =
                format!("must be at most limits.outbound_queue_bytes and at least max_frame_bytes + {FRAME_OVERHEAD}");
            return bad("limits.max_reply_bytes", reason);
        }
        let ranges: [(&'static str, u64, u64, u64); 4] = [
            ("limits.write_timeout_ms", l.write_timeout_ms, 100, 600_000),
            ("server.header_timeout_ms", s.header_timeout_ms, 100, 600_000),
            ("server.body_timeout_ms", s.body_timeout_ms, 100, 600_000),
            ("server.max_pending_connections", s.max_pending_connections as u64, 1, 1_000_000),
        ];
        for (key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return bad(key, format!("must be between {lo} and {hi}"));
            }
        }
        let at_least_one: [(&'static str, u64); 5] = [
            ("limits.command_rate_per_s", l.command_rate_per_s.into()),
            ("limits.command_burst", l.command_burst.into()),
            ("limits.http_history_rate_per_s", l.http_history_rate_per_s.into()),
            ("channels.max_channels_per_room", c.max_channels_per_room as u64),
            ("channels.max_channels", c.max_channels as u64),
        ];
        for (key, v) in at_least_one {
            if v < 1 {
                return bad(key, "must be at least 1".into());
            }
        }
        if c.memory_max_bytes < 1 << 20 {
            return bad("channels.memory_max_bytes", "must be at least 1048576".into());
        }
        if let Some(o) = s.allowed_origins.iter().find(|o| OriginPattern::parse(o).is_none()) {
            let reason = format!("{o:?} is not \"*\" or scheme://host[:port] (http or https, `*` for one host label)");
            return bad("server.allowed_origins", reason);
        }
        if let Some(p) = s.trusted_proxies.iter().find(|p| IpNet::parse(p).is_none()) {
            return bad("server.trusted_proxies", format!("{p:?} is not an IP address or CIDR network"));
        }
        Ok(())
    }

    /// The parsed `server.allowed_origins` (validated).
    pub fn origin_patterns(&self) -> Vec<OriginPattern> {
        self.server.allowed_origins.iter().filter_map(|o| OriginPattern::parse(o)).collect()
    }

    /// The parsed `server.trusted_proxies` (validated).
    pub fn trusted_proxies(&self) -> Vec<IpNet> {
        self.server.trusted_proxies.iter().filter_map(|p| IpNet::parse(p)).collect()
    }
}
