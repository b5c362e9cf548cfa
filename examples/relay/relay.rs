//! The relay's handler, on its own so the demo (`--via-relay`) runs the same code in-process.
//!
//! Every accepted connection (the *client*) gets its own connection to the upstream. Frames
//! are forwarded both ways as they arrived (validated, not parsed). Two links carry the
//! pressure across the hop: `link(client, upstream)` stops reading the client while the
//! upstream's queue is above high-water (a slow upstream), and `link(upstream, client)` the
//! other way round. Neither side pauses on its *own* queue: what is read from one side is
//! queued on the other, so the links are the right rule, and a side pausing on its own queue
//! could deadlock a two-way stream (each relay queue full, each peer waiting for the other).
//!
//! A half-close crosses the relay (the peer's FIN becomes our FIN to the other side once
//! everything read before it is delivered); when both directions are finished, or either
//! side closes, the other is closed too (reset if the first ended in an error).

use std::collections::HashMap;
use std::net::SocketAddr;

use highwater::{CloseReason, ConnId, ConnSettings, Context, Handler, RawJson};

/// One side of a relayed pair.
struct Side {
    /// The connection on the other side of the relay.
    other: ConnId,
    /// This side's peer has shut down its sending side.
    finished: bool,
}

/// A two-way relay to one upstream address.
pub struct Relay {
    upstream: SocketAddr,
    pairs: HashMap<ConnId, Side>,
    /// Called with (client, upstream) when a pair is made (the demo watches them).
    on_pair: Option<Box<dyn FnMut(ConnId, ConnId) + Send>>,
}

impl Relay {
    /// A relay whose clients are each given a connection to `upstream`.
    pub fn new(upstream: SocketAddr) -> Relay {
        Relay {
            upstream,
            pairs: HashMap::new(),
            on_pair: None,
        }
    }

    /// The same, telling `on_pair` each (client, upstream) pair it makes.
    #[allow(dead_code)] // the demo's
    pub fn watched(
        upstream: SocketAddr,
        on_pair: impl FnMut(ConnId, ConnId) + Send + 'static,
    ) -> Relay {
        Relay {
            on_pair: Some(Box::new(on_pair)),
            ..Relay::new(upstream)
        }
    }

    fn pair(&mut self, a: ConnId, b: ConnId) {
        self.pairs.insert(
            a,
            Side {
                other: b,
                finished: false,
            },
        );
        self.pairs.insert(
            b,
            Side {
                other: a,
                finished: false,
            },
        );
    }
}

/// A connection of the relay reads while the *other* side's queue has room, whatever its own.
fn relay_settings(ctx: &mut Context<'_>, conn: ConnId) {
    if let Some(s) = ctx.settings(conn) {
        let s = ConnSettings {
            pause_reads_above_high_water: false,
            ..s
        };
        let _ = ctx.set_settings(conn, s);
    }
}

impl Handler for Relay {
    type Message = RawJson;

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.pairs.contains_key(&conn) {
            return; // an upstream connection we opened: it was set up at connect
        }
        let upstream = match ctx.connect(self.upstream) {
            Ok(up) => up,
            Err(e) => {
                log::warn!(
                    "{conn}: cannot connect to the upstream {}: {e}",
                    self.upstream
                );
                return ctx.close(conn);
            }
        };
        self.pair(conn, upstream);
        relay_settings(ctx, conn);
        relay_settings(ctx, upstream);
        // The chain across the hop, both ways.
        ctx.link(conn, upstream);
        ctx.link(upstream, conn);
        if let Some(f) = self.on_pair.as_mut() {
            f(conn, upstream);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let Some(side) = self.pairs.get(&conn) else {
            return;
        };
        // Above high-water the link stops reading `conn`; a refusal means the other side is
        // closing, and its on_close closes this one.
        if let Err(e) = ctx.send_payload(side.other, msg.into_bytes()) {
            log::debug!("{conn}: frame not relayed: {e}");
        }
    }

    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let Some(side) = self.pairs.get_mut(&conn) else {
            return ctx.close(conn);
        };
        side.finished = true;
        let other = side.other;
        if self.pairs.get(&other).is_some_and(|s| s.finished) {
            // Both directions are finished: close both once their queues are delivered.
            ctx.close(conn);
            ctx.close(other);
        } else {
            ctx.close_write(other); // FIN, after what was read before it
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        let Some(side) = self.pairs.remove(&conn) else {
            return;
        };
        self.pairs.remove(&side.other);
        if reason.is_clean() {
            ctx.close(side.other);
        } else {
            log::info!("{conn}: closed ({reason}): resetting {}", side.other);
            ctx.abort(side.other);
        }
    }
}
