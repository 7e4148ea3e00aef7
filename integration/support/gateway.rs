//! A real `arqonbus serve` process on a free port.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::{free_port, Proc};

/// How long a starting gateway may take to answer `GET /healthz` with 200.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `wait_exit` waits (covers the drain delay and grace of the test defaults).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(50);

/// A gateway process; killed when dropped. Its stdout and stderr go to a file in its temp dir
/// (its working directory, so no `arqonbus.toml` is picked up by accident).
pub struct Gateway {
    // Declared before `dir`: the process dies before its directory is removed.
    proc: Proc,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Gateway {
    /// Runs `arqonbus serve` with no inherited `ARQONBUS_*` variables, these defaults, then
    /// `env` (which wins on the same key):
    ///
    /// `ARQONBUS_SERVER__LISTEN=127.0.0.1:<free port>`, `ARQONBUS_SERVER__NODE_ID=gw-<port>`,
    /// `ARQONBUS_LOG__LEVEL=warn`, `ARQONBUS_SERVER__SHUTDOWN_GRACE_MS=3000`,
    /// `ARQONBUS_SERVER__DRAIN_JITTER_MS=100`, `ARQONBUS_LIMITS__PUBLISH_RATE_PER_S=100000`,
    /// `ARQONBUS_LIMITS__PUBLISH_BURST=100000` (the in-process harness's test config).
    ///
    /// Returns once `GET /healthz` answers 200; panics with the output tail if the process
    /// exits or does not answer within 15 s. A `server.listen` in `env` is used as given.
    pub async fn spawn(env: &[(&str, String)]) -> Gateway {
        let dir = tempfile::Builder::new().prefix("arqonbus-gateway-").tempdir().expect("temp dir");
        let fixed_listen = env.iter().any(|(k, _)| *k == "ARQONBUS_SERVER__LISTEN");
        for attempt in 1..=3 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut cmd = Command::new(binary());
            cmd.arg("serve").current_dir(dir.path());
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ARQONBUS_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("ARQONBUS_SERVER__LISTEN", &listen)
                .env("ARQONBUS_SERVER__NODE_ID", format!("gw-{port}"))
                .env("ARQONBUS_LOG__LEVEL", "warn")
                .env("ARQONBUS_SERVER__SHUTDOWN_GRACE_MS", "3000")
                .env("ARQONBUS_SERVER__DRAIN_JITTER_MS", "100")
                .env("ARQONBUS_LIMITS__PUBLISH_RATE_PER_S", "100000")
                .env("ARQONBUS_LIMITS__PUBLISH_BURST", "100000");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let addr: SocketAddr = env
                .iter()
                .find(|(k, _)| *k == "ARQONBUS_SERVER__LISTEN")
                .map(|(_, v)| v.as_str())
                .unwrap_or(&listen)
                .parse()
                .expect("ARQONBUS_SERVER__LISTEN is an address");
            let log = dir.path().join("output.log");
            let _ = std::fs::remove_file(&log);
            let mut proc = Proc::spawn(&format!("arqonbus {addr}"), cmd, &log);
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = proc.exited() {
                    let out = proc.log_tail();
                    if attempt < 3 && !fixed_listen && out.contains("cannot listen on") {
                        break; // the free port was taken meanwhile: try another
                    }
                    panic!("the gateway exited ({status}) before answering /healthz:\n{out}");
                }
                if http_status(addr, "/healthz").await == Some(200) {
                    return Gateway { proc, addr, _dir: dir };
                }
                if Instant::now() >= deadline {
                    proc.kill();
                    panic!("the gateway did not answer /healthz within {START_TIMEOUT:?}:\n{}", proc.log_tail());
                }
                tokio::time::sleep(POLL).await;
            }
        }
        unreachable!()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Status of `GET /readyz`; 0 when nothing answers (not listening, or no reply in time).
    pub async fn ready(&self) -> u16 {
        http_status(self.addr, "/readyz").await.unwrap_or(0)
    }

    /// Polls `/readyz` until it answers `status`; panics with the output tail after `timeout`.
    pub async fn wait_ready(&self, status: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.ready().await;
            if now == status {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "/readyz of {} answered {now}, not {status}, for {timeout:?}:\n{}",
                    self.addr,
                    self.proc.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL and reap: a crash, no drain.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc.kill()
    }

    /// SIGTERM: the gateway drains and exits; see [`Gateway::wait_exit`].
    pub fn sigterm(&mut self) {
        self.proc.signal("TERM");
    }

    /// Waits for the process to end (up to 30 s, else panics with the output tail).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.proc.exited() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("the gateway did not exit within {EXIT_TIMEOUT:?}:\n{}", self.proc.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.proc.log()
    }
}

/// The `arqonbus` binary cargo built for these tests, or the one `ARQONBUS_TEST_BIN` names (a
/// release build, or a copy that another build into the same target directory cannot replace
/// while the tests run).
fn binary() -> std::ffi::OsString {
    std::env::var_os("ARQONBUS_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_arqonbus").into())
}

/// Status of `GET path` over a fresh connection; `None` when nothing answers within 5 s.
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.ok().flatten()
}
