//! Connection tracking: owns the connection table, its limits and eviction, each connection's client
//! and server roles, and the in-order delivery of each direction's bytes (TCP sequence numbers,
//! retransmissions and duplicated frames dropped, a bounded out-of-order buffer, holes reported as
//! [`StreamEvent::Gap`] so nothing above ever parses across a hole). It knows nothing of TDS: the layer
//! above plugs in through [`Session`].

mod flow;
mod index;
mod slab;
#[cfg(test)]
mod tests;

use crate::capture::Timestamp;
use crate::config::Limits;
use crate::decode::Segment;
use flow::{
    Conn, Flow, Key, OooLimits, CLOSE_ONLY, IN_CLOSE_LIST, ISN_KNOWN, NIL, ROLES_FROM_SYN,
    SYNACK_SEEN, TWIN,
};
use index::{Index, MAX_ENTRIES};
use slab::Slab;
use std::net::SocketAddr;

/// Which end of a connection sent something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// What is known of a connection's identity.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Roles come from the SYN (true) or were guessed from the server ports (joined mid-stream).
    pub roles_from_syn: bool,
}

/// What conntrack tells the layer above, in order, for one connection.
#[derive(Debug, Clone, Copy)]
pub enum StreamEvent<'a> {
    /// The client's SYN (the first one; retransmitted SYNs are not repeated).
    Syn,
    /// The server's SYN+ACK (the first one).
    SynAck,
    /// Bytes from `side`, in sequence order, each byte delivered once.
    Data { side: Side, bytes: &'a [u8] },
    /// `len` bytes from `side` that will never be delivered (lost, not captured, buffer limit).
    Gap { side: Side, len: u64 },
    /// The first FIN from `side`, after all of that side's bytes before it.
    Fin { side: Side },
    /// A RST from `side` (the first one), with the IP TTL it carried.
    Rst { side: Side, ttl: u8 },
}

/// What the layer above still needs from a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Keep delivering bytes (the handshake is running).
    Payload,
    /// Only FIN and RST matter from now on: drop payload and its buffers, and use the long idle
    /// timeout. A kernel-filtered capture source can be told the same.
    CloseOnly,
}

/// Why a connection left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// Both sides sent FIN, or one sent RST.
    Closed,
    /// No packet for the idle timeout of its phase.
    IdleTimeout,
    /// Pushed out to make room: the table was full.
    EvictedCapacity,
    /// Pushed out to make room: buffered bytes went over the total cap.
    EvictedMemory,
    /// A new SYN with another initial sequence number reused the 4-tuple.
    Reused,
    /// The input ended with the connection still open.
    EndOfInput,
}

/// The per-connection state of the layers above conntrack.
pub trait Session {
    /// State shared by all sessions of a table (caches, interners), lent to each call. The table
    /// owns it: [`ConnTable::shared`].
    type Shared;
    /// One event of this connection, in order. Returns what the session still needs.
    fn on_event(
        &mut self,
        shared: &mut Self::Shared,
        ts: Timestamp,
        info: &ConnInfo,
        event: StreamEvent<'_>,
    ) -> Interest;
    /// Bytes the session holds in reassembly buffers (counted against the total cap).
    fn buffered_bytes(&self) -> usize;
}

/// A connection that left the table, with the session that tracked it.
#[derive(Debug)]
pub struct Ended<S> {
    pub info: ConnInfo,
    pub session: S,
    pub cause: EndCause,
    pub at: Timestamp,
    /// The connection was another one's twin (the same TCP connection under other addresses):
    /// its session was muted at the SYN-ACK and its verdict belongs to the other one.
    pub twin: bool,
}

/// Two connections whose (client ISN, server ISN) pair is equal and whose first packets are at
/// most this far apart are one connection seen twice under other addresses (NAT).
pub const TWIN_WINDOW_NS: u64 = 1_000_000_000;

/// How long a connection's ISN pair stays on hand after its SYN-ACK to be matched by a twin.
const TWIN_HORIZON_NS: u64 = 2_000_000_000;

