//! The engine's clocks, one behaviour per test, with time driven by hand.
//!
//! Every instant is `t0 + offset`, `t0` taken once when the engine is made; a test moves the
//! clock with `begin_turn` and lets due timers act with `fire_timers`, exactly as a reactor
//! turn would (`reactor.rs`, steps 1 and 4), then looks at the connection's state, the
//! notices and the figures. Nothing sleeps and nothing depends on how long the test really
//! takes: a timeout is shown still waiting a nanosecond before its deadline and acting at it.
//!
//! Where a connection needs a socket it gets a real loopback one (`127.0.0.1:0`): the test
//! holds the peer's end, and the engine never polls, so no event arrives that the test did not
//! ask for.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::accept::ACCEPT_BACKOFF;
use super::{Engine, Notice, RunState};
use crate::config::Config;
use crate::conn::{ConnId, ConnState, PauseReason, Seen};
use crate::handler::{CloseReason, TimeoutWarning};
use crate::write_queue::Pressure;

const NS: Duration = Duration::from_nanos(1);
const T: Duration = Duration::from_secs(10);

/// Every clock off: each test turns on the one it is about.
fn quiet() -> Config {
    Config {
        idle_timeout: None,
        outbound_idle_timeout: None,
        connect_timeout: None,
        write_timeout: None,
        write_min_rate: None,
        ..Config::default()
    }
}

fn engine(config: Config) -> (Engine, Instant) {
    let t0 = Instant::now();
    (Engine::new(config, t0).expect("engine"), t0)
}

/// A loopback connection adopted by the engine at its current time, registered as the
/// reactor's settle would; returns its id and the peer's end, which the test keeps open.
fn adopted(engine: &mut Engine) -> (ConnId, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let (server, from) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("nonblocking");
    engine.adopt(server, from);
    let id = match engine.notices.pop_back() {
        Some(Notice::Open(id)) => id,
        other => panic!("expected an open notice, got {other:?}"),
    };
    assert!(engine.notices.is_empty());
    engine.flush_dirty();
    (id, peer)
}

/// A turn at `t`: the clock moves, and every timer due by then acts.
fn turn_at(engine: &mut Engine, t: Instant) {
    engine.begin_turn(t);
    engine.fire_timers();
}

/// The connection's life state, `Closed` included (until the end of the turn's reap).
fn state(engine: &Engine, id: ConnId) -> Option<ConnState> {
    engine.conns.get_even_closed(id).map(|c| c.state())
}

fn close_reason(engine: &Engine, id: ConnId) -> Option<&CloseReason> {
    engine.notices.iter().find_map(|n| match n {
        Notice::Closed(c, reason) if *c == id => Some(reason),
        _ => None,
    })
}

fn warnings(engine: &Engine, id: ConnId) -> Vec<TimeoutWarning> {
    engine
        .notices
        .iter()
        .filter_map(|n| match n {
            Notice::Warning(c, w) if *c == id => Some(*w),
            _ => None,
        })
        .collect()
}

fn drains(engine: &Engine, id: ConnId) -> usize {
    engine
        .notices
        .iter()
        .filter(|n| matches!(n, Notice::Drain(c) if *c == id))
        .count()
}

/// A listener nobody accepts from, for connects that stay in progress as far as the engine
/// knows (it never polls for the outcome).
fn connect_target() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

// ----- idle timeout ------------------------------------------------------------------------

#[test]
fn an_idle_connection_is_open_a_nanosecond_before_the_idle_timeout() {
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    turn_at(&mut e, t0 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    assert_eq!(close_reason(&e, id).map(CloseReason::name), None);
    assert!(e.conn_ref(id).is_some_and(|c| c.queue().is_empty()));
}

#[test]
fn an_idle_accepted_connection_is_sent_idle_timeout_and_closes_gracefully_at_the_timeout() {
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    turn_at(&mut e, t0 + T);
    assert_eq!(
        state(&e, id),
        Some(ConnState::Flushing),
        "a graceful close: what is queued is still delivered"
    );
    let c = e.conn_ref(id).expect("still there");
    assert!(!c.queue().is_empty(), "the idle_timeout frame is queued");
    assert!(!c.accepts_sends() && !c.may_deliver());
    assert_eq!(
        close_reason(&e, id).map(CloseReason::name),
        None,
        "closed is reported when the close is over, not when it starts"
    );
}

#[test]
fn an_idle_close_delivers_the_error_frame_then_fin_then_lingers_and_reports_idle_timeout() {
    let linger = Duration::from_secs(2);
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        linger,
        ..quiet()
    });
    let (id, mut peer) = adopted(&mut e);
    turn_at(&mut e, t0 + T);
    e.flush_dirty();
    assert_eq!(state(&e, id), Some(ConnState::Lingering));
    assert_eq!(e.figures().lingering_connections, 1);
    assert_eq!(e.figures().open_connections, 0);

    // The peer finds the frame, then our FIN, already in its receive buffer.
    let mut got = Vec::new();
    peer.read_to_end(&mut got).expect("read to FIN");
    let len = u32::from_be_bytes(got[..4].try_into().expect("header")) as usize;
    assert_eq!(got.len(), 4 + len, "one frame, then FIN");
    let reply: serde_json::Value = serde_json::from_slice(&got[4..]).expect("json");
    assert!(reply.to_string().contains("idle_timeout"), "{reply}");

    turn_at(&mut e, t0 + T + linger - NS);
    assert_eq!(state(&e, id), Some(ConnState::Lingering));
    turn_at(&mut e, t0 + T + linger);
    assert_eq!(state(&e, id), Some(ConnState::Closed));
    assert!(matches!(
        close_reason(&e, id),
        Some(CloseReason::IdleTimeout)
    ));
}

