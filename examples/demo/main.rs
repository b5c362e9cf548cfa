//! The backpressure chain, live: a fast producer and a slow consumer in one process, on two
//! reactors on two threads, over loopback.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! The consumer "processes" in bursts, like the article's server: after every
//! `--process-every` messages it stops reading for `--process-ms`. The producer sends the
//! contract's sample frames and obeys its write queue's high-water mark. Every 250 ms a row
//! shows each link of the chain, in the order the pressure travels back:
//!
//! consumer paused → unread bytes pile up in its kernel buffer → the window it advertises
//! shrinks to 0 → the producer's kernel send buffer fills (WRITABLE interest stays on) → the
//! producer's queue reaches high-water → the producer stops; and forward again on resume.
//!
//! At the end it says in words what happened and writes an SVG plot of the same series.
//!
//! `--via-relay` puts the `relay` example's handler (examples/relay/relay.rs) between them, on
//! a third reactor: producer → relay → slow consumer. The table and the plot then show the
//! relay's two queues, and the story follows the pressure across the hop: the consumer stops,
//! the relay's upstream queue fills, the relay stops reading the producer (a link), the
//! producer's window closes, the producer stops.

#[path = "../common/mod.rs"]
mod common;
mod plot;
#[path = "../relay/relay.rs"]
mod relay;
mod story;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use highwater::{
    CloseReason, Config, ConnFigures, ConnId, Context, Handle, Handler, PauseReason, Pressure,
    RawJson, Reactor, TimerId,
};
use serde_json::Value;

use clap::Parser;
use common::cli;
use common::units::{Millis, Secs, Size};

/// The backpressure chain, live: a fast producer and a slow consumer in one process, each on
/// its own reactor, and every link between them sampled, printed and plotted.
///
/// Sizes take bytes or units (131072, 128KiB); durations the unit in the flag's name or their
/// own (--process-ms 1500 or 1.5s, --seconds 10 or 500ms).
#[derive(Parser, Debug)]
#[command(name = "demo", version)]
struct Cli {
    /// How long the producer produces
    #[arg(long, value_name = "S", default_value = "10s")]
    seconds: Secs,
    /// Sample records per frame (50 make a ~61 KB frame)
    #[arg(long, value_name = "K", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// The producer's rate in MB/s (0 = as fast as it is allowed)
    #[arg(long, value_name = "MB_PER_S", default_value_t = 2.0)]
    rate_mb: f64,
    #[command(flatten)]
    marks: cli::Marks,
    /// SO_RCVBUF / SO_SNDBUF for both sockets (0 = the kernel's auto-tuning)
    #[arg(long, value_name = "BYTES", default_value = "128KiB")]
    kernel_buffer: Size,
    /// The consumer pauses after every N messages
    #[arg(long, value_name = "N", default_value_t = 40,
          value_parser = clap::value_parser!(u64).range(1..))]
    process_every: u64,
    /// How long each pause lasts
    #[arg(long, value_name = "MS", default_value = "1500ms")]
    process_ms: Millis,
    /// Where to write the SVG plot
    #[arg(long, value_name = "PATH", default_value = "target/highwater-demo.svg")]
    svg: String,
    /// Run producer → relay → slow consumer, the relay on a third reactor (same marks and
    /// kernel buffers), and follow the pressure across the hop
    #[arg(long)]
    via_relay: bool,
}

/// How often the links are sampled; every tenth sample is printed.
const SAMPLE: Duration = Duration::from_millis(25);
const PRINT_EVERY: usize = 10;

/// What the two handlers tell the main thread (times in seconds since start).
#[derive(Default)]
pub struct Board {
    pub producer_conn: Option<ConnId>,
    pub consumer_conn: Option<ConnId>,
    pub generating: bool,
    pub sent: u64,
    /// When the producer got `Pressure::High` and when the drain that followed came.
    pub stops: Vec<f64>,
    pub drains: Vec<f64>,
    pub reading: bool,
    pub processed: u64,
    pub pauses: Vec<f64>,
    pub resumes: Vec<f64>,
    pub confirmed: Option<u64>,
    /// `--via-relay`: the relay's connection from the producer and its own to the consumer.
    pub relay_client: Option<ConnId>,
    pub relay_upstream: Option<ConnId>,
}

type Shared = Arc<Mutex<Board>>;

fn board(shared: &Shared) -> std::sync::MutexGuard<'_, Board> {
    // A panicked handler thread must not hide the summary: use the data anyway.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slow consumer.
struct Consumer {
    every: u64,
    pause: Duration,
    start: Instant,
    board: Shared,
}

