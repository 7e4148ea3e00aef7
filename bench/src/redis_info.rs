//! `INFO commandstats` of a Redis server, over a plain TCP connection (RESP2, optional AUTH):
//! how many times each command ran. The reconnect storm reads it around the kill.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Time allowed for one reading (connect, AUTH, INFO).
const DEADLINE: Duration = Duration::from_secs(5);

/// Where and how to connect, from `redis://[user:password@]host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddr {
    /// `host:port`.
    pub host_port: String,
    /// `AUTH` arguments: `[password]` or `[user, password]`.
    pub auth: Vec<String>,
}

/// Parses a `redis://` URL (TLS, `rediss://`, is not supported here).
pub fn parse_url(url: &str) -> Result<RedisAddr, String> {
    let rest = url.strip_prefix("redis://").ok_or_else(|| format!("{url}: expected a redis:// URL"))?;
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host.contains(':'),
    };
    let host_port = if has_port { host.to_string() } else { format!("{host}:6379") };
    let auth = match auth {
        None => Vec::new(),
        Some(a) => match a.split_once(':') {
            Some(("", pass)) => vec![pass.to_string()],
            Some((user, pass)) => vec![user.to_string(), pass.to_string()],
            None => vec![a.to_string()],
        },
    };
    Ok(RedisAddr { host_port, auth })
}

/// Calls per command (`cmdstat_<name>` lines), lower-case names, e.g. `evalsha`, `subscribe`.
pub async fn command_calls(addr: &RedisAddr) -> Result<BTreeMap<String, u64>, String> {
    timeout(DEADLINE, read_command_calls(addr)).await.map_err(|_| "INFO commandstats timed out".to_string())?
}

async fn read_command_calls(addr: &RedisAddr) -> Result<BTreeMap<String, u64>, String> {
    let stream = TcpStream::connect(&addr.host_port).await.map_err(|e| format!("connect {}: {e}", addr.host_port))?;
    let mut conn = BufReader::new(stream);
    if !addr.auth.is_empty() {
        let mut args = vec!["AUTH"];
        args.extend(addr.auth.iter().map(String::as_str));
        conn.get_mut().write_all(&command(&args)).await.map_err(|e| e.to_string())?;
        let line = read_line(&mut conn).await?;
        if !line.starts_with('+') {
            return Err(format!("AUTH: {line}"));
        }
    }
    conn.get_mut().write_all(&command(&["INFO", "commandstats"])).await.map_err(|e| e.to_string())?;
    let head = read_line(&mut conn).await?;
    let len: usize = head
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("INFO commandstats: unexpected answer {head:?}"))?;
    let mut body = vec![0; len + 2];
    conn.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    Ok(parse_commandstats(&String::from_utf8_lossy(&body)))
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    conn.read_line(&mut line).await.map_err(|e| e.to_string())?;
    Ok(line.trim_end().to_string())
}

/// A RESP array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out.into_bytes()
}

/// `cmdstat_get:calls=3,usec=10,…` lines → `{"get": 3}`.
pub fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((name, stats)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls=")).and_then(|n| n.parse().ok());
        if let Some(calls) = calls {
            out.insert(name.to_ascii_lowercase(), calls);
        }
    }
    out
}

/// `after − before` per command (commands that did not run are left out).
pub fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, &a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Calls per resubscribe by command: the storm's calls minus what `storm_publishes` publishes
/// cost at the baseline's rate (`baseline` calls for `baseline_publishes` publishes), divided
/// by `resubscribes`; commands that round to nothing are left out.
pub fn per_resubscribe(
    baseline: &BTreeMap<String, u64>,
    baseline_publishes: u64,
    storm: &BTreeMap<String, u64>,
    storm_publishes: u64,
    resubscribes: u64,
) -> BTreeMap<String, f64> {
    if resubscribes == 0 {
        return BTreeMap::new();
    }
    let scale = if baseline_publishes > 0 { storm_publishes as f64 / baseline_publishes as f64 } else { 0.0 };
    storm
        .iter()
        .filter_map(|(k, &calls)| {
            let background = baseline.get(k).copied().unwrap_or(0) as f64 * scale;
            let per = ((calls as f64 - background).max(0.0) / resubscribes as f64 * 100.0).round() / 100.0;
            (per > 0.0).then(|| (k.clone(), per))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let a = parse_url("redis://127.0.0.1:6380").expect("valid");
        assert_eq!((a.host_port.as_str(), a.auth.len()), ("127.0.0.1:6380", 0));
        let a = parse_url("redis://u:p%@h/0").expect("valid");
        assert_eq!((a.host_port.as_str(), a.auth.clone()), ("h:6379", vec!["u".to_string(), "p%".to_string()]));
        assert_eq!(parse_url("redis://:secret@h:1").expect("valid").auth, ["secret"]);
        assert!(parse_url("rediss://h:1").is_err());
        assert!(parse_url("redis://").is_err());
    }

    #[test]
    fn commandstats_lines() {
        let text = "# Commandstats\r\ncmdstat_evalsha:calls=120,usec=2400,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\ncmdstat_XRANGE:calls=7,usec=70\r\n\r\n";
        let stats = parse_commandstats(text);
        assert_eq!(stats.get("evalsha"), Some(&120));
        assert_eq!(stats.get("xrange"), Some(&7));
        assert_eq!(stats.len(), 2);
        assert_eq!(command(&["INFO", "commandstats"]), b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n");
    }

    #[test]
    fn calls_per_resubscribe_subtract_the_publishing() {
        let m = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
        let before = m(&[("evalsha", 10), ("get", 1)]);
        let after = m(&[("evalsha", 110), ("get", 1), ("xrange", 4)]);
        let baseline = delta(&before, &after);
        assert_eq!(baseline, m(&[("evalsha", 100), ("xrange", 4)]));
        // 100 publishes cost 100 EVALSHA; the storm had 50 publishes and 1,000 resubscribes.
        let storm = m(&[("evalsha", 2050), ("xrange", 1002)]);
        let per = per_resubscribe(&baseline, 100, &storm, 50, 1000);
        assert_eq!(per.get("evalsha"), Some(&2.0));
        assert_eq!(per.get("xrange"), Some(&1.0));
        assert!(per_resubscribe(&baseline, 100, &storm, 50, 0).is_empty());
    }
}
