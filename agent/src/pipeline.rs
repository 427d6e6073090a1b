//! The pipeline: wires the stages together for one stream of frames (decode → conntrack → tds → tls
//! → handshake → verdict). It runs the same under `analyze` and under the live agent; threads,
//! servers and files stay outside. It owns the per-connection [`Session`] that conntrack keeps: the
//! state machine plus, while the handshake runs, the protocol parsers of both directions.

use crate::capture::{Frame, Timestamp};
use crate::config::{Config, Limits};
use crate::conntrack::{self, ConnInfo, ConnTable, Ended, Interest, Side, StreamEvent};
use crate::decode::{self, DecodeError};
use crate::handshake::{Handshake, Shared, TcpEvent, When};
use crate::tds::{TdsEvent, TdsStream};
use crate::tls::TlsStream;
use crate::verdict::Verdict;
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

    fn on_data(&mut self, shared: &mut Shared, ts: When, side: Side, bytes: &[u8]) {
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
                tls.feed(bytes, &mut |tev| machine.on_tls(ts, side, tev));
            }
            other => machine.on_tds(ts, side, &other, shared),
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
    type Shared = Shared;

    fn on_event(
        &mut self,
        shared: &mut Shared,
        ts: Timestamp,
        info: &ConnInfo,
        event: StreamEvent<'_>,
    ) -> Interest {
        let ts = When {
            ts,
            first_seen: info.first_seen,
        };
        match event {
            StreamEvent::Syn => self.machine.on_tcp(ts, TcpEvent::Syn),
            StreamEvent::SynAck => self.machine.on_tcp(ts, TcpEvent::SynAck),
            StreamEvent::Data { side, bytes } => self.on_data(shared, ts, side, bytes),
            StreamEvent::Gap { side, len } => self.on_gap(shared, ts, side, len),
            StreamEvent::Fin { side } => self.machine.on_tcp(ts, TcpEvent::Fin(side)),
            StreamEvent::Rst { side, ttl } => self.machine.on_tcp(ts, TcpEvent::Rst { side, ttl }),
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
}

impl Pipeline {
    pub fn new(config: &Config) -> Self {
        Pipeline {
            limits: config.limits.clone(),
            table: ConnTable::new(&config.limits, &config.ports, Shared::default()),
            ended: Vec::new(),
            stats: PipelineStats::default(),
            now: Timestamp(0),
            first_ts: None,
            last_expire: Timestamp(0),
            server_cert_hash: HashMap::new(),
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
                let limits = &self.limits;
                self.table.process(
                    ts,
                    &seg,
                    &mut |info| Session::new(info, limits),
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
        for ended in self.ended.drain(..) {
            let Ended {
                info,
                session,
                cause,
                ..
            } = ended;
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

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    pub fn conntrack_stats(&self) -> &conntrack::ConntrackStats {
        self.table.stats()
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
        summary.duplicates += c.duplicates;
        summary.retransmissions += c.retransmissions;
        summary.gaps += c.gaps;
        summary.non_tds_flows += s.non_tds_flows;
        summary.evicted += c.evicted_capacity + c.evicted_memory;
        if let Some(first) = self.first_ts {
            summary.first_ts = Some(summary.first_ts.map_or(first, |t| t.min(first)));
            summary.last_ts = Some(summary.last_ts.map_or(self.now, |t| t.max(self.now)));
        }
    }
}
