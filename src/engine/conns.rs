//! Where connections and listeners live: a slab, and the lists that say which connections the
//! rest of this turn (or the next) must come back to.
//!
//! - **ready**: connections with input to handle and no event coming for it (out of read
//!   budget, or resumed with bytes already waiting): read in step 3 of a turn.
//! - **dirty**: connections whose queue, pause state or life changed: flushed and re-synced
//!   with the poller before the reactor sleeps (step 6).
//! - **carried**: connections that spent their write budget with the socket still writable:
//!   dirty again at the start of the next turn, whose poll does not sleep.
//! - **dead**: slots to free at the end of the turn, never earlier, so no event of this turn's
//!   batch reaches a slot's next tenant. Lists hold [`ConnId`]s, checked by generation, so an
//!   entry for a connection that closed meanwhile is skipped, not misdelivered.
//!
//! Each list holds a connection at most once (`Connection::listed`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mio::net::TcpListener;
use slab::Slab;

use crate::conn::{ConnId, ConnState, Connection};

/// A listening socket.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    /// Shutting down: deregistered, freed at the end of the turn.
    pub(crate) closed: bool,
    /// Deregistered after an accept failure; a timer re-registers it.
    pub(crate) backing_off: bool,
}

/// What occupies a slab slot.
///
/// Connections are stored inline: almost every slot holds one, so boxing them to shrink the
/// rare listener slot would add an allocation and a pointer chase per connection for nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Slot {
    Listener(Listener),
    Conn(Connection),
}

/// Which lists a connection should join, as returned by a closure passed to
/// [`Conns::update_all`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Join {
    pub(crate) ready: bool,
    pub(crate) dirty: bool,
}

/// The slab and its lists. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Conns {
    slots: Slab<Slot>,
    ready: VecDeque<ConnId>,
    dirty: Vec<ConnId>,
    carried: Vec<ConnId>,
    dead: Vec<usize>,
    generation: u32,
    /// In a group: the generation counter every reactor of the group draws from, so no two
    /// connections of the group ever carry the same generation.
    group_generation: Option<Arc<AtomicU32>>,
}

impl Conns {
    // ----- finding ---------------------------------------------------------------------

    /// A live connection (not closed), by id, checking the generation.
    pub(crate) fn get(&self, id: ConnId) -> Option<&Connection> {
        self.get_even_closed(id)
            .filter(|c| c.state() != ConnState::Closed)
    }

    /// Like [`Conns::get_mut`], with the dirty list beside it: a sender marks the connection
    /// dirty ([`push_dirty`]) without a second lookup.
    pub(crate) fn get_mut_and_dirty(
        &mut self,
        id: ConnId,
    ) -> Option<(&mut Connection, &mut Vec<ConnId>)> {
        match self.slots.get_mut(id.index()) {
            Some(Slot::Conn(c)) if c.id() == id && c.state() != ConnState::Closed => {
                Some((c, &mut self.dirty))
            }
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Connection> {
        match self.slots.get_mut(id.index()) {
            Some(Slot::Conn(c)) if c.id() == id && c.state() != ConnState::Closed => Some(c),
            _ => None,
        }
    }

    /// Like [`Conns::get`], but also finds a connection closed this turn (its slot is freed at
    /// the end of the turn), so `on_close` can still read its last figures.
    pub(crate) fn get_even_closed(&self, id: ConnId) -> Option<&Connection> {
        match self.slots.get(id.index()) {
            Some(Slot::Conn(c)) if c.id() == id => Some(c),
            _ => None,
        }
    }

    pub(crate) fn get_even_closed_mut(&mut self, id: ConnId) -> Option<&mut Connection> {
        match self.slots.get_mut(id.index()) {
            Some(Slot::Conn(c)) if c.id() == id => Some(c),
            _ => None,
        }
    }

    /// Whatever occupies slot `key` (a poller token), for routing an event.
    pub(crate) fn slot(&self, key: usize) -> Option<&Slot> {
        self.slots.get(key)
    }

    pub(crate) fn listener_mut(&mut self, key: usize) -> Option<&mut Listener> {
        match self.slots.get_mut(key) {
            Some(Slot::Listener(l)) => Some(l),
            _ => None,
        }
    }

    /// Every connection, live or closed this turn.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Connection> {
        self.slots.iter().filter_map(|(_, s)| match s {
            Slot::Conn(c) => Some(c),
            Slot::Listener(_) => None,
        })
    }

    /// The ids of the live connections that `pick` selects (for operations that close some of
    /// them, which cannot run while the slab is being walked).
    pub(crate) fn ids_where(&self, mut pick: impl FnMut(&Connection) -> bool) -> Vec<ConnId> {
        self.iter()
            .filter(|c| c.state() != ConnState::Closed && pick(c))
            .map(Connection::id)
            .collect()
    }

    /// Walks every connection with `update`, and puts each on the lists it asks for.
    pub(crate) fn update_all(&mut self, mut update: impl FnMut(&mut Connection) -> Join) {
        for (_, slot) in self.slots.iter_mut() {
            let Slot::Conn(conn) = slot else { continue };
            let join = update(conn);
            if join.ready {
                push_ready(&mut self.ready, conn);
            }
            if join.dirty {
                push_dirty(&mut self.dirty, conn);
            }
        }
    }

    /// The keys of the listeners still open.
    pub(crate) fn open_listeners(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter_map(|(key, slot)| matches!(slot, Slot::Listener(l) if !l.closed).then_some(key))
            .collect()
    }

    // ----- adding ----------------------------------------------------------------------

    /// Inserts a connection built for the id it gets; it starts dirty (to be registered).
    pub(crate) fn insert(&mut self, build: impl FnOnce(ConnId) -> Connection) -> ConnId {
        let generation = self.next_generation();
        let entry = self.slots.vacant_entry();
        let id = ConnId::new(entry.key(), generation);
        entry.insert(Slot::Conn(build(id)));
        self.mark_dirty(id);
        id
    }

    /// Inserts a listener built for its slot key (its poller token).
    pub(crate) fn insert_listener<E>(
        &mut self,
        build: impl FnOnce(usize) -> Result<Listener, E>,
    ) -> Result<usize, E> {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        entry.insert(Slot::Listener(build(key)?));
        Ok(key)
    }

    /// Draws generations from a counter shared by the whole group (see
    /// `Engine::share_generations`).
    pub(crate) fn share_generations(&mut self, counter: Arc<AtomicU32>) {
        self.group_generation = Some(counter);
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = match &self.group_generation {
            Some(shared) => shared.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
            None => self.generation.wrapping_add(1),
        };
        self.generation
    }

    // ----- the lists -------------------------------------------------------------------

    /// Flush and re-sync `id` before the reactor sleeps.
    pub(crate) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(Slot::Conn(conn)) = self.slots.get_mut(id.index()) {
            if conn.id() == id && conn.state() != ConnState::Closed {
                push_dirty(&mut self.dirty, conn);
            }
        }
    }

