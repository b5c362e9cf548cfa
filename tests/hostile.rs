//! Hostile and broken peers: every error row of the contract, the memory budgets, and a
//! thousand peers that misbehave in every way we know, against the library's reactor.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::{Echo, Peer, Server, bounded, first_conn, frame, raise_fd_limit};
use highwater::{Config, PauseReason};
use serde_json::json;

#[test]
fn a_four_gigabyte_length_prefix_reserves_nothing() {
    bounded(Duration::from_secs(30), || {
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(Config::default(), echo);
        let mut peer = Peer::connect(server.addr);
        peer.stream.write_all(&[0xFF; 4]).unwrap();
        assert_eq!(peer.recv()["error"], "frame_too_large");
        peer.expect_closed();
        drop(peer);
        let last = seen.wait(Duration::from_secs(10), "close", |s| {
            s.last_figures.first().copied()
        });
        // One ordinary read chunk at most, never anything sized by the announced length.
        assert!(
            last.peak_read_buffer_capacity <= 128 * 1024,
            "read buffer grew to {} bytes",
            last.peak_read_buffer_capacity
        );
    });
}

#[test]
fn busy_is_sent_without_reading_the_peers_data() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            max_connections: 2,
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let mut a = Peer::connect(server.addr);
        let _b = Peer::connect(server.addr);
        a.send(&json!("a"));
        assert_eq!(a.recv(), json!("a"));
        seen.wait(Duration::from_secs(10), "two open", |s| {
            (s.opened.len() == 2).then_some(())
        });
        // The third arrives talking; its data is never delivered as messages.
        let mut c = Peer::connect(server.addr);
        c.send(&json!("c"));
        c.stream.write_all(&vec![b' '; 256 * 1024]).ok();
        assert_eq!(c.recv(), json!({"error": "busy", "limit": 2}));
        c.expect_closed();
        assert_eq!(
            seen.get(|s| s.messages),
            1,
            "only a's message was delivered"
        );
        let f = server.query(|ctx| ctx.figures());
        assert_eq!(f.rejected_busy, 1);
        assert_eq!(f.open_connections, 2);
    });
}

