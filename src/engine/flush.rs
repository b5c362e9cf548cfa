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

use std::io;

use mio::Token;

use crate::conn::{ConnId, ConnState, PauseReason};
use crate::engine::{Engine, Notice, conn_mut, mark_dirty, mark_ready};
use crate::handler::CloseReason;
use crate::reactor::{WRITE_BYTES_PER_TURN, WRITES_PER_TURN};

impl Engine {
    /// Start of a turn: connections whose write budget ran out last turn are dirty again, with
    /// a new budget.
    pub(crate) fn take_carried(&mut self) {
        while let Some(id) = self.carried.pop() {
            if let Some(conn) = conn_mut(&mut self.slots, id) {
                mark_dirty(&mut self.dirty, conn);
            }
        }
    }

    /// Writes what each dirty connection's kernel buffer will take and re-syncs its poller
    /// interest. Called by the reactor before it sleeps, so a burst of replies produced while
    /// handling one batch of events goes out in as few `writev` calls as possible.
    pub(crate) fn flush_dirty(&mut self) {
        self.pass_overdraft();
        loop {
            while let Some(id) = self.dirty.pop() {
                let Some(conn) = conn_mut(&mut self.slots, id) else {
                    continue;
                };
                conn.in_dirty = false;
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

    /// Writes until the queue is empty or the kernel's send buffer is full (`WouldBlock`:
    /// the next link of the chain is pushing back). Then applies the low-water mark.
    fn flush(&mut self, id: ConnId) {
        let (now, turn) = (self.now, self.counters.turns);
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        if !matches!(conn.state(), ConnState::Open | ConnState::Flushing) {
            return;
        }
        let before = conn.queue.len();
        let mut failure = None;
        while conn.writable && !conn.queue.is_empty() {
            // The write side's budget, per turn like the read side's: a producer whose peer
            // reads as fast as it writes would otherwise refill from `on_drain` and flush
            // again inside one `settle` for as long as it pleases, while every other
            // connection, timer and command waits. The socket is still writable, so no event
            // will bring it back: it is carried to the next turn.
            let share = conn.share(turn);
            if share.writes >= WRITES_PER_TURN || share.bytes_written >= WRITE_BYTES_PER_TURN {
                self.carried.push(id);
                break;
            }
            conn.share(turn).writes += 1;
            self.counters.writev_calls += 1;
            let queued = conn.queue.len();
            let result = conn.queue.write_to(&mut conn.stream);
            conn.share(turn).bytes_written += queued - conn.queue.len();
            match result {
                Ok((0, _)) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                // A short write means the send buffer filled up. On Linux the kernel has
                // already flagged the socket to wake us when space frees (SOCK_NOSPACE), so
                // skip the write that would only return `WouldBlock`.
                Ok((written, offered)) if written < offered && cfg!(target_os = "linux") => {
                    conn.writable = false;
                }
                Ok(_) => {}
                // Edge-triggered: remember that the socket is full; the next WRITABLE event
                // (we stay registered for it while the queue is non-empty) sets this again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if conn.queue.len() < before {
            conn.last_write_at = now; // the peer took bytes: progress (see `timeouts.rs`)
        }
        self.queued -= before - conn.queue.len();
        if let Some(e) = failure {
            log::debug!("{id}: write failed: {e}");
            return self.teardown(id, CloseReason::Io(e));
        }
        if conn.queue.take_drain() {
            // Fallen to the low-water mark after a crossing: the producer may resume, and so
            // may reading if the queue was what paused it.
            if conn.resume(PauseReason::WriteQueue, now) && conn.has_pending_input() {
                mark_ready(&mut self.ready, conn);
            }
            self.notices.push_back(Notice::Drain(id));
        }
        if conn.queue.is_empty() {
            conn.stall_since = None;
            if conn.shutdown_write_when_flushed && !conn.write_shut {
                conn.write_shut = true;
                if let Err(e) = conn.stream.shutdown(std::net::Shutdown::Write) {
                    log::debug!("{id}: shutdown(Write) failed: {e}");
                }
            }
            if conn.state() == ConnState::Flushing {
                self.finish_close(id);
            }
        }
    }

    /// Makes the poller's registration match `Connection::interest`. The only place that
    /// registers or re-registers a connection. Deregistering happens here (a connection that
    /// wants nothing) and in one other place, `Engine::teardown`, which takes a socket that is
    /// closing for good out of the poller at once, whatever it wanted.
    pub(crate) fn sync_interest(&mut self, id: ConnId) {
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        let want = conn.interest();
        if want == conn.registered {
            return;
        }
        let registry = self.poll.registry();
        let token = Token(id.index());
        let result = match (conn.registered, want) {
            (None, Some(i)) => registry.register(&mut conn.stream, token, i),
            (Some(_), Some(i)) => registry.reregister(&mut conn.stream, token, i),
            // Nothing to read and nothing to write: not even a hang-up can change what we
            // would do, so stop watching. A paused connection's peer reset is noticed on resume.
            (Some(_), None) => registry.deregister(&mut conn.stream),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => {
                log::trace!("{id}: interest {:?} -> {want:?}", conn.registered);
                conn.registered = want;
            }
            Err(e) => {
                log::warn!("{id}: poller registration failed: {e}");
                conn.registered = None;
                self.teardown(id, CloseReason::Io(e));
            }
        }
    }
}
