//! One-way stream of the article's ~61 KB frames into a sink that validates every one:
//! MB/s and server CPU per MB, highwater against the tokio servers and std threads, with the
//! same producer (a highwater reactor obeying its high-water mark).
//!
//! ```text
//! cargo bench --bench stream
//! ```
//! The Node.js comparison (a `net` server doing the same job) runs outside cargo:
//! `benches/compare/stream_vs_node.sh`.

mod support;

use std::time::Duration;

use criterion::{Criterion, Throughput};
use support::{Generator, Kind, Load, Mode, Sample, article_frame, measure, start_server};

const TABLE_FRAMES: u64 = 20_000;

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let frame = article_frame();
    let mut table: Vec<(Kind, Sample)> = Vec::new();
    for kind in support::kinds_from_env() {
        let server = start_server(kind, Mode::Sink);
        let generator = Generator::connect(
            server.addr,
            1,
            Load::Stream {
                frame: frame.clone(),
            },
        );
        generator.run(500);

        let mut g = c.benchmark_group("stream article frames, MB/s");
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| measure(&server, &generator, iters).wall)
        });
        g.finish();

        // "time" is the server threads' CPU time per frame; thrpt is MB per CPU-second.
        let mut g = c.benchmark_group("stream article frames, server CPU");
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| measure(&server, &generator, iters).server_cpu)
        });
        g.finish();

        let before = server.figures();
        table.push((kind, measure(&server, &generator, TABLE_FRAMES)));
        if let (Some(a), Some(b)) = (before, server.figures()) {
            println!(
                "highwater: {:.2} recv calls per {}-byte frame",
                (b.recv_calls - a.recv_calls) as f64 / (b.frames_in - a.frames_in) as f64,
                frame.len()
            );
        }
    }
    c.final_summary();

    println!(
        "\none-way stream, {} frames of {} bytes per row:",
        TABLE_FRAMES,
        frame.len()
    );
    println!(
        "{:<12} {:>10} {:>18} {:>10}",
        "server", "MB/s", "server CPU ms/MB", "vs tokio"
    );
    let mb = |s: &Sample| (s.messages * frame.len() as u64) as f64 / 1e6;
    let cpu_per_mb = |s: &Sample| s.server_cpu.as_secs_f64() * 1e3 / mb(s);
    let tokio = table
        .iter()
        .find(|(k, _)| *k == Kind::Tokio)
        .map(|(_, s)| cpu_per_mb(s));
    for (kind, s) in &table {
        println!(
            "{:<12} {:>10.0} {:>18.3} {:>9.2}x",
            kind.name(),
            mb(s) / s.wall.as_secs_f64(),
            cpu_per_mb(s),
            tokio.map_or(f64::NAN, |t| cpu_per_mb(s) / t)
        );
    }
}
