//! One standalone `redis-server` on a free port in its own temp dir.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, poll, Proc};

/// How long a starting server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Rules of the ACL user made by [`RedisOpts::acl_user`] unless `acl_rules` says otherwise:
/// keys and Pub/Sub channels under `arqonbus:` only, every command except the dangerous ones,
/// plus `INFO` and `ROLE` (dangerous in Redis' categories, but clients use them to find a master).
pub const DEFAULT_ACL_RULES: &str = "~arqonbus:* &arqonbus:* +@all -@dangerous +info +role";

/// How to start a [`Redis`].
#[derive(Debug, Clone, Default)]
pub struct RedisOpts {
    /// Append-only file on (`appendfsync everysec`): data survives `kill()` + `restart()`.
    pub aof: bool,
    /// Creates this user (name, password) with `acl_rules` and gives the `default` user a
    /// random password, so connections without the user's credentials are refused.
    pub acl_user: Option<(String, String)>,
    /// ACL rules of `acl_user`; `None`: [`DEFAULT_ACL_RULES`].
    pub acl_rules: Option<String>,
    /// `cluster-enabled yes`, with its own cluster bus port (see [`super::RedisCluster`]).
    pub cluster: bool,
    /// More `redis-server` arguments, e.g. `["--maxmemory", "10mb"]`.
    pub args: Vec<String>,
}

/// A `redis-server` process; killed when dropped.
///
/// Methods block (they run `redis-cli` and poll); in an async test that needs other tasks to
/// progress meanwhile, use a multi-thread runtime or `spawn_blocking`.
pub struct Redis {
    // Declared before `dir`: the process dies before its directory is removed.
    proc: Option<Proc>,
    port: u16,
    bus_port: Option<u16>,
    opts: RedisOpts,
    admin_pass: Option<String>,
    dir: TempDir,
}

impl Redis {
    /// A plain server: no persistence, no ACL.
    pub fn start() -> Redis {
        Self::start_with(RedisOpts::default())
    }

    /// A server with `opts`; panics with the log tail if it does not answer PING in time.
    pub fn start_with(opts: RedisOpts) -> Redis {
        let dir = tempfile::Builder::new().prefix("arqonbus-redis-").tempdir().expect("temp dir");
        let admin_pass = opts.acl_user.as_ref().map(|_| uuid::Uuid::new_v4().simple().to_string());
        let mut redis = Redis { proc: None, port: 0, bus_port: None, opts, admin_pass, dir };
        // A free port can be taken by another process before redis binds it: retry elsewhere.
        for attempt in 1..=3 {
            redis.port = free_port();
            redis.bus_port = redis.opts.cluster.then(free_port);
            match redis.launch() {
                Ok(()) => return redis,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {}
                Err(log) => panic!("redis-server on port {} did not answer PING:\n{log}", redis.port),
            }
        }
        unreachable!()
    }

    /// Spawns the server on `self.port` and waits for PING; `Err` carries the log tail.
    fn launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(self.dir.path());
        let port = self.port.to_string();
        let dir = self.dir.path().to_str().expect("temp dir path is UTF-8");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--save", ""]);
        cmd.args(["--appendonly", if self.opts.aof { "yes" } else { "no" }]);
        if let (Some((user, pass)), Some(admin)) = (&self.opts.acl_user, &self.admin_pass) {
            cmd.args(["--user", "default", "on", "resetpass", &format!(">{admin}"), "~*", "&*", "+@all"]);
            let rules = self.opts.acl_rules.as_deref().unwrap_or(DEFAULT_ACL_RULES);
            cmd.args(["--user", user, "on", &format!(">{pass}")]).args(rules.split_whitespace());
        }
        if let Some(bus) = self.bus_port {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
            cmd.args(["--cluster-port", &bus.to_string(), "--cluster-node-timeout", "5000"]);
        }
        cmd.args(&self.opts.args);
        let log = self.dir.path().join("redis.log");
        let mut proc = Proc::spawn(&format!("redis-server :{}", self.port), cmd, &log);
        let auth = self.admin_auth();
        let up = poll(START_TIMEOUT, || {
            if proc.exited().is_some() {
                return Some(false);
            }
            answers_ping(self.port, auth).then_some(true)
        });
        if up == Some(true) {
            self.proc = Some(proc);
            return Ok(());
        }
        proc.kill();
        Err(proc.log_tail())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or `redis://USER:PASS@127.0.0.1:PORT` with an ACL user.
    pub fn url(&self) -> String {
        match &self.opts.acl_user {
            Some((u, p)) => format!("redis://{}:{}@127.0.0.1:{}", url_encode(u), url_encode(p), self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The server's directory (holds `redis.log` and any AOF).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// `redis-cli -p PORT ARGS…` as the ACL user (if any); stdout and stderr, trailing
    /// whitespace removed. Error replies come back as text (`NOPERM …`), never a panic.
    pub fn cli(&self, args: &[&str]) -> String {
        let user = self.opts.acl_user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        redis_cli(self.port, user, args)
    }

    /// Like [`Redis::cli`] but as the all-powerful `default` user (admin commands, `FLUSHALL`,
    /// `CONFIG SET`, `CLIENT KILL`, …).
    pub fn admin_cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, self.admin_auth(), args)
    }

    fn admin_auth(&self) -> Option<(&str, &str)> {
        self.admin_pass.as_deref().map(|p| ("default", p))
    }

    /// The log so far (stdout and stderr of every run).
    pub fn log(&self) -> String {
        std::fs::read(self.dir.path().join("redis.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL (a crash): no shutdown work, acknowledged AOF writes are on disk already.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait for a clean exit (AOF flushed).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("TERM");
            if p.wait_timeout(Duration::from_secs(10)).is_none() {
                p.kill();
                panic!("{} did not stop within 10 s of SIGTERM:\n{}", p.name(), p.log_tail());
            }
        }
    }

    /// Stops the server if it runs, then starts it again on the same port and directory (with
    /// AOF on, the data survives) and waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!("redis-server did not come back on port {}:\n{log}", self.port);
        }
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p PORT [--user U --pass P] ARGS…` (never a system-wide
/// server: the port is explicit and `REDISCLI_AUTH` is ignored). Returns stdout + stderr with
/// trailing whitespace removed.
pub fn redis_cli(port: u16, auth: Option<(&str, &str)>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.env_remove("REDISCLI_AUTH").args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, pass)) = auth {
        cmd.args(["--user", user, "--pass", pass, "--no-auth-warning"]);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}; scripts/test.sh installs it"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.trim_end().to_owned()
}

/// Whether a server on `port` answers PING with PONG (after AUTH, when given) — a raw RESP
/// probe, so polling does not spawn a process per try.
pub(crate) fn answers_ping(port: u16, auth: Option<(&str, &str)>) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    if let Some((user, pass)) = auth {
        req.extend(resp(&["AUTH", user, pass]));
    }
    req.extend(resp(&["PING"]));
    if s.write_all(&req).is_err() {
        return false;
    }
    let want = if auth.is_some() { 2 } else { 1 };
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.iter().filter(|&&b| b == b'\n').count() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).lines().nth(want - 1) == Some("+PONG")
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend(a.bytes());
        out.extend(b"\r\n");
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
