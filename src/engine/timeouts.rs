//! The clocks that protect the reactor from peers that stop: idle (no progress either way),
//! write stall (queued bytes not taken), connect (a handshake that never completes), linger
//! (a closing peer that never closes), and the application's own timers.
//!
//! Each check runs when its heap entry comes due, never by scanning connections. A connection
//! that made progress since the entry was pushed has a later deadline; the check pushes one
//! entry for that deadline and returns. See `timer.rs` for why that is O(log n) per timeout
//! period, not per frame.
//!
//! What counts as progress, and why:
//! - **Idle**: a complete frame in, or bytes of ours taken by the peer's kernel. Frames, not
//!   bytes, on the way in, so a slowloris trickle completes nothing; bytes on the way out,
//!   because a subscriber that only receives shows its liveness by taking them.
//! - **Write stall**: bytes taken by the peer while bytes are queued, measured from the last
//!   write that made progress (nginx's `send_timeout`), plus an optional minimum rate over
//!   each timeout period the queue stayed non-empty, for the peer that takes a byte every
//!   20 ms and so is never quite silent.
//!
//! Each clock is first looked at halfway, so the handler can be warned
//! ([`crate::Handler::on_timeout_warning`]) once per quiet period before the close: one more
//! heap entry per quiet period, nothing per frame.

use std::time::{Duration, Instant};

use super::{Engine, Notice, RunState};
use crate::conn::{ConnId, ConnState};
use crate::handler::{CloseReason, TimeoutWarning};
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
                Due::Connect(id) => self.check_connect(id),
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

    /// An outbound connect still in progress at its deadline fails: a listener whose backlog
    /// is full drops our SYNs, and the kernel would retry for about two minutes.
    fn check_connect(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.state() != ConnState::Connecting {
            return;
        }
        let waited = self.now.saturating_duration_since(conn.timing().opened_at);
        log::info!("{id}: connect timed out after {waited:?}");
        let e = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect not completed within {waited:?}"),
        );
        self.teardown(id, CloseReason::ConnectFailed(e));
    }

    /// Slowloris defence for servers, liveness for clients: no complete frame in and no
    /// bytes taken out for the idle timeout of the connection's direction.
    fn check_idle(&mut self, id: ConnId) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(idle) = conn.idle_timeout() else {
            return;
        };
        if now.checked_add(idle).is_none() {
            return; // too long to add to the clock: never (and then no sum below overflows)
        }
        if conn.state() != ConnState::Open || conn.peer_eof() {
            return; // no longer reading: the timer ends here
        }
        if !conn.paused().is_empty() {
            // We are the ones not reading; the peer cannot make progress. Look again later.
            self.timers.push(now + idle / 2, Due::Idle(id));
            return;
        }
        let last = conn.timing().last_frame_at.max(conn.timing().last_write_at);
        let deadline = last + idle;
        if deadline > now {
            let warn_at = last + idle / 2;
            if warn_at > now {
                self.timers.push(warn_at, Due::Idle(id));
                return;
            }
            if conn.timing().idle_warned != Some(last) {
                conn.timing_mut().idle_warned = Some(last);
                let warning = TimeoutWarning::Idle {
                    quiet: now - last,
                    closes_in: deadline - now,
                };
                self.notices.push_back(Notice::Warning(id, warning));
            }
            self.timers.push(deadline, Due::Idle(id));
            return;
        }
        log::info!("{id}: idle timeout ({idle:?} without progress in either direction)");
        // The contract's error frames are a server's replies: a connection we opened sends
        // none, and closes at once. Nothing we could still deliver is worth a linger to a
        // peer that has made no progress, and a client that gives up should know now.
        if conn.outbound() {
            return self.teardown(id, CloseReason::IdleTimeout);
        }
        // Best effort: the peer may not be reading either.
        let _ = self.send_json(id, &ErrorReply::idle_timeout());
        self.close(id, CloseReason::IdleTimeout);
    }

    /// Slow-reader defence: bytes are queued and the peer takes none for the write timeout,
    /// or too few over a whole period (see `judge_write`). Its bytes are freed, and the close
    /// is a reset, so the kernel frees what it held for the peer too.
    fn check_write_stall(&mut self, id: ConnId) {
        let now = self.now;
        let min_rate = self.config.write_min_rate;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(timeout) = conn.write_timeout() else {
            conn.timing_mut().stall_armed = false; // turned off for this connection
            return;
        };
        if now.checked_add(timeout).is_none() {
            return; // too long to add to the clock: never (and then no sum below overflows)
        }
        let Some(since) = conn.timing().stall_since else {
            conn.timing_mut().stall_armed = false; // the queue emptied; `push` arms it again
            return;
        };
        if conn.state() == ConnState::Connecting {
            // Sends queued before the connect completed: no peer can take them yet, and the
            // connect deadline judges this phase. The clock starts when the peer exists
            // (`Connection::restart_write_clock` at the connect).
            conn.restart_write_clock(now);
            self.timers.push(now + timeout / 2, Due::WriteStall(id));
            return;
        }
        let written = conn.queue().figures().bytes_written;
        // Quiet since the peer last took bytes, or since the queue started waiting if it has
        // taken none since: a new rate window is not progress.
        let quiet_since = conn.timing().last_write_at.max(since);
        let window = conn.timing().rate_since;
        let verdict = judge_write(
            now,
            window,
            quiet_since,
            written - conn.timing().stall_mark,
            timeout,
            min_rate,
        );
        let next = match verdict {
            WriteVerdict::Wait => window.min(quiet_since) + timeout,
            WriteVerdict::NewWindow => {
                conn.timing_mut().rate_since = now;
                conn.timing_mut().stall_mark = written;
                now + timeout
            }
            WriteVerdict::Close { taken } => {
                let discarded = conn.queue().len();
                match taken {
                    0 => log::warn!(
                        "{id}: write timeout: the peer took nothing for {timeout:?}; \
                         resetting and freeing {discarded} queued bytes"
                    ),
                    n => log::warn!(
                        "{id}: write timeout: the peer took {n} bytes in {:?}, below the \
                         minimum rate of {} B/s; resetting and freeing {discarded} queued bytes",
                        now - window,
                        min_rate.unwrap_or(0)
                    ),
                }
                conn.reset_on_close();
                return self.teardown(id, CloseReason::WriteTimeout { discarded });
            }
        };
        // Look again at the earlier of the next deadline and the halfway warning point.
        let warn_at = quiet_since + timeout / 2;
        let deadline = quiet_since + timeout;
        if warn_at > now {
            self.timers.push(warn_at.min(next), Due::WriteStall(id));
            return;
        }
        if conn.timing().stall_warned != Some(quiet_since) {
            conn.timing_mut().stall_warned = Some(quiet_since);
            let warning = TimeoutWarning::Write {
                queued: conn.queue().len(),
                quiet: now - quiet_since,
                closes_in: deadline.saturating_duration_since(now),
            };
            self.notices.push_back(Notice::Warning(id, warning));
        }
        self.timers.push(next.min(deadline), Due::WriteStall(id));
    }
}

