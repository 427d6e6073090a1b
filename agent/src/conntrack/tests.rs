//! Tests of the connection table, driven by segments built here, with a session that records what
//! it is told.

use super::*;
use crate::decode::TcpFlags;

const FIN: u8 = TcpFlags::FIN;
const SYN: u8 = TcpFlags::SYN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;
const ACK: u8 = TcpFlags::ACK;
const SEC: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Syn,
    SynAck,
    Data(Side, Vec<u8>),
    Gap(Side, u64),
    Fin(Side),
    Rst(Side, u8),
}

/// A session that records its events.
#[derive(Debug, Default)]
struct Rec {
    events: Vec<Ev>,
    /// Answer CloseOnly from the n-th Data event on.
    close_only_after: Option<usize>,
    /// Keep every data byte (as a protocol reassembly buffer would), for the memory cap.
    hoard: bool,
    held: usize,
    data_events: usize,
}

impl Session for Rec {
    type Shared = ();

    fn on_event(
        &mut self,
        _shared: &mut (),
        _ts: Timestamp,
        _info: &ConnInfo,
        event: StreamEvent<'_>,
    ) -> Interest {
        self.events.push(match event {
            StreamEvent::Syn => Ev::Syn,
            StreamEvent::SynAck => Ev::SynAck,
            StreamEvent::Data { side, bytes } => {
                self.data_events += 1;
                if self.hoard {
                    self.held += bytes.len();
                }
                Ev::Data(side, bytes.to_vec())
            }
            StreamEvent::Gap { side, len } => Ev::Gap(side, len),
            StreamEvent::Fin { side } => Ev::Fin(side),
            StreamEvent::Rst { side, ttl } => Ev::Rst(side, ttl),
        });
        match self.close_only_after {
            Some(n) if self.data_events >= n => Interest::CloseOnly,
            _ => Interest::Payload,
        }
    }
    fn buffered_bytes(&self) -> usize {
        self.held
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cli() -> SocketAddr {
    sa("10.0.0.1:50000")
}

fn srv() -> SocketAddr {
    sa("10.0.0.2:1433")
}

/// A table, the sessions it ended, a clock and an IP id counter (so that two segments built
/// separately are never the same frame).
struct H {
    t: ConnTable<Rec>,
    ended: Vec<Ended<Rec>>,
    now: u64,
    ip_id: u16,
    make: fn(&ConnInfo) -> Rec,
}

impl H {
    fn new(limits: Limits) -> H {
        H::with_ports(limits, &[1433])
    }

    fn with_ports(limits: Limits, ports: &[u16]) -> H {
        H {
            t: ConnTable::new(&limits, ports, ()),
            ended: Vec::new(),
            now: SEC,
            ip_id: 0,
            make: |_| Rec::default(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn seg<'p>(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'p [u8],
        missing: u32,
    ) -> Segment<'p> {
        self.ip_id = self.ip_id.wrapping_add(1);
        Segment {
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 1024,
            ttl: 64,
            ip_id: self.ip_id,
            payload,
            missing,
        }
    }

    fn feed(&mut self, seg: &Segment<'_>) {
        let make = self.make;
        self.t
            .process(Timestamp(self.now), seg, &mut |i| make(i), &mut self.ended);
        audit(&self.t);
    }

    fn send(&mut self, src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8, payload: &[u8]) {
        let s = self.seg(src, dst, seq, 0, flags, payload, 0);
        self.feed(&s);
    }

    /// Client to server.
    fn c(&mut self, seq: u32, flags: u8, payload: &[u8]) {
        self.send(cli(), srv(), seq, flags, payload);
    }

    /// Server to client.
    fn s(&mut self, seq: u32, flags: u8, payload: &[u8]) {
        self.send(srv(), cli(), seq, flags, payload);
    }

    /// SYN (client ISN `ci`), SYN-ACK (server ISN `si`), ACK.
    fn handshake(&mut self, ci: u32, si: u32) {
        self.c(ci, SYN, b"");
        let synack = self.seg(srv(), cli(), si, ci.wrapping_add(1), SYN | ACK, b"", 0);
        self.feed(&synack);
        self.c(ci.wrapping_add(1), ACK, b"");
    }

    /// Events of the only live connection.
    fn events(&self) -> Vec<Ev> {
        let live: Vec<&Rec> = self
            .t
            .slab
            .iter()
            .filter_map(|s| s.session.as_ref())
            .collect();
        assert_eq!(live.len(), 1, "expected exactly one live connection");
        live[0].events.clone()
    }

    fn expire(&mut self, now: u64) {
        self.t.expire(Timestamp(now), &mut self.ended);
        audit(&self.t);
    }

    fn drain(&mut self) {
        self.t.drain(Timestamp(self.now), &mut self.ended);
        audit(&self.t);
    }
}

/// The table's invariants: gauges equal what they measure, LRU lists hold every live connection
/// once in last-seen order, the index finds every live connection.
fn audit<S: Session>(t: &ConnTable<S>) {
    let live: Vec<usize> = (0..t.slab.len())
        .filter(|&i| t.slab[i].session.is_some())
        .collect();
    assert_eq!(t.len, live.len());
    assert_eq!(t.stats.connections_open, live.len() as u64);
    assert_eq!(t.index.len(), live.len());
    let mut buffered = 0u64;
    for &i in &live {
        let slot = &t.slab[i];
        let sb = u32::try_from(slot.session.as_ref().unwrap().buffered_bytes()).unwrap_or(u32::MAX);
        assert_eq!(slot.conn.session_bytes, sb, "session bytes of slot {i}");
        buffered += u64::from(sb) + slot.conn.ooo_bytes() as u64;
        if slot.conn.close_only() {
            assert_eq!(slot.conn.ooo_bytes(), 0);
            assert!(slot.conn.ooo.is_none());
        }
        let key = Key {
            src_ip: slot.conn.cip,
            dst_ip: slot.conn.sip,
            src_port: slot.conn.cport,
            dst_port: slot.conn.sport,
            v6: slot.conn.flags & flow::V6 != 0,
        };
        let hash = slot.conn.hash(&t.hasher);
        let found = t.index.find(hash, |j| {
            t.slab[j as usize].session.is_some() && t.slab[j as usize].conn.side_of(&key).is_some()
        });
        assert_eq!(found, Some(i as u32));
    }
    assert_eq!(t.stats.buffered_bytes, buffered);
    let mut seen = 0;
    for (l, list) in t.lists.iter().enumerate() {
        let mut prev = NIL;
        let mut cur = list.head;
        let mut last = 0;
        while cur != NIL {
            let c = &t.slab[cur as usize].conn;
            assert!(t.slab[cur as usize].session.is_some());
            assert_eq!(c.prev, prev);
            assert_eq!(usize::from(c.flags & IN_CLOSE_LIST != 0), l);
            // Sorted to within one LRU bucket.
            assert!(
                c.last_seen + (1 << LRU_GRANULARITY_SHIFT) > last,
                "list {l} out of order"
            );
            last = c.last_seen;
            prev = cur;
            cur = c.next;
            seen += 1;
        }
        assert_eq!(list.tail, prev);
    }
    assert_eq!(seen, live.len());
}

fn data(side: Side, b: &[u8]) -> Ev {
    Ev::Data(side, b.to_vec())
}

use Side::{Client as C, Server as S};

#[test]
fn conn_entry_stays_small() {
    // 100 000 open connections must stay cheap. Per connection, outside its session and its
    // out-of-order buffers (boxed, only while a hole is open), the table holds one `Conn` (both
    // addresses, timestamps, roles, both directions' sequence state and duplicate-frame
    // signature, LRU links, the ISN and the session's last buffered size) and one 4-byte index
    // slot per 4/3 to 8/3 connections (the index is kept 3/8 to 3/4 full): 112 + 5.3..10.7 bytes,
    // about 120.
    assert!(
        std::mem::size_of::<Conn>() <= 112,
        "Conn is {} bytes",
        std::mem::size_of::<Conn>()
    );
    assert_eq!(index::Index::SLOT_BYTES, 4);
}

#[test]
fn three_way_handshake_data_both_ways_fin_fin() {
    let mut h = H::new(Limits::default());
    h.handshake(1000, 5000);
    h.c(1001, ACK | PSH, b"hello");
    h.s(5001, ACK | PSH, b"world!");
    h.c(1006, FIN | ACK, b"");
    assert_eq!(h.t.len(), 1);
    assert!(h.ended.is_empty());
    h.s(5007, FIN | ACK, b"");
    assert_eq!(h.t.len(), 0);
    assert_eq!(h.ended.len(), 1);
    let e = &h.ended[0];
    assert_eq!(e.cause, EndCause::Closed);
    assert_eq!(e.info.client, cli());
    assert_eq!(e.info.server, srv());
    assert!(e.info.roles_from_syn);
    assert_eq!(
        e.session.events,
        vec![
            Ev::Syn,
            Ev::SynAck,
            data(C, b"hello"),
            data(S, b"world!"),
            Ev::Fin(C),
            Ev::Fin(S)
        ]
    );
    // The last ACK finds no connection: stray, not a phantom connection.
    h.c(1007, ACK, b"");
    assert_eq!(h.t.len(), 0);
    let st = h.t.stats();
    assert_eq!(st.segments, 8);
    assert_eq!(st.stray, 1);
    assert_eq!(st.connections_created, 1);
    assert_eq!(st.ended_closed, 1);
    assert_eq!(st.connections_open, 0);
    assert_eq!(st.duplicates, 0);
    assert_eq!(st.retransmissions, 0);
    assert_eq!(st.gaps, 0);
}

#[test]
fn ipv6_connection_keeps_its_addresses() {
    let mut h = H::new(Limits::default());
    let (c6, s6) = (sa("[2001:db8::1]:40000"), sa("[2001:db8::2]:1433"));
    h.send(c6, s6, 7, SYN, b"");
    h.send(s6, c6, 9, SYN | ACK, b"");
    h.send(c6, s6, 8, ACK, b"x");
    // The same numbers in IPv4-mapped form are another flow.
    h.send(
        sa("[::ffff:10.0.0.1]:40000"),
        sa("[::ffff:10.0.0.2]:1433"),
        8,
        ACK,
        b"y",
    );
    h.send(sa("10.0.0.1:40000"), sa("10.0.0.2:1433"), 8, ACK, b"z");
    assert_eq!(h.t.len(), 3);
    h.drain();
    let first = h.ended.iter().find(|e| e.info.client == c6).unwrap();
    assert_eq!(first.info.server, s6);
    assert_eq!(
        first.session.events,
        vec![Ev::Syn, Ev::SynAck, data(C, b"x")]
    );
}

#[test]
fn roles_from_syn_and_from_ports() {
    let mut h = H::with_ports(Limits::default(), &[1433, 2000]);
    // Mid-stream, server port watched: the server is the endpoint on 1433.
    h.s(5001, ACK | PSH, b"resp");
    // Both ports watched: the destination is the server when its port is <= the source port.
    h.send(sa("10.0.0.3:2000"), sa("10.0.0.4:1433"), 1, ACK, b"a");
    h.send(sa("10.0.0.5:1433"), sa("10.0.0.6:2000"), 1, ACK, b"b");
    h.send(sa("10.0.0.7:2000"), sa("10.0.0.8:2000"), 1, ACK, b"c");
    // A SYN-ACK's sender is the server; a SYN's sender is the client, whatever the ports.
    h.send(
        sa("10.0.0.9:1433"),
        sa("10.0.0.10:40000"),
        1,
        SYN | ACK,
        b"",
    );
    h.send(sa("10.0.0.11:1433"), sa("10.0.0.12:40000"), 1, SYN, b"");
    // Pure ACK, FIN and RST of unknown flows create nothing.
    h.send(sa("10.0.0.13:40000"), sa("10.0.0.14:1433"), 1, ACK, b"");
    h.send(
        sa("10.0.0.13:40000"),
        sa("10.0.0.14:1433"),
        1,
        FIN | ACK,
        b"",
    );
    h.send(sa("10.0.0.13:40000"), sa("10.0.0.14:1433"), 1, RST, b"d");
    // Not on a watched port.
    h.send(sa("10.0.0.15:80"), sa("10.0.0.16:8080"), 1, ACK, b"e");
    assert_eq!(h.t.len(), 6);
    assert_eq!(h.t.stats().stray, 3);
    assert_eq!(h.t.stats().not_tracked, 1);
    h.drain();
    let by_server = |s: &str| {
        let all: Vec<_> = h
            .ended
            .iter()
            .map(|e| (e.info.client, e.info.server))
            .collect();
        h.ended
            .iter()
            .find(|e| e.info.server == sa(s))
            .unwrap_or_else(|| panic!("{s} not in {all:?}"))
    };
    let e = by_server("10.0.0.2:1433");
    assert_eq!((e.info.client, e.info.roles_from_syn), (cli(), false));
    assert_eq!(e.session.events, vec![data(S, b"resp")]);
    let e = by_server("10.0.0.4:1433");
    assert_eq!(
        (e.info.client, e.session.events.clone()),
        (sa("10.0.0.3:2000"), vec![data(C, b"a")])
    );
    let e = by_server("10.0.0.5:1433");
    assert_eq!(
        (e.info.client, e.session.events.clone()),
        (sa("10.0.0.6:2000"), vec![data(S, b"b")])
    );
    let e = by_server("10.0.0.8:2000");
    assert_eq!(e.info.client, sa("10.0.0.7:2000"));
    let e = by_server("10.0.0.9:1433");
    assert_eq!(
        (e.info.client, e.info.roles_from_syn),
        (sa("10.0.0.10:40000"), true)
    );
    assert_eq!(e.session.events, vec![Ev::SynAck]);
    let e = by_server("10.0.0.12:40000");
    assert_eq!(
        (e.info.client, e.info.roles_from_syn),
        (sa("10.0.0.11:1433"), true)
    );
    assert_eq!(e.session.events, vec![Ev::Syn]);
}

#[test]
fn retransmissions_and_overlaps_are_trimmed() {
    let stream: Vec<u8> = (0u8..64).collect();
    let b = 101u32; // first data byte
    let part = |a: usize, z: usize| &stream[a..z];
    let mut h = H::new(Limits::default());
    h.handshake(100, 900);
    h.c(b, ACK, part(0, 10));
    h.c(b, ACK, part(0, 10)); // whole retransmission
    h.c(b + 5, ACK, part(5, 15)); // overlaps the front
    h.c(b + 3, ACK, part(3, 20));
    h.c(b + 30, ACK, part(30, 40)); // ahead of a hole
    h.c(b + 25, ACK, part(25, 45)); // covers the buffered one and more on both ends
    h.c(b + 28, ACK, part(28, 42)); // entirely buffered already
    assert_eq!(h.t.stats().buffered_bytes, 20);
    h.c(b + 18, ACK, part(18, 26)); // fills the hole, overlapping both sides of it
    let st = h.t.stats();
    assert_eq!(st.retransmissions, 2);
    assert_eq!(st.out_of_order, 2);
    assert_eq!(st.buffered_bytes, 0);
    assert_eq!(st.gaps, 0);
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![
            data(C, part(0, 10)),
            data(C, part(10, 15)),
            data(C, part(15, 20)),
            data(C, part(20, 26)),
            data(C, part(26, 30)),
            data(C, part(30, 40)),
            data(C, part(40, 45)),
        ]
    );
    assert!(h.t.slab[0].conn.ooo.is_none(), "buffers freed once empty");
}

#[test]
fn out_of_order_then_filled() {
    let mut h = H::new(Limits::default());
    h.handshake(10, 20);
    h.s(21 + 6, ACK, b"three");
    h.s(21 + 3, ACK, b"two");
    assert_eq!(h.events(), vec![Ev::Syn, Ev::SynAck]);
    assert_eq!(h.t.stats().buffered_bytes, 8);
    h.s(21, ACK, b"one");
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![data(S, b"one"), data(S, b"two"), data(S, b"three")]
    );
    assert_eq!(h.t.stats().out_of_order, 2);
    assert_eq!(h.t.stats().buffered_bytes, 0);
}

#[test]
fn fin_declares_holes_lost_and_later_data_is_ignored() {
    let mut h = H::new(Limits::default());
    h.handshake(10, 20);
    h.c(11, ACK, b"01234");
    h.c(21, ACK, b"ABCDE"); // [10, 15) after a hole [5, 10)
    h.c(31, FIN | ACK, b""); // FIN at 20, after another hole [15, 20)
    h.c(16, ACK, b"56789"); // too late: after the FIN
    h.c(32, ACK, b"late");
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![
            data(C, b"01234"),
            Ev::Gap(C, 5),
            data(C, b"ABCDE"),
            Ev::Gap(C, 5),
            Ev::Fin(C)
        ]
    );
    let st = h.t.stats();
    assert_eq!((st.gaps, st.gap_bytes, st.buffered_bytes), (2, 10, 0));
}