#[test]
fn the_idle_warning_comes_at_half_the_timeout_once_per_quiet_period() {
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    turn_at(&mut e, t0 + T / 2 - NS);
    assert_eq!(warnings(&e, id), []);
    turn_at(&mut e, t0 + T / 2);
    assert_eq!(
        warnings(&e, id),
        [TimeoutWarning::Idle {
            quiet: T / 2,
            closes_in: T / 2
        }]
    );
    for offset in [T / 2 + NS, T * 3 / 4, T - NS] {
        turn_at(&mut e, t0 + offset);
    }
    assert_eq!(warnings(&e, id).len(), 1, "one warning per quiet period");
    assert_eq!(state(&e, id), Some(ConnState::Open));
}

#[test]
fn bytes_the_peer_takes_start_a_new_quiet_period_with_its_own_warning_and_deadline() {
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    turn_at(&mut e, t0 + T / 2);
    assert_eq!(warnings(&e, id).len(), 1);
    e.notices.clear();

    // Progress at t1: the peer's kernel takes a reply.
    let t1 = t0 + T * 3 / 4;
    e.begin_turn(t1);
    assert!(e.send_json(id, &"pong").is_ok());
    e.flush_dirty();
    assert!(e.conn_ref(id).is_some_and(|c| c.queue().is_empty()));

    turn_at(&mut e, t0 + T);
    assert_eq!(
        state(&e, id),
        Some(ConnState::Open),
        "the old deadline has passed"
    );
    turn_at(&mut e, t1 + T / 2 - NS);
    assert_eq!(warnings(&e, id), []);
    turn_at(&mut e, t1 + T / 2);
    assert_eq!(
        warnings(&e, id),
        [TimeoutWarning::Idle {
            quiet: T / 2,
            closes_in: T / 2
        }]
    );
    turn_at(&mut e, t1 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    turn_at(&mut e, t1 + T);
    assert_eq!(state(&e, id), Some(ConnState::Flushing));
}

#[test]
fn a_connection_we_paused_is_not_idle_and_gets_a_whole_timeout_after_resuming() {
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    assert!(e.pause(id, PauseReason::Application));
    for offset in [T / 2, T, T * 3 / 2, T * 2] {
        turn_at(&mut e, t0 + offset);
        assert_eq!(state(&e, id), Some(ConnState::Open), "at t0 + {offset:?}");
    }
    assert_eq!(
        warnings(&e, id),
        [],
        "the peer is not the one keeping quiet"
    );

    let resumed = t0 + T * 2 + T / 5;
    e.begin_turn(resumed);
    assert!(e.resume(id, PauseReason::Application));
    turn_at(&mut e, resumed + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    assert_eq!(
        warnings(&e, id).len(),
        1,
        "warned halfway through its own period"
    );
    turn_at(&mut e, resumed + T);
    assert_eq!(state(&e, id), Some(ConnState::Flushing));
}

// ----- write stall ---------------------------------------------------------------------------

#[test]
fn bytes_nobody_takes_are_kept_a_nanosecond_before_the_write_timeout() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    assert!(e.send_json(id, &"never flushed").is_ok());
    turn_at(&mut e, t0 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    assert!(e.conn_ref(id).is_some_and(|c| !c.queue().is_empty()));
    assert_eq!(close_reason(&e, id).map(CloseReason::name), None);
}

#[test]
fn bytes_nobody_takes_are_discarded_with_a_reset_at_the_write_timeout() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    assert!(e.send_json(id, &"never flushed").is_ok());
    let queued = e.conn_ref(id).map(|c| c.queue().len()).expect("open");
    turn_at(&mut e, t0 + T);
    assert_eq!(state(&e, id), Some(ConnState::Closed));
    match close_reason(&e, id) {
        Some(CloseReason::WriteTimeout { discarded }) => assert_eq!(*discarded, queued),
        other => panic!("expected a write timeout, got {other:?}"),
    }
    assert_eq!(e.figures().queued_bytes, 0, "the queue's bytes are freed");
    assert_eq!(e.figures().open_connections, 0);
}

#[test]
fn the_write_stall_warning_comes_at_half_the_timeout_once() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    assert!(e.send_json(id, &"never flushed").is_ok());
    let queued = e.conn_ref(id).map(|c| c.queue().len()).expect("open");
    turn_at(&mut e, t0 + T / 2 - NS);
    assert_eq!(warnings(&e, id), []);
    turn_at(&mut e, t0 + T / 2);
    turn_at(&mut e, t0 + T - NS);
    assert_eq!(
        warnings(&e, id),
        [TimeoutWarning::Write {
            queued,
            quiet: T / 2,
            closes_in: T / 2
        }]
    );
}

