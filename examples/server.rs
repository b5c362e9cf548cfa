//! The contract's server (PROTOCOL.md): echo or sink, with every limit a flag.
//!
//! ```text
//! cargo run --release --example server -- --mode sink --process-every 200 --process-ms 500
//! ```
//!
//! `--reactors N` runs N reactors on N threads (default: one per core); one accepts and hands
//! connections out round-robin. `--workers N --work-us U` moves each message's (simulated)
//! work to a pool of worker threads behind a bounded queue: when it is full, the connection
//! that fed it stops reading until the workers catch up, so memory stays flat however slow
//! the workers are.
//!
//! Echo sends every message back unchanged (zero-copy: the received bytes are queued as the
//! reply). Sink counts messages and, when the client shuts down its write side, replies
//! `{"received":M,"bytes":B}` and closes. With `--process-every N --process-ms MS`, a sink
//! connection stops reading for MS ms after every N messages, by pausing reads and setting a
//! timer: the reactor keeps serving everyone else meanwhile.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use highwater::{
    CloseReason, Config, ConnId, Context, DecodeError, Handler, RawJson, ReactorGroup, TimerId,
    Workers,
};

use clap::Parser;
use common::cli::{self, Mode};
use common::units::{Micros, Millis, Size};

/// The contract's server (PROTOCOL.md): echo or sink, with every limit a flag.
///
/// Sizes take bytes or units (262144, 256KiB, 8MiB); durations take the unit in the flag's
/// name or one of their own (500 = 500ms, 2s).
#[derive(Parser, Debug)]
#[command(name = "server", version)]
struct Cli {
    /// Where to listen; port 0 picks a free one
    #[arg(long, value_name = "HOST:PORT", default_value = cli::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// What to do with each message
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    #[command(flatten)]
    marks: cli::Marks,
    /// The largest payload accepted; a longer header is answered frame_too_large and closed
    #[arg(long, value_name = "BYTES", default_value_t = Size(cli::defaults().max_frame))]
    max_frame: Size,
    /// Connections open at once; one more is answered busy
    #[arg(long, value_name = "N", default_value_t = cli::defaults().max_connections)]
    max_connections: usize,
    /// Close a connection with no progress either way for this long (0 = off)
    #[arg(long, value_name = "MS", default_value_t = Millis::or_off(cli::defaults().idle_timeout))]
    idle_timeout_ms: Millis,
    /// Reset a connection whose queued replies are not taken for this long (0 = off)
    #[arg(long, value_name = "MS", default_value_t = Millis::or_off(cli::defaults().write_timeout))]
    write_timeout_ms: Millis,
    /// Memory held for peers, per reactor; past it the largest holders stop being read (0 = off)
    #[arg(long, value_name = "BYTES", default_value_t = Size(cli::defaults().queue_budget.unwrap_or(0)))]
    queue_budget: Size,
    /// Sink mode: after every N messages, a connection is not read for --process-ms
    #[arg(long, value_name = "N", requires = "process_ms",
          value_parser = clap::value_parser!(u64).range(1..))]
    process_every: Option<u64>,
    /// How long each --process-every pause lasts
    #[arg(long, value_name = "MS", requires = "process_every")]
    process_ms: Option<Millis>,
    /// After a turn with events, poll without sleeping for this long: lower latency for a
    /// spinning core (0 = off; Config::busy_poll)
    #[arg(long, value_name = "US", default_value_t = Micros::or_off(cli::defaults().busy_poll))]
    busy_poll_us: Micros,
    /// A figures line on stderr this often (0 = off)
    #[arg(long, value_name = "MS", default_value = "0")]
    stats_interval_ms: Millis,
    /// Reactor threads, connections shared out among them [default: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    reactors: Option<u64>,
    /// Echo through a pool of N worker threads, replies still in order (0 = no offload)
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// Simulated work per job at the workers
    #[arg(long, value_name = "US", default_value = "0")]
    work_us: Micros,
    /// Jobs waiting for the workers before a connection stops being read [default: 2 x workers]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    work_queue: Option<u64>,
}

