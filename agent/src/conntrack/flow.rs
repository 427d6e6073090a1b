//! One connection's compact state ([`Conn`]) and the per-segment logic: SYN/SYN-ACK, duplicate-frame
//! signatures, per-direction reassembly with wrapping sequence numbers, the bounded out-of-order
//! buffer, FIN and RST. The table (parent module) owns lookup, LRU order, eviction and ends.

use super::{ConnInfo, ConntrackStats, Interest, Session, Side, StreamEvent};
use crate::capture::Timestamp;
use crate::decode::Segment;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Farthest ahead of the next expected byte that a segment may start and still be buffered; also
/// the longest segment accepted. A TCP window is at most 1 GiB (scale 14); anything beyond is not
/// this stream.
pub(super) const MAX_AHEAD: u64 = 1 << 30;

/// `u32::MAX`: no slot (LRU and free-list links).
pub(super) const NIL: u32 = u32::MAX;

// Conn::flags
pub(super) const V6: u8 = 0x01;
pub(super) const ROLES_FROM_SYN: u8 = 0x02;
pub(super) const CLOSE_ONLY: u8 = 0x04;
/// The connection sits in the CloseOnly LRU list (lags CLOSE_ONLY until the table relinks it).
pub(super) const IN_CLOSE_LIST: u8 = 0x08;
pub(super) const ISN_KNOWN: u8 = 0x10;
pub(super) const SYNACK_SEEN: u8 = 0x20;
/// The same connection as another one in the table, seen under other addresses (NAT, a Service
/// DNAT, the pod veth and the host uplink): muted, ended without a verdict.
pub(super) const TWIN: u8 = 0x40;

// Conn::dstate[side]
const HAVE_NEXT: u8 = 0x01;
const FIN_SEEN: u8 = 0x02;
const SIG_VALID: u8 = 0x04;

/// A flow's 4-tuple as seen in one segment, addresses as 16 bytes (IPv4 mapped into IPv6 form,
/// told apart by `v6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub v6: bool,
}

fn ip16(a: &SocketAddr) -> ([u8; 16], bool) {
    match a {
        SocketAddr::V4(v4) => (v4.ip().to_ipv6_mapped().octets(), false),
        SocketAddr::V6(v6) => (v6.ip().octets(), true),
    }
}

fn socket_addr(ip: [u8; 16], port: u16, v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
    } else {
        let [.., a, b, c, d] = ip;
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port))
    }
}

impl Key {
    pub(super) fn new(src: &SocketAddr, dst: &SocketAddr) -> Key {
        let (src_ip, v6s) = ip16(src);
        let (dst_ip, v6d) = ip16(dst);
        Key {
            src_ip,
            dst_ip,
            src_port: src.port(),
            dst_port: dst.port(),
            v6: v6s | v6d,
        }
    }
}

/// Direction-independent hash of two endpoints (both directions of a flow hash alike).
#[inline]
pub(super) fn flow_hash(
    state: &ahash::RandomState,
    a: ([u8; 16], u16),
    b: ([u8; 16], u16),
    v6: bool,
) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let a = (u128::from_be_bytes(a.0), a.1);
    let b = (u128::from_be_bytes(b.0), b.1);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = state.build_hasher();
    h.write_u128(lo.0);
    h.write_u128(hi.0);
    h.write_u64((u64::from(lo.1) << 32) | (u64::from(hi.1) << 16) | u64::from(v6));
    h.finish()
}

/// Per-direction sequence state and the duplicate-frame signature of the last segment seen.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Dir {
    /// Next byte expected (valid with HAVE_NEXT).
    pub next_seq: u32,
    /// Signature of the previous segment in this direction (valid with SIG_VALID): its sequence
    /// number, its captured length and TCP flags (`len << 8 | flags`), and a mix of its ack number,
    /// IP id and uncaptured length.
    sig_seq: u32,
    sig_len_flags: u32,
    sig_mix: u32,
}