#[test]
fn out_of_order_segment_limit_declares_the_hole_lost() {
    let stream: Vec<u8> = (0u8..80).collect();
    let limits = Limits {
        max_ooo_segments_per_direction: 2,
        ..Limits::default()
    };
    let mut h = H::new(limits);
    h.handshake(0, 500);
    let b = 1u32;
    h.c(b + 10, ACK, &stream[10..20]);
    h.c(b + 20, ACK, &stream[20..30]);
    assert_eq!(h.events().len(), 2);
    h.c(b + 30, ACK, &stream[30..40]); // a third one: the hole [0, 10) is lost
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![
            Ev::Gap(C, 10),
            data(C, &stream[10..20]),
            data(C, &stream[20..30]),
            data(C, &stream[30..40])
        ]
    );
    h.c(b, ACK, &stream[0..10]); // the lost bytes, too late
    let st = h.t.stats();
    assert_eq!(
        (st.gaps, st.gap_bytes, st.out_of_order, st.retransmissions),
        (1, 10, 2, 1)
    );
    assert_eq!(st.buffered_bytes, 0);
}

#[test]
fn out_of_order_byte_limit_declares_the_hole_lost() {
    let stream: Vec<u8> = (0u8..80).collect();
    let limits = Limits {
        max_ooo_bytes_per_direction: 15,
        ..Limits::default()
    };
    let mut h = H::new(limits);
    h.handshake(0, 500);
    let b = 1u32;
    h.c(b + 10, ACK, &stream[10..20]); // 10 bytes buffered
    h.c(b + 30, ACK, &stream[30..40]); // 20 > 15: hole [0, 10) lost, this one buffered
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![Ev::Gap(C, 10), data(C, &stream[10..20])]
    );
    assert_eq!(h.t.stats().buffered_bytes, 10);
    h.c(b + 20, ACK, &stream[20..30]);
    h.c(b + 50, ACK, &stream[50..70]); // alone larger than the limit
    assert_eq!(
        h.events()[4..].to_vec(),
        vec![
            data(C, &stream[20..30]),
            data(C, &stream[30..40]),
            Ev::Gap(C, 10),
            data(C, &stream[50..70])
        ]
    );
    let st = h.t.stats();
    assert_eq!((st.gaps, st.gap_bytes, st.buffered_bytes), (2, 20, 0));
}

