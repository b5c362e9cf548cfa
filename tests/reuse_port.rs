//! `Config::reuse_port` on a `ReactorGroup` (issue 13 goal 4): every reactor listens on the
//! one port with a socket of its own, the kernel spreads the connections among them, and no
//! reactor hands connections to another. Without it (the default), reactor 0 accepts every
//! connection and hands them out round-robin.

mod common;

use std::time::Duration;

use common::{Echo, Peer, bounded};
use highwater::{Config, ReactorFigures, ReactorGroup};
use serde_json::json;

const REACTORS: usize = 4;
/// Enough that the kernel's hash leaves no reactor out: the chance that one of 4 listeners
/// gets none of 256 connections is about 4 × (3/4)^256, 10^-31.
const CONNS: usize = 256;

/// Opens `CONNS` connections to a group, has each echo one message, and returns each
/// reactor's figures.
fn serve(reuse_port: bool) -> Vec<ReactorFigures> {
    common::raise_fd_limit();
    let config = Config {
        reuse_port,
        ..Config::default()
    };
    let group = ReactorGroup::start(REACTORS, config, "127.0.0.1:0".parse().unwrap(), |_| {
        Echo::default()
    })
    .unwrap();
    let mut peers: Vec<Peer> = (0..CONNS)
        .map(|_| Peer::connect(group.local_addr()))
        .collect();
    for (i, p) in peers.iter_mut().enumerate() {
        p.send(&json!(i));
        assert_eq!(
            p.recv(),
            json!(i),
            "every connection is served, wherever it landed"
        );
    }
    let figures: Vec<ReactorFigures> = group
        .figures()
        .into_iter()
        .map(|f| f.expect("every reactor answers"))
        .collect();
    drop(peers);
    group.shutdown(Duration::from_secs(1));
    group.join().unwrap();
    figures
}

#[test]
fn with_reuse_port_every_reactor_accepts_its_own_connections() {
    let figures = bounded(Duration::from_secs(60), || serve(true));
    let accepted: Vec<u64> = figures.iter().map(|f| f.accepted).collect();
    assert_eq!(accepted.iter().sum::<u64>(), CONNS as u64);
    assert!(
        accepted.iter().all(|&n| n > 0),
        "the kernel spreads accepts over every listener: {accepted:?}"
    );
    let handed: Vec<u64> = figures.iter().map(|f| f.handed_out).collect();
    assert_eq!(handed, [0; REACTORS], "nothing is handed out");
}

#[test]
fn without_it_reactor_0_accepts_and_hands_out_round_robin() {
    let figures = bounded(Duration::from_secs(60), || serve(false));
    let accepted: Vec<u64> = figures.iter().map(|f| f.accepted).collect();
    assert_eq!(accepted.iter().sum::<u64>(), CONNS as u64);
    let handed: Vec<u64> = figures.iter().map(|f| f.handed_out).collect();
    assert!(
        handed[0] > 0 && handed[1..].iter().all(|&n| n == 0),
        "only reactor 0 accepts, and hands out: {handed:?}"
    );
}