#[test]
fn bytes_queued_again_after_the_queue_emptied_get_a_whole_write_timeout() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    assert!(e.send_json(id, &"taken").is_ok());
    e.begin_turn(t0 + T / 4);
    e.flush_dirty();
    assert!(e.conn_ref(id).is_some_and(|c| c.queue().is_empty()));

    let t2 = t0 + T / 3;
    e.begin_turn(t2);
    assert!(e.send_json(id, &"never flushed").is_ok());
    turn_at(&mut e, t0 + T);
    turn_at(&mut e, t2 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    turn_at(&mut e, t2 + T);
    assert!(matches!(
        close_reason(&e, id),
        Some(CloseReason::WriteTimeout { .. })
    ));
}

#[test]
fn bytes_queued_while_connecting_do_not_start_the_write_clock() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        ..quiet()
    });
    let (_listener, addr) = connect_target();
    let id = e.connect(addr).expect("connect");
    assert!(e.send_json(id, &"queued early").is_ok());
    for k in 1..=8u32 {
        turn_at(&mut e, t0 + T / 2 * k);
    }
    assert_eq!(state(&e, id), Some(ConnState::Connecting));
    assert_eq!(warnings(&e, id), []);
}

/// A write timeout, and room for a queue far bigger than the kernel will take from one flush
/// (the engine's send buffer and the peer's receive buffer are both kept small), so a flush to
/// a peer that never reads takes some of it and leaves the rest: progress, then silence.
fn big_queue(write_min_rate: Option<u64>) -> Config {
    Config {
        write_timeout: Some(T),
        write_min_rate,
        high_water: 8 << 20,
        low_water: 1 << 20,
        send_buffer_size: Some(SMALL_BUFFER),
        ..quiet()
    }
}

const SMALL_BUFFER: usize = 16 * 1024;

/// Like [`adopted`], with a peer whose receive buffer is small.
fn adopted_slow_reader(engine: &mut Engine) -> (ConnId, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket
        .set_recv_buffer_size(SMALL_BUFFER)
        .expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let (server, from) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("nonblocking");
    engine.adopt(server, from);
    let id = match engine.notices.pop_back() {
        Some(Notice::Open(id)) => id,
        other => panic!("expected an open notice, got {other:?}"),
    };
    engine.flush_dirty();
    (id, socket.into())
}

/// Queues 4 MiB on `id`: more than two small socket buffers hold.
fn queue_big(e: &mut Engine, id: ConnId) {
    let payload = Bytes::from(format!("\"{}\"", "x".repeat(4 << 20)));
    assert!(e.send_payload(id, payload).is_ok());
}

/// Flushes once at `t`; returns the bytes the peer's kernel took, checking some are left.
fn flush_some_at(e: &mut Engine, id: ConnId, t: Instant) -> u64 {
    e.begin_turn(t);
    e.flush_dirty();
    let f = e.queue_figures(id).expect("open");
    assert!(f.bytes_written > 0 && f.queued > 0, "{f:?}");
    f.bytes_written
}

#[test]
fn a_peer_that_took_bytes_is_measured_from_its_last_progress() {
    let (mut e, t0) = engine(big_queue(None));
    let (id, _peer) = adopted_slow_reader(&mut e);
    queue_big(&mut e, id);
    let t1 = t0 + T / 4;
    flush_some_at(&mut e, id, t1);
    turn_at(&mut e, t0 + T);
    assert_eq!(
        state(&e, id),
        Some(ConnState::Open),
        "the queue is older than the timeout, but the peer took bytes since"
    );
    turn_at(&mut e, t1 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
}

#[test]
fn a_peer_that_stops_taking_bytes_is_reset_a_write_timeout_after_its_last_progress() {
    let (mut e, t0) = engine(big_queue(None));
    let (id, _peer) = adopted_slow_reader(&mut e);
    queue_big(&mut e, id);
    let t1 = t0 + T / 4;
    flush_some_at(&mut e, id, t1);
    turn_at(&mut e, t0 + T);
    turn_at(&mut e, t1 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    turn_at(&mut e, t1 + T);
    assert!(
        matches!(close_reason(&e, id), Some(CloseReason::WriteTimeout { .. })),
        "quiet since t1 for a whole write timeout; state now {:?}",
        state(&e, id)
    );
    assert_eq!(warnings(&e, id).len(), 1, "one quiet period, one warning");
}

#[test]
fn a_peer_taking_less_than_the_minimum_rate_is_reset_at_the_end_of_the_period() {
    let rate = u64::MAX / 1024; // far above anything one flush can take
    let (mut e, t0) = engine(big_queue(Some(rate)));
    let (id, _peer) = adopted_slow_reader(&mut e);
    queue_big(&mut e, id);
    let taken = flush_some_at(&mut e, id, t0 + T / 4);
    turn_at(&mut e, t0 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    turn_at(&mut e, t0 + T);
    assert_eq!(state(&e, id), Some(ConnState::Closed));
    match close_reason(&e, id) {
        Some(CloseReason::WriteTimeout { discarded }) => {
            let f = e.queue_figures(id).expect("closed this turn");
            assert_eq!(*discarded as u64, f.bytes_queued - taken);
        }
        other => panic!("expected a write timeout, got {other:?}"),
    }
}

/// Completes `id`'s connect as the reactor would on its writable event, once the listener
/// has the connection (so the handshake is over on both ends).
fn complete_connect(e: &mut Engine, id: ConnId, listener: &TcpListener) -> TcpStream {
    let (server, _) = listener.accept().expect("accept");
    let seen = Seen {
        writable: true,
        ..Seen::default()
    };
    let _ = e.conn_event(id.index(), seen);
    assert_eq!(state(e, id), Some(ConnState::Open));
    server
}

#[test]
fn bytes_queued_while_connecting_get_a_whole_write_timeout_once_connected() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        ..quiet()
    });
    let (listener, addr) = connect_target();
    let id = e.connect(addr).expect("connect");
    assert!(e.send_json(id, &"queued early").is_ok());
    turn_at(&mut e, t0 + T / 2);
    let connected = t0 + T * 9 / 10;
    e.begin_turn(connected);
    let _server = complete_connect(&mut e, id, &listener);
    for offset in [T, T * 3 / 2, T * 17 / 10] {
        turn_at(&mut e, t0 + offset);
    }
    turn_at(&mut e, connected + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    turn_at(&mut e, connected + T);
    assert!(matches!(
        close_reason(&e, id),
        Some(CloseReason::WriteTimeout { .. })
    ));
}

#[test]
fn with_a_minimum_rate_bytes_queued_while_connecting_get_a_whole_write_timeout_once_connected() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        write_min_rate: Some(512),
        ..quiet()
    });
    let (listener, addr) = connect_target();
    let id = e.connect(addr).expect("connect");
    assert!(e.send_json(id, &"queued early").is_ok());
    turn_at(&mut e, t0 + T / 2);
    let connected = t0 + T * 9 / 10;
    e.begin_turn(connected);
    let _server = complete_connect(&mut e, id, &listener);
    for offset in [T, T * 3 / 2, T * 17 / 10] {
        turn_at(&mut e, t0 + offset);
    }
    turn_at(&mut e, connected + T - NS);
    assert_eq!(
        state(&e, id),
        Some(ConnState::Open),
        "closed {:?} after the connect",
        T * 6 / 10
    );
}