#[test]
fn missing_bytes_become_a_gap() {
    let stream: Vec<u8> = (0u8..40).collect();
    let mut h = H::new(Limits::default());
    h.handshake(0, 500);
    let b = 1u32;
    // 10 bytes on the wire, 4 captured.
    let s = h.seg(cli(), srv(), b, 0, ACK, &stream[0..4], 6);
    h.feed(&s);
    h.c(b + 4, ACK, &stream[4..14]); // bytes 4..10 were declared lost already
                                     // Out of order, with a missing tail.
    let s = h.seg(cli(), srv(), b + 20, 0, ACK, &stream[20..22], 3);
    h.feed(&s);
    h.c(b + 14, ACK, &stream[14..20]);
    h.c(b + 25, FIN | ACK, b"");
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![
            data(C, &stream[0..4]),
            Ev::Gap(C, 6),
            data(C, &stream[10..14]),
            data(C, &stream[14..20]),
            data(C, &stream[20..22]),
            Ev::Gap(C, 3),
            Ev::Fin(C),
        ]
    );
    let st = h.t.stats();
    assert_eq!((st.gaps, st.gap_bytes), (2, 9));
}

#[test]
fn sequence_numbers_wrap_around() {
    let stream: Vec<u8> = (0u8..40).collect();
    let isn = 0xFFFF_FFF0u32;
    let b = isn.wrapping_add(1);
    let at = |o: u32| b.wrapping_add(o);
    let mut h = H::new(Limits::default());
    h.handshake(isn, u32::MAX);
    h.c(at(20), ACK, &stream[20..30]); // seq 5, past the wrap, ahead of a hole
    h.c(at(0), ACK, &stream[0..10]);
    h.c(at(10), ACK, &stream[10..20]); // crosses 2^32
    h.c(at(5), ACK, &stream[5..15]); // old
    h.c(at(30), FIN | ACK, b"");
    h.s(0, ACK, b"srv"); // server ISN u32::MAX: first byte at 0
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![
            data(C, &stream[0..10]),
            data(C, &stream[10..20]),
            data(C, &stream[20..30]),
            Ev::Fin(C),
            data(S, b"srv"),
        ]
    );
    assert_eq!(h.t.stats().retransmissions, 1);
    assert_eq!(h.t.stats().gaps, 0);
}

