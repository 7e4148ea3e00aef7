//! Target resolution, source-address spreading, connecting, and /proc readings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use super::BenchError;

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

/// Opens connection number `index` (TCP, optionally from a spread source address, then
/// the WebSocket handshake). Errors are returned as short text for the report.
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