// ----- connect timeout -----------------------------------------------------------------------

#[test]
fn a_connect_in_progress_is_kept_a_nanosecond_before_the_connect_timeout() {
    let (mut e, t0) = engine(Config {
        connect_timeout: Some(T),
        ..quiet()
    });
    let (_listener, addr) = connect_target();
    let id = e.connect(addr).expect("connect");
    e.flush_dirty();
    turn_at(&mut e, t0 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Connecting));
    assert!(e.notices.is_empty());
    assert_eq!(e.figures().open_connections, 1);
}

#[test]
fn a_connect_in_progress_fails_timed_out_at_exactly_the_connect_timeout() {
    let (mut e, t0) = engine(Config {
        connect_timeout: Some(T),
        ..quiet()
    });
    let (_listener, addr) = connect_target();
    let id = e.connect(addr).expect("connect");
    e.flush_dirty();
    turn_at(&mut e, t0 + T);
    assert_eq!(state(&e, id), Some(ConnState::Closed));
    match close_reason(&e, id) {
        Some(CloseReason::ConnectFailed(err)) => assert_eq!(err.kind(), io::ErrorKind::TimedOut),
        other => panic!("expected a failed connect, got {other:?}"),
    }
    assert!(
        !e.notices.iter().any(|n| matches!(n, Notice::Open(_))),
        "on_open never comes for a failed connect"
    );
    assert_eq!(e.figures().open_connections, 0);
}

// ----- linger --------------------------------------------------------------------------------

#[test]
fn a_flushed_graceful_close_lingers_until_exactly_the_linger_time() {
    let linger = Duration::from_secs(2);
    let (mut e, t0) = engine(Config { linger, ..quiet() });
    let (id, _peer) = adopted(&mut e);
    let t = t0 + Duration::from_secs(5);
    e.begin_turn(t);
    e.close(id, CloseReason::Closed);
    assert_eq!(state(&e, id), Some(ConnState::Flushing));
    e.flush_dirty();
    assert_eq!(state(&e, id), Some(ConnState::Lingering));
    turn_at(&mut e, t + linger - NS);
    assert_eq!(state(&e, id), Some(ConnState::Lingering));
    assert_eq!(close_reason(&e, id).map(CloseReason::name), None);
    turn_at(&mut e, t + linger);
    assert_eq!(state(&e, id), Some(ConnState::Closed));
    assert!(matches!(close_reason(&e, id), Some(CloseReason::Closed)));
    assert_eq!(e.figures().lingering_connections, 0);
}

// ----- accept back-off -----------------------------------------------------------------------

#[test]
fn after_an_accept_failure_the_listener_rests_until_the_back_off_is_over() {
    let (mut e, t0) = engine(quiet());
    let addr = e
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    let key = e.conns.open_listeners()[0];
    // Waiting in the backlog: a blocking connect returns once the handshake is done.
    let _client = TcpStream::connect(addr).expect("connect");

    e.accept_failed(key, io::Error::from_raw_os_error(libc::EMFILE));
    assert_eq!(e.figures().accept_errors, 1);
    let backing_off = |e: &mut Engine| e.conns.listener_mut(key).expect("listener").backing_off;
    assert!(backing_off(&mut e));

    turn_at(&mut e, t0 + ACCEPT_BACKOFF - NS);
    assert!(backing_off(&mut e));
    e.accept(key); // what a stale event for the listener would do
    assert_eq!(e.figures().accepted, 0, "no accepting while backing off");

    turn_at(&mut e, t0 + ACCEPT_BACKOFF);
    assert!(!backing_off(&mut e));
    assert_eq!(
        e.figures().accepted,
        1,
        "the backlog is drained on resuming"
    );
    assert!(matches!(e.notices.back(), Some(Notice::Open(_))));
}