/// The frames of one connection: handshake, data both ways with reordering, FIN/FIN, last ACK.
fn scripted_frames(h: &mut H) -> Vec<Segment<'static>> {
    vec![
        h.seg(cli(), srv(), 100, 0, SYN, b"", 0),
        h.seg(srv(), cli(), 700, 101, SYN | ACK, b"", 0),
        h.seg(cli(), srv(), 101, 701, ACK, b"", 0),
        h.seg(cli(), srv(), 101, 701, ACK | PSH, b"abc", 0),
        h.seg(cli(), srv(), 107, 701, ACK | PSH, b"ghi", 0),
        h.seg(cli(), srv(), 104, 701, ACK | PSH, b"def", 0),
        h.seg(srv(), cli(), 701, 110, ACK | PSH, b"xyz", 0),
        h.seg(cli(), srv(), 101, 704, ACK, b"abc", 0), // a real retransmission
        h.seg(cli(), srv(), 110, 704, FIN | ACK, b"", 0),
        h.seg(srv(), cli(), 704, 111, FIN | ACK, b"", 0),
        h.seg(cli(), srv(), 111, 705, ACK, b"", 0),
    ]
}

#[test]
fn duplicated_frames_give_the_same_events_as_once() {
    let mut once = H::new(Limits::default());
    for f in scripted_frames(&mut once) {
        once.feed(&f);
    }
    let mut twice = H::new(Limits::default());
    for f in scripted_frames(&mut twice) {
        twice.feed(&f);
        twice.feed(&f);
    }
    assert_eq!(once.ended.len(), 1);
    assert_eq!(twice.ended.len(), 1);
    let expected = vec![
        Ev::Syn,
        Ev::SynAck,
        data(C, b"abc"),
        data(C, b"def"),
        data(C, b"ghi"),
        data(S, b"xyz"),
        Ev::Fin(C),
        Ev::Fin(S),
    ];
    assert_eq!(once.ended[0].session.events, expected);
    assert_eq!(twice.ended[0].session.events, expected);
    let (a, b) = (once.t.stats(), twice.t.stats());
    assert_eq!(a.duplicates, 0);
    // Every copy while the connection lived (9 frames up to the client FIN); the copy of the
    // closing FIN and both last ACKs find no connection.
    assert_eq!(b.duplicates, 9);
    assert_eq!((a.stray, b.stray), (1, 3));
    assert_eq!((a.retransmissions, b.retransmissions), (1, 1));
    assert_eq!((a.out_of_order, b.out_of_order), (1, 1));
}

