//! The long soak: one in-process echo server against a randomized mix of well-behaved and
//! hostile peers for N minutes, then the checks that every promise held (see `driver.rs`).
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10
//! cargo run --release --example soak -- --seconds 30 --seed 0x1234 --peers 40 --reactors 2
//! ```
//!
//! With `--server HOST:PORT` the peers run against a server in another process instead (the
//! `server` example, say), started with the same limits:
//!
//! ```text
//! cargo run --release --example server -- --addr 127.0.0.1:7878 --high-water 65536 \
//!   --low-water 16384 --max-frame 262144 --max-connections 64 --idle-timeout-ms 1000 \
//!   --write-timeout-ms 1000 --queue-budget 524288
//! cargo run --release --example soak -- --server 127.0.0.1:7878 --minutes 2
//! ```
//!
//! Then only the peers' checks apply (every reply and error frame); slots, descriptors and
//! RSS belong to the other process.
//!
//! Prints a progress line every `--progress-s` seconds on stderr, the summary on stdout, and
//! exits 1 with the broken promises listed if any check failed. `tests/soak.rs` runs the same
//! driver for a few seconds in `cargo test`.

#[path = "../common/mod.rs"]
mod common;
mod driver;

use std::time::Duration;

const USAGE: &str = "usage: soak [--minutes N | --seconds N] [--seed S] [--peers P] [--reactors R]
  [--rss-constant-kb K] [--progress-s S] [--weights kind=W,...] [--max-reply-wait-ms MS]
  [--max-frame BYTES] [--queue-budget BYTES] [--max-connections N] [--expect-no-timers]
  [--server HOST:PORT (a server in another process, with the same limits)]
defaults: --minutes 1 --seed (from the clock; printed) --peers 40 --reactors 2
  --rss-constant-kb 65536 --progress-s 10 --weights echo=25,slow_reader=10,pinner=5,
  slowloris=8,reset_mid_frame=8,reset_mid_reply=8,churn=10,oversized=8,invalid=12,flood=3
  (a quarter of the peers only run echo clients whatever the weights).
  --max-reply-wait-ms 0 (off: a well-behaved client still gives up after 10 s).
  The server's other limits are driver::soak_config(). For --server, start it with them:
  server --high-water 65536 --low-water 16384 --max-frame 262144 --max-connections 64
  --idle-timeout-ms 1000 --write-timeout-ms 1000 --queue-budget 524288 [--reactors 2]";

fn main() {
    // RUST_LOG=highwater=warn shows the server's decisions (budget, write timeouts) beside
    // the peers' report.
    env_logger::init();
    let mut flags = common::Flags::parse(USAGE, &["expect-no-timers"]);
    let seconds = match (flags.opt::<u64>("minutes"), flags.opt::<u64>("seconds")) {
        (Some(m), None) => m * 60,
        (None, Some(s)) => s,
        (None, None) => 60,
        _ => flags.fail("--minutes and --seconds are alternatives"),
    };
    let seed = match flags.opt::<String>("seed") {
        None => driver::fresh_seed(),
        Some(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| flags.fail(&format!("--seed {s:?}: {e}")))
        }
    };
    let defaults = driver::soak_config();
    let config = highwater::Config {
        max_frame: flags.get("max-frame", defaults.max_frame),
        queue_budget: Some(flags.get("queue-budget", defaults.queue_budget.unwrap_or(0)))
            .filter(|&b| b > 0),
        max_connections: flags.get("max-connections", defaults.max_connections),
        ..defaults
    };
    if let Err(e) = config.validate() {
        flags.fail(&e.to_string());
    }
    let plan = driver::Plan {
        seed,
        mix: Duration::from_secs(seconds),
        peers: flags.get("peers", 40usize).max(1),
        reactors: flags.get("reactors", 2usize).max(1),
        config,
        rss_constant_kb: flags.get("rss-constant-kb", 64 * 1024),
        progress: Some(Duration::from_secs(flags.get("progress-s", 10u64).max(1))),
        max_reply_wait: common::millis(flags.get("max-reply-wait-ms", 0)),
        expect_no_timers: flags.switch("expect-no-timers"),
        hold: driver::HOLD,
        server: flags.opt("server"),
        weights: match flags.opt::<String>("weights") {
            None => driver::WEIGHTS,
            Some(w) => {
                driver::parse_weights(&w, driver::WEIGHTS).unwrap_or_else(|e| flags.fail(&e))
            }
        },
    };
    flags.finish();
    // The flood alone holds max_connections + 16 sockets; peers hold more.
    common::raise_fd_limit();
    eprintln!("soak: seed={seed:#x} ({seconds} s; replay with --seed {seed:#x})");
    let outcome = driver::run(&plan);
    println!("{}", outcome.summary);
    if outcome.failures.is_empty() {
        println!("soak: every promise held");
    } else {
        for f in &outcome.failures {
            println!("BROKEN: {f}");
        }
        std::process::exit(1);
    }
}
