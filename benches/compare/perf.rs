//! One binary for the side-by-side scripts of `benches/compare/` (issues 13 and 16): servers
//! that run in a process of their own (so `strace -p` and `/proc/<pid>/stat` see only the
//! server), a closed-loop load generator that records latency, and a blocking ping-pong
//! client.
//!
//! ```text
//! cargo bench --bench perf -- server --kind highwater|tokio-tuned|tokio|std [--sndbuf BYTES]
//! cargo bench --bench perf -- load --addr A --conns N --window W --size S --secs T
//!                                   [--warmup-secs T] [--server-pid PID]
//! cargo bench --bench perf -- server --kind highwater|tokio-tuned --fanout [--sndbuf BYTES]
//! cargo bench --bench perf -- stream --addr A --conns N --size S --secs T [--server-pid PID]
//! cargo bench --bench perf -- pingpong --addr A --count N --size S
//! cargo bench --bench perf -- server --kind highwater-group [--reuse-port] --reactors N
//! cargo bench --bench perf -- server --kind tokio-reuseport --reactors N
//! cargo bench --bench perf -- churn --addr A --threads T --secs S [--server-pid PID]
//! cargo bench --bench perf -- plot --input POINTS --output SVG
//! ```
//!
//! Servers print `listening on ADDR` and run until killed. They all do the same job: one
//! thread, 4-byte big-endian length prefix, check the payload is JSON, echo the received
//! bytes (names as in BENCHMARKS.md). `highwater` is the library's reactor (`RawJson`,
//! zero-copy echo); `tokio-tuned` is a current-thread runtime with tokio-util's
//! `LengthDelimitedCodec`, `IgnoredAny` validation and replies fed then flushed once per batch
//! of ready frames; `tokio` is the same runtime as usually written (a `Value` per frame,
//! `send` per reply); `std` is a blocking thread per connection (for the ping-pong floor
//! only: it is not one thread).
//!
//! `load` prints one JSON line: messages/s, p50/p99 round-trip latency, and, given
//! `--server-pid`, the server's CPU per message from `/proc/<pid>/stat` (user + system clock
//! ticks over the measured window).

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use highwater::{Config, ConnId, Context, Handler, RawJson, Reactor};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

// ----- flags -----------------------------------------------------------------------------

struct Args(Vec<String>);

