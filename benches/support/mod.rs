//! Shared by the loopback benchmarks: three servers that do the same job (highwater's reactor,
//! a tokio current-thread server with tokio-util's `LengthDelimitedCodec`, and a blocking
//! std thread-per-connection server), one load generator used against all three, and a clock
//! for the CPU time the *server's* threads use.
//!
//! On a 2-core machine the load generator saturates a core, so wall-clock messages/s mostly
//! measures the machine; server CPU time per message is the figure that shows which server is
//! leaner.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use highwater::{Config, ConnId, Context, Handle, Handler, Pressure, RawJson, Reactor};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

// ----- CPU time of a set of threads ------------------------------------------------------

/// The CPU clocks of the threads that serve, summed on demand (ns resolution, unlike
/// /proc's clock ticks).
#[derive(Clone, Default)]
pub struct CpuClocks(Arc<Mutex<Vec<libc::clockid_t>>>);

impl CpuClocks {
    /// Adds the calling thread's CPU clock to the set.
    pub fn register_current_thread(&self) {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is always valid for the calling thread; the call writes one
        // clockid_t through a pointer to a local.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        assert_eq!(rc, 0, "pthread_getcpuclockid");
        self.0.lock().unwrap().push(id);
    }

    /// CPU time used so far by every registered thread that is still alive, in ns.
    pub fn total_ns(&self) -> u64 {
        let ids = self.0.lock().unwrap();
        ids.iter()
            .map(|&id| {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime writes one timespec through a pointer to a local; a
                // clock of an exited thread makes it fail, which counts as zero.
                let rc = unsafe { libc::clock_gettime(id, &mut ts) };
                if rc == 0 {
                    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
                } else {
                    0
                }
            })
            .sum()
    }
}

// ----- the job every server does ------------------------------------------------------------

/// Echo every message back; or sink: count it, and answer only `{"sync":…}` messages (with
/// themselves), which is how a benchmark knows everything before them was processed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Echo,
    Sink,
}

fn is_sync(payload: &[u8]) -> bool {
    payload.starts_with(b"{\"sync\"")
}

/// Validation as the tokio and std servers do it: one pass, no tree (serde's `IgnoredAny`;
/// a little cheaper than highwater's `RawJson`, which also enforces the depth limit).
fn valid(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}

const INVALID: &[u8] = br#"{"error":"invalid_json","detail":"bench"}"#;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Highwater,
    /// tokio written the way its docs and most code do it: parse each frame into a
    /// `serde_json::Value`, serialize it back, `framed.send()` it (one flush per message).
    Tokio,
    /// tokio tuned as far as it goes: validate without a tree, echo the bytes, `feed` every
    /// reply that is ready and `flush` once (the batching highwater does by design).
    TokioTuned,
    Std,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Highwater, Kind::Tokio, Kind::TokioTuned, Kind::Std];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Highwater => "highwater",
            Kind::Tokio => "tokio",
            Kind::TokioTuned => "tokio-tuned",
            Kind::Std => "std-threads",
        }
    }
}

/// The servers to compare: all, or those named in `HIGHWATER_BENCH_SERVERS` (comma-separated
/// `highwater`, `tokio`, `std-threads`), for profiling one at a time.
pub fn kinds_from_env() -> Vec<Kind> {
    match std::env::var("HIGHWATER_BENCH_SERVERS") {
        Ok(list) => Kind::ALL
            .into_iter()
            .filter(|k| list.split(',').any(|n| n.trim() == k.name()))
            .collect(),
        Err(_) => Kind::ALL.to_vec(),
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub clocks: CpuClocks,
    /// highwater only: reaches the reactor for its figures (syscalls per frame).
    pub handle: Option<Handle>,
}

impl Server {
    /// highwater's reactor figures, for syscalls-per-frame figures.
    pub fn figures(&self) -> Option<highwater::ReactorFigures> {
        let (tx, rx) = channel();
        self.handle
            .as_ref()?
            .run(move |ctx| {
                let _ = tx.send(ctx.figures());
            })
            .ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }
}

pub fn start_server(kind: Kind, mode: Mode) -> Server {
    let clocks = CpuClocks::default();
    let (addr, handle) = match kind {
        Kind::Highwater => {
            let (addr, handle) = highwater_server(mode, clocks.clone());
            (addr, Some(handle))
        }
        Kind::Tokio => (tokio_server(mode, clocks.clone(), false), None),
        Kind::TokioTuned => (tokio_server(mode, clocks.clone(), true), None),
        Kind::Std => (std_server(mode, clocks.clone()), None),
    };
    Server {
        addr,
        clocks,
        handle,
    }
}

// highwater: the library's reactor, RawJson messages, zero-copy echo.
pub struct HwServer(Mode);

impl Handler for HwServer {
    type Message = RawJson;
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        if self.0 == Mode::Echo || is_sync(msg.as_bytes()) {
            let _ = ctx.send_payload(conn, msg.into_bytes());
        }
    }
}