    /// Read `id` again this turn or the next, without an event.
    pub(crate) fn mark_ready(&mut self, id: ConnId) {
        if let Some(Slot::Conn(conn)) = self.slots.get_mut(id.index()) {
            if conn.id() == id && conn.state() != ConnState::Closed {
                push_ready(&mut self.ready, conn);
            }
        }
    }

    /// The next dirty connection still alive, taken off the list.
    pub(crate) fn pop_dirty(&mut self) -> Option<ConnId> {
        while let Some(id) = self.dirty.pop() {
            if let Some(conn) = self.get_mut(id) {
                conn.listed().dirty = false;
                return Some(id);
            }
        }
        None
    }

    /// How many connections are on the ready list now: a turn visits each once.
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The next ready connection still alive, taken off the list.
    pub(crate) fn pop_ready(&mut self) -> Option<Option<ConnId>> {
        let id = self.ready.pop_front()?;
        Some(self.get_mut(id).map(|conn| {
            conn.listed().ready = false;
            id
        }))
    }

    /// `id` spent its write budget with the socket writable: dirty again next turn.
    pub(crate) fn carry(&mut self, id: ConnId) {
        self.carried.push(id);
    }

    /// Start of a turn: the carried connections are dirty again, with a new budget.
    pub(crate) fn take_carried(&mut self) {
        while let Some(id) = self.carried.pop() {
            self.mark_dirty(id);
        }
    }

    /// Whether the next poll must not sleep: connections wait on the ready or carried list.
    pub(crate) fn has_waiting_work(&self) -> bool {
        !self.ready.is_empty() || !self.carried.is_empty()
    }

    // ----- removing --------------------------------------------------------------------

    /// Frees slot `key` at the end of this turn (see [`Conns::reap`]).
    pub(crate) fn bury(&mut self, key: usize) {
        self.dead.push(key);
    }

    /// Frees the slots of connections and listeners closed this turn. Runs once per turn,
    /// after every event of the batch was handled.
    pub(crate) fn reap(&mut self) {
        for key in self.dead.drain(..) {
            let done = match self.slots.get(key) {
                Some(Slot::Conn(c)) => c.state() == ConnState::Closed,
                Some(Slot::Listener(l)) => l.closed,
                None => false,
            };
            if done {
                self.slots.remove(key);
            }
        }
    }

    /// Marks every open listener closed (and buried); `deregister` takes each out of the poller.
    pub(crate) fn close_listeners(&mut self, mut deregister: impl FnMut(&mut TcpListener)) {
        for (key, slot) in self.slots.iter_mut() {
            if let Slot::Listener(l) = slot {
                if !l.closed {
                    deregister(&mut l.socket);
                    l.closed = true;
                    self.dead.push(key);
                }
            }
        }
    }
}

/// Puts `conn` on the dirty list, once (also for the list [`Conns::get_mut_and_dirty`] lends).
#[inline]
pub(crate) fn push_dirty(dirty: &mut Vec<ConnId>, conn: &mut Connection) {
    if !conn.listed().dirty {
        conn.listed().dirty = true;
        dirty.push(conn.id());
    }
}

fn push_ready(ready: &mut VecDeque<ConnId>, conn: &mut Connection) {
    if !conn.listed().ready {
        conn.listed().ready = true;
        ready.push_back(conn.id());
    }
}