impl Args {
    fn get<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> T {
        let flag = format!("--{name}");
        match self.0.iter().position(|a| *a == flag) {
            Some(i) => match self.0.get(i + 1).and_then(|v| v.parse().ok()) {
                Some(v) => v,
                None => die(&format!("{flag}: missing or bad value")),
            },
            None => default.unwrap_or_else(|| die(&format!("{flag} is required"))),
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("perf: {msg}");
    std::process::exit(2)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else here starts with it.
    let argv: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(cmd) = argv.first().cloned() else {
        // `cargo bench` with no arguments: nothing to do (the scripts drive this binary).
        eprintln!("perf: run through benches/compare/*.sh (see the file's docs)");
        return;
    };
    let args = Args(argv);
    match cmd.as_str() {
        "server" => {
            let kind: String = args.get("kind", None);
            let sndbuf: usize = args.get("sndbuf", Some(0));
            let sndbuf = (sndbuf > 0).then_some(sndbuf);
            let fanout = args.0.iter().any(|a| a == "--fanout");
            // On a thread of its own, as a server with more than one reactor (or anything
            // else on its main thread) runs: glibc then serves it from a secondary arena,
            // which gives memory back with `madvise`, not `brk`.
            let server = std::thread::Builder::new().name("server".into());
            let joined = match kind.as_str() {
                "highwater" if fanout => server.spawn(move || highwater_fanout(sndbuf)),
                "tokio-tuned" if fanout => server.spawn(move || tokio_fanout(sndbuf)),
                "highwater" => server.spawn(move || highwater_server(sndbuf, None)),
                // `Config::busy_poll` of 50 µs: the ping-pong with no sleep on the server side.
                "highwater-busy" => {
                    server.spawn(move || highwater_server(sndbuf, Some(Duration::from_micros(50))))
                }
                "tokio-tuned" => server.spawn(move || tokio_server(sndbuf, true)),
                "tokio" => server.spawn(move || tokio_server(sndbuf, false)),
                "std" => server.spawn(std_server),
                "highwater-group" => {
                    let reactors = args.get("reactors", Some(2));
                    let reuse = args.0.iter().any(|a| a == "--reuse-port");
                    server.spawn(move || highwater_group(reactors, reuse))
                }
                "tokio-reuseport" => {
                    let threads = args.get("reactors", Some(2));
                    server.spawn(move || tokio_reuseport(threads))
                }
                other => die(&format!("--kind {other:?}")),
            };
            let _ = joined.expect("server thread").join();
        }
        "load" => load(&args),
        "pingpong" => pingpong(&args),
        "churn" => churn(&args),
        "stream" => stream(&args),
        "plot" => plot(&args),
        other => die(&format!("unknown command {other:?}")),
    }
}

fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

// ----- servers -----------------------------------------------------------------------------

struct Echo;

impl Handler for Echo {
    type Message = RawJson;
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let _ = ctx.send_payload(conn, msg.into_bytes());
    }
}

fn highwater_server(sndbuf: Option<usize>, busy_poll: Option<Duration>) {
    let config = Config {
        busy_poll,
        idle_timeout: None,
        write_timeout: None,
        max_connections: 50_000,
        send_buffer_size: sndbuf,
        ..Config::default()
    };
    let mut reactor = Reactor::new(config, Echo).expect("reactor");
    let addr = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    announce(addr);
    reactor.run().expect("run");
}

async fn tokio_conn(stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    let reply = |frame: bytes::BytesMut| -> Bytes {
        match serde_json::from_slice::<serde::de::IgnoredAny>(&frame) {
            Ok(_) => frame.freeze(),
            Err(_) => Bytes::from_static(br#"{"error":"invalid_json"}"#),
        }
    };
    while let Some(Ok(frame)) = framed.next().await {
        if framed.feed(reply(frame)).await.is_err() {
            return;
        }
        while let Some(Some(Ok(frame))) = framed.next().now_or_never() {
            if framed.feed(reply(frame)).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut framed).await.is_err() {
            return;
        }
    }
}

// tokio as usually written: each frame parsed into a `Value`, serialized back, `send` (write
// and flush) per message.
async fn tokio_conn_idiomatic(stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    while let Some(Ok(frame)) = framed.next().await {
        let reply = match serde_json::from_slice::<serde_json::Value>(&frame) {
            Ok(v) => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            Err(_) => Bytes::from_static(br#"{"error":"invalid_json"}"#),
        };
        if framed.send(reply).await.is_err() {
            return;
        }
    }
}

fn tokio_server(sndbuf: Option<usize>, tuned: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        announce(listener.local_addr().expect("addr"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            if let Some(size) = sndbuf {
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
            }
            if tuned {
                tokio::spawn(tokio_conn(stream));
            } else {
                tokio::spawn(tokio_conn_idiomatic(stream));
            }
        }
    });
}

fn std_conn(stream: std::net::TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 4];
        reader.read_exact(&mut header)?;
        let len = u32::from_be_bytes(header) as usize;
        if len > 8 << 20 {
            return Ok(());
        }
        payload.resize(len, 0);
        reader.read_exact(&mut payload)?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
            return Ok(());
        }
        writer.write_all(&header)?;
        writer.write_all(&payload)?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

fn std_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    announce(listener.local_addr().expect("addr"));
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || std_conn(stream));
    }
}

// ----- accepting at scale: many short connections (issue 13 goal 4) ----------------------