/// The signature of a segment, or `None` when it cannot be summed up exactly (payload ≥ 16 MiB).
fn signature(seg: &Segment<'_>) -> Option<(u32, u32, u32)> {
    let len = u32::try_from(seg.payload.len())
        .ok()
        .filter(|&l| l < 1 << 24)?;
    let mix = seg.ack
        ^ u32::from(seg.ip_id).wrapping_mul(0x9E37_79B1)
        ^ seg.missing.wrapping_mul(0x85EB_CA6B).rotate_left(13);
    Some((seg.seq, (len << 8) | u32::from(seg.flags.0), mix))
}

/// One connection, excluding its session and its out-of-order buffers (boxed, only while needed).
/// Kept small on purpose: see the size test.
pub(super) struct Conn {
    pub cip: [u8; 16],
    pub sip: [u8; 16],
    pub first_seen: u64,
    /// Table clock at the last packet: non-decreasing along each LRU list.
    pub last_seen: u64,
    /// LRU links (or, for a free slot, `next` is the free-list link).
    pub prev: u32,
    pub next: u32,
    pub cport: u16,
    pub sport: u16,
    pub client_isn: u32,
    /// The session's `buffered_bytes()` when last asked (saturated), counted in the total.
    pub session_bytes: u32,
    pub dirs: [Dir; 2],
    pub ooo: Option<Box<Ooo>>,
    pub dstate: [u8; 2],
    pub flags: u8,
}

impl Conn {
    pub(super) fn new(key: &Key, client_is_src: bool, first_seen: u64, last_seen: u64) -> Conn {
        let (cip, cport, sip, sport) = if client_is_src {
            (key.src_ip, key.src_port, key.dst_ip, key.dst_port)
        } else {
            (key.dst_ip, key.dst_port, key.src_ip, key.src_port)
        };
        Conn {
            cip,
            sip,
            first_seen,
            last_seen,
            prev: NIL,
            next: NIL,
            cport,
            sport,
            client_isn: 0,
            session_bytes: 0,
            dirs: [Dir::default(); 2],
            ooo: None,
            dstate: [0; 2],
            flags: if key.v6 { V6 } else { 0 },
        }
    }

    /// Which side sent a segment with this key, if it belongs to this connection.
    #[inline]
    pub(super) fn side_of(&self, key: &Key) -> Option<Side> {
        if key.v6 != (self.flags & V6 != 0) {
            return None;
        }
        if key.src_port == self.cport
            && key.dst_port == self.sport
            && key.src_ip == self.cip
            && key.dst_ip == self.sip
        {
            Some(Side::Client)
        } else if key.src_port == self.sport
            && key.dst_port == self.cport
            && key.src_ip == self.sip
            && key.dst_ip == self.cip
        {
            Some(Side::Server)
        } else {
            None
        }
    }

    pub(super) fn hash(&self, state: &ahash::RandomState) -> u64 {
        flow_hash(
            state,
            (self.cip, self.cport),
            (self.sip, self.sport),
            self.flags & V6 != 0,
        )
    }

    pub(super) fn info(&self) -> ConnInfo {
        let v6 = self.flags & V6 != 0;
        ConnInfo {
            client: socket_addr(self.cip, self.cport, v6),
            server: socket_addr(self.sip, self.sport, v6),
            first_seen: Timestamp(self.first_seen),
            last_seen: Timestamp(self.last_seen),
            roles_from_syn: self.flags & ROLES_FROM_SYN != 0,
        }
    }

    pub(super) fn close_only(&self) -> bool {
        self.flags & CLOSE_ONLY != 0
    }

    /// Is `seg` the same frame as the previous segment from `side`? Records it as the previous
    /// one when not.
    #[inline]
    pub(super) fn duplicate(&mut self, side: Side, seg: &Segment<'_>) -> bool {
        let i = side.index();
        let sig = signature(seg);
        let (Some(st), Some(dir)) = (self.dstate.get_mut(i), self.dirs.get_mut(i)) else {
            return false;
        };
        match sig {
            Some((seq, len_flags, mix)) => {
                if *st & SIG_VALID != 0
                    && dir.sig_seq == seq
                    && dir.sig_len_flags == len_flags
                    && dir.sig_mix == mix
                {
                    return true;
                }
                dir.sig_seq = seq;
                dir.sig_len_flags = len_flags;
                dir.sig_mix = mix;
                *st |= SIG_VALID;
            }
            None => *st &= !SIG_VALID,
        }
        false
    }

