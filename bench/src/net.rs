//! URL lists, target resolution, source-address spreading, connecting, and /proc readings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use super::{BenchArgs, BenchError};

/// A connected bench WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Most loopback source addresses (127.0.0.1 ..= 127.0.0.254).
pub const MAX_SOURCE_IPS: usize = 254;

/// Where the bench connects to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The WebSocket URL, used for the handshake request (Host, path, query).
    pub url: String,
    /// The resolved server address.
    pub addr: SocketAddr,
    /// How many loopback source addresses to spread connections over (1 = no binding).
    pub source_ips: usize,
}

/// The URL lists of a run: subscribers connect round-robin to `subscribe` (`--url`),
/// publishers to `publish` (`--publish-url`, by default the same list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlLists {
    /// Subscriber URLs, in order.
    pub subscribe: Vec<String>,
    /// Publisher URLs, in order.
    pub publish: Vec<String>,
    /// Where subscribers reconnect in a reconnect storm (`--resume-url`, by default the
    /// publisher URLs); empty outside a storm.
    pub resume: Vec<String>,
}

impl UrlLists {
    /// Parses `--url` and `--publish-url`.
    pub fn from_args(args: &BenchArgs) -> Result<Self, BenchError> {
        let subscribe = parse_url_list("--url", &args.url)?;
        let publish = match &args.publish_url {
            Some(list) => parse_url_list("--publish-url", list)?,
            None => subscribe.clone(),
        };
        let resume = match (&args.storm.resume_url, args.storm.enabled()) {
            (Some(list), true) => parse_url_list("--resume-url", list)?,
            (None, true) => publish.clone(),
            (_, false) => Vec::new(),
        };
        Ok(Self { subscribe, publish, resume })
    }

    /// Every URL once, subscriber URLs first, in order of appearance.
    pub fn distinct(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for url in self.subscribe.iter().chain(&self.publish).chain(&self.resume) {
            if !all.contains(&url.as_str()) {
                all.push(url);
            }
        }
        all
    }

    /// More than one node is involved: messages then name the URL they are about.
    pub fn is_multi(&self) -> bool {
        self.distinct().len() > 1
    }
}

/// The resolved targets, and which one each connection uses.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Targets of the subscribers (one per `--url` entry).
    pub subscribe: Vec<Target>,
    /// Targets of the publishers (one per `--publish-url` entry).
    pub publish: Vec<Target>,
    /// Targets subscribers reconnect to in a reconnect storm.
    pub resume: Vec<Target>,
    /// Connect failures are prefixed with the target's URL (more than one node).
    pub name_failures: bool,
}

impl Targets {
    /// Resolves every URL of the lists (each distinct URL once).
    pub async fn resolve(urls: &UrlLists, source_ips: usize) -> Result<Self, BenchError> {
        let mut resolved: Vec<Target> = Vec::new();
        for url in urls.distinct() {
            resolved.push(Target::resolve(url, source_ips).await?);
        }
        let pick = |list: &[String]| -> Vec<Target> {
            list.iter().filter_map(|url| resolved.iter().find(|t| &t.url == url).cloned()).collect()
        };
        Ok(Self {
            subscribe: pick(&urls.subscribe),
            publish: pick(&urls.publish),
            resume: pick(&urls.resume),
            name_failures: urls.is_multi(),
        })
    }

    /// One target for everything (the single-URL case).
    #[cfg(test)]
    pub fn single(target: Target) -> Self {
        Self { subscribe: vec![target.clone()], publish: vec![target], resume: Vec::new(), name_failures: false }
    }

    /// Subscriber `i`'s target and its connection number there (round-robin).
    pub fn for_subscriber(&self, i: usize) -> Option<(&Target, usize)> {
        let (t, slot) = round_robin(i, self.subscribe.len());
        Some((self.subscribe.get(t)?, slot))
    }

    /// The survivor subscriber `i` reconnects to, and its connection number there.
    pub fn for_resume(&self, i: usize) -> Option<(&Target, usize)> {
        let (t, slot) = round_robin(i, self.resume.len());
        Some((self.resume.get(t)?, slot))
    }

    /// Publisher `j`'s target and its connection number there (round-robin). Publisher
    /// numbers follow those of a target's subscribers: with one URL, publisher `j` is
    /// connection `subscribers + j`, as before multi-URL support.
    pub fn for_publisher(&self, j: usize, subscribers: usize) -> Option<(&Target, usize)> {
        let (t, slot) = round_robin(j, self.publish.len());
        let after_subscribers = subscribers.div_ceil(self.subscribe.len().max(1));
        Some((self.publish.get(t)?, after_subscribers + slot))
    }

    /// The text recorded for a failed connection to `target`.
    pub fn failure(&self, target: &Target, reason: &str) -> String {
        if self.name_failures {
            format!("{}: {reason}", target.name())
        } else {
            reason.to_string()
        }
    }
}

