//! Child processes that cannot outlive their handle, free ports, and polling.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ports this process has handed out; never handed out again.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free TCP port on 127.0.0.1 (the kernel picks it; never the same one twice per process).
///
/// The port is free when returned, not reserved: another process may take it before the caller
/// binds. The starters below retry on a new port when a bind fails.
pub fn free_port() -> u16 {
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    // Listeners of refused ports stay open until a new port is found, so the kernel cannot
    // offer them again.
    let mut held = Vec::new();
    for _ in 0..256 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        if seen.insert(port) {
            return port;
        }
        held.push(listener);
    }
    panic!("no unused free port after 256 tries")
}

/// A child process whose stdout and stderr go to a log file; killed and reaped on drop.
pub(crate) struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout + stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = OpenOptions::new().create(true).append(true).open(log).expect("open log file");
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {name} ({cmd:?}): {e}; scripts/test.sh installs what the tests need")
        });
        Proc { name: name.to_owned(), child, log: log.to_owned(), status: None }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process has ended (reaps it), `None` while it runs.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on a child");
        }
        self.status
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, …) while the process runs.
    pub(crate) fn signal(&mut self, sig: &str) {
        // Never signal a reaped pid: it may belong to someone else by now.
        if self.exited().is_some() {
            return;
        }
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok || self.exited().is_some(), "cannot send SIG{sig} to {} (pid {})", self.name, self.pid());
    }

    /// SIGKILL and reap; returns the exit status.
    pub(crate) fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.exited() {
            return s;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a killed child");
        self.status = Some(status);
        status
    }

    /// Waits (blocking) up to `timeout` for the process to end.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.exited())
    }

    /// The whole log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log(), 40)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- {} (pid {}): last log lines -----\n{}", self.name, self.pid(), self.log_tail());
        }
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Calls `f` until it returns `Some` or `timeout` passes, with short, growing pauses.
pub(crate) fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
