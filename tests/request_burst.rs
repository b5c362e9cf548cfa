//! `RequestClient` under a burst larger than its connection's write queue: every accepted
//! request must go out as soon as the queue has room, not wait for the next request to come
//! along (issue 14, item 4).

mod common;

use std::time::Duration;

use common::{Echo, Server, bounded};
use highwater::{Config, RequestClient, RequestConfig};
use serde_json::json;

#[test]
fn a_burst_past_the_queue_limit_is_sent_in_full_as_the_queue_drains() {
    bounded(Duration::from_secs(60), || {
        const N: usize = 4000;
        let server = Server::start(Config::default(), Echo::default());
        let client = RequestClient::connect(
            server.addr,
            RequestConfig {
                pending_cap: N,
                ..RequestConfig::default()
            },
        )
        .expect("client");
        // 4 KiB a request: 4,000 of them are ~16 MB, about twice the default queue limit.
        let pad = "x".repeat(4096);
        let waiting: Vec<_> = (0..N)
            .map(|i| {
                client
                    .submit(json!({"n": i, "pad": pad}), Duration::from_secs(20))
                    .expect("accepted under the cap")
            })
            .collect();
        let mut failed = Vec::new();
        for (i, rx) in waiting.into_iter().enumerate() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(reply)) => assert_eq!(reply["n"], json!(i)),
                other => failed.push((i, format!("{other:?}"))),
            }
        }
        assert!(
            failed.is_empty(),
            "{} of {N} requests failed against a healthy server, first: {:?}",
            failed.len(),
            failed.first()
        );
        assert_eq!(client.pending(), 0);
    });
}
