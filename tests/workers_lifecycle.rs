//! The `server` example with `--workers`, run as a program: replies keep request order whatever
//! produced them (worker results and error frames alike), and a graceful shutdown (SIGTERM)
//! waits for the jobs already accepted and delivers their replies before closing.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::process::Running;
use common::{Peer, bounded, frame};
use serde_json::{Value, json};

/// The issue's mix: good, empty (invalid), good, not JSON (invalid), all in one write.
fn mixed_batch() -> Vec<u8> {
    let mut wire = frame(br#"{"a":1}"#);
    wire.extend(frame(b""));
    wire.extend(frame(br#"{"b":2}"#));
    wire.extend(frame(b"nope"));
    wire
}

fn assert_mixed_replies(peer: &mut Peer, round: usize) {
    assert_eq!(peer.recv(), json!({"a": 1}), "round {round}: reply 0");
    assert_eq!(
        peer.recv()["error"],
        "invalid_json",
        "round {round}: reply 1"
    );
    assert_eq!(peer.recv(), json!({"b": 2}), "round {round}: reply 2");
    assert_eq!(
        peer.recv()["error"],
        "invalid_json",
        "round {round}: reply 3"
    );
}

#[test]
fn server_example_with_workers_replies_in_request_order_errors_included() {
    bounded(Duration::from_secs(60), || {
        let (mut srv, addr) = Running::server(
            &["--reactors", "1", "--workers", "2", "--work-us", "2000"],
            Stdio::inherit(),
        );
        let mut peer = Peer::connect(addr);
        for round in 0..20 {
            peer.stream.write_all(&mixed_batch()).unwrap();
            assert_mixed_replies(&mut peer, round);
        }
        srv.signal(libc::SIGTERM);
        peer.expect_closed();
        assert!(srv.wait(Duration::from_secs(20)).success());
    });
}

#[test]
fn server_example_answers_jobs_at_the_workers_when_terminated() {
    bounded(Duration::from_secs(60), || {
        const N: usize = 5;
        let (mut srv, addr) = Running::server(
            &["--reactors", "1", "--workers", "1", "--work-us", "100000"],
            Stdio::inherit(),
        );
        let mut peer = Peer::connect(addr);
        let mut wire = Vec::new();
        for i in 0..N {
            wire.extend(frame(json!({"req": i}).to_string().as_bytes()));
        }
        peer.stream.write_all(&wire).unwrap();
        // The first reply proves the server has read the batch's start; the rest are still at
        // (or parked in front of) the single worker when the signal lands.
        assert_eq!(peer.recv(), json!({"req": 0}));
        srv.signal(libc::SIGTERM);
        for i in 1..N {
            let reply: Value = peer.recv();
            assert_eq!(reply, json!({"req": i}), "reply {i} after SIGTERM");
        }
        peer.expect_closed();
        assert!(srv.wait(Duration::from_secs(20)).success());
    });
}
