//! The process-wide memory budget ([`crate::Config::queue_budget`]), and who pays when it binds.
//!
//! What it counts: every byte a connection keeps alive on our side. That is its write queue
//! (replies the peer has not taken) *and* its read buffer's allocation (a frame in progress,
//! frames not delivered yet); and the payloads other threads sent through a `Handle` that
//! wait in the command channel. Per-connection limits bound one peer; this bounds all of them.
//!
//! Who stops when it binds: not everyone. Pausing every connection would let a few hundred
//! slow readers stop a client that holds nothing at all. So the budget is shared out: when the
//! total reaches it, each connection holding memory gets an equal *fair share* of it, and the
//! connections holding more than their share stop reading ([`PauseReason::Budget`]). One
//! ordinary read buffer is not held against anyone: every connection needs one to make
//! progress. While the total is *over* the budget the share is zero: only connections whose
//! peers take their replies as fast as they come keep reading. A paused connection reads
//! again as soon as its own holding is back under the line (its peer took its replies), or
//! when the total falls to 3/4 of the budget.
//!
//! While the budget binds, each connection is judged in O(1) whenever its holding grows
//! (a send, a read); the O(connections) scan runs only when the budget starts to bind, when
//! the total has grown by another eighth of it since the last scan, and when it stops binding.
//!
//! The bound that follows: the total stays within the budget plus, per connection, one read
//! buffer of at most [`READ_ALLOC_KEEP`] and what it took on before it was judged (one
//! reply, one read).

use crate::conn::{ConnId, Connection, PauseReason, READ_ALLOC_KEEP, State};
use crate::engine::{Engine, Slot, conn_mut, mark_dirty, mark_ready};

/// What a connection holds: its queue and its read buffer's allocation.
fn holding(conn: &Connection) -> usize {
    conn.queue.len() + conn.read_charged
}

/// What a connection is judged on when the budget binds: its holding, less one ordinary read
/// buffer. Every connection needs a read buffer to make progress, and a client that holds
/// only that (a request being read, no replies piling up) must never be the one that stops.
fn judged(conn: &Connection) -> usize {
    conn.queue.len() + conn.read_charged.saturating_sub(READ_ALLOC_KEEP)
}

/// Brings the count of `conn`'s read buffer into `read_held`, without judging it (for
/// connections that are closing, or when the caller applies the budget itself).
pub(crate) fn charge_read(read_held: &mut usize, conn: &mut Connection) {
    let now_held = conn.read_buf.alloc();
    *read_held = *read_held + now_held - conn.read_charged;
    conn.read_charged = now_held;
}

impl Engine {
    /// Bytes held: every connection's queue and read buffer, and the payloads waiting in the
    /// handles' command channel (`Inbox::bytes`), which are memory too.
    pub(crate) fn held(&self) -> usize {
        self.queued + self.read_held + self.commands.bytes()
    }

    /// A connection judged above this stops reading while the budget binds: its fair share,
    /// or nothing at all while the total is over the budget. Over it, memory that is not
    /// leaving must stop growing; a connection whose peer takes its replies as they come
    /// (its queue empties at every flush) is relieved at once and never notices.
    fn budget_line(&self) -> usize {
        match self.config.queue_budget {
            Some(budget) if self.held() < budget => self.fair_share,
            _ => 0,
        }
    }

    /// Brings the count of `id`'s read buffer up to date (after a read, or a buffer taken
    /// from or given back to the pool), then applies the budget to it.
    pub(crate) fn recharge_read(&mut self, id: ConnId) {
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        charge_read(&mut self.read_held, conn);
        self.apply_budget(id);
    }

    /// Called whenever `id`'s holding grew: starts binding if the total reached the budget,
    /// or, while it binds, pauses `id` if it holds more than its share.
    pub(crate) fn apply_budget(&mut self, id: ConnId) {
        let Some(budget) = self.config.queue_budget else {
            return;
        };
        let total = self.held();
        self.peak_held = self.peak_held.max(total);
        if !self.budget_paused {
            if total >= budget {
                self.bind_budget(budget);
            }
            return;
        }
        if total >= self.budget_scanned_at + budget / 8 {
            return self.bind_budget(budget); // grown again: share out anew
        }
        let (line, now) = (self.budget_line(), self.now);
        if let Some(conn) = conn_mut(&mut self.slots, id) {
            if judged(conn) > line && matches!(conn.state(), State::Open | State::Connecting) {
                conn.pause(PauseReason::Budget, now);
                mark_dirty(&mut self.dirty, conn);
            }
        }
    }

    /// The budget binds: share it out among the connections holding memory, and pause those
    /// above their share. O(connections).
    fn bind_budget(&mut self, budget: usize) {
        let holders = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Conn(c) if holding(c) > 0))
            .count();
        self.budget_paused = true;
        self.fair_share = budget / holders.max(1);
        self.budget_scanned_at = self.held();
        let (line, now) = (self.budget_line(), self.now);
        let mut paused = 0;
        for (_, slot) in self.slots.iter_mut() {
            let Slot::Conn(conn) = slot else { continue };
            if judged(conn) > line && matches!(conn.state(), State::Open | State::Connecting) {
                if conn.pause(PauseReason::Budget, now) {
                    paused += 1;
                }
                mark_dirty(&mut self.dirty, conn);
            }
        }
        log::warn!(
            "budget reached: {} bytes held ({} queued) by {holders} connections; \
             fair share {} bytes; paused {paused} holding more",
            self.held(),
            self.queued,
            self.fair_share
        );
    }

    /// After `id`'s queue shrank: a connection paused by the budget reads again once it holds
    /// no more than the line (its peer took its replies), even while others keep it binding.
    pub(crate) fn budget_relieve(&mut self, id: ConnId) {
        if !self.budget_paused {
            return;
        }
        let (line, now) = (self.budget_line(), self.now);
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        if conn.paused().contains(PauseReason::Budget) && judged(conn) <= line {
            if conn.resume(PauseReason::Budget, now) && conn.has_pending_input() {
                mark_ready(&mut self.ready, conn);
            }
            mark_dirty(&mut self.dirty, conn);
        }
    }

    /// Whether the budget stops binding: the total fell to three quarters of it.
    pub(crate) fn budget_recovered(&self) -> bool {
        self.budget_paused
            && self
                .config
                .queue_budget
                .is_none_or(|b| self.held() <= b / 4 * 3)
    }

    /// The budget no longer binds: every connection it paused reads again. O(connections),
    /// once per binding.
    pub(crate) fn unbind_budget(&mut self) {
        self.budget_paused = false;
        self.fair_share = 0;
        let now = self.now;
        log::info!("budget: {} bytes held; reads resume", self.held());
        for (_, slot) in self.slots.iter_mut() {
            let Slot::Conn(conn) = slot else { continue };
            if conn.resume(PauseReason::Budget, now) {
                if conn.has_pending_input() {
                    mark_ready(&mut self.ready, conn);
                }
                mark_dirty(&mut self.dirty, conn);
            }
        }
    }
}