/// A `ReactorGroup` of echo reactors: reactor 0 accepting for all and handing out
/// round-robin (the default), or each with its own `SO_REUSEPORT` listener.
fn highwater_group(reactors: usize, reuse_port: bool) {
    let config = Config {
        idle_timeout: None,
        write_timeout: None,
        max_connections: 50_000,
        reuse_port,
        ..Config::default()
    };
    let group = highwater::ReactorGroup::start(
        reactors,
        config,
        "127.0.0.1:0".parse().expect("addr"),
        |_| Echo,
    )
    .expect("group");
    announce(group.local_addr());
    let _ = group.join();
}

/// tokio's way to the same shape without a multi-threaded runtime: a current-thread runtime
/// per thread, each with its own `SO_REUSEPORT` listener on the one port, the tuned
/// connection task.
fn tokio_reuseport(threads: usize) {
    let bind = |addr: SocketAddr| -> std::net::TcpListener {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        s.bind(&addr.into()).expect("bind");
        s.listen(1024).expect("listen");
        s.set_nonblocking(true).expect("nonblocking");
        s.into()
    };
    let first = bind("127.0.0.1:0".parse().expect("addr"));
    let addr = first.local_addr().expect("addr");
    let mut listeners = vec![first];
    listeners.extend((1..threads.max(1)).map(|_| bind(addr)));
    announce(addr);
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(l).expect("listener");
                    loop {
                        if let Ok((stream, _)) = listener.accept().await {
                            tokio::spawn(tokio_conn(stream));
                        }
                    }
                });
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// `threads` blocking clients, each in a loop: connect, one 64-byte echo round trip, close.
/// Prints connections per second and the server's CPU per connection. The client closes
/// with RST (`SO_LINGER` 0), so no `TIME_WAIT` is left on either side: with ordinary closes
/// the client's `TIME_WAIT`s hold loopback's ~28,000 ephemeral ports, which Linux lets a new
/// connect reuse only a second later (`net.ipv4.tcp_tw_reuse`), and every server measured
/// ~14,000 connections/s, the ports' pace, not its own.
fn churn(args: &Args) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let addr: SocketAddr = args.get("addr", None);
    let threads: usize = args.get("threads", Some(4));
    let secs: f64 = args.get("secs", Some(3.0));
    let warmup: f64 = args.get("warmup-secs", Some(1.0));
    let server_pid: u32 = args.get("server-pid", Some(0));
    let body = payload(64);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let frame = Arc::new(frame);
    let (done, stop, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            let (frame, done, stop, failed) =
                (frame.clone(), done.clone(), stop.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut back = vec![0u8; frame.len()];
                while !stop.load(Ordering::Relaxed) {
                    let mut once = || -> std::io::Result<()> {
                        let mut s = std::net::TcpStream::connect(addr)?;
                        s.set_nodelay(true)?;
                        s.write_all(&frame)?;
                        s.read_exact(&mut back)?;
                        // Close with RST: no TIME_WAIT on either side (see the docs above).
                        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                        Ok(())
                    };
                    match once() {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (n0, cpu0, t0) = (
        done.load(Ordering::Relaxed),
        cpu_ticks(server_pid),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (n1, cpu1, wall) = (
        done.load(Ordering::Relaxed),
        cpu_ticks(server_pid),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let n = n1 - n0;
    let cpu = match (cpu0, cpu1) {
        (Some((u0, s0)), Some((u1, s1))) if n > 0 => format!(
            "{:.0}",
            ((u1 + s1) - (u0 + s0)) as f64 / ticks_per_sec() * 1e9 / n as f64
        ),
        _ => "null".into(),
    };
    println!(
        "{{\"threads\":{threads},\"conns\":{n},\"failed\":{},\"secs\":{wall:.3},\
         \"conns_per_s\":{:.0},\"server_cpu_ns_per_conn\":{cpu}}}",
        failed.load(Ordering::Relaxed),
        n as f64 / wall
    );
}

// ----- fan-out: a broker's shape -----------------------------------------------------------
//
// Every message is sent to every *other* connection. The client's first connection publishes
// and the others only read, so their side of TCP sends nothing but ACKs (unlike echo, where
// ACKs ride on the replies). The publisher is held back when a subscriber's queue is full:
// highwater pauses reading it until that subscriber's `on_drain`; tokio awaits the
// subscriber's bounded channel.

#[derive(Default)]
struct Fanout {
    conns: Vec<ConnId>,
    /// Subscribers above high-water, and the publishers paused for them.
    full: std::collections::HashSet<ConnId>,
    paused: Vec<ConnId>,
}

impl Handler for Fanout {
    type Message = RawJson;
    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.conns.push(conn);
    }
    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, _: &highwater::CloseReason) {
        self.conns.retain(|c| *c != conn);
        self.full.remove(&conn);
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, from: ConnId, msg: RawJson) {
        let payload = msg.into_bytes();
        for &c in self.conns.iter().filter(|c| **c != from) {
            if let Ok(highwater::Pressure::High) = ctx.send_payload(c, payload.clone()) {
                self.full.insert(c);
            }
        }
        if !self.full.is_empty() && ctx.pause_reading(from) {
            self.paused.push(from);
        }
    }
    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.full.remove(&conn);
        if self.full.is_empty() {
            for p in self.paused.drain(..) {
                ctx.resume_reading(p);
            }
        }
    }
}

fn highwater_fanout(sndbuf: Option<usize>) {
    let config = Config {
        idle_timeout: None,
        write_timeout: None,
        max_connections: 50_000,
        send_buffer_size: sndbuf,
        ..Config::default()
    };
    let mut reactor = Reactor::new(config, Fanout::default()).expect("reactor");
    let addr = reactor
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    announce(addr);
    reactor.run().expect("run");
}

type Subscribers = std::rc::Rc<std::cell::RefCell<Vec<(u64, tokio::sync::mpsc::Sender<Bytes>)>>>;

async fn tokio_fanout_conn(stream: tokio::net::TcpStream, id: u64, subs: Subscribers) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    // This connection's writer: frames from the channel, fed while more are ready, one flush.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    subs.borrow_mut().push((id, tx));
    tokio::task::spawn_local(async move {
        let mut out = tokio_util::codec::FramedWrite::new(wr, LengthDelimitedCodec::new());
        // tokio-util flushes its write buffer once it holds 8 KiB, so each write is about
        // 8 KiB. PERF_TOKIO_WRITE_BOUNDARY changes that (the small-send-buffer experiment in
        // BENCHMARKS.md writes whole batches, as highwater does).
        if let Some(b) = std::env::var("PERF_TOKIO_WRITE_BOUNDARY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            out.set_backpressure_boundary(b);
        }
        while let Some(frame) = rx.recv().await {
            if out.feed(frame).await.is_err() {
                return;
            }
            while let Ok(frame) = rx.try_recv() {
                if out.feed(frame).await.is_err() {
                    return;
                }
            }
            if SinkExt::<Bytes>::flush(&mut out).await.is_err() {
                return;
            }
        }
    });
    let mut input = tokio_util::codec::FramedRead::new(rd, LengthDelimitedCodec::new());
    while let Some(Ok(frame)) = input.next().await {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&frame).is_err() {
            continue;
        }
        let frame = frame.freeze();
        let targets: Vec<_> = subs
            .borrow()
            .iter()
            .filter(|(i, _)| *i != id)
            .map(|(_, tx)| tx.clone())
            .collect();
        for tx in targets {
            let _ = tx.send(frame.clone()).await;
        }
    }
    subs.borrow_mut().retain(|(i, _)| *i != id);
}

