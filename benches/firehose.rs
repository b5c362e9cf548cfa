//! Two fire hoses and a ping client on one reactor: how long does the ping client wait?
//!
//! ```text
//! cargo bench --bench firehose
//! ```
//!
//! Each hose is a connection the server refills from every `on_drain` (serializing a small
//! JSON record per frame), read by a client thread that takes everything as fast as it comes.
//! Beside them a third client sends one ping at a time and waits for its echo. A reactor that
//! lets a producer keep the turn for as long as its peer keeps up answers the ping only when
//! the turn ends; with a write budget per turn (`WRITES_PER_TURN`), a turn is short whatever
//! the hoses do. Printed: the ping's round trip (p50, p99, worst) and the hoses' throughput.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use highwater::{Config, ConnId, Context, Handler, Pressure, RawJson, Reactor};
use serde_json::{Value, json};

/// How long pings are sent for, after the hoses have warmed up.
const PING_FOR: Duration = Duration::from_secs(5);
/// A ping not answered by then counts as this long and ends the run.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A timer the server re-arms every 10 ms: how late each one fires measures the reactor's
/// turns directly, whatever the client threads' scheduling adds to the ping.
const TICK: Duration = Duration::from_millis(10);

struct FireHose {
    hoses: Vec<ConnId>,
    record: Value,
    tick_due: Instant,
    ticks_late: Vec<Duration>,
}

impl FireHose {
    fn fill(&self, ctx: &mut Context<'_>, conn: ConnId) {
        while let Ok(Pressure::Clear) = ctx.send(conn, &self.record) {}
    }
}

impl Handler for FireHose {
    type Message = RawJson;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.tick_due = ctx.now() + TICK;
        ctx.set_timer(TICK, 0);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: highwater::TimerId, _: u64) {
        self.ticks_late
            .push(Instant::now().saturating_duration_since(self.tick_due));
        self.tick_due = ctx.now() + TICK;
        ctx.set_timer(TICK, 0);
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.hoses.len() < 2 {
            self.hoses.push(conn);
            self.fill(ctx, conn);
        }
    }

    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.hoses.contains(&conn) {
            self.fill(ctx, conn);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let _ = ctx.send_payload(conn, msg.into_bytes()); // the ping's echo
    }
}

/// A client that reads everything as fast as it comes, counting bytes.
fn fast_reader(
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100))).ok();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while !done.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    })
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Reads one frame; `None` if it did not come within the stream's read timeout.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut payload).ok()?;
    Some(payload)
}

struct Row {
    pings: usize,
    p50: Duration,
    p99: Duration,
    worst: Duration,
    unanswered: bool,
    hose_mb_s: f64,
    tick_p99: Duration,
    tick_worst: Duration,
}

fn run(high: usize, low: usize) -> Row {
    let config = Config {
        high_water: high,
        low_water: low,
        ..Config::default()
    };
    let record = json!({
        "users": (0..20)
            .map(|i| json!({"id": i, "name": "someone", "active": true}))
            .collect::<Vec<_>>()
    });
    let mut reactor = Reactor::new(
        config,
        FireHose {
            hoses: Vec::new(),
            record,
            tick_due: Instant::now(),
            ticks_late: Vec::new(),
        },
    )
    .expect("reactor");
    let addr = reactor
        .listen("127.0.0.1:0".parse().unwrap())
        .expect("listen");
    let handle = reactor.handle();
    let server = std::thread::spawn(move || {
        let _ = reactor.run();
        reactor.into_handler()
    });

    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| fast_reader(addr, received.clone(), done.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(500)); // the hoses get going

    let mut ping = TcpStream::connect(addr).expect("connect");
    ping.set_nodelay(true).ok();
    ping.set_read_timeout(Some(PING_TIMEOUT)).ok();
    let mut rtts = Vec::new();
    let mut unanswered = false;
    let (start, bytes_before) = (Instant::now(), received.load(Ordering::Relaxed));
    while start.elapsed() < PING_FOR {
        let sent = Instant::now();
        ping.write_all(&frame(br#"{"ping":1}"#)).expect("ping");
        if read_frame(&mut ping).is_none() {
            rtts.push(PING_TIMEOUT);
            unanswered = true;
            break;
        }
        rtts.push(sent.elapsed());
    }
    let elapsed = start.elapsed();
    let bytes = received.load(Ordering::Relaxed) - bytes_before;

    done.store(true, Ordering::Relaxed);
    let _ = handle.stop();
    for r in readers {
        let _ = r.join();
    }
    let mut ticks = server.join().map(|h| h.ticks_late).unwrap_or_default();
    if ticks.is_empty() {
        ticks.push(Duration::ZERO); // no tick fired at all: the worst column says how late
    }
    ticks.sort();

    rtts.sort();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
    Row {
        pings: rtts.len(),
        p50: at(0.50),
        p99: at(0.99),
        worst: rtts[rtts.len() - 1],
        unanswered,
        hose_mb_s: bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        tick_p99: ticks[((ticks.len() - 1) as f64 * 0.99) as usize],
        tick_worst: ticks[ticks.len() - 1],
    }
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter here.
    println!(
        "two fire hoses (refilled on every on_drain, fast readers) and one ping client, one reactor"
    );
    println!();
    println!(
        "| marks (high / low) | pings | ping p50 | ping p99 | ping worst | 10 ms timer late, p99 / worst | hoses, MB/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (high, low, name) in [
        (16 * 1024, 4 * 1024, "16 KiB / 4 KiB"),
        (256 * 1024, 64 * 1024, "256 KiB / 64 KiB (default)"),
    ] {
        let r = run(high, low);
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms{} | {:.2} / {:.2} ms | {:.0} |",
            r.pings,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.worst.as_secs_f64() * 1e3,
            if r.unanswered { " (unanswered)" } else { "" },
            r.tick_p99.as_secs_f64() * 1e3,
            r.tick_worst.as_secs_f64() * 1e3,
            r.hose_mb_s
        );
    }
}
