//! The process-wide memory budget ([`crate::Config::queue_budget`]), and who pays when it binds.
//!
//! What it counts ([`Engine::held`]): every byte kept alive on our side. That is each
//! connection's write queue (replies the peer has not taken) and its read buffer's allocation
//! (a frame in progress, frames not delivered yet), the payloads held by work it started
//! elsewhere (jobs at [`crate::Workers`], counted from `Context::work_started` to
//! `work_finished`), and the payloads other threads sent through a `Handle` that wait in the
//! command channel. Per-connection limits bound one peer; this
//! bounds all of them together.
//!
//! The two sides are governed at the moment each can still say no:
//!
//! - **Write side: fair shares.** Replies grow a queue only while the connection reads
//!   requests, so the lever is to stop reading it. Pausing everyone would let a few hundred slow
//!   readers stop a client that holds nothing at all, so the budget is shared out instead: when
//!   the total reaches it, each connection holding memory gets an equal *fair share*, and those
//!   whose queue is above their share stop reading ([`PauseReason::Budget`]). While the total
//!   is *over* the budget the share is zero: only connections whose peers take their replies as
//!   fast as they come keep reading. A paused connection reads again as soon as its own queue
//!   is back under the line (its peer took its replies), or when the total falls to 3/4.
//! - **Read side: room before growth.** An ordinary read buffer ([`crate::conn::READ_ALLOC_KEEP`]) is
//!   always granted: every connection needs one to make progress. A larger one (the rest of a
//!   large frame) is granted before it is allocated, if the budget has room for it. If not,
//!   the connection waits with its bytes in the kernel ([`PauseReason::ReadBudget`]), which
//!   closes the peer's window: pausing a half-read frame would free nothing, so the decision
//!   is made before the memory is taken. One connection at a time may *overdraw* the budget
//!   for one frame, so a frame larger than what is free (or than the whole budget) still
//!   completes, and waiting connections take that turn one after the other, each once the
//!   total is back within the budget (a frame read out may still be held, by its echo).
//!
//! Costs: each connection is judged in O(1) when its queue grows or before its buffer grows;
//! the O(connections) scan runs only when the budget starts to bind, when the total has grown by
//! another eighth of it since the last scan, and when it stops binding.
//!
//! The bound that follows: the total stays within the budget, plus one maximum frame (the
//! overdraft), plus per connection one ordinary read buffer and the replies to one read
//! (what it took on before it was judged).

use super::Engine;
use super::conns::Join;
use crate::conn::{ConnId, ConnState, Connection, PRESSED_CHUNK, PauseReason, READ_CHUNK};

/// What a connection is judged on by the write side: its queue, and the payloads its work in
/// progress holds (replies on their way to the queue).
fn judged(conn: &Connection) -> usize {
    conn.queue().len() + conn.work_bytes()
}

/// Whether the budget may pause this connection (the others are closing anyway).
fn pausable(conn: &Connection) -> bool {
    matches!(conn.state(), ConnState::Open | ConnState::Connecting)
}

impl Engine {
    /// Bytes held: every connection's queue and read buffer, the payloads its work elsewhere
    /// holds (`work_held`), and the payloads waiting in the handles' command channel
    /// (`Inbox::bytes`), which are memory too.
    #[inline]
    pub(crate) fn held(&self) -> usize {
        self.held.queued + self.held.read + self.held.work + self.commands.bytes()
    }

    /// A queue above this stops its connection's reading while the budget binds: the fair
    /// share, or nothing at all while the total is over the budget.
    fn budget_line(&self) -> usize {
        match self.config.queue_budget {
            Some(budget) if self.held() < budget => self.held.fair_share,
            _ => 0,
        }
    }

    // ----- the write side ----------------------------------------------------------------

    /// Called when `id`'s queue grew: starts binding if the total reached the budget, or, while
    /// it binds, pauses `id` if its queue is above its share.
    #[inline]
    pub(crate) fn apply_budget(&mut self, id: ConnId) {
        let Some(budget) = self.config.queue_budget else {
            return;
        };
        let total = self.held();
        self.held.peak = self.held.peak.max(total);
        if !self.held.binding {
            if total >= budget {
                self.bind_budget(budget);
            }
            return;
        }
        self.apply_binding_budget(id, budget, total);
    }

    /// [`Engine::apply_budget`] while the budget binds: out of line, so that the usual case
    /// (well under the budget) costs the sender a few comparisons.
    fn apply_binding_budget(&mut self, id: ConnId, budget: usize, total: usize) {
        if total >= self.held.scanned_at + budget / 8 {
            return self.bind_budget(budget); // grown again: share out anew
        }
        let line = self.budget_line();
        if self
            .conn_ref(id)
            .is_some_and(|c| judged(c) > line && pausable(c))
        {
            self.pause(id, PauseReason::Budget);
        }
    }

    /// The budget binds: share it out among the connections holding memory, and pause those
    /// whose queue is above their share. O(connections).
    fn bind_budget(&mut self, budget: usize) {
        let holders = self
            .conns
            .iter()
            .filter(|c| judged(c) + c.read_charged() > 0)
            .count();
        let first = !self.held.binding;
        self.held.binding = true;
        self.held.fair_share = budget / holders.max(1);
        self.held.scanned_at = self.held();
        let (line, now) = (self.budget_line(), self.now);
        let mut paused = 0;
        self.conns.update_all(|conn| {
            let over = judged(conn) > line && pausable(conn);
            if over && conn.pause(PauseReason::Budget, now) {
                paused += 1;
            }
            Join {
                ready: false,
                dirty: over,
            }
        });
        // A binding is worth a warning, at most one a second (a budget that binds and lets go
        // many times a second would flood the log); the rescans of a long binding are detail.
        let level = match (first, self.budget_log.allow(now)) {
            (true, Some(_)) => log::Level::Warn,
            _ => log::Level::Debug,
        };
        log::log!(
            level,
            "budget reached: {} bytes held ({} queued) by {holders} connections; \
             fair share {} bytes; paused {paused} queueing more",
            self.held(),
            self.held.queued,
            self.held.fair_share
        );
    }