fn tokio_fanout(sndbuf: Option<usize>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        announce(listener.local_addr().expect("addr"));
        let subs = Subscribers::default();
        for id in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            if let Some(size) = sndbuf {
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
            }
            tokio::task::spawn_local(tokio_fanout_conn(stream, id, subs.clone()));
        }
    });
}

/// The client of a fan-out server: `conns - 1` subscribers that count what arrives, then a
/// publisher that streams `size`-byte frames as fast as its own queue allows (send until
/// `Pressure::High`, again on `on_drain`).
struct Streamer {
    addr: SocketAddr,
    frame: Bytes,
    publisher: Option<ConnId>,
    opened: usize,
    subscribers: usize,
    received: u64,
    ready: Sender<()>,
    report: Sender<u64>,
}

impl Streamer {
    fn produce(&mut self, ctx: &mut Context<'_>) {
        let Some(p) = self.publisher else { return };
        while let Ok(highwater::Pressure::Clear) = ctx.send_payload(p, self.frame.clone()) {}
    }
}

impl Handler for Streamer {
    type Message = RawJson;
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if Some(conn) == self.publisher {
            return self.produce(ctx);
        }
        self.opened += 1;
        if self.opened == self.subscribers {
            let _ = self.ready.send(());
        }
    }
    fn on_notify(&mut self, ctx: &mut Context<'_>, what: u64) {
        match what {
            0 => self.publisher = ctx.connect(self.addr).ok(),
            1 => self.received = 0,
            _ => {
                let _ = self.report.send(self.received);
            }
        }
    }
    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if Some(conn) == self.publisher {
            self.produce(ctx);
        }
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {
        self.received += 1;
    }
}