#[test]
fn rst_ends_at_once_and_later_packets_are_stray() {
    let mut h = H::new(Limits::default());
    h.handshake(10, 20);
    h.c(11, ACK, b"01234");
    h.c(21, ACK, b"ABCDE"); // after a hole
    let rst = Segment {
        ttl: 250,
        ..h.seg(srv(), cli(), 21, 0, RST | ACK, b"", 0)
    };
    h.feed(&rst);
    assert_eq!(h.t.len(), 0);
    assert_eq!(h.ended.len(), 1);
    assert_eq!(h.ended[0].cause, EndCause::Closed);
    assert_eq!(
        h.ended[0].session.events[2..].to_vec(),
        vec![
            data(C, b"01234"),
            Ev::Gap(C, 5),
            data(C, b"ABCDE"),
            Ev::Rst(S, 250)
        ]
    );
    h.c(26, ACK, b"");
    h.c(26, RST, b"");
    h.s(21, RST, b"");
    assert_eq!(h.t.len(), 0);
    let st = h.t.stats();
    assert_eq!(
        (st.stray, st.ended_closed, st.connections_created),
        (3, 1, 1)
    );
}

#[test]
fn rst_to_a_syn_is_a_refusal() {
    let mut h = H::new(Limits::default());
    h.c(10, SYN, b"");
    h.s(0, RST | ACK, b"");
    assert_eq!(h.ended.len(), 1);
    assert_eq!(h.ended[0].session.events, vec![Ev::Syn, Ev::Rst(S, 64)]);
}

#[test]
fn syn_with_a_new_isn_reuses_the_tuple() {
    let mut h = H::new(Limits::default());
    h.handshake(100, 200);
    h.c(101, ACK, b"old");
    h.c(104, FIN | ACK, b"");
    h.c(100, SYN, b""); // the same SYN again, late: a retransmission
    assert_eq!(h.t.stats().retransmissions, 1);
    assert!(h.ended.is_empty());
    h.c(9000, SYN, b"");
    assert_eq!(h.ended.len(), 1);
    assert_eq!(h.ended[0].cause, EndCause::Reused);
    assert_eq!(
        h.ended[0].session.events,
        vec![Ev::Syn, Ev::SynAck, data(C, b"old"), Ev::Fin(C)]
    );
    assert_eq!(h.events(), vec![Ev::Syn]);
    h.c(9000, SYN, b""); // retransmitted new SYN
    assert_eq!(h.events(), vec![Ev::Syn]);
    let synack = h.seg(srv(), cli(), 300, 9001, SYN | ACK, b"", 0);
    h.feed(&synack);
    h.c(9001, ACK, b"new");
    assert_eq!(h.events(), vec![Ev::Syn, Ev::SynAck, data(C, b"new")]);
    let st = h.t.stats();
    assert_eq!(
        (st.ended_reused, st.connections_created, st.retransmissions),
        (1, 2, 2)
    );
    assert_eq!(h.t.len(), 1);
}

#[test]
fn syn_ack_without_syn_gives_the_client_isn() {
    let mut h = H::new(Limits::default());
    let synack = h.seg(srv(), cli(), 300, 51, SYN | ACK, b"", 0);
    h.feed(&synack);
    h.c(50, SYN, b""); // the SYN, retransmitted after the SYN-ACK: same ISN
    h.c(52, ACK, b"yz"); // ahead of a hole at 51
    h.c(51, ACK, b"x");
    assert_eq!(h.events(), vec![Ev::SynAck, data(C, b"x"), data(C, b"yz")]);
    assert_eq!(h.t.stats().ended_reused, 0);
}

#[test]
fn close_only_stops_data_and_frees_buffers() {
    let limits = Limits {
        handshake_idle_timeout_ns: 10 * SEC,
        established_idle_timeout_ns: 100 * SEC,
        ..Limits::default()
    };
    let mut h = H::new(limits);
    h.make = |_| Rec {
        close_only_after: Some(1),
        ..Rec::default()
    };
    h.handshake(0, 100);
    h.c(11, ACK, b"later"); // ahead of a hole
    h.s(101 + 5, ACK, b"srv-later");
    assert_eq!(h.t.stats().buffered_bytes, 14);
    h.c(1, ACK, b"0123456789"); // fills the hole; the session then wants no more payload
    assert_eq!(h.t.stats().buffered_bytes, 0);
    assert!(h.t.slab[0].conn.ooo.is_none());
    h.s(101, ACK, b"srv01");
    h.c(16, ACK, b"more");
    assert_eq!(h.events()[2..].to_vec(), vec![data(C, b"0123456789")]);
    // It moved to the long timeout.
    h.expire(h.now + 50 * SEC);
    assert_eq!(h.t.len(), 1);
    h.c(20, FIN | ACK, b"");
    assert_eq!(
        h.events()[2..].to_vec(),
        vec![data(C, b"0123456789"), Ev::Fin(C)]
    );
    h.expire(h.now + 101 * SEC);
    assert_eq!(h.t.len(), 0);
    assert_eq!(h.ended[0].cause, EndCause::IdleTimeout);
}

