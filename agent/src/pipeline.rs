//! The pipeline: wires the stages together for one stream of frames (decode → conntrack → tds → tls
//! → handshake → verdict). It runs the same under `analyze` and under the live agent; threads,
//! servers and files stay outside. It owns the per-connection [`Session`] that conntrack keeps: the
//! state machine plus, while the handshake runs, the protocol parsers of both directions; and the
//! count of connections tracked now by server and stage ([`Pipeline::open_by_server_stage`]), kept
//! as sessions start, advance and end, never by scanning the table, when the pipeline is made with
//! [`Pipeline::with_open_counts`] (the live agent; `analyze` does not pay for it).

use crate::capture::{Frame, Timestamp};
use crate::config::{Config, Limits};
use crate::conntrack::{self, ConnInfo, ConnTable, Ended, Interest, Side, StreamEvent};
use crate::decode::{self, DecodeError};
use crate::handshake::{Handshake, Shared, TcpEvent, When};
use crate::tds::{TdsEvent, TdsStream};
use crate::tls::{TlsEvent, TlsStream};
use crate::verdict::{Stage, Verdict};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Servers whose certificate signature hash is remembered (to explain silent closes later).
const MAX_REMEMBERED_SERVERS: usize = 4096;

/// Connections ended at a time at the end of the input (their sessions wait in a buffer meanwhile).
const DRAIN_BATCH: usize = 1024;

/// How often (in capture time) idle connections are looked for.
const EXPIRE_EVERY_NS: u64 = 1_000_000_000;

/// The parsers of one connection, dropped once the handshake is decided.
struct Parsers {
    tds: [TdsStream; 2],
    tls: [TlsStream; 2],
}

impl Parsers {
    fn new(limits: &Limits) -> Self {
        Parsers {
            tds: [
                TdsStream::new(Side::Client, limits),
                TdsStream::new(Side::Server, limits),
            ],
            tls: [
                TlsStream::new(Side::Client, limits),
                TlsStream::new(Side::Server, limits),
            ],
        }
    }
}

/// Connection counts by server and stage, signed: the pipeline's keeps +1 per connection created
/// (at its first stage) and −1 per connection ended (at its last); the sessions' keeps the moves
/// between stages since the pipeline last folded them in. Pairs at zero are removed, so the
/// pipeline's holds at most one entry per (server, stage) with connections open.
#[derive(Debug, Default)]
struct OpenCounts {
    counts: HashMap<(SocketAddr, Stage), i64, ahash::RandomState>,
}

impl OpenCounts {
    fn add(&mut self, server: SocketAddr, stage: Stage, delta: i64) {
        let n = self.counts.entry((server, stage)).or_insert(0);
        *n += delta;
        if *n == 0 {
            self.counts.remove(&(server, stage));
        }
    }
}

/// What the sessions of a table share: the handshake's caches, and the stage moves not yet
/// folded into the pipeline's counts.
#[derive(Default)]
pub struct TableShared {
    handshake: Shared,
    moves: OpenCounts,
    /// Sessions record their moves (the pipeline keeps open counts).
    count_open: bool,
    parse_errors: ParseErrors,
}

/// Streams whose bytes stopped parsing, by layer (the decode layer's are the pipeline's own).
#[derive(Debug, Default, Clone, Copy)]
struct ParseErrors {
    /// Bytes at a packet boundary that are neither TDS nor TLS (`TdsEvent::NotTds`).
    tds: u64,
    /// TLS records or handshake messages that did not parse (`TlsEvent::Malformed`).
    tls: u64,
}

/// What conntrack keeps per connection.
pub struct Session {
    machine: Handshake,
    parsers: Option<Box<Parsers>>,
}

impl Session {
    fn new(info: &ConnInfo, limits: &Limits) -> Self {
        Session {
            machine: Handshake::new(info),
            parsers: Some(Box::new(Parsers::new(limits))),
        }
    }

