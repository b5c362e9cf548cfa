//! The application's end of the chain: sends, the high-water mark, and pausing and resuming
//! reading (the consumer's lever).

use bytes::Bytes;
use serde::Serialize;

use super::Engine;
use super::conns::push_dirty;
use crate::conn::{ConnId, ConnState, PauseReason};
use crate::frame::FrameError;
use crate::handler::CloseReason;
use crate::reply::ErrorReply;
use crate::timer::Due;
use crate::write_queue::{Pressure, SendError, WriteQueue};

impl Engine {
    /// Encodes `msg` into `id`'s write queue.
    pub(crate) fn send_json<T: Serialize + ?Sized>(
        &mut self,
        id: ConnId,
        msg: &T,
    ) -> Result<Pressure, SendError> {
        let max = self.config.max_frame;
        self.push(id, |q| q.push_json(msg, max))
    }

    /// Queues `payload` (already JSON text) on `id`.
    #[inline]
    pub(crate) fn send_payload(
        &mut self,
        id: ConnId,
        payload: Bytes,
    ) -> Result<Pressure, SendError> {
        let max = self.config.max_frame;
        self.push(id, |q| q.push_payload(payload, max))
    }

    /// Queues a frame and applies the water marks: this is where the application's write
    /// queue grows, and where, past the high-water mark, the connection stops reading so a
    /// peer that does not read its replies cannot make us buffer them without bound.
    #[inline]
    fn push(
        &mut self,
        id: ConnId,
        op: impl FnOnce(&mut WriteQueue) -> Result<Pressure, SendError>,
    ) -> Result<Pressure, SendError> {
        let now = self.now;
        let Some((conn, dirty)) = self.conns.get_mut_and_dirty(id) else {
            return Err(SendError::Closed);
        };
        if !conn.accepts_sends() {
            return Err(SendError::Closed);
        }
        let before = conn.queue().len();
        let crossings = conn.queue().figures().high_water_crossings;
        let pressure = op(conn.queue_mut())?;
        let crossed = conn.queue().figures().high_water_crossings > crossings;
        let has_sources = conn.linked().is_some_and(|l| !l.sources.is_empty());
        self.held.queued += conn.queue().len() - before;
        if before == 0 {
            // The queue starts waiting for the peer now; see `check_write_stall`.
            conn.restart_write_clock(now);
            let write_timeout = conn.write_timeout();
            let timing = conn.timing_mut();
            if let Some(timeout) = write_timeout {
                if !timing.stall_armed {
                    timing.stall_armed = true;
                    self.timers
                        .push_after(now, timeout / 2, Due::WriteStall(id));
                }
            }
        }
        if crossed {
            log::debug!(
                "{id}: queue reached high-water ({} bytes, mark {}): the producer is told to stop",
                conn.queue().len(),
                conn.queue().marks().high
            );
        }
        if pressure.is_high() && conn.pauses_above_high_water() && conn.state() == ConnState::Open {
            conn.pause(PauseReason::WriteQueue, now);
        }
        push_dirty(dirty, conn);
        if crossed && has_sources {
            self.sink_high(id); // relays: the connections feeding this one stop too
        }
        self.held.peak_queued = self.held.peak_queued.max(self.held.queued);
        self.apply_budget(id);
        Ok(pressure)
    }

    /// A framing error is fatal for the stream: reply if possible, then close.
    pub(crate) fn frame_error(&mut self, id: ConnId, error: FrameError) {
        log::info!("{id}: {error}");
        let reason = match error {
            FrameError::TooLarge { limit, got } => {
                if let Err(e) = self.send_json(id, &ErrorReply::frame_too_large(limit, got)) {
                    log::debug!("{id}: frame_too_large reply not queued: {e}");
                }
                CloseReason::FrameTooLarge { limit, got }
            }
            FrameError::Truncated { missing } => CloseReason::Truncated { missing },
        };
        self.close(id, reason);
    }

    /// Stops reading `id` for `reason`. With READABLE interest gone, unread bytes stay in the
    /// kernel's receive buffer, which fills, which closes the TCP window: the peer's sends
    /// back up into *its* write queue. That is how a slow consumer pushes back.
    pub(crate) fn pause(&mut self, id: ConnId, reason: PauseReason) -> bool {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        let changed = conn.pause(reason, now);
        self.conns.mark_dirty(id);
        changed
    }

    /// Removes a pause reason; if none is left, reading resumes. Bytes that arrived while
    /// paused produced no event (the readiness edge came and went, or never came because we
    /// did not ask), so the connection goes on the ready list to be read without one.
    pub(crate) fn resume(&mut self, id: ConnId, reason: PauseReason) -> bool {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        let resumed = conn.resume(reason, now);
        if resumed && conn.has_pending_input() {
            self.conns.mark_ready(id);
        }
        self.conns.mark_dirty(id);
        resumed
    }
}