fn highwater_server(mode: Mode, clocks: CpuClocks) -> (SocketAddr, Handle) {
    let config = Config {
        idle_timeout: None,
        write_timeout: None,
        ..Config::default()
    };
    let mut reactor = Reactor::new(config, HwServer(mode)).unwrap();
    let addr = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let handle = reactor.handle();
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            clocks.register_current_thread();
            reactor.run().unwrap();
        })
        .unwrap();
    (addr, handle)
}

/// highwater's echo or sink server as a group of `reactors` reactors (one accepts and hands
/// connections out round-robin); the CPU clocks of every reactor thread are counted.
pub fn start_group_server(
    reactors: usize,
    mode: Mode,
) -> (Server, highwater::ReactorGroup<HwServer>) {
    let clocks = CpuClocks::default();
    let config = Config {
        idle_timeout: None,
        write_timeout: None,
        ..Config::default()
    };
    let register = clocks.clone();
    let group = highwater::ReactorGroup::start_with(
        reactors,
        config,
        "127.0.0.1:0".parse().unwrap(),
        None,
        Some(Arc::new(move |_| register.register_current_thread())),
        |_| HwServer(mode),
    )
    .unwrap();
    let server = Server {
        addr: group.local_addr(),
        clocks,
        handle: Some(group.handles()[0].clone()),
    };
    (server, group)
}

// tokio, as usually written: current-thread runtime, a task per connection,
// LengthDelimitedCodec defaults (4-byte big-endian length, 8 MiB max), each message parsed
// into a Value and sent back with `send` (write + flush).
async fn tokio_conn_idiomatic(stream: tokio::net::TcpStream, mode: Mode) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    while let Some(Ok(frame)) = framed.next().await {
        let reply = match serde_json::from_slice::<serde_json::Value>(&frame) {
            Ok(v) if mode == Mode::Echo || is_sync(&frame) => {
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
            Ok(_) => continue,
            Err(_) => Bytes::from_static(INVALID),
        };
        if framed.send(reply).await.is_err() {
            return;
        }
    }
}

// tokio, tuned: replies fed without flushing while more frames are ready, then one flush
// (the same batching highwater does), and validation without building a tree.
async fn tokio_conn(stream: tokio::net::TcpStream, mode: Mode) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    let reply = |frame: bytes::BytesMut| -> Option<Bytes> {
        if !valid(&frame) {
            return Some(Bytes::from_static(INVALID));
        }
        (mode == Mode::Echo || is_sync(&frame)).then(|| frame.freeze())
    };
    while let Some(Ok(frame)) = framed.next().await {
        if let Some(r) = reply(frame) {
            if framed.feed(r).await.is_err() {
                return;
            }
        }
        while let Some(Some(Ok(frame))) = framed.next().now_or_never() {
            if let Some(r) = reply(frame) {
                if framed.feed(r).await.is_err() {
                    return;
                }
            }
        }
        if SinkExt::<Bytes>::flush(&mut framed).await.is_err() {
            return;
        }
    }
}

