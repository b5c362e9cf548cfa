//! How connections end: a graceful close (flush, FIN, linger), a half-close, the peer's end
//! of stream, and teardown.

use super::{Engine, Notice};
use crate::conn::{ConnId, ConnState};
use crate::handler::CloseReason;
use crate::timer::Due;

impl Engine {
    /// Graceful close: stop reading, deliver everything queued, send FIN, linger, close.
    /// The first reason given is the one reported.
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match conn.state() {
            ConnState::Open => {}
            ConnState::Connecting => return self.teardown(id, reason),
            ConnState::Flushing | ConnState::Lingering | ConnState::Closed => return,
        }
        // After the peer's half-close, closing ends a conversation the peer ended.
        let reason = match reason {
            CloseReason::Closed if conn.peer_eof() => CloseReason::PeerClosed,
            other => other,
        };
        if conn.work_pending() > 0 {
            // Replies are still being computed elsewhere (`Workers`); a closing connection
            // refuses sends, so they would be lost. Stop delivering and reading now, and
            // close when the last of them is produced (`Engine::work_finished`).
            conn.close_after_work(reason);
            self.conns.mark_dirty(id);
            return;
        }
        let buf = conn.begin_flushing(reason);
        conn.recount_read(&mut self.held.read);
        self.pool.put(buf);
        self.conns.mark_dirty(id);
    }

    /// Half-close: send FIN once everything queued is delivered; keep reading.
    pub(crate) fn close_write(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.close_write();
            self.conns.mark_dirty(id);
        }
    }

    /// Called when a graceful close has delivered everything: FIN, then linger (or close now).
    pub(crate) fn finish_close(&mut self, id: ConnId) {
        let (now, linger) = (self.now, self.config.linger);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        // If the peer already finished sending there is nothing unread to turn our close
        // into a RST, and if lingering is off there is nothing to wait for.
        if conn.peer_eof() || linger.is_zero() {
            let reason = conn.take_close_reason();
            return self.teardown(id, reason);
        }
        if let Err(e) = conn.shutdown_write() {
            log::debug!("{id}: shutdown(Write) failed: {e}");
            let reason = conn.take_close_reason();
            return self.teardown(id, reason);
        }
        conn.begin_lingering();
        let readable = conn.readable();
        self.count_open(false);
        self.lingering += 1;
        self.timers.push_after(now, linger, Due::Linger(id));
        if readable {
            self.conns.mark_ready(id);
        }
        self.conns.mark_dirty(id);
    }

    /// A lingering connection is done (the peer closed, its read failed, or the linger time
    /// is over): close it for the reason its graceful close was started for.
    pub(crate) fn end_linger(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.is_lingering() {
            let reason = conn.take_close_reason();
            self.teardown(id, reason);
        }
    }

    /// Immediate close: deregister, discard the queue, report `reason`. The slot is freed at
    /// the end of the turn.
    pub(crate) fn teardown(&mut self, id: ConnId, reason: CloseReason) {
        self.forget_links(id);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        self.held.queued -= conn.queue_mut().clear();
        if conn.registered().is_some() {
            // Errors here mean the fd is already gone from the poller; nothing to undo.
            let _ = self.poll.registry().deregister(conn.transport_mut());
        }
        match conn.closed(&reason) {
            ConnState::Lingering => self.lingering -= 1,
            ConnState::Closed => return,
            _ => {
                self.count_open(false);
                // `count_open` needed `self`: find the connection again.
            }
        }
        let Some(conn) = self.conns.get_even_closed_mut(id) else {
            return;
        };
        self.held.work -= conn.forget_work();
        let buf = conn.take_read_buf();
        conn.recount_read(&mut self.held.read);
        let reported = conn.reported();
        self.pool.put(buf);
        // Its idle, stall and linger entries would otherwise wait in the heap until due.
        self.timers.cancel_conn(id);
        self.counters.closed += 1;
        if reported {
            self.notices.push_back(Notice::Closed(id, reason));
        }
        self.conns.bury(id.index());
    }

    /// The peer shut down its sending side (a read returned 0).
    pub(crate) fn peer_eof(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.is_lingering() {
            return self.end_linger(id);
        }
        conn.peer_finished();
        let truncated = conn.truncation();
        self.conns.mark_dirty(id);
        if let Some(e) = truncated {
            return self.frame_error(id, e);
        }
        self.notices.push_back(Notice::PeerShutdown(id));
    }
}
