//! The process-wide budget binds the connections that hold the memory, not everyone (issue:
//! memory bounded on every path, item 2).
//!
//! 200 peers pipeline requests and never read a reply, against a 4 MiB budget. Before the fix,
//! reaching the budget paused reading on *every* connection, so a well-behaved client beside
//! them got nothing until the hogs went away, which they never do. Now the connections
//! holding more than their fair share stop; a client holding almost nothing is still served.
//!
//! A single test in this file, so the process's peak RSS belongs to it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::process::status_bytes;
use common::{Echo, Peer, Server, bounded, frame, raise_fd_limit};
use highwater::Config;
use serde_json::json;

const READERS: usize = 200;
const BUDGET: usize = 4 * 1024 * 1024;

#[test]
fn slow_readers_past_the_budget_do_not_stop_a_light_client() {
    raise_fd_limit();
    bounded(Duration::from_secs(60), || {
        let config = Config {
            queue_budget: Some(BUDGET),
            // Replies stay in the counted queues instead of the kernel's send buffers.
            send_buffer_size: Some(16 * 1024),
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());
        let baseline = status_bytes("VmRSS:");
        std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");

        // The hogs: each sends 1 MiB of 1 KiB requests as fast as the server takes them,
        // and never reads. Non-blocking, so one thread drives all of them.
        let request = frame(json!("r".repeat(1000)).to_string().as_bytes());
        let burst: Vec<u8> = request.repeat(1024);
        let mut hogs: Vec<(std::net::TcpStream, usize)> = (0..READERS)
            .map(|_| {
                let p = Peer::connect_small_window(server.addr, 4096);
                p.stream.set_nonblocking(true).unwrap();
                (p.stream, 0)
            })
            .collect();

        let mut ping = Peer::connect(server.addr);
        ping.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut worst = Duration::ZERO;
        let mut answered = 0;
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            // Feed the hogs whatever their sockets take.
            for (s, sent) in hogs.iter_mut() {
                while *sent < burst.len() {
                    match s.write(&burst[*sent..]) {
                        Ok(k) => *sent += k,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("hog write failed: {e}"),
                    }
                }
            }
            // One ping, timed.
            n += 1;
            let t = Instant::now();
            ping.send(&json!({"ping": n}));
            let reply = match ping.recv_raw() {
                Ok(Some(p)) => serde_json::from_slice::<serde_json::Value>(&p).expect("JSON"),
                other => panic!("ping {n} got no reply within 5 s ({other:?})"),
            };
            let took = t.elapsed();
            assert_eq!(
                reply,
                json!({"ping": n}),
                "the ping client's replies are intact"
            );
            worst = worst.max(took);
            answered += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        let figures = server.query(|ctx| ctx.figures());
        let peak = status_bytes("VmHWM:");
        let hogged: usize = hogs.iter().map(|(_, sent)| *sent).sum();
        eprintln!(
            "pings {answered}, worst {worst:?}; hogs sent {} MiB; queued {} B, read buffers {} B, \
             peak held {} B, paused {}, peak RSS +{} MiB",
            hogged >> 20,
            figures.queued_bytes,
            figures.read_buffer_bytes,
            figures.peak_held_bytes,
            figures.paused_connections,
            peak.saturating_sub(baseline) >> 20
        );
        assert!(
            worst < Duration::from_secs(1),
            "a ping waited {worst:?} behind the slow readers"
        );
        assert!(
            hogged > 2 * BUDGET,
            "the hogs sent too little to reach the budget"
        );
        // What the reactor counts: the budget, plus per connection one read buffer (128 KiB)
        // and the replies to one read before it was judged.
        assert!(
            figures.peak_held_bytes <= BUDGET + READERS * (128 + 64) * 1024,
            "held {} bytes at the peak, budget {BUDGET}",
            figures.peak_held_bytes
        );
        // Memory: the budget, plus what may escape it by design: each connection may finish
        // one read buffer (128 KiB) before it is judged, plus the buffer pool (8 MiB) and
        // the test's own buffers and threads (8 MiB).
        let bound = BUDGET + READERS * 128 * 1024 + 16 * 1024 * 1024;
        let grown = peak.saturating_sub(baseline);
        assert!(
            grown <= bound,
            "peak RSS grew by {} MiB, bound {} MiB",
            grown >> 20,
            bound >> 20
        );
        for (s, _) in &mut hogs {
            let _ = s.read(&mut [0u8; 1]);
        }
    });
}