#[test]
fn capacity_evicts_the_oldest_idle() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let mut h = H::new(limits);
    let (a, b, c) = (
        sa("10.0.1.1:1000"),
        sa("10.0.1.2:1000"),
        sa("10.0.1.3:1000"),
    );
    h.send(a, srv(), 1, ACK, b"a1");
    h.now += SEC;
    h.send(b, srv(), 1, ACK, b"b1");
    h.now += SEC;
    h.send(a, srv(), 3, ACK, b"a2"); // a is now the most recent
    h.now += SEC;
    h.send(c, srv(), 1, ACK, b"c1");
    assert_eq!(h.t.len(), 2);
    assert_eq!(h.ended.len(), 1);
    assert_eq!(h.ended[0].info.client, b);
    assert_eq!(h.ended[0].cause, EndCause::EvictedCapacity);
    assert_eq!(h.ended[0].session.events, vec![data(C, b"b1")]);
    assert_eq!(h.t.stats().evicted_capacity, 1);
    h.send(b, srv(), 3, ACK, b"b2"); // b comes back as a new connection, evicting a
    assert_eq!(h.ended[1].info.client, a);
    assert_eq!(h.t.stats().connections_created, 4);
}

#[test]
fn memory_cap_evicts_the_oldest_idle() {
    let limits = Limits {
        max_buffered_bytes_total: 100,
        ..Limits::default()
    };
    let mut h = H::new(limits);
    h.make = |_| Rec {
        hoard: true,
        ..Rec::default()
    };
    let (a, b) = (sa("10.0.1.1:1000"), sa("10.0.1.2:1000"));
    h.send(a, srv(), 1, ACK, &[7; 60]);
    h.now += SEC;
    h.send(b, srv(), 1, ACK, &[8; 30]);
    assert_eq!(h.t.stats().buffered_bytes, 90);
    h.now += SEC;
    h.send(a, srv(), 61, ACK, &[7; 20]); // 110 > 100: b, the oldest idle, goes
    assert_eq!(h.ended.len(), 1);
    assert_eq!(h.ended[0].info.client, b);
    assert_eq!(h.ended[0].cause, EndCause::EvictedMemory);
    assert_eq!(h.t.stats().buffered_bytes, 80);
    assert_eq!(h.t.stats().evicted_memory, 1);
}

#[test]
fn memory_cap_counts_out_of_order_bytes() {
    let limits = Limits {
        max_buffered_bytes_total: 40,
        ..Limits::default()
    };
    let mut h = H::new(limits);
    let (a, b) = (sa("10.0.1.1:1000"), sa("10.0.1.2:1000"));
    h.send(a, srv(), 1, ACK, b"a");
    h.send(a, srv(), 12, ACK, &[1; 30]); // hole of 10, 30 bytes buffered
    h.now += SEC;
    h.send(b, srv(), 1, ACK, b"b");
    h.send(b, srv(), 12, ACK, &[2; 30]); // 60 > 40: a goes, delivering what it held
    assert_eq!(h.ended.len(), 1);
    assert_eq!(h.ended[0].info.client, a);
    assert_eq!(h.ended[0].cause, EndCause::EvictedMemory);
    assert_eq!(
        h.ended[0].session.events,
        vec![data(C, b"a"), Ev::Gap(C, 10), data(C, &[1; 30])]
    );
    assert_eq!(h.t.stats().buffered_bytes, 30);
}

#[test]
fn idle_expiry_uses_the_phase_timeout() {
    let limits = Limits {
        handshake_idle_timeout_ns: 10 * SEC,
        established_idle_timeout_ns: 100 * SEC,
        ..Limits::default()
    };
    let mut h = H::new(limits);
    // Sessions on client port 2000 are decided after their first data.
    h.make = |i| Rec {
        close_only_after: (i.client.port() == 2000).then_some(1),
        ..Rec::default()
    };
    let t0 = h.now;
    let (a, b, c) = (
        sa("10.0.1.1:1000"),
        sa("10.0.1.2:2000"),
        sa("10.0.1.3:1000"),
    );
    h.send(a, srv(), 1, ACK, b"a");
    h.send(b, srv(), 1, ACK, b"b");
    h.send(c, srv(), 1, ACK, b"c");
    h.now = t0 + 8 * SEC;
    h.send(c, srv(), 2, ACK, b"c");
    h.expire(t0 + 10 * SEC); // idle exactly the timeout: kept
    assert_eq!(h.t.len(), 3);
    h.expire(t0 + 11 * SEC);
    assert_eq!(h.ended.len(), 1);
    assert_eq!(
        (h.ended[0].info.client, h.ended[0].cause),
        (a, EndCause::IdleTimeout)
    );
    assert_eq!(h.ended[0].at, Timestamp(t0 + 11 * SEC));
    h.expire(t0 + 19 * SEC);
    assert_eq!(h.ended.len(), 2);
    assert_eq!(h.ended[1].info.client, c);
    h.expire(t0 + 100 * SEC);
    assert_eq!(h.t.len(), 1);
    h.expire(t0 + 101 * SEC);
    assert_eq!(h.ended[2].info.client, b);
    assert_eq!(h.t.stats().ended_idle, 3);
    assert!(h.t.is_empty());
}

