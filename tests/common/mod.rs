//! Test harness: a reactor on its own thread, blocking loopback peers that speak the wire
//! format, and a time bound for every test. Each test file uses a subset.
#![allow(dead_code)]

pub mod process;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use highwater::{Config, Context, Handle, Handler, Reactor};
use serde_json::Value;

/// Runs `body` on its own thread and fails the test if it takes longer than `limit`.
pub fn bounded<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = thread.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test exceeded its {limit:?} bound"),
        // The body panicked: re-raise its panic here so the test reports it.
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("body finished without sending"),
        },
    }
}

/// Raises the soft file-descriptor limit to the hard limit, for tests with many sockets.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A reactor running on its own thread, listening on 127.0.0.1:0. Dropping it stops the
/// reactor and joins the thread.
pub struct Server<H: Handler + Send + 'static> {
    pub addr: SocketAddr,
    pub handle: Handle,
    thread: Option<JoinHandle<H>>,
}

impl<H: Handler + Send + 'static> Server<H> {
    pub fn start(config: Config, handler: H) -> Server<H> {
        let mut reactor = Reactor::new(config, handler).expect("reactor");
        let addr = reactor
            .listen("127.0.0.1:0".parse().unwrap())
            .expect("listen");
        let handle = reactor.handle();
        let thread = std::thread::spawn(move || {
            reactor.run().expect("reactor run");
            reactor.into_handler()
        });
        Server {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the reactor thread and returns its result.
    pub fn query<T: Send + 'static>(
        &self,
        f: impl for<'a> FnOnce(&mut Context<'a>) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        self.handle
            .run(move |ctx| {
                let _ = tx.send(f(ctx));
            })
            .expect("reactor reachable");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("reactor answered")
    }

    /// Polls `f` on the reactor thread until it returns `Some`, or panics after `limit`.
    pub fn wait_for<T: Send + 'static>(
        &self,
        limit: Duration,
        what: &str,
        f: impl for<'a> Fn(&mut Context<'a>) -> Option<T> + Send + Sync + Clone + 'static,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let g = f.clone();
            if let Some(v) = self.query(move |ctx| g(ctx)) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the reactor gracefully and returns the handler.
    pub fn shutdown(self, grace: Duration) -> H {
        self.handle.shutdown(grace).expect("shutdown");
        self.join()
    }

    /// Waits for the reactor to finish (after a shutdown or stop) and returns the handler.
    pub fn join(mut self) -> H {
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("reactor thread")
    }
}

impl<H: Handler + Send + 'static> Drop for Server<H> {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.handle.stop();
            let _ = t.join();
        }
    }
}

