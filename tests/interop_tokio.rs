//! Interoperability with tokio-util's `LengthDelimitedCodec` (default settings: 4-byte
//! big-endian length, 8 MiB max), an implementation written independently of ours.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Echo, Server, bounded};
use futures::{SinkExt, StreamExt};
use highwater::Config;
use serde_json::{Value, json};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_tokio_util_client_talks_to_a_highwater_echo_server() {
    bounded(Duration::from_secs(60), || {
        let server = Server::start(Config::default(), Echo::default());
        let addr = server.addr;
        runtime().block_on(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
            let messages: Vec<Value> = (0..1000)
                .map(|i| json!({"i": i, "s": "é☃".repeat(i % 50), "n": [i, null, true]}))
                .chain([json!("x".repeat(1 << 20))])
                .collect();
            for m in &messages {
                framed
                    .feed(Bytes::from(serde_json::to_vec(m).unwrap()))
                    .await
                    .unwrap();
            }
            SinkExt::<Bytes>::flush(&mut framed).await.unwrap();
            for m in &messages {
                let reply = framed.next().await.unwrap().unwrap();
                assert_eq!(&serde_json::from_slice::<Value>(&reply).unwrap(), m);
            }
            // The contract's error reply reaches a tokio reader as an ordinary frame.
            framed.send(Bytes::from_static(b"{nope")).await.unwrap();
            let reply: Value =
                serde_json::from_slice(&framed.next().await.unwrap().unwrap()).unwrap();
            assert_eq!(reply["error"], "invalid_json");
        });
    });
}

#[test]
fn a_highwater_producer_feeds_a_tokio_util_sink() {
    bounded(Duration::from_secs(60), || {
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // A tokio sink: count frames and bytes until the peer half-closes, then reply.
        let sink = std::thread::spawn(move || {
            rt.block_on(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                let (mut n, mut bytes) = (0u64, 0u64);
                while let Some(frame) = framed.next().await {
                    let frame = frame.unwrap();
                    serde_json::from_slice::<Value>(&frame).unwrap();
                    n += 1;
                    bytes += frame.len() as u64;
                    // A slow consumer: yield to the timer now and then.
                    if n % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                let summary = json!({"received": n, "bytes": bytes});
                framed
                    .send(Bytes::from(serde_json::to_vec(&summary).unwrap()))
                    .await
                    .unwrap();
                (n, bytes)
            })
        });

        struct Send500 {
            sent: u64,
            reply: Option<Value>,
        }
        impl highwater::Handler for Send500 {
            type Message = Value;
            fn on_open(&mut self, ctx: &mut highwater::Context<'_>, c: highwater::ConnId) {
                self.on_drain(ctx, c);
            }
            fn on_drain(&mut self, ctx: &mut highwater::Context<'_>, c: highwater::ConnId) {
                while self.sent < 500 {
                    self.sent += 1;
                    let m = json!({"seq": self.sent, "pad": "q".repeat(10_000)});
                    if ctx.send(c, &m).unwrap().is_high() {
                        return;
                    }
                }
                ctx.close_write(c);
            }
            fn on_message(
                &mut self,
                _: &mut highwater::Context<'_>,
                _: highwater::ConnId,
                m: Value,
            ) {
                self.reply = Some(m);
            }
            fn on_close(
                &mut self,
                ctx: &mut highwater::Context<'_>,
                _: highwater::ConnId,
                _: &highwater::CloseReason,
            ) {
                ctx.stop();
            }
        }
        let config = Config {
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            ..Config::default()
        };
        let mut reactor = highwater::Reactor::new(
            config,
            Send500 {
                sent: 0,
                reply: None,
            },
        )
        .unwrap();
        reactor.connect(addr).unwrap();
        reactor.run().unwrap();
        let (n, bytes) = sink.join().unwrap();
        assert_eq!(n, 500);
        let reply = reactor.into_handler().reply.expect("summary");
        assert_eq!(reply, json!({"received": 500, "bytes": bytes}));
    });
}
