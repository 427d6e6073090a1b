//! Connection tracking: owns the connection table, its limits and eviction, each connection's client
//! and server roles, and the in-order delivery of each direction's bytes (TCP sequence numbers,
//! retransmissions and duplicated frames dropped, a bounded out-of-order buffer, holes reported as
//! [`StreamEvent::Gap`] so nothing above ever parses across a hole). It knows nothing of TDS: the layer
//! above plugs in through [`Session`].

use crate::capture::Timestamp;
use crate::config::Limits;
use crate::decode::Segment;
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
    /// State shared by all sessions of a table (caches, interners), lent to each call.
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
}

/// Counters, all monotonic except the gauges marked so.
#[derive(Debug, Clone, Default)]
pub struct ConntrackStats {
    /// Segments handed to [`ConnTable::process`].
    pub segments: u64,
    /// Segments on no configured port.
    pub not_tracked: u64,
    /// FIN/RST/ACK-only segments of flows not in the table (after a close, or joined mid-stream).
    pub stray: u64,
    /// The same frame captured twice (several interfaces, `lo`): dropped.
    pub duplicates: u64,
    /// Segments whose bytes were all delivered already.
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
}

/// The connection table.
pub struct ConnTable<S: Session> {
    _s: std::marker::PhantomData<S>,
}

impl<S: Session> ConnTable<S> {
    /// A table tracking TCP connections whose server port is one of `ports`.
    pub fn new(limits: &Limits, ports: &[u16]) -> Self {
        let _ = (limits, ports);
        todo!("conntrack")
    }

    /// Feeds one segment. A new connection gets its session from `new_session`; connections that
    /// end (closed, evicted, reused) are appended to `ended`.
    pub fn process(
        &mut self,
        ts: Timestamp,
        seg: &Segment<'_>,
        shared: &mut S::Shared,
        new_session: &mut dyn FnMut(&ConnInfo) -> S,
        ended: &mut Vec<Ended<S>>,
    ) {
        let _ = (ts, seg, shared, new_session, ended);
        todo!("conntrack")
    }

    /// Ends connections idle for longer than their phase's timeout at time `now`.
    pub fn expire(&mut self, now: Timestamp, ended: &mut Vec<Ended<S>>) {
        let _ = (now, ended);
        todo!("conntrack")
    }

    /// Ends every connection still open (end of input), oldest first.
    pub fn drain(&mut self, at: Timestamp, ended: &mut Vec<Ended<S>>) {
        let _ = (at, ended);
        todo!("conntrack")
    }

    pub fn stats(&self) -> &ConntrackStats {
        todo!("conntrack")
    }

    pub fn len(&self) -> usize {
        todo!("conntrack")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
