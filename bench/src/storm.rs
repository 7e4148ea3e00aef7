//! The reconnect storm (`--kill-pid` / `--kill-cmd`): the node every subscriber is on is
//! killed while publishing goes on through another node; every subscriber reconnects to a
//! survivor (`--resume-url`) and subscribes again with `since` (its last offset and the
//! channel's epoch). This module holds the storm's counters, the kill, the Redis call
//! accounting and the report; the subscribers' reconnect loop is in `conn`.
//!
//! A subscriber is *resubscribed* when the survivor answers its `subscribe`, and *live again*
//! once it also holds every event up to the reply's `offset` (the replay is done). Loss and
//! duplicates are checked as in every run, per subscriber on its channel's offsets, plus a tail
//! check at the end: every subscriber's last offset must be its channel's final offset
//! (`channel_info` on a survivor once publishing stopped).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use futures_util::SinkExt;
use hdrhistogram::Histogram;
use tokio::process::Command;
use tokio::time::{timeout, Duration};
use tokio_tungstenite::tungstenite::Message;

use super::conn::{close, next_text, welcome, Ctx};
use super::net::{self, UrlLists};
use super::redis_info::{self, RedisAddr};
use super::scan;
use super::stats::{now_ns, summarize};
use super::{BenchArgs, BenchError, StormReport};

/// Longest wait for the channels' final offsets.
const FINAL_OFFSETS_TIMEOUT: Duration = Duration::from_secs(15);

/// Checks the storm's options: subscribers must have somewhere else to go, and publishers
/// must not be on the node that is killed.
pub fn validate(args: &BenchArgs, urls: &UrlLists) -> Result<(), BenchError> {
    if !args.storm.enabled() {
        return Ok(());
    }
    let bad = |m: &str| Err(BenchError::InvalidArgs(m.to_string()));
    if args.subscribers == 0 {
        return bad("a reconnect storm needs --subscribers");
    }
    if urls.resume.iter().any(|u| urls.subscribe.contains(u)) {
        return bad("the storm kills the node of --url: give the survivors with --publish-url or --resume-url");
    }
    if args.publishers > 0 && urls.publish.iter().any(|u| urls.subscribe.contains(u)) {
        return bad("the storm kills the node of --url: publish through another node (--publish-url)");
    }
    Ok(())
}

/// Asks a survivor for each channel's latest offset (`channel_info`) and stores them in
/// `ctx.final_offsets` for the subscribers' tail check.
pub async fn final_offsets(ctx: &Ctx) -> Result<(), String> {
    let (target, _) = ctx.targets.for_resume(0).ok_or("no survivor URL")?;
    timeout(FINAL_OFFSETS_TIMEOUT, async {
        let mut ws = net::connect(target, 0, net::publisher_config()).await?;
        welcome(&ctx.stats, &mut ws).await?;
        for (i, channel) in ctx.channels.iter().enumerate() {
            let cmd = format!(
                r#"{{"type":"command","id":"f{i}","command":"channel_info","args":{{"room":"{}","channel":"{channel}"}}}}"#,
                ctx.room
            );
            ws.feed(Message::text(cmd)).await.map_err(|e| e.to_string())?;
        }
        ws.flush().await.map_err(|e| e.to_string())?;
        let mut answered = 0;
        while answered < ctx.channels.len() {
            let text = next_text(&mut ws).await?;
            let f = scan::parse_frame(&text);
            let Some(i) = f.request_id.and_then(|id| id.strip_prefix('f')).and_then(|i| i.parse::<usize>().ok()) else {
                continue;
            };
            answered += 1;
            if f.kind != "reply" {
                return Err(format!("channel_info: {}", f.error_code().unwrap_or("error")));
            }
            let offset = f.result_offset().flatten().unwrap_or(0);
            if let Some(slot) = ctx.final_offsets.get(i) {
                slot.store(offset, Relaxed);
            }
        }
        close(&mut ws).await;
        Ok(())
    })
    .await
    .map_err(|_| "timed out".to_string())?
}

/// Longest time recorded exactly in the storm histograms (ms).
const MAX_MS: u64 = 3_600_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MS, 3).expect("constant histogram bounds are valid")
}

/// The storm's counters, shared by all subscribers.
#[derive(Debug)]
pub struct StormStats {
    /// When the node was killed (unix ns; `u64::MAX` before).
    pub kill_ns: AtomicU64,
    /// Subscribers resubscribed on a survivor (each counted once).
    pub resubscribed: AtomicU64,
    /// Subscribers live again (each counted once).
    pub live: AtomicU64,
    /// Connection attempts to the survivors.
    pub attempts: AtomicU64,
    /// Events the survivors replayed.
    pub replayed: AtomicU64,
    /// Replies with `recovered: false`.
    pub not_recovered: AtomicU64,
    last_resubscribed_ns: AtomicU64,
    last_live_ns: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    resubscribe_ms: Mutex<Histogram<u64>>,
    live_ms: Mutex<Histogram<u64>>,
}

impl Default for StormStats {
    fn default() -> Self {
        Self {
            kill_ns: AtomicU64::new(u64::MAX),
            resubscribed: AtomicU64::new(0),
            live: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            not_recovered: AtomicU64::new(0),
            last_resubscribed_ns: AtomicU64::new(0),
            last_live_ns: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            resubscribe_ms: Mutex::new(histogram()),
            live_ms: Mutex::new(histogram()),
        }
    }
}