#[test]
fn drain_ends_oldest_first() {
    let mut h = H::new(Limits::default());
    let (a, b, c) = (
        sa("10.0.1.1:1000"),
        sa("10.0.1.2:1000"),
        sa("10.0.1.3:1000"),
    );
    h.send(a, srv(), 1, ACK, b"a");
    h.now += SEC;
    h.send(b, srv(), 1, ACK, b"b");
    h.now += SEC;
    h.send(c, srv(), 1, ACK, b"c");
    h.now += SEC;
    h.send(a, srv(), 2, ACK, b"a");
    h.drain();
    let order: Vec<SocketAddr> = h.ended.iter().map(|e| e.info.client).collect();
    assert_eq!(order, vec![b, c, a]);
    assert!(h
        .ended
        .iter()
        .all(|e| e.cause == EndCause::EndOfInput && e.at == Timestamp(h.now)));
    assert_eq!(h.ended[2].info.last_seen, Timestamp(h.now));
    assert_eq!(h.ended[2].info.first_seen, Timestamp(SEC));
    assert!(h.t.is_empty());
}

#[test]
fn lru_order_is_kept_to_within_one_bucket() {
    let ms = 1_000_000;
    let bucket = 1u64 << LRU_GRANULARITY_SHIFT;
    let mut h = H::new(Limits::default());
    let (a, b) = (sa("10.0.1.1:1000"), sa("10.0.1.2:1000"));
    h.now = 100 * bucket;
    h.send(a, srv(), 1, ACK, b"a");
    h.now += ms;
    h.send(b, srv(), 1, ACK, b"b");
    h.now += ms;
    h.send(a, srv(), 2, ACK, b"a"); // same bucket as a's last packet: not moved
    assert_eq!(h.t.lists[PAYLOAD].head, 0);
    h.now = 101 * bucket;
    h.send(a, srv(), 3, ACK, b"a"); // next bucket: moved behind b
    assert_eq!(h.t.lists[PAYLOAD].head, 1);
    h.drain();
    let order: Vec<SocketAddr> = h.ended.iter().map(|e| e.info.client).collect();
    assert_eq!(order, vec![b, a]);
    // ConnInfo keeps the exact time of the last packet.
    assert_eq!(h.ended[1].info.last_seen, Timestamp(101 * bucket));
}

#[test]
fn thousands_of_connections_open_and_close_in_any_order() {
    let n = 6000u32;
    let limits = Limits {
        max_connections: 5000,
        ..Limits::default()
    };
    let mut t: ConnTable<Rec> = ConnTable::new(&limits, &[1433], ());
    let mut ended = Vec::new();
    let client = |i: u32| {
        let [a, b, c, d] = (0x0a00_0000 + i / 7).to_be_bytes();
        SocketAddr::from(([a, b, c, d], 40000 + (i % 7) as u16))
    };
    let seg = |src, dst, flags: u8, payload: &'static [u8]| Segment {
        src,
        dst,
        seq: 1,
        ack: 1,
        flags: TcpFlags(flags),
        window: 0,
        ttl: 64,
        ip_id: 0,
        payload,
        missing: 0,
    };
    for i in 0..n {
        let s = seg(client(i), srv(), ACK, b"q");
        t.process(
            Timestamp(u64::from(i) * SEC),
            &s,
            &mut |_| Rec::default(),
            &mut ended,
        );
    }
    audit(&t);
    assert_eq!(t.len(), 5000);
    assert_eq!(t.stats().evicted_capacity, 1000);
    // The first 1000 went, oldest first.
    assert!(ended
        .iter()
        .enumerate()
        .all(|(k, e)| e.info.client == client(k as u32)));
    // Close the rest in a scrambled order, alternating which side resets.
    let mut rng = Rng(42);
    let mut order: Vec<u32> = (1000..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (k, &i) in order.iter().enumerate() {
        let s = if k % 2 == 0 {
            seg(client(i), srv(), RST, b"")
        } else {
            seg(srv(), client(i), RST | ACK, b"")
        };
        t.process(
            Timestamp(u64::from(n) * SEC),
            &s,
            &mut |_| Rec::default(),
            &mut ended,
        );
        if k % 1000 == 0 {
            audit(&t);
        }
    }
    audit(&t);
    assert!(t.is_empty());
    assert_eq!(t.stats().ended_closed, 5000);
    assert_eq!(t.stats().stray, 0);
    assert_eq!(ended.len(), 6000);
}

