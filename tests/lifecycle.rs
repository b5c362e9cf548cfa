//! Connections from birth to close: half-close, summaries, many at once, outbound and inbound
//! in one loop, handles, failures and timeouts.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::{Echo, Peer, Server, Sink, bounded, frame, raise_fd_limit};
use highwater::{CloseReason, Config, ConnId, Context, HandleError, Handler, RawJson, Reactor};
use serde_json::{Value, json};

#[test]
fn half_close_after_a_thousand_requests_gets_every_reply_before_the_close() {
    bounded(Duration::from_secs(30), || {
        let server = Server::start(Config::default(), Echo::default());
        let mut peer = Peer::connect(server.addr);
        let mut wire = Vec::new();
        for i in 0..1000 {
            wire.extend(frame(json!({"req": i}).to_string().as_bytes()));
        }
        peer.stream.write_all(&wire).unwrap();
        peer.stream.shutdown(Shutdown::Write).unwrap();
        for i in 0..1000 {
            assert_eq!(peer.recv(), json!({"req": i}));
        }
        assert_eq!(
            peer.recv_raw().unwrap(),
            None,
            "clean close after the last reply"
        );
    });
}

#[test]
fn sink_reports_messages_and_payload_bytes_on_half_close() {
    bounded(Duration::from_secs(30), || {
        let server = Server::start(Config::default(), Sink::default());
        let mut peer = Peer::connect(server.addr);
        let mut bytes = 0u64;
        for i in 0..123 {
            let p = serde_json::to_vec(&json!({"n": i, "pad": "z".repeat(i)})).unwrap();
            bytes += p.len() as u64;
            peer.send_raw(&p);
        }
        peer.stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(peer.recv(), json!({"received": 123, "bytes": bytes}));
        assert_eq!(peer.recv_raw().unwrap(), None);
    });
}

#[test]
fn five_hundred_connections_echo_at_once() {
    raise_fd_limit();
    bounded(Duration::from_secs(120), || {
        const CONNS: usize = 500;
        const EACH: usize = 5;
        let server = Server::start(Config::default(), Echo::default());
        let mut peers: Vec<Peer> = (0..CONNS).map(|_| Peer::connect(server.addr)).collect();
        // Everyone sends before anyone reads: the server holds 500 conversations at once.
        for (c, p) in peers.iter_mut().enumerate() {
            for i in 0..EACH {
                p.send(&json!([c, i]));
            }
        }
        for (c, p) in peers.iter_mut().enumerate() {
            for i in 0..EACH {
                assert_eq!(p.recv(), json!([c, i]));
            }
        }
        let f = server.query(|ctx| ctx.figures());
        assert_eq!(f.open_connections, CONNS);
        assert_eq!(f.frames_in, (CONNS * EACH) as u64);
        drop(peers);
        // Every slot is given back once the peers are gone.
        server.wait_for(Duration::from_secs(30), "all connections closed", |ctx| {
            let f = ctx.figures();
            (f.open_connections == 0 && f.lingering_connections == 0).then_some(())
        });
    });
}

/// One reactor that listens, connects to itself, and talks to itself.
#[derive(Default)]
struct Loopback {
    outbound: Option<ConnId>,
    opened_outbound: bool,
    opened_inbound: bool,
    reply: Option<Value>,
    open_when_replied: usize,
}

impl Handler for Loopback {
    type Message = Value;
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if Some(conn) == self.outbound {
            self.opened_outbound = true;
            let _ = ctx.send(conn, &json!({"ping": 1})).unwrap();
        } else {
            self.opened_inbound = true;
        }
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        if Some(conn) == self.outbound {
            self.reply = Some(msg);
            self.open_when_replied = ctx.figures().open_connections;
            ctx.stop();
        } else {
            let _ = ctx.send(conn, &json!({"pong": msg["ping"]})).unwrap();
        }
    }
}

#[test]
fn one_reactor_holds_client_and_server_connections() {
    bounded(Duration::from_secs(30), || {
        let mut reactor = Reactor::new(Config::default(), Loopback::default()).unwrap();
        let addr = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let out = reactor.connect(addr).unwrap();
        reactor.handler_mut().outbound = Some(out);
        reactor.run().unwrap();
        let h = reactor.into_handler();
        assert!(h.opened_outbound && h.opened_inbound);
        assert_eq!(h.reply, Some(json!({"pong": 1})));
        assert_eq!(h.open_when_replied, 2);
    });
}

#[derive(Default)]
struct ConnectProbe {
    opened: bool,
    closed: Option<String>,
}

impl Handler for ConnectProbe {
    type Message = RawJson;
    fn on_open(&mut self, _: &mut Context<'_>, _: ConnId) {
        self.opened = true;
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
    fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, reason: &CloseReason) {
        self.closed = Some(reason.name().to_string());
        ctx.stop();
    }
}

