//! The contract's producer (PROTOCOL.md): streams frames of sample user records
//! to a sink server, producing only while its write queue is below the high-water mark.
//!
//! ```text
//! cargo run --release --example server -- --mode sink &
//! cargo run --release --example client -- --frames 2000
//! ```
//!
//! The loop is Node's `write()`/`'drain'` dance: `produce` sends until a send reports
//! `Pressure::High`, then returns; `on_drain` calls it again. With `--ignore-backpressure` it
//! keeps sending past the mark (the classic bug) until the queue's hard limit refuses a frame,
//! which is what stops it before it exhausts memory.
//!
//! After the last frame it half-closes (FIN after the queue drains), waits for the server's
//! `{"received":M,"bytes":B}`, prints one JSON line and exits 0 only if M equals the frames
//! sent.
//!
//! It never hangs: `--timeout-ms` (default 30 s) bounds the connect, and then any stretch
//! without progress in either direction (no frame in, no bytes taken by the server). That is
//! the library's `connect_timeout`, `outbound_idle_timeout` and `write_timeout`; whichever
//! fires, the run ends with a message saying which, and exit status 1.

mod common;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use highwater::{CloseReason, Config, ConnId, Context, Handler, Pressure, Reactor, SendError};
use serde_json::{Value, json};

use clap::Parser;
use common::cli;
use common::units::{Millis, Size};
use indicatif::{ProgressBar, ProgressStyle};

/// The contract's producer (PROTOCOL.md): streams frames of sample user records to a sink
/// server, producing only while its write queue is below the high-water mark.
///
/// Prints one JSON line on stdout when done; exits 0 only if the server confirms every frame.
/// With stderr on a terminal, a progress bar shows frames sent and acknowledged, the rate,
/// and whether the producer is stopped at the high-water mark. Sizes take bytes or units
/// (262144, 256KiB); durations the unit in the flag's name or their own (500 = 500ms, 2s).
#[derive(Parser, Debug)]
#[command(name = "client", version)]
struct Cli {
    /// The server (in sink mode)
    #[arg(long, value_name = "HOST:PORT", default_value = cli::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Frames to send
    #[arg(long, value_name = "F", default_value_t = 50_000)]
    frames: u64,
    /// Sample records per frame (about 1.2 KB each)
    #[arg(long, value_name = "K", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    #[command(flatten)]
    marks: cli::Marks,
    /// The hard cap on the write queue [default: high-water + max frame + 4]
    #[arg(long, value_name = "BYTES")]
    queue_limit: Option<Size>,
    /// Keep producing above high-water (the classic bug; the hard cap still stops it)
    #[arg(long)]
    ignore_backpressure: bool,
    /// A figures line on stderr this often (0 = off)
    #[arg(long, value_name = "MS", default_value = "0")]
    stats_interval_ms: Millis,
    /// No connection within this long, or no progress either way for this long, ends the run
    /// (0 = off)
    #[arg(long, value_name = "MS", default_value = "30s")]
    timeout_ms: Millis,
}

/// Timer data: which of the client's timers fired.
const STATS_TIMER: u64 = 0;
const PROGRESS_TIMER: u64 = 1;
/// How often the progress bar is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What the progress bar says the producer is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Doing {
    Sending,
    /// `Pressure::High` came back: waiting for `on_drain`.
    AtHighWater,
    /// Ignoring backpressure, the queue's hard limit refused a frame.
    AtHardLimit,
    /// Every frame queued; waiting for the server's summary.
    AwaitingSummary,
}

struct Producer {
    conn: Option<ConnId>,
    /// The frame's JSON text, built once; each send copies it into a fresh buffer, as a real
    /// producer's frames would each be fresh data.
    template: Vec<u8>,
    frames: u64,
    sent: u64,
    bytes: u64,
    ignore_backpressure: bool,
    drain_events: u64,
    max_queued: usize,
    server_reply: Option<Value>,
    finished_sending: bool,
    close_reason: Option<String>,
    /// Set when the close was one of the no-progress deadlines: what to tell the user.
    gave_up: Option<String>,
    timeout: Option<Duration>,
    stats_interval: Option<Duration>,
    doing: Doing,
    /// Only when stderr is a terminal.
    progress: Option<ProgressBar>,
    started: Instant,
}

