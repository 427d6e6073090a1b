//! The handshake state machine: one per connection. Consumes TCP events (SYN, FIN, RST, gaps), TDS
//! events and TLS events, never bytes, and decides stage, mode, encryption, close, outcome and the
//! most specific failure reason the evidence supports. The primer's §4 wire signatures live here as
//! explicit rules.

use crate::capture::Timestamp;
use crate::conntrack::{ConnInfo, EndCause, Side};
use crate::tds::TdsEvent;
use crate::tls::TlsEvent;
use crate::verdict::Verdict;

/// TCP-level events the machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    Syn,
    SynAck,
    /// First payload byte from a side.
    Data(Side),
    Gap(Side),
    Fin(Side),
    Rst { side: Side, ttl: u8 },
}

/// The per-connection state machine.
pub struct Handshake {}

impl Handshake {
    pub fn new(ts: Timestamp, info: &ConnInfo) -> Self {
        let _ = (ts, info);
        todo!()
    }
    pub fn on_tcp(&mut self, ts: Timestamp, ev: TcpEvent) {
        let _ = (ts, ev);
        todo!()
    }
    /// A TDS event (never [`TdsEvent::TlsData`], which goes to the TLS layer).
    pub fn on_tds(&mut self, ts: Timestamp, side: Side, ev: &TdsEvent<'_>) {
        let _ = (ts, side, ev);
        todo!()
    }
    pub fn on_tls(&mut self, ts: Timestamp, side: Side, ev: TlsEvent) {
        let _ = (ts, side, ev);
        todo!()
    }
    /// The handshake is decided: only the close matters from now on.
    pub fn done(&self) -> bool {
        todo!()
    }
    /// The verdict, or `None` when the flow turned out not to be TDS 7+.
    pub fn finish(self, info: &ConnInfo, cause: EndCause, at: Timestamp) -> Option<Verdict> {
        let _ = (info, cause, at);
        todo!()
    }
}