/// Counters, all monotonic except the gauges marked so.
#[derive(Debug, Clone, Default)]
pub struct ConntrackStats {
    /// Segments handed to [`ConnTable::process`].
    pub segments: u64,
    /// Segments on no configured port.
    pub not_tracked: u64,
    /// FIN/RST/ACK-only segments of flows not in the table (after a close, or joined mid-stream).
    pub stray: u64,
    /// The same frame captured twice (several interfaces, `lo`): dropped. A segment is a
    /// duplicate when it matches the previous segment of its direction in IP id, seq, ack, flags
    /// and length; the copy of a segment that closed its connection finds no connection and is
    /// counted `stray` instead. IPv6 has no IP id, so there an identical retransmission counts here.
    pub duplicates: u64,
    /// Segments whose bytes were all delivered (or buffered) already, and repeated SYN, SYN-ACK or
    /// FIN.
    pub retransmissions: u64,
    /// Segments that arrived ahead of a hole and were buffered.
    pub out_of_order: u64,
    /// Holes declared lost, and the bytes in them.
    pub gaps: u64,
    pub gap_bytes: u64,
    pub connections_created: u64,
    pub ended_closed: u64,
    pub ended_idle: u64,
    pub evicted_capacity: u64,
    pub evicted_memory: u64,
    pub ended_reused: u64,
    /// Gauge: connections in the table.
    pub connections_open: u64,
    /// Gauge: bytes buffered out of order plus the sessions' own buffers.
    pub buffered_bytes: u64,
    /// Segments (or FINs) too far from the next expected byte to belong to the stream (more than
    /// 1 GiB ahead, or longer than that): dropped.
    pub out_of_window: u64,
    /// Connections recognised as another's twin (same ISN pair under other addresses): muted.
    pub twins: u64,
}

/// One slab slot: a connection and its session (`None` for a free slot).
struct Slot<S> {
    conn: Conn,
    session: Option<S>,
}

/// An intrusive doubly linked LRU list over the slab, oldest at `head`.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// LRU lists are ordered by last packet to within 2^24 ns (16.8 ms): a connection is moved to its
/// list's tail at most once per bucket of that size. Each connection was last moved in the same
/// bucket as its last packet, so along a list `last_seen` never goes back by more than one bucket:
/// expiry and eviction pick the least recently seen connection to within 16.8 ms.
const LRU_GRANULARITY_SHIFT: u32 = 24;

const PAYLOAD: usize = 0;
const CLOSE: usize = 1;

fn unlink<S>(slab: &mut Slab<Slot<S>>, list: &mut List, idx: u32) {
    let Some(slot) = slab.get_mut(idx as usize) else {
        return;
    };
    let (prev, next) = (slot.conn.prev, slot.conn.next);
    slot.conn.prev = NIL;
    slot.conn.next = NIL;
    match slab.get_mut(prev as usize) {
        Some(p) => p.conn.next = next,
        None => list.head = next,
    }
    match slab.get_mut(next as usize) {
        Some(n) => n.conn.prev = prev,
        None => list.tail = prev,
    }
}

fn push_tail<S>(slab: &mut Slab<Slot<S>>, list: &mut List, idx: u32) {
    let tail = list.tail;
    let Some(slot) = slab.get_mut(idx as usize) else {
        return;
    };
    slot.conn.prev = tail;
    slot.conn.next = NIL;
    match slab.get_mut(tail as usize) {
        Some(t) => t.conn.next = idx,
        None => list.head = idx,
    }
    list.tail = idx;
}

