//! The clocks that protect the reactor from peers that stop: idle (no frame completes),
//! write stall (replies do not drain), linger (a closing peer that never closes), and the
//! application's own timers.
//!
//! Each check runs when its heap entry comes due, never by scanning connections. A connection
//! that made progress since the entry was pushed has a later deadline; the check pushes one
//! entry for that deadline and returns. See `timer.rs` for why that is O(log n) per timeout
//! period, not per frame.

use crate::conn::{ConnId, State};
use crate::engine::{Engine, Notice, RunState, conn_mut};
use crate::handler::CloseReason;
use crate::reply::ErrorReply;
use crate::timer::Due;

impl Engine {
    /// Fires every timer due by `self.now`.
    pub(crate) fn fire_timers(&mut self) {
        while let Some(due) = self.timers.pop_due(self.now) {
            match due {
                Due::App(id, data) => self.notices.push_back(Notice::Timer(id, data)),
                Due::Idle(id) => self.check_idle(id),
                Due::WriteStall(id) => self.check_write_stall(id),
                Due::Linger(id) => self.end_linger(id),
                Due::ResumeAccept(key) => self.resume_accept(key),
            }
        }
        if let RunState::ShuttingDown {
            deadline: Some(deadline),
        } = self.run
        {
            if self.now >= deadline {
                log::warn!(
                    "shutdown grace period over: dropping {} connections",
                    self.open + self.lingering
                );
                self.stop_now();
            }
        }
    }

    /// Slowloris defence: progress means completed frames. A peer that sends one header
    /// byte, or one byte a second forever, completes nothing and is closed on time.
    fn check_idle(&mut self, id: ConnId) {
        let now = self.now;
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        if conn.state() != State::Open || conn.peer_eof {
            return; // no longer reading: the timer ends here
        }
        if !conn.paused().is_empty() {
            // We are the ones not reading; the peer cannot make progress. Look again later.
            self.timers.push_after(now, idle, Due::Idle(id));
            return;
        }
        // A deadline too far away to represent never comes.
        let Some(deadline) = conn.last_frame_at.checked_add(idle) else {
            return;
        };
        if deadline > now {
            self.timers.push(deadline, Due::Idle(id));
            return;
        }
        log::info!("{id}: idle timeout ({idle:?} without a complete frame)");
        // Best effort: the peer may not be reading either.
        let _ = self.send_json(id, &ErrorReply::idle_timeout());
        self.close(id, CloseReason::IdleTimeout);
    }

    /// Slow-reader defence: a queue that neither empties nor drains to the low-water mark
    /// within the write timeout belongs to a peer that is not reading. Its bytes are freed.
    fn check_write_stall(&mut self, id: ConnId) {
        let now = self.now;
        let Some(timeout) = self.config.write_timeout else {
            return;
        };
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        match conn.stall_since {
            None => conn.stall_armed = false,
            // Not yet due, or never (too far away to represent: then nothing is pushed).
            Some(since) if since.checked_add(timeout).is_none_or(|d| d > now) => {
                self.timers.push_after(since, timeout, Due::WriteStall(id));
            }
            Some(_) => {
                let discarded = conn.queue.len();
                log::warn!(
                    "{id}: write timeout: the peer read nothing useful for {timeout:?}; \
                     closing and freeing {discarded} queued bytes"
                );
                self.teardown(id, CloseReason::WriteTimeout { discarded });
            }
        }
    }

    /// The peer did not close within the linger time after our FIN: close anyway.
    fn end_linger(&mut self, id: ConnId) {
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        if conn.state() == State::Lingering {
            let reason = conn.close_reason.take().unwrap_or(CloseReason::Closed);
            self.teardown(id, reason);
        }
    }
}
