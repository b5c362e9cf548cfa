//! Ending well: graceful shutdown, stopping, and SIGINT/SIGTERM as reactor events.
//!
//! A graceful shutdown must not lose anything the reactor already accepted:
//! 1. stop accepting (listeners are closed, so new connects are refused by the kernel);
//! 2. every connection finishes reading what its peer already sent (the frames in its read
//!    buffer and what the kernel holds, until `WouldBlock`), handing it to the application;
//!    that includes connections still waiting in the listen backlog, which are accepted
//!    first;
//! 3. then, once no reply is still being computed for it elsewhere (`Context::work_started`,
//!    which `Workers` calls for every job), it closes gracefully: everything queued is
//!    delivered, FIN, linger;
//! 4. `run()` returns when no connection is left, or when the grace period ends, whichever
//!    comes first; connections still open then are dropped and reported as
//!    [`CloseReason::Shutdown`].
//!
//! Signals arrive through a self-pipe registered with the poller (signal-hook-mio), so the
//! handler runs on the reactor thread like any other event. The first signal starts a
//! graceful shutdown; a second one stops at once.

use std::io;
use std::time::Duration;

use mio::Interest;

use super::{Engine, RunState, SIGNALS};
use crate::conn::{ConnId, ConnState};
use crate::handler::CloseReason;

impl Engine {
    /// Starts a graceful shutdown (see the module docs). Idempotent.
    pub(crate) fn begin_shutdown(&mut self, grace: Duration) {
        if self.run != RunState::Running {
            return;
        }
        // Connections the kernel has already completed are waiting in the listen backlog;
        // their peers may have sent requests. Take them in before closing the door, or
        // closing the listener would reset them. (In a group they are handed out before the
        // shutdown reaches the other reactors: same channel, in order.)
        for key in self.conns.open_listeners() {
            self.accept(key);
        }
        log::info!(
            "shutting down: {} connections finishing (grace {grace:?})",
            self.open
        );
        self.run = RunState::ShuttingDown {
            deadline: self.now.checked_add(grace),
        };
        for peer in &self.peers {
            let _ = peer.shutdown(grace);
        }
        self.close_listeners();
        let ids = self
            .conns
            .ids_where(|c| matches!(c.state(), ConnState::Open | ConnState::Connecting));
        for id in ids {
            if self
                .conn_ref(id)
                .is_some_and(|c| c.state() == ConnState::Connecting)
            {
                self.teardown(id, CloseReason::Shutdown);
                continue;
            }
            self.finish_reading(id);
        }
    }

    /// Asks `id` to read out what its peer already sent, then close (step 2 of the module
    /// docs). The read path closes it once a read finds nothing more; until then it is read
    /// without an event (the ready list), since no event may come for bytes already there. A
    /// connection whose peer already finished sending has nothing left to read: it closes now,
    /// or, if replies are owed, when the last of them is produced.
    pub(crate) fn finish_reading(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if !conn.finish_reading() {
            return self.close(id, CloseReason::Shutdown);
        }
        if conn.paused().is_empty() {
            self.conns.mark_ready(id);
        }
    }

    /// One more reply owed to `id` by work elsewhere (see `Context::work_started`).
    ///
    /// Started while `id`'s message is being delivered, the work holds that message's payload
    /// (a job keeps it alive until it is done), and the budget counts it, as it counts the
    /// queues: a slow pool must not let every connection's next large frame be read in.
    pub(crate) fn work_started(&mut self, id: ConnId) {
        let holds = match self.delivering {
            Some((d, len)) if d == id => len,
            _ => 0,
        };
        if let Some(conn) = self.conns.get_mut(id) {
            conn.work_started(holds);
            self.held.work += holds;
            self.apply_budget(id);
        }
    }

    /// One owed reply produced. A connection that was waiting only for its work (a close asked
    /// for meanwhile, or a shutdown that read it out) goes back on the ready list, where the
    /// read path closes it, after the callback that sent the reply has returned.
    pub(crate) fn work_finished(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        self.held.work -= conn.work_finished();
        if conn.work_pending() > 0 {
            return;
        }
        if conn.closing_after_work() || (conn.finishing() && conn.paused().is_empty()) {
            self.conns.mark_ready(id);
        }
    }

    /// Carries out a close that waited for owed replies (`Engine::close`), once none is left.
    /// Returns true if the connection is closing.
    pub(crate) fn close_if_work_done(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        if conn.work_pending() > 0 {
            return conn.closing_after_work();
        }
        match conn.take_close_after_work() {
            Some(reason) => {
                self.close(id, reason);
                true
            }
            None => false,
        }
    }

    /// Drops every connection now.
    pub(crate) fn stop_now(&mut self) {
        for id in self.conns.ids_where(|_| true) {
            self.teardown(id, CloseReason::Shutdown);
        }
        self.close_listeners();
        self.run = RunState::Stopped;
        for peer in &self.peers {
            let _ = peer.stop();
        }
    }

    /// Stops accepting: listeners leave the poller now and their slots are freed at the end of
    /// the turn (new connection attempts are then refused by the kernel).
    fn close_listeners(&mut self) {
        let registry = self.poll.registry();
        self.conns.close_listeners(|socket| {
            let _ = registry.deregister(socket);
        });
    }

    /// True when `run()` should return.
    pub(crate) fn is_finished(&self) -> bool {
        match self.run {
            RunState::Running => false,
            RunState::ShuttingDown { .. } => self.open == 0 && self.lingering == 0,
            RunState::Stopped => true,
        }
    }

    /// Registers SIGINT and SIGTERM as reactor events.
    pub(crate) fn watch_signals(&mut self, grace: Duration) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some((signals, grace));
        Ok(())
    }

    /// A signal arrived: first one graceful, second one immediate.
    pub(crate) fn on_signal(&mut self) {
        let Some((signals, grace)) = self.signals.as_mut() else {
            return;
        };
        let grace = *grace;
        let count = signals.pending().count();
        for _ in 0..count {
            if self.run == RunState::Running {
                log::info!("signal received: graceful shutdown");
                self.begin_shutdown(grace);
            } else {
                log::warn!("second signal: stopping now");
                self.stop_now();
            }
        }
    }
}
