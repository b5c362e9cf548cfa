//! A tokio server that speaks the same contract as the `server` example (the `--addr` and
//! `--mode` flags, the `listening on` line, echo, and the sink summary on half-close), for
//! side-by-side measurements. Not part of highwater: tokio is a dev-dependency only.
//!
//! ```text
//! cargo run --release --example tokio_server -- --mode sink            # as usually written
//! cargo run --release --example tokio_server -- --mode sink --tuned    # batched, no tree
//! ```
//!
//! As usually written: current-thread runtime, a task per connection, tokio-util's
//! `LengthDelimitedCodec` (4-byte big-endian length, 8 MiB max), each frame parsed into a
//! `serde_json::Value`, echoed with `send` (write and flush). `--tuned` validates without a
//! tree, echoes the received bytes, and flushes once per batch of ready frames.

mod common;

use std::io::Write;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use clap::Parser;
use common::cli::{self, Mode};

/// A tokio server speaking the `server` example's contract (PROTOCOL.md), for side-by-side
/// measurements.
#[derive(Parser, Debug)]
#[command(name = "tokio_server", version)]
struct Cli {
    /// Where to listen; port 0 picks a free one
    #[arg(long, value_name = "HOST:PORT", default_value = cli::DEFAULT_ADDR)]
    addr: std::net::SocketAddr,
    /// What to do with each message
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// Validate without a tree, echo the received bytes, flush once per batch of ready frames
    #[arg(long)]
    tuned: bool,
}

const INVALID: &[u8] = br#"{"error":"invalid_json","detail":"not valid JSON"}"#;

async fn serve(stream: tokio::net::TcpStream, mode: Mode, tuned: bool) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    let (mut received, mut bytes) = (0u64, 0u64);
    // What to send back for one frame (and count it).
    let mut handle = |frame: &[u8]| -> Option<Bytes> {
        let reply = if tuned {
            match serde_json::from_slice::<serde::de::IgnoredAny>(frame) {
                Ok(_) => Some(Bytes::copy_from_slice(frame)),
                Err(_) => return Some(Bytes::from_static(INVALID)),
            }
        } else {
            match serde_json::from_slice::<serde_json::Value>(frame) {
                Ok(v) => Some(Bytes::from(serde_json::to_vec(&v).unwrap_or_default())),
                Err(_) => return Some(Bytes::from_static(INVALID)),
            }
        };
        received += 1;
        bytes += frame.len() as u64;
        if mode == Mode::Echo { reply } else { None }
    };
    while let Some(Ok(frame)) = framed.next().await {
        if let Some(r) = handle(&frame) {
            let sent = if tuned {
                framed.feed(r).await
            } else {
                framed.send(r).await
            };
            if sent.is_err() {
                return;
            }
        }
        if tuned {
            while let Some(Some(Ok(frame))) = framed.next().now_or_never() {
                if let Some(r) = handle(&frame) {
                    if framed.feed(r).await.is_err() {
                        return;
                    }
                }
            }
            if SinkExt::<Bytes>::flush(&mut framed).await.is_err() {
                return;
            }
        }
    }
    // The peer half-closed: the sink's summary, then close.
    if mode == Mode::Sink {
        let summary = serde_json::json!({"received": received, "bytes": bytes});
        let _ = framed
            .send(Bytes::from(
                serde_json::to_vec(&summary).unwrap_or_default(),
            ))
            .await;
    }
}

fn main() -> std::io::Result<()> {
    let Cli { addr, mode, tuned } = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream, mode, tuned));
        }
    })
}
