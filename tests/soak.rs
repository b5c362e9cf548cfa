//! The short soak: every promise at once, for a few seconds, in `cargo test`. The driver is
//! the one behind `cargo run --release --example soak -- --minutes N`; see its module docs for
//! the peers and the checks.
//!
//! To replay a failure, run with the seed it printed: `SOAK_SEED=0x... cargo test --test soak`.

#[path = "../examples/soak/driver.rs"]
mod driver;

mod common;

use std::time::Duration;

#[test]
fn every_promise_holds_under_a_randomized_mix_of_peers() {
    common::raise_fd_limit();
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(driver::fresh_seed);
    eprintln!("soak seed={seed:#x} (replay: SOAK_SEED={seed:#x} cargo test --test soak)");
    let plan = driver::Plan {
        seed,
        mix: Duration::from_secs(8),
        peers: 24,
        reactors: 2,
        config: driver::soak_config(),
        rss_constant_kb: 64 * 1024,
        progress: None,
        max_reply_wait: None,
        weights: driver::WEIGHTS,
    };
    let outcome = common::bounded(Duration::from_secs(60), move || driver::run(&plan));
    eprintln!("{}", outcome.summary);
    assert!(
        outcome.failures.is_empty(),
        "seed {seed:#x}: {} broken promise(s):\n{}\n{}",
        outcome.failures.len(),
        outcome.failures.join("\n"),
        outcome.summary
    );
}