impl Target {
    /// Parses a `ws://` URL and resolves its host.
    pub async fn resolve(url: &str, source_ips: usize) -> Result<Self, BenchError> {
        let (host, port) = host_port(url)?;
        let addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| BenchError::InvalidUrl(format!("{url}: cannot resolve {host}: {e}")))?;
        let addrs: Vec<SocketAddr> = addrs.collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| BenchError::InvalidUrl(format!("{url}: {host} has no address")))?;
        Ok(Self { url: url.to_string(), addr, source_ips })
    }

    /// The URL without its query (which may carry a token): names the node in messages.
    pub fn name(&self) -> &str {
        url_name(&self.url)
    }

    /// True when source addresses are actually spread (loopback IPv4 target, K > 1).
    pub fn spreads_sources(&self) -> bool {
        self.source_ips > 1 && self.addr.ip().is_loopback() && self.addr.is_ipv4()
    }

    /// The source address for connection `index`, when spreading.
    pub fn source_for(&self, index: usize) -> Option<IpAddr> {
        if self.spreads_sources() {
            Some(IpAddr::V4(source_ip(index, self.source_ips)))
        } else {
            None
        }
    }
}

/// Parses a comma-separated list of `ws://` URLs (`--url`, `--publish-url`): entries are
/// trimmed; an empty entry (error naming the flag) or one that is not a usable `ws://` URL
/// (error naming the URL, as for a single URL) is an [`BenchError::InvalidUrl`].
pub fn parse_url_list(flag: &str, list: &str) -> Result<Vec<String>, BenchError> {
    list.split(',')
        .map(str::trim)
        .map(|url| {
            if url.is_empty() {
                return Err(BenchError::InvalidUrl(format!("{flag} {list:?}: empty entry in the URL list")));
            }
            host_port(url)?;
            Ok(url.to_string())
        })
        .collect()
}

/// The URL without its `?query`.
pub fn url_name(url: &str) -> &str {
    url.split_once('?').map_or(url, |(name, _)| name)
}

/// Round-robin placement of connection `k` of a group over `n` targets: it goes to target
/// `k % n` and is that target's connection number `k / n` (its source-address slot, so
/// `--source-ips` spreads the connections of every target evenly).
pub fn round_robin(k: usize, n: usize) -> (usize, usize) {
    let n = n.max(1);
    (k % n, k / n)
}

/// Splits a `ws://host[:port]/path` URL into host and port (default 80).
pub fn host_port(url: &str) -> Result<(String, u16), BenchError> {
    let bad = |why: &str| BenchError::InvalidUrl(format!("{url}: {why}"));
    let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err(bad("wss:// is not supported by the bench, use ws://")),
        _ => return Err(bad("expected a ws:// URL")),
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), uri.port_u16().unwrap_or(80)))
}

/// Loopback source address number `index % k`: 127.0.0.1, 127.0.0.2, … 127.0.0.k.
pub fn source_ip(index: usize, k: usize) -> Ipv4Addr {
    let k = k.clamp(1, MAX_SOURCE_IPS);
    Ipv4Addr::new(127, 0, 0, (1 + index % k) as u8)
}

/// Small buffers for the many subscriber connections.
pub fn subscriber_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Publishers batch their writes.
pub fn publisher_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(32 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Opens the target's connection number `index` (TCP, optionally from a spread source
/// address, then the WebSocket handshake). Errors are returned as short text for the report.
pub async fn connect(target: &Target, index: usize, config: WebSocketConfig) -> Result<Ws, String> {
    let socket = if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .map_err(|e| short(&format!("socket: {e}")))?;
    if let Some(ip) = target.source_for(index) {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| short(&format!("bind {ip}: {e}")))?;
    }
    let stream = socket.connect(target.addr).await.map_err(|e| short(&format!("connect: {e}")))?;
    // Best effort: small frames should not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(config))
        .await
        .map_err(|e| short(&format!("handshake: {e}")))?;
    Ok(ws)
}

/// Truncates an error message for the report's failure table.
pub fn short(text: &str) -> String {
    text.chars().take(100).collect()
}

/// VmRSS of a process in KiB, from /proc/PID/status.
pub fn read_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss_kib(&text)
}

/// Parses the `VmRSS:  1234 kB` line of a /proc status file.
pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft limit on open files of this process, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&text)
}

