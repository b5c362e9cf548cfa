//! The codec alone, no sockets: encode and decode throughput at 64 B, 1 KiB, the article's
//! 50-record frame (~61 KB) and 1 MiB payloads, framing alone and framing + JSON, highwater
//! against tokio-util's `LengthDelimitedCodec` on the same bytes.
//!
//! ```text
//! cargo bench --bench codec
//! ```

mod support;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput};
use highwater::frame::{Decoder, encode_header, encode_json};
use highwater::{Decode, RawJson};
use serde_json::Value;
use std::hint::black_box;
use tokio_util::codec::{Decoder as _, Encoder as _, LengthDelimitedCodec};

/// JSON payloads of the four sizes: a padded object, and for the large ones arrays of the
/// contract's sample record (realistic JSON, not one long string).
fn payloads() -> Vec<(&'static str, Bytes)> {
    let article = support::article_frame();
    let records: Vec<Value> = serde_json::from_slice(&article).unwrap();
    let mut big = Vec::new();
    while serde_json::to_vec(&big).unwrap().len() < 1 << 20 {
        big.push(records[0].clone());
    }
    vec![
        ("64B", support::payload(64)),
        ("1KiB", support::payload(1024)),
        ("article-61KB", article),
        ("1MiB", Bytes::from(serde_json::to_vec(&big).unwrap())),
    ]
}

/// Enough frames of `payload` to make a ~4 MiB stream (at least 4 frames).
fn stream_of(payload: &Bytes) -> (BytesMut, u64) {
    let n = ((4 << 20) / (payload.len() + 4)).max(4) as u64;
    let mut wire = BytesMut::new();
    for _ in 0..n {
        wire.put_u32(payload.len() as u32);
        wire.extend_from_slice(payload);
    }
    (wire, n)
}

fn decode(c: &mut Criterion) {
    for (name, payload) in payloads() {
        let (wire, n) = stream_of(&payload);
        let mut g = c.benchmark_group(format!("decode {name}"));
        g.throughput(Throughput::Bytes(wire.len() as u64));

        g.bench_function("highwater framing", |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut d = Decoder::new(8 << 20);
                let mut count = 0;
                while let Some(p) = d.decode(&mut buf).unwrap() {
                    black_box(&p);
                    count += 1;
                }
                assert_eq!(count, n);
            })
        });
        g.bench_function("tokio-util framing", |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut d = LengthDelimitedCodec::new();
                let mut count = 0;
                while let Some(p) = d.decode(&mut buf).unwrap() {
                    black_box(&p);
                    count += 1;
                }
                assert_eq!(count, n);
            })
        });
        g.bench_function("highwater framing + RawJson (validate)", |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut d = Decoder::new(8 << 20);
                while let Some(p) = d.decode(&mut buf).unwrap() {
                    black_box(RawJson::decode(p).unwrap());
                }
            })
        });
        g.bench_function("tokio-util framing + serde IgnoredAny (validate)", |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut d = LengthDelimitedCodec::new();
                while let Some(p) = d.decode(&mut buf).unwrap() {
                    black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&p).unwrap());
                }
            })
        });
        g.bench_function("highwater framing + Value", |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut d = Decoder::new(8 << 20);
                while let Some(p) = d.decode(&mut buf).unwrap() {
                    black_box(Value::decode(p).unwrap());
                }
            })
        });
        g.bench_function("tokio-util framing + serde Value", |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut d = LengthDelimitedCodec::new();
                while let Some(p) = d.decode(&mut buf).unwrap() {
                    black_box(serde_json::from_slice::<Value>(&p).unwrap());
                }
            })
        });
        g.finish();
    }
}

fn encode(c: &mut Criterion) {
    for (name, payload) in payloads() {
        let value: Value = serde_json::from_slice(&payload).unwrap();
        let frames = ((4 << 20) / (payload.len() + 4)).max(4);
        let mut g = c.benchmark_group(format!("encode {name}"));
        g.throughput(Throughput::Bytes(((payload.len() + 4) * frames) as u64));

        g.bench_function("highwater framing", |b| {
            let mut out = BytesMut::with_capacity((payload.len() + 4) * frames);
            b.iter(|| {
                out.clear();
                for _ in 0..frames {
                    encode_header(payload.len(), &mut out, 8 << 20).unwrap();
                    out.extend_from_slice(&payload);
                }
                black_box(&out);
            })
        });
        g.bench_function("tokio-util framing", |b| {
            let mut out = BytesMut::with_capacity((payload.len() + 4) * frames);
            let mut codec = LengthDelimitedCodec::new();
            b.iter(|| {
                out.clear();
                for _ in 0..frames {
                    codec.encode(payload.clone(), &mut out).unwrap();
                }
                black_box(&out);
            })
        });
        g.bench_function(
            BenchmarkId::new("highwater framing + JSON", "serialize in place"),
            |b| {
                let mut out = BytesMut::with_capacity((payload.len() + 4) * frames);
                b.iter(|| {
                    out.clear();
                    for _ in 0..frames {
                        encode_json(&value, &mut out, 8 << 20).unwrap();
                    }
                    black_box(&out);
                })
            },
        );
        g.bench_function(
            BenchmarkId::new("tokio-util framing + JSON", "to_vec then encode"),
            |b| {
                let mut out = BytesMut::with_capacity((payload.len() + 4) * frames);
                let mut codec = LengthDelimitedCodec::new();
                b.iter(|| {
                    out.clear();
                    for _ in 0..frames {
                        let json = Bytes::from(serde_json::to_vec(&value).unwrap());
                        codec.encode(json, &mut out).unwrap();
                    }
                    black_box(&out);
                })
            },
        );
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    decode(&mut c);
    encode(&mut c);
    c.final_summary();
}
