//! Orchestration of one bench run: connect, settle, hold, publish, drain, close, report.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use super::conn::{self, Ctx, PHASE_DRAIN, PHASE_RUN, PHASE_SETUP, PHASE_STOP};
use super::net::{self, Targets, UrlLists, MAX_SOURCE_IPS};
use super::publish;
use super::stats::{now_ns, Stats};
use super::storm;
use super::{BenchArgs, BenchError, BenchReport, StormReport};

/// Wait after connecting before reading the server's RSS.
const SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for in-flight deliveries after publishing stopped.
const DRAIN: Duration = Duration::from_secs(5);
/// A drain ends early when no event arrived for this long.
const STALL: Duration = Duration::from_secs(1);
/// Longest wait for all connections to close.
const CLOSE_ALL: Duration = Duration::from_secs(10);
/// Largest payload padding.
const MAX_PAYLOAD: usize = 1_000_000;

/// Checks the options before anything is opened.
pub fn validate(args: &BenchArgs) -> Result<(), BenchError> {
    let bad = |m: String| Err(BenchError::InvalidArgs(m));
    let room_ok = (1..=64).contains(&args.room.len())
        && !args.room.starts_with('_')
        && args.room.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !room_ok {
        return bad(format!("--room {:?}: 1-64 chars of A-Z a-z 0-9 _ - ., not starting with _", args.room));
    }
    if args.channels == 0 || args.channels > 1_000_000 {
        return bad("--channels must be 1..=1000000".into());
    }
    if args.subscribers == 0 && args.publishers == 0 {
        return bad("nothing to do: --subscribers and --publishers are both 0".into());
    }
    if args.publishers > 0 && !(args.rate.is_finite() && args.rate > 0.0) {
        return bad("--rate must be a positive number of events/s".into());
    }
    if args.connect_concurrency == 0 {
        return bad("--connect-concurrency must be at least 1".into());
    }
    if args.source_ips == 0 || args.source_ips > MAX_SOURCE_IPS {
        return bad(format!("--source-ips must be 1..={MAX_SOURCE_IPS}"));
    }
    if args.payload_bytes > MAX_PAYLOAD {
        return bad(format!("--payload-bytes must be at most {MAX_PAYLOAD}"));
    }
    Ok(())
}