#[test]
fn a_slowloris_trickle_that_never_completes_a_frame_is_closed_on_time() {
    bounded(Duration::from_secs(30), || {
        let idle = Duration::from_millis(300);
        let config = Config {
            idle_timeout: Some(idle),
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let mut peer = Peer::connect(server.addr);
        // A 100-byte frame at one byte every 20 ms would take over 2 s to complete.
        let wire = frame(format!("\"{}\"", "t".repeat(98)).as_bytes());
        let start = Instant::now();
        let mut writer = peer.stream.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            for b in wire {
                if writer.write_all(&[b]).is_err() {
                    return; // closed on us: the point of the test
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert_eq!(peer.recv(), json!({"error": "idle_timeout"}));
        let elapsed = start.elapsed();
        assert!(elapsed >= idle, "closed early: {elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(2),
            "the trickle kept it alive: {elapsed:?}"
        );
        peer.expect_closed();
        drop(peer);
        trickle.join().unwrap();
        let reason = seen.wait(Duration::from_secs(10), "close", |s| {
            s.closed.first().cloned()
        });
        assert_eq!(reason.1, "idle_timeout");
    });
}

#[test]
fn a_slow_reader_is_closed_by_the_write_timeout_and_its_queue_freed() {
    bounded(Duration::from_secs(60), || {
        let config = Config {
            high_water: 16 * 1024,
            low_water: 4 * 1024,
            write_timeout: Some(Duration::from_millis(500)),
            send_buffer_size: Some(4096),
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let mut peer = Peer::connect_small_window(server.addr, 4096);
        let conn = first_conn(&seen);
        // Requests until the server pauses us with replies queued.
        let mut writer = peer.stream.try_clone().unwrap();
        let payload = frame(format!("\"{}\"", "s".repeat(2000)).as_bytes());
        let sender = std::thread::spawn(move || while writer.write_all(&payload).is_ok() {});
        server.wait_for(Duration::from_secs(20), "paused", move |ctx| {
            ctx.conn_figures(conn)
                .filter(|f| f.reading.contains(PauseReason::WriteQueue))
        });
        // Now read one byte every 20 ms (progress, but never a drain) until the server gives up.
        let start = Instant::now();
        let mut byte = [0u8; 1];
        while seen.get(|s| s.closed.is_empty()) {
            let _ = peer.stream.read(&mut byte);
            std::thread::sleep(Duration::from_millis(20));
            assert!(start.elapsed() < Duration::from_secs(10), "never closed");
        }
        let reason = seen.wait(Duration::from_secs(10), "close", |s| {
            s.closed.first().cloned()
        });
        assert_eq!(reason.1, "write_timeout");
        let f = server.query(|ctx| ctx.figures());
        assert_eq!(f.queued_bytes, 0, "the queue was freed");
        drop(peer);
        sender.join().unwrap();
    });
}

#[test]
fn two_hundred_slow_readers_cannot_push_the_total_past_the_budget() {
    raise_fd_limit();
    bounded(Duration::from_secs(120), || {
        const PEERS: usize = 200;
        const FRAMES: usize = 50; // 50 KiB of requests each: fits in the kernel, never blocks
        const BUDGET: usize = 1024 * 1024;
        let config = Config {
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            queue_budget: Some(BUDGET),
            send_buffer_size: Some(4096),
            write_timeout: None,
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());
        let payload = frame(format!("\"{}\"", "b".repeat(1018)).as_bytes());
        let mut peers: Vec<Peer> = (0..PEERS)
            .map(|_| Peer::connect_small_window(server.addr, 4096))
            .collect();
        for p in &mut peers {
            for _ in 0..FRAMES {
                p.stream.write_all(&payload).unwrap();
            }
        }
        // Unchecked, 200 x ~46 KiB of replies would queue; the budget stops reading first.
        server.wait_for(Duration::from_secs(30), "budget pause", |ctx| {
            ctx.figures().budget_paused.then_some(())
        });
        // Over the budget a connection may add one reply before it is judged and paused
        // (`budget.rs`): the queues stay within the budget plus one reply per connection.
        let bound = BUDGET + PEERS * payload.len();
        let f = server.query(|ctx| ctx.figures());
        assert!(
            f.peak_queued_bytes <= bound,
            "queued {} past a budget of {BUDGET}",
            f.peak_queued_bytes
        );
        // Everyone reads: every reply arrives and the budget pause lifts by itself.
        for p in &mut peers {
            p.stream.set_nonblocking(true).unwrap();
        }
        let mut got = vec![0usize; PEERS];
        let mut bufs = vec![Vec::new(); PEERS];
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.iter().any(|&g| g < FRAMES * payload.len()) {
            for (i, p) in peers.iter_mut().enumerate() {
                let mut chunk = [0u8; 65536];
                if let Ok(n) = p.stream.read(&mut chunk) {
                    got[i] += n;
                    bufs[i].extend_from_slice(&chunk[..n]);
                }
            }
            assert!(Instant::now() < deadline, "replies stopped arriving");
        }
        for b in &bufs {
            assert!(b.chunks(payload.len()).all(|c| c == &payload[..]));
        }
        let f = server.query(|ctx| ctx.figures());
        assert!(!f.budget_paused);
        assert!(f.peak_queued_bytes <= bound);
        assert_eq!(
            f.read_buffer_bytes, 0,
            "read out: every buffer is back in the pool"
        );
    });
}

#[test]
fn a_thousand_broken_peers_leave_no_connection_behind() {
    raise_fd_limit();
    bounded(Duration::from_secs(120), || {
        let config = Config {
            linger: Duration::from_millis(200),
            ..Config::default()
        };
        let server = Server::start(config, Echo::default());
        let addr = server.addr;
        // A well-behaved client, served throughout.
        let mut good = Peer::connect(addr);
        for i in 0..1000 {
            match i % 4 {
                // Reset in the middle of a frame.
                0 => {
                    let mut p = Peer::connect(addr);
                    p.stream.write_all(&[0, 0, 0, 100, b'"', b'x']).unwrap();
                    p.reset();
                }
                // Connect and close at once.
                1 => drop(Peer::connect(addr)),
                // Half a frame, then half-close: a truncated frame.
                2 => {
                    let mut p = Peer::connect(addr);
                    p.stream.write_all(&[0, 0, 0, 9, b'[']).unwrap();
                    p.stream.shutdown(Shutdown::Write).unwrap();
                }
                // Requests, then close with the replies unread (queued, or in flight).
                _ => {
                    let mut p = Peer::connect(addr);
                    for j in 0..50 {
                        p.send(&json!([i, j, "z".repeat(200)]));
                    }
                }
            }
            if i % 100 == 0 {
                good.send(&json!({"still": i}));
                assert_eq!(good.recv(), json!({"still": i}));
            }
        }
        drop(good);
        let f = server.wait_for(Duration::from_secs(30), "every slot freed", |ctx| {
            let f = ctx.figures();
            (f.connection_slots == 0).then_some(f)
        });
        assert_eq!(f.open_connections, 0);
        assert_eq!(f.lingering_connections, 0);
        assert_eq!(f.queued_bytes, 0);
        assert_eq!(f.accepted, 1001);
        assert_eq!(f.closed, 1001);
    });
}
