//! Who may open a WebSocket: browser origins, handshakes per client IP, connections per node and
//! per user. Each check answers before the costlier ones (authentication may call a webhook).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::net::{same_origin, IpNet, OriginPattern};
use crate::config::Config;
use crate::sync::lock;

/// Keys kept by the per-IP limiter before the ones with a full bucket are forgotten.
const IP_KEYS_BEFORE_SWEEP: usize = 10_000;

/// Open connections per user.
type UserCounts = Arc<Mutex<HashMap<Arc<str>, usize>>>;

/// The admission rules of a node, parsed once.
pub struct Gate {
    origins: Vec<OriginPattern>,
    trusted: Vec<IpNet>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: usize,
    users: UserCounts,
}

impl Gate {
    /// The rules of `config`.
    pub fn new(config: &Config) -> Self {
        let l = &config.limits;
        let per_ip = NonZeroU32::new(l.connect_rate_per_ip).map(|rate| {
            let burst = NonZeroU32::new(l.connect_rate_per_ip.saturating_mul(2)).unwrap_or(rate);
            RateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            origins: config.origin_patterns(),
            trusted: config.trusted_proxies(),
            per_ip,
            per_user: l.max_connections_per_user,
            users: Arc::default(),
        }
    }

    /// Whether a browser page from the request's `Origin` may connect: no `Origin` (not a
    /// browser), same origin as the `Host`, or listed in `server.allowed_origins`.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else { return true };
        let Ok(origin) = origin.to_str() else { return false };
        if self.origins.iter().any(|p| p.matches(origin)) {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        host.is_some_and(|h| same_origin(origin, h))
    }

    /// The client's address: the peer, or — when the peer is a trusted proxy — the last address
    /// in `X-Forwarded-For` that is not one.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|n| n.contains(*ip));
        if !trusted(&peer.ip()) {
            return peer.ip();
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        forwarded.iter().rev().find(|ip| !trusted(ip)).or(forwarded.first()).copied().unwrap_or(peer.ip())
    }

    /// Takes a handshake from `ip`'s bucket, or says in how many ms to retry.
    pub fn take_handshake(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.per_ip else { return Ok(()) };
        if limiter.len() > IP_KEYS_BEFORE_SWEEP {
            limiter.retain_recent();
        }
        limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()).as_millis() as u64 + 1)
    }

    /// One more connection of `user`, or `None` at `limits.max_connections_per_user`.
    pub fn user_slot(&self, user: &str) -> Option<UserSlot> {
        if self.per_user == 0 {
            return Some(UserSlot(None));
        }
        let mut users = lock(&self.users);
        let (key, n) = match users.get_key_value(user) {
            Some((k, n)) => (k.clone(), *n),
            None => (Arc::from(user), 0),
        };
        if n >= self.per_user {
            return None;
        }
        users.insert(key.clone(), n + 1);
        Some(UserSlot(Some((self.users.clone(), key))))
    }
}

/// A connection counted against its user's limit; dropping it gives the slot back.
pub struct UserSlot(Option<(UserCounts, Arc<str>)>);

impl Drop for UserSlot {
    fn drop(&mut self) {
        let Some((users, key)) = self.0.take() else { return };
        let mut users = lock(&users);
        if let Some(n) = users.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                users.remove(&key);
            }
        }
    }
}

/// One admitted connection; dropping it releases the slot.
pub struct Admission(Arc<AtomicUsize>);

impl Admission {
    /// A slot of `max`, if one is free.
    pub fn try_new(counter: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        if counter.fetch_add(1, Ordering::AcqRel) >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(counter.clone()))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(origins: &[&str], trusted: &[&str]) -> Gate {
        let mut c = Config::default();
        c.server.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        c.server.trusted_proxies = trusted.iter().map(|s| s.to_string()).collect();
        c.limits.max_connections_per_user = 2;
        Gate::new(&c)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let g = gate(&["https://*.example.com"], &[]);
        assert!(g.origin_allowed(&headers(&[("host", "bus.example.com")])), "no Origin: not a browser");
        assert!(g.origin_allowed(&headers(&[("host", "bus.io"), ("origin", "https://app.example.com")])));
        assert!(g.origin_allowed(&headers(&[("host", "bus.io:8080"), ("origin", "http://bus.io:8080")])));
        assert!(!g.origin_allowed(&headers(&[("host", "bus.io"), ("origin", "https://evil.io")])));
        assert!(!g.origin_allowed(&headers(&[("host", "bus.io"), ("origin", "null")])));
        assert!(gate(&["*"], &[]).origin_allowed(&headers(&[("host", "bus.io"), ("origin", "https://evil.io")])));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let g = gate(&[], &["10.0.0.0/8"]);
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.1.1")]);
        let direct: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert_eq!(g.client_ip(direct, &xff), direct.ip(), "an untrusted peer cannot claim an address");
        let proxy: SocketAddr = "10.2.2.2:5000".parse().unwrap();
        assert_eq!(g.client_ip(proxy, &xff), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(g.client_ip(proxy, &HeaderMap::new()), proxy.ip());
    }

    #[test]
    fn user_slots_are_counted_and_given_back() {
        let g = gate(&[], &[]);
        let a = g.user_slot("alice").unwrap();
        let b = g.user_slot("alice").unwrap();
        assert!(g.user_slot("alice").is_none());
        assert!(g.user_slot("bob").is_some());
        drop(a);
        let _c = g.user_slot("alice").unwrap();
        drop(b);
        assert!(g.users.lock().unwrap().get("alice") == Some(&1));
    }
}
