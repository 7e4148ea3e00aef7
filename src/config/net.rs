//! Network-facing settings parsed once: browser origin patterns and trusted proxy addresses.

use std::net::IpAddr;

/// One entry of `server.allowed_origins`: `*` (any origin), or `scheme://host[:port]` where a host
/// label may be `*` (exactly one label, e.g. `https://*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// Every origin.
    Any,
    /// One scheme, host labels (`None` = `*`), and an optional port (`None` = the default one).
    Exact {
        /// `http` or `https`.
        scheme: String,
        /// Lowercase labels, `None` for `*`.
        labels: Vec<Option<String>>,
        /// Explicit port, if any.
        port: Option<u16>,
    },
}

/// A parsed `Origin` header value.
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn split_origin(text: &str) -> Option<Origin> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p.parse::<u16>().ok()?)),
        _ => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    Some(Origin { scheme, host: host.to_ascii_lowercase(), port })
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

impl OriginPattern {
    /// Parses one configured entry; `None` when it is not of the documented form.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            return Some(Self::Any);
        }
        let o = split_origin(text)?;
        let labels: Vec<Option<String>> = o.host.split('.').map(|l| (l != "*").then(|| l.to_owned())).collect();
        let label_ok = |l: &Option<String>| {
            l.as_deref().is_none_or(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'[' | b']' | b':'))
            })
        };
        if !labels.iter().all(label_ok) {
            return None;
        }
        Some(Self::Exact { scheme: o.scheme, labels, port: o.port })
    }

    /// Whether an `Origin` header value matches.
    pub fn matches(&self, origin: &str) -> bool {
        let (scheme, labels, port) = match self {
            Self::Any => return true,
            Self::Exact { scheme, labels, port } => (scheme, labels, port),
        };
        let Some(o) = split_origin(origin) else { return false };
        let want_port = port.unwrap_or_else(|| default_port(scheme));
        if o.scheme != *scheme || o.port.unwrap_or_else(|| default_port(&o.scheme)) != want_port {
            return false;
        }
        let given: Vec<&str> = o.host.split('.').collect();
        given.len() == labels.len() && given.iter().zip(labels).all(|(g, l)| l.as_deref().is_none_or(|l| l == *g))
    }
}

/// Whether `origin` names the same host and port as the request's `Host` header (the scheme is
/// not compared: behind a TLS-terminating load balancer the server cannot know it).
pub fn same_origin(origin: &str, host_header: &str) -> bool {
    let Some(o) = split_origin(origin) else { return false };
    let host = host_header.to_ascii_lowercase();
    let (h, p) = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || host.starts_with('[') => (h.to_owned(), p.parse::<u16>().ok()),
        _ => (host.clone(), None),
    };
    h == o.host && p.unwrap_or_else(|| default_port(&o.scheme)) == o.port.unwrap_or_else(|| default_port(&o.scheme))
}

/// An IP network from `server.trusted_proxies`: an address or `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `::1`, `192.168.1.7`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        let p = |s: &str| OriginPattern::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert!(p("*").matches("https://evil.example"));
        let wild = p("https://*.example.com");
        assert!(wild.matches("https://app.example.com"));
        assert!(wild.matches("https://APP.example.com:443"));
        assert!(!wild.matches("https://example.com"), "* is exactly one label");
        assert!(!wild.matches("https://a.b.example.com"));
        assert!(!wild.matches("http://app.example.com"), "scheme must match");
        assert!(!wild.matches("https://app.example.com.evil.io"));
        assert!(!wild.matches("https://app.example.com:8443"));
        let local = p("http://localhost:3000");
        assert!(local.matches("http://localhost:3000"));
        assert!(!local.matches("http://localhost:3001"));
        assert!(!local.matches("null"));
        for bad in ["", "example.com", "ftp://x", "https://", "https://a/b", "https://a:99999", "https://a b"] {
            assert!(OriginPattern::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("https://bus.example.com", "bus.example.com"));
        assert!(!same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_origin("http://evil.example", "bus.example.com"));
        assert!(!same_origin("null", "bus.example.com"));
    }

    #[test]
    fn ip_nets() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.9.9.9".parse().unwrap()));
        let one = IpNet::parse("192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "::1/129"] {
            assert!(IpNet::parse(bad).is_none(), "{bad}");
        }
    }
}