impl StormStats {
    fn since_kill_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.kill_ns.load(Relaxed)) / 1_000_000
    }

    /// A subscriber's first resume reply on a survivor.
    pub fn resubscribed(&self, replayed: u64, recovered: Option<bool>) {
        let now = now_ns();
        self.resubscribed.fetch_add(1, Relaxed);
        self.replayed.fetch_add(replayed, Relaxed);
        if recovered == Some(false) {
            self.not_recovered.fetch_add(1, Relaxed);
        }
        self.last_resubscribed_ns.fetch_max(now, Relaxed);
        lock(&self.resubscribe_ms).saturating_record(self.since_kill_ms(now).max(1));
    }

    /// A subscriber holds every event up to its resume reply's offset.
    pub fn live(&self) {
        let now = now_ns();
        self.live.fetch_add(1, Relaxed);
        self.last_live_ns.fetch_max(now, Relaxed);
        lock(&self.live_ms).saturating_record(self.since_kill_ms(now).max(1));
    }

    /// A failed reconnect attempt, by reason.
    pub fn failed(&self, reason: &str) {
        *lock(&self.failures).entry(reason.to_string()).or_insert(0) += 1;
    }

    fn last_ms(&self, last: &AtomicU64) -> Option<u64> {
        let last = last.load(Relaxed);
        (last > 0).then(|| self.since_kill_ms(last))
    }
}

/// Kills the subscribers' node as `--kill-pid` or `--kill-cmd` says; returns what it did.
pub async fn kill(args: &BenchArgs) -> Result<String, BenchError> {
    let (what, mut cmd) = match (&args.storm.kill_pid, &args.storm.kill_cmd) {
        (Some(pid), _) => {
            let mut c = Command::new("kill");
            c.args(["-KILL", &pid.to_string()]);
            (format!("kill -KILL {pid}"), c)
        }
        (None, Some(line)) => {
            let mut c = Command::new("sh");
            c.args(["-c", line]);
            (line.clone(), c)
        }
        (None, None) => return Err(BenchError::Kill("neither --kill-pid nor --kill-cmd".into())),
    };
    let out = cmd.output().await.map_err(|e| BenchError::Kill(format!("{what}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(BenchError::Kill(format!("{what}: {} {}", out.status, err.trim())));
    }
    Ok(what)
}

/// `INFO commandstats` readings: before publishing, at the kill, at full resume.
#[derive(Debug, Default)]
pub struct RedisReadings {
    addr: Option<RedisAddr>,
    readings: Vec<(BTreeMap<String, u64>, u64)>,
}

impl RedisReadings {
    /// Readings of `--redis-url` (none without it).
    pub fn new(url: Option<&str>) -> Result<Self, BenchError> {
        let addr = url.map(redis_info::parse_url).transpose().map_err(BenchError::InvalidArgs)?;
        Ok(Self { addr, readings: Vec::new() })
    }

    /// Takes one reading, with the number of events published so far.
    pub async fn take(&mut self, published: u64) {
        let Some(addr) = &self.addr else { return };
        match redis_info::command_calls(addr).await {
            Ok(calls) => self.readings.push((calls, published)),
            Err(e) => {
                eprintln!("bench: cannot read INFO commandstats: {e}; no Redis call counts");
                self.addr = None;
            }
        }
    }
}

/// The storm's report from its counters and readings.
pub fn report(
    killed: String,
    resume_urls: Vec<String>,
    subscribers: u64,
    s: &StormStats,
    published_during: u64,
    redis: &RedisReadings,
) -> StormReport {
    let resubscribed = s.resubscribed.load(Relaxed);
    let mut report = StormReport {
        killed,
        resume_urls,
        subscribers,
        resubscribed,
        live: s.live.load(Relaxed),
        all_resubscribed_ms: s.last_ms(&s.last_resubscribed_ns),
        all_live_ms: s.last_ms(&s.last_live_ns),
        resubscribe_ms: summarize(&lock(&s.resubscribe_ms)),
        live_ms: summarize(&lock(&s.live_ms)),
        reconnect_attempts: s.attempts.load(Relaxed),
        reconnect_failures: lock(&s.failures).clone(),
        replayed: s.replayed.load(Relaxed),
        not_recovered: s.not_recovered.load(Relaxed),
        published_during,
        redis_calls_per_resubscribe: None,
        redis_calls_per_resubscribe_total: None,
        redis_calls: None,
        redis_baseline_publishes: None,
    };
    if let [(r0, p0), (r1, p1), (r2, p2)] = redis.readings.as_slice() {
        let baseline = redis_info::delta(r0, r1);
        let storm = redis_info::delta(r1, r2);
        let per = redis_info::per_resubscribe(&baseline, p1 - p0, &storm, p2 - p1, resubscribed);
        report.redis_calls_per_resubscribe_total = Some((per.values().sum::<f64>() * 100.0).round() / 100.0);
        report.redis_calls_per_resubscribe = Some(per);
        report.redis_calls = Some((baseline, storm));
        report.redis_baseline_publishes = Some(p1 - p0);
    }
    report
}
