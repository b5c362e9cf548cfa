//! Per-connection settings (`conn/settings.rs`): changing them, and the timers that follow.

use super::Engine;
use crate::config::ConfigError;
use crate::conn::{ConnId, ConnSettings, ConnState};
use crate::timer::Due;

impl Engine {
    /// `id`'s settings, or `None` if it is closed.
    pub(crate) fn settings(&self, id: ConnId) -> Option<ConnSettings> {
        self.conn_ref(id).map(|c| c.settings())
    }

    /// Gives `id` settings of its own. `Ok(false)` if it is closed (or closing: a closing
    /// connection keeps the settings it closed with). The queue's pressure is judged again
    /// against the new marks at once, with what that implies (a pause, a drain, links), and
    /// the connection's timers are re-armed for the new timeouts.
    pub(crate) fn set_settings(
        &mut self,
        id: ConnId,
        settings: ConnSettings,
    ) -> Result<bool, ConfigError> {
        settings.validate()?;
        let now = self.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return Ok(false);
        };
        let state = conn.state();
        if !matches!(state, ConnState::Open | ConnState::Connecting) {
            return Ok(false);
        }
        let crossings = conn.queue().figures().high_water_crossings;
        conn.set_settings(&settings);
        let crossed = conn.queue().figures().high_water_crossings > crossings;
        // The queue is judged again by the rules of its own settings.
        if conn.queue().pressure().is_high()
            && settings.pause_reads_above_high_water
            && state == ConnState::Open
        {
            conn.pause(crate::PauseReason::WriteQueue, now);
        }
        let stalled = conn.timing().stall_since.is_some();
        conn.timing_mut().stall_armed = settings.write_timeout.is_some() && stalled;
        // One chain of each timer: drop the old ones, arm for the new values.
        self.timers.cancel_conn(id);
        // Each check runs at once (next turn) and schedules itself from the connection's last
        // progress: a shortened timeout whose deadline has come acts then, not up to half a
        // timeout late, and one still ahead warns and closes on time.
        if let (ConnState::Open, Some(_)) = (state, settings.idle_timeout) {
            self.timers.push(now, Due::Idle(id));
        }
        if let (true, Some(_)) = (stalled, settings.write_timeout) {
            self.timers.push(now, Due::WriteStall(id));
        }
        // The connect deadline is the config's, not the connection's settings', and its entry
        // is not among those `cancel_conn` dropped (a connect's entry is checked against the
        // connection's state when it comes up): it stands as it was.
        if crossed {
            self.sink_high(id);
        }
        self.conns.mark_dirty(id); // a drain, if the new marks made one, is taken by the flush
        Ok(true)
    }
}
