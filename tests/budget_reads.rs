//! The read side of the budget (`budget.rs`): a large frame's buffer is granted before it is
//! allocated, and one connection at a time may overdraw the budget to finish a frame, so
//! frames larger than the whole budget still complete, in turn, and nothing deadlocks.

mod common;

use std::time::Duration;

use common::{Echo, Peer, Server, bounded, read_frame};
use highwater::Config;

const BUDGET: usize = 1024 * 1024;
const MAX_FRAME: usize = 4 * 1024 * 1024;

fn big_string(len: usize, fill: u8) -> Vec<u8> {
    let mut v = vec![fill; len];
    v[0] = b'"';
    v[len - 1] = b'"';
    v
}

#[test]
fn a_frame_larger_than_the_whole_budget_completes() {
    bounded(Duration::from_secs(60), || {
        let config = Config {
            queue_budget: Some(BUDGET),
            max_frame: MAX_FRAME,
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());
        let mut peer = Peer::connect(server.addr);
        let payload = big_string(3 * BUDGET, b'a');
        peer.send_raw(&payload);
        let echoed = read_frame(&mut peer.stream).unwrap().expect("an echo");
        assert!(echoed == payload, "the echo is the frame, intact");
    });
}

#[test]
fn peers_sending_frames_past_the_budget_take_turns_and_all_finish() {
    bounded(Duration::from_secs(90), || {
        const PEERS: usize = 4;
        const FRAMES: usize = 3;
        let config = Config {
            queue_budget: Some(BUDGET),
            max_frame: MAX_FRAME,
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());
        let peers: Vec<_> = (0..PEERS)
            .map(|i| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let mut peer = Peer::connect(addr);
                    let payload = big_string(2 * BUDGET + i, b'a' + i as u8);
                    let writer = {
                        let mut s = peer.stream.try_clone().unwrap();
                        let p = payload.clone();
                        std::thread::spawn(move || {
                            for _ in 0..FRAMES {
                                std::io::Write::write_all(&mut s, &common::frame(&p)).unwrap();
                            }
                        })
                    };
                    for _ in 0..FRAMES {
                        let echoed = read_frame(&mut peer.stream).unwrap().expect("an echo");
                        assert!(echoed == payload, "peer {i}: echo intact");
                    }
                    writer.join().unwrap();
                })
            })
            .collect();
        for p in peers {
            p.join().expect("every peer got every echo");
        }
        let f = server.query(|ctx| ctx.figures());
        // The budget, one overdrawn frame, and per connection an ordinary read buffer and
        // the replies to one read (here, one echo of up to a frame: the write side judges
        // a queue after it grew).
        let bound = BUDGET + MAX_FRAME + PEERS * (128 * 1024 + 2 * BUDGET + 4);
        assert!(
            f.peak_held_bytes <= bound,
            "held {} at the peak, bound {bound}",
            f.peak_held_bytes
        );
    });
}

/// The overdraft is for one frame at a time *while the budget is exceeded*: a frame that is
/// read out is still held (its echo, queued for a peer that never reads), so the next peer in
/// line may not overdraw until the total is back under the budget. Before, the overdraft
/// passed on as soon as the frame was read, and held memory grew by one frame per peer.
#[test]
fn the_overdraft_waits_until_the_last_one_is_paid_back() {
    bounded(Duration::from_secs(60), || {
        const PEERS: usize = 4;
        let config = Config {
            queue_budget: Some(BUDGET),
            max_frame: MAX_FRAME,
            // Echoes stay in the counted queue rather than the kernel's buffers.
            send_buffer_size: Some(16 * 1024),
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());
        let payload = common::frame(&big_string(2 * BUDGET, b'z'));
        let writers: Vec<_> = (0..PEERS)
            .map(|_| {
                let mut peer = Peer::connect_small_window(server.addr, 4096);
                let wire = payload.clone();
                std::thread::spawn(move || {
                    // Never reads; the write ends when the server stops reading us, or with
                    // the peer's 20 s timeout, whichever comes first.
                    let _ = std::io::Write::write_all(&mut peer.stream, &wire);
                    peer
                })
            })
            .collect();
        // Watch the reactor for 3 s: whatever order the peers are served in, the total held
        // never goes past the budget by more than one frame (and a read buffer each).
        let bound = BUDGET + MAX_FRAME + PEERS * 128 * 1024;
        let end = std::time::Instant::now() + Duration::from_secs(3);
        let mut peak = 0;
        while std::time::Instant::now() < end {
            peak = server.query(|ctx| ctx.figures().peak_held_bytes);
            assert!(peak <= bound, "held {peak} bytes, bound {bound}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            peak > 2 * BUDGET,
            "a frame went through the overdraft ({peak} held)"
        );
        drop(server); // stops the reactor: the writers' writes fail and they end
        for w in writers {
            let _ = w.join();
        }
    });
}