    pub(super) fn ooo_bytes(&self) -> usize {
        self.ooo
            .as_ref()
            .map_or(0, |o| o.dirs.iter().map(|d| d.bytes).sum())
    }

    fn fin_seen(&self, side: Side) -> bool {
        self.dstate[side.index()] & FIN_SEEN != 0
    }

    pub(super) fn both_fin(&self) -> bool {
        self.fin_seen(Side::Client) && self.fin_seen(Side::Server)
    }
}

/// Out-of-order segments of both directions of one connection.
#[derive(Default)]
pub(super) struct Ooo {
    dirs: [OooDir; 2],
}

#[derive(Default)]
struct OooDir {
    /// Non-overlapping, all strictly ahead of the direction's next expected byte, sorted by
    /// *descending* offset from it (the next one to deliver is last: `pop()`).
    segs: Vec<OooSeg>,
    /// Captured bytes held in `segs`.
    bytes: usize,
}

struct OooSeg {
    seq: u32,
    data: Box<[u8]>,
    /// Bytes after `data` that were never captured (a Gap when delivered).
    missing: u64,
}

impl OooSeg {
    fn span(&self) -> u64 {
        self.data.len() as u64 + self.missing
    }
}

/// Out-of-order buffer limits, per direction.
#[derive(Debug, Clone, Copy)]
pub(super) struct OooLimits {
    pub bytes: usize,
    pub segments: usize,
}

enum Buffered {
    Stored,
    Covered,
    Full,
}

/// One connection's state and session while one segment (or an end) is handled.
pub(super) struct Flow<'a, S: Session> {
    pub conn: &'a mut Conn,
    pub session: &'a mut S,
    pub stats: &'a mut ConntrackStats,
    pub shared: &'a mut S::Shared,
    pub limits: OooLimits,
    pub ts: Timestamp,
    info: Option<ConnInfo>,
}

/// Signed distance from `from` to `to` in sequence space.
#[inline]
fn rel(to: u32, from: u32) -> i32 {
    to.wrapping_sub(from) as i32
}

impl<'a, S: Session> Flow<'a, S> {
    pub(super) fn new(
        conn: &'a mut Conn,
        session: &'a mut S,
        stats: &'a mut ConntrackStats,
        shared: &'a mut S::Shared,
        limits: OooLimits,
        ts: Timestamp,
    ) -> Self {
        Flow {
            conn,
            session,
            stats,
            shared,
            limits,
            ts,
            info: None,
        }
    }

    fn emit(&mut self, ev: StreamEvent<'_>) {
        let info = match self.info {
            Some(info) => info,
            None => {
                let info = self.conn.info();
                self.info = Some(info);
                info
            }
        };
        let interest = self.session.on_event(self.shared, self.ts, &info, ev);
        let now = u32::try_from(self.session.buffered_bytes()).unwrap_or(u32::MAX);
        let before = self.conn.session_bytes;
        if now != before {
            self.stats.buffered_bytes = self
                .stats
                .buffered_bytes
                .saturating_sub(u64::from(before))
                .saturating_add(u64::from(now));
            self.conn.session_bytes = now;
        }
        if interest == Interest::CloseOnly && !self.conn.close_only() {
            self.conn.flags |= CLOSE_ONLY;
            self.drop_ooo(Side::Client);
            self.drop_ooo(Side::Server);
        }
    }

