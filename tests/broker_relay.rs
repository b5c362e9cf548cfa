//! The `broker` and `relay` examples (issue 12), run as programs, against PROTOCOL.md: every
//! frame reaches every subscriber byte for byte under `pause`, a slow subscriber is told
//! exactly what it missed under `drop` and is reset under `disconnect`, bad requests get
//! error frames; the relay forwards both ways unchanged, carries a half-close across, and a
//! slow upstream holds the client back without losing a frame. `cargo test` builds the
//! examples first.

mod common;

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use common::process::{Running, example};
use common::{Peer, bounded, frame, read_frame};
use serde_json::{Value, json};

fn start(name: &str, args: &[&str]) -> (Running, SocketAddr) {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Running::example(name, &all, Stdio::inherit())
}

/// The published payloads: `{"op":"pub","topic":"t","data":{"seq":i,"pad":"…"}}`, about 256
/// bytes each, the padding varying so a frame delivered in the wrong place is seen.
fn published(n: usize) -> Arc<Vec<Vec<u8>>> {
    let frames = (0..n)
        .map(|i| {
            let pad: String = std::iter::repeat_n((b'a' + (i % 26) as u8) as char, 200).collect();
            // Spacing the serializer would not produce: forwarding must keep it as published.
            format!(r#"{{ "op":"pub", "topic":"t", "data":{{"seq":{i},"pad":"{pad}"}} }}"#)
                .into_bytes()
        })
        .collect();
    Arc::new(frames)
}

fn seq_of(payload: &[u8]) -> Option<usize> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    usize::try_from(v["data"]["seq"].as_u64()?).ok()
}

/// A subscriber to topic "t", once the broker has confirmed it.
fn subscribe(mut peer: Peer) -> Peer {
    peer.send(&json!({"op": "sub", "topic": "t"}));
    assert_eq!(peer.recv(), json!({"op": "subscribed", "topic": "t"}));
    peer
}

/// What one subscriber's stream held.
#[derive(Debug, Default)]
struct Received {
    frames: usize,
    /// Frames announced missing by gap notices.
    dropped: usize,
    gaps: usize,
    /// The sequence number the next frame must carry.
    next: usize,
}

/// Checks one frame against the stream so far: a gap notice, or exactly the published frame
/// that comes next once announced gaps are skipped. Returns the frame's sequence number.
fn check(r: &mut Received, payload: &[u8], all: &[Vec<u8>], pending_gap: &mut bool) -> usize {
    let v: Value = serde_json::from_slice(payload).expect("a JSON frame");
    if v["op"] == "gap" {
        assert!(!*pending_gap, "two gap notices in a row");
        let k = v["dropped"].as_u64().expect("dropped: K") as usize;
        assert!(k > 0, "a gap notice for nothing");
        r.dropped += k;
        r.gaps += 1;
        r.next += k;
        *pending_gap = true;
        return usize::MAX;
    }
    *pending_gap = false;
    let seq = seq_of(payload).unwrap_or_else(|| panic!("not a published frame: {v}"));
    assert_eq!(
        seq, r.next,
        "frame out of order, or missing without a gap notice"
    );
    assert_eq!(
        payload,
        &all[seq][..],
        "frame {seq} was not forwarded byte for byte"
    );
    r.frames += 1;
    r.next += 1;
    seq
}

/// Reads `stream` until it has accounted for `total` frames (received or announced dropped).
fn read_all(stream: TcpStream, all: Arc<Vec<Vec<u8>>>, total: usize) -> Received {
    let mut input = BufReader::with_capacity(64 * 1024, stream);
    let mut r = Received::default();
    let mut gap = false;
    while r.next < total || gap {
        let p = read_frame(&mut input)
            .expect("read")
            .expect("a frame, not end of stream");
        check(&mut r, &p, &all, &mut gap);
    }
    r
}

fn write_frames(stream: &mut TcpStream, frames: &[Vec<u8>]) {
    let mut wire = Vec::new();
    for f in frames {
        wire.extend(frame(f));
    }
    stream.write_all(&wire).expect("publish");
}