// ----- shutdown ------------------------------------------------------------------------------

#[test]
fn a_shutdown_waits_for_a_connection_until_exactly_the_grace_period() {
    let grace = Duration::from_secs(3);
    let (mut e, t0) = engine(quiet());
    let (id, _peer) = adopted(&mut e);
    e.begin_shutdown(grace);
    assert_eq!(
        e.run,
        RunState::ShuttingDown {
            deadline: Some(t0 + grace)
        }
    );
    turn_at(&mut e, t0 + grace - NS);
    assert!(matches!(e.run, RunState::ShuttingDown { .. }));
    assert!(!e.is_finished());
    assert_eq!(state(&e, id), Some(ConnState::Open));

    turn_at(&mut e, t0 + grace);
    assert_eq!(e.run, RunState::Stopped);
    assert!(e.is_finished());
    assert!(matches!(close_reason(&e, id), Some(CloseReason::Shutdown)));
}

#[test]
fn a_shutdown_with_nothing_open_is_finished_at_once() {
    let (mut e, _t0) = engine(quiet());
    e.listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    e.begin_shutdown(Duration::from_secs(3));
    assert!(matches!(e.run, RunState::ShuttingDown { .. }));
    assert!(e.is_finished());
    assert!(e.conns.open_listeners().is_empty(), "no longer accepting");
}

#[test]
fn a_shutdown_with_a_grace_too_long_for_the_clock_has_no_deadline() {
    let (mut e, t0) = engine(quiet());
    let (id, _peer) = adopted(&mut e);
    e.begin_shutdown(Duration::MAX);
    assert_eq!(e.run, RunState::ShuttingDown { deadline: None });
    turn_at(&mut e, t0 + Duration::from_secs(365 * 24 * 3600));
    assert!(!e.is_finished());
    assert_eq!(state(&e, id), Some(ConnState::Open));
}

#[test]
fn a_connect_in_progress_is_dropped_when_a_shutdown_starts() {
    let (mut e, _t0) = engine(quiet());
    let (_listener, addr) = connect_target();
    let id = e.connect(addr).expect("connect");
    e.begin_shutdown(Duration::from_secs(3));
    assert!(matches!(close_reason(&e, id), Some(CloseReason::Shutdown)));
    assert!(e.is_finished());
}

// ----- drain ---------------------------------------------------------------------------------

fn small_marks() -> Config {
    Config {
        high_water: 64,
        low_water: 16,
        ..quiet()
    }
}

#[test]
fn crossing_high_water_pauses_reading_until_a_flush_drains_the_queue() {
    let (mut e, _t0) = engine(small_marks());
    let (id, _peer) = adopted(&mut e);
    let big = "x".repeat(100);
    assert_eq!(e.send_json(id, &big).ok(), Some(Pressure::High));
    let paused = e.conn_ref(id).map(|c| c.paused()).expect("open");
    assert!(paused.contains(PauseReason::WriteQueue));
    assert_eq!(e.figures().paused_connections, 1);

    e.flush_dirty();
    assert_eq!(drains(&e, id), 1);
    let c = e.conn_ref(id).expect("open");
    assert!(c.paused().is_empty(), "reading resumes with the drain");
    assert_eq!(c.queue().pressure(), Pressure::Clear);
    assert_eq!(e.figures().paused_connections, 0);
}

#[test]
fn a_drain_is_reported_once_per_crossing() {
    let (mut e, _t0) = engine(small_marks());
    let (id, _peer) = adopted(&mut e);
    assert_eq!(e.send_json(id, &"x".repeat(100)).ok(), Some(Pressure::High));
    e.flush_dirty();
    e.touch(id);
    e.flush_dirty();
    assert_eq!(drains(&e, id), 1);
    assert_eq!(e.queue_figures(id).map(|f| f.drains), Some(1));
}

#[test]
fn a_queue_that_never_reached_high_water_brings_no_drain() {
    let (mut e, _t0) = engine(small_marks());
    let (id, _peer) = adopted(&mut e);
    assert_eq!(e.send_json(id, &"small").ok(), Some(Pressure::Clear));
    e.flush_dirty();
    assert_eq!(drains(&e, id), 0);
}

// ----- poll timeout --------------------------------------------------------------------------

#[test]
fn with_nothing_scheduled_the_poll_waits_for_an_event() {
    let (e, t0) = engine(quiet());
    assert_eq!(e.poll_timeout(t0), None);
    assert_eq!(e.poll_timeout(t0 + T), None);
}

#[test]
fn the_poll_sleeps_from_now_until_the_nearest_timer() {
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        ..quiet()
    });
    let (_id, _peer) = adopted(&mut e);
    e.timers.set_app(t0, T, 7);
    assert_eq!(e.poll_timeout(t0), Some(T / 2), "the idle check, halfway");
    assert_eq!(e.poll_timeout(t0 + T / 4), Some(T / 4));
    assert_eq!(
        e.poll_timeout(t0 + T),
        Some(Duration::ZERO),
        "a deadline already past"
    );
}