impl Producer {
    /// Sends until done or told to stop. Returns when the queue says `High` (or, ignoring
    /// backpressure, when the hard limit refuses a frame); `on_drain` calls it again.
    fn produce(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        while self.sent < self.frames {
            let frame = Bytes::copy_from_slice(&self.template);
            match ctx.send_payload(conn, frame) {
                Ok(pressure) => {
                    self.sent += 1;
                    self.bytes += self.template.len() as u64;
                    self.max_queued = self.max_queued.max(ctx.queued_bytes(conn));
                    if pressure == Pressure::High && !self.ignore_backpressure {
                        self.doing = Doing::AtHighWater;
                        return; // write() returned false: wait for 'drain'
                    }
                }
                Err(SendError::QueueFull { .. }) => {
                    self.doing = Doing::AtHardLimit;
                    return; // the hard limit caught the bug
                }
                Err(e) => {
                    eprintln!("send failed: {e}");
                    ctx.stop();
                    return;
                }
            }
        }
        if !self.finished_sending {
            self.finished_sending = true;
            self.doing = Doing::AwaitingSummary;
            ctx.close_write(conn); // FIN once the queue drains: "that was the last frame"
        }
    }
}

impl Producer {
    /// Redraws the progress bar: frames queued, frames the server's TCP acknowledged (bytes
    /// handed to the kernel less those it still holds unacknowledged), the rate of
    /// acknowledged bytes, and what the producer is doing.
    fn show_progress(&self, ctx: &mut Context<'_>) {
        let Some(bar) = &self.progress else { return };
        bar.set_position(self.sent);
        let wire_frame = self.template.len() as u64 + 4;
        let acked_bytes = self.conn.and_then(|c| ctx.conn_figures(c)).and_then(|f| {
            let in_kernel = u64::from(f.kernel.send_queue_bytes?);
            Some(f.bytes_out.saturating_sub(in_kernel))
        });
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let (acked, rate) = match acked_bytes {
            Some(b) => (
                (b / wire_frame).to_string(),
                format!("{:.1} MB/s", b as f64 / 1e6 / seconds),
            ),
            None => ("?".into(), "? MB/s".into()),
        };
        let doing = match self.doing {
            Doing::Sending => "sending",
            Doing::AtHighWater => "STOPPED at high-water",
            Doing::AtHardLimit => "STOPPED at the queue's hard limit",
            Doing::AwaitingSummary => "all queued, awaiting the count",
        };
        bar.set_message(format!("{acked} acked · {rate} · {doing}"));
    }
}

