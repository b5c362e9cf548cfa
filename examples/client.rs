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

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use highwater::{CloseReason, Config, ConnId, Context, Handler, Pressure, Reactor, SendError};
use serde_json::{Value, json};

const USAGE: &str = "usage: client [--addr HOST:PORT] [--frames F] [--records K]
  [--high-water BYTES] [--low-water BYTES] [--queue-limit BYTES] [--ignore-backpressure]
  [--stats-interval-ms MS] [--timeout-ms MS]
defaults: --addr 127.0.0.1:7878 --frames 50000 --records 50 --high-water 262144
  --low-water 65536 --queue-limit (high-water + max frame + 4) --timeout-ms 30000 (0 = off)";

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
    timeout: Option<std::time::Duration>,
    stats_interval: Option<std::time::Duration>,
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
                        return; // write() returned false: wait for 'drain'
                    }
                }
                Err(SendError::QueueFull { .. }) => return, // the hard limit caught the bug
                Err(e) => {
                    eprintln!("send failed: {e}");
                    ctx.stop();
                    return;
                }
            }
        }
        if !self.finished_sending {
            self.finished_sending = true;
            ctx.close_write(conn); // FIN once the queue drains: "that was the last frame"
        }
    }
}

impl Handler for Producer {
    type Message = Value;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if let Some(every) = self.stats_interval {
            ctx.set_timer(every, 0);
        }
    }

    /// The stats line: this connection's link of the chain, then the process.
    fn on_timer(&mut self, ctx: &mut Context<'_>, _: highwater::TimerId, _: u64) {
        if let Some(f) = self.conn.and_then(|c| ctx.conn_figures(c)) {
            let unknown = |v: Option<u32>| v.map_or("unknown".into(), |v| v.to_string());
            eprintln!(
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
        }
        if let Some(every) = self.stats_interval {
            ctx.set_timer(every, 0);
        }
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.produce(ctx, conn);
    }

    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.drain_events += 1;
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
    let mut flags = common::Flags::parse(USAGE, &["ignore-backpressure"]);
    let defaults = Config::default();
    let addr: SocketAddr = flags.get("addr", "127.0.0.1:7878".parse().unwrap());
    let frames: u64 = flags.get("frames", 50_000);
    let records: usize = flags.get("records", 50);
    // One progress deadline for the whole run: connecting, then both directions.
    let timeout = common::millis(flags.get("timeout-ms", 30_000));
    let config = Config {
        high_water: flags.get("high-water", defaults.high_water),
        low_water: flags.get("low-water", defaults.low_water),
        queue_limit: flags.opt("queue-limit"),
        outbound_idle_timeout: timeout,
        connect_timeout: timeout,
        write_timeout: timeout,
        ..defaults
    };
    let ignore_backpressure = flags.switch("ignore-backpressure");
    let stats_interval = common::millis(flags.get("stats-interval-ms", 0));
    flags.finish();
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    if records == 0 {
        eprintln!("error: --records must be at least 1");
        std::process::exit(2);
    }

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
    };
    let mut reactor = Reactor::new(config, producer)?;
    let conn = reactor.connect(addr)?;
    reactor.handler_mut().conn = Some(conn);
    let started = Instant::now();
    reactor.run()?;
    let seconds = started.elapsed().as_secs_f64();
    let p = reactor.into_handler();

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
