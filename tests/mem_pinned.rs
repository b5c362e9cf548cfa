//! A zero-copy payload must not keep a much larger read buffer alive (issue: memory bounded
//! on every path, item 1).
//!
//! The attack: peers that never read their replies send, in a loop, an ~8 MB frame of
//! invalid JSON (answered with a small `invalid_json`) and then a valid ~9 KB JSON string,
//! which the echo handler queues without copying. If that 9 KB payload is a slice of the
//! 8 MB buffer the big frame was read into, each queued echo pins 8 MB while the queue and
//! the budget count 9 KB: six peers took the server to +687 MiB before the fix.
//!
//! This file holds a single test so that the process's peak RSS (VmHWM) belongs to it alone.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::process::status_bytes;
use common::{Echo, Peer, Server, bounded};
use highwater::Config;

const PEERS: usize = 6;
/// The big frame: just under `MAX_FRAME`. A smaller limit than the default 8 MiB keeps what
/// the server legitimately holds (one frame in progress per peer) well apart from what pinning
/// holds (one big buffer per queued echo).
const MAX_FRAME: usize = 8 * 1024 * 1024;
const BIG: usize = 8_000_000;
const SMALL: usize = 9 * 1024;
const BUDGET: usize = 4 * 1024 * 1024;

#[test]
fn a_small_echo_does_not_pin_the_big_read_buffer_it_arrived_in() {
    bounded(Duration::from_secs(120), || {
        let config = Config {
            queue_budget: Some(BUDGET),
            max_frame: MAX_FRAME,
            // A small kernel send buffer keeps the replies in the counted write queue, where
            // the attack wants them, instead of in the kernel's.
            send_buffer_size: Some(16 * 1024),
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());

        // One wire image of each frame, shared by every peer: the client side costs ~8 MB.
        let mut big = Vec::with_capacity(BIG + 4);
        big.extend_from_slice(&(BIG as u32).to_be_bytes());
        big.resize(BIG + 4, b'x');
        let mut small = Vec::with_capacity(SMALL + 4);
        small.extend_from_slice(&(SMALL as u32).to_be_bytes());
        small.push(b'"');
        small.resize(SMALL + 3, b's');
        small.push(b'"');
        big.extend_from_slice(&small);
        let both = Arc::new(big);

        // The peak from here on is what the attack costs.
        let baseline = status_bytes("VmRSS:");
        std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");

        let peers: Vec<_> = (0..PEERS)
            .map(|_| {
                let (both, addr) = (both.clone(), server.addr);
                std::thread::spawn(move || {
                    let mut peer = Peer::connect_small_window(addr, 4096);
                    // The attack lasts 8 s whatever happens: large frames wait their turn for
                    // the budget, and a server that stops reading us (our replies are at its
                    // high-water mark) just leaves us waiting. Short write timeouts let us
                    // watch the clock without losing our place in a frame.
                    peer.stream
                        .set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let end = std::time::Instant::now() + Duration::from_secs(8);
                    let mut rounds = 0;
                    'attack: while rounds < 64 {
                        // One write for both frames, so the small one arrives right behind the
                        // big one and is read into what is left of the big one's buffer.
                        let mut sent = 0;
                        while sent < both.len() {
                            match peer.stream.write(&both[sent..]) {
                                Ok(n) => sent += n,
                                Err(_) if std::time::Instant::now() < end => {}
                                Err(_) => break 'attack,
                            }
                        }
                        rounds += 1;
                    }
                    (rounds, peer)
                })
            })
            .collect();
        let mut rounds = Vec::new();
        let mut keep = Vec::new();
        for p in peers {
            let (r, peer) = p.join().expect("peer thread");
            rounds.push(r);
            keep.push(peer); // still connected: the server still holds what it queued
        }
        let peak = status_bytes("VmHWM:");
        let figures = server.query(|ctx| ctx.figures());

        // The attack ran: big frames went through, each followed by an echo that could pin
        // the big buffer. The budget now makes big frames take turns, and a peer that never
        // reads stalls once its replies stay queued, so far fewer than the ~35 per peer that
        // went through before the fix.
        let echoes = rounds.iter().sum::<usize>();
        assert!(
            echoes >= PEERS,
            "the attack did not run: rounds per peer {rounds:?}"
        );

        // The promise (`budget.rs`): the process holds at most the budget, plus one maximum
        // frame (the one connection allowed to overdraw it to finish a large frame), plus per
        // connection one ordinary read buffer (128 KiB) and the replies to one read. The test
        // itself holds the frames' image (~8 MB), the buffer pool is at most 8 MiB; 24 MiB
        // covers those, the allocator's slack, and the harness. Pinning, by contrast, costs a
        // whole big buffer per queued echo: +61 to +154 MiB before the fix.
        let bound = BUDGET + MAX_FRAME + PEERS * (128 + 64) * 1024 + 24 * 1024 * 1024;
        let grown = peak.saturating_sub(baseline);
        eprintln!(
            "rounds per peer {rounds:?}; queued {} B; peak RSS +{} MiB (bound +{} MiB)",
            figures.queued_bytes,
            grown >> 20,
            bound >> 20
        );
        assert!(
            grown <= bound,
            "peak RSS grew by {} MiB, bound {} MiB",
            grown >> 20,
            bound >> 20
        );
        drop(keep);
    });
}