#[test]
fn the_poll_does_not_sleep_while_work_waits() {
    let (mut e, t0) = engine(quiet());
    let (id, _peer) = adopted(&mut e);
    assert_eq!(e.poll_timeout(t0), None);

    e.defer(id);
    assert_eq!(e.poll_timeout(t0), Some(Duration::ZERO), "the ready list");
    assert_eq!(e.conns.pop_ready(), Some(Some(id)));
    assert_eq!(e.poll_timeout(t0), None);

    e.notices.push_back(Notice::Drain(id));
    assert_eq!(
        e.poll_timeout(t0),
        Some(Duration::ZERO),
        "undelivered notices"
    );
    e.notices.clear();

    e.commands_pending = true;
    assert_eq!(
        e.poll_timeout(t0),
        Some(Duration::ZERO),
        "commands beyond last turn's share"
    );
}

#[test]
fn the_shutdown_deadline_bounds_the_poll() {
    let (mut e, t0) = engine(quiet());
    e.timers.set_app(t0, T, 7);
    e.begin_shutdown(T / 5);
    assert_eq!(e.poll_timeout(t0 + T / 10), Some(T / 10));
}

// ----- application timers --------------------------------------------------------------------

#[test]
fn an_application_timer_fires_at_its_deadline_not_before() {
    let (mut e, t0) = engine(quiet());
    let id = e.timers.set_app(t0, T, 42);
    turn_at(&mut e, t0 + T - NS);
    assert!(e.notices.is_empty());
    turn_at(&mut e, t0 + T);
    assert!(matches!(
        e.notices.pop_front(),
        Some(Notice::Timer(fired, 42)) if fired == id
    ));
    turn_at(&mut e, t0 + T * 2);
    assert!(e.notices.is_empty(), "once");
}

// ----- links ---------------------------------------------------------------------------------

/// Two owners of the same (source, sink) link (an application's relay rule and a fan-out's
/// hold, or two topics' fan-outs): one undoing its link must not undo the other's.
#[test]
fn a_link_made_twice_holds_until_it_is_undone_twice() {
    let (mut e, _t0) = engine(small_marks());
    let (source, _source_peer) = adopted(&mut e);
    let (sink, _sink_peer) = adopted(&mut e);
    assert!(e.link(source, sink), "the first owner links");
    assert!(e.link(source, sink), "the second owner links");
    assert!(e.unlink(source, sink), "the first owner lets go");

    // The sink crosses high-water: the second owner's link still holds the source.
    assert_eq!(
        e.send_json(sink, &"x".repeat(100)).ok(),
        Some(Pressure::High)
    );
    let paused = e.conn_ref(source).map(|c| c.paused()).expect("open");
    assert!(paused.contains(PauseReason::Link), "{paused:?}");

    // Its drain lets the source read again; the second unlink ends the link for good.
    e.flush_dirty();
    assert!(e.conn_ref(source).expect("open").paused().is_empty());
    assert!(e.unlink(source, sink), "the second owner lets go");
    assert!(!e.unlink(source, sink), "no link is left");
    assert_eq!(
        e.send_json(sink, &"x".repeat(100)).ok(),
        Some(Pressure::High)
    );
    assert!(e.conn_ref(source).expect("open").paused().is_empty());
}

/// A connection that closes takes every count of its links with it.
#[test]
fn a_closed_sink_releases_a_source_linked_to_it_twice() {
    let (mut e, _t0) = engine(small_marks());
    let (source, _source_peer) = adopted(&mut e);
    let (sink, _sink_peer) = adopted(&mut e);
    assert!(e.link(source, sink) && e.link(source, sink));
    assert_eq!(
        e.send_json(sink, &"x".repeat(100)).ok(),
        Some(Pressure::High)
    );
    assert!(
        e.conn_ref(source)
            .expect("open")
            .paused()
            .contains(PauseReason::Link)
    );
    e.forget_links(sink);
    assert!(e.conn_ref(source).expect("open").paused().is_empty());
    assert!(!e.unlink(source, sink), "no count of the link is left");
}

/// A connection linked to itself (a fan-out member that is also the frame's source) stops
/// being read while its own queue is high, even with its own-queue pause off, and reads again
/// at the drain; closing it leaves no links behind.
#[test]
fn a_connection_linked_to_itself_pauses_on_its_own_queue_and_resumes_at_the_drain() {
    let (mut e, _t0) = engine(Config {
        pause_reads_above_high_water: false,
        ..small_marks()
    });
    let (c, _peer) = adopted(&mut e);
    assert!(e.link(c, c));
    assert_eq!(e.send_json(c, &"x".repeat(100)).ok(), Some(Pressure::High));
    let paused = e.conn_ref(c).map(|c| c.paused()).expect("open");
    assert!(paused.contains(PauseReason::Link), "{paused:?}");
    assert!(!paused.contains(PauseReason::WriteQueue), "{paused:?}");
    e.flush_dirty();
    assert!(e.conn_ref(c).expect("open").paused().is_empty());
    e.forget_links(c);
    assert!(e.conn_ref(c).expect("open").linked().is_none());
    assert!(!e.unlink(c, c));
}

// ----- attack review 2: re-arming timers, self-links ------------------------------------------

