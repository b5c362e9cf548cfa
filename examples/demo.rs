//! The backpressure chain, live: a fast producer and a slow consumer in one process, on two
//! reactors on two threads, over loopback.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! The consumer "processes" in bursts: after every `--process-every` messages it stops reading
//! for `--process-ms`. The producer obeys its write queue's high-water mark. Every 250 ms a row
//! shows where the bytes are; at the end a summary says what happened.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use highwater::{
    CloseReason, Config, ConnId, Context, Handle, Handler, Pressure, RawJson, Reactor, TimerId,
};
use serde_json::Value;

const USAGE: &str =
    "usage: demo [--seconds S] [--frame-kb KB] [--high-water BYTES] [--low-water BYTES]
  [--process-every N] [--process-ms MS]
defaults: --seconds 10 --frame-kb 60 --high-water 262144 --low-water 65536
  --process-every 20 --process-ms 100";

/// The consumer: counts messages, pauses reading after every `every` of them.
struct Consumer {
    every: u64,
    pause: Duration,
    processed: u64,
    conn: Option<ConnId>,
}

impl Handler for Consumer {
    type Message = RawJson;
    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.conn = Some(conn);
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: RawJson) {
        self.processed += 1;
        if self.processed % self.every == 0 {
            ctx.pause_reading(conn);
            ctx.set_timer(self.pause, conn.as_u64());
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, data: u64) {
        ctx.resume_reading(ConnId::from_u64(data));
    }
    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = ctx.send(conn, &serde_json::json!({"received": self.processed}));
        ctx.close(conn);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, _: &CloseReason) {
        ctx.stop();
    }
}

/// The producer: sends while below high-water, stops on `Pressure::High`, resumes on drain,
/// until `until`.
struct Producer {
    frame: Bytes,
    until: Instant,
    sent: u64,
    generating: bool,
    stops: u64,
    drains: u64,
    conn: Option<ConnId>,
    reply: Option<Value>,
}

impl Producer {
    fn produce(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.generating = true;
        while ctx.now() < self.until {
            match ctx.send_payload(conn, Bytes::copy_from_slice(&self.frame)) {
                Ok(Pressure::Clear) => self.sent += 1,
                Ok(Pressure::High) => {
                    self.sent += 1;
                    self.generating = false;
                    self.stops += 1;
                    // Come back at the latest when the run ends, to finish even if no drain.
                    let left = self.until.saturating_duration_since(ctx.now());
                    ctx.set_timer(left, conn.as_u64());
                    return;
                }
                Err(e) => {
                    eprintln!("send failed: {e}");
                    ctx.stop();
                    return;
                }
            }
        }
        self.generating = false;
        ctx.close_write(conn);
    }
}

impl Handler for Producer {
    type Message = Value;
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.conn = Some(conn);
        self.produce(ctx, conn);
    }
    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.drains += 1;
        self.produce(ctx, conn);
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, data: u64) {
        let conn = ConnId::from_u64(data);
        if !self.generating && ctx.now() >= self.until && ctx.is_open(conn) {
            self.produce(ctx, conn);
        }
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, msg: Value) {
        self.reply = Some(msg);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, _: &CloseReason) {
        ctx.stop();
    }
}

/// Asks a reactor thread a question and waits for the answer (None if it has stopped).
fn ask<T: Send + 'static>(
    handle: &Handle,
    f: impl for<'a> FnOnce(&mut Context<'a>) -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    handle
        .run(move |ctx| {
            let _ = tx.send(f(ctx));
        })
        .ok()?;
    rx.recv_timeout(Duration::from_secs(1)).ok()
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut flags = common::Flags::parse(USAGE, &[]);
    let seconds: f64 = flags.get("seconds", 10.0);
    let frame_kb: usize = flags.get("frame-kb", 60);
    let defaults = Config::default();
    let high: usize = flags.get("high-water", defaults.high_water);
    let low: usize = flags.get("low-water", defaults.low_water);
    let every: u64 = flags.get("process-every", 20);
    let process_ms: u64 = flags.get("process-ms", 100);
    flags.finish();
    if every == 0 {
        eprintln!("error: --process-every must be at least 1");
        std::process::exit(2);
    }

    let config = Config {
        high_water: high,
        low_water: low,
        idle_timeout: None,
        ..defaults
    };
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;

    let consumer = Consumer {
        every,
        pause: Duration::from_millis(process_ms),
        processed: 0,
        conn: None,
    };
    let mut consumer_reactor = Reactor::new(config.clone(), consumer)?;
    let addr: SocketAddr = consumer_reactor.listen("127.0.0.1:0".parse().unwrap())?;
    let consumer_handle = consumer_reactor.handle();
    let consumer_thread = std::thread::spawn(move || consumer_reactor.run());

    let frame = Bytes::from(format!("\"{}\"", "d".repeat(frame_kb * 1024 - 2)));
    let started = Instant::now();
    let producer = Producer {
        frame,
        until: started + Duration::from_secs_f64(seconds),
        sent: 0,
        generating: false,
        stops: 0,
        drains: 0,
        conn: None,
        reply: None,
    };
    let mut producer_reactor = Reactor::new(config, producer)?;
    producer_reactor.connect(addr)?;
    let producer_handle = producer_reactor.handle();
    let producer_thread = std::thread::spawn(move || {
        producer_reactor.run()?;
        Ok::<_, std::io::Error>(producer_reactor.into_handler())
    });

    println!(
        "{:>6}  {:<10}  {:>12}  {:>6}  {:>8}  {:>10}",
        "t(s)", "producer", "queue(B)", "drains", "consumer", "processed"
    );
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let p = ask(&producer_handle, |ctx| {
            // The handler is not reachable from a job; the figures are.
            let f = ctx.figures();
            (f.queued_bytes, f.paused_connections)
        });
        let c = ask(&consumer_handle, |ctx| {
            let f = ctx.figures();
            (f.paused_connections, f.frames_in)
        });
        let (Some((queued, _)), Some((paused, frames_in))) = (p, c) else {
            break;
        };
        println!(
            "{:>6.2}  {:<10}  {:>12}  {:>6}  {:>8}  {:>10}",
            started.elapsed().as_secs_f64(),
            if queued >= high {
                "stopped"
            } else {
                "generating"
            },
            queued,
            "",
            if paused > 0 { "paused" } else { "reading" },
            frames_in
        );
    }
    let p = producer_thread
        .join()
        .map_err(|_| std::io::Error::other("producer panicked"))??;
    consumer_thread
        .join()
        .map_err(|_| std::io::Error::other("consumer panicked"))??;
    println!(
        "\nsummary: sent {} frames in {:.1} s; the producer stopped {} times at its high-water mark \
         and resumed {} times on drain; the consumer confirmed {}; peak RSS {} KiB",
        p.sent,
        started.elapsed().as_secs_f64(),
        p.stops,
        p.drains,
        p.reply
            .as_ref()
            .map_or("nothing".to_string(), |r| r["received"].to_string()),
        common::proc_status_kb("VmHWM")
    );
    Ok(())
}