/// The connection table.
///
/// Connections live in a slab (`Vec` of slots, reused through a free list); a hash index maps
/// a flow to its slot with one lookup per segment; two LRU lists (one per [`Interest`], each in
/// last-seen order, see [`LRU_GRANULARITY_SHIFT`]) give the oldest idle connection and expiry in
/// O(1) per connection ended.
pub struct ConnTable<S: Session> {
    slab: Slab<Slot<S>>,
    free_head: u32,
    index: Index,
    hasher: ahash::RandomState,
    /// LRU lists: [`PAYLOAD`] and [`CLOSE`].
    lists: [List; 2],
    /// Bit set of the watched ports.
    ports: Box<[u64; 1024]>,
    len: usize,
    max_connections: usize,
    max_buffered: u64,
    ooo_limits: OooLimits,
    /// Idle timeouts of the two lists, in ns.
    timeouts: [u64; 2],
    /// Latest timestamp seen (never goes back, so each LRU list stays sorted).
    clock: u64,
    stats: ConntrackStats,
    shared: S::Shared,
    /// (client ISN, server ISN) → (slot, first seen) of the connections whose SYN-ACK came in
    /// the last [`TWIN_HORIZON_NS`], to find twins (whose SYN-ACK is the same packet seen
    /// elsewhere, moments later). Entries are checked against their slot when read (a stale one
    /// is ignored); `isn_order` drops them past the horizon, so the map holds a couple of
    /// seconds' worth of new connections, not the whole table.
    isn_pairs: std::collections::HashMap<(u32, u32), (u32, u64), ahash::RandomState>,
    /// (inserted at, pair, slot), oldest first.
    isn_order: std::collections::VecDeque<(u64, (u32, u32), u32)>,
}

