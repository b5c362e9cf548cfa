//! The soak: one echo server, a randomized mix of well-behaved and hostile peers for a fixed
//! time, then the checks that every promise held at once. Shared by `tests/soak.rs` (the
//! short run in `cargo test`) and `examples/soak` (the long run, `--minutes N`).
//!
//! Peers are threads with blocking loopback sockets. Each thread draws episodes from its own
//! xorshift generator, seeded from the run's seed and the thread's index, so a failing seed
//! replays the same choices (the interleaving with the reactor still depends on timing).
//! Every episode is bounded by socket timeouts, and no thread starts one after the mix ends.
//!
//! The checks, once every peer has gone:
//! - connection slots and open connections back to zero (polled with a deadline);
//! - the process's descriptor count back to what it was with the server idle;
//! - peak RSS (`VmHWM`) within the queue budgets plus a stated constant;
//! - every reply to a well-behaved client byte-for-byte the frame it sent, in order, and every
//!   error frame the one the contract prescribes, with the right figures in it;
//! - optionally ([`Plan::max_reply_wait`], [`Plan::expect_no_timers`]): no echo reply later
//!   than a bound, and an empty timer heap once every connection has gone.
//!
//! The server runs in this process so its figures can be read; the price is that the peers'
//! threads and buffers count in the RSS too, which is what [`Plan::rss_constant_kb`] covers.
#![allow(dead_code)] // the test and the example each use a part

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use highwater::{
    Config, ConnId, Context, Handler, RawJson, ReactorFigures, ReactorGroup, process_figures,
};
use serde_json::Value;

// ----- a seeded generator -------------------------------------------------------------------

/// xorshift64*: tiny, fast, and enough to pick episodes; not for anything cryptographic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; any seed (zero included) gives a usable state.
    pub fn new(seed: u64) -> Rng {
        // One splitmix64 step spreads nearby seeds (seed, seed + 1, ...) far apart.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo as usize, hi as usize) as u64)
    }
}

/// A seed from the clock, for runs that were not given one.
pub fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Rng::new(t.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64()
}

// ----- the plan ---------------------------------------------------------------------------

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Seeds every peer's generator; printed so a failure can be replayed.
    pub seed: u64,
    /// How long peers keep starting episodes.
    pub mix: Duration,
    /// Peer threads. A quarter of them only ever run well-behaved echo clients.
    pub peers: usize,
    /// Reactors serving the one address.
    pub reactors: usize,
    /// The server's configuration (see [`soak_config`]).
    pub config: Config,
    /// Peak RSS may exceed the RSS before the server started by the queue budgets plus this.
    pub rss_constant_kb: u64,
    /// Print a progress line this often (the long run).
    pub progress: Option<Duration>,
    /// How often each kind is drawn ([`WEIGHTS`] unless changed).
    pub weights: [u64; 10],
    /// A reply to a well-behaved echo client waiting longer than this (from sending its
    /// frame) is a broken promise. Beyond 10 s the client gives up in any case.
    pub max_reply_wait: Option<Duration>,
    /// Whether the timer heap must be empty once every connection has gone (issue 9 item 3:
    /// memory proportional to connections open, not opened).
    pub expect_no_timers: bool,
    /// How long slow readers and pinners keep their connection (drawn between the two):
    /// the longer, the longer they hold their queues (and the budget) without reading.
    pub hold: (Duration, Duration),
    /// Run the peers against this server instead of starting one in this process (it must
    /// be configured like [`Plan::config`]). Only the peers' checks apply then: replies and
    /// error frames, not slots, descriptors or RSS, which are the other process's.
    pub server: Option<SocketAddr>,
}

/// The default [`Plan::hold`]: 0.2 to 2 s.
pub const HOLD: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(2000));

/// `name=weight,...` over `base`: over [`WEIGHTS`], `pinner=40,echo=0` makes pinners most
/// of the mix; over zeros, `pinner=1` makes it all pinners.
pub fn parse_weights(spec: &str, base: [u64; 10]) -> Result<[u64; 10], String> {
    let mut w = base;
    for item in spec.split(',').filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected kind=weight"))?;
        let kind = KINDS
            .iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| format!("{name:?}: not a kind"))?;
        w[kind.index()] = value.parse().map_err(|e| format!("{item:?}: {e}"))?;
    }
    Ok(w)
}

/// Limits small enough that the mix reaches every one of them within seconds.
pub fn soak_config() -> Config {
    Config {
        high_water: 64 * 1024,
        low_water: 16 * 1024,
        max_frame: 256 * 1024,
        // Small enough that slow readers and pinners reach it and pause everyone.
        queue_budget: Some(512 * 1024),
        max_connections: 64,
        idle_timeout: Some(Duration::from_millis(1000)),
        write_timeout: Some(Duration::from_millis(1000)),
        linger: Duration::from_millis(200),
        // Moves backpressure from the kernel into the counted write queue.
        send_buffer_size: Some(16 * 1024),
        ..Config::default()
    }
}

// ----- what peers do -----------------------------------------------------------------------