#[test]
fn a_refused_connect_is_reported_once_and_never_opened() {
    bounded(Duration::from_secs(30), || {
        // A port nobody listens on: bind, learn the port, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut reactor = Reactor::new(Config::default(), ConnectProbe::default()).unwrap();
        reactor.connect(addr).unwrap();
        reactor.run().unwrap();
        let p = reactor.into_handler();
        assert!(!p.opened);
        assert_eq!(p.closed.as_deref(), Some("connect_failed"));
    });
}

#[test]
fn a_full_command_channel_is_reported_not_grown() {
    bounded(Duration::from_secs(30), || {
        let mut reactor = Reactor::new(Config::default(), Echo::default()).unwrap();
        let handle = reactor.handle();
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Nobody is running the reactor yet, so the channel fills.
        let mut accepted = 0;
        loop {
            let r = ran.clone();
            match handle.run(move |_| {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }) {
                Ok(()) => accepted += 1,
                Err(HandleError::Full) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(accepted <= 100_000, "the channel never filled");
        }
        assert!(accepted > 0);
        let t = std::thread::spawn(move || reactor.run());
        // Once the reactor runs, every accepted command is applied, then stop is accepted.
        while handle.stop() == Err(HandleError::Full) {
            std::thread::yield_now();
        }
        t.join().unwrap().unwrap();
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), accepted);
    });
}

#[test]
fn a_peer_that_sends_half_a_header_is_closed_by_the_idle_timeout() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            idle_timeout: Some(Duration::from_millis(200)),
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let mut peer = Peer::connect(server.addr);
        let start = Instant::now();
        peer.stream.write_all(&[0]).unwrap();
        assert_eq!(peer.recv(), json!({"error": "idle_timeout"}));
        peer.expect_closed();
        assert!(start.elapsed() >= Duration::from_millis(200));
        drop(peer);
        let reason = seen.wait(Duration::from_secs(10), "close", |s| {
            s.closed.first().cloned()
        });
        assert_eq!(reason.1, "idle_timeout");
    });
}

#[test]
fn a_peer_that_never_reads_is_closed_by_the_write_timeout_and_its_queue_freed() {
    bounded(Duration::from_secs(60), || {
        let config = Config {
            high_water: 16 * 1024,
            low_water: 4 * 1024,
            write_timeout: Some(Duration::from_millis(300)),
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let peer = Peer::connect(server.addr);
        let mut writer = peer.stream.try_clone().unwrap();
        // Requests until the server stops reading us; never read a reply.
        let payload = frame(format!("\"{}\"", "w".repeat(4000)).as_bytes());
        let sender = std::thread::spawn(move || while writer.write_all(&payload).is_ok() {});
        let reason = seen.wait(Duration::from_secs(30), "close", |s| {
            s.closed.first().cloned()
        });
        assert_eq!(reason.1, "write_timeout");
        let f = server.query(|ctx| ctx.figures());
        assert_eq!(f.queued_bytes, 0, "the stalled queue was freed");
        assert_eq!(f.open_connections, 0);
        drop(peer);
        sender.join().unwrap();
    });
}

#[test]
fn graceful_shutdown_delivers_every_queued_reply() {
    bounded(Duration::from_secs(30), || {
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(Config::default(), echo);
        let mut peer = Peer::connect(server.addr);
        for i in 0..500 {
            peer.send(&json!(i));
        }
        seen.wait(Duration::from_secs(10), "all requests read", |s| {
            (s.messages == 500).then_some(())
        });
        server.handle.shutdown(Duration::from_secs(5)).unwrap();
        for i in 0..500 {
            assert_eq!(peer.recv(), json!(i));
        }
        peer.expect_closed();
        drop(peer);
        let handler = server.join();
        let closed = handler.seen.get(|s| s.closed.clone());
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].1, "shutdown");
    });
}

#[test]
fn a_stale_conn_id_never_reaches_the_slots_next_tenant() {
    bounded(Duration::from_secs(30), || {
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(Config::default(), echo);
        let first = Peer::connect(server.addr);
        let old = common::first_conn(&seen);
        drop(first);
        seen.wait(Duration::from_secs(10), "first closed", |s| {
            (!s.closed.is_empty()).then_some(())
        });
        // Wait for the slot to be freed (end of the reactor turn), then take it.
        server.wait_for(Duration::from_secs(10), "slot freed", |ctx| {
            (ctx.figures().open_connections == 0).then_some(())
        });
        let mut second = Peer::connect(server.addr);
        let new = seen.wait(Duration::from_secs(10), "second open", |s| {
            s.opened.get(1).copied()
        });
        assert_eq!(
            old.as_u64() as u32,
            new.as_u64() as u32,
            "the slab slot was reused"
        );
        assert_ne!(old, new, "but the id differs by generation");
        let stale = server.query(move |ctx| ctx.send(old, &json!("stale")).is_err());
        assert!(stale, "a send on the stale id is refused");
        second.send(&json!("mine"));
        assert_eq!(
            second.recv(),
            json!("mine"),
            "the new tenant sees only its own frames"
        );
    });
}

