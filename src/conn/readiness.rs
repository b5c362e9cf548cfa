//! Edge-triggered readiness, remembered.
//!
//! The poller reports a *change* to readable or writable, once. So what the last event said is
//! kept here until a system call proves it stale (`WouldBlock`, or on Linux a short read or
//! write). A connection that stops reading with `readable` still true (paused, or out of this
//! turn's budget) must be revisited without an event, because none will come for bytes that
//! are already there.

use mio::event::Event;

/// What one poller event says about a connection's socket, in the terms the connection needs.
/// Built from a `mio` event ([`Seen::from_event`]), or directly in tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer's FIN (`EPOLLRDHUP`).
    pub(crate) read_closed: bool,
    pub(crate) write_closed: bool,
    pub(crate) error: bool,
}

impl Seen {
    pub(crate) fn from_event(event: &Event) -> Seen {
        Seen {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
        }
    }

    /// An error or a hang-up: whatever the event's other flags, the next read or write meets
    /// it, so the connection is treated as readable and writable and closes instead of
    /// waiting for an event that will not come.
    pub(crate) fn broken(self) -> bool {
        self.error || self.read_closed || self.write_closed
    }
}

/// The readiness a connection remembers between events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Readiness {
    readable: bool,
    writable: bool,
    /// An event reported the peer's FIN or a socket error: reads must go on until they return
    /// 0 or the error, whatever their size, because no further event will say so.
    final_seen: bool,
}

impl Readiness {
    /// A fresh accepted socket has an empty send buffer: writable until proven otherwise. An
    /// outbound one is writable when its connect completes.
    pub(crate) fn new(writable: bool) -> Readiness {
        Readiness {
            writable,
            ..Readiness::default()
        }
    }

    /// Records an event. Every event counts, including one that is neither readable nor
    /// writable: an error or hang-up sets both, so it is met and handled, never spun on.
    pub(crate) fn on_event(&mut self, seen: Seen) {
        if seen.readable || seen.broken() {
            self.readable = true;
        }
        if seen.read_closed || seen.error {
            self.final_seen = true;
        }
        if seen.writable || seen.broken() {
            self.writable = true;
        }
    }

    pub(crate) fn readable(&self) -> bool {
        self.readable
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// Whether a FIN or error was announced: only `WouldBlock` (or the end) proves a read-out.
    pub(crate) fn final_seen(&self) -> bool {
        self.final_seen
    }

    /// The kernel has nothing more to read for now; the next event will say when it has.
    pub(crate) fn read_out(&mut self) {
        self.readable = false;
    }

    /// The kernel's send buffer is full; the next WRITABLE event will say when it has room.
    pub(crate) fn write_blocked(&mut self) {
        self.writable = false;
    }

    /// Assumed readable without an event: to read out what the peer already sent (a graceful
    /// shutdown), where only a read can tell.
    pub(crate) fn assume_readable(&mut self) {
        self.readable = true;
    }

    /// A completed connect: the socket can take bytes.
    pub(crate) fn connected(&mut self) {
        self.writable = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_and_writable_events_are_remembered_until_proven_stale() {
        let mut r = Readiness::new(false);
        r.on_event(Seen {
            readable: true,
            ..Seen::default()
        });
        assert!(r.readable() && !r.writable() && !r.final_seen());
        r.on_event(Seen {
            writable: true,
            ..Seen::default()
        });
        assert!(
            r.readable() && r.writable(),
            "a later event does not erase an earlier one"
        );
        r.read_out();
        r.write_blocked();
        assert!(!r.readable() && !r.writable());
    }

    #[test]
    fn an_error_with_neither_flag_still_makes_the_socket_readable_and_writable() {
        let mut r = Readiness::new(false);
        r.on_event(Seen {
            error: true,
            ..Seen::default()
        });
        assert!(r.readable() && r.writable() && r.final_seen());
    }

    #[test]
    fn a_fin_is_final_and_a_write_hang_up_is_not() {
        let mut r = Readiness::new(false);
        r.on_event(Seen {
            write_closed: true,
            ..Seen::default()
        });
        assert!(r.readable() && r.writable() && !r.final_seen());
        r.on_event(Seen {
            readable: true,
            read_closed: true,
            ..Seen::default()
        });
        assert!(r.final_seen());
    }
}