/// The kinds of peer in the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pipelines frames and checks every reply, byte for byte, in order.
    Echo,
    /// Small receive buffer; sends until paused, then never reads or reads a trickle.
    SlowReader,
    /// Never reads; alternates a large invalid frame with a ~9 KiB valid one (echoed without
    /// a copy): the read-buffer pinning attack of issue 9.
    Pinner,
    /// A byte at a time: either too slowly to finish a frame (closed by the idle timeout) or
    /// just fast enough (served).
    Slowloris,
    /// Announces a frame, sends part of it, resets.
    ResetMidFrame,
    /// Sends large frames, reads part of the first reply, resets.
    ResetMidReply,
    /// Connects and closes, resets, or truncates, many times over.
    Churn,
    /// A length prefix above the max frame: expects `frame_too_large` and a close.
    Oversized,
    /// Invalid payloads between valid ones: expects `invalid_json` for each, the connection
    /// kept, the valid ones echoed in order.
    Invalid,
    /// Opens more connections than `max_connections` at once: expects `busy` for the excess.
    Flood,
}

const KINDS: [Kind; 10] = [
    Kind::Echo,
    Kind::SlowReader,
    Kind::Pinner,
    Kind::Slowloris,
    Kind::ResetMidFrame,
    Kind::ResetMidReply,
    Kind::Churn,
    Kind::Oversized,
    Kind::Invalid,
    Kind::Flood,
];

/// How often each kind is drawn, in the order of [`KINDS`] (peers that only ever run echo
/// clients come on top of these: see [`Plan::peers`]).
pub const WEIGHTS: [u64; 10] = [25, 10, 5, 8, 8, 8, 10, 8, 12, 3];

impl Kind {
    fn index(self) -> usize {
        KINDS.iter().position(|&k| k == self).unwrap_or(0)
    }

    /// The name used in the summary and by [`parse_weights`].
    pub fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::SlowReader => "slow_reader",
            Kind::Pinner => "pinner",
            Kind::Slowloris => "slowloris",
            Kind::ResetMidFrame => "reset_mid_frame",
            Kind::ResetMidReply => "reset_mid_reply",
            Kind::Churn => "churn",
            Kind::Oversized => "oversized",
            Kind::Invalid => "invalid",
            Kind::Flood => "flood",
        }
    }

    fn draw(rng: &mut Rng, weights: &[u64; 10]) -> Kind {
        let mut n = rng.next_u64() % weights.iter().sum::<u64>().max(1);
        for (k, &w) in KINDS.iter().zip(weights) {
            if n < w {
                return *k;
            }
            n -= w;
        }
        Kind::Echo
    }
}

/// Counts kept by the peers.
#[derive(Default)]
struct Tally {
    /// Connections made, per kind.
    connections: [AtomicU64; 10],
    /// Episodes run, per kind.
    episodes: [AtomicU64; 10],
    /// Echo replies compared byte for byte with what was sent.
    replies_checked: AtomicU64,
    /// Well-behaved frames sent (each must come back).
    frames_sent: AtomicU64,
    too_large: AtomicU64,
    invalid_json: AtomicU64,
    busy: AtomicU64,
    idle_timeout: AtomicU64,
    /// Slowloris connections closed without the (best-effort) `idle_timeout` frame.
    idle_silent: AtomicU64,
    /// Too-slow slowloris frames that completed anyway (budget pauses stop the idle clock).
    slow_survived: AtomicU64,
    /// Echo clients' waits for each reply (from sending the frame), by [`WAIT_BUCKETS_MS`].
    waits: [AtomicU64; WAIT_BUCKETS_MS.len() + 1],
    /// The longest such wait, in microseconds.
    worst_wait_us: AtomicU64,
    /// Replies that waited longer than [`Plan::max_reply_wait`].
    late: AtomicU64,
}

/// Upper bounds of the reply-wait histogram's buckets (the last bucket is everything above).
const WAIT_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

impl Tally {
    fn wait(&self, d: Duration, limit: Option<Duration>) {
        let ms = d.as_millis() as u64;
        let bucket = WAIT_BUCKETS_MS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(WAIT_BUCKETS_MS.len());
        add(&self.waits[bucket], 1);
        self.worst_wait_us
            .fetch_max(d.as_micros() as u64, Ordering::Relaxed);
        if limit.is_some_and(|l| d > l) {
            add(&self.late, 1);
        }
    }

    /// The bucket bound under which 99% of the waits fell ("<Nms"), or ">5000ms".
    fn p99(&self) -> String {
        let counts: Vec<u64> = self.waits.iter().map(get).collect();
        let all: u64 = counts.iter().sum();
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if all > 0 && seen * 100 >= all * 99 {
                return match WAIT_BUCKETS_MS.get(i) {
                    Some(b) => format!("<{b}ms"),
                    None => format!(">{}ms", WAIT_BUCKETS_MS[WAIT_BUCKETS_MS.len() - 1]),
                };
            }
        }
        "none".into()
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// What every peer thread shares.
struct Field {
    addr: SocketAddr,
    stop_at: Instant,
    max_frame: usize,
    max_connections: usize,
    idle: Option<Duration>,
    max_reply_wait: Option<Duration>,
    hold_ms: (u64, u64),
    /// One flood at a time: two would only measure each other.
    flooding: AtomicBool,
    tally: Tally,
    failures: Mutex<Vec<String>>,
}

/// A broken promise, with enough to find it again.
struct Broken(String);

impl<E: std::fmt::Display> From<E> for Broken {
    fn from(e: E) -> Broken {
        Broken(e.to_string())
    }
}

/// How an episode ended when it did not break a promise.
enum End {
    Done,
    /// The server said `busy` (a flood holds the slots): fine, and counted.
    Busy,
}

type Episode = Result<End, Broken>;

/// Read and write timeout for well-behaved peers: a reply later than this is a failure.
const PATIENCE: Duration = Duration::from_secs(10);

impl Field {
    fn fail(&self, who: &str, msg: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 50 {
            f.push(format!("{who}: {msg}"));
        }
    }