fn tokio_server(mode: Mode, clocks: CpuClocks, tuned: bool) -> SocketAddr {
    let (tx, rx) = channel();
    let spawned = std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            clocks.register_current_thread();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    if tuned {
                        tokio::spawn(tokio_conn(stream, mode));
                    } else {
                        tokio::spawn(tokio_conn_idiomatic(stream, mode));
                    }
                }
            });
        });
    spawned.unwrap();
    rx.recv().unwrap()
}

// std: a blocking thread per connection, buffered both ways, one reused payload buffer,
// replies flushed when no more input is buffered.
fn std_conn(stream: std::net::TcpStream, mode: Mode) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 4];
        if reader.read_exact(&mut header).is_err() {
            return;
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > 8 * 1024 * 1024 {
            return;
        }
        payload.resize(len, 0);
        if reader.read_exact(&mut payload).is_err() {
            return;
        }
        let out: Option<&[u8]> = if !valid(&payload) {
            Some(INVALID)
        } else if mode == Mode::Echo || is_sync(&payload) {
            Some(&payload)
        } else {
            None
        };
        if let Some(out) = out {
            let ok = writer.write_all(&(out.len() as u32).to_be_bytes()).is_ok()
                && writer.write_all(out).is_ok();
            if !ok {
                return;
            }
        }
        if reader.buffer().is_empty() && writer.flush().is_err() {
            return;
        }
    }
}

fn std_server(mode: Mode, clocks: CpuClocks) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let clocks = clocks.clone();
            let _ = std::thread::Builder::new()
                .name("server".into())
                .spawn(move || {
                    clocks.register_current_thread();
                    std_conn(stream, mode);
                });
        }
    });
    addr
}

// ----- the load generator -------------------------------------------------------------------

/// What the load generator does.
#[derive(Clone)]
pub enum Load {
    /// `window` requests in flight per connection, each `payload`, answered one for one.
    Echo { payload: Bytes, window: u32 },
    /// One-way stream of `frame`s, then a sync message that the sink echoes.
    Stream { frame: Bytes },
}

#[derive(Default)]
struct PerConn {
    to_send: u64,
    in_flight: u32,
}

struct Driver {
    load: Load,
    conns: Vec<ConnId>,
    state: HashMap<ConnId, PerConn>,
    target: u64,
    completed: u64,
    opened: usize,
    ready: Sender<()>,
    done: Sender<()>,
    streaming: Option<ConnId>,
}

impl Driver {
    fn start(&mut self, ctx: &mut Context<'_>, n: u64) {
        self.target = n;
        self.completed = 0;
        match self.load.clone() {
            Load::Echo { payload, window } => {
                let k = self.conns.len() as u64;
                for (i, conn) in self.conns.iter().enumerate() {
                    let st = self.state.entry(*conn).or_default();
                    st.to_send = n / k + u64::from((i as u64) < n % k);
                    while st.in_flight < window && st.to_send > 0 {
                        let _ = ctx.send_payload(*conn, payload.clone());
                        st.to_send -= 1;
                        st.in_flight += 1;
                    }
                }
            }
            Load::Stream { .. } => {
                let conn = self.conns[0];
                self.state.entry(conn).or_default().to_send = n;
                self.streaming = Some(conn);
                self.stream(ctx, conn);
            }
        }
    }

    fn stream(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let Load::Stream { frame } = &self.load else {
            return;
        };
        let st = self.state.entry(conn).or_default();
        while st.to_send > 0 {
            st.to_send -= 1;
            if matches!(ctx.send_payload(conn, frame.clone()), Ok(Pressure::High)) {
                return;
            }
        }
        if self.streaming.take().is_some() {
            let _ = ctx.send_payload(conn, Bytes::from_static(b"{\"sync\":1}"));
        }
    }
}