#[test]
fn broker_pause_delivers_every_frame_to_fast_and_slow_subscribers() {
    bounded(Duration::from_secs(90), || {
        const N: usize = 20_000;
        let all = published(N);
        let (_broker, addr) = start(
            "broker",
            &[
                "--policy",
                "pause",
                "--high-water",
                "16KiB",
                "--low-water",
                "4KiB",
            ],
        );
        let slow = subscribe(Peer::connect_small_window(addr, 4096));
        let fast = subscribe(Peer::connect(addr));
        let mut publisher = Peer::connect(addr);
        let frames = all.clone();
        let writer = std::thread::spawn(move || write_frames(&mut publisher.stream, &frames));
        let fast_all = all.clone();
        let fast = std::thread::spawn(move || read_all(fast.stream, fast_all, N));
        // The slow one reads in spurts, so its queue passes high-water again and again.
        let mut input = BufReader::new(slow.stream.try_clone().unwrap());
        let mut r = Received::default();
        let mut gap = false;
        while r.next < N {
            if r.next % 2000 == 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
            let p = read_frame(&mut input).unwrap().expect("a frame");
            check(&mut r, &p, &all, &mut gap);
        }
        writer.join().unwrap();
        let fast = fast.join().unwrap();
        assert_eq!((r.frames, r.gaps), (N, 0), "slow: {r:?}");
        assert_eq!((fast.frames, fast.gaps), (N, 0), "fast: {fast:?}");
    });
}

