//! The contract's server (../shared/CONTRACT.md): echo or sink, with every limit a flag.
//!
//! ```text
//! cargo run --release --example server -- --mode sink --process-every 200 --process-ms 500
//! ```
//!
//! Echo sends every message back unchanged (zero-copy: the received bytes are queued as the
//! reply). Sink counts messages and, when the client shuts down its write side, replies
//! `{"received":M,"bytes":B}` and closes. With `--process-every N --process-ms MS`, a sink
//! connection stops reading for MS ms after every N messages, by pausing reads and setting a
//! timer: the reactor keeps serving everyone else meanwhile.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use highwater::{CloseReason, Config, ConnId, Context, Handler, RawJson, Reactor, TimerId};

const USAGE: &str = "usage: server [--addr HOST:PORT] [--mode echo|sink]
  [--high-water BYTES] [--low-water BYTES] [--max-frame BYTES] [--max-connections N]
  [--idle-timeout-ms MS] [--write-timeout-ms MS] [--queue-budget BYTES]
  [--process-every N --process-ms MS] [--stats-interval-ms MS]
defaults: --addr 127.0.0.1:7878 --mode echo --high-water 262144 --low-water 65536
  --max-frame 8388608 --max-connections 10000 --idle-timeout-ms 60000 --write-timeout-ms 30000
  --queue-budget 268435456 (all connections together; 0 = off)";

/// Timer data for the stats line; every other timer's data is a packed `ConnId`.
const STATS_TIMER: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Echo,
    Sink,
}

/// Per-connection counts for sink mode.
#[derive(Default)]
struct Counts {
    messages: u64,
    bytes: u64,
}

struct Server {
    mode: Mode,
    /// Pause every N messages for this long ("processing").
    process: Option<(u64, Duration)>,
    stats_interval: Option<Duration>,
    counts: HashMap<ConnId, Counts>,
}

impl Handler for Server {
    // Echo and sink never look inside a message, so validate it and keep the bytes.
    type Message = RawJson;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if let Some(every) = self.stats_interval {
            ctx.set_timer(every, STATS_TIMER);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
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

    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.mode == Mode::Sink {
            let c = self.counts.remove(&conn).unwrap_or_default();
            let summary = serde_json::json!({"received": c.messages, "bytes": c.bytes});
            if let Err(e) = ctx.send(conn, &summary) {
                log::warn!("{conn}: summary not sent: {e}");
            }
        }
        ctx.close(conn);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, data: u64) {
        if data == STATS_TIMER {
            eprintln!("stats {} {}", ctx.figures(), highwater::process_figures());
            if let Some(every) = self.stats_interval {
                ctx.set_timer(every, STATS_TIMER);
            }
            return;
        }
        // "Processing" is over: read again (a no-op if the connection closed meanwhile).
        ctx.resume_reading(ConnId::from_u64(data));
    }

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        self.counts.remove(&conn);
        if !reason.is_clean() {
            log::info!("{conn}: closed: {reason}");
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut flags = common::Flags::parse(USAGE, &[]);
    let defaults = Config::default();
    let addr: std::net::SocketAddr = flags.get("addr", "127.0.0.1:7878".parse().unwrap());
    let mode = match flags.get("mode", "echo".to_string()).as_str() {
        "echo" => Mode::Echo,
        "sink" => Mode::Sink,
        other => flags.fail(&format!("--mode {other:?}: expected echo or sink")),
    };
    let config = Config {
        high_water: flags.get("high-water", defaults.high_water),
        low_water: flags.get("low-water", defaults.low_water),
        max_frame: flags.get("max-frame", defaults.max_frame),
        max_connections: flags.get("max-connections", defaults.max_connections),
        idle_timeout: common::millis(flags.get("idle-timeout-ms", 60_000)),
        write_timeout: common::millis(flags.get("write-timeout-ms", 30_000)),
        queue_budget: Some(flags.get("queue-budget", 256 * 1024 * 1024)).filter(|&b| b > 0),
        ..defaults
    };
    let process = match (
        flags.opt::<u64>("process-every"),
        flags.opt::<u64>("process-ms"),
    ) {
        (Some(n), Some(ms)) if n > 0 => Some((n, Duration::from_millis(ms))),
        (None, None) => None,
        _ => flags.fail("--process-every N (N > 0) and --process-ms MS go together"),
    };
    let stats_interval = common::millis(flags.get("stats-interval-ms", 0));
    flags.finish();
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }

    // A server that allows 10,000 connections needs the descriptors for them; many systems
    // start processes with a soft limit of 1,024. Running out is survivable (accept backs
    // off), but there is no reason to run out early.
    common::raise_fd_limit();

    let server = Server {
        mode,
        process,
        stats_interval,
        counts: HashMap::new(),
    };
    let mut reactor = Reactor::new(config, server)?;
    let bound = reactor.listen(addr)?;
    reactor.shutdown_on_signals(Duration::from_secs(10))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {bound}")?;
    out.flush()?;
    drop(out);
    reactor.run()?;
    log::info!("shut down cleanly: {}", reactor.figures());
    Ok(())
}
