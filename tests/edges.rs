//! The edges of the API, tried as a demanding user would: durations too large to add to an
//! instant, a `Handle` used after its reactor stopped, a command channel bounded in bytes as
//! well as in count, configurations that cannot hold one frame, and timers cancelled in bulk.
//! Each test is the regression test of one promise that once broke.

mod common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Echo, Peer, Server, bounded, first_conn};
use highwater::{Config, HandleError, Reactor, RequestClient, RequestConfig};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(20);

// ----- extreme durations mean "never", not a panic ------------------------------------------

#[test]
fn a_timer_set_for_duration_max_never_fires_and_can_still_be_cancelled() {
    bounded(LIMIT, || {
        let server = Server::start(Config::default(), Echo::default());
        let id = server.query(|ctx| ctx.set_timer(Duration::MAX, 7));
        // The reactor survived the call, and the timer is live until cancelled.
        assert!(server.query(move |ctx| ctx.cancel_timer(id)));
        assert!(!server.query(move |ctx| ctx.cancel_timer(id)));
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!({"still": "serving"}));
        assert_eq!(peer.recv(), json!({"still": "serving"}));
    });
}

#[test]
fn a_shutdown_with_a_duration_max_grace_ends_when_the_connections_do() {
    bounded(LIMIT, || {
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(Config::default(), echo);
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!(1));
        assert_eq!(peer.recv(), json!(1));
        first_conn(&seen);
        server.handle.shutdown(Duration::MAX).unwrap();
        // No deadline: the connection finishes reading, is closed gracefully, and once the
        // peer closes too, `run()` returns.
        peer.expect_closed();
        drop(peer);
        server.join();
    });
}

#[test]
fn config_durations_of_duration_max_mean_never() {
    bounded(LIMIT, || {
        let config = Config {
            idle_timeout: Some(Duration::MAX),
            write_timeout: Some(Duration::MAX),
            linger: Duration::MAX,
            ..Config::default()
        };
        config.validate().unwrap();
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        // Opening arms the idle clock, a reply arms the write-stall clock, and a graceful
        // close arms the linger clock: each with a deadline past the end of time.
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!({"n": 1}));
        assert_eq!(peer.recv(), json!({"n": 1}));
        let conn = first_conn(&seen);
        server.handle.close(conn).unwrap();
        peer.expect_closed();
        drop(peer);
        seen.wait(LIMIT, "the connection to close", |s| {
            (!s.closed.is_empty()).then_some(())
        });
        let figures = server.query(|ctx| ctx.figures());
        assert_eq!(figures.open_connections + figures.lingering_connections, 0);
    });
}

#[test]
fn a_request_with_a_duration_max_deadline_is_answered_and_counts_stay_true() {
    bounded(LIMIT, || {
        let server = Server::start(Config::default(), Echo::default());
        let client = RequestClient::connect(server.addr, RequestConfig::default()).unwrap();
        let rx = client.submit(json!({"op": "a"}), Duration::MAX).unwrap();
        let reply = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(reply["op"], "a");
        // `call` adds a second to the deadline for its own wait: that must saturate too.
        let reply = client.call(json!({"op": "b"}), Duration::MAX).unwrap();
        assert_eq!(reply["op"], "b");
        let reply = client
            .call(json!({"op": "c"}), Duration::from_secs(5))
            .unwrap();
        assert_eq!(reply["op"], "c");
        assert_eq!(client.pending(), 0);
    });
}

// ----- a handle after the reactor stopped ---------------------------------------------------

#[test]
fn a_handle_used_after_run_returned_reports_stopped() {
    bounded(LIMIT, || {
        let mut reactor = Reactor::new(Config::default(), Echo::default()).unwrap();
        let handle = reactor.handle();
        handle.stop().unwrap();
        reactor.run().unwrap();
        // The reactor value is still alive (and with it the channel's receiving end), but
        // nothing will ever read the channel again.
        assert_eq!(handle.notify(1), Err(HandleError::Stopped));
        assert_eq!(handle.run(|_| {}), Err(HandleError::Stopped));
        assert_eq!(handle.stop(), Err(HandleError::Stopped));
        assert_eq!(handle.shutdown(Duration::ZERO), Err(HandleError::Stopped));
        drop(reactor);
        assert_eq!(handle.notify(1), Err(HandleError::Stopped));
    });
}

// ----- the command channel: bytes, frame size, and room for control ----------------------------

/// A connection id for a reactor that is not running: a connect to a listener nobody serves.
fn idle_reactor(config: Config) -> (Reactor<Echo>, highwater::ConnId, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut reactor = Reactor::new(config, Echo::default()).unwrap();
    let conn = reactor.connect(listener.local_addr().unwrap()).unwrap();
    (reactor, conn, listener)
}

#[test]
fn a_handle_refuses_a_payload_over_max_frame_at_once() {
    bounded(LIMIT, || {
        let config = Config {
            max_frame: 1024,
            ..Config::default()
        };
        let (reactor, conn, _listener) = idle_reactor(config);
        let handle = reactor.handle();
        let big = Bytes::from(vec![b'1'; 2000]);
        assert_eq!(
            handle.send_payload(conn, big),
            Err(HandleError::TooLarge {
                limit: 1024,
                got: 2000
            })
        );
        let text = "x".repeat(2000);
        assert!(matches!(
            handle.send(conn, &text),
            Err(HandleError::TooLarge { limit: 1024, .. })
        ));
        // At the limit it is accepted.
        assert_eq!(handle.send_payload(conn, vec![b'1'; 1024].into()), Ok(()));
    });
}