/// Parses the `Max open files  <soft>  <hard>  files` line (None when unlimited).
pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cycle_over_k_loopback_addresses() {
        assert_eq!(source_ip(0, 4), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_ip(3, 4), Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(source_ip(4, 4), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_ip(253, 1000), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(source_ip(7, 0), Ipv4Addr::new(127, 0, 0, 1));
    }

    #[test]
    fn spreading_only_towards_loopback_ipv4() {
        let mk =
            |addr: &str, k| Target { url: String::new(), addr: addr.parse().expect("test address"), source_ips: k };
        assert_eq!(mk("127.0.0.1:8080", 3).source_for(5), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
        assert_eq!(mk("127.0.0.1:8080", 1).source_for(5), None);
        assert_eq!(mk("[::1]:8080", 3).source_for(5), None);
        assert_eq!(mk("192.0.2.1:8080", 3).source_for(5), None);
    }

    #[test]
    fn urls() {
        let hp = |u: &str| host_port(u).ok();
        assert_eq!(hp("ws://127.0.0.1:8080/ws"), Some(("127.0.0.1".into(), 8080)));
        assert_eq!(hp("ws://localhost/ws?token=x"), Some(("localhost".into(), 80)));
        assert_eq!(hp("ws://[::1]:9000/ws"), Some(("::1".into(), 9000)));
        assert!(hp("wss://127.0.0.1/ws").is_none());
        assert!(hp("http://127.0.0.1/ws").is_none());
        assert!(hp("not a url").is_none());
    }

    fn invalid_url(r: Result<Vec<String>, BenchError>) -> String {
        match r {
            Err(BenchError::InvalidUrl(why)) => why,
            other => panic!("expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn url_lists() {
        let one = parse_url_list("--url", "ws://127.0.0.1:8080/ws").expect("one URL");
        assert_eq!(one, ["ws://127.0.0.1:8080/ws"]);
        let two =
            parse_url_list("--url", "ws://127.0.0.1:18301/ws, ws://127.0.0.1:18302/ws?token=t").expect("two URLs");
        assert_eq!(two, ["ws://127.0.0.1:18301/ws", "ws://127.0.0.1:18302/ws?token=t"]);
        // Repeating a URL is allowed (it weights that node).
        assert_eq!(parse_url_list("--url", "ws://a/ws,ws://a/ws").expect("repeated").len(), 2);

        for list in ["", " ", "ws://a/ws,", ",ws://a/ws", "ws://a/ws,,ws://b/ws", "ws://a/ws, ,ws://b/ws"] {
            let why = invalid_url(parse_url_list("--url", list));
            assert!(why.contains("--url") && why.contains("empty entry"), "{list:?}: {why}");
        }
        let why = invalid_url(parse_url_list("--publish-url", "ws://a/ws,http://b/ws"));
        assert!(why.starts_with("http://b/ws:"), "{why}");
        assert!(why.contains("expected a ws:// URL"), "{why}");
        let why = invalid_url(parse_url_list("--url", "wss://a/ws"));
        assert!(why.contains("wss:// is not supported"), "{why}");
        invalid_url(parse_url_list("--url", "ws://a/ws,not a url"));
    }

    #[test]
    fn url_names_drop_the_query() {
        assert_eq!(url_name("ws://127.0.0.1:1/ws?token=secret"), "ws://127.0.0.1:1/ws");
        assert_eq!(url_name("ws://127.0.0.1:1/ws"), "ws://127.0.0.1:1/ws");
    }

    #[test]
    fn round_robin_over_targets() {
        let placed: Vec<(usize, usize)> = (0..7).map(|k| round_robin(k, 3)).collect();
        assert_eq!(placed, [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]);
        // One target: the index is unchanged (the single-URL behaviour).
        assert_eq!(round_robin(41, 1), (0, 41));
        assert_eq!(round_robin(5, 0), (0, 5));
        // With 2 targets and 2 source addresses, each target still uses both addresses.
        let sources = |t: usize| -> Vec<Ipv4Addr> {
            (0..8).map(|k| round_robin(k, 2)).filter(|&(tt, _)| tt == t).map(|(_, slot)| source_ip(slot, 2)).collect()
        };
        for t in 0..2 {
            let s = sources(t);
            assert!(s.contains(&Ipv4Addr::new(127, 0, 0, 1)) && s.contains(&Ipv4Addr::new(127, 0, 0, 2)), "{s:?}");
        }
    }

    fn lists(url: &str, publish_url: Option<&str>) -> Result<UrlLists, BenchError> {
        let args = BenchArgs { url: url.into(), publish_url: publish_url.map(Into::into), ..BenchArgs::default() };
        UrlLists::from_args(&args)
    }

    #[test]
    fn publish_urls_default_to_the_subscriber_urls() {
        let one = lists("ws://127.0.0.1:8080/ws", None).expect("valid");
        assert_eq!(one.publish, one.subscribe);
        assert!(!one.is_multi());

        let two = lists("ws://a:1/ws,ws://b:2/ws", None).expect("valid");
        assert_eq!(two.publish, ["ws://a:1/ws", "ws://b:2/ws"]);
        assert!(two.is_multi());

        let cross = lists("ws://b:2/ws", Some("ws://a:1/ws,ws://b:2/ws")).expect("valid");
        assert_eq!(cross.subscribe, ["ws://b:2/ws"]);
        assert_eq!(cross.distinct(), ["ws://b:2/ws", "ws://a:1/ws"]);
        assert!(cross.is_multi());
        // The same URL given twice (or for both roles) is still one node.
        assert!(!lists("ws://a:1/ws,ws://a:1/ws", Some("ws://a:1/ws")).expect("valid").is_multi());

        assert!(matches!(lists("ws://a:1/ws", Some("")), Err(BenchError::InvalidUrl(_))));
        assert!(matches!(lists("ws://a:1/ws", Some("ws://a:1/ws,http://b/")), Err(BenchError::InvalidUrl(_))));
        assert!(matches!(lists("ws://a:1/ws,", None), Err(BenchError::InvalidUrl(_))));
    }

    fn target(url: &str, addr: &str, source_ips: usize) -> Target {
        Target { url: url.into(), addr: addr.parse().expect("test address"), source_ips }
    }

    #[test]
    fn connections_are_placed_round_robin() {
        let (a, b, c) = (
            target("ws://127.0.0.1:18301/ws", "127.0.0.1:18301", 2),
            target("ws://127.0.0.1:18302/ws?token=t", "127.0.0.1:18302", 2),
            target("ws://127.0.0.1:18303/ws", "127.0.0.1:18303", 2),
        );
        let targets = Targets {
            subscribe: vec![a.clone(), b.clone()],
            publish: vec![c.clone(), a.clone(), b.clone()],
            resume: Vec::new(),
            name_failures: true,
        };
        let sub = |i| targets.for_subscriber(i).map(|(t, slot)| (t.url.as_str(), slot));
        assert_eq!(sub(0), Some((a.url.as_str(), 0)));
        assert_eq!(sub(1), Some((b.url.as_str(), 0)));
        assert_eq!(sub(2), Some((a.url.as_str(), 1)));
        assert_eq!(sub(5), Some((b.url.as_str(), 2)));
        // 5 subscribers over 2 targets: a target has at most 3, so publishers start at slot 3.
        let publ = |j| targets.for_publisher(j, 5).map(|(t, slot)| (t.url.as_str(), slot));
        assert_eq!(publ(0), Some((c.url.as_str(), 3)));
        assert_eq!(publ(1), Some((a.url.as_str(), 3)));
        assert_eq!(publ(2), Some((b.url.as_str(), 3)));
        assert_eq!(publ(3), Some((c.url.as_str(), 4)));
        // Source addresses alternate per target.
        let src = |i| targets.for_subscriber(i).and_then(|(t, slot)| t.source_for(slot));
        assert_eq!((src(0), src(2)), (Some(IpAddr::V4(source_ip(0, 2))), Some(IpAddr::V4(source_ip(1, 2)))));

        // Failures name the node (without the query, which may hold a token).
        assert_eq!(targets.failure(&b, "connect: refused"), "ws://127.0.0.1:18302/ws: connect: refused");

        let empty = Targets { subscribe: Vec::new(), publish: Vec::new(), resume: Vec::new(), name_failures: false };
        assert!(empty.for_subscriber(0).is_none() && empty.for_publisher(0, 3).is_none());
    }

    #[test]
    fn one_target_keeps_the_single_url_numbering() {
        let t = target("ws://127.0.0.1:8080/ws", "127.0.0.1:8080", 4);
        let targets = Targets::single(t.clone());
        assert_eq!(targets.for_subscriber(7).map(|(_, slot)| slot), Some(7));
        assert_eq!(targets.for_publisher(2, 100).map(|(_, slot)| slot), Some(102));
        assert_eq!(targets.failure(&t, "connect: refused"), "connect: refused");
    }

    #[tokio::test]
    async fn resolving_a_url_list() {
        let urls =
            lists("ws://127.0.0.1:18301/ws,ws://127.0.0.1:18302/ws", Some("ws://127.0.0.1:18301/ws")).expect("valid");
        let targets = Targets::resolve(&urls, 1).await.expect("IP literals resolve");
        let addrs: Vec<String> = targets.subscribe.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:18301", "127.0.0.1:18302"]);
        assert_eq!(targets.publish.len(), 1);
        assert_eq!(targets.publish.first().map(|t| t.addr.port()), Some(18301));
        assert!(targets.name_failures);
    }

    #[test]
    fn proc_parsing() {
        let status = "Name:\tarqonbus\nVmPeak:\t  9000 kB\nVmRSS:\t   52344 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss_kib(status), Some(52344));
        assert_eq!(parse_vmrss_kib("Name: x\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(20000));
        let unlimited = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
    }
}