/// Per-connection counts for sink mode.
#[derive(Default)]
struct Counts {
    messages: u64,
    bytes: u64,
}

/// Worker offload settings: threads (per reactor), queue bound, simulated work per message.
#[derive(Clone, Copy)]
struct Offload {
    threads: usize,
    queue: usize,
    work: Duration,
}

struct Server {
    mode: Mode,
    /// Pause every N messages for this long ("processing").
    process: Option<(u64, Duration)>,
    counts: HashMap<ConnId, Counts>,
    offload: Option<Offload>,
    workers: Option<Workers<RawJson, Done>>,
    /// Jobs handed to the workers and not yet back, per connection.
    outstanding: HashMap<ConnId, u64>,
    /// Connections whose peer half-closed while jobs were still out: finish when they return.
    finishing: HashSet<ConnId>,
}

/// What comes back through the workers' ordered results: a message whose work is done, or an
/// error reply the reactor thread made at once but that must wait for the replies before it.
enum Done {
    Message(RawJson),
    Reply(Bytes),
}

/// Simulated CPU work: spin for `work` on a worker thread.
fn busy(work: Duration) {
    let until = Instant::now() + work;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

impl Server {
    /// What the server does with one message, on the reactor thread.
    fn handle(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        if self.mode == Mode::Echo {
            // Past the high-water mark the reactor pauses reading this connection by itself,
            // so the queue cannot outgrow high-water plus one frame. An error here means the
            // connection is closing.
            if let Err(e) = ctx.send_payload(conn, msg.into_bytes()) {
                log::debug!("{conn}: echo dropped: {e}");
            }
            return;
        }
        let counts = self.counts.entry(conn).or_default();
        counts.messages += 1;
        counts.bytes += msg.len() as u64;
        if let Some((every, pause)) = self.process {
            if counts.messages % every == 0 {
                ctx.pause_reading(conn);
                ctx.set_timer(pause, conn.as_u64());
            }
        }
    }

    /// The peer is done and nothing is out with the workers: summary (sink), then close.
    fn finish(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.mode == Mode::Sink {
            let c = self.counts.remove(&conn).unwrap_or_default();
            let summary = serde_json::json!({"received": c.messages, "bytes": c.bytes});
            if let Err(e) = ctx.send(conn, &summary) {
                log::warn!("{conn}: summary not sent: {e}");
            }
        }
        ctx.close(conn);
    }
}

impl Handler for Server {
    // Echo and sink never look inside a message, so validate it and keep the bytes.
    type Message = RawJson;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if let Some(o) = self.offload {
            self.workers = Some(Workers::new(
                &ctx.handle(),
                o.threads,
                o.queue,
                move |msg| {
                    busy(o.work);
                    Done::Message(msg)
                },
            ));
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        match self.workers.as_mut() {
            // Never blocks: if the queue is full the message is parked and this connection
            // stops reading until the workers catch up.
            Some(w) => {
                w.submit(ctx, conn, msg);
                *self.outstanding.entry(conn).or_default() += 1;
            }
            None => self.handle(ctx, conn, msg),
        }
    }

    fn on_bad_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, error: &DecodeError) {
        log::debug!("{conn}: {error}");
        // The error reply carries no id: a client can only tell which request failed by the
        // order of the replies. With jobs of this connection still at the workers, it takes
        // its turn behind them.
        let reply = match self.workers.as_mut() {
            Some(w) => match w.submit_ready(ctx, conn, Done::Reply(error.reply())) {
                Some(Done::Reply(now)) => Some(now),
                Some(Done::Message(_)) => None, // we handed in a reply; it comes back as one
                None => {
                    *self.outstanding.entry(conn).or_default() += 1;
                    None
                }
            },
            None => Some(error.reply()),
        };
        if let Some(reply) = reply {
            if let Err(e) = ctx.send_payload(conn, reply) {
                log::debug!("{conn}: invalid_json reply dropped: {e}");
            }
        }
    }

    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        let Some(w) = self.workers.as_mut().filter(|w| w.is_doorbell(value)) else {
            return;
        };
        for (conn, result) in w.completed(ctx) {
            match result {
                Ok(Done::Message(msg)) => self.handle(ctx, conn, msg),
                Ok(Done::Reply(reply)) => {
                    if let Err(e) = ctx.send_payload(conn, reply) {
                        log::debug!("{conn}: error reply dropped: {e}");
                    }
                }
                // Our work never panics; if it did, the client still gets one reply in that
                // request's place, so the replies after it keep their meaning.
                Err(panicked) => {
                    log::error!("{conn}: {panicked}");
                    let _ = ctx.send(conn, &serde_json::json!({"error": "internal"}));
                }
            }
            let left = self.outstanding.entry(conn).or_default();
            *left -= 1;
            if *left == 0 {
                self.outstanding.remove(&conn);
                if self.finishing.remove(&conn) {
                    self.finish(ctx, conn);
                }
            }
        }
    }

    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.outstanding.contains_key(&conn) {
            self.finishing.insert(conn); // replies still with the workers
        } else {
            self.finish(ctx, conn);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, data: u64) {
        // "Processing" is over: read again (a no-op if the connection closed meanwhile).
        ctx.resume_reading(ConnId::from_u64(data));
    }

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        self.counts.remove(&conn);
        self.finishing.remove(&conn);
        if !reason.is_clean() {
            log::info!("{conn}: closed: {reason}");
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Cli::parse();
    let mode = args.mode;
    let config = Config {
        max_frame: args.max_frame.0,
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout_ms.nonzero(),
        write_timeout: args.write_timeout_ms.nonzero(),
        queue_budget: Some(args.queue_budget.0).filter(|&b| b > 0),
        busy_poll: args.busy_poll_us.nonzero(),
        ..args.marks.apply(cli::defaults())
    };
    if let Err(e) = config.validate() {
        cli::refuse::<Cli>(e);
    }
    let process = args
        .process_every
        .zip(args.process_ms)
        .map(|(n, ms)| (n, ms.0));
    let stats_interval = args.stats_interval_ms.nonzero();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reactors = args
        .reactors
        .map_or(cores, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let workers = args.workers;
    let work = args.work_us.0;
    let work_queue = args.work_queue.map_or(2 * workers.max(1), |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    let addr = args.addr;
    // Workers are split between reactors (each reactor's results come back to it alone).
    let offload = (workers > 0).then(|| Offload {
        threads: workers.div_ceil(reactors),
        queue: work_queue.div_ceil(reactors).max(1),
        work,
    });

    // A server that allows 10,000 connections needs the descriptors for them; many systems
    // start processes with a soft limit of 1,024. Running out is survivable (accept backs
    // off), but there is no reason to run out early.
    common::raise_fd_limit();

    let make = |_| Server {
        mode,
        process,
        counts: HashMap::new(),
        offload,
        workers: None,
        outstanding: HashMap::new(),
        finishing: HashSet::new(),
    };
    let grace = Some(Duration::from_secs(10));
    let group = ReactorGroup::start_with(reactors, config, addr, grace, None, make)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", group.local_addr())?;
    out.flush()?;
    drop(out);

    if let Some(every) = stats_interval {
        while !group.is_finished() {
            std::thread::sleep(every);
            let each = group.figures();
            let open: Vec<String> = each
                .iter()
                .map(|f| f.map_or("-".into(), |f| f.open_connections.to_string()))
                .collect();
            eprintln!(
                "stats reactors={} per_reactor_open=[{}] {} {}",
                each.len(),
                open.join(","),
                each.iter().flatten().sum::<highwater::ReactorFigures>(),
                highwater::process_figures()
            );
        }
    }
    group.join()?;
    log::info!("shut down cleanly");
    Ok(())
}