/// What the write-stall check decides.
#[derive(Debug, PartialEq, Eq)]
enum WriteVerdict {
    /// Nothing is due yet.
    Wait,
    /// A full period passed with enough progress: measure the next one from now.
    NewWindow,
    /// Close: `taken` bytes in the current window (0: no progress at all).
    Close { taken: u64 },
}

/// The write-stall rule, apart from the engine so it can be tested with made-up clocks.
///
/// `since` is when the current window started (the queue has held bytes ever since),
/// `quiet_since` when the peer last took bytes (or `since`, if later), `taken` the bytes it
/// took in the window.
fn judge_write(
    now: Instant,
    since: Instant,
    quiet_since: Instant,
    taken: u64,
    timeout: Duration,
    min_rate: Option<u64>,
) -> WriteVerdict {
    if now >= quiet_since + timeout {
        return WriteVerdict::Close { taken: 0 };
    }
    if now < since + timeout {
        return WriteVerdict::Wait;
    }
    let elapsed = now - since;
    let needed = min_rate.map_or(0.0, |rate| rate as f64 * elapsed.as_secs_f64());
    if (taken as f64) < needed {
        return WriteVerdict::Close { taken };
    }
    WriteVerdict::NewWindow
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn no_bytes_taken_for_the_timeout_closes() {
        let t0 = Instant::now();
        let v = judge_write(t0 + T, t0, t0, 0, T, None);
        assert_eq!(v, WriteVerdict::Close { taken: 0 });
    }

    #[test]
    fn a_steady_reader_is_measured_from_its_last_progress_not_the_queue_age() {
        let t0 = Instant::now();
        // Bytes queued for 40 s, but the peer took some a second ago.
        let v = judge_write(
            t0 + T + Duration::from_secs(10),
            t0,
            t0 + T + Duration::from_secs(9),
            1_000_000,
            T,
            Some(512),
        );
        assert_eq!(v, WriteVerdict::NewWindow);
        let v = judge_write(
            t0 + Duration::from_secs(10),
            t0,
            t0 + Duration::from_secs(9),
            10,
            T,
            Some(512),
        );
        assert_eq!(v, WriteVerdict::Wait);
    }

    #[test]
    fn a_trickle_below_the_minimum_rate_closes_at_the_end_of_the_period() {
        let t0 = Instant::now();
        // A byte every 20 ms for 30 s: 1,500 bytes, against 512 B/s x 30 s = 15,360.
        let recent = t0 + T - Duration::from_millis(20);
        let v = judge_write(t0 + T, t0, recent, 1500, T, Some(512));
        assert_eq!(v, WriteVerdict::Close { taken: 1500 });
        // Without a minimum rate it is progress.
        let v = judge_write(t0 + T, t0, recent, 1500, T, None);
        assert_eq!(v, WriteVerdict::NewWindow);
    }
}