impl Handler for Consumer {
    type Message = RawJson;
    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        let mut b = board(&self.board);
        b.consumer_conn = Some(conn);
        b.reading = true;
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: RawJson) {
        let mut b = board(&self.board);
        b.processed += 1;
        if b.processed % self.every == 0 {
            // "Processing": stop reading without blocking the reactor, resume on a timer.
            ctx.pause_reading(conn);
            ctx.set_timer(self.pause, conn.as_u64());
            b.reading = false;
            b.pauses.push(self.start.elapsed().as_secs_f64());
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, data: u64) {
        ctx.resume_reading(ConnId::from_u64(data));
        let mut b = board(&self.board);
        b.reading = true;
        b.resumes.push(self.start.elapsed().as_secs_f64());
    }
    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let processed = board(&self.board).processed;
        let _ = ctx.send(conn, &serde_json::json!({"received": processed}));
        ctx.close(conn);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, _: &CloseReason) {
        ctx.stop();
    }
}

/// The producer: generates frames at `interval` (or as fast as it may, if zero), sends while
/// below high-water, stops on `Pressure::High`, resumes on drain, half-closes once `until`
/// has passed. While stopped, its source is paused: it does not catch up afterwards.
struct Producer {
    frame: Vec<u8>,
    interval: Duration,
    until: Instant,
    start: Instant,
    board: Shared,
}

impl Producer {
    fn produce(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let mut b = board(&self.board);
        b.generating = true;
        loop {
            if ctx.now() >= self.until {
                b.generating = false;
                ctx.close_write(conn);
                return;
            }
            // A fresh buffer per frame, as a real producer's data would be.
            match ctx.send_payload(conn, Bytes::copy_from_slice(&self.frame)) {
                Ok(pressure) => {
                    b.sent += 1;
                    if pressure == Pressure::High {
                        b.generating = false;
                        b.stops.push(self.start.elapsed().as_secs_f64());
                        return; // wait for on_drain
                    }
                }
                Err(e) => {
                    eprintln!("send failed: {e}");
                    ctx.stop();
                    return;
                }
            }
            if !self.interval.is_zero() {
                ctx.set_timer(self.interval, conn.as_u64()); // the next frame's time
                return;
            }
        }
    }
}

impl Handler for Producer {
    type Message = Value;
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        board(&self.board).producer_conn = Some(conn);
        self.produce(ctx, conn);
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, data: u64) {
        if board(&self.board).generating {
            self.produce(ctx, ConnId::from_u64(data));
        }
    }
    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        board(&self.board)
            .drains
            .push(self.start.elapsed().as_secs_f64());
        self.produce(ctx, conn);
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, msg: Value) {
        board(&self.board).confirmed = msg["received"].as_u64();
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, _: &CloseReason) {
        ctx.stop();
    }
}

/// One sample of every link.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub t: f64,
    pub generating: bool,
    pub queue: usize,
    pub writable_interest: bool,
    pub unsent: Option<u32>,
    pub window: Option<u32>,
    pub unread: Option<u32>,
    pub reading: bool,
    pub processed: u64,
    pub rss_kb: u64,
    /// `--via-relay` only: the hop's figures (`window` and `unread` above are then the
    /// producer's window from the relay and the consumer's unread bytes).
    pub relay: Option<RelaySample>,
}

/// The relay's side of one sample.
#[derive(Debug, Clone, Copy)]
pub struct RelaySample {
    /// Whether the relay reads the producer (not paused by the link to the consumer's side).
    pub reading_producer: bool,
    /// Bytes of the producer's that wait unread in the relay's kernel receive buffer.
    pub unread_in: Option<u32>,
    /// The relay's queue toward the consumer, and toward the producer.
    pub upstream_queue: usize,
    pub client_queue: usize,
    /// The window the consumer advertises to the relay.
    pub upstream_window: Option<u32>,
}

/// A connection's figures, read on its reactor's thread.
fn figures(handle: &Handle, conn: Option<ConnId>) -> Option<ConnFigures> {
    let conn = conn?;
    let (tx, rx) = mpsc::channel();
    handle
        .run(move |ctx| {
            let _ = tx.send(ctx.conn_figures(conn));
        })
        .ok()?;
    rx.recv_timeout(Duration::from_secs(1)).ok().flatten()
}

