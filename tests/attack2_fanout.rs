//! Attack review 2 of `FanOut`'s crossing-based grace (see each test's doc comment).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Peer, Server, bounded};
use highwater::bytes::Bytes;
use highwater::{Config, ConnId, Context, FanOut, Handler, RawJson, SlowPolicy};
use serde_json::Value;

/// Records who connected; the test drives the fan-out itself from `Server::query`.
#[derive(Default)]
struct Opens(Arc<Mutex<Vec<ConnId>>>);

impl Handler for Opens {
    type Message = RawJson;

    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.0.lock().unwrap().push(conn);
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
}

const LIMIT: usize = 8 * 1024;

fn config() -> Config {
    Config {
        high_water: 2 * 1024,
        low_water: 512,
        queue_limit: Some(LIMIT),
        ..Config::default()
    }
}

/// A JSON string payload of exactly `n` bytes (n >= 2).
fn filler(n: usize) -> Bytes {
    Bytes::from(format!("\"{}\"", "p".repeat(n - 2)))
}

/// Fills `sink`'s queue (from empty) until only `room` bytes are left under its hard limit.
fn fill_to(ctx: &mut Context<'_>, sink: ConnId, room: usize) {
    let queued = |ctx: &Context<'_>| ctx.queue_figures(sink).expect("open").queued;
    assert_eq!(queued(ctx), 0, "starts empty");
    let _ = ctx.send_payload(sink, filler(100)).expect("room");
    let header = queued(ctx) - 100;
    let n = LIMIT - room - queued(ctx) - header;
    let _ = ctx.send_payload(sink, filler(n)).expect("room");
    assert_eq!(queued(ctx), LIMIT - room);
}

/// Finding (attack review 2, medium): a `Drop` member let go and then crossing again
/// (after draining between two looks) is taken back at once, with its gap notice owed; but
/// the new crossing may have left its queue close to its hard limit (an application's
/// sends, another topic, a frame with no source: all may fill it up to the limit), and
/// then the gap notice (24 bytes here) is refused while a smaller frame fits: the member gets
/// a frame with no notice before it, and the notice comes later, after frames it does not
/// cover. Before the fix a let-go member stayed let go until a fan-out look saw it drained,
/// when its queue had room. The promise broken: "the next frame it does get ... is preceded
/// by a gap notice".
///
/// Sequence: S (Drop, grace 10 s) is filled above high-water; a frame that does not fit is
/// refused: let go, one missed. Its queue drains (the kernel takes it). It is filled again
/// to 10 bytes under its limit (crossing 2); the next frame, `1` (5 bytes framed), is sent
/// to it: delivered, and the notice is still owed.
/// The sequence of the tests below: S let go (one frame missed), drained, filled again to
/// `room` bytes under its limit (a new crossing), then sent `1`. Returns how many members
/// `1` was sent to, what S still has owed, and the frames S read after its four fillers.
fn let_go_then_cross_again(room: usize) -> (usize, Option<u64>, Vec<Value>) {
    bounded(Duration::from_secs(30), move || {
        let opens = Opens::default();
        let ids = opens.0.clone();
        let server = Server::start(config(), opens);
        let mut s = Peer::connect(server.addr);
        let sid = server.wait_for(Duration::from_secs(5), "S open", move |_| {
            ids.lock().unwrap().first().copied()
        });
        let topic = Arc::new(Mutex::new(FanOut::new()));
        let t = topic.clone();
        let missed = server.query(move |ctx| {
            let mut topic = t.lock().unwrap();
            topic.add(
                sid,
                SlowPolicy::Drop {
                    grace: Duration::from_secs(10),
                },
            );
            fill_to(ctx, sid, 1000);
            assert!(ctx.pressure(sid).expect("open").is_high());
            let d = topic.send(ctx, None, filler(2000)); // does not fit: let go
            assert_eq!(d.dropped, 1);
            topic.missed(sid)
        });
        assert_eq!(missed, Some(1));
        server.wait_for(Duration::from_secs(5), "S drained", move |ctx| {
            (ctx.queue_figures(sid)?.queued == 0).then_some(())
        });
        let t = topic.clone();
        let (sent, missed) = server.query(move |ctx| {
            let mut topic = t.lock().unwrap();
            fill_to(ctx, sid, room); // crossing 2
            let d = topic.send(ctx, None, Bytes::from_static(b"1"));
            (d.sent, topic.missed(sid))
        });
        let mut frames = Vec::new();
        for _ in 0..4 + sent + usize::from(missed == Some(0)) {
            let f = s.recv_raw().expect("read").expect("a frame");
            frames.push(serde_json::from_slice::<Value>(&f).expect("json"));
        }
        (sent, missed, frames.split_off(4))
    })
}

/// Held up: with room in its queue, the member taken back by a new crossing gets its gap
/// notice, with the exact count, just before its next frame.
#[test]
fn a_member_taken_back_by_a_new_crossing_with_room_gets_an_exact_gap_notice_first() {
    let (sent, missed, after) = let_go_then_cross_again(1000);
    assert_eq!((sent, missed), (1, Some(0)));
    assert_eq!(
        after,
        [
            serde_json::json!({"op": "gap", "dropped": 1}),
            serde_json::json!(1)
        ]
    );
}

#[test]
fn a_member_taken_back_by_a_new_crossing_gets_its_gap_notice_before_its_next_frame() {
    // 10 bytes of room: the notice (24 bytes) does not fit, `1` (5 framed) does.
    let (sent, missed, after) = let_go_then_cross_again(10);
    assert!(
        sent == 0 || after.first().is_some_and(|f| f["op"] == "gap"),
        "sent {sent}, missed still {missed:?}; S got {after:?} after its fillers"
    );
}