fn stream(args: &Args) {
    let addr: SocketAddr = args.get("addr", None);
    let conns: usize = args.get("conns", Some(2));
    let size: usize = args.get("size", Some(256));
    let secs: f64 = args.get("secs", Some(3.0));
    let warmup: f64 = args.get("warmup-secs", Some(1.0));
    let server_pid: u32 = args.get("server-pid", Some(0));
    if conns < 2 {
        die("--conns: a publisher and at least one subscriber");
    }
    let (ready_tx, ready_rx) = channel();
    let (report_tx, report_rx) = channel();
    let config = Config {
        idle_timeout: None,
        write_timeout: None,
        ..Config::default()
    };
    let streamer = Streamer {
        addr,
        frame: payload(size),
        publisher: None,
        opened: 0,
        subscribers: conns - 1,
        received: 0,
        ready: ready_tx,
        report: report_tx,
    };
    let mut reactor = Reactor::new(config, streamer).expect("reactor");
    // Subscribers first, so the server knows them all before the first frame arrives.
    for _ in 1..conns {
        reactor.connect(addr).expect("connect");
    }
    let handle = reactor.handle();
    std::thread::spawn(move || reactor.run());
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| die("subscribers did not open"));
    handle.notify(0).expect("notify");
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let cpu0 = cpu_ticks(server_pid);
    handle.notify(1).expect("notify");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    handle.notify(2).expect("notify");
    let received = report_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| die("no report"));
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(server_pid);
    let cpu = match (cpu0, cpu1) {
        (Some((u0, s0)), Some((u1, s1))) if received > 0 => format!(
            "{:.0}",
            ((u1 + s1) - (u0 + s0)) as f64 / ticks_per_sec() * 1e9 / received as f64
        ),
        _ => "null".into(),
    };
    println!(
        "{{\"conns\":{conns},\"size\":{size},\"delivered\":{received},\"secs\":{wall:.3},\
         \"delivered_per_s\":{:.0},\"server_cpu_ns_per_delivery\":{cpu}}}",
        received as f64 / wall
    );
    std::process::exit(0);
}

// ----- closed-loop load generator ------------------------------------------------------------

/// A JSON payload of exactly `len` bytes.
fn payload(len: usize) -> Bytes {
    let head = "{\"id\":1,\"pad\":\"";
    let tail = "\"}";
    let pad = len.saturating_sub(head.len() + tail.len());
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}

struct Driver {
    payload: Bytes,
    window: usize,
    conns: usize,
    opened: usize,
    /// Send times of the requests in flight, per connection.
    sent: HashMap<ConnId, VecDeque<Instant>>,
    recording: bool,
    completed: u64,
    latencies_ns: Vec<u32>,
    ready: Sender<()>,
    report: Sender<(u64, Vec<u32>)>,
}

