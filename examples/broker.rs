//! A pub/sub broker: publishers' frames go to every subscriber of their topic, byte for byte,
//! with a rule for the slow subscriber (PROTOCOL.md, "The `broker` example").
//!
//! ```text
//! cargo run --release --example broker -- --policy drop
//! ```
//!
//! A subscriber sends `{"op":"sub","topic":T}` and is answered `{"op":"subscribed","topic":T}`;
//! a publisher sends `{"op":"pub","topic":T,"data":...}`, and each subscriber of T receives
//! that frame exactly as it was published (the broker decodes the `op` and `topic` fields,
//! keeps the raw bytes with `WithRaw`, and forwards them with a `FanOut`, one per topic).
//!
//! A subscriber whose queue is above high-water first holds the publisher back (a link: the
//! publisher is not read until it drains), so a subscriber that only fell behind for a moment
//! loses nothing. What one that stays above high-water costs is `--policy`:
//! - `pause`: nothing is lost; the publisher waits for it however long it takes, so every
//!   subscriber goes at the pace of the slowest.
//! - `drop`: after `--grace-ms` it stops holding the publisher back and misses frames, and
//!   gets `{"op":"gap","dropped":K}` before the next one it gets, once it has drained.
//! - `disconnect`: after `--grace-ms` it is reset.
//!
//! Either way a slow subscriber costs the others at most `--grace-ms` each time it falls
//! behind, and holds at most high-water plus one frame.
//!
//! A subscriber's own messages are read while its queue is full (its connection does not
//! pause on its own high-water mark), so it can always subscribe to more.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use highwater::{
    CloseReason, Config, ConnId, ConnSettings, Context, FanOut, Handler, Reactor, SlowPolicy,
    TimerId, WithRaw,
};
use serde::Deserialize;
use serde_json::json;

use common::cli;
use common::units::{Millis, Size};

/// A pub/sub broker: every subscriber of a topic receives each frame published to it, byte
/// for byte, in order; --policy says what a slow subscriber costs.
///
/// Sizes take bytes or units (262144, 256KiB, 8MiB); durations take the unit in the flag's
/// name or one of their own (500 = 500ms, 2s).
#[derive(Parser, Debug)]
#[command(name = "broker", version)]
struct Cli {
    /// Where to listen; port 0 picks a free one
    #[arg(long, value_name = "HOST:PORT", default_value = cli::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// What happens to a subscriber whose queue is above high-water
    #[arg(long, value_enum, default_value_t = Policy::Pause)]
    policy: Policy,
    /// drop, disconnect: how long a subscriber above high-water may hold the publisher back
    /// before it misses frames (drop; 0: at once) or is reset (disconnect)
    #[arg(long, value_name = "MS", default_value = "1000ms")]
    grace_ms: Millis,
    #[command(flatten)]
    marks: cli::Marks,
    /// The hard cap on each connection's queue [default: high-water + max frame + 4]
    #[arg(long, value_name = "BYTES")]
    queue_limit: Option<Size>,
    /// The largest payload accepted; a longer header is answered frame_too_large and closed
    #[arg(long, value_name = "BYTES", default_value_t = Size(cli::defaults().max_frame))]
    max_frame: Size,
    /// Connections open at once; one more is answered busy
    #[arg(long, value_name = "N", default_value_t = cli::defaults().max_connections)]
    max_connections: usize,
    /// Close a connection with no progress either way for this long (0 = off)
    #[arg(long, value_name = "MS", default_value_t = Millis::or_off(cli::defaults().idle_timeout))]
    idle_timeout_ms: Millis,
    /// Reset a connection whose queued frames are not taken for this long (0 = off)
    #[arg(long, value_name = "MS", default_value_t = Millis::or_off(cli::defaults().write_timeout))]
    write_timeout_ms: Millis,
    /// Memory held for peers; past it the largest holders stop being read (0 = off)
    #[arg(long, value_name = "BYTES", default_value_t = Size(cli::defaults().queue_budget.unwrap_or(0)))]
    queue_budget: Size,
}

/// `--policy`'s values, each a `SlowPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Policy {
    /// Lossless: the publisher waits for the slowest subscriber
    Pause,
    /// After --grace-ms a slow subscriber misses frames and is told how many
    /// ({"op":"gap","dropped":K})
    Drop,
    /// After --grace-ms a slow subscriber is reset
    Disconnect,
}

// ----- the broker's core (counted by benches/compare/core_lines.sh) -----------------------

/// The fields the broker routes on; the rest of the payload is forwarded untouched.
#[derive(Deserialize)]
struct Head {
    op: String,
    topic: Option<String>,
}

struct Broker {
    policy: SlowPolicy,
    topics: HashMap<String, FanOut>,
}

impl Broker {
    /// A subscriber within its grace holds the publisher back, so no publish comes to notice
    /// the grace has run out: a timer does.
    fn sweep(&mut self, ctx: &mut Context<'_>) {
        if let Some(grace) = self.policy.grace() {
            for subscribers in self.topics.values_mut() {
                subscribers.sweep(ctx);
            }
            ctx.set_timer((grace / 4).max(Duration::from_millis(10)), 0);
        }
    }
}

impl Handler for Broker {
    type Message = WithRaw<Head>;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.sweep(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: WithRaw<Head>) {
        match (msg.head.op.as_str(), msg.head.topic) {
            ("sub", Some(topic)) => {
                // Its own messages must still be read while its queue is full.
                if let Some(s) = ctx.settings(conn) {
                    let s = ConnSettings {
                        pause_reads_above_high_water: false,
                        ..s
                    };
                    let _ = ctx.set_settings(conn, s);
                }
                let _ = ctx.send(conn, &json!({"op": "subscribed", "topic": topic}));
                self.topics.entry(topic).or_default().add(conn, self.policy);
            }
            ("pub", Some(topic)) => {
                if let Some(subscribers) = self.topics.get_mut(&topic) {
                    subscribers.send(ctx, Some(conn), msg.raw);
                }
            }
            (op, _) => {
                let detail = format!("unknown op {op:?}, or no topic: expected sub or pub");
                let _ = ctx.send(conn, &json!({"error": "bad_request", "detail": detail}));
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, _: u64) {
        self.sweep(ctx);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: &CloseReason) {
        self.topics.retain(|_, t| {
            t.remove(ctx, conn);
            !t.is_empty()
        });
    }
}

// ----- end of the core ----------------------------------------------------------------------

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Cli::parse();
    let config = Config {
        max_frame: args.max_frame.0,
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout_ms.nonzero(),
        write_timeout: args.write_timeout_ms.nonzero(),
        queue_budget: Some(args.queue_budget.0).filter(|&b| b > 0),
        queue_limit: args.queue_limit.map(|s| s.0),
        ..args.marks.apply(cli::defaults())
    };
    if let Err(e) = config.validate() {
        cli::refuse::<Cli>(e);
    }
    let policy = match args.policy {
        Policy::Pause => SlowPolicy::Pause,
        Policy::Drop => SlowPolicy::Drop {
            grace: args.grace_ms.0,
        },
        Policy::Disconnect => SlowPolicy::Disconnect {
            grace: args.grace_ms.0,
        },
    };
    common::raise_fd_limit();
    let broker = Broker {
        policy,
        topics: HashMap::new(),
    };
    let mut reactor = Reactor::new(config, broker)?;
    reactor.shutdown_on_signals(Duration::from_secs(5))?;
    let addr = reactor.listen(args.addr)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);
    reactor.run()
}
