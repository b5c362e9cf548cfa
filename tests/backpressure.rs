//! The backpressure chain end to end, over real loopback sockets.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Echo, Peer, Server, Sink, bounded, first_conn, frame};
use highwater::{
    CloseReason, Config, ConnId, Context, Handler, PauseReason, Pressure, Reactor, SendError,
};
use serde_json::Value;

/// A 1,024-byte JSON payload carrying its sequence number.
fn numbered(i: u32) -> Vec<u8> {
    let head = format!("[{i},\"");
    let pad = 1024 - head.len() - 2;
    format!("{head}{}\"]", "x".repeat(pad)).into_bytes()
}

#[test]
fn slow_reader_pauses_reads_and_bounds_queue() {
    bounded(Duration::from_secs(180), || {
        const HIGH: usize = 64 * 1024;
        const LOW: usize = 16 * 1024;
        const FRAMES: u32 = 64 * 1024; // 64 MiB of requests
        const FRAME_ON_WIRE: usize = 1024 + 4;
        let config = Config {
            high_water: HIGH,
            low_water: LOW,
            idle_timeout: None,
            write_timeout: None,
            ..Config::default()
        };
        let echo = Echo::default();
        let seen = echo.seen.clone();
        let server = Server::start(config, echo);
        let mut peer = Peer::connect(server.addr);

        // Send everything from another thread and read nothing yet.
        let mut writer = peer.stream.try_clone().unwrap();
        writer.set_write_timeout(None).unwrap();
        let sender = std::thread::spawn(move || {
            for i in 0..FRAMES {
                writer.write_all(&frame(&numbered(i))).unwrap();
            }
        });

        // The server's queue for us reaches high-water and it stops reading us. While the
        // kernel still takes our replies, a pause can begin and end within one turn (zero
        // time by the reactor's clock); once the kernel's buffers are full (WRITABLE
        // registered: the queue waits for the peer), the pause lasts until we read.
        let conn = first_conn(&seen);
        let paused = server.wait_for(Duration::from_secs(60), "reads paused", move |ctx| {
            ctx.conn_figures(conn)
                .filter(|f| f.reading.contains(PauseReason::WriteQueue) && f.writable_interest)
        });
        // Paused means the queue reached high-water and has not yet drained to low-water.
        assert!(paused.queued_bytes > LOW);
        assert!(paused.peak_queued_bytes >= HIGH);
        assert!(paused.peak_queued_bytes <= HIGH + FRAME_ON_WIRE);
        assert!(
            !sender.is_finished(),
            "64 MiB cannot fit in the socket buffers: the sender must be blocked"
        );

        // Now read: every reply arrives, intact and in order.
        for i in 0..FRAMES {
            let got = peer.recv_raw().unwrap().expect("reply");
            assert!(got == numbered(i), "reply {i} differs");
        }
        sender.join().unwrap();

        let f = server.query(move |ctx| ctx.conn_figures(conn)).unwrap();
        assert!(
            f.peak_queued_bytes <= HIGH + FRAME_ON_WIRE,
            "peak {} > high-water + one frame",
            f.peak_queued_bytes
        );
        assert!(seen.get(|s| s.peak_queued) <= HIGH + FRAME_ON_WIRE);
        assert!(f.high_water_crossings >= 1);
        assert!(f.drain_events >= 1);
        assert!(f.paused_time > Duration::ZERO);
        assert_eq!(f.frames_in, u64::from(FRAMES));
    });
}

/// A producer on a highwater reactor: sends `frames` copies of `payload`, obeying pressure.
struct Producer {
    payload: Bytes,
    frames: u64,
    sent: u64,
    drains: u64,
    saw_high: u64,
    max_queued: usize,
    reply: Option<Value>,
    closed: Option<String>,
}

impl Producer {
    fn produce(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        while self.sent < self.frames {
            // A fresh buffer per frame, as real data would be.
            match ctx.send_payload(conn, Bytes::copy_from_slice(&self.payload)) {
                Ok(p) => {
                    self.sent += 1;
                    self.max_queued = self.max_queued.max(ctx.queued_bytes(conn));
                    if p == Pressure::High {
                        self.saw_high += 1;
                        return;
                    }
                }
                Err(e) => panic!("send refused: {e}"),
            }
        }
        ctx.close_write(conn);
    }
}

impl Handler for Producer {
    type Message = Value;
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.produce(ctx, conn);
    }
    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.drains += 1;
        self.produce(ctx, conn);
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, msg: Value) {
        self.reply = Some(msg);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, reason: &CloseReason) {
        self.closed = Some(reason.name().to_string());
        ctx.stop();
    }
}

fn run_producer(addr: SocketAddr, config: Config, payload: Bytes, frames: u64) -> Producer {
    let producer = Producer {
        payload,
        frames,
        sent: 0,
        drains: 0,
        saw_high: 0,
        max_queued: 0,
        reply: None,
        closed: None,
    };
    let mut reactor = Reactor::new(config, producer).unwrap();
    reactor.connect(addr).unwrap();
    reactor.run().unwrap();
    reactor.into_handler()
}