    fn on_data(
        &mut self,
        shared: &mut Shared,
        errors: &mut ParseErrors,
        ts: When,
        side: Side,
        bytes: &[u8],
    ) {
        let i = side.index();
        self.machine.on_tcp(ts, TcpEvent::Data(side));
        let Some(parsers) = self.parsers.as_deref_mut() else {
            return;
        };
        let Parsers { tds, tls } = parsers;
        let (tds, tls) = (&mut tds[i], &mut tls[i]);
        let machine = &mut self.machine;
        tds.feed(bytes, &mut |ev| match ev {
            TdsEvent::TlsData { bytes, .. } => {
                tls.feed(bytes, &mut |tev| {
                    if matches!(tev, TlsEvent::Malformed { .. }) {
                        errors.tls += 1;
                    }
                    machine.on_tls(ts, side, tev);
                });
            }
            other => {
                if matches!(other, TdsEvent::NotTds) {
                    errors.tds += 1;
                }
                machine.on_tds(ts, side, &other, shared);
            }
        });
    }

    fn on_gap(&mut self, shared: &mut Shared, ts: When, side: Side, len: u64) {
        self.machine.on_tcp(ts, TcpEvent::Gap(side));
        if let Some(parsers) = self.parsers.as_deref_mut() {
            let i = side.index();
            let machine = &mut self.machine;
            parsers.tds[i].gap(len, &mut |ev| machine.on_tds(ts, side, &ev, shared));
            parsers.tls[i].gap();
        }
    }
}

impl conntrack::Session for Session {
    type Shared = TableShared;

    fn on_event(
        &mut self,
        table: &mut TableShared,
        ts: Timestamp,
        info: &ConnInfo,
        event: StreamEvent<'_>,
    ) -> Interest {
        let ts = When {
            ts,
            first_seen: info.first_seen,
        };
        let (shared, errors) = (&mut table.handshake, &mut table.parse_errors);
        let before = self.machine.stage();
        match event {
            StreamEvent::Syn => self.machine.on_tcp(ts, TcpEvent::Syn),
            StreamEvent::SynAck => self.machine.on_tcp(ts, TcpEvent::SynAck),
            StreamEvent::Data { side, bytes } => self.on_data(shared, errors, ts, side, bytes),
            StreamEvent::Gap { side, len } => self.on_gap(shared, ts, side, len),
            StreamEvent::Fin { side } => self.machine.on_tcp(ts, TcpEvent::Fin(side)),
            StreamEvent::Rst { side, ttl } => self.machine.on_tcp(ts, TcpEvent::Rst { side, ttl }),
        }
        let after = self.machine.stage();
        if after != before && table.count_open {
            let moves = &mut table.moves;
            moves.add(info.server, before, -1);
            moves.add(info.server, after, 1);
        }
        if self.machine.done() {
            self.parsers = None;
            Interest::CloseOnly
        } else {
            Interest::Payload
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.parsers.as_deref().map_or(0, |p| {
            p.tds.iter().map(TdsStream::buffered_bytes).sum::<usize>()
                + p.tls.iter().map(TlsStream::buffered_bytes).sum::<usize>()
        })
    }
}

/// Counters of the pipeline's own stages (conntrack keeps its own).
#[derive(Debug, Clone, Default)]
pub struct PipelineStats {
    pub frames: u64,
    pub segments: u64,
    pub unsupported_link: u64,
    pub not_ip: u64,
    pub not_tcp: u64,
    pub fragments: u64,
    pub malformed: u64,
    pub non_tds_flows: u64,
    pub verdicts: u64,
}

pub struct Pipeline {
    limits: Limits,
    table: ConnTable<Session>,
    ended: Vec<Ended<Session>>,
    stats: PipelineStats,
    /// Latest capture time seen (time never runs backwards for expiry).
    now: Timestamp,
    first_ts: Option<Timestamp>,
    last_expire: Timestamp,
    /// Certificate signature hash per server, from connections where it travelled in clear.
    server_cert_hash: HashMap<SocketAddr, &'static str>,
    /// Connections tracked now by server and stage, but for the moves in [`TableShared`]; kept
    /// only by a pipeline made with [`Pipeline::with_open_counts`].
    open: Option<OpenCounts>,
}

impl Pipeline {
    pub fn new(config: &Config) -> Self {
        Self::make(config, false)
    }