/// Finding (attack review 2, low): `Due::Connect` is not a connection entry (`Due::conn`), so
/// it carries no epoch and `cancel_conn` does not count it, yet `set_settings` on a
/// connection still connecting pushes a fresh one on every call. An application that sets a
/// connecting connection's settings on each of its sends (or in a loop) grows the heap by one
/// entry per call, none ever counted stale, until the connect deadline; a torn-down connect
/// leaves them all behind too.
#[test]
fn set_settings_on_a_connecting_connection_keeps_one_connect_entry() {
    let (mut e, _t0) = engine(Config {
        connect_timeout: Some(T),
        ..quiet()
    });
    let (_listener, addr) = connect_target();
    let id = e.connect(addr).expect("connect");
    let settings = e.settings(id).expect("connecting");
    for _ in 0..10_000 {
        assert_eq!(e.set_settings(id, settings).ok(), Some(true));
    }
    assert_eq!(state(&e, id), Some(ConnState::Connecting));
    assert!(
        e.timers.len() <= 1 + crate::timer::COMPACT_FLOOR,
        "{} heap entries for one connecting connection",
        e.timers.len()
    );
}

/// Held up: churn of `set_settings` on an open connection with an idle and a write-stall
/// chain keeps the heap within `2 * live + COMPACT_FLOOR`, and the write timeout still acts
/// at exactly its deadline afterwards (the idle one too, measured from its last progress).
#[test]
fn set_settings_churn_keeps_the_heap_bounded_and_the_write_timeout_exact() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        idle_timeout: Some(4 * T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    let app = e.timers.set_app(t0, 100 * T, 1); // keeps the heap from being cleared
    assert!(e.send_json(id, &"never flushed").is_ok());
    let settings = e.settings(id).expect("open");
    for _ in 0..100_000 {
        assert_eq!(e.set_settings(id, settings).ok(), Some(true));
        assert!(
            e.timers.len() <= 2 * 3 + crate::timer::COMPACT_FLOOR,
            "{}",
            e.timers.len()
        );
    }
    turn_at(&mut e, t0 + T - NS);
    assert_eq!(state(&e, id), Some(ConnState::Open));
    turn_at(&mut e, t0 + T);
    assert!(
        matches!(close_reason(&e, id), Some(CloseReason::WriteTimeout { .. })),
        "{:?}",
        close_reason(&e, id)
    );
    assert!(e.timers.cancel_app(app));
}