impl Handler for Driver {
    type Message = RawJson;
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.opened += 1;
        let now = Instant::now();
        for _ in 0..self.window {
            let _ = ctx.send_payload(conn, self.payload.clone());
            self.sent.entry(conn).or_default().push_back(now);
        }
        if self.opened == self.conns {
            let _ = self.ready.send(());
        }
    }
    fn on_notify(&mut self, _: &mut Context<'_>, what: u64) {
        if what == 1 {
            self.recording = true;
            self.completed = 0;
            self.latencies_ns.clear();
        } else {
            self.recording = false;
            let _ = self
                .report
                .send((self.completed, std::mem::take(&mut self.latencies_ns)));
        }
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: RawJson) {
        let now = Instant::now();
        let q = self.sent.entry(conn).or_default();
        if let Some(t) = q.pop_front() {
            if self.recording {
                self.completed += 1;
                let ns = now.duration_since(t).as_nanos();
                self.latencies_ns
                    .push(u32::try_from(ns).unwrap_or(u32::MAX));
            }
        }
        let _ = ctx.send_payload(conn, self.payload.clone());
        self.sent.entry(conn).or_default().push_back(now);
    }
}

/// User and system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf reads a configuration value; no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

fn load(args: &Args) {
    let addr: SocketAddr = args.get("addr", None);
    let conns: usize = args.get("conns", Some(64));
    let window: usize = args.get("window", Some(4));
    let size: usize = args.get("size", Some(64));
    let secs: f64 = args.get("secs", Some(3.0));
    let warmup: f64 = args.get("warmup-secs", Some(1.0));
    let server_pid: u32 = args.get("server-pid", Some(0));
    let rcvbuf: usize = args.get("rcvbuf", Some(0));
    // `strace -c -f` on the server over exactly the measured window, summary to this file.
    let strace_out: String = args.get("strace", Some(String::new()));

    let (ready_tx, ready_rx) = channel();
    let (report_tx, report_rx) = channel();
    let config = Config {
        idle_timeout: None,
        write_timeout: None,
        connect_timeout: Some(Duration::from_secs(60)),
        max_connections: 50_000,
        recv_buffer_size: (rcvbuf > 0).then_some(rcvbuf),
        // The client's queue holds `window` requests; never the limit.
        ..Config::default()
    };
    let driver = Driver {
        payload: payload(size),
        window,
        conns,
        opened: 0,
        sent: HashMap::new(),
        recording: false,
        completed: 0,
        latencies_ns: Vec::new(),
        ready: ready_tx,
        report: report_tx,
    };
    let mut reactor = Reactor::new(config, driver).expect("reactor");
    for _ in 0..conns {
        reactor.connect(addr).expect("connect");
    }
    let handle = reactor.handle();
    let client = std::thread::spawn(move || reactor.run());
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| die("connections did not open"));
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let mut strace = (!strace_out.is_empty()).then(|| {
        let child = std::process::Command::new("strace")
            .args(["-c", "-f", "-o", &strace_out, "-p", &server_pid.to_string()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| die(&format!("strace: {e}")));
        // Attached once the server shows a tracer (strace prints nothing we could wait on).
        let status = format!("/proc/{server_pid}/status");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            let traced = std::fs::read_to_string(&status).unwrap_or_default();
            if traced
                .lines()
                .any(|l| l.starts_with("TracerPid:") && !l.ends_with("\t0"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        child
    });
    let cpu0 = cpu_ticks(server_pid);
    handle.notify(1).expect("notify");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    handle.notify(2).expect("notify");
    if let Some(child) = strace.as_mut() {
        // SAFETY: kill sends a signal to a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let _ = child.wait();
    }
    let (done, mut lat) = report_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| die("no report"));
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(server_pid);
    lat.sort_unstable();
    let per_msg = |a: u64, b: u64| match done {
        0 => f64::NAN,
        _ => b.saturating_sub(a) as f64 / ticks_per_sec() * 1e9 / done as f64,
    };
    let (user, sys) = match (cpu0, cpu1) {
        (Some((u0, s0)), Some((u1, s1))) => (per_msg(u0, u1), per_msg(s0, s1)),
        _ => (f64::NAN, f64::NAN),
    };
    // NaN (no server pid) is not JSON: print null.
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.0}")
        } else {
            "null".to_string()
        }
    };
    println!(
        "{{\"conns\":{conns},\"window\":{window},\"size\":{size},\"msgs\":{done},\"secs\":{wall:.3},\
         \"msgs_per_s\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1},\"server_cpu_ns_per_msg\":{},\
         \"server_user_ns_per_msg\":{},\"server_sys_ns_per_msg\":{}}}",
        done as f64 / wall,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        num(user + sys),
        num(user),
        num(sys),
    );
    drop(handle);
    // The client reactor is torn down with the process.
    drop(client);
    std::process::exit(0);
}

