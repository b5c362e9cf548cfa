//! The producer's side of the chain, once per reactor turn: write what the kernel will take,
//! apply the low-water mark, and make each connection's poller registration match what it
//! now needs.
//!
//! Writes are deferred to here, the end of the turn, on purpose: every reply produced while
//! handling one batch of events is in the queue by then, so a burst of them leaves in one
//! `writev` instead of one syscall each.
//!
//! Invariant: after [`Engine::flush_dirty`], every connection's registered interest equals
//! `Connection::interest()`, and no connection with bytes the kernel would accept is left
//! waiting for an event: it either met `WouldBlock` (WRITABLE is registered, and the kernel
//! will say when there is room) or ran out of this turn's write budget and is on the carried
//! list, which the next turn flushes without sleeping first.
//!
//! When this runs, and what follows it (`on_drain`), is step 6 of a turn: see `reactor.rs`.

use mio::Token;

use super::{Engine, Notice};
use crate::conn::ConnId;
use crate::handler::CloseReason;

impl Engine {
    /// Writes what each dirty connection's kernel buffer will take and re-syncs its poller
    /// interest. Called by the reactor before it sleeps, so a burst of replies produced while
    /// handling one batch of events goes out in as few `writev` calls as possible.
    pub(crate) fn flush_dirty(&mut self) {
        self.pass_overdraft();
        loop {
            while let Some(id) = self.conns.pop_dirty() {
                self.flush(id);
                self.budget_relieve(id);
                self.sync_interest(id);
            }
            if !self.budget_recovered() {
                return;
            }
            self.unbind_budget(); // marks the connections it resumes dirty: once more
        }
    }

    /// Writes until the queue is empty, the kernel's send buffer is full, or the turn's write
    /// budget is spent (`Connection::flush`, `conn/write.rs`), then acts on what that did.
    fn flush(&mut self, id: ConnId) {
        let (now, turn, max_write) = (self.now, self.counters.turns, self.config.max_write());
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let writes_before = conn.share(turn).writes;
        let done = conn.flush_capped(turn, now, max_write);
        self.counters.writev_calls += (conn.share(turn).writes - writes_before) as u64;
        self.held.queued -= done.written;
        if done.carried {
            // Still writable, so no event will bring it back: the next turn will.
            self.conns.carry(id);
        }
        if let Some(e) = done.failed {
            log::debug!("{id}: write failed: {e}");
            return self.teardown(id, CloseReason::Io(e));
        }
        if done.resumed_with_input {
            self.conns.mark_ready(id);
        }
        if done.drained {
            if let Some(conn) = self.conns.get(id) {
                log::debug!(
                    "{id}: drained to {} queued bytes (low-water {}): on_drain",
                    conn.queue().len(),
                    conn.queue().marks().low
                );
            }
            self.notices.push_back(Notice::Drain(id));
            self.sink_relieved(id);
        }
        if done.close_ready {
            self.finish_close(id);
        }
    }

    /// Makes the poller's registration match `Connection::interest`. The only place that
    /// registers or re-registers a connection. Deregistering happens here (a connection that
    /// wants nothing) and in one other place, `Engine::teardown`, which takes a socket that is
    /// closing for good out of the poller at once, whatever it wanted.
    pub(crate) fn sync_interest(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let want = conn.interest();
        let had = conn.registered();
        if want == had {
            return;
        }
        let registry = self.poll.registry();
        let token = Token(id.index());
        let socket = conn.transport_mut();
        let result = match (had, want) {
            (None, Some(i)) => registry.register(socket, token, i),
            (Some(_), Some(i)) => registry.reregister(socket, token, i),
            // Nothing to read and nothing to write: not even a hang-up can change what we
            // would do, so stop watching. A paused connection's peer reset is noticed on resume.
            (Some(_), None) => registry.deregister(socket),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => {
                log::trace!("{id}: interest {had:?} -> {want:?}");
                conn.set_registered(want);
            }
            Err(e) => {
                log::warn!("{id}: poller registration failed: {e}");
                conn.set_registered(None);
                self.teardown(id, CloseReason::Io(e));
            }
        }
    }
}