    /// A pipeline that also keeps the count of connections tracked now by server and stage
    /// ([`Pipeline::open_by_server_stage`]): a few map updates per connection.
    pub fn with_open_counts(config: &Config) -> Self {
        Self::make(config, true)
    }

    fn make(config: &Config, count_open: bool) -> Self {
        let shared = TableShared {
            count_open,
            ..TableShared::default()
        };
        Pipeline {
            limits: config.limits.clone(),
            table: ConnTable::new(&config.limits, &config.ports, shared),
            ended: Vec::new(),
            stats: PipelineStats::default(),
            now: Timestamp(0),
            first_ts: None,
            last_expire: Timestamp(0),
            server_cert_hash: HashMap::new(),
            open: count_open.then(OpenCounts::default),
        }
    }

    pub fn on_frame(&mut self, frame: &Frame<'_>, out: &mut dyn FnMut(Verdict)) {
        self.stats.frames += 1;
        let ts = frame.ts;
        self.first_ts.get_or_insert(ts);
        if ts > self.now {
            self.now = ts;
        }
        match decode::decode(frame.link, frame.data) {
            Ok(seg) => {
                self.stats.segments += 1;
                let (limits, open) = (&self.limits, &mut self.open);
                self.table.process(
                    ts,
                    &seg,
                    &mut |info| {
                        let session = Session::new(info, limits);
                        if let Some(open) = open.as_mut() {
                            open.add(info.server, session.machine.stage(), 1);
                        }
                        session
                    },
                    &mut self.ended,
                );
            }
            Err(e) => self.count_decode_error(e),
        }
        if self.now.since(self.last_expire) >= EXPIRE_EVERY_NS {
            self.last_expire = self.now;
            self.table.expire(self.now, &mut self.ended);
        }
        if !self.ended.is_empty() {
            self.emit(out);
        }
    }

    fn count_decode_error(&mut self, e: DecodeError) {
        let s = &mut self.stats;
        match e {
            DecodeError::UnsupportedLink => s.unsupported_link += 1,
            DecodeError::NotIp => s.not_ip += 1,
            DecodeError::NotTcp => s.not_tcp += 1,
            DecodeError::Fragment => s.fragments += 1,
            DecodeError::Truncated(_) | DecodeError::Malformed(_) => s.malformed += 1,
        }
    }

    fn emit(&mut self, out: &mut dyn FnMut(Verdict)) {
        if self.open.is_some() {
            self.fold_moves();
            if let Some(open) = self.open.as_mut() {
                for e in &self.ended {
                    open.add(e.info.server, e.session.machine.stage(), -1);
                }
            }
        }
        for ended in self.ended.drain(..) {
            let Ended {
                info,
                session,
                cause,
                twin,
                ..
            } = ended;
            if twin {
                // The same connection under other addresses: its twin gives the verdict.
                continue;
            }
            let machine = session.machine;
            if let Some(hash) = machine.certificate_hash() {
                if self.server_cert_hash.len() < MAX_REMEMBERED_SERVERS
                    || self.server_cert_hash.contains_key(&info.server)
                {
                    self.server_cert_hash.insert(info.server, hash);
                }
            }
            let known = self.server_cert_hash.get(&info.server).copied();
            match machine.finish(&info, cause, known) {
                Some(v) => {
                    self.stats.verdicts += 1;
                    out(v);
                }
                None => self.stats.non_tds_flows += 1,
            }
        }
    }

    /// The clock moved on with no packet (a quiet live capture): connections idle past their
    /// timeout end. `now` is wall-clock time; it never moves the pipeline's time backwards.
    pub fn tick(&mut self, now: Timestamp, out: &mut dyn FnMut(Verdict)) {
        if now > self.now {
            self.now = now;
        }
        self.last_expire = self.now;
        self.table.expire(self.now, &mut self.ended);
        self.emit(out);
    }

    /// End of input: every connection still open gets its verdict (outcome `unknown`).
    pub fn finish(&mut self, out: &mut dyn FnMut(Verdict)) {
        self.table.expire(self.now, &mut self.ended);
        self.emit(out);
        while self
            .table
            .drain_some(self.now, &mut self.ended, DRAIN_BATCH)
        {
            self.emit(out);
        }
        self.emit(out);
    }