/// See [`super::run`].
pub async fn run(args: BenchArgs) -> Result<BenchReport, BenchError> {
    validate(&args)?;
    let urls = UrlLists::from_args(&args)?;
    storm::validate(&args, &urls)?;
    let targets = Targets::resolve(&urls, args.source_ips).await?;
    warn_targets(&args, &urls, &targets);
    let wanted = (args.subscribers + args.publishers) as u64;
    if let Some(limit) = net::open_files_limit().filter(|&l| l < wanted + 32) {
        eprintln!("bench: warning: open-files limit {limit} is below {wanted} connections; raise it with `ulimit -n`");
    }
    let rss_before = match args.server_pid {
        Some(pid) => Some(net::read_rss_kib(pid).ok_or(BenchError::ServerPid(pid))?),
        None => None,
    };

    let ctx = Arc::new(Ctx::new(&args, targets));
    let stats = &ctx.stats;
    let (phase_tx, phase_rx) = watch::channel(PHASE_SETUP);
    let mut tasks = JoinSet::new();
    let mut clock = Clock::new(ctx.clone(), &args);

    for i in 0..args.subscribers {
        tasks.spawn(conn::subscriber(ctx.clone(), i, phase_rx.clone()));
    }
    let subs = args.subscribers as u64;
    clock.until("connect", None, |s| s.subs_settled.load(Relaxed) >= subs).await;
    if !clock.interrupted {
        for j in 0..args.publishers {
            tasks.spawn(publish::publisher(ctx.clone(), j, phase_rx.clone()));
        }
    }
    let pubs = args.publishers as u64;
    clock.until("connect", None, |s| s.pubs_settled.load(Relaxed) >= pubs).await;

    let connections = stats.subs_connected.load(Relaxed) + stats.pubs_connected.load(Relaxed);
    if connections == 0 {
        phase_tx.send_replace(PHASE_STOP);
        tasks.shutdown().await;
        let reasons = stats.failure_reasons();
        let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{n}× {r}")).collect();
        let mut reasons = reasons.join("; ");
        if stats.subscribe_failures.load(Relaxed) > 0 {
            reasons.push_str("; subscribe refused (see errors)");
        }
        return Err(BenchError::NoConnections { url: urls.distinct().join(", "), reasons });
    }
    warn_rate_limit(stats, ctx.rate_per_publisher, args.publishers);

    let mut rss_after = None;
    if let Some(pid) = args.server_pid {
        clock.sleep("settle", SETTLE).await;
        rss_after = net::read_rss_kib(pid);
    }
    if args.hold_secs > 0 {
        clock.sleep("hold", Duration::from_secs(args.hold_secs)).await;
    }

    let mut window = Duration::ZERO;
    let mut storm_report = None;
    if ctx.storm && !clock.interrupted {
        let (w, report) = storm_phases(&args, &urls, &ctx, &phase_tx, &mut clock).await?;
        window = w;
        storm_report = Some(report);
    } else if stats.pubs_connected.load(Relaxed) > 0 && !clock.interrupted {
        phase_tx.send_replace(PHASE_RUN);
        clock.sleep("warmup", Duration::from_secs(args.warmup_secs)).await;
        stats.set_window_start(now_ns());
        let start = Instant::now();
        clock.sleep("measure", Duration::from_secs(args.duration_secs)).await;
        stats.set_window_end(now_ns());
        window = start.elapsed();
        phase_tx.send_replace(PHASE_DRAIN);
        clock.drain().await;
    }
    phase_tx.send_replace(PHASE_STOP);
    clock.print("close");
    let _ = timeout(CLOSE_ALL, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.shutdown().await;

    let mut report =
        super::report::build(&args, &urls, stats, window, clock.interrupted_ever, (rss_before, rss_after), connections);
    report.storm = storm_report;
    if report.errors_by_code.contains_key("RATE_LIMITED") {
        eprintln!("bench: the server rate-limited publishes; start it with ARQONBUS_LIMITS__PUBLISH_RATE_PER_S=1000000 ARQONBUS_LIMITS__PUBLISH_BURST=1000000");
    }
    Ok(report)
}

/// The reconnect storm's phases: publish through the warm-up, kill the subscribers' node, wait
/// until every subscriber is live again on a survivor (at most `--storm-timeout-secs`), go on
/// publishing for `--duration-secs`, drain, and learn each channel's final offset. Returns the
/// measurement window (kill → end of publishing) and the storm's report.
async fn storm_phases(
    args: &BenchArgs,
    urls: &UrlLists,
    ctx: &Ctx,
    phase_tx: &watch::Sender<u8>,
    clock: &mut Clock,
) -> Result<(Duration, StormReport), BenchError> {
    let stats = &ctx.stats;
    let published = || stats.published.load(Relaxed);
    let mut redis = storm::RedisReadings::new(args.storm.redis_url.as_deref())?;
    redis.take(published()).await;
    phase_tx.send_replace(PHASE_RUN);
    clock.sleep("warmup", Duration::from_secs(args.warmup_secs)).await;
    redis.take(published()).await;
    let subscribers = stats.subs_connected.load(Relaxed);
    stats.set_window_start(now_ns());
    let start = Instant::now();
    stats.storm.kill_ns.store(now_ns(), Relaxed);
    let killed = match storm::kill(args).await {
        Ok(k) => k,
        Err(e) => {
            phase_tx.send_replace(PHASE_STOP);
            return Err(e);
        }
    };
    eprintln!("bench: {killed}: {subscribers} subscribers reconnect to {}", urls.resume.join(", "));
    let at_kill = published();
    let storm_timeout = Some(Duration::from_secs(args.storm.storm_timeout_secs));
    clock.until("storm", storm_timeout, |s| s.storm.live.load(Relaxed) >= subscribers).await;
    let published_during = published() - at_kill;
    redis.take(published()).await;
    clock.sleep("measure", Duration::from_secs(args.duration_secs)).await;
    stats.set_window_end(now_ns());
    let window = start.elapsed();
    phase_tx.send_replace(PHASE_DRAIN);
    clock.interrupted = false;
    clock.drain().await;
    if let Err(e) = storm::final_offsets(ctx).await {
        eprintln!("bench: cannot read the channels' final offsets ({e}): no tail check");
    }
    let report = storm::report(killed, urls.resume.clone(), subscribers, &stats.storm, published_during, &redis);
    Ok((window, report))
}

/// Warns about `--source-ips` that cannot apply and about URLs no connection will use.
fn warn_targets(args: &BenchArgs, urls: &UrlLists, targets: &Targets) {
    if args.source_ips > 1 {
        let mut warned: Vec<&str> = Vec::new();
        for t in targets.subscribe.iter().chain(&targets.publish) {
            if t.spreads_sources() || warned.contains(&t.url.as_str()) {
                continue;
            }
            warned.push(&t.url);
            if urls.is_multi() {
                eprintln!("bench: --source-ips ignored for {}: {} is not a loopback IPv4 address", t.name(), t.addr);
            } else {
                eprintln!("bench: --source-ips ignored: {} is not a loopback IPv4 address", t.addr);
            }
        }
    }
    for line in unused_urls(args, urls) {
        eprintln!("bench: warning: {line}");
    }
}

/// URLs that get no connection because there are fewer subscribers (publishers) than URLs.
pub fn unused_urls(args: &BenchArgs, urls: &UrlLists) -> Vec<String> {
    let mut lines = Vec::new();
    let lists = [
        ("subscriber", "--url", args.subscribers, &urls.subscribe),
        ("publisher", "--publish-url", args.publishers, &urls.publish),
    ];
    for (what, flag, count, list) in lists {
        if count > 0 && count < list.len() {
            let (used, rest) = list.split_at(count);
            let mut idle: Vec<&str> = Vec::new();
            for url in rest.iter().filter(|u| !used.contains(u)).map(|u| net::url_name(u)) {
                if !idle.contains(&url) {
                    idle.push(url);
                }
            }
            if idle.is_empty() {
                continue;
            }
            lines.push(format!("{count} {what}(s) for {} {flag} URLs: no {what} on {}", list.len(), idle.join(", ")));
        }
    }
    lines
}

fn warn_rate_limit(stats: &Stats, rate_per_publisher: f64, publishers: usize) {
    let limit = stats.server_rate_limit.load(Relaxed);
    if publishers > 0 && limit > 0 && rate_per_publisher > limit as f64 {
        eprintln!(
            "bench: warning: the server allows {limit} publishes/s per connection but each publisher sends {rate_per_publisher:.0}/s; \
             start the server with ARQONBUS_LIMITS__PUBLISH_RATE_PER_S=1000000 ARQONBUS_LIMITS__PUBLISH_BURST=1000000"
        );
    }
}

/// Waits in phases, printing a progress line every second and watching for Ctrl-C.
struct Clock {
    ctx: Arc<Ctx>,
    started: Instant,
    next_print: Instant,
    last_print: Instant,
    last_published: u64,
    last_delivered: u64,
    subscribers: usize,
    publishers: usize,
    ctrl_c: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>,
    /// Ctrl-C was pressed and the current wait should end.
    interrupted: bool,
    /// Ctrl-C was pressed at some point.
    interrupted_ever: bool,
}

impl Clock {
    fn new(ctx: Arc<Ctx>, args: &BenchArgs) -> Self {
        let now = Instant::now();
        Self {
            ctx,
            started: now,
            next_print: now + Duration::from_secs(1),
            last_print: now,
            last_published: 0,
            last_delivered: 0,
            subscribers: args.subscribers,
            publishers: args.publishers,
            ctrl_c: Box::pin(tokio::signal::ctrl_c()),
            interrupted: false,
            interrupted_ever: false,
        }
    }

    async fn sleep(&mut self, phase: &str, d: Duration) {
        self.until(phase, Some(d), |_| false).await;
    }

    /// Returns when `done` holds, after `limit`, or on Ctrl-C (sets `interrupted`).
    async fn until(&mut self, phase: &str, limit: Option<Duration>, done: impl Fn(&Stats) -> bool) {
        let deadline = limit.map(|d| Instant::now() + d);
        loop {
            if self.interrupted || done(&self.ctx.stats) {
                return;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            let mut wake = (now + Duration::from_millis(50)).min(self.next_print);
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            tokio::select! {
                res = &mut self.ctrl_c, if !self.interrupted_ever => {
                    if res.is_ok() {
                        eprintln!("bench: interrupted, stopping");
                        self.interrupted = true;
                        self.interrupted_ever = true;
                    } else {
                        self.ctrl_c = Box::pin(std::future::pending());
                    }
                }
                _ = sleep_until(wake) => {}
            }
            if Instant::now() >= self.next_print {
                self.print(phase);
                self.next_print += Duration::from_secs(1);
            }
        }
    }

    /// After publishing: waits until everything arrived, deliveries stalled for [`STALL`], or
    /// [`DRAIN`] passed. An interrupted run still drains briefly and reports.
    async fn drain(&mut self) {
        self.interrupted = false;
        let progress = Cell::new((u64::MAX, Instant::now()));
        self.until("drain", Some(DRAIN), |s| {
            let delivered = s.delivered_total.load(Relaxed);
            let (last, since) = progress.get();
            if delivered != last {
                progress.set((delivered, Instant::now()));
            }
            delivered >= s.expected_deliveries() || (delivered == last && since.elapsed() >= STALL)
        })
        .await;
    }

    /// One progress line to stderr.
    fn print(&mut self, phase: &str) {
        let s = &self.ctx.stats;
        let now = Instant::now();
        let secs = now.duration_since(self.last_print).as_secs_f64().max(1e-3);
        let published = s.published.load(Relaxed);
        let delivered = s.delivered_total.load(Relaxed);
        eprintln!(
            "[{:>7.1}s] {phase:<8} open {} subs {}/{} pubs {}/{} pub/s {:.0} deliv/s {:.0} errors {} gaps {} dups {} ooo {} connect-fail {}",
            now.duration_since(self.started).as_secs_f64(),
            s.open.load(Relaxed),
            s.subs_connected.load(Relaxed),
            self.subscribers,
            s.pubs_connected.load(Relaxed),
            self.publishers,
            (published - self.last_published) as f64 / secs,
            (delivered - self.last_delivered) as f64 / secs,
            s.errors_total.load(Relaxed),
            s.gaps.load(Relaxed),
            s.duplicates.load(Relaxed),
            s.out_of_order.load(Relaxed),
            s.connect_failures.load(Relaxed),
        );
        if self.ctx.storm {
            let storm = &s.storm;
            eprintln!(
                "           storm: resubscribed {} live {} reconnect attempts {}",
                storm.resubscribed.load(Relaxed),
                storm.live.load(Relaxed),
                storm.attempts.load(Relaxed)
            );
        }
        self.last_print = now;
        self.last_published = published;
        self.last_delivered = delivered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unused(url: &str, publish_url: Option<&str>, subscribers: usize, publishers: usize) -> Vec<String> {
        let args = BenchArgs {
            url: url.into(),
            publish_url: publish_url.map(Into::into),
            subscribers,
            publishers,
            ..BenchArgs::default()
        };
        let urls = UrlLists::from_args(&args).expect("valid URLs");
        unused_urls(&args, &urls)
    }

    #[test]
    fn urls_without_connections_are_named() {
        assert!(unused("ws://a/ws", None, 100, 2).is_empty());
        assert!(unused("ws://a/ws,ws://b/ws", None, 100, 2).is_empty());
        assert!(unused("ws://a/ws,ws://b/ws", None, 0, 0).is_empty());
        assert_eq!(
            unused("ws://a/ws,ws://b/ws,ws://c/ws?token=t", None, 100, 1),
            ["1 publisher(s) for 3 --publish-url URLs: no publisher on ws://b/ws, ws://c/ws"]
        );
        assert_eq!(
            unused("ws://a/ws,ws://b/ws", None, 1, 0),
            ["1 subscriber(s) for 2 --url URLs: no subscriber on ws://b/ws"]
        );
        // A repeated URL that is used earlier in the list is not reported.
        assert!(unused("ws://a/ws,ws://b/ws,ws://a/ws", None, 2, 0).is_empty());
    }
}
