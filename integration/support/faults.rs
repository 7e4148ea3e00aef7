//! A fault-injecting TCP proxy to put between gateways and Redis: added delay, a black hole
//! (sockets stay open, nothing is forwarded), a bandwidth limit — each per direction and
//! switchable at any time — and resets of every open connection.
//!
//! ```ignore
//! let proxy = FaultProxy::start(redis.port());
//! // point the gateway at proxy.url() instead of redis.url()
//! proxy.set(Dir::Both, Fault::BlackHole);   // freeze the link
//! proxy.clear();                            // thaw: held bytes flow on, in order
//! proxy.set(Dir::Up, Fault::Delay(Duration::from_millis(50)));
//! proxy.reset();                            // RST every open connection
//! ```
//!
//! The proxy runs on its own thread and runtime, so blocking test code (`redis-cli`, polls)
//! never stalls it, and its methods are plain functions callable from sync or async tests.
//! A black hole stops reading (what is in flight stays in socket buffers, as with a network
//! that drops packets while TCP retransmits); after the thaw everything flows on, in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Which way bytes flow: `Up` from the client (gateway) to the server (Redis), `Down` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Up,
    Down,
    Both,
}

/// One fault of a direction. Faults of different kinds add up (`Delay` and `Bandwidth` together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every chunk is forwarded this long after it was read.
    Delay(Duration),
    /// Nothing is forwarded; open sockets stay open, new connections are accepted.
    BlackHole,
    /// At most this many bytes per second.
    Bandwidth(u64),
}

/// The faults of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    pub delay: Duration,
    pub black_hole: bool,
    /// Bytes per second; `None`: unlimited.
    pub bandwidth: Option<u64>,
}

impl Link {
    fn apply(&mut self, f: Fault) {
        match f {
            Fault::Delay(d) => self.delay = d,
            Fault::BlackHole => self.black_hole = true,
            Fault::Bandwidth(b) => self.bandwidth = Some(b.max(1)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    up: Link,
    down: Link,
    /// Bumped by [`FaultProxy::reset`]: connections opened before are reset.
    resets: u64,
}

impl State {
    fn link(&self, up: bool) -> Link {
        if up {
            self.up
        } else {
            self.down
        }
    }
}

/// A TCP proxy on `127.0.0.1:<port>` to one upstream; stops (and resets every connection) when
/// dropped.
pub struct FaultProxy {
    port: u16,
    state: watch::Sender<State>,
    /// Bytes forwarded so far, per direction (up, down).
    bytes: Arc<[AtomicU64; 2]>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:upstream_port`, forwarding faithfully until told otherwise.
    pub fn start(upstream_port: u16) -> FaultProxy {
        Self::start_to(SocketAddr::from(([127, 0, 0, 1], upstream_port)))
    }

    /// A proxy to `upstream`.
    pub fn start_to(upstream: SocketAddr) -> FaultProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        std_listener.set_nonblocking(true).expect("non-blocking listener");
        let port = std_listener.local_addr().expect("proxy address").port();
        let (state, watcher) = watch::channel(State::default());
        let bytes: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let counted = bytes.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, upstream, watcher, counted) => {}
                    }
                });
                // Dropping the runtime drops every connection task and its sockets.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn the proxy thread");
        FaultProxy { port, state, bytes, stop: Some(stop), thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Adds `fault` to direction `dir` (existing connections too, at once).
    pub fn set(&self, dir: Dir, fault: Fault) {
        self.state.send_modify(|s| {
            if dir != Dir::Down {
                s.up.apply(fault);
            }
            if dir != Dir::Up {
                s.down.apply(fault);
            }
        });
    }

    /// Every fault off: bytes held by a black hole flow on.
    pub fn clear(&self) {
        self.state.send_modify(|s| {
            s.up = Link::default();
            s.down = Link::default();
        });
    }

    /// The faults of a direction now.
    pub fn link(&self, up: bool) -> Link {
        self.state.borrow().link(up)
    }

    /// Resets (RST) every connection open now, on both sides; later connections are not
    /// affected.
    pub fn reset(&self) {
        self.state.send_modify(|s| s.resets += 1);
    }

    /// Bytes forwarded so far `(up, down)`.
    pub fn forwarded(&self) -> (u64, u64) {
        (self.bytes[0].load(Ordering::Relaxed), self.bytes[1].load(Ordering::Relaxed))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    bytes: Arc<[AtomicU64; 2]>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let (state, bytes) = (state.clone(), bytes.clone());
        tokio::spawn(async move {
            // Connect upstream at once, even in a black hole: the client sees an accepted
            // connection that answers nothing, as behind a frozen link.
            let Ok(server) = TcpStream::connect(upstream).await else { return };
            connection(client, server, state, bytes).await;
        });
    }
}

/// One proxied connection, until either side closes or a reset.
async fn connection(
    client: TcpStream,
    server: TcpStream,
    mut state: watch::Receiver<State>,
    bytes: Arc<[AtomicU64; 2]>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let born = state.borrow().resets;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = pump(&mut cr, &mut sw, true, state.clone(), bytes.clone());
    let down = pump(&mut sr, &mut cw, false, state.clone(), bytes);
    let reset = async {
        loop {
            let resets = state.borrow_and_update().resets;
            if resets != born {
                return;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    };
    let was_reset = tokio::select! {
        // Both directions end on their own (EOF each way), or a reset ends both.
        _ = async { tokio::join!(up, down) } => false,
        _ = reset => true,
    };
    if was_reset {
        // Closed with SO_LINGER 0: an RST on both sides instead of a FIN.
        let _ = cr.as_ref().set_zero_linger();
        let _ = sr.as_ref().set_zero_linger();
    }
}

/// Forwards one direction, applying its faults, until EOF, an error or a reset.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    up: bool,
    mut state: watch::Receiver<State>,
    bytes: Arc<[AtomicU64; 2]>,
) {
    // Chunks in flight between the reader and the writer (bounded: backpressure to the reader).
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut held = state.clone();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            wait_open(&mut state, up).await;
            // A bandwidth limit reads in slices of about a tenth of a second of traffic.
            let cap = state.borrow().link(up).bandwidth.map_or(buf.len(), |b| (b as usize / 10).clamp(1, buf.len()));
            let n = tokio::select! {
                r = from.read(&mut buf[..cap]) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                // A black hole switched on while waiting for bytes: stop reading at once.
                _ = until_closed(&mut state, up) => continue,
            };
            if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            loop {
                let link = held.borrow().link(up);
                let due = read_at + link.delay;
                if Instant::now() < due {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = held.changed() => continue,
                    }
                }
                let closed = held.borrow().link(up).black_hole;
                if closed {
                    wait_open(&mut held, up).await;
                    continue;
                }
                break;
            }
            let bandwidth = held.borrow().link(up).bandwidth;
            if let Some(rate) = bandwidth {
                tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64)).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            bytes[usize::from(!up)].fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        // EOF from the reader: pass it on.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Returns once the direction is not black-holed.
async fn wait_open(state: &mut watch::Receiver<State>, up: bool) {
    loop {
        let closed = state.borrow_and_update().link(up).black_hole;
        if !closed {
            return;
        }
        if state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Returns once the direction is black-holed.
async fn until_closed(state: &mut watch::Receiver<State>, up: bool) {
    loop {
        let closed = state.borrow_and_update().link(up).black_hole;
        if closed {
            return;
        }
        if state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
