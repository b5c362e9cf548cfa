//! `Context::abort` resets the connection: the peer hears about it at once, even with
//! megabytes unread, and the kernel frees what it held for that peer (issue 10, item 6).

mod common;

use std::io::{self, Read};
use std::time::{Duration, Instant};

use common::{Shared, bounded};
use highwater::{CloseReason, Config, ConnId, Context, Handler, RawJson, Reactor};

/// Fills every new connection's write queue (and so the kernel's send buffer behind it), and
/// records each close.
#[derive(Default)]
struct Flood {
    seen: Shared,
}

impl Handler for Flood {
    type Message = RawJson;
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let chunk = format!("\"{}\"", "x".repeat(64 * 1024 - 2));
        // 4 MiB: well past the high-water mark, so most of it waits in our queue and the
        // rest in the two kernels' buffers.
        for _ in 0..64 {
            if ctx.send_payload(conn, chunk.clone()).is_err() {
                break;
            }
        }
        self.seen.update(|s| s.opened.push(conn));
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        self.seen
            .update(|s| s.closed.push((conn, reason.name().to_string())));
    }
}

#[test]
fn an_aborted_peer_sees_a_reset_at_once_not_megabytes_later() {
    bounded(Duration::from_secs(30), || {
        let seen = Shared::default();
        let config = Config {
            queue_limit: Some(8 << 20),
            ..Config::default()
        };
        let server = common::Server::start(config, Flood { seen: seen.clone() });
        let mut peer = std::net::TcpStream::connect(server.addr).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let conn = common::first_conn(&seen);
        // Let the kernel buffers fill before the abort: the peer has read nothing yet.
        server.wait_for(
            Duration::from_secs(10),
            "the send buffer to fill",
            move |ctx| {
                let f = ctx.conn_figures(conn)?;
                (f.bytes_out > 0 && f.kernel.unsent_bytes.unwrap_or(1) > 0).then_some(())
            },
        );
        server.query(move |ctx| ctx.abort(conn));
        seen.wait(Duration::from_secs(5), "on_close", |s| {
            s.closed.first().map(|c| c.1.clone())
        });
        let started = Instant::now();
        let mut buf = vec![0u8; 256 * 1024];
        let mut read = 0usize;
        let end = loop {
            match peer.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => read += n,
                Err(e) => break Err(e),
            }
        };
        let took = started.elapsed();
        match end {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!(
                "expected a reset after abort, got {other:?} after reading {read} bytes in {took:?}"
            ),
        }
        assert!(took < Duration::from_secs(2), "the reset took {took:?}");
    });
}

#[test]
fn close_is_still_graceful_every_queued_byte_arrives_before_eof() {
    bounded(Duration::from_secs(30), || {
        let seen = Shared::default();
        let config = Config {
            queue_limit: Some(8 << 20),
            ..Config::default()
        };
        let mut reactor = Reactor::new(config, Flood { seen: seen.clone() }).unwrap();
        let addr = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let handle = reactor.handle();
        let thread = std::thread::spawn(move || reactor.run());
        let mut peer = std::net::TcpStream::connect(addr).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let conn = common::first_conn(&seen);
        handle.close(conn).unwrap();
        let mut all = Vec::new();
        peer.read_to_end(&mut all).expect("a clean end of stream");
        assert_eq!(all.len(), 64 * (4 + 64 * 1024));
        handle.stop().unwrap();
        thread.join().unwrap().unwrap();
    });
}