impl Handler for Driver {
    type Message = RawJson;
    fn on_notify(&mut self, ctx: &mut Context<'_>, n: u64) {
        self.start(ctx, n);
    }
    fn on_open(&mut self, _: &mut Context<'_>, _: ConnId) {
        self.opened += 1;
        if self.opened == self.conns.len() {
            let _ = self.ready.send(());
        }
    }
    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.stream(ctx, conn);
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: RawJson) {
        match &self.load {
            Load::Stream { .. } => {
                let _ = self.done.send(());
            }
            Load::Echo { payload, .. } => {
                let st = self.state.entry(conn).or_default();
                st.in_flight -= 1;
                self.completed += 1;
                if st.to_send > 0 {
                    st.to_send -= 1;
                    st.in_flight += 1;
                    let _ = ctx.send_payload(conn, payload.clone());
                }
                if self.completed == self.target {
                    let _ = self.done.send(());
                }
            }
        }
    }
}

/// A load generator on its own reactor thread, connected and ready.
pub struct Generator {
    handle: Handle,
    done: Receiver<()>,
}

impl Generator {
    pub fn connect(addr: SocketAddr, conns: usize, load: Load) -> Generator {
        let (ready_tx, ready_rx) = channel();
        let (done_tx, done_rx) = channel();
        let config = Config {
            idle_timeout: None,
            write_timeout: None,
            ..Config::default()
        };
        let driver = Driver {
            load,
            conns: Vec::new(),
            state: HashMap::new(),
            target: 0,
            completed: 0,
            opened: 0,
            ready: ready_tx,
            done: done_tx,
            streaming: None,
        };
        let mut reactor = Reactor::new(config, driver).unwrap();
        for _ in 0..conns {
            let id = reactor.connect(addr).unwrap();
            reactor.handler_mut().conns.push(id);
        }
        let handle = reactor.handle();
        std::thread::Builder::new()
            .name("load".into())
            .spawn(move || reactor.run().unwrap())
            .unwrap();
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("connections opened");
        Generator {
            handle,
            done: done_rx,
        }
    }

    /// Runs `n` messages (echo round trips, or stream frames) and waits for the last.
    pub fn run(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.handle.notify(n).unwrap();
        self.done
            .recv_timeout(Duration::from_secs(600))
            .expect("the batch completed");
    }
}

/// Measures `n` messages: wall time and the server threads' CPU time.
pub struct Sample {
    pub messages: u64,
    pub wall: Duration,
    pub server_cpu: Duration,
}

pub fn measure(server: &Server, generator: &Generator, n: u64) -> Sample {
    let cpu0 = server.clocks.total_ns();
    let t0 = Instant::now();
    generator.run(n);
    Sample {
        messages: n,
        wall: t0.elapsed(),
        server_cpu: Duration::from_nanos(server.clocks.total_ns() - cpu0),
    }
}

/// A JSON payload of exactly `len` bytes.
pub fn payload(len: usize) -> Bytes {
    let head = "{\"id\":1,\"pad\":\"";
    let tail = "\"}";
    let pad = len.saturating_sub(head.len() + tail.len());
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}

/// The contract's sample frame: 50 user records, ~61 KB (same as the `client` example's).
pub fn article_frame() -> Bytes {
    let record = serde_json::json!({
        "_id": "5f1d7c2e9b00000000000001", "isactive": true, "balance": "$3,141.59",
        "picture": "http://placehold.it/32x32", "age": 31, "eyecolor": "green",
        "name": "Marguerite Okonkwo", "gender": "female", "company": "HIGHWATER",
        "email": "m.okonkwo@highwater.example", "phone": "+1 (915) 555-0142",
        "address": "418 Tidewater Lane, Port Orchard, WA 98366",
        "about": "x".repeat(544), "registered": "2019-04-11T09:26:53 -02:00",
        "latitude": 47.540231, "longitude": -122.636118,
        "tags": ["backpressure", "tcp", "queues", "mio", "rust"],
        "friends": [{"id": 0, "name": "Teodor Vasquez"}, {"id": 1, "name": "Ines Abernathy"},
                    {"id": 2, "name": "Kwame Rosen"}],
        "greeting": "Hello, Marguerite! You have 7 unread messages.", "favoritefruit": "apple"
    });
    Bytes::from(serde_json::to_vec(&vec![record; 50]).unwrap())
}
