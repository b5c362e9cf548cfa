//! The wire format over real sockets: frames in pieces, frames in storms, and the contract's
//! error replies.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Echo, Peer, Server, bounded, frame};
use highwater::Config;
use serde_json::json;

#[test]
fn frames_sent_one_byte_at_a_time_are_reassembled() {
    bounded(Duration::from_secs(30), || {
        let server = Server::start(Config::default(), Echo::default());
        let mut peer = Peer::connect(server.addr);
        let messages = [json!({"a": 1}), json!([1, 2, 3]), json!("three")];
        let mut wire = Vec::new();
        for m in &messages {
            wire.extend(frame(&serde_json::to_vec(m).unwrap()));
        }
        for b in &wire {
            peer.stream.write_all(&[*b]).unwrap();
            peer.stream.flush().unwrap();
        }
        for m in &messages {
            assert_eq!(&peer.recv(), m);
        }
    });
}

#[test]
fn a_storm_of_ten_thousand_frames_in_one_write_is_answered_in_order() {
    bounded(Duration::from_secs(60), || {
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(Config::default(), echo);
        let mut peer = Peer::connect(server.addr);
        let mut wire = Vec::new();
        for i in 0..10_000 {
            wire.extend(frame(format!("{i}").as_bytes()));
        }
        // One write of all of it; read replies concurrently so neither side's buffers fill.
        let mut writer = peer.stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&wire).unwrap());
        for i in 0..10_000u64 {
            assert_eq!(peer.recv(), json!(i));
        }
        sender.join().unwrap();
        assert_eq!(seen.get(|s| s.messages), 10_000);
        // Replies produced in one turn leave together: many frames per writev.
        let f = server.query(|ctx| ctx.figures());
        assert!(
            f.writev_calls * 10 <= 10_000,
            "{} writev calls for 10,000 replies",
            f.writev_calls
        );
    });
}

#[test]
fn invalid_json_gets_an_error_reply_and_the_connection_goes_on() {
    bounded(Duration::from_secs(30), || {
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(Config::default(), echo);
        let mut peer = Peer::connect(server.addr);
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        for bad in [&b"{oops"[..], b"", b"\"\xff\xfe\"", deep.as_bytes(), b"1 2"] {
            peer.send_raw(bad);
            let reply = peer.recv();
            assert_eq!(reply["error"], "invalid_json", "for {bad:?}");
            assert!(reply["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
        // Still serving.
        peer.send(&json!({"still": "here"}));
        assert_eq!(peer.recv(), json!({"still": "here"}));
        assert_eq!(seen.get(|s| s.bad_messages), 5);
    });
}

#[test]
fn an_oversized_length_is_refused_from_the_header_and_the_connection_closed() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            max_frame: 1024,
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!("before"));
        assert_eq!(peer.recv(), json!("before"));
        // The header alone; no payload follows.
        peer.stream
            .write_all(&0xFFFF_FFFFu32.to_be_bytes())
            .unwrap();
        assert_eq!(
            peer.recv(),
            json!({"error": "frame_too_large", "limit": 1024, "got": 4_294_967_295u64})
        );
        peer.expect_closed();
        // Our close ends the server's linger at once.
        drop(peer);
        let reason = seen.wait(Duration::from_secs(10), "close", |s| {
            s.closed.first().cloned()
        });
        assert_eq!(reason.1, "frame_too_large");
    });
}

#[test]
fn a_frame_of_exactly_max_frame_is_accepted() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            max_frame: 1000,
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());
        let mut peer = Peer::connect(server.addr);
        let payload = format!("\"{}\"", "m".repeat(998));
        peer.send_raw(payload.as_bytes());
        assert_eq!(peer.recv_raw().unwrap().unwrap(), payload.as_bytes());
        let too_big = format!("\"{}\"", "m".repeat(999));
        peer.send_raw(too_big.as_bytes());
        assert_eq!(peer.recv()["error"], "frame_too_large");
    });
}
