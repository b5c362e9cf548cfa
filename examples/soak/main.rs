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

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::cli;
use common::units::{Millis, Secs, Size};

/// The long soak: an echo server against a seeded, randomized mix of well-behaved and hostile
/// peers, then the checks that every promise held.
///
/// Durations take the unit in the flag's name or their own (--seconds 90 or 2m); sizes bytes
/// or units (262144, 256KiB). The server's limits not listed here are driver::soak_config().
#[derive(Parser, Debug)]
#[command(name = "soak", version, after_help = FOR_SERVER)]
struct Cli {
    /// How long the mix runs, in minutes [default: 1]
    #[arg(long, value_name = "N", conflicts_with = "seconds")]
    minutes: Option<u64>,
    /// How long the mix runs, in seconds (or with a unit)
    #[arg(long, value_name = "S")]
    seconds: Option<Secs>,
    /// The generator's seed, decimal or 0x-hex [default: from the clock; printed]
    #[arg(long, value_name = "S", value_parser = parse_seed)]
    seed: Option<u64>,
    /// Concurrent peers (a quarter of them only run echo clients whatever the weights)
    #[arg(long, value_name = "P", default_value_t = 40,
          value_parser = clap::value_parser!(u64).range(1..))]
    peers: u64,
    /// Reactor threads of the in-process server
    #[arg(long, value_name = "R", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    reactors: u64,
    /// Peak RSS may exceed the RSS before the server started by the queue budgets plus this,
    /// in KiB
    #[arg(long, value_name = "K", default_value_t = 64 * 1024)]
    rss_constant_kb: u64,
    /// A progress line on stderr this often
    #[arg(long, value_name = "S", default_value = "10s")]
    progress_s: Secs,
    /// Relative weights of the peer kinds, e.g. echo=25,flood=0
    /// [default: echo=25,slow_reader=10,pinner=5,slowloris=8,reset_mid_frame=8,
    /// reset_mid_reply=8,churn=10,oversized=8,invalid=12,flood=3]
    #[arg(long, value_name = "KIND=W,...", value_parser = parse_weights)]
    weights: Option<[u64; 10]>,
    /// The longest a well-behaved client may wait for a reply (0 = off: it gives up at 10 s)
    #[arg(long, value_name = "MS", default_value = "0")]
    max_reply_wait_ms: Millis,
    /// The server's largest payload
    #[arg(long, value_name = "BYTES", default_value_t = Size(driver::soak_config().max_frame))]
    max_frame: Size,
    /// The server's memory budget per reactor (0 = off)
    #[arg(long, value_name = "BYTES",
          default_value_t = Size(driver::soak_config().queue_budget.unwrap_or(0)))]
    queue_budget: Size,
    /// The server's connection limit
    #[arg(long, value_name = "N", default_value_t = driver::soak_config().max_connections)]
    max_connections: usize,
    /// Fail if the server ever holds a timer (a check for timer-free configurations)
    #[arg(long)]
    expect_no_timers: bool,
    /// Run the peers against a server in another process, started with the same limits
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<SocketAddr>,
}

/// How to start a `server` example for `--server` with the in-process server's limits.
const FOR_SERVER: &str = "For --server, start the server with the same limits:
  server --high-water 65536 --low-water 16384 --max-frame 262144 --max-connections 64 \\
    --idle-timeout-ms 1000 --write-timeout-ms 1000 --queue-budget 524288 [--reactors 2]";

/// A seed as printed: `0x`-hex or decimal.
fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| e.to_string())
}

/// `kind=W,...` over the default weights.
fn parse_weights(s: &str) -> Result<[u64; 10], String> {
    driver::parse_weights(s, driver::WEIGHTS)
}

fn main() {
    // RUST_LOG=highwater=warn shows the server's decisions (budget, write timeouts) beside
    // the peers' report.
    env_logger::init();
    let args = Cli::parse();
    let seconds = match (args.minutes, args.seconds) {
        (Some(m), _) => m.saturating_mul(60),
        (None, Some(s)) => s.0.as_secs(),
        (None, None) => 60,
    };
    let seed = args.seed.unwrap_or_else(driver::fresh_seed);
    let config = highwater::Config {
        max_frame: args.max_frame.0,
        queue_budget: Some(args.queue_budget.0).filter(|&b| b > 0),
        max_connections: args.max_connections,
        ..driver::soak_config()
    };
    if let Err(e) = config.validate() {
        cli::refuse::<Cli>(e);
    }
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let plan = driver::Plan {
        seed,
        mix: Duration::from_secs(seconds),
        peers: count(args.peers),
        reactors: count(args.reactors),
        config,
        rss_constant_kb: args.rss_constant_kb,
        progress: Some(args.progress_s.0.max(Duration::from_secs(1))),
        max_reply_wait: args.max_reply_wait_ms.nonzero(),
        expect_no_timers: args.expect_no_timers,
        hold: driver::HOLD,
        server: args.server,
        weights: args.weights.unwrap_or(driver::WEIGHTS),
    };
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