impl<S: Session> ConnTable<S> {
    /// A table tracking TCP connections whose server port is one of `ports`, its sessions sharing
    /// `shared`.
    pub fn new(limits: &Limits, ports: &[u16], shared: S::Shared) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for &p in ports {
            if let Some(w) = bits.get_mut(usize::from(p >> 6)) {
                *w |= 1 << (p & 63);
            }
        }
        ConnTable {
            slab: Slab::new(),
            free_head: NIL,
            index: Index::new(),
            hasher: ahash::RandomState::new(),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; 2],
            ports: bits,
            len: 0,
            // The index addresses 2^24 slots; a table of zero could not hold the connection it
            // is creating.
            max_connections: limits.max_connections.clamp(1, MAX_ENTRIES),
            max_buffered: limits.max_buffered_bytes_total as u64,
            ooo_limits: OooLimits {
                bytes: limits.max_ooo_bytes_per_direction,
                segments: limits.max_ooo_segments_per_direction,
            },
            timeouts: [
                limits.handshake_idle_timeout_ns,
                limits.established_idle_timeout_ns,
            ],
            clock: 0,
            stats: ConntrackStats::default(),
            shared,
            isn_pairs: std::collections::HashMap::default(),
            isn_order: std::collections::VecDeque::new(),
        }
    }

    #[inline]
    fn watched(&self, port: u16) -> bool {
        self.ports
            .get(usize::from(port >> 6))
            .is_some_and(|w| w & (1 << (port & 63)) != 0)
    }

    /// Feeds one segment. A new connection gets its session from `new_session`; connections that
    /// end (closed, evicted, reused) are appended to `ended`.
    pub fn process(
        &mut self,
        ts: Timestamp,
        seg: &Segment<'_>,
        new_session: &mut dyn FnMut(&ConnInfo) -> S,
        ended: &mut Vec<Ended<S>>,
    ) {
        self.stats.segments += 1;
        let (sport, dport) = (seg.src.port(), seg.dst.port());
        let (src_watched, dst_watched) = (self.watched(sport), self.watched(dport));
        if !src_watched && !dst_watched {
            self.stats.not_tracked += 1;
            return;
        }
        self.clock = self.clock.max(ts.0);
        let key = Key::new(&seg.src, &seg.dst);
        let hash = flow::flow_hash(
            &self.hasher,
            (key.src_ip, key.src_port),
            (key.dst_ip, key.dst_port),
            key.v6,
        );
        let f = seg.flags;
        let syn_only = f.syn() && !f.ack() && !f.rst();

        let slab = &self.slab;
        let mut side = Side::Client;
        let found = self.index.find(hash, |i| {
            match slab.get(i as usize).and_then(|s| s.conn.side_of(&key)) {
                Some(s) => {
                    side = s;
                    true
                }
                None => false,
            }
        });
        if let Some(idx) = found {
            let Some(slot) = self.slab.get_mut(idx as usize) else {
                return;
            };
            if slot.conn.duplicate(side, seg) {
                self.stats.duplicates += 1;
                return;
            }
            if !syn_only {
                self.touch(idx);
                self.handle(idx, side, ts, seg, ended);
                self.enforce_memory(ts, ended);
                return;
            }
            if side == Side::Client
                && slot.conn.flags & ISN_KNOWN != 0
                && slot.conn.client_isn == seg.seq
            {
                // A retransmitted SYN.
                self.touch(idx);
                self.stats.retransmissions += 1;
                return;
            }
            // A new SYN on a tracked 4-tuple: the old connection is over.
            self.end(idx, EndCause::Reused, ts, ended);
        }

        if f.rst() || (!f.syn() && seg.payload.is_empty() && seg.missing == 0) {
            self.stats.stray += 1;
            return;
        }
        let client_is_src = if f.syn() {
            !f.ack()
        } else if src_watched && dst_watched {
            // Both ports watched: the lower port is the server's (the destination's on a tie).
            dport <= sport
        } else {
            dst_watched
        };
        let Some(idx) = self.create(ts, &key, hash, client_is_src, f.syn(), new_session, ended)
        else {
            return;
        };
        let side = if client_is_src {
            Side::Client
        } else {
            Side::Server
        };
        if let Some(slot) = self.slab.get_mut(idx as usize) {
            slot.conn.duplicate(side, seg);
        }
        self.handle(idx, side, ts, seg, ended);
        self.enforce_memory(ts, ended);
    }

    /// Adds a connection (evicting the oldest idle one when the table is full).
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        ts: Timestamp,
        key: &Key,
        hash: u64,
        client_is_src: bool,
        from_syn: bool,
        new_session: &mut dyn FnMut(&ConnInfo) -> S,
        ended: &mut Vec<Ended<S>>,
    ) -> Option<u32> {
        if self.len >= self.max_connections {
            let oldest = self.oldest()?;
            if !self.end(oldest, EndCause::EvictedCapacity, ts, ended) {
                return None;
            }
        }
        if self.free_head == NIL && self.slab.len() >= MAX_ENTRIES {
            // Unreachable: max_connections <= MAX_ENTRIES.
            return None;
        }
        let mut conn = Conn::new(key, client_is_src, ts.0, self.clock);
        if from_syn {
            conn.flags |= ROLES_FROM_SYN;
        }
        let session = new_session(&conn.info());
        conn.session_bytes = u32::try_from(session.buffered_bytes()).unwrap_or(u32::MAX);
        self.stats.buffered_bytes += u64::from(conn.session_bytes);
        let idx = if let Some(slot) = self.slab.get_mut(self.free_head as usize) {
            let idx = self.free_head;
            self.free_head = slot.conn.next;
            *slot = Slot {
                conn,
                session: Some(session),
            };
            idx
        } else {
            let idx = self.slab.len() as u32;
            self.slab.push(Slot {
                conn,
                session: Some(session),
            });
            idx
        };
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index.insert(hash, idx, |i| {
            slab.get(i as usize).map_or(0, |s| s.conn.hash(hasher))
        });
        push_tail(&mut self.slab, &mut self.lists[PAYLOAD], idx);
        self.len += 1;
        self.stats.connections_created += 1;
        self.stats.connections_open = self.len as u64;
        Some(idx)
    }

    /// Marks a connection as just seen: newest in its LRU list. It is moved to the tail only
    /// when the clock entered another [`LRU_GRANULARITY_SHIFT`] bucket since its last packet, so a
    /// busy connection does not touch its list neighbours' cache lines on every packet.
    fn touch(&mut self, idx: u32) {
        let clock = self.clock;
        let Some(slot) = self.slab.get_mut(idx as usize) else {
            return;
        };
        let same_bucket =
            slot.conn.last_seen >> LRU_GRANULARITY_SHIFT == clock >> LRU_GRANULARITY_SHIFT;
        slot.conn.last_seen = clock;
        let l = usize::from(slot.conn.flags & IN_CLOSE_LIST != 0);
        if !same_bucket && self.lists[l].tail != idx {
            unlink(&mut self.slab, &mut self.lists[l], idx);
            push_tail(&mut self.slab, &mut self.lists[l], idx);
        }
    }

    /// Runs one segment through its connection; ends it when closed, moves it to the CloseOnly
    /// list when its session asked.
    fn handle(
        &mut self,
        idx: u32,
        side: Side,
        ts: Timestamp,
        seg: &Segment<'_>,
        ended: &mut Vec<Ended<S>>,
    ) {
        let Some(slot) = self.slab.get_mut(idx as usize) else {
            return;
        };
        let Some(session) = slot.session.as_mut() else {
            return;
        };
        let synack_before = slot.conn.flags & SYNACK_SEEN != 0;
        let mut flow = Flow::new(
            &mut slot.conn,
            session,
            &mut self.stats,
            &mut self.shared,
            self.ooo_limits,
            ts,
        );
        let closed = flow.segment(side, seg);
        if !synack_before && slot.conn.flags & SYNACK_SEEN != 0 && !closed {
            self.pair_isns(idx, seg.seq);
        }
        let Some(slot) = self.slab.get_mut(idx as usize) else {
            return;
        };
        let to_close_list = slot.conn.flags & (CLOSE_ONLY | IN_CLOSE_LIST) == CLOSE_ONLY;
        if closed {
            self.end(idx, EndCause::Closed, ts, ended);
        } else if to_close_list {
            slot.conn.flags |= IN_CLOSE_LIST;
            unlink(&mut self.slab, &mut self.lists[PAYLOAD], idx);
            push_tail(&mut self.slab, &mut self.lists[CLOSE], idx);
        }
    }

    /// The connection at `idx` just got its SYN-ACK (server ISN `server_isn`): if a connection
    /// with the same ISN pair, other addresses and a first packet within [`TWIN_WINDOW_NS`] is in
    /// the table, this one is its twin and is muted (close-only, no verdict); otherwise it is
    /// recorded for the twins to come.
    fn pair_isns(&mut self, idx: u32, server_isn: u32) {
        let Some(conn) = self.slab.get(idx as usize).map(|s| &s.conn) else {
            return;
        };
        if conn.flags & ISN_KNOWN == 0 {
            return;
        }
        let key = (conn.client_isn, server_isn);
        let first_seen = conn.first_seen;
        let slab = &self.slab;
        // An entry is live when its slot still holds the connection it was made for.
        let live = |&(i, seen): &(u32, u64)| {
            i != idx
                && slab.get(i as usize).is_some_and(|s| {
                    s.session.is_some()
                        && s.conn.first_seen == seen
                        && s.conn.client_isn == key.0
                        && s.conn.flags & TWIN == 0
                })
        };
        match self.isn_pairs.get(&key) {
            Some(other) if live(other) && other.1.abs_diff(first_seen) <= TWIN_WINDOW_NS => {
                self.stats.twins += 1;
                if let Some(slot) = self.slab.get_mut(idx as usize) {
                    let conn = &mut slot.conn;
                    conn.flags |= TWIN | CLOSE_ONLY;
                    let freed = conn.ooo_bytes() as u64;
                    conn.ooo = None;
                    self.stats.buffered_bytes = self.stats.buffered_bytes.saturating_sub(freed);
                }
            }
            _ => {
                let horizon = self.clock.saturating_sub(TWIN_HORIZON_NS);
                while let Some(&(at, old_key, old_idx)) = self.isn_order.front() {
                    if at >= horizon {
                        break;
                    }
                    self.isn_order.pop_front();
                    if self.isn_pairs.get(&old_key).is_some_and(|v| v.0 == old_idx) {
                        self.isn_pairs.remove(&old_key);
                    }
                }
                self.isn_pairs.insert(key, (idx, first_seen));
                self.isn_order.push_back((self.clock, key, idx));
            }
        }
    }

    /// The least recently seen connection of both lists.
    fn oldest(&self) -> Option<u32> {
        let last_seen = |l: &List| self.slab.get(l.head as usize).map(|s| s.conn.last_seen);
        match (
            last_seen(&self.lists[PAYLOAD]),
            last_seen(&self.lists[CLOSE]),
        ) {
            (Some(a), Some(b)) => Some(if a <= b {
                self.lists[PAYLOAD].head
            } else {
                self.lists[CLOSE].head
            }),
            (Some(_), None) => Some(self.lists[PAYLOAD].head),
            (None, Some(_)) => Some(self.lists[CLOSE].head),
            (None, None) => None,
        }
    }

    fn enforce_memory(&mut self, ts: Timestamp, ended: &mut Vec<Ended<S>>) {
        while self.stats.buffered_bytes > self.max_buffered {
            let Some(idx) = self.oldest() else { break };
            if !self.end(idx, EndCause::EvictedMemory, ts, ended) {
                break;
            }
        }
    }

    /// Removes a connection: whatever it still buffers past a hole goes to its session first
    /// (after a Gap), then the session goes to `ended`. False (nothing done) for a free slot.
    fn end(&mut self, idx: u32, cause: EndCause, at: Timestamp, ended: &mut Vec<Ended<S>>) -> bool {
        let Some(slot) = self.slab.get_mut(idx as usize) else {
            return false;
        };
        let Some(session) = slot.session.as_mut() else {
            return false;
        };
        if slot.conn.ooo.is_some() && !slot.conn.close_only() {
            let mut flow = Flow::new(
                &mut slot.conn,
                session,
                &mut self.stats,
                &mut self.shared,
                self.ooo_limits,
                at,
            );
            flow.flush(Side::Client);
            flow.flush(Side::Server);
        }
        let conn = &mut slot.conn;
        let freed = conn.ooo_bytes() as u64 + u64::from(conn.session_bytes);
        self.stats.buffered_bytes = self.stats.buffered_bytes.saturating_sub(freed);
        conn.ooo = None;
        conn.session_bytes = 0;
        let info = conn.info();
        let twin = conn.flags & TWIN != 0;
        let hash = conn.hash(&self.hasher);
        let list = usize::from(conn.flags & IN_CLOSE_LIST != 0);
        let session = slot.session.take();
        unlink(&mut self.slab, &mut self.lists[list], idx);
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index.remove(hash, idx, |i| {
            slab.get(i as usize).map_or(0, |s| s.conn.hash(hasher))
        });
        if let Some(slot) = self.slab.get_mut(idx as usize) {
            slot.conn.next = self.free_head;
            self.free_head = idx;
        }
        self.len = self.len.saturating_sub(1);
        self.stats.connections_open = self.len as u64;
        match cause {
            EndCause::Closed => self.stats.ended_closed += 1,
            EndCause::IdleTimeout => self.stats.ended_idle += 1,
            EndCause::EvictedCapacity => self.stats.evicted_capacity += 1,
            EndCause::EvictedMemory => self.stats.evicted_memory += 1,
            EndCause::Reused => self.stats.ended_reused += 1,
            EndCause::EndOfInput => {}
        }
        if let Some(session) = session {
            ended.push(Ended {
                info,
                session,
                cause,
                at,
                twin,
            });
        }
        true
    }

    /// Ends connections idle for longer than their phase's timeout at time `now`.
    pub fn expire(&mut self, now: Timestamp, ended: &mut Vec<Ended<S>>) {
        for l in [PAYLOAD, CLOSE] {
            loop {
                let head = self.lists[l].head;
                let Some(slot) = self.slab.get(head as usize) else {
                    break;
                };
                if now.0.saturating_sub(slot.conn.last_seen) <= self.timeouts[l] {
                    break;
                }
                if !self.end(head, EndCause::IdleTimeout, now, ended) {
                    break;
                }
            }
        }
    }

    /// Ends every connection still open (end of input), oldest first: least recently seen first,
    /// the same order as eviction.
    pub fn drain(&mut self, at: Timestamp, ended: &mut Vec<Ended<S>>) {
        while self.drain_some(at, ended, usize::MAX) {}
    }

    /// Like [`ConnTable::drain`], at most `max` connections at a time, so that a caller can hand
    /// each batch on before the next (a table of a million connections is not copied out whole).
    /// True while connections remain.
    pub fn drain_some(&mut self, at: Timestamp, ended: &mut Vec<Ended<S>>, max: usize) -> bool {
        for _ in 0..max {
            let Some(idx) = self.oldest() else {
                return false;
            };
            if !self.end(idx, EndCause::EndOfInput, at, ended) {
                return false;
            }
        }
        self.oldest().is_some()
    }

    /// What the sessions share.
    pub fn shared(&self) -> &S::Shared {
        &self.shared
    }

    /// What the sessions share, to change between segments.
    pub fn shared_mut(&mut self) -> &mut S::Shared {
        &mut self.shared
    }

    pub fn stats(&self) -> &ConntrackStats {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