/// A blocking peer that speaks the wire format, with timeouts on both directions.
pub struct Peer {
    pub stream: TcpStream,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        Peer::with_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A peer whose receive buffer is `bytes` (set before connecting, so the advertised
    /// window stays small): a reader that can fall behind quickly.
    pub fn connect_small_window(addr: SocketAddr, bytes: usize) -> Peer {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        socket.connect(&addr.into()).expect("connect");
        Peer::with_stream(socket.into())
    }

    fn with_stream(stream: TcpStream) -> Peer {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Peer { stream }
    }

    pub fn send_raw(&mut self, payload: &[u8]) {
        self.stream.write_all(&frame(payload)).expect("write frame");
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(&serde_json::to_vec(v).unwrap());
    }

    /// Reads one frame's payload; `Ok(None)` at a clean end of stream.
    pub fn recv_raw(&mut self) -> io::Result<Option<Vec<u8>>> {
        read_frame(&mut self.stream)
    }

    pub fn recv(&mut self) -> Value {
        let p = self
            .recv_raw()
            .expect("read frame")
            .expect("a frame, not end of stream");
        serde_json::from_slice(&p).expect("reply is JSON")
    }

    /// Turns this peer's close into a RST (SO_LINGER with a zero timeout), then closes.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }

    /// Expects the server to close: end of stream, or a reset.
    pub fn expect_closed(&mut self) {
        match self.recv_raw() {
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

/// Header + payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Reads one frame from a blocking reader; `Ok(None)` at a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

// ----- handlers shared by the tests ------------------------------------------------------

use highwater::{CloseReason, ConnId, RawJson};
use std::sync::{Arc, Mutex};

/// What a test handler saw, shared with the test thread.
#[derive(Debug, Default)]
pub struct Seen {
    pub opened: Vec<ConnId>,
    pub closed: Vec<(ConnId, String)>,
    pub messages: u64,
    pub bad_messages: u64,
    /// Largest write-queue length observed right after a send.
    pub peak_queued: usize,
    /// Each closed connection's last figures, read in `on_close`.
    pub last_figures: Vec<highwater::ConnFigures>,
}

/// `Seen` behind a mutex, with a condition variable so tests wait for events instead of
/// sleeping.
#[derive(Debug, Default)]
pub struct Watch {
    seen: Mutex<Seen>,
    changed: std::sync::Condvar,
}

pub type Shared = Arc<Watch>;

impl Watch {
    /// Changes what was seen and wakes any waiting test.
    pub fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap());
        self.changed.notify_all();
    }

    /// Reads what was seen.
    pub fn get<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    /// Waits until `f` returns `Some`, or panics after `limit`.
    pub fn wait<T>(&self, limit: Duration, what: &str, f: impl Fn(&Seen) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        let mut seen = self.seen.lock().unwrap();
        loop {
            if let Some(v) = f(&seen) {
                return v;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("timed out waiting for: {what}"));
            seen = self.changed.wait_timeout(seen, left).unwrap().0;
        }
    }
}

/// Echoes every message back unchanged and records what happened.
#[derive(Default)]
pub struct Echo {
    pub seen: Shared,
}

impl Handler for Echo {
    type Message = RawJson;

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        let figures = ctx.conn_figures(conn);
        self.seen.update(|s| {
            s.closed.push((conn, reason.name().to_string()));
            s.last_figures.extend(figures);
        });
    }

    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.seen.update(|s| s.opened.push(conn));
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let _ = ctx.send_payload(conn, msg.into_bytes());
        let queued = ctx.queued_bytes(conn);
        self.seen.update(|s| {
            s.messages += 1;
            s.peak_queued = s.peak_queued.max(queued);
        });
    }

    fn on_bad_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, e: &highwater::DecodeError) {
        self.seen.update(|s| s.bad_messages += 1);
        let _ = ctx.send_payload(conn, e.reply()); // overriding makes the reply ours to send
    }
}

/// Counts messages per connection; on the peer's half-close replies
/// `{"received":M,"bytes":B}` and closes. Optionally pauses reading for `pause` after every
/// `every` messages (a slow consumer).
#[derive(Default)]
pub struct Sink {
    pub every: u64,
    pub pause: Duration,
    pub counts: std::collections::HashMap<ConnId, (u64, u64)>,
    pub seen: Shared,
}

impl Handler for Sink {
    type Message = RawJson;

    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.seen.update(|s| s.opened.push(conn));
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let c = self.counts.entry(conn).or_default();
        c.0 += 1;
        c.1 += msg.len() as u64;
        self.seen.update(|s| s.messages += 1);
        if self.every > 0 && c.0 % self.every == 0 {
            ctx.pause_reading(conn);
            ctx.set_timer(self.pause, conn.as_u64());
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: highwater::TimerId, data: u64) {
        ctx.resume_reading(ConnId::from_u64(data));
    }

    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let (m, b) = self.counts.get(&conn).copied().unwrap_or_default();
        let _ = ctx.send(conn, &serde_json::json!({"received": m, "bytes": b}));
        ctx.close(conn);
    }

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        self.seen
            .update(|s| s.closed.push((conn, reason.name().to_string())));
    }
}

/// The first connection the handler saw open, waiting for it if needed.
pub fn first_conn(seen: &Shared) -> ConnId {
    seen.wait(Duration::from_secs(10), "a connection to open", |s| {
        s.opened.first().copied()
    })
}
