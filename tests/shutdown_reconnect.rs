//! A graceful shutdown closes every connection with `CloseReason::Shutdown`. A component that
//! reconnects after a lost connection (`Requests`, `Reconnecting`) must take that close as the
//! end, not as a loss: a reconnect during the shutdown opens a connection that keeps the
//! reactor alive until the grace period runs out.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Echo, Server, bounded};
use highwater::{
    CloseReason, Config, ConnId, Context, Handler, Reactor, ReconnectConfig, Reconnecting,
    RequestConfig, Requests, TimerId,
};
use serde_json::Value;

/// A request client that starts a long graceful shutdown as soon as it is connected, beside a
/// connection whose peer never closes: its lingering close keeps the reactor running for the
/// linger time, long enough for a reconnect timer to fire.
struct ShutsDown {
    requests: Requests,
    holder: SocketAddr,
}

impl Handler for ShutsDown {
    type Message = Value;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.requests.start(ctx);
        ctx.connect(self.holder).unwrap();
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.requests.on_open(ctx, conn) {
            ctx.shutdown(Duration::from_secs(60));
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        let _ = self.requests.on_message(ctx, conn, msg);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        let _ = self.requests.on_timer(ctx, timer, data);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        let _ = self.requests.on_close(ctx, conn, reason);
    }
}

fn run_until_shut_down(addr: SocketAddr, holder: SocketAddr) -> Duration {
    let handler = ShutsDown {
        requests: Requests::new(addr, RequestConfig::default()),
        holder,
    };
    let config = Config {
        linger: Duration::from_millis(1500),
        ..Config::default()
    };
    let mut reactor = Reactor::new(config, handler).unwrap();
    let started = Instant::now();
    reactor.run().unwrap();
    started.elapsed()
}

#[test]
fn a_request_client_does_not_reconnect_during_a_graceful_shutdown() {
    bounded(Duration::from_secs(30), || {
        let server = Server::start(Config::default(), Echo::default());
        // Accepts and holds: never reads, never closes (until the test ends).
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let holder_addr = holder.local_addr().unwrap();
        let keep = std::thread::spawn(move || holder.accept().map(|(s, _)| s));
        let took = run_until_shut_down(server.addr, holder_addr);
        drop(keep.join());
        assert!(
            took < Duration::from_secs(10),
            "the shutdown waited {took:?}: a reconnect kept the reactor alive"
        );
    });
}

/// The same with the streaming client.
struct StreamShutsDown {
    stream: Reconnecting,
    holder: SocketAddr,
}

impl Handler for StreamShutsDown {
    type Message = Value;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.stream.start(ctx);
        ctx.connect(self.holder).unwrap();
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.stream.on_open(ctx, conn) {
            ctx.shutdown(Duration::from_secs(60));
        }
    }

    fn on_message(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, _msg: Value) {}

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        self.stream.on_timer(ctx, timer, data);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        self.stream.on_close(ctx, conn, reason);
    }
}

#[test]
fn a_streaming_client_does_not_reconnect_during_a_graceful_shutdown() {
    bounded(Duration::from_secs(30), || {
        let server = Server::start(Config::default(), Echo::default());
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let holder_addr = holder.local_addr().unwrap();
        let keep = std::thread::spawn(move || holder.accept().map(|(s, _)| s));
        let handler = StreamShutsDown {
            stream: Reconnecting::new(server.addr, ReconnectConfig::default()),
            holder: holder_addr,
        };
        let config = Config {
            linger: Duration::from_millis(1500),
            ..Config::default()
        };
        let mut reactor = Reactor::new(config, handler).unwrap();
        let started = Instant::now();
        reactor.run().unwrap();
        let took = started.elapsed();
        drop(keep.join());
        assert!(
            took < Duration::from_secs(10),
            "the shutdown waited {took:?}"
        );
        assert_eq!(reactor.handler().stream.figures().connects, 1);
    });
}