fn kib(v: Option<u32>) -> String {
    v.map_or("?".into(), |v| format!("{:.0}", f64::from(v) / 1024.0))
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Cli::parse();
    let seconds = args.seconds.0.as_secs_f64();
    let records = usize::try_from(args.records).unwrap_or(usize::MAX);
    let rate_mb = args.rate_mb;
    let defaults = cli::defaults();
    let high = args.marks.high_water.0;
    let low = args.marks.low_water.0;
    let kernel_buffer = args.kernel_buffer.0;
    let every = args.process_every;
    let process_ms = u64::try_from(args.process_ms.0.as_millis()).unwrap_or(u64::MAX);
    let svg = args.svg;
    if seconds <= 0.0 {
        cli::refuse::<Cli>("--seconds must be more than zero");
    }
    if !(rate_mb >= 0.0 && rate_mb.is_finite()) {
        cli::refuse::<Cli>("--rate-mb must be zero or more");
    }
    let buffer = (kernel_buffer > 0).then_some(kernel_buffer);
    let config = Config {
        high_water: high,
        low_water: low,
        idle_timeout: None,
        ..defaults
    };
    if let Err(e) = config.validate() {
        cli::refuse::<Cli>(e);
    }

    let shared = Shared::default();
    let start = Instant::now();

    // The consumer: small receive buffers make its window close soon after it pauses.
    let consumer = Consumer {
        every,
        pause: Duration::from_millis(process_ms),
        start,
        board: shared.clone(),
    };
    let consumer_config = Config {
        recv_buffer_size: buffer,
        ..config.clone()
    };
    let mut consumer_reactor = Reactor::new(consumer_config, consumer)?;
    let addr: SocketAddr = consumer_reactor.listen("127.0.0.1:0".parse().unwrap())?;
    let consumer_handle = consumer_reactor.handle();
    let consumer_thread = std::thread::spawn(move || consumer_reactor.run());

    // --via-relay: the relay example's handler on a third reactor, between the two. Its
    // kernel buffers are as small as theirs, so each window closes soon after its reader stops.
    let (addr, relay_handle, relay_thread) = if args.via_relay {
        let board = shared.clone();
        let relay = relay::Relay::watched(addr, move |client, upstream| {
            let mut b = crate::board(&board);
            b.relay_client = Some(client);
            b.relay_upstream = Some(upstream);
        });
        let relay_config = Config {
            send_buffer_size: buffer,
            recv_buffer_size: buffer,
            ..config.clone()
        };
        let mut r = Reactor::new(relay_config, relay)?;
        let relay_addr = r.listen("127.0.0.1:0".parse().unwrap())?;
        let handle = r.handle();
        // The relay closes its side once both of its peers have; the demo stops it then.
        let thread = std::thread::spawn(move || r.run());
        (relay_addr, Some(handle), Some(thread))
    } else {
        (addr, None, None)
    };

    // The producer: a small send buffer keeps the kernel's share comparable to the queue's.
    let frame = common::sample_frame(records);
    let interval = if rate_mb > 0.0 {
        Duration::from_secs_f64(frame.len() as f64 / (rate_mb * 1e6))
    } else {
        Duration::ZERO
    };
    let producer = Producer {
        frame,
        interval,
        until: start + Duration::from_secs_f64(seconds),
        start,
        board: shared.clone(),
    };
    let frame_len = producer.frame.len();
    let producer_config = Config {
        send_buffer_size: buffer,
        ..config
    };
    let mut producer_reactor = Reactor::new(producer_config, producer)?;
    producer_reactor.connect(addr)?;
    let producer_handle = producer_reactor.handle();
    let producer_thread = std::thread::spawn(move || producer_reactor.run());

    println!(
        "producer: {:.1} KB frames at {}; high-water {} KiB, low-water {} KiB\n\
         consumer: pauses {} ms every {} messages; kernel buffers {}\n",
        frame_len as f64 / 1000.0,
        if rate_mb > 0.0 {
            format!("{rate_mb} MB/s")
        } else {
            "full speed".into()
        },
        high / 1024,
        low / 1024,
        process_ms,
        every,
        buffer.map_or("auto-tuned".into(), |b| format!(
            "{} KiB (SO_SNDBUF/SO_RCVBUF)",
            b / 1024
        ))
    );
    if relay_handle.is_some() {
        println!(
            "relay: between them, on its own reactor; links both ways, same marks and kernel buffers\n"
        );
        println!(
            "{:>5}  {:<10} {:>7} {:>7}  {:>7} {:<7} {:>8} {:>8} {:>7}  {:>7} {:<8} {:>9} {:>5}",
            "t(s)",
            "producer",
            "queue",
            "window",
            "relay:",
            "reads",
            "queue to",
            "queue to",
            "window",
            "unread",
            "consumer",
            "processed",
            "RSS"
        );
        println!(
            "{:>5}  {:<10} {:>7} {:>7}  {:>7} {:<7} {:>8} {:>8} {:>7}  {:>7} {:<8} {:>9} {:>5}",
            "",
            "",
            "KiB",
            "KiB",
            "unread",
            "producr",
            "consumer",
            "producer",
            "KiB",
            "KiB",
            "",
            "messages",
            "MiB"
        );
        println!(
            "{:>5}  {:<10} {:>7} {:>7}  {:>7} {:<7} {:>8} {:>8} {:>7}  {:>7} {:<8} {:>9} {:>5}",
            "", "", "", "(adv)", "KiB", "", "KiB", "KiB", "(adv)", "(krn)", "", "", ""
        );
    }
    let plain = relay_handle.is_none();
    if plain {
        println!(
            "{:>5}  {:<10} {:>9} {:>8} {:>10} {:>10} {:>10}  {:<8} {:>9} {:>7}",
            "t(s)",
            "producer",
            "queue",
            "WRITABLE",
            "unsent",
            "window",
            "unread",
            "consumer",
            "processed",
            "RSS"
        );
        println!(
            "{:>5}  {:<10} {:>9} {:>8} {:>10} {:>10} {:>10}  {:<8} {:>9} {:>7}",
            "", "", "KiB", "interest", "KiB (krn)", "KiB (adv)", "KiB (krn)", "", "messages", "MiB"
        );
    }

    let mut samples: Vec<Sample> = Vec::new();
    let mut next = Instant::now();
    loop {
        next += SAMPLE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let (pc, cc, rc, ru) = {
            let b = board(&shared);
            (
                b.producer_conn,
                b.consumer_conn,
                b.relay_client,
                b.relay_upstream,
            )
        };
        let p = figures(&producer_handle, pc);
        let c = figures(&consumer_handle, cc);
        let hop = relay_handle
            .as_ref()
            .map(|h| (figures(h, rc), figures(h, ru)));
        if producer_thread.is_finished() && consumer_thread.is_finished() {
            if let Some(h) = &relay_handle {
                let _ = h.stop(); // both its peers are gone
            }
            break;
        }
        let (Some(p), Some(c)) = (p, c) else {
            continue; // not connected yet, or one side is closing
        };
        let relay = match hop {
            None => None,
            Some((Some(rc), Some(ru))) => Some(RelaySample {
                reading_producer: !rc.reading.contains(PauseReason::Link),
                unread_in: rc.kernel.unread_bytes,
                upstream_queue: ru.queued_bytes,
                client_queue: rc.queued_bytes,
                upstream_window: ru.kernel.peer_window,
            }),
            Some(_) => continue, // the relay's pair is not made yet, or is closing
        };
        let b = board(&shared);
        let s = Sample {
            t: start.elapsed().as_secs_f64(),
            generating: b.generating,
            queue: p.queued_bytes,
            writable_interest: p.writable_interest,
            unsent: p.kernel.unsent_bytes,
            window: p.kernel.peer_window,
            unread: c.kernel.unread_bytes,
            reading: b.reading,
            processed: b.processed,
            rss_kb: highwater::process_figures().rss_kb.unwrap_or(0),
            relay,
        };
        drop(b);
        if let (Some(r), true) = (s.relay, samples.len() % PRINT_EVERY == PRINT_EVERY - 1) {
            println!(
                "{:>5.2}  {:<10} {:>7.0} {:>7}  {:>7} {:<7} {:>8.0} {:>8.0} {:>7}  {:>7} {:<8} {:>9} {:>5.1}",
                s.t,
                if s.generating {
                    "generating"
                } else {
                    "stopped"
                },
                s.queue as f64 / 1024.0,
                kib(s.window),
                kib(r.unread_in),
                if r.reading_producer {
                    "reading"
                } else {
                    "LINK"
                },
                r.upstream_queue as f64 / 1024.0,
                r.client_queue as f64 / 1024.0,
                kib(r.upstream_window),
                kib(s.unread),
                if s.reading { "reading" } else { "paused" },
                s.processed,
                s.rss_kb as f64 / 1024.0
            );
        } else if s.relay.is_none() && samples.len() % PRINT_EVERY == PRINT_EVERY - 1 {
            println!(
                "{:>5.2}  {:<10} {:>9.0} {:>8} {:>10} {:>10} {:>10}  {:<8} {:>9} {:>7.1}",
                s.t,
                if s.generating {
                    "generating"
                } else {
                    "stopped"
                },
                s.queue as f64 / 1024.0,
                if s.writable_interest { "on" } else { "off" },
                kib(s.unsent),
                kib(s.window),
                kib(s.unread),
                if s.reading { "reading" } else { "paused" },
                s.processed,
                s.rss_kb as f64 / 1024.0
            );
        }
        samples.push(s);
    }
    producer_thread
        .join()
        .map_err(|_| std::io::Error::other("producer thread panicked"))??;
    consumer_thread
        .join()
        .map_err(|_| std::io::Error::other("consumer thread panicked"))??;

    if let Some(t) = relay_thread {
        t.join()
            .map_err(|_| std::io::Error::other("relay thread panicked"))??;
    }

    let b = board(&shared);
    println!("\n{}", story::tell(&samples, &b, high));
    match plot::write_svg(&svg, &samples, high, low) {
        Ok(()) => println!("\nplot: {svg}"),
        Err(e) => eprintln!("\ncould not write the plot to {svg}: {e}"),
    }
    Ok(())
}
