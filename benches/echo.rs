//! Echo over loopback: 1 and 64 connections, 64-byte messages, 32 requests in flight per
//! connection. highwater's reactor against a tokio current-thread server (tokio-util
//! `LengthDelimitedCodec` + serde_json) and a blocking std thread-per-connection server, in
//! one run, with the same load generator.
//!
//! Two figures per server: messages/s (wall clock; on 2 cores the generator saturates one, so
//! this mostly measures the machine) and **server CPU time per message** (the CPU clocks of the
//! server's own threads), which shows which server is leaner. Criterion reports both; a table
//! of one long run per configuration, with ratios to tokio, is printed at the end.
//!
//! ```text
//! cargo bench --bench echo
//! HIGHWATER_BENCH_SERVERS=highwater cargo bench --bench echo    # one server only (profiling)
//! ```

mod support;

use std::time::Duration;

use criterion::{Criterion, Throughput};
use support::{Generator, Kind, Load, Mode, Sample, measure, payload, start_server};

const WINDOW: u32 = 32;
const TABLE_MESSAGES: u64 = 400_000;

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut table: Vec<(usize, Kind, Sample)> = Vec::new();
    for conns in [1usize, 64] {
        for kind in support::kinds_from_env() {
            let server = start_server(kind, Mode::Echo);
            let load = Load::Echo {
                payload: payload(64),
                window: WINDOW,
            };
            let generator = Generator::connect(server.addr, conns, load);
            generator.run(20_000); // warm up both sides

            let mut group = c.benchmark_group(format!("echo 64B x{conns} conns, msgs/s"));
            group.throughput(Throughput::Elements(1));
            group.bench_function(kind.name(), |b| {
                b.iter_custom(|iters| measure(&server, &generator, iters).wall)
            });
            group.finish();

            // "time" here is the server threads' CPU time per message, not wall time.
            let mut group = c.benchmark_group(format!("echo 64B x{conns} conns, server CPU/msg"));
            group.bench_function(kind.name(), |b| {
                b.iter_custom(|iters| measure(&server, &generator, iters).server_cpu)
            });
            group.finish();

            let before = server.figures();
            table.push((conns, kind, measure(&server, &generator, TABLE_MESSAGES)));
            if let (Some(a), Some(b)) = (before, server.figures()) {
                let frames = (b.frames_in - a.frames_in) as f64;
                println!(
                    "highwater x{conns}: {:.1} frames per recv, {:.1} per writev, {:.1} per turn",
                    frames / (b.recv_calls - a.recv_calls) as f64,
                    frames / (b.writev_calls - a.writev_calls) as f64,
                    frames / (b.turns - a.turns) as f64
                );
            }
        }
    }

    // One reactor per core: the same 64-connection load on a group of 1 and of 2 reactors.
    let mut groups = Vec::new();
    for reactors in [1usize, 2] {
        let (server, group) = support::start_group_server(reactors, Mode::Echo);
        let generator = Generator::connect(
            server.addr,
            64,
            Load::Echo {
                payload: payload(64),
                window: WINDOW,
            },
        );
        generator.run(20_000);
        let mut g = c.benchmark_group("echo 64B x64 conns, server CPU/msg by reactors");
        g.bench_function(format!("{reactors} reactor(s)"), |b| {
            b.iter_custom(|iters| measure(&server, &generator, iters).server_cpu)
        });
        g.finish();
        let sample = measure(&server, &generator, TABLE_MESSAGES);
        let split: Vec<usize> = group
            .figures()
            .iter()
            .map(|f| f.map_or(0, |f| f.open_connections))
            .collect();
        groups.push((reactors, sample, split));
    }
    c.final_summary();

    println!(
        "\necho, 64-byte messages, {WINDOW} in flight per connection, {TABLE_MESSAGES} messages per row:"
    );
    println!(
        "{:>5}  {:<12} {:>12} {:>16} {:>10} {:>12}",
        "conns", "server", "msgs/s", "server CPU/msg", "vs tokio", "vs tuned"
    );
    let per_msg = |s: &Sample| s.server_cpu.as_nanos() as f64 / s.messages as f64;
    for (conns, kind, s) in &table {
        let ratio = |to: Kind| {
            table
                .iter()
                .find(|(c, k, _)| c == conns && *k == to)
                .map_or(f64::NAN, |(_, _, t)| per_msg(s) / per_msg(t))
        };
        println!(
            "{:>5}  {:<12} {:>12.0} {:>13.0} ns {:>9.2}x {:>11.2}x",
            conns,
            kind.name(),
            s.messages as f64 / s.wall.as_secs_f64(),
            per_msg(s),
            ratio(Kind::Tokio),
            ratio(Kind::TokioTuned)
        );
    }

    println!("\none reactor per core, 64 connections, {TABLE_MESSAGES} messages per row:");
    println!(
        "{:>8} {:>12} {:>16} {:>10}  connections per reactor",
        "reactors", "msgs/s", "server CPU/msg", "vs 1"
    );
    let one = groups.first().map(|(_, s, _)| per_msg(s));
    for (reactors, s, split) in &groups {
        println!(
            "{:>8} {:>12.0} {:>13.0} ns {:>9.2}x  {:?}",
            reactors,
            s.messages as f64 / s.wall.as_secs_f64(),
            per_msg(s),
            one.map_or(f64::NAN, |o| per_msg(s) / o),
            split
        );
    }
}
