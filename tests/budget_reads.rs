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