    /// Connects (retrying a refused connect a few times: a full accept backlog is not a broken
    /// promise) and counts the connection for `kind`.
    fn connect(&self, kind: Kind, recv_buf: Option<usize>) -> Result<TcpStream, Broken> {
        let mut last = None;
        for _ in 0..20 {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            if let Some(b) = recv_buf {
                // Before connecting, so the window advertised in the handshake is small.
                socket.set_recv_buffer_size(b)?;
            }
            match socket.connect(&self.addr.into()) {
                Ok(()) => {
                    add(&self.tally.connections[kind.index()], 1);
                    let s: TcpStream = socket.into();
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(PATIENCE))?;
                    s.set_write_timeout(Some(PATIENCE))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Broken(format!("could not connect: {last:?}")))
    }

    /// Whether `payload` is the contract's `busy` frame; a `busy` with the wrong limit is a
    /// broken promise.
    fn is_busy(&self, payload: &[u8]) -> Result<bool, Broken> {
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return Ok(false);
        };
        if v["error"] != "busy" {
            return Ok(false);
        }
        if v["limit"] != self.max_connections {
            return Err(Broken(format!("busy with the wrong limit: {v}")));
        }
        add(&self.tally.busy, 1);
        Ok(true)
    }
}

// ----- wire helpers -------------------------------------------------------------------------

/// Header + payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Reads one frame; `Ok(None)` at a clean end of stream between frames.
fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
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

/// The first complete frame in `buf`, if there is one.
fn first_frame(buf: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    buf.get(4..4 + len)
}

/// Expects the server to close: end of stream or a reset, and nothing else.
fn expect_closed(s: &mut TcpStream) -> Result<(), Broken> {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Ok(n) => Err(Broken(format!(
            "expected a close, got {n} more bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ))),
        Err(e) => Err(Broken(format!("expected a close, got {e}"))),
    }
}

/// Turns the close into a RST.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A valid JSON payload, unique per (peer, sequence): mostly small, sometimes above the write
/// queue's copy threshold (8 KiB) so it is echoed as a slice of the read buffer.
fn payload(rng: &mut Rng, tag: &str, seq: u64) -> Vec<u8> {
    let len = match rng.next_u64() % 20 {
        0 => rng.range(8 * 1024 + 1, 24 * 1024),
        1..=5 => rng.range(500, 4000),
        _ => rng.range(0, 500),
    };
    let fill = char::from(b'a' + (rng.next_u64() % 26) as u8);
    format!(
        r#"{{"t":"{tag}","s":{seq},"p":"{}"}}"#,
        fill.to_string().repeat(len)
    )
    .into_bytes()
}

fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
    format!("{s}… ({} bytes)", b.len())
}

// ----- the episodes -------------------------------------------------------------------------

/// Pipelines up to 48 KiB of frames (below high-water, so the server never pauses us for our
/// own replies) and checks each reply against the oldest outstanding frame.
fn echo(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    const WINDOW: usize = 48 * 1024;
    let frames = rng.range(20, 300) as u64;
    let mut s = f.connect(Kind::Echo, None)?;
    let mut outstanding: VecDeque<(Vec<u8>, Instant)> = VecDeque::new();
    let (mut window, mut sent, mut got) = (0usize, 0u64, 0u64);
    while got < frames {
        while sent < frames && window < WINDOW {
            let p = payload(rng, tag, sent);
            if let Err(e) = s.write_all(&frame(&p)) {
                // A `busy` connection may be closed before we finish writing: look for it.
                return busy_or(f, &mut s, got, format!("write {sent}: {e}"));
            }
            window += p.len();
            outstanding.push_back((p, Instant::now()));
            sent += 1;
        }
        let reply = match read_frame(&mut s) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Broken(format!("closed after {got} of {frames} replies"))),
            Err(e) => return Err(Broken(format!("reply {got} of {frames}: {e}"))),
        };
        let (want, sent_at) = outstanding
            .pop_front()
            .unwrap_or_else(|| (Vec::new(), Instant::now()));
        if reply != want {
            if got == 0 && f.is_busy(&reply)? {
                return Ok(End::Busy);
            }
            return Err(Broken(format!(
                "reply {got} differs: sent {}, got {}",
                preview(&want),
                preview(&reply)
            )));
        }
        f.tally.wait(sent_at.elapsed(), f.max_reply_wait);
        window -= want.len();
        got += 1;
        add(&f.tally.replies_checked, 1);
    }
    add(&f.tally.frames_sent, sent);
    if rng.chance(50) {
        // Half-close and expect the server to close after the last reply: nothing extra.
        s.shutdown(Shutdown::Write)?;
        expect_closed(&mut s)?;
    }
    Ok(End::Done)
}