/// xorshift64*: enough randomness for shuffles, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A known byte stream cut into segments, some re-cut as retransmissions, some truncated, some
/// dropped, reordered, duplicated, with the FIN anywhere after the SYN: what is delivered must
/// always be the stream's bytes at their place, each once, and bytes delivered plus gap bytes must
/// equal the stream's length at the FIN.
#[test]
fn randomised_streams_are_delivered_exactly_or_with_gaps() {
    for case in 0..600u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (case + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let len = rng.below(3000) as usize;
        let stream: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let isn = if rng.chance(30) {
            u32::MAX - rng.below(3000) as u32
        } else {
            rng.next() as u32
        };
        let base = isn.wrapping_add(1);
        let limits = Limits {
            max_ooo_bytes_per_direction: [0, 50, 700, 256 * 1024][rng.below(4) as usize],
            max_ooo_segments_per_direction: [0, 1, 3, 64][rng.below(4) as usize],
            ..Limits::default()
        };
        let unlimited = limits.max_ooo_bytes_per_direction >= 4000
            && limits.max_ooo_segments_per_direction >= 64;
        let mut h = H::new(limits);

        // (offset, length, captured) of each data segment.
        let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
        let mut off = 0;
        while off < len {
            let l = (1 + rng.below(300) as usize).min(len - off);
            pieces.push((off, l, l));
            off += l;
        }
        for _ in 0..rng.below(6) {
            if len > 0 {
                let a = rng.below(len as u64) as usize;
                let l = 1 + rng.below((len - a) as u64) as usize;
                pieces.push((a, l, l));
            }
        }
        let mut lossy = false;
        for p in pieces.iter_mut() {
            if rng.chance(4) {
                p.2 = rng.below(p.1 as u64) as usize;
                lossy = true;
            }
        }
        let before = pieces.len();
        pieces.retain(|_| !rng.chance(3));
        lossy |= pieces.len() != before;
        for i in 0..pieces.len() {
            if rng.chance(40) {
                let j = (i + rng.below(6) as usize).min(pieces.len() - 1);
                pieces.swap(i, j);
            }
        }
        let fin_at = if rng.chance(50) {
            pieces.len()
        } else {
            rng.below(pieces.len() as u64 + 1) as usize
        };
        lossy |= fin_at != pieces.len();

        h.handshake(isn, 77);
        let mut frames: Vec<Segment<'_>> = Vec::new();
        for (k, &(o, l, cap)) in pieces.iter().enumerate() {
            if k == fin_at {
                frames.push(h.seg(
                    cli(),
                    srv(),
                    base.wrapping_add(len as u32),
                    78,
                    FIN | ACK,
                    b"",
                    0,
                ));
            }
            let seq = base.wrapping_add(o as u32);
            frames.push(h.seg(
                cli(),
                srv(),
                seq,
                78,
                ACK,
                &stream[o..o + cap],
                (l - cap) as u32,
            ));
        }
        if fin_at == pieces.len() {
            frames.push(h.seg(
                cli(),
                srv(),
                base.wrapping_add(len as u32),
                78,
                FIN | ACK,
                b"",
                0,
            ));
        }
        for f in &frames {
            h.feed(f);
            if rng.chance(10) {
                h.feed(f); // the same frame captured twice
            }
        }
        h.s(78, FIN | ACK, b"");

        assert_eq!(h.ended.len(), 1, "case {case}");
        let events = &h.ended[0].session.events;
        let mut pos = 0usize;
        let mut gap_bytes = 0u64;
        let mut fin = false;
        for ev in &events[2..] {
            match ev {
                Ev::Data(C, b) => {
                    assert!(!fin, "case {case}: data after FIN");
                    assert_eq!(
                        b.as_slice(),
                        &stream[pos..pos + b.len()],
                        "case {case} at {pos}"
                    );
                    pos += b.len();
                }
                Ev::Gap(C, n) => {
                    assert!(!fin && *n > 0, "case {case}");
                    pos += *n as usize;
                    gap_bytes += n;
                }
                Ev::Fin(C) => {
                    assert_eq!(pos, len, "case {case}: delivered + gaps at FIN");
                    fin = true;
                }
                Ev::Fin(S) => assert!(fin),
                other => panic!("case {case}: unexpected {other:?}"),
            }
        }
        assert!(fin, "case {case}");
        assert_eq!(h.t.stats().gap_bytes, gap_bytes, "case {case}");
        if !lossy && unlimited {
            assert_eq!(gap_bytes, 0, "case {case}: nothing was lost");
        }
        assert_eq!(h.t.stats().buffered_bytes, 0);
    }
}

/// Random segments on a few flows, with random flags, sequence numbers, sizes, truncation,
/// timestamps (sometimes going back), expiry and tiny limits: never panics, and the table's
/// invariants hold after every step.
#[test]
fn hostile_segments_never_break_the_table() {
    let eps = [
        sa("10.0.0.1:1433"),
        sa("10.0.0.2:50000"),
        sa("10.0.0.3:50001"),
        sa("[2001:db8::1]:1433"),
        sa("[2001:db8::2]:50000"),
    ];
    let payload: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
    for round in 0..6u64 {
        let mut rng = Rng(0xA076_1D64_78BD_642F ^ round.wrapping_mul(0xE703_7ED1_A0B4_28DB) | 1);
        let limits = Limits {
            max_connections: 1 + rng.below(4) as usize,
            max_ooo_bytes_per_direction: rng.below(300) as usize,
            max_ooo_segments_per_direction: rng.below(5) as usize,
            max_buffered_bytes_total: rng.below(600) as usize,
            handshake_idle_timeout_ns: 5 * SEC,
            established_idle_timeout_ns: 50 * SEC,
            ..Limits::default()
        };
        let mut h = H::new(limits);
        h.make = |i| Rec {
            hoard: i.client.port() == 50000,
            close_only_after: (i.client.port() == 50001).then_some(2),
            ..Rec::default()
        };
        let bases = [0u32, 1 << 31, u32::MAX - 100, 12345];
        let mut prev: Option<Segment<'_>> = None;
        for _ in 0..20_000 {
            if let (Some(p), true) = (prev, rng.chance(10)) {
                h.feed(&p);
                continue;
            }
            let (a, b) = (rng.below(5) as usize, rng.below(5) as usize);
            let flags = [
                ACK,
                ACK,
                ACK | PSH,
                SYN,
                SYN | ACK,
                FIN | ACK,
                RST,
                RST | ACK,
                rng.next() as u8,
            ][rng.below(9) as usize];
            let seq = bases[rng.below(4) as usize].wrapping_add(rng.below(2000) as u32);
            let l = rng.below(120) as usize;
            let start = rng.below(200) as usize;
            let missing = if rng.chance(10) {
                rng.below(100) as u32
            } else {
                0
            };
            let s = h.seg(
                eps[a],
                eps[b],
                seq,
                rng.next() as u32,
                flags,
                &payload[start..start + l],
                missing,
            );
            if rng.chance(95) {
                h.now += rng.below(SEC);
            } else {
                h.now = h.now.saturating_sub(rng.below(10 * SEC));
            }
            h.feed(&s);
            prev = Some(s);
            if rng.chance(1) {
                h.expire(h.now);
            }
        }
        h.drain();
        assert!(h.t.is_empty());
        let st = h.t.stats();
        assert_eq!(st.buffered_bytes, 0);
        assert!(st.connections_created > 0 && st.duplicates > 0 && st.stray > 0);
        let ended = st.ended_closed
            + st.ended_idle
            + st.evicted_capacity
            + st.evicted_memory
            + st.ended_reused;
        assert!(ended <= st.connections_created);
        assert_eq!(h.ended.len() as u64, st.connections_created);
    }
}
