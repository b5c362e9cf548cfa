//! A relay (a TCP proxy for frames): every accepted connection gets its own connection to
//! `--upstream`, frames cross unchanged both ways, and links carry the backpressure across the
//! hop (PROTOCOL.md, "The `relay` example").
//!
//! ```text
//! cargo run --release --example server -- --mode sink --addr 127.0.0.1:7879 &
//! cargo run --release --example relay -- --upstream 127.0.0.1:7879 &
//! cargo run --release --example client            # through the relay, on 7878
//! ```
//!
//! A slow upstream fills the relay's upstream queue; past its high-water mark the relay stops
//! reading the client (`PauseReason::Link`), the client's window closes and its own queue
//! fills: the client feels the slow upstream as if it were connected to it directly, and the
//! relay holds at most about high-water plus a frame per direction.

#[path = "../common/mod.rs"]
mod common;
mod relay;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use highwater::{Config, Reactor};

use common::cli;
use common::units::{Millis, Size};

/// A relay: each client gets its own upstream connection, frames cross unchanged both ways,
/// and a slow side pauses the other through the relay.
///
/// Sizes take bytes or units (262144, 256KiB, 8MiB); durations take the unit in the flag's
/// name or one of their own (500 = 500ms, 2s).
#[derive(Parser, Debug)]
#[command(name = "relay", version)]
struct Cli {
    /// Where to listen; port 0 picks a free one
    #[arg(long, value_name = "HOST:PORT", default_value = cli::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Where each client's frames go
    #[arg(long, value_name = "HOST:PORT")]
    upstream: SocketAddr,
    #[command(flatten)]
    marks: cli::Marks,
    /// The largest payload accepted either way; a longer header closes that side
    #[arg(long, value_name = "BYTES", default_value_t = Size(cli::defaults().max_frame))]
    max_frame: Size,
    /// Connections open at once, clients and upstreams together
    #[arg(long, value_name = "N", default_value_t = cli::defaults().max_connections)]
    max_connections: usize,
    /// Close a connection with no progress either way for this long (0 = off)
    #[arg(long, value_name = "MS", default_value_t = Millis::or_off(cli::defaults().idle_timeout))]
    idle_timeout_ms: Millis,
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Cli::parse();
    let idle = args.idle_timeout_ms.nonzero();
    let config = Config {
        max_frame: args.max_frame.0,
        max_connections: args.max_connections,
        idle_timeout: idle,
        outbound_idle_timeout: idle,
        ..args.marks.apply(cli::defaults())
    };
    if let Err(e) = config.validate() {
        cli::refuse::<Cli>(e);
    }
    common::raise_fd_limit();
    let mut reactor = Reactor::new(config, relay::Relay::new(args.upstream))?;
    reactor.shutdown_on_signals(Duration::from_secs(5))?;
    let addr = reactor.listen(args.addr)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);
    reactor.run()
}