#[test]
fn the_command_channel_is_bounded_in_bytes() {
    bounded(LIMIT, || {
        let budget = 4 << 20;
        let config = Config {
            queue_budget: Some(budget),
            ..Config::default()
        };
        let (reactor, conn, _listener) = idle_reactor(config);
        let handle = reactor.handle();
        // Clones share one allocation, so the test itself stays small whatever the bound.
        let payload = Bytes::from(vec![b'7'; 256 * 1024]);
        let mut accepted = 0usize;
        loop {
            match handle.send_payload(conn, payload.clone()) {
                Ok(()) => accepted += 1,
                Err(HandleError::Full) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(accepted <= 10_000, "the channel never filled");
        }
        assert!(accepted >= 1);
        assert!(
            accepted * payload.len() <= budget,
            "{accepted} payloads of {} bytes accepted, past the {budget}-byte bound",
            payload.len()
        );
        // Small commands still fit: the count bound is separate.
        assert_eq!(handle.notify(1), Ok(()));
    });
}

#[test]
fn bytes_waiting_in_the_command_channel_count_against_the_budget() {
    bounded(LIMIT, || {
        let config = Config {
            queue_budget: Some(1 << 20),
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let _peer = Peer::connect(server.addr);
        let conn = first_conn(&seen);
        // Hold the reactor inside a job while 900 KiB wait in the channel behind it.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (res_tx, res_rx) = mpsc::channel();
        server
            .handle
            .run(move |ctx| {
                let _ = go_rx.recv_timeout(Duration::from_secs(10));
                let before = ctx.figures().budget_paused;
                // 200 KiB queued here + 900 KiB waiting in the channel > the 1 MiB budget.
                let _ = ctx.send(conn, &"y".repeat(200 * 1024));
                let _ = res_tx.send((before, ctx.figures().budget_paused));
            })
            .unwrap();
        let payload = Bytes::from(format!("\"{}\"", "z".repeat(300 * 1024)));
        for _ in 0..3 {
            server.handle.send_payload(conn, payload.clone()).unwrap();
        }
        go_tx.send(()).unwrap();
        let (before, after) = res_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!before);
        assert!(
            after,
            "900 KiB in the channel were not counted against the budget"
        );
    });
}

#[test]
fn control_commands_are_accepted_when_the_channel_is_full() {
    bounded(LIMIT, || {
        let (mut reactor, conn, _listener) = idle_reactor(Config::default());
        let handle = reactor.handle();
        let mut accepted = 0;
        while handle.notify(0) == Ok(()) {
            accepted += 1;
            assert!(accepted <= 100_000, "the channel never filled");
        }
        assert_eq!(handle.notify(0), Err(HandleError::Full));
        assert_eq!(handle.close(conn), Ok(()));
        assert_eq!(handle.shutdown(Duration::from_secs(1)), Ok(()));
        assert_eq!(handle.stop(), Ok(()));
        // Everything accepted is applied, in order, and the stop ends the loop.
        reactor.run().unwrap();
        assert_eq!(handle.stop(), Err(HandleError::Stopped));
    });
}

// ----- configurations that cannot work -----------------------------------------------------------

#[test]
fn a_queue_limit_that_cannot_hold_one_frame_is_refused() {
    let config = Config {
        high_water: 1,
        low_water: 0,
        queue_limit: Some(1),
        ..Config::default()
    };
    let err = config.validate().unwrap_err();
    assert_eq!(err.field(), "queue_limit");
    assert!(err.to_string().contains("queue_limit"), "{err}");
}

#[test]
fn a_max_frame_too_small_for_the_error_reply_is_refused() {
    for max_frame in [1, 16, 40] {
        let config = Config {
            max_frame,
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.field(), "max_frame");
        assert!(err.to_string().contains("frame_too_large"), "{err}");
    }
    // Just large enough for `{"error":"frame_too_large","limit":64,"got":4294967295}`.
    let config = Config {
        max_frame: 64,
        ..Config::default()
    };
    config.validate().unwrap();
}

// ----- timers cancelled in bulk --------------------------------------------------------------

#[test]
fn cancelled_timers_do_not_accumulate_in_the_heap() {
    bounded(LIMIT, || {
        let server = Server::start(Config::default(), Echo::default());
        let started = Instant::now();
        let (heap, live) = server.query(|ctx| {
            // 100 timers that stay, and a million set and cancelled around them.
            let kept: Vec<_> = (0..100)
                .map(|i| ctx.set_timer(Duration::from_secs(3600), i))
                .collect();
            for i in 0..1_000_000 {
                let id = ctx.set_timer(Duration::from_secs(3600), i);
                assert!(ctx.cancel_timer(id));
            }
            (ctx.figures().timers, kept.len())
        });
        assert!(
            heap <= 2 * live,
            "{heap} heap entries for {live} live timers ({:?})",
            started.elapsed()
        );
    });
}

#[test]
fn outbound_durations_of_duration_max_mean_never() {
    bounded(LIMIT, || {
        let config = Config {
            connect_timeout: Some(Duration::MAX),
            outbound_idle_timeout: Some(Duration::MAX),
            write_timeout: Some(Duration::MAX),
            ..Config::default()
        };
        config.validate().unwrap();
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target_addr = target.local_addr().unwrap();
        let server = Server::start(config, Echo::default());
        // Connecting arms the connect deadline, opening the outbound idle clock, a queued
        // send the write-stall clock: each past the end of time, none may panic.
        let conn = server.query(move |ctx| ctx.connect(target_addr)).unwrap();
        server.query(move |ctx| ctx.send(conn, &json!({"hello": 1})).is_ok());
        let (mut accepted, _) = target.accept().unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut header = [0u8; 4];
        std::io::Read::read_exact(&mut accepted, &mut header).unwrap();
        let figures = server.query(|ctx| ctx.figures());
        assert_eq!(
            figures.open_connections, 1,
            "the reactor is alive and connected"
        );
    });
}