/// Finding (attack review 2, low): a *shortened* idle timeout applied by `set_settings` acts
/// up to half the new timeout late. The idle deadline is `last progress + idle`, but the
/// re-armed entry is pushed at `now + idle / 2`, so a connection quiet since t0 that gets
/// an 8 s idle timeout at t0+6 s is closed at t0+10 s, not t0+8 s (and with no warning: the
/// check finds the deadline passed).
#[test]
fn a_shortened_idle_timeout_closes_at_its_deadline() {
    let (mut e, t0) = engine(Config {
        idle_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    turn_at(&mut e, t0 + 6 * T / 10);
    let settings = e.settings(id).expect("open");
    let eight = 8 * T / 10;
    let shorter = crate::ConnSettings {
        idle_timeout: Some(eight),
        ..settings
    };
    assert_eq!(e.set_settings(id, shorter).ok(), Some(true));
    turn_at(&mut e, t0 + eight);
    assert_eq!(
        state(&e, id),
        Some(ConnState::Flushing),
        "quiet for its whole (new) idle timeout"
    );
}

/// Finding (attack review 2, low): the same for a shortened write timeout: bytes queued at
/// t0, an 8 s write timeout set at t0+6 s, reset at t0+10 s instead of t0+8 s.
#[test]
fn a_shortened_write_timeout_resets_at_its_deadline() {
    let (mut e, t0) = engine(Config {
        write_timeout: Some(T),
        ..quiet()
    });
    let (id, _peer) = adopted(&mut e);
    assert!(e.send_json(id, &"never flushed").is_ok());
    turn_at(&mut e, t0 + 6 * T / 10);
    let settings = e.settings(id).expect("open");
    let eight = 8 * T / 10;
    let shorter = crate::ConnSettings {
        write_timeout: Some(eight),
        ..settings
    };
    assert_eq!(e.set_settings(id, shorter).ok(), Some(true));
    turn_at(&mut e, t0 + eight);
    assert!(
        matches!(close_reason(&e, id), Some(CloseReason::WriteTimeout { .. })),
        "still {:?} at the new deadline",
        state(&e, id)
    );
}

/// Held up: a self-linked connection whose queue stops being high because new marks say so
/// (not a flush) reads again: the drain from `set_marks` reaches `sink_relieved`.
#[test]
fn a_self_linked_connection_reads_again_when_new_marks_drain_it() {
    let (mut e, _t0) = engine(Config {
        pause_reads_above_high_water: false,
        ..small_marks()
    });
    let (c, _peer) = adopted(&mut e);
    assert!(e.link(c, c));
    assert_eq!(e.send_json(c, &"x".repeat(100)).ok(), Some(Pressure::High));
    assert!(
        e.conn_ref(c)
            .expect("open")
            .paused()
            .contains(PauseReason::Link)
    );
    let settings = e.settings(c).expect("open");
    let roomy = crate::ConnSettings {
        high_water: 4096,
        low_water: 1024,
        queue_limit: 8192,
        ..settings
    };
    assert_eq!(e.set_settings(c, roomy).ok(), Some(true));
    e.flush_dirty();
    assert!(e.conn_ref(c).expect("open").paused().is_empty());
    assert!(e.unlink(c, c));
    assert!(!e.unlink(c, c));
}

/// Held up: a self-link counted twice with a relay link both ways: undoing one count keeps
/// the pause, undoing the last ends it; tearing one side down leaves the other with no trace
/// of it and not paused.
#[test]
fn a_self_link_in_a_two_way_relay_is_counted_and_forgotten() {
    let (mut e, _t0) = engine(Config {
        pause_reads_above_high_water: false,
        ..small_marks()
    });
    let (a, _pa) = adopted(&mut e);
    let (b, _pb) = adopted(&mut e);
    assert!(e.link(a, b) && e.link(b, a) && e.link(a, a) && e.link(a, a));
    assert_eq!(e.send_json(a, &"x".repeat(100)).ok(), Some(Pressure::High));
    let paused = |e: &Engine, id| e.conn_ref(id).expect("open").paused();
    assert!(paused(&e, a).contains(PauseReason::Link));
    assert!(paused(&e, b).contains(PauseReason::Link));
    assert!(e.unlink(a, a));
    assert!(paused(&e, a).contains(PauseReason::Link), "one count left");
    assert!(e.unlink(a, a));
    assert!(
        paused(&e, a).is_empty(),
        "b is not high, a is no sink of itself"
    );
    assert!(e.link(a, a));
    assert!(paused(&e, a).contains(PauseReason::Link));
    e.teardown(a, CloseReason::Closed);
    assert!(paused(&e, b).is_empty());
    let l = e.conn_ref(b).and_then(|c| c.linked()).expect("b's lists");
    assert!(l.sinks.is_empty() && l.sources.is_empty(), "{l:?}");
}

/// Finding (attack review 2, medium, a design limit older than the fixes): a member that
/// drains to low-water just inside each grace is never slow, and holds the publisher (so
/// every member of the topic) for as long as it likes: here for 100 graces in a row, 99.99 %
/// of the time, taking only `high - low` bytes per grace, and neither `send` nor `sweep` ever
/// acts on it. The grace is per crossing, so a subscriber reading at `(high - low) / grace`
/// (192 KiB/s with the default marks and a 1 s grace) sets the pace of the whole topic for
/// ever under `Disconnect`/`Drop`, as only `Pause` should. A budget of held time over a
/// window (or a grace that a drain does not fully refill) would bound it.
#[test]
#[ignore = "known limit, documented in fanout.rs: a member that drains inside each grace paces the topic; the grace restarts at each crossing"]
fn a_member_that_drains_just_inside_each_grace_does_not_hold_the_publisher_for_ever() {
    let (mut e, t0) = engine(Config {
        pause_reads_above_high_water: false,
        ..small_marks()
    });
    let (member, _pm) = adopted(&mut e);
    let (publisher, _pp) = adopted(&mut e);
    let mut topic = crate::FanOut::new();
    topic.add(member, crate::SlowPolicy::Disconnect { grace: T });
    let frame = Bytes::from(format!("\"{}\"", "x".repeat(98)));
    let held = |e: &Engine| {
        e.conn_ref(publisher)
            .expect("open")
            .paused()
            .contains(PauseReason::Link)
    };
    let mut acted = 0;
    let step = T - Duration::from_millis(1);
    for k in 0..100u32 {
        let t = t0 + step * k;
        e.begin_turn(t);
        let d = topic.send(
            &mut crate::Context::new(&mut e),
            Some(publisher),
            frame.clone(),
        );
        acted += d.disconnected + d.dropped;
        assert!(
            held(&e),
            "cycle {k}: the member crossed and holds the publisher"
        );
        e.begin_turn(t + step - NS);
        acted += topic.sweep(&mut crate::Context::new(&mut e));
        if acted > 0 {
            break;
        }
        assert!(held(&e));
        e.flush_dirty(); // the member takes its bytes, just inside its grace
        assert!(!held(&e));
    }
    assert!(
        acted > 0,
        "the publisher was held {:?} of {:?} and the member never counted as slow",
        (step - NS) * 100,
        step * 100
    );
}

/// An application that links on every frame (and never unlinks) costs a count, not an entry
/// per call, and still ends its links when the connection closes.
#[test]
fn linking_the_same_pair_on_every_frame_keeps_one_entry() {
    let (mut e, _t0) = engine(small_marks());
    let (source, _source_peer) = adopted(&mut e);
    let (sink, _sink_peer) = adopted(&mut e);
    for _ in 0..100_000 {
        assert!(e.link(source, sink));
    }
    let entries = |e: &Engine, id| {
        e.conn_ref(id)
            .and_then(|c| c.linked())
            .map(|l| (l.sources.len(), l.sinks.len()))
    };
    assert_eq!(entries(&e, source), Some((0, 1)));
    assert_eq!(entries(&e, sink), Some((1, 0)));
    assert_eq!(
        e.send_json(sink, &"x".repeat(100)).ok(),
        Some(Pressure::High)
    );
    assert!(
        e.conn_ref(source)
            .expect("open")
            .paused()
            .contains(PauseReason::Link)
    );
    e.forget_links(sink);
    assert!(e.conn_ref(source).expect("open").paused().is_empty());
    assert_eq!(entries(&e, source), Some((0, 0)));
}
