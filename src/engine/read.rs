//! The read path: from `recv` to the application, for one connection, within the turn's
//! budget. One loop serves every state that reads: an open connection's frames go to the
//! application; a lingering connection's bytes are discarded until the peer closes.
//!
//! Follow a byte in: a poller event becomes readiness on the connection
//! ([`Engine::conn_event`], `Connection::on_event` in `conn/readiness.rs`); [`Engine::read`] asks the budget for room (`Engine::may_read`,
//! `budget.rs`), `Connection::read_some` (`conn/read.rs`) `recv`s into the read buffer
//! through the transport, `Connection::next_frame` cuts a complete frame out of it, and the
//! `deliver` callback the reactor passed in decodes it and calls `on_message`
//! (`Reactor::deliver`, `reactor.rs`). Then the next frame, then the next read.
//!
//! Edge-triggered rule: the loop stops only when the kernel has nothing more (`WouldBlock`,
//! or on Linux a read that did not fill the space offered; then readability is forgotten and
//! the next event brings the connection back), or with readability still remembered and the
//! connection on the ready list (out of budget), or paused (resuming puts it back on the ready
//! list). Never anywhere else, or the bytes would sit unread with no event coming to announce
//! them.

use bytes::Bytes;

use super::{Engine, Slot};
use crate::conn::{ConnId, ConnState, READ_CHUNK, ReadOutcome, Seen};
use crate::handler::CloseReason;
use crate::reactor::{FRAMES_PER_TURN, READS_PER_TURN};

/// What the read path hands each complete frame to: the reactor's decode-and-`on_message`.
/// A type parameter of the read path rather than a `dyn` call: the reactor's closure is
/// inlined into the loop, one call per message fewer.
pub(crate) trait Deliver: FnMut(&mut Engine, ConnId, Bytes) {}

impl<F: FnMut(&mut Engine, ConnId, Bytes) + ?Sized> Deliver for F {}

impl Engine {
    /// Records what an event says about a connection's socket (`Connection::on_event`), and
    /// finishes a connect. Returns the connection's id if the reactor should now read it (to
    /// deliver, or, lingering, to discard).
    pub(crate) fn conn_event(&mut self, key: usize, seen: Seen) -> Option<ConnId> {
        let Some(Slot::Conn(conn)) = self.conns.slot(key) else {
            return None; // spurious: a slot freed in an earlier turn
        };
        let id = conn.id();
        if conn.state() == ConnState::Connecting && (seen.writable || seen.broken()) {
            self.finish_connect(id);
        }
        // Gone if it closed earlier in this batch, or its connect just failed.
        let conn = self.conns.get_mut(id)?;
        if conn.state() == ConnState::Connecting {
            return None; // still in progress
        }
        conn.on_event(seen);
        if (seen.writable || seen.broken()) && !conn.queue().is_empty() {
            self.conns.mark_dirty(id);
        }
        let conn = self.conns.get(id)?;
        (conn.readable() && (conn.may_deliver() || conn.is_lingering())).then_some(id)
    }

    /// Reads `id`: delivers the frames already buffered, then reads more, until the socket
    /// says `WouldBlock`, the connection pauses or closes, or the turn's budget runs out.
    /// Lingering, it reads only to discard. See the module docs.
    pub(crate) fn read(&mut self, id: ConnId, deliver: &mut (impl Deliver + ?Sized)) {
        if self.close_if_work_done(id) {
            return;
        }
        self.read_loop(id, deliver);
        // Whatever stopped the visit (read out, paused, out of budget), an empty buffer goes
        // back to the pool: an idle or paused connection should hold no buffer at all, and
        // the budget counts the ones it holds (`budget.rs`).
        if let Some(conn) = self.conns.get_mut(id) {
            if let Some(buf) = conn.take_idle_read_buf() {
                conn.recount_read(&mut self.held.read);
                self.pool.put(buf);
            }
        }
    }

    fn read_loop(&mut self, id: ConnId, deliver: &mut (impl Deliver + ?Sized)) {
        // The budgets are this turn's, kept on the connection: a second visit in the same turn
        // (the ready list after an event) continues where the first stopped.
        let turn = self.counters.turns;
        loop {
            // 1. Frames out: every complete frame in the buffer to the application, or, while
            //    lingering, everything discarded.
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            let lingering = conn.is_lingering();
            if lingering {
                conn.discard_input();
            } else {
                loop {
                    let now = self.now;
                    let Some(conn) = self.conns.get_mut(id) else {
                        return;
                    };
                    if !conn.may_deliver() {
                        return; // paused or closing: the rest waits in the buffer
                    }
                    if conn.share(turn).frames >= FRAMES_PER_TURN {
                        return self.defer(id);
                    }
                    match conn.next_frame(now) {
                        Ok(Some(payload)) => {
                            conn.share(turn).frames += 1;
                            self.counters.frames_in += 1;
                            // Work started for this message holds its payload: the budget
                            // charges that much (`Engine::work_started`).
                            self.delivering = Some((id, payload.len()));
                            deliver(self, id, payload);
                            self.delivering = None;
                        }
                        Ok(None) => break,
                        Err(e) => return self.frame_error(id, e),
                    }
                }
            }
            // 2. Read more, if the socket may have more.
            let chunk = if lingering {
                READ_CHUNK
            } else {
                self.read_chunk()
            };
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if !conn.readable() {
                // Read out: `read` lends an empty buffer to the next busy connection.
                return self.finish_reading_if_shutting_down(id);
            }
            if conn.share(turn).reads >= READS_PER_TURN {
                return self.defer(id);
            }
            conn.share(turn).reads += 1;
            // Under budget pressure an idle connection starts with a small buffer of its own
            // rather than a pooled read chunk (`Engine::read_chunk`).
            if conn.holds_no_read_buf() && chunk == READ_CHUNK {
                conn.lend_read_buf(self.pool.take());
            }
            // A large frame's buffer is granted by the budget before it is allocated; if
            // there is no room, the connection waits paused with its bytes in the kernel.
            if !self.may_read(id) {
                return;
            }
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            self.counters.recv_calls += 1;
            let outcome = conn.read_some(chunk);
            // The read may have grown the buffer (as granted): count it.
            self.recharge_read(id);
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            match outcome {
                // A read that did not fill the space offered found the kernel's receive
                // queue empty. With Linux's edge-triggered epoll, any byte that arrives later
                // raises a new event, so there is no need to spend a syscall on the
                // `WouldBlock` that would come next (tokio and Netty make the same call).
                // Except where only `WouldBlock` proves it (`short_read_is_read_out`).
                ReadOutcome::Data { drained: true } if conn.short_read_is_read_out() => {
                    conn.read_out();
                }
                ReadOutcome::Data { .. } => {}
                // Read out: the next pass finds no frame and `readable` false, and stops there.
                ReadOutcome::WouldBlock => conn.read_out(),
                ReadOutcome::Eof => return self.peer_eof(id),
                ReadOutcome::Error(e) if lingering => {
                    log::debug!("{id}: read while lingering failed: {e}");
                    return self.end_linger(id);
                }
                ReadOutcome::Error(e) => {
                    log::debug!("{id}: read failed: {e}");
                    return self.teardown(id, CloseReason::Io(e));
                }
            }
        }
    }

    /// During a graceful shutdown, a connection that has read everything its peer sent is
    /// closed (gracefully: its replies are still delivered).
    fn finish_reading_if_shutting_down(&mut self, id: ConnId) {
        if self
            .conn_ref(id)
            .is_some_and(|c| c.finishing() && c.work_pending() == 0)
        {
            self.close(id, CloseReason::Shutdown);
        }
    }
}