#[test]
fn a_reset_from_a_peer_with_queued_replies_closes_without_spinning() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            high_water: 16 * 1024,
            low_water: 4 * 1024,
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let mut peer = Peer::connect(server.addr);
        let conn = common::first_conn(&seen);
        // Requests until the server pauses us with replies queued; read none.
        let payload = frame(format!("\"{}\"", "r".repeat(4000)).as_bytes());
        peer.stream.set_nonblocking(true).unwrap();
        let mut offset = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match peer.stream.write(&payload[offset..]) {
                Ok(n) => offset = (offset + n) % payload.len(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let paused = server.query(move |ctx| {
                        ctx.conn_figures(conn)
                            .is_some_and(|f| !f.reading.is_empty() && f.queued_bytes > 0)
                    });
                    if paused {
                        break;
                    }
                    assert!(Instant::now() < deadline, "the server never paused us");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        // SO_LINGER 0 turns close() into a RST.
        peer.reset();
        let reason = seen.wait(Duration::from_secs(10), "close", |s| {
            s.closed.first().cloned()
        });
        assert_eq!(reason.1, "io_error");
        let f = server.query(|ctx| ctx.figures());
        assert_eq!(f.queued_bytes, 0);
        let turns = f.turns;
        std::thread::sleep(Duration::from_millis(200));
        let later = server.query(|ctx| ctx.figures().turns);
        assert!(
            later - turns <= 3,
            "the reactor is spinning: {} turns",
            later - turns
        );
    });
}

#[test]
fn shutdown_waits_for_a_paused_connection_to_finish_reading() {
    bounded(Duration::from_secs(30), || {
        // A slow consumer that pauses 50 ms after every message.
        let sink = Sink {
            every: 1,
            pause: Duration::from_millis(50),
            ..Sink::default()
        };
        let seen = sink.seen.clone();
        let server = Server::start(Config::default(), sink);
        let mut peer = Peer::connect(server.addr);
        for i in 0..5 {
            peer.send(&json!(i));
        }
        peer.stream.shutdown(Shutdown::Write).unwrap();
        seen.wait(Duration::from_secs(10), "first message", |s| {
            (s.messages >= 1).then_some(())
        });
        // Shut down while the connection is paused with four messages unread.
        server.handle.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(peer.recv()["received"], 5, "nothing accepted was lost");
        peer.expect_closed();
        drop(peer);
        let sink = server.join();
        assert_eq!(sink.seen.get(|s| s.messages), 5);
    });
}

#[test]
fn an_idle_connection_holds_no_buffers() {
    bounded(Duration::from_secs(30), || {
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(Config::default(), echo);
        let mut peer = Peer::connect(server.addr);
        let conn = common::first_conn(&seen);
        peer.send(&json!({"big": "b".repeat(100_000)}));
        let _ = peer.recv();
        let f = server.wait_for(Duration::from_secs(10), "buffers released", move |ctx| {
            ctx.conn_figures(conn)
                .filter(|f| f.read_buffer_capacity == 0 && f.write_buffer_capacity == 0)
        });
        assert!(
            f.peak_read_buffer_capacity >= 100_000,
            "it did read a big frame"
        );
        assert_eq!(f.queued_bytes, 0);
    });
}

/// Counts notifications from other threads.
#[derive(Default)]
struct Doorbell {
    rung: Vec<u64>,
}

impl Handler for Doorbell {
    type Message = RawJson;
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        self.rung.push(value);
        if value == 0 {
            ctx.stop();
        }
    }
}

#[test]
fn notify_reaches_the_handler_in_order() {
    bounded(Duration::from_secs(30), || {
        let mut reactor = Reactor::new(Config::default(), Doorbell::default()).unwrap();
        let handle = reactor.handle();
        let t = std::thread::spawn(move || {
            reactor.run().unwrap();
            reactor.into_handler()
        });
        for v in [3, 2, 1, 0] {
            handle.notify(v).unwrap();
        }
        assert_eq!(t.join().unwrap().rung, vec![3, 2, 1, 0]);
    });
}

#[test]
fn shutdown_answers_connections_still_waiting_in_the_backlog() {
    bounded(Duration::from_secs(30), || {
        // The reactor exists but does not run yet: the client's connection completes in the
        // kernel's backlog and its requests wait in the kernel, unseen by the reactor.
        let mut reactor = Reactor::new(Config::default(), Echo::default()).unwrap();
        let addr = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        // The shutdown request is ready before the connection is, so the reactor handles it
        // first: the connection must be taken from the backlog, not reset with the listener.
        reactor.handle().shutdown(Duration::from_secs(5)).unwrap();
        let mut peer = Peer::connect(addr);
        for i in 0..100 {
            peer.send(&json!(i));
        }
        let t = std::thread::spawn(move || reactor.run());
        for i in 0..100 {
            assert_eq!(peer.recv(), json!(i), "reply {i}");
        }
        peer.expect_closed();
        drop(peer);
        t.join().unwrap().unwrap();
    });
}