    /// After `id`'s queue shrank: a connection paused by the write side reads again once its
    /// queue is back under the line, even while others keep the budget binding.
    pub(crate) fn budget_relieve(&mut self, id: ConnId) {
        if !self.held.binding {
            return;
        }
        let line = self.budget_line();
        if self
            .conn_ref(id)
            .is_some_and(|c| c.paused().contains(PauseReason::Budget) && judged(c) <= line)
        {
            self.resume(id, PauseReason::Budget);
        }
    }

    /// Whether the budget stops binding: the total fell to three quarters of it.
    pub(crate) fn budget_recovered(&self) -> bool {
        self.held.binding
            && self
                .config
                .queue_budget
                .is_none_or(|b| self.held() <= b / 4 * 3)
    }

    /// The budget no longer binds: every connection it paused, on either side, may read
    /// again. O(connections), once per binding.
    pub(crate) fn unbind_budget(&mut self) {
        self.held.binding = false;
        self.held.fair_share = 0;
        // Every waiter is resumed below: the line is empty (a waiter that still finds no room
        // joins it again), so it never holds more entries than there are connections.
        self.held.read_waiters.clear();
        let now = self.now;
        log::debug!("budget: {} bytes held; reads resume", self.held());
        self.conns.update_all(|conn| {
            let a = conn.resume(PauseReason::Budget, now);
            let b = conn.resume(PauseReason::ReadBudget, now);
            Join {
                ready: (a || b) && conn.has_pending_input(),
                dirty: a || b,
            }
        });
    }

    // ----- the read side -----------------------------------------------------------------

    /// How much an ordinary read asks for: [`READ_CHUNK`], or [`PRESSED_CHUNK`] while the total
    /// is over the budget, so that connections paused with unread requests in their buffers
    /// (the slow readers that made the budget bind) each hold a little, not 64 KiB.
    pub(crate) fn read_chunk(&self) -> usize {
        match self.config.queue_budget {
            Some(budget) if self.held() >= budget => PRESSED_CHUNK,
            _ => READ_CHUNK,
        }
    }

    /// Brings the count of `id`'s read buffer up to date after a read (which may have grown it
    /// by what [`Engine::may_read`] granted).
    pub(crate) fn recharge_read(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.recount_read(&mut self.held.read);
            self.held.peak = self.held.peak.max(self.held());
        }
    }

    /// Asked before every read: may `id` take the read buffer that read needs? Always yes for
    /// an ordinary one; for a larger one, yes if the budget has room, or if the overdraft is
    /// free (or already this connection's). Otherwise `id` waits, paused, in line for the
    /// overdraft.
    pub(crate) fn may_read(&mut self, id: ConnId) -> bool {
        let Some(budget) = self.config.queue_budget else {
            return true;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return true;
        };
        let Some(alloc) = conn.read_growth_needed() else {
            return true;
        };
        let growth = alloc.saturating_sub(conn.read_charged());
        let frame = conn.frames_in();
        if self.held() + growth <= budget || self.held.overdraft == Some((id, frame)) {
            return true;
        }
        // Free, and nobody in line before us: the line is first come, first served, or a
        // peer that sends nothing but large frames would take every turn.
        if self.held.read_waiters.is_empty() && self.overdraft_free() {
            log::debug!("{id}: overdraws the budget by up to {growth} bytes for one frame");
            self.held.overdraft = Some((id, frame));
            return true;
        }
        self.pause(id, PauseReason::ReadBudget);
        self.held.read_waiters.push_back(id);
        false
    }

    /// Whether the overdraft may be granted again: its holder closed, or the frame it was
    /// granted for is out (a grant is for one frame, so waiting connections take turns even
    /// against a peer that sends nothing but large frames) *and* the total is back within the
    /// budget. A frame read out is still held (by its echo, queued for a peer that may never
    /// read it): passing the overdraft on at once would let the total grow by a frame per
    /// waiting peer, where the promise is one.
    fn overdraft_free(&mut self) -> bool {
        if let Some((holder, frame)) = self.held.overdraft {
            let paid_back = self.config.queue_budget.is_none_or(|b| self.held() <= b);
            let done = self
                .conn_ref(holder)
                .is_none_or(|c| !pausable(c) || (c.frames_in() > frame && paid_back));
            if !done {
                return false;
            }
            self.held.overdraft = None;
        }
        true
    }

    /// Once a turn: if the overdraft is free, the first connection waiting for it gets it and
    /// reads again. O(1) but for waiters that closed or were resumed meanwhile, skipped once.
    pub(crate) fn pass_overdraft(&mut self) {
        while !self.held.read_waiters.is_empty() && self.overdraft_free() {
            let Some(id) = self.held.read_waiters.pop_front() else {
                return;
            };
            let Some(conn) = self.conn_ref(id) else {
                continue;
            };
            if !conn.paused().contains(PauseReason::ReadBudget) {
                continue; // resumed meanwhile (the budget let go), or closing
            }
            self.held.overdraft = Some((id, conn.frames_in()));
            self.resume(id, PauseReason::ReadBudget);
        }
    }
}
