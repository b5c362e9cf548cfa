//! The long soak: one in-process echo server against a randomized mix of well-behaved and
//! hostile peers for N minutes, then the checks that every promise held (see `driver.rs`).
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10
//! cargo run --release --example soak -- --seconds 30 --seed 0x1234 --peers 40 --reactors 2
//! ```
//!
//! Prints a progress line every `--progress-s` seconds on stderr, the summary on stdout, and
//! exits 1 with the broken promises listed if any check failed. `tests/soak.rs` runs the same
//! driver for a few seconds in `cargo test`.

#[path = "../common/mod.rs"]
mod common;
mod driver;

use std::time::Duration;

const USAGE: &str = "usage: soak [--minutes N | --seconds N] [--seed S] [--peers P] [--reactors R]
  [--rss-constant-kb K] [--progress-s S] [--weights kind=W,...]
defaults: --minutes 1 --seed (from the clock; printed) --peers 40 --reactors 2
  --rss-constant-kb 65536 --progress-s 10 --weights echo=25,slow_reader=10,pinner=5,
  slowloris=8,reset_mid_frame=8,reset_mid_reply=8,churn=10,oversized=8,invalid=12,flood=3
  (a quarter of the peers only run echo clients whatever the weights).
  The server's limits are driver::soak_config().";

fn main() {
    let mut flags = common::Flags::parse(USAGE, &[]);
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
    let plan = driver::Plan {
        seed,
        mix: Duration::from_secs(seconds),
        peers: flags.get("peers", 40usize).max(1),
        reactors: flags.get("reactors", 2usize).max(1),
        config: driver::soak_config(),
        rss_constant_kb: flags.get("rss-constant-kb", 64 * 1024),
        progress: Some(Duration::from_secs(flags.get("progress-s", 10u64).max(1))),
        weights: match flags.opt::<String>("weights") {
            None => driver::WEIGHTS,
            Some(w) => driver::parse_weights(&w).unwrap_or_else(|e| flags.fail(&e)),
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