    /// Folds the stage moves the sessions made into the pipeline's counts.
    fn fold_moves(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        for ((server, stage), delta) in self.table.shared_mut().moves.counts.drain() {
            open.add(server, stage, delta);
        }
    }

    /// Connections tracked now, by server and stage (pairs with none left out), sorted. Costs one
    /// pass over the distinct (server, stage) pairs with connections open (and the moves since the
    /// last connection ended), not over the table: call it per scrape or tick.
    /// Empty for a pipeline made with [`Pipeline::new`].
    pub fn open_by_server_stage(&self) -> Vec<(SocketAddr, Stage, u64)> {
        let Some(open) = self.open.as_ref() else {
            return Vec::new();
        };
        let mut all = OpenCounts {
            counts: open.counts.clone(),
        };
        for (&(server, stage), &delta) in &self.table.shared().moves.counts {
            all.add(server, stage, delta);
        }
        let mut v: Vec<_> = all
            .counts
            .into_iter()
            .filter_map(|((server, stage), n)| Some((server, stage, u64::try_from(n).ok()?)))
            .collect();
        v.sort_unstable();
        v
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Adds this pipeline's counters (frames, segments, decode errors, duplicates, non-TDS flows …)
    /// to `summary`.
    pub fn add_to_summary(&self, summary: &mut crate::output::RunSummary) {
        let s = &self.stats;
        let c = self.table.stats();
        summary.frames += s.frames;
        summary.tcp_segments += s.segments;
        summary.not_tcp += s.not_ip + s.not_tcp + s.unsupported_link + s.fragments;
        summary.decode_errors += s.malformed;
        let errors = self.table.shared().parse_errors;
        summary.tds_parse_errors += errors.tds;
        summary.tls_parse_errors += errors.tls;
        summary.dropped_segments += c.out_of_window;
        summary.duplicate_connections += c.twins;
        summary.connections_tracked += c.connections_open;
        summary.buffered_bytes += c.buffered_bytes;
        summary.duplicates += c.duplicates;
        summary.retransmissions += c.retransmissions;
        summary.gaps += c.gaps;
        summary.non_tds_flows += s.non_tds_flows;
        summary.evicted_capacity += c.evicted_capacity;
        summary.evicted_memory += c.evicted_memory;
        if let Some(first) = self.first_ts {
            summary.first_ts = Some(summary.first_ts.map_or(first, |t| t.min(first)));
            summary.last_ts = Some(summary.last_ts.map_or(self.now, |t| t.max(self.now)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{FrameSource, LinkType};
    use std::net::{Ipv4Addr, SocketAddrV4};

    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;

    /// A bare IPv4/TCP packet (LINKTYPE_RAW) with no payload.
    fn tcp(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src.ip().octets());
        p.extend_from_slice(&dst.ip().octets());
        p.extend_from_slice(&src.port().to_be_bytes());
        p.extend_from_slice(&dst.port().to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p
    }

    fn feed(p: &mut Pipeline, ms: u64, packet: &[u8], verdicts: &mut Vec<Verdict>) {
        let frame = Frame {
            ts: Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000),
            link: LinkType::Raw,
            data: packet,
            wire_len: u32::try_from(packet.len()).unwrap_or(u32::MAX),
            interface: 0,
        };
        p.on_frame(&frame, &mut |v| verdicts.push(v));
    }

    fn addr(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn open_counts_follow_start_advance_and_end() {
        let mut p = Pipeline::with_open_counts(&Config::default());
        let mut verdicts = Vec::new();
        let s1 = addr([10, 0, 0, 1], 1433);
        let s2 = addr([10, 0, 0, 2], 1433);
        let c = |port| addr([10, 0, 1, 1], port);
        assert!(p.open_by_server_stage().is_empty());

        feed(&mut p, 0, &tcp(c(40001), s1, 100, 0, SYN), &mut verdicts);
        feed(&mut p, 1, &tcp(c(40002), s1, 200, 0, SYN), &mut verdicts);
        feed(&mut p, 2, &tcp(c(40003), s2, 300, 0, SYN), &mut verdicts);
        assert_eq!(
            p.open_by_server_stage(),
            vec![(s1.into(), Stage::Syn, 2), (s2.into(), Stage::Syn, 1)]
        );

        // One of s1's connections is answered: it moves from syn to connected.
        feed(
            &mut p,
            3,
            &tcp(s1, c(40001), 900, 101, SYN | ACK),
            &mut verdicts,
        );
        assert_eq!(
            p.open_by_server_stage(),
            vec![
                (s1.into(), Stage::Syn, 1),
                (s1.into(), Stage::Connected, 1),
                (s2.into(), Stage::Syn, 1)
            ]
        );

        // s2 refuses its connection: it ends and leaves the counts.
        feed(
            &mut p,
            4,
            &tcp(s2, c(40003), 0, 301, RST | ACK),
            &mut verdicts,
        );
        assert_eq!(verdicts.len(), 1);
        assert_eq!(
            p.open_by_server_stage(),
            vec![(s1.into(), Stage::Syn, 1), (s1.into(), Stage::Connected, 1)]
        );

        // End of input: every connection gets its verdict, nothing is left open.
        p.finish(&mut |v| verdicts.push(v));
        assert_eq!(verdicts.len(), 3);
        assert!(p.open_by_server_stage().is_empty());
    }

    /// `tcp` with a payload (flags PSH|ACK).
    fn data(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = tcp(src, dst, seq, ack, ACK | 0x08);
        let total = u16::try_from(p.len() + payload.len()).unwrap_or(u16::MAX);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parse_errors_are_counted_by_layer_and_the_gauges_follow_the_table() {
        let mut p = Pipeline::new(&Config::default());
        let mut verdicts = Vec::new();
        let s = addr([10, 0, 0, 1], 1433);
        let (c1, c2) = (addr([10, 0, 1, 1], 40001), addr([10, 0, 1, 1], 40002));
        // c1 speaks HTTP to port 1433: the TDS layer gives up on the stream.
        feed(&mut p, 0, &tcp(c1, s, 100, 0, SYN), &mut verdicts);
        feed(&mut p, 1, &tcp(s, c1, 900, 101, SYN | ACK), &mut verdicts);
        feed(
            &mut p,
            2,
            &data(c1, s, 101, 901, b"GET / HTTP/1.1\r\n\r\n"),
            &mut verdicts,
        );
        // c2 opens as TDS 8.0 strict (TLS first) with a ClientHello of 4 bytes (no room for its
        // 32-byte random): the TLS layer gives up.
        feed(&mut p, 3, &tcp(c2, s, 500, 0, SYN), &mut verdicts);
        feed(&mut p, 4, &tcp(s, c2, 700, 501, SYN | ACK), &mut verdicts);
        let tls = [0x16, 3, 1, 0, 8, 0x01, 0, 0, 4, 3, 3, 0, 0];
        feed(&mut p, 5, &data(c2, s, 501, 701, &tls), &mut verdicts);
        // And one frame that is not a whole IPv4 header.
        feed(&mut p, 6, &[0x45, 0, 0], &mut verdicts);

        let mut summary = crate::output::RunSummary::default();
        p.add_to_summary(&mut summary);
        assert_eq!(
            (
                summary.decode_errors,
                summary.tds_parse_errors,
                summary.tls_parse_errors
            ),
            (1, 1, 1),
            "{summary:?}"
        );
        assert_eq!(summary.connections_tracked, 2);
        p.finish(&mut |v| verdicts.push(v));
        let mut after = crate::output::RunSummary::default();
        p.add_to_summary(&mut after);
        assert_eq!((after.connections_tracked, after.buffered_bytes), (0, 0));
    }

    /// One refused-free connection, seen by the pipeline as `client` → `server`: SYN, SYN-ACK,
    /// the client's FIN, the server's RST.
    fn short_connection(client: SocketAddrV4, server: SocketAddrV4, isn: u32) -> Vec<Vec<u8>> {
        vec![
            tcp(client, server, isn, 0, SYN),
            tcp(server, client, 7_000, isn + 1, SYN | ACK),
            tcp(client, server, isn + 1, 7_001, ACK | 0x01),
            tcp(server, client, 7_001, isn + 2, RST | ACK),
        ]
    }

    #[test]
    fn a_connection_seen_twice_under_nat_gets_one_verdict() {
        let server = addr([10, 96, 0, 10], 1433);
        let pod = addr([10, 244, 1, 5], 40001);
        let node = addr([192, 0, 2, 7], 61001);
        let real = addr([10, 0, 0, 3], 1433);
        // The pod veth sees pod → Service address; the uplink sees node → real server (SNAT and
        // DNAT); both carry the same ISNs. Frames interleave as two interfaces deliver them.
        let mut p = Pipeline::with_open_counts(&Config::default());
        let mut verdicts = Vec::new();
        let (a, b) = (
            short_connection(pod, server, 1_000),
            short_connection(node, real, 1_000),
        );
        for (i, (fa, fb)) in a.iter().zip(&b).enumerate() {
            feed(&mut p, 2 * i as u64, fa, &mut verdicts);
            feed(&mut p, 2 * i as u64 + 1, fb, &mut verdicts);
        }
        p.finish(&mut |v| verdicts.push(v));
        assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
        assert_eq!(verdicts[0].server, std::net::SocketAddr::from(server));
        let mut summary = crate::output::RunSummary::default();
        p.add_to_summary(&mut summary);
        assert_eq!(summary.duplicate_connections, 1);
        assert!(p.open_by_server_stage().is_empty());

        // Same ISNs more than the window apart, or other ISNs: two connections.
        for (gap_ms, isn_b) in [(1_500, 1_000), (0, 2_000)] {
            let mut p = Pipeline::new(&Config::default());
            let mut verdicts = Vec::new();
            for (i, f) in short_connection(pod, server, 1_000).iter().enumerate() {
                feed(&mut p, i as u64, f, &mut verdicts);
            }
            for (i, f) in short_connection(node, real, isn_b).iter().enumerate() {
                feed(&mut p, gap_ms + 10 + i as u64, f, &mut verdicts);
            }
            p.finish(&mut |v| verdicts.push(v));
            assert_eq!(verdicts.len(), 2, "gap {gap_ms} ms, isn {isn_b}");
        }
    }

    #[test]
    fn a_plain_pipeline_keeps_no_open_counts() {
        let mut p = Pipeline::new(&Config::default());
        let mut verdicts = Vec::new();
        let s1 = addr([10, 0, 0, 1], 1433);
        feed(
            &mut p,
            0,
            &tcp(addr([10, 0, 1, 1], 40001), s1, 100, 0, SYN),
            &mut verdicts,
        );
        assert_eq!(p.table.len(), 1);
        assert!(p.open_by_server_stage().is_empty());
        assert!(p.table.shared().moves.counts.is_empty());
    }

    #[test]
    fn open_counts_stay_within_the_table_and_end_at_zero() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/mixed.pcap");
        let mut source = crate::capture::file::FileSource::open(&path).expect("samples/mixed.pcap");
        let mut p = Pipeline::with_open_counts(&Config::default());
        let mut verdicts = 0u64;
        let mut peak = 0u64;
        let mut stages = std::collections::HashSet::new();
        while let Some(frame) = source.next_frame().expect("sample reads") {
            p.on_frame(&frame, &mut |_| verdicts += 1);
            let open = p.open_by_server_stage();
            let total: u64 = open.iter().map(|&(_, _, n)| n).sum();
            assert!(total <= p.table.len() as u64, "{total} > {}", p.table.len());
            assert!(open.iter().all(|&(_, _, n)| n > 0));
            stages.extend(open.iter().map(|&(_, stage, _)| stage));
            peak = peak.max(total);
        }
        p.finish(&mut |_| verdicts += 1);
        assert!(p.open_by_server_stage().is_empty());
        assert!(peak > 0 && verdicts > 0);
        assert!(stages.len() >= 3, "stages seen open: {stages:?}");
    }
}