/// After a write failed: a `busy` frame explains it if no reply has been seen yet.
fn busy_or(f: &Field, s: &mut TcpStream, got: u64, what: String) -> Episode {
    if got == 0 {
        if let Ok(Some(p)) = read_frame(s) {
            if f.is_busy(&p)? {
                return Ok(End::Busy);
            }
        }
    }
    Err(Broken(what))
}

/// Sends until the server stops reading (its write queue is above high-water), then either
/// never reads, or reads a trickle and checks what arrives is the echo of what was sent.
fn slow_reader(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    let mut s = f.connect(Kind::SlowReader, Some(4096))?;
    // A blocked write means the server paused us: that is the point, so stop writing.
    s.set_write_timeout(Some(Duration::from_millis(200)))?;
    let mut expected = Vec::new();
    for seq in 0..rng.range(20, 200) as u64 {
        let wire = frame(&payload(rng, tag, seq));
        if s.write_all(&wire).is_err() {
            break;
        }
        expected.extend_from_slice(&wire);
    }
    let hold = rng.millis(f.hold_ms.0, f.hold_ms.1);
    if rng.chance(50) {
        std::thread::sleep(hold);
    } else {
        // 512 bytes every 5-20 ms: often too slow to drain before the write timeout.
        let pause = rng.millis(5, 20);
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let start = Instant::now();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 512];
        while start.elapsed() < hold {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
            std::thread::sleep(pause);
        }
        if let Some(p) = first_frame(&seen) {
            if !expected.starts_with(p) && f.is_busy(p)? {
                return Ok(End::Busy);
            }
        }
        // The echo of what was sent, frame by frame; then, once we stopped sending and the
        // queue emptied, possibly the idle timeout's frame (we complete no more frames).
        let echoed = echoed_prefix(&expected, &seen);
        let rest = &seen[echoed..];
        let idle = frame(IDLE_TIMEOUT);
        if !idle.starts_with(rest) {
            return Err(Broken(format!(
                "read {} bytes: the first {echoed} echo the {} sent, then {}",
                seen.len(),
                expected.len(),
                preview(rest)
            )));
        }
        if !rest.is_empty() {
            add(&f.tally.idle_timeout, 1);
        }
        add(&f.tally.replies_checked, count_frames(&seen[..echoed]));
    }
    if rng.chance(50) {
        reset(s);
    }
    Ok(End::Done)
}

/// The idle timeout's error frame, exactly as the contract writes it.
const IDLE_TIMEOUT: &[u8] = br#"{"error":"idle_timeout"}"#;

/// How much of `seen` echoes `sent`: the longest common prefix, cut back to a frame boundary
/// of `sent` unless `seen` ends inside that frame (a reply still arriving).
fn echoed_prefix(sent: &[u8], seen: &[u8]) -> usize {
    let common = sent.iter().zip(seen).take_while(|(a, b)| a == b).count();
    if common == seen.len() {
        return common;
    }
    let mut at = 0;
    while let Some(p) = first_frame(&sent[at..]) {
        if at + 4 + p.len() > common {
            break;
        }
        at += 4 + p.len();
    }
    at
}

/// Complete frames at the start of `buf`.
fn count_frames(mut buf: &[u8]) -> u64 {
    let mut n = 0;
    while let Some(p) = first_frame(buf) {
        buf = &buf[4 + p.len()..];
        n += 1;
    }
    n
}

/// Issue 9's pinning attack: a large invalid frame (answered with a small `invalid_json`)
/// then a ~9 KiB valid one (echoed as a slice of the read buffer that held both), never
/// reading.
fn pinner(f: &Field, rng: &mut Rng, _tag: &str) -> Episode {
    let mut s = f.connect(Kind::Pinner, Some(4096))?;
    s.set_write_timeout(Some(Duration::from_millis(200)))?;
    let big = rng.range(f.max_frame / 4, f.max_frame);
    let small = frame(format!("\"{}\"", "p".repeat(9 * 1024)).as_bytes());
    // The large frame goes out in 64 KiB pieces of one buffer, so the peers' own memory (in
    // the same process as the server) does not grow with the max frame.
    let chunk = vec![b'x'; 64 * 1024];
    let write_big = |s: &mut TcpStream| -> io::Result<()> {
        s.write_all(&(big as u32).to_be_bytes())?;
        let mut left = big;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n])?;
            left -= n;
        }
        Ok(())
    };
    for _ in 0..rng.range(5, 40) {
        if write_big(&mut s).is_err() || s.write_all(&small).is_err() {
            break;
        }
    }
    std::thread::sleep(rng.millis(f.hold_ms.0, f.hold_ms.1));
    if rng.chance(50) {
        reset(s);
    }
    Ok(End::Done)
}