// ----- ping-pong: one connection, blocking client ------------------------------------------

fn pingpong(args: &Args) {
    let addr: SocketAddr = args.get("addr", None);
    let count: usize = args.get("count", Some(20_000));
    let size: usize = args.get("size", Some(64));
    let body = payload(size);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut back = vec![0u8; frame.len()];
    let mut lat = Vec::with_capacity(count);
    let warmup = count / 10;
    for i in 0..count + warmup {
        let t = Instant::now();
        s.write_all(&frame).expect("write");
        s.read_exact(&mut back).expect("read");
        if i >= warmup {
            lat.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
        }
    }
    assert_eq!(back, frame, "the echo is the request");
    lat.sort_unstable();
    println!(
        "{{\"count\":{count},\"size\":{size},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1}}}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
    );
}

// ----- the scale sweep's picture -------------------------------------------------------------

/// Reads `KIND {json from load}` lines and draws three panels against the number of busy
/// connections (log scale): server CPU per message, messages/s, p99 latency.
fn plot(args: &Args) {
    use plotters::prelude::*;
    let input: String = args.get("input", None);
    let output: String = args.get("output", None);
    let text = std::fs::read_to_string(&input).unwrap_or_else(|e| die(&format!("{input}: {e}")));
    // kind -> [(log10 conns, cpu ns/msg, msgs/s, p99 ms)]
    let mut series: Vec<(String, Vec<[f64; 4]>)> = Vec::new();
    for line in text.lines() {
        let Some((kind, json)) = line.split_once(' ') else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let point = [
            f("conns").log10(),
            f("server_cpu_ns_per_msg"),
            f("msgs_per_s") / 1000.0,
            f("p99_us") / 1000.0,
        ];
        match series.iter_mut().find(|(k, _)| k == kind) {
            Some((_, pts)) => pts.push(point),
            None => series.push((kind.to_string(), vec![point])),
        }
    }
    let top = |i: usize| {
        let m = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(move |q| q[i]))
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max);
        (m * 1.15).max(1.0)
    };
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q[0]))
        .fold(1.0, f64::max)
        + 0.1;
    let root = SVGBackend::new(&output, (900, 1000)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let panels = root.split_evenly((3, 1));
        let colors = [
            RGBColor(200, 60, 40),
            RGBColor(40, 90, 200),
            RGBColor(60, 150, 60),
        ];
        let captions = [
            "server CPU per message (ns), 64-byte echo, 4 in flight per connection",
            "messages per second (thousands)",
            "p99 round-trip latency (ms)",
        ];
        for (i, area) in panels.iter().enumerate() {
            let mut chart = ChartBuilder::on(area)
                .caption(captions[i], ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.1..xmax, 0.0..top(i + 1))?;
            chart
                .configure_mesh()
                .x_desc("busy connections")
                .x_label_formatter(&|x| format!("{:.0}", 10f64.powf(*x)))
                .draw()?;
            for (j, (kind, pts)) in series.iter().enumerate() {
                let color = colors[j % colors.len()];
                let line: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| (p[0], p[i + 1]))
                    .filter(|p| p.1.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                    .label(kind.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().unwrap_or_else(|e| die(&format!("plot: {e}")));
}