    fn gap(&mut self, side: Side, len: u64) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += len;
        self.emit(StreamEvent::Gap { side, len });
    }

    fn next_seq(&self, side: Side) -> u32 {
        self.conn.dirs[side.index()].next_seq
    }

    fn set_next_seq(&mut self, side: Side, seq: u32) {
        self.conn.dirs[side.index()].next_seq = seq;
    }

    fn ooo_dir(&self, side: Side) -> Option<&OooDir> {
        self.conn.ooo.as_ref().map(|o| &o.dirs[side.index()])
    }

    /// Sequence number of the next buffered segment of `side`.
    fn first_buffered(&self, side: Side) -> Option<u32> {
        self.ooo_dir(side)
            .and_then(|d| d.segs.last())
            .map(|s| s.seq)
    }

    /// Frees `side`'s buffer (and the box when both are empty).
    fn drop_ooo(&mut self, side: Side) {
        if let Some(ooo) = self.conn.ooo.as_mut() {
            let dir = std::mem::take(&mut ooo.dirs[side.index()]);
            self.stats.buffered_bytes = self.stats.buffered_bytes.saturating_sub(dir.bytes as u64);
        }
        self.free_ooo_if_empty();
    }

    fn free_ooo_if_empty(&mut self) {
        if self
            .conn
            .ooo
            .as_ref()
            .is_some_and(|o| o.dirs.iter().all(|d| d.segs.is_empty()))
        {
            self.conn.ooo = None;
        }
    }

    /// Handles one segment of this connection from `side` (the duplicate check and the SYN
    /// without ACK of an existing connection are the table's). Returns true when the connection
    /// is now closed (RST, or both FINs).
    pub(super) fn segment(&mut self, side: Side, seg: &Segment<'_>) -> bool {
        let f = seg.flags;
        if f.rst() {
            self.rst(side, seg.ttl);
            return true;
        }
        let mut seq = seg.seq;
        if f.syn() {
            seq = seq.wrapping_add(1);
            if !f.ack() {
                self.syn(seg.seq);
            } else if side == Side::Server {
                self.syn_ack(seg.seq, seg.ack, seg.payload.is_empty());
            } else {
                // A SYN+ACK from the client: simultaneous open or nonsense; not ours to interpret.
                return false;
            }
        }
        let missing = u64::from(seg.missing);
        self.data(side, seq, seg.payload, missing);
        if f.fin() {
            let span = seg.payload.len() as u64 + missing;
            self.fin(side, seq.wrapping_add(span as u32));
        }
        self.conn.both_fin()
    }

    /// The client's SYN creating this connection.
    fn syn(&mut self, isn: u32) {
        self.conn.client_isn = isn;
        self.conn.flags |= ISN_KNOWN | ROLES_FROM_SYN;
        self.conn.dirs[0].next_seq = isn.wrapping_add(1);
        self.conn.dstate[0] |= HAVE_NEXT;
        self.emit(StreamEvent::Syn);
    }

    fn syn_ack(&mut self, isn: u32, ack: u32, no_payload: bool) {
        if self.conn.flags & SYNACK_SEEN != 0 {
            if no_payload {
                self.stats.retransmissions += 1;
            }
            return;
        }
        self.conn.flags |= SYNACK_SEEN;
        let s = Side::Server.index();
        if self.conn.dstate[s] & HAVE_NEXT == 0 {
            self.conn.dirs[s].next_seq = isn.wrapping_add(1);
            self.conn.dstate[s] |= HAVE_NEXT;
        }
        if self.conn.flags & ISN_KNOWN == 0 {
            // The SYN was not seen: the SYN-ACK acknowledges the client's ISN.
            self.conn.client_isn = ack.wrapping_sub(1);
            self.conn.flags |= ISN_KNOWN;
            let c = Side::Client.index();
            if self.conn.dstate[c] & HAVE_NEXT == 0 {
                self.conn.dirs[c].next_seq = ack;
                self.conn.dstate[c] |= HAVE_NEXT;
            }
        }
        self.emit(StreamEvent::SynAck);
    }

    /// Payload from `side` starting at `seq`: `payload` captured, then `missing` bytes not.
    fn data(&mut self, side: Side, mut seq: u32, mut payload: &[u8], mut missing: u64) {
        let i = side.index();
        if self.conn.close_only() || self.conn.dstate[i] & FIN_SEEN != 0 {
            return;
        }
        let mut span = payload.len() as u64 + missing;
        if span == 0 {
            return;
        }
        if span > MAX_AHEAD {
            self.stats.out_of_window += 1;
            return;
        }
        if self.conn.dstate[i] & HAVE_NEXT == 0 {
            // Joined mid-stream: this direction starts here.
            self.conn.dirs[i].next_seq = seq;
            self.conn.dstate[i] |= HAVE_NEXT;
        }
        loop {
            if self.conn.close_only() {
                return;
            }
            let next = self.next_seq(side);
            let r = rel(seq, next);
            if r < 0 {
                let behind = u64::from(r.unsigned_abs());
                if behind >= span {
                    self.stats.retransmissions += 1;
                    return;
                }
                let cut = behind.min(payload.len() as u64);
                payload = payload.get(cut as usize..).unwrap_or(&[]);
                missing = missing.saturating_sub(behind - cut);
                span -= behind;
                seq = next;
                continue;
            }
            let ahead = r as u64;
            if ahead == 0 {
                self.deliver(side, payload, missing);
                self.deliver_ready(side);
                return;
            }
            if ahead > MAX_AHEAD {
                self.stats.out_of_window += 1;
                return;
            }
            match self.buffer(side, ahead, payload, missing) {
                Buffered::Stored => {
                    self.stats.out_of_order += 1;
                    return;
                }
                Buffered::Covered => {
                    self.stats.retransmissions += 1;
                    return;
                }
                Buffered::Full => {
                    // Give up the first hole (delivering what follows it) and try again; with
                    // nothing buffered, give up the hole before this segment.
                    if !self.skip_hole(side) {
                        self.set_next_seq(side, seq);
                        self.gap(side, ahead);
                    }
                }
            }
        }
    }

    /// In-order bytes: `payload` then a Gap of `missing`.
    fn deliver(&mut self, side: Side, payload: &[u8], missing: u64) {
        if !payload.is_empty() {
            let next = self.next_seq(side).wrapping_add(payload.len() as u32);
            self.set_next_seq(side, next);
            if !self.conn.close_only() {
                self.emit(StreamEvent::Data {
                    side,
                    bytes: payload,
                });
            }
        }
        if missing > 0 {
            let next = self.next_seq(side).wrapping_add(missing as u32);
            self.set_next_seq(side, next);
            if !self.conn.close_only() {
                self.gap(side, missing);
            }
        }
    }

    /// Delivers buffered segments that the next expected byte has reached.
    fn deliver_ready(&mut self, side: Side) {
        let i = side.index();
        loop {
            if self.conn.close_only() {
                return;
            }
            let next = self.next_seq(side);
            let Some(ooo) = self.conn.ooo.as_mut() else {
                return;
            };
            let dir = &mut ooo.dirs[i];
            let Some(first) = dir.segs.last() else { break };
            let r = rel(first.seq, next);
            if r > 0 {
                break;
            }
            let Some(seg) = dir.segs.pop() else { break };
            dir.bytes = dir.bytes.saturating_sub(seg.data.len());
            self.stats.buffered_bytes = self
                .stats
                .buffered_bytes
                .saturating_sub(seg.data.len() as u64);
            let behind = u64::from(r.unsigned_abs());
            if behind >= seg.span() {
                continue;
            }
            let cut = behind.min(seg.data.len() as u64);
            let data = seg.data.get(cut as usize..).unwrap_or(&[]);
            self.deliver(side, data, seg.missing.saturating_sub(behind - cut));
        }
        self.free_ooo_if_empty();
    }

    /// Buffers the parts of a segment `ahead` bytes past the next expected byte that no buffered
    /// segment covers, if the limits allow.
    fn buffer(&mut self, side: Side, ahead: u64, payload: &[u8], missing: u64) -> Buffered {
        let next = self.next_seq(side);
        let plen = payload.len() as u64;
        let (start, end) = (ahead, ahead + plen + missing);
        // The uncovered pieces [p, q), as offsets from `next`.
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let (have_segs, have_bytes) = match self.ooo_dir(side) {
            Some(dir) => {
                let mut cur = start;
                for s in dir.segs.iter().rev() {
                    if cur >= end {
                        break;
                    }
                    let a = u64::from(s.seq.wrapping_sub(next));
                    let b = a + s.span();
                    if b <= cur {
                        continue;
                    }
                    if a > cur {
                        pieces.push((cur, a.min(end)));
                    }
                    cur = cur.max(b);
                }
                if cur < end {
                    pieces.push((cur, end));
                }
                (dir.segs.len(), dir.bytes)
            }
            None => {
                pieces.push((start, end));
                (0, 0)
            }
        };
        if pieces.is_empty() {
            return Buffered::Covered;
        }
        // Captured bytes of a piece: its overlap with [start, start + plen).
        let data_range = |p: u64, q: u64| ((p - start).min(plen), (q - start).min(plen));
        let new_bytes: u64 = pieces
            .iter()
            .map(|&(p, q)| {
                let (a, b) = data_range(p, q);
                b - a
            })
            .sum();
        if have_segs.saturating_add(pieces.len()) > self.limits.segments
            || have_bytes as u64 + new_bytes > self.limits.bytes as u64
        {
            return Buffered::Full;
        }
        let ooo = self.conn.ooo.get_or_insert_with(Box::default);
        let dir = &mut ooo.dirs[side.index()];
        for (p, q) in pieces {
            let (a, b) = data_range(p, q);
            let data: Box<[u8]> = payload.get(a as usize..b as usize).unwrap_or(&[]).into();
            let seg = OooSeg {
                seq: next.wrapping_add(p as u32),
                missing: (q - p) - (b - a),
                data,
            };
            let at = dir
                .segs
                .partition_point(|s| u64::from(s.seq.wrapping_sub(next)) > p);
            dir.bytes += seg.data.len();
            dir.segs.insert(at, seg);
        }
        self.stats.buffered_bytes += new_bytes;
        Buffered::Stored
    }

    /// Declares the hole before the first buffered segment of `side` lost and delivers what
    /// follows it. False when nothing is buffered.
    fn skip_hole(&mut self, side: Side) -> bool {
        let Some(first) = self.first_buffered(side) else {
            return false;
        };
        let r = rel(first, self.next_seq(side));
        self.set_next_seq(side, first);
        if r > 0 {
            self.gap(side, u64::from(r.unsigned_abs()));
        }
        self.deliver_ready(side);
        true
    }

    /// Delivers everything buffered for `side`, declaring the holes lost.
    pub(super) fn flush(&mut self, side: Side) {
        while !self.conn.close_only() && self.skip_hole(side) {}
    }

    /// The FIN of `side` at sequence number `fin_seq`.
    fn fin(&mut self, side: Side, fin_seq: u32) {
        let i = side.index();
        if self.conn.dstate[i] & FIN_SEEN != 0 {
            self.stats.retransmissions += 1;
            return;
        }
        if !self.conn.close_only() && self.conn.dstate[i] & HAVE_NEXT != 0 {
            let r = rel(fin_seq, self.next_seq(side));
            if r > 0 && r as u64 > MAX_AHEAD {
                self.stats.out_of_window += 1;
                return;
            }
            // Everything before the FIN is delivered now, holes declared lost.
            while !self.conn.close_only() {
                let next = self.next_seq(side);
                match self.first_buffered(side) {
                    Some(first) if rel(first, next) < rel(fin_seq, next) => {
                        self.skip_hole(side);
                    }
                    _ => break,
                }
            }
            let r = rel(fin_seq, self.next_seq(side));
            if r > 0 && !self.conn.close_only() {
                self.set_next_seq(side, fin_seq);
                self.gap(side, u64::from(r.unsigned_abs()));
            }
        }
        self.drop_ooo(side);
        self.conn.dstate[i] |= FIN_SEEN;
        self.emit(StreamEvent::Fin { side });
    }

    fn rst(&mut self, side: Side, ttl: u8) {
        self.flush(side);
        self.flush(side.other());
        self.emit(StreamEvent::Rst { side, ttl });
    }
}