/// A byte at a time. Too slow: the idle timeout must close us (with `idle_timeout`, best
/// effort) no sooner than it is set to. Just fast enough: every frame is echoed.
fn slowloris(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    let idle = f.idle.unwrap_or(Duration::from_secs(1));
    let mut s = f.connect(Kind::Slowloris, None)?;
    let start = Instant::now();
    if f.idle.is_none() || rng.chance(40) {
        // Legit but slow: each short frame completes well within the idle timeout.
        for seq in 0..rng.range(1, 3) as u64 {
            let p = format!(r#"{{"t":"{tag}","s":{seq}}}"#).into_bytes();
            let interval = idle / (3 * frame(&p).len() as u32);
            for b in frame(&p) {
                if let Err(e) = s.write_all(&[b]) {
                    return busy_or(f, &mut s, seq, format!("slow write: {e}"));
                }
                std::thread::sleep(interval);
            }
            match read_frame(&mut s) {
                Ok(Some(r)) if r == p => add(&f.tally.replies_checked, 1),
                Ok(Some(r)) if seq == 0 && f.is_busy(&r)? => return Ok(End::Busy),
                other => return Err(Broken(format!("slow frame {seq}: got {other:?}"))),
            }
            add(&f.tally.frames_sent, 1);
        }
        return Ok(End::Done);
    }
    // Too slow: 64 bytes at idle/16 each would take four idle timeouts. The read timeout is
    // the pause between bytes, so a reply is noticed as soon as it comes.
    let wire = frame(format!("\"{}\"", "l".repeat(58)).as_bytes());
    s.set_read_timeout(Some(idle / 16))?;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    let mut closed = false;
    for &b in &wire {
        if s.write_all(&[b]).is_err() {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => closed = true,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => continue,
            Err(_) => closed = true,
        }
        if closed || first_frame(&seen).is_some() {
            break;
        }
    }
    // The rest of the reply, or the close (bounded: paused time does not count, so allow for
    // budget pauses).
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    while !closed && first_frame(&seen).is_none() && start.elapsed() < 4 * idle + PATIENCE {
        match s.read(&mut chunk) {
            Ok(0) => closed = true,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => closed = true,
        }
    }
    let elapsed = start.elapsed();
    match first_frame(&seen) {
        Some(p) if f.is_busy(p)? => return Ok(End::Busy),
        Some(p) if p == IDLE_TIMEOUT => add(&f.tally.idle_timeout, 1),
        // The idle clock stops while the reactor has paused reading (the queue budget pauses
        // every connection), so under a binding budget even this trickle can finish its
        // frame. Then it must be echoed intact.
        Some(p) if p == &wire[4..] => {
            add(&f.tally.slow_survived, 1);
            add(&f.tally.replies_checked, 1);
            return Ok(End::Done);
        }
        Some(p) => return Err(Broken(format!("slowloris got {}", preview(p)))),
        None if closed => add(&f.tally.idle_silent, 1),
        None => return Err(Broken(format!("not closed after {elapsed:?}"))),
    }
    // Ten percent under the setting covers the timer's granularity.
    if elapsed < idle * 9 / 10 {
        return Err(Broken(format!(
            "closed for idleness after only {elapsed:?}"
        )));
    }
    Ok(End::Done)
}

/// Announces a frame, sends part of it, resets; sometimes after one good round trip.
fn reset_mid_frame(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    let mut s = f.connect(Kind::ResetMidFrame, None)?;
    if rng.chance(50) {
        let p = payload(rng, tag, 0);
        s.write_all(&frame(&p))?;
        match read_frame(&mut s)? {
            Some(r) if r == p => add(&f.tally.replies_checked, 1),
            Some(r) if f.is_busy(&r)? => return Ok(End::Busy),
            other => return Err(Broken(format!("echo before the reset: {other:?}"))),
        }
        add(&f.tally.frames_sent, 1);
    }
    let len = rng.range(10, f.max_frame);
    let mut partial = (len as u32).to_be_bytes().to_vec();
    partial.resize(4 + rng.range(0, (len - 1).min(64 * 1024)), b' ');
    let _ = s.write_all(&partial);
    reset(s);
    Ok(End::Done)
}

/// Sends a few large frames, reads part of the first reply, resets.
fn reset_mid_reply(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    let mut s = f.connect(Kind::ResetMidReply, None)?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    for seq in 0..rng.range(2, 8) as u64 {
        let size = rng.range(8 * 1024, 48 * 1024);
        let p = format!(r#"{{"t":"{tag}","s":{seq},"p":"{}"}}"#, "r".repeat(size));
        if s.write_all(&frame(p.as_bytes())).is_err() {
            break;
        }
    }
    let mut some = vec![0u8; rng.range(1, 4096)];
    let _ = s.read(&mut some);
    reset(s);
    Ok(End::Done)
}

/// Many short connections: closed at once, reset at once, one round trip, or truncated.
fn churn(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    for seq in 0..rng.range(5, 40) as u64 {
        let mut s = f.connect(Kind::Churn, None)?;
        match rng.next_u64() % 4 {
            0 => drop(s),
            1 => reset(s),
            2 => {
                let p = format!(r#"{{"t":"{tag}","s":{seq}}}"#).into_bytes();
                s.write_all(&frame(&p))?;
                match read_frame(&mut s)? {
                    Some(r) if r == p => add(&f.tally.replies_checked, 1),
                    Some(r) if f.is_busy(&r)? => {}
                    other => return Err(Broken(format!("churn round trip: {other:?}"))),
                }
                add(&f.tally.frames_sent, 1);
            }
            _ => {
                let _ = s.write_all(&[0, 0]);
            }
        }
    }
    Ok(End::Done)
}

/// A length prefix above the max frame: `frame_too_large` with the limit and the announced
/// length, then a close.
fn oversized(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    let mut s = f.connect(Kind::Oversized, None)?;
    let mut round_trip = false;
    if rng.chance(50) {
        let p = payload(rng, tag, 0);
        s.write_all(&frame(&p))?;
        match read_frame(&mut s)? {
            Some(r) if r == p => add(&f.tally.replies_checked, 1),
            Some(r) if f.is_busy(&r)? => return Ok(End::Busy),
            other => {
                return Err(Broken(format!(
                    "echo before the oversized frame: {other:?}"
                )));
            }
        }
        add(&f.tally.frames_sent, 1);
        round_trip = true;
    }
    let len = f.max_frame as u64 + 1 + rng.next_u64() % (u64::from(u32::MAX) - f.max_frame as u64);
    let mut wire = (len as u32).to_be_bytes().to_vec();
    wire.resize(4 + rng.range(0, 2000), b'[');
    if let Err(e) = s.write_all(&wire) {
        return busy_or(f, &mut s, u64::from(round_trip), format!("write: {e}"));
    }
    let reply = read_frame(&mut s)?.ok_or_else(|| Broken("closed without a reply".into()))?;
    if !round_trip && f.is_busy(&reply)? {
        return Ok(End::Busy);
    }
    let v: Value = serde_json::from_slice(&reply)?;
    if v["error"] != "frame_too_large" || v["limit"] != f.max_frame || v["got"] != len {
        return Err(Broken(format!("announced {len}, got {v}")));
    }
    add(&f.tally.too_large, 1);
    expect_closed(&mut s)?;
    Ok(End::Done)
}

/// Payloads the contract calls invalid: empty, truncated, not JSON, invalid UTF-8, nested
/// deeper than 127, two values.
fn invalid_payload(rng: &mut Rng) -> Vec<u8> {
    match rng.next_u64() % 7 {
        0 => Vec::new(),
        1 => br#"{"a":"#.to_vec(),
        2 => b"nope".to_vec(),
        3 => b"\"\xff\xfe\"".to_vec(),
        4 => {
            let depth = rng.range(128, 400);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        5 => br#"{"a":1}{"b":2}"#.to_vec(),
        _ => vec![b'x'; rng.range(1, 64 * 1024)],
    }
}

/// Invalid payloads between valid ones, pipelined: each invalid one gets `invalid_json`,
/// each valid one its echo, in order, on the same connection.
fn invalid(f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    let mut s = f.connect(Kind::Invalid, None)?;
    let mut expected: VecDeque<Option<Vec<u8>>> = VecDeque::new();
    let mut wire = Vec::new();
    for seq in 0..rng.range(5, 30) as u64 {
        if rng.chance(40) {
            wire.extend_from_slice(&frame(&invalid_payload(rng)));
            expected.push_back(None);
        } else {
            let p = payload(rng, tag, seq);
            wire.extend_from_slice(&frame(&p));
            expected.push_back(Some(p));
        }
    }
    // Written from another thread: the replies to ~1 MiB of requests need reading meanwhile.
    let mut writer = s.try_clone()?;
    let sender = std::thread::spawn(move || writer.write_all(&wire));
    let mut got = 0;
    let result = (|| {
        while let Some(want) = expected.pop_front() {
            let reply =
                read_frame(&mut s)?.ok_or_else(|| Broken(format!("closed after {got} replies")))?;
            match want {
                Some(p) if p == reply => {
                    add(&f.tally.replies_checked, 1);
                    add(&f.tally.frames_sent, 1);
                }
                _ if got == 0 && f.is_busy(&reply)? => return Ok(End::Busy),
                None => {
                    let v: Value = serde_json::from_slice(&reply)?;
                    if v["error"] != "invalid_json" || !v["detail"].is_string() {
                        return Err(Broken(format!("reply {got}: want invalid_json, got {v}")));
                    }
                    add(&f.tally.invalid_json, 1);
                }
                Some(p) => {
                    return Err(Broken(format!(
                        "reply {got}: sent {}, got {}",
                        preview(&p),
                        preview(&reply)
                    )));
                }
            }
            got += 1;
        }
        Ok(End::Done)
    })();
    // On a busy close the writer may fail; unblock it in any case.
    let _ = s.shutdown(Shutdown::Both);
    let _ = sender.join();
    result
}

/// More connections than allowed at once: at least the excess must get `busy` (other peers
/// hold slots too, so possibly more); the ones let in stay silent or get `idle_timeout`.
fn flood(f: &Field, rng: &mut Rng, _tag: &str) -> Episode {
    if f.flooding.swap(true, Ordering::AcqRel) {
        return Ok(End::Done); // someone else is flooding
    }
    let result = (|| {
        let n = f.max_connections + rng.range(4, 16);
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let s = f.connect(Kind::Flood, None)?;
            s.set_nonblocking(true)?;
            conns.push((s, Vec::new(), false));
        }
        let need = n - f.max_connections;
        let deadline = Instant::now() + PATIENCE;
        // A flood connection let in and then closed for idleness (or reset) frees its slot
        // for a later one: each such close lowers the number of `busy` owed by one.
        let (mut busy, mut freed) = (0, 0);
        while busy + freed < need {
            if Instant::now() > deadline {
                return Err(Broken(format!(
                    "{busy} busy of {n} ({freed} let in and closed), expected at least {need}"
                )));
            }
            for (s, buf, done) in conns.iter_mut().filter(|c| !c.2) {
                let mut chunk = [0u8; 256];
                let closed = match s.read(&mut chunk) {
                    Ok(0) => true,
                    Ok(k) => {
                        buf.extend_from_slice(&chunk[..k]);
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                    Err(_) => true,
                };
                if closed && first_frame(buf).is_none() {
                    freed += 1;
                    *done = true;
                }
                if let Some(p) = first_frame(buf) {
                    if f.is_busy(p)? {
                        busy += 1;
                    } else if p == IDLE_TIMEOUT {
                        add(&f.tally.idle_timeout, 1);
                        freed += 1;
                    } else {
                        return Err(Broken(format!("flood got {}", preview(p))));
                    }
                    *done = true;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (s, _, _) in conns {
            if rng.chance(30) {
                reset(s);
            }
        }
        Ok(End::Done)
    })();
    f.flooding.store(false, Ordering::Release);
    result
}

fn run_episode(kind: Kind, f: &Field, rng: &mut Rng, tag: &str) -> Episode {
    match kind {
        Kind::Echo => echo(f, rng, tag),
        Kind::SlowReader => slow_reader(f, rng, tag),
        Kind::Pinner => pinner(f, rng, tag),
        Kind::Slowloris => slowloris(f, rng, tag),
        Kind::ResetMidFrame => reset_mid_frame(f, rng, tag),
        Kind::ResetMidReply => reset_mid_reply(f, rng, tag),
        Kind::Churn => churn(f, rng, tag),
        Kind::Oversized => oversized(f, rng, tag),
        Kind::Invalid => invalid(f, rng, tag),
        Kind::Flood => flood(f, rng, tag),
    }
}

/// One peer thread: episodes until the mix ends. A well-behaved peer told `busy` retries
/// after a short pause (the flood will pass).
fn peer(f: &Field, seed: u64, index: usize, weights: &[u64; 10]) {
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let echo_only = index % 4 == 0;
    let mut n = 0u64;
    while Instant::now() < f.stop_at {
        let kind = if echo_only {
            Kind::Echo
        } else {
            Kind::draw(&mut rng, weights)
        };
        let tag = format!("p{index}e{n}");
        add(&f.tally.episodes[kind.index()], 1);
        match run_episode(kind, f, &mut rng, &tag) {
            Ok(End::Done) => {}
            Ok(End::Busy) => std::thread::sleep(rng.millis(10, 100)),
            Err(Broken(msg)) => f.fail(&format!("peer {index} episode {n} ({})", kind.name()), msg),
        }
        n += 1;
    }
}

// ----- the run ------------------------------------------------------------------------------

/// The echo server's handler: the `server` example's echo path (zero-copy `send_payload`).
struct Echo;

impl Handler for Echo {
    type Message = RawJson;

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        // Fails only when the connection is closing.
        let _ = ctx.send_payload(conn, msg.into_bytes());
    }
}

/// What a run found.
pub struct Outcome {
    /// Broken promises, each with the peer and episode; empty when everything held.
    pub failures: Vec<String>,
    /// One line: connections per kind, replies checked, peak RSS, final figures.
    pub summary: String,
}

fn total(group: Option<&ReactorGroup<Echo>>) -> Option<ReactorFigures> {
    let each = group?.figures();
    each.iter()
        .all(Option::is_some)
        .then(|| each.iter().flatten().sum())
}

/// Starts the server, runs the mix, waits for every peer, then checks the promises.
pub fn run(plan: &Plan) -> Outcome {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+), so the peak
    // measured below is this run's, not that of whatever ran before it in the process.
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = process_figures().rss_kb.unwrap_or(0);
    let group = match plan.server {
        Some(_) => None,
        None => match ReactorGroup::start(
            plan.reactors,
            plan.config.clone(),
            "127.0.0.1:0".parse().expect("address literal"),
            |_| Echo,
        ) {
            Ok(g) => Some(g),
            Err(e) => {
                return Outcome {
                    failures: vec![format!("server did not start: {e}")],
                    summary: String::new(),
                };
            }
        },
    };
    let addr = match (&group, plan.server) {
        (Some(g), _) => g.local_addr(),
        (None, Some(a)) => a,
        (None, None) => unreachable!("a server is started when none is given"),
    };
    // With the server idle: its listener, pollers and wakers are part of the baseline.
    let fds_before = process_figures().open_fds.unwrap_or(0);
    let start = Instant::now();
    let field = Arc::new(Field {
        addr,
        stop_at: start + plan.mix,
        max_frame: plan.config.max_frame,
        max_connections: plan.config.max_connections,
        idle: plan.config.idle_timeout,
        max_reply_wait: plan.max_reply_wait,
        hold_ms: (
            plan.hold.0.as_millis() as u64,
            plan.hold.1.as_millis().max(plan.hold.0.as_millis()) as u64,
        ),
        flooding: AtomicBool::new(false),
        tally: Tally::default(),
        failures: Mutex::new(Vec::new()),
    });
    let threads: Vec<_> = (0..plan.peers)
        .map(|i| {
            let f = field.clone();
            let (seed, weights) = (plan.seed, plan.weights);
            std::thread::Builder::new()
                .name(format!("soak-peer-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || peer(&f, seed, i, &weights))
        })
        .collect();
    let mut failures = Vec::new();
    if let Some(every) = plan.progress {
        let mut next = start + every;
        while Instant::now() < field.stop_at {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next {
                next += every;
                let figures = total(group.as_ref()).map_or("-".into(), |t| t.to_string());
                eprintln!(
                    "soak t={:>4}s replies_checked={} {figures} {}",
                    start.elapsed().as_secs(),
                    get(&field.tally.replies_checked),
                    process_figures()
                );
            }
        }
    }
    for t in threads {
        match t.map(|t| t.join()) {
            Ok(Ok(())) => {}
            Ok(Err(_)) => failures.push("a peer thread panicked".to_string()),
            Err(e) => failures.push(format!("a peer thread did not start: {e}")),
        }
    }
    let mixed = start.elapsed();

    // Every slot freed: lingering closes and timeouts take up to about a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    let last = loop {
        if group.is_none() {
            break None; // another process's server: its figures are not ours to read
        }
        let t = total(group.as_ref());
        if let Some(t) = t.filter(|t| t.connection_slots == 0 && t.open_connections == 0) {
            break Some(t);
        }
        if Instant::now() > deadline {
            failures.push(format!("connections left after 15 s: {t:?}"));
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(t) = last {
        if t.queued_bytes != 0 || t.lingering_connections != 0 {
            failures.push(format!("left queued or lingering: {t}"));
        }
        if plan.expect_no_timers && t.timers != 0 {
            failures.push(format!(
                "{} timers left in the heap with no connection open",
                t.timers
            ));
        }
    }
    let drained = start.elapsed() - mixed;
    // Descriptors: the reactors close the last sockets as they free the slots.
    let deadline = Instant::now() + Duration::from_secs(5);
    let fds_after = loop {
        let n = process_figures().open_fds.unwrap_or(0);
        if group.is_none() || n <= fds_before || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if group.is_some() && fds_after > fds_before {
        failures.push(format!(
            "descriptors: {fds_after} open, {fds_before} before the mix"
        ));
    }
    let process = process_figures();
    let peak_growth = process.peak_rss_kb.unwrap_or(0).saturating_sub(rss_before);
    let budgets_kb = plan.config.queue_budget.unwrap_or(0) as u64 * plan.reactors as u64 / 1024;
    let bound = budgets_kb + plan.rss_constant_kb;
    if group.is_none() {
        // The memory that counts is the other process's.
    } else if !peak_reset {
        failures.push("could not reset VmHWM (/proc/self/clear_refs): no peak to check".into());
    } else if peak_growth > bound {
        failures.push(format!(
            "peak RSS grew {peak_growth} KiB: more than the budgets ({budgets_kb} KiB) + {} KiB",
            plan.rss_constant_kb
        ));
    }
    let t = &field.tally;
    if get(&t.late) > 0 {
        failures.push(format!(
            "{} replies to well-behaved clients waited longer than {:?} (the longest {} ms)",
            get(&t.late),
            plan.max_reply_wait.unwrap_or_default(),
            get(&t.worst_wait_us) / 1000
        ));
    }
    if get(&t.replies_checked) == 0 {
        failures.push("no reply was checked: the mix did not run".into());
    }
    failures.extend(
        field
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    if let Some(group) = group {
        group.shutdown(Duration::from_secs(1));
        if group.join().is_err() {
            failures.push("the server did not shut down cleanly".into());
        }
    }

    let per_kind: Vec<String> = KINDS
        .iter()
        .map(|k| {
            format!(
                "{}={}/{}",
                k.name(),
                get(&t.episodes[k.index()]),
                get(&t.connections[k.index()])
            )
        })
        .collect();
    let summary = format!(
        "soak seed={:#x} peers={} reactors={} mix={:.1}s drain={:.2}s | episodes/connections: {} | \
         replies_checked={} error_frames: frame_too_large={} invalid_json={} busy={} idle_timeout={} \
         idle_closed_silently={} slowloris_finished_anyway={} | echo reply wait: p99 {} max {}ms | rss_before={}KiB peak_growth={}KiB bound={}KiB | fds before={} after={} | final: {}",
        plan.seed,
        plan.peers,
        plan.reactors,
        mixed.as_secs_f64(),
        drained.as_secs_f64(),
        per_kind.join(" "),
        get(&t.replies_checked),
        get(&t.too_large),
        get(&t.invalid_json),
        get(&t.busy),
        get(&t.idle_timeout),
        get(&t.idle_silent),
        get(&t.slow_survived),
        t.p99(),
        get(&t.worst_wait_us) / 1000,
        rss_before,
        peak_growth,
        bound,
        fds_before,
        fds_after,
        last.map_or("unknown".into(), |l| format!(
            "slots={} {l} accept_errors={} timers={}",
            l.connection_slots, l.accept_errors, l.timers
        )),
    );
    Outcome { failures, summary }
}