#[test]
fn broker_drop_announces_what_a_slow_subscriber_missed_before_its_next_frame() {
    bounded(Duration::from_secs(90), || {
        // 10 MB: more than the kernel's buffers toward the slow one can take (4 MB at most).
        const N: usize = 40_000;
        const TICKS: usize = 2_000;
        let all = published(N + TICKS + 1);
        let (_broker, addr) = start(
            "broker",
            &[
                "--policy",
                "drop",
                "--grace-ms",
                "300",
                "--high-water",
                "16KiB",
                "--low-water",
                "4KiB",
            ],
        );
        let slow = subscribe(Peer::connect_small_window(addr, 4096));
        let fast = subscribe(Peer::connect(addr));
        let mut publisher = Peer::connect(addr);
        // Every stream must account for every frame published, whatever it missed.
        let (total_tx, total_rx) = mpsc::channel::<usize>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (caught_up_tx, caught_up_rx) = mpsc::channel::<()>();
        let slow_all = all.clone();
        let slow = std::thread::spawn(move || {
            go_rx.recv().unwrap(); // not a frame read until everything is published
            let mut input = BufReader::new(slow.stream);
            let mut r = Received::default();
            let mut gap = false;
            let mut told = false;
            let mut total = usize::MAX;
            while r.next < total || gap {
                let p = read_frame(&mut input).unwrap().expect("a frame");
                let seq = check(&mut r, &p, &slow_all, &mut gap);
                // A frame past the burst, after a gap notice: it has drained and been told.
                if !told && seq != usize::MAX && seq >= N && r.gaps > 0 {
                    told = true;
                    caught_up_tx.send(()).unwrap();
                    total = total_rx.recv().unwrap();
                }
            }
            r
        });
        // The fast one reads all along, to the last frame published (`total`, once known).
        let total = Arc::new(AtomicUsize::new(usize::MAX));
        let (fast_all, fast_total) = (all.clone(), total.clone());
        let fast = std::thread::spawn(move || {
            let mut input = BufReader::with_capacity(64 * 1024, fast.stream);
            let mut r = Received::default();
            let mut gap = false;
            while r.next < fast_total.load(Ordering::SeqCst) || gap {
                let p = read_frame(&mut input).unwrap().expect("a frame");
                check(&mut r, &p, &fast_all, &mut gap);
            }
            r
        });
        // The slow one holds the publisher back for its grace (300 ms), then misses frames.
        write_frames(&mut publisher.stream, &all[..N]);
        go_tx.send(()).unwrap();
        // Then a frame now and then, until the slow subscriber has had its gap notice and a
        // frame after it.
        let mut sent = N;
        while caught_up_rx.try_recv().is_err() {
            assert!(sent < N + TICKS, "the slow subscriber never caught up");
            write_frames(&mut publisher.stream, &all[sent..sent + 1]);
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        // One frame more after the total is known, so a reader that had already read
        // everything before still sees the end.
        total.store(sent + 1, Ordering::SeqCst);
        total_tx.send(sent + 1).unwrap();
        write_frames(&mut publisher.stream, &all[sent..sent + 1]);
        sent += 1;
        let fast = fast.join().unwrap();
        let slow = slow.join().unwrap();
        assert!(slow.gaps > 0 && slow.dropped > 0, "slow: {slow:?}");
        assert_eq!(slow.frames + slow.dropped, sent, "slow: {slow:?}");
        // A subscriber that keeps up loses nothing: it paces the publisher instead.
        assert_eq!((fast.frames, fast.gaps), (sent, 0), "fast: {fast:?}");
    });
}

#[test]
fn broker_disconnect_resets_a_slow_subscriber_and_the_fast_one_gets_everything() {
    bounded(Duration::from_secs(90), || {
        const N: usize = 40_000;
        let all = published(N);
        let (_broker, addr) = start(
            "broker",
            &[
                "--policy",
                "disconnect",
                "--grace-ms",
                "200",
                "--high-water",
                "16KiB",
                "--low-water",
                "4KiB",
            ],
        );
        let mut slow = subscribe(Peer::connect_small_window(addr, 4096));
        let fast = subscribe(Peer::connect(addr));
        let mut publisher = Peer::connect(addr);
        let fast_all = all.clone();
        let fast = std::thread::spawn(move || read_all(fast.stream, fast_all, N));
        // 10 MB over about a second: more than the kernel's buffers toward the slow one can
        // take (4 MB at most here), for longer than the grace.
        for chunk in all.chunks(1000) {
            write_frames(&mut publisher.stream, chunk);
            std::thread::sleep(Duration::from_millis(25));
        }
        let fast = fast.join().unwrap();
        assert_eq!((fast.frames, fast.gaps), (N, 0), "fast: {fast:?}");
        // The slow one never read. Past its grace it is reset, even though publishing
        // stopped: what it can still read ends in a reset (or an end of stream), short of N.
        let mut got = 0;
        let end = loop {
            match slow.recv_raw() {
                Ok(Some(_)) => got += 1,
                other => break other,
            }
        };
        assert!(
            matches!(&end, Ok(None))
                || matches!(&end, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{end:?} after {got} frames"
        );
        assert!(
            got < N,
            "the slow subscriber was not cut off ({got} frames)"
        );
    });
}

#[test]
fn broker_answers_bad_requests_with_error_frames_and_keeps_the_connection() {
    bounded(Duration::from_secs(60), || {
        let (_broker, addr) = start("broker", &["--policy", "drop"]);
        let mut peer = Peer::connect(addr);
        peer.send(&json!({"op": "frob", "topic": "t"}));
        let reply = peer.recv();
        assert_eq!(reply["error"], "bad_request", "{reply}");
        assert!(
            reply["detail"].as_str().unwrap().contains("frob"),
            "{reply}"
        );
        peer.send(&json!({"op": "sub"})); // no topic
        assert_eq!(peer.recv()["error"], "bad_request");
        peer.send_raw(b"{not json");
        assert_eq!(peer.recv()["error"], "invalid_json");
        peer.send_raw(b"[1,2]"); // JSON, but not a request
        assert_eq!(peer.recv()["error"], "invalid_json");
        // Still open, and still a subscriber-to-be.
        let mut sub = subscribe(peer);
        let mut publisher = Peer::connect(addr);
        let payload = br#"{"op":"pub","topic":"t","data":[1, 2 ,3]}"#;
        publisher.send_raw(payload);
        assert_eq!(sub.recv_raw().unwrap().unwrap(), payload);
        // A publish to a topic nobody follows goes nowhere, and is no error.
        publisher.send(&json!({"op": "pub", "topic": "other", "data": 1}));
        publisher.send_raw(payload);
        assert_eq!(sub.recv_raw().unwrap().unwrap(), payload);
    });
}

#[test]
fn relay_forwards_both_ways_byte_for_byte_and_carries_a_half_close() {
    bounded(Duration::from_secs(60), || {
        let (_echo, upstream) = start("server", &["--mode", "echo"]);
        let up = upstream.to_string();
        let (_relay, addr) = start("relay", &["--upstream", &up]);
        // A reader that starts late: every queue on the way fills in both directions before
        // anything is read.
        let mut peer = Peer::connect(addr);
        // Odd spacing and escapes survive: the relay forwards bytes, it does not re-encode.
        let odd: &[u8] = br#"{ "a" : [1,2 , 3], "b":"\u00e9" }"#;
        peer.send_raw(odd);
        assert_eq!(peer.recv_raw().unwrap().unwrap(), odd);
        // Many megabytes both ways at once: neither direction waits for the other.
        // 30 MB: more than the kernel buffers on the way can hide. A relay whose connections
        // paused on their own full queues can deadlock on this (each direction's queue
        // waiting for the other's): seen in 2 of 4 runs of the release build with a 3 s late
        // reader and 1 KB frames, never with the debug build, so this is not a reliable check
        // of that, only of the volume both ways.
        let all = published(120_000);
        let mut writer = peer.stream.try_clone().unwrap();
        let frames = all.clone();
        let w = std::thread::spawn(move || {
            write_frames(&mut writer, &frames);
            writer.shutdown(Shutdown::Write).unwrap(); // the half-close crosses the relay...
        });
        let mut input = BufReader::new(peer.stream.try_clone().unwrap());
        std::thread::sleep(Duration::from_secs(3));
        for (i, f) in all.iter().enumerate() {
            let got = read_frame(&mut input).unwrap().expect("an echo");
            assert_eq!(&got, f, "echo {i}");
        }
        w.join().unwrap();
        // ...the echo server closes after its last reply, and that close crosses back.
        assert!(read_frame(&mut input).unwrap().is_none(), "end of stream");
    });
}

#[test]
fn relay_half_close_reaches_a_sink_which_still_answers_through_it() {
    bounded(Duration::from_secs(60), || {
        let (_sink, upstream) = start("server", &["--mode", "sink"]);
        let up = upstream.to_string();
        let (_relay, addr) = start("relay", &["--upstream", &up]);
        let mut peer = Peer::connect(addr);
        peer.send(&json!([1, 2, 3]));
        peer.send(&json!("ab"));
        peer.stream.shutdown(Shutdown::Write).unwrap();
        // The sink replies only on half-close: the FIN crossed the relay, and the reply
        // came back through the direction still open.
        assert_eq!(peer.recv(), json!({"received": 2, "bytes": 11}));
        peer.expect_closed();
    });
}

#[test]
fn relay_lets_a_pausing_sink_hold_the_client_back_and_every_frame_arrives() {
    bounded(Duration::from_secs(120), || {
        let (_sink, upstream) = start(
            "server",
            &[
                "--mode",
                "sink",
                "--process-every",
                "100",
                "--process-ms",
                "100",
            ],
        );
        let up = upstream.to_string();
        // Its hard queue limit is high-water + max frame + 4 (320 KiB here): a relay that
        // went on reading the client instead of pausing it would soon have to refuse frames.
        let (_relay, addr) = start("relay", &["--upstream", &up, "--max-frame", "64KiB"]);
        // 2,000 frames of ~6 KB, 12 MB.
        let out = Command::new(example("client"))
            .args([
                "--addr",
                &addr.to_string(),
                "--frames",
                "2000",
                "--records",
                "5",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run client");
        assert!(out.status.success(), "client failed");
        let summary: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(summary["server_reply"]["received"], 2000, "{summary}");
        // The client felt the pauses through the relay: its own queue reached high-water.
        assert!(summary["drain_events"].as_u64().unwrap() > 0, "{summary}");
    });
}

#[test]
fn relay_closes_the_client_when_the_upstream_is_not_there() {
    bounded(Duration::from_secs(60), || {
        // A port nobody listens on: bind one, note it, close it.
        let gone = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let (_relay, addr) = start("relay", &["--upstream", &gone]);
        let mut peer = Peer::connect(addr);
        peer.expect_closed();
    });
}