impl Handler for Producer {
    type Message = Value;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if let Some(every) = self.stats_interval {
            ctx.set_timer(every, STATS_TIMER);
        }
        if self.progress.is_some() {
            ctx.set_timer(PROGRESS_EVERY, PROGRESS_TIMER);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: highwater::TimerId, which: u64) {
        if which == PROGRESS_TIMER {
            self.show_progress(ctx);
            ctx.set_timer(PROGRESS_EVERY, PROGRESS_TIMER);
            return;
        }
        // The stats line: this connection's link of the chain, then the process.
        if let Some(f) = self.conn.and_then(|c| ctx.conn_figures(c)) {
            let unknown = |v: Option<u32>| v.map_or("unknown".into(), |v| v.to_string());
            let line = format!(
                "stats sent={} queued={}B high_water={}B drains={} writable_interest={} \
                 kernel_unsent={} peer_window={} {}",
                self.sent,
                f.queued_bytes,
                f.high_water,
                f.drain_events,
                f.writable_interest,
                unknown(f.kernel.unsent_bytes),
                unknown(f.kernel.peer_window),
                highwater::process_figures()
            );
            match &self.progress {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
        if let Some(every) = self.stats_interval {
            ctx.set_timer(every, STATS_TIMER);
        }
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.produce(ctx, conn);
    }

    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.drain_events += 1;
        self.doing = Doing::Sending;
        self.produce(ctx, conn);
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, msg: Value) {
        self.server_reply = Some(msg);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        if self.conn == Some(conn) {
            self.close_reason = Some(reason.to_string());
            let ms = self.timeout.map_or(0, |t| t.as_millis());
            self.gave_up = match reason {
                CloseReason::ConnectFailed(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    Some(format!("could not connect within {ms} ms"))
                }
                CloseReason::IdleTimeout => Some(format!(
                    "no progress in either direction for {ms} ms: the server neither took our \
                     bytes nor replied (after {} of {} frames)",
                    self.sent, self.frames
                )),
                CloseReason::WriteTimeout { discarded } => Some(format!(
                    "the server took none of our queued bytes for {ms} ms: no progress \
                     ({discarded} bytes discarded, after {} of {} frames)",
                    self.sent, self.frames
                )),
                _ => None,
            };
            ctx.stop();
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Cli::parse();
    let addr = args.addr;
    let frames = args.frames;
    let records = usize::try_from(args.records).unwrap_or(usize::MAX);
    // One progress deadline for the whole run: connecting, then both directions.
    let timeout = args.timeout_ms.nonzero();
    let config = Config {
        queue_limit: args.queue_limit.map(|s| s.0),
        outbound_idle_timeout: timeout,
        connect_timeout: timeout,
        write_timeout: timeout,
        ..args.marks.apply(cli::defaults())
    };
    let ignore_backpressure = args.ignore_backpressure;
    let stats_interval = args.stats_interval_ms.nonzero();
    if let Err(e) = config.validate() {
        cli::refuse::<Cli>(e);
    }
    // Only for a person watching: tests, CI and pipes see exactly what they saw before.
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(frames);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:24}] {pos}/{len} sent · {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });

    let template = common::sample_frame(records);
    let producer = Producer {
        conn: None,
        template,
        frames,
        sent: 0,
        bytes: 0,
        ignore_backpressure,
        drain_events: 0,
        max_queued: 0,
        server_reply: None,
        finished_sending: false,
        close_reason: None,
        gave_up: None,
        timeout,
        stats_interval,
        doing: Doing::Sending,
        progress,
        started: Instant::now(),
    };
    let mut reactor = Reactor::new(config, producer)?;
    let conn = reactor.connect(addr)?;
    reactor.handler_mut().conn = Some(conn);
    let started = Instant::now();
    reactor.handler_mut().started = started;
    reactor.run()?;
    let seconds = started.elapsed().as_secs_f64();
    let p = reactor.into_handler();
    if let Some(bar) = &p.progress {
        let confirmed = p
            .server_reply
            .as_ref()
            .and_then(|r| r.get("received"))
            .and_then(Value::as_u64);
        bar.set_position(p.sent);
        bar.finish_with_message(match confirmed {
            Some(n) => format!(
                "{n} confirmed by the server · {:.1} MB/s",
                p.bytes as f64 / 1e6 / seconds.max(1e-9)
            ),
            None => "no confirmation from the server".into(),
        });
    }

    let ok = p
        .server_reply
        .as_ref()
        .and_then(|r| r.get("received"))
        .and_then(Value::as_u64)
        == Some(frames)
        && p.sent == frames;
    let summary = json!({
        "frames": p.sent,
        "bytes": p.bytes,
        "seconds": seconds,
        "mb_per_s": p.bytes as f64 / 1e6 / seconds.max(1e-9),
        "drain_events": p.drain_events,
        "max_queued_bytes": p.max_queued,
        "peak_rss_kb": common::proc_status_kb("VmHWM"),
        "server_reply": p.server_reply,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{summary}")?;
    out.flush()?;
    if let Some(why) = &p.gave_up {
        eprintln!("error: gave up: {why}");
        std::process::exit(1);
    }
    if !ok {
        eprintln!(
            "error: the server did not confirm all {frames} frames ({})",
            p.close_reason.as_deref().unwrap_or("no close reason")
        );
        std::process::exit(1);
    }
    Ok(())
}