#[test]
fn slow_consumer_pushes_back_to_the_producer() {
    bounded(Duration::from_secs(120), || {
        const FRAMES: u64 = 800;
        let payload = Bytes::from(format!("\"{}\"", "p".repeat(64 * 1024 - 2)));
        let sink = Sink {
            every: 10,
            pause: Duration::from_millis(10),
            ..Sink::default()
        };
        let server_seen = sink.seen.clone();
        let server = Server::start(Config::default(), sink);

        let high = 128 * 1024;
        let producer_config = Config {
            high_water: high,
            low_water: 32 * 1024,
            idle_timeout: None,
            ..Config::default()
        };
        let p = run_producer(server.addr, producer_config, payload.clone(), FRAMES);

        // Every frame arrived, once.
        let reply = p.reply.expect("sink summary");
        assert_eq!(reply["received"], FRAMES);
        assert_eq!(reply["bytes"], FRAMES * payload.len() as u64);
        assert_eq!(p.closed.as_deref(), Some("peer_closed"));
        // The pressure reached the producer, which stopped and resumed on drain...
        assert!(p.saw_high > 0, "the producer never saw Pressure::High");
        assert!(p.drains > 0, "the producer never got a drain callback");
        // ...and its queue never grew past high-water plus one frame.
        assert!(
            p.max_queued <= high + 4 + payload.len(),
            "producer queue peaked at {}",
            p.max_queued
        );
        assert_eq!(server_seen.get(|s| s.messages), FRAMES);
    });
}

#[test]
fn ignoring_backpressure_is_stopped_by_the_hard_limit() {
    bounded(Duration::from_secs(60), || {
        // A consumer that never reads: its socket stays open, its window closes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();

        struct Greedy {
            refused: Option<SendError>,
            queued_at_refusal: usize,
        }
        impl Handler for Greedy {
            type Message = Value;
            fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
                // Ignore Pressure::High entirely, like the classic bug. The hard limit is the
                // only thing that stops us.
                let frame = Bytes::from(vec![b'1'; 1000]);
                loop {
                    match ctx.send_payload(conn, frame.clone()) {
                        Ok(_) => {}
                        Err(e) => {
                            self.queued_at_refusal = ctx.queued_bytes(conn);
                            self.refused = Some(e);
                            ctx.stop();
                            return;
                        }
                    }
                }
            }
            fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Value) {}
        }
        let config = Config {
            high_water: 10_000,
            low_water: 1_000,
            queue_limit: Some(100_000),
            ..Config::default()
        };
        let mut reactor = Reactor::new(
            config,
            Greedy {
                refused: None,
                queued_at_refusal: 0,
            },
        )
        .unwrap();
        reactor.connect(addr).unwrap();
        let _held = listener.accept().unwrap();
        reactor.run().unwrap();
        let g = reactor.into_handler();
        assert!(matches!(
            g.refused,
            Some(SendError::QueueFull { limit: 100_000, .. })
        ));
        assert!(g.queued_at_refusal <= 100_000);
        assert!(g.queued_at_refusal > 100_000 - 1004);
    });
}

#[test]
fn paused_connection_costs_no_wakeups() {
    bounded(Duration::from_secs(30), || {
        // A connection paused by the application, with its peer still sending, must not
        // keep the reactor turning.
        let sink = Sink {
            every: 1,
            pause: Duration::from_secs(3600),
            ..Sink::default()
        };
        let seen = sink.seen.clone();
        let server = Server::start(Config::default(), sink);
        let mut peer = Peer::connect(server.addr);
        peer.send(&serde_json::json!(1));
        seen.wait(Duration::from_secs(10), "first message", |s| {
            (s.messages == 1).then_some(())
        });
        // More data arrives while paused.
        for i in 0..100 {
            peer.send(&serde_json::json!(i));
        }
        let before = server.query(|ctx| ctx.figures().turns);
        std::thread::sleep(Duration::from_millis(300));
        let after = server.query(|ctx| ctx.figures().turns);
        // Each query is one wake-up through the waker; allow for those and nothing else.
        assert!(
            after - before <= 3,
            "the reactor turned {} times while idle",
            after - before
        );
        assert_eq!(seen.get(|s| s.messages), 1, "paused means no delivery");
    });
}

#[test]
fn a_stream_of_large_frames_takes_few_reads_per_frame() {
    bounded(Duration::from_secs(60), || {
        const FRAMES: u64 = 300;
        let payload = Bytes::from(format!("\"{}\"", "a".repeat(61_000)));
        let server = Server::start(Config::default(), Sink::default());
        let p = run_producer(server.addr, Config::default(), payload, FRAMES);
        assert_eq!(p.reply.expect("summary")["received"], FRAMES);
        let f = server.query(|ctx| ctx.figures());
        let per_frame = f.recv_calls as f64 / f.frames_in as f64;
        assert!(
            per_frame <= 2.0,
            "{} recv calls for {} frames",
            f.recv_calls,
            f.frames_in
        );
    });
}
