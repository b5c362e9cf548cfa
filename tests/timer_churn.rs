//! Memory proportional to connections open, not connections opened: a closed connection's
//! timers leave the deadline heap with it (issue 9, item 3).
//!
//! In a file of its own because it measures the process's resident memory, which any test
//! running beside it in the same process would disturb.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Server, bounded};
use highwater::{Config, ConnId, Context, Handler, RawJson};

/// Connect-then-reset cycles. 200,000 take about ten seconds in a debug build.
const CYCLES: usize = 200_000;
/// Connections held open throughout: their idle timers are the heap's live entries.
const KEPT: usize = 100;
/// How many accepted connections the churn may run ahead of the server, so the listen
/// backlog never overflows (a dropped SYN costs the client a one-second retransmit).
const AHEAD: u64 = 512;

/// Reads and drops everything; keeps no per-connection record (a record per connection
/// would itself grow with connections opened).
struct Quiet;

impl Handler for Quiet {
    type Message = RawJson;
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

/// Connects and resets `n` times, never letting the server fall more than `AHEAD` behind.
fn churn(server: &Server<Quiet>, addr: SocketAddr, n: usize) {
    let base = server.query(|ctx| ctx.figures().accepted);
    for i in 0..n {
        let stream = TcpStream::connect(addr).expect("connect");
        // SO_LINGER 0: the close is a RST, so neither side keeps a TIME_WAIT socket.
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
        drop(stream);
        if i % AHEAD as usize == AHEAD as usize - 1 {
            let sent = i as u64 + 1;
            server.wait_for(
                Duration::from_secs(10),
                "the server to catch up",
                move |ctx| (ctx.figures().accepted - base + AHEAD >= sent).then_some(()),
            );
        }
    }
}

/// Waits until only the kept connections remain open.
fn settle(server: &Server<Quiet>) {
    server.wait_for(
        Duration::from_secs(10),
        "churned connections to close",
        |ctx| {
            let f = ctx.figures();
            (f.open_connections == KEPT && f.lingering_connections == 0).then_some(())
        },
    );
}

#[test]
fn churned_connections_leave_no_timers_and_no_memory_behind() {
    bounded(Duration::from_secs(60), || {
        let server = Server::start(Config::default(), Quiet);
        let addr = server.addr;
        let kept: Vec<TcpStream> = (0..KEPT)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        // Warm up: let every pool, slab and allocator arena reach its working size.
        churn(&server, addr, 5_000);
        settle(&server);
        let rss_before = rss_bytes();
        let started = Instant::now();

        churn(&server, addr, CYCLES);
        settle(&server);
        let took = started.elapsed();

        let figures = server.query(|ctx| ctx.figures());
        let rss_after = rss_bytes();
        eprintln!(
            "{CYCLES} cycles in {took:?}: heap {} entries for {KEPT} live idle timers; \
             RSS {} -> {} KiB",
            figures.timers,
            rss_before / 1024,
            rss_after / 1024
        );
        assert!(
            figures.timers <= 2 * KEPT,
            "{} heap entries for {KEPT} live timers",
            figures.timers
        );
        assert!(
            rss_after <= rss_before + (4 << 20),
            "RSS grew from {} KiB to {} KiB",
            rss_before / 1024,
            rss_after / 1024
        );
        drop(kept);
    });
}
