//! The generator: builds the template pool, schedules N connections at a steady rate (overlapping
//! in time), plays each template over TCP with its own addresses, ports, ISNs and timings, merges
//! all packets in timestamp order into the pcap, and writes one truth line per connection.

use crate::pcap::{self, Endpoint, PcapWriter, Segment, RST, SYN};
use crate::rng::Rng;
use crate::scenario::{self, Expected, Scenario, Template};
use crate::tcp::{self, Pkt};
use crate::tls::Materials;
use crate::Side;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::net::Ipv4Addr;

pub type Result<T> = crate::tls::Result<T>;

/// Client addresses: 10.30.x.y, this many of them, used in turn.
pub const CLIENT_POOL: u64 = 2039;
/// Ephemeral ports per client address (49152..=65535).
pub const EPHEMERAL_PORTS: u64 = 16_384;
/// Most connections one file can hold with every (client address, port) pair distinct.
pub const MAX_CONNECTIONS: u64 = CLIENT_POOL * EPHEMERAL_PORTS;
pub const SERVER_PORT: u16 = 1433;
pub const MAX_SERVERS: u32 = 60_000;
/// 2025-03-03T09:00:00Z: captures start here so that the output does not depend on the clock.
pub const DEFAULT_START_US: u64 = 1_741_006_800 * 1_000_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub connections: u64,
    pub seed: u64,
    /// Number of server addresses (10.20.x.y, port 1433).
    pub servers: u32,
    /// Every connection completes a login-only handshake and LOGINACK and never closes.
    pub open: bool,
    /// Connections started per second.
    pub rate: u32,
    /// Templates built per scenario (each is a separate real handshake).
    pub templates: u32,
    /// Scenario weights; a scenario with weight 0 is not generated.
    pub weights: Vec<(Scenario, u32)>,
    /// Take the scenarios in turn instead of drawing them by weight (small checks).
    pub cycle: bool,
    pub start_us: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            connections: 100_000,
            seed: 1,
            servers: 4,
            open: false,
            rate: 2_000,
            templates: 4,
            weights: Scenario::ALL
                .iter()
                .map(|&s| (s, s.default_weight()))
                .collect(),
            cycle: false,
            start_us: DEFAULT_START_US,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub connections: u64,
    pub packets: u64,
    /// ClientHello messages sent (one per TLS connection).
    pub handshakes: u64,
    /// Bytes of the pcap file.
    pub bytes: u64,
}

#[derive(Serialize)]
struct TruthLine<'a> {
    client: String,
    server: String,
    #[serde(flatten)]
    expected: &'a Expected,
}

struct Live {
    pkts: Vec<Pkt>,
    next: usize,
    scenario: usize,
    template: usize,
    client: Endpoint,
    server: Endpoint,
    ip_id: [u16; 2],
}

fn client_endpoint(i: u64, base_ports: &[u16]) -> Endpoint {
    let k = i % CLIENT_POOL;
    let round = i / CLIENT_POOL;
    let ip = Ipv4Addr::new(10, 30, 1 + (k / 250) as u8, 1 + (k % 250) as u8);
    let base = u64::from(base_ports.get(k as usize).copied().unwrap_or(0));
    let port = 49_152 + ((base + round) % EPHEMERAL_PORTS) as u16;
    Endpoint::new(ip, port)
}

fn server_endpoint(s: u32) -> Endpoint {
    let ip = Ipv4Addr::new(10, 20, (s / 240) as u8, 10 + (s % 240) as u8);
    Endpoint::new(ip, SERVER_PORT)
}

fn render(frame: &mut Vec<u8>, live: &mut Live, tpl: &Template, p: &Pkt) {
    let (src, dst) = match p.from {
        Side::Client => (&live.client, &live.server),
        Side::Server => (&live.server, &live.client),
    };
    let syn = p.flags & SYN != 0;
    let window = match (p.from, syn) {
        _ if p.flags & RST != 0 => 0,
        (Side::Client, true) => 64_240,
        (Side::Server, true) => 65_535,
        (Side::Client, false) => 513,
        (Side::Server, false) => 1_026,
    };
    let side = p.from.index();
    let ip_id = live.ip_id.get(side).copied().unwrap_or(0);
    if let Some(id) = live.ip_id.get_mut(side) {
        *id = id.wrapping_add(1);
    }
    let seg = Segment {
        seq: p.seq,
        ack: p.ack,
        flags: p.flags,
        window,
        syn_options: syn,
        ip_id,
        // Seen next to the server: its packets leave with 128, the client's are one hop away.
        ttl: if p.from == Side::Server { 128 } else { 127 },
    };
    let start = p.off as usize;
    let payload = tpl
        .data
        .get(start..start + p.len as usize)
        .unwrap_or_default();
    pcap::build_frame(frame, src, dst, &seg, payload);
}

/// The scenarios in use with their weights, and each one's templates (same order).
pub struct TemplatePool {
    pub mix: Vec<(Scenario, u32)>,
    pub templates: Vec<Vec<Template>>,
}

/// Builds every template the configuration needs.
pub fn build_templates(cfg: &Config, m: &Materials) -> Result<TemplatePool> {
    let mix: Vec<(Scenario, u32)> = if cfg.open {
        vec![(Scenario::LoginOnlyTls12, 1)]
    } else {
        cfg.weights
            .iter()
            .copied()
            .filter(|&(_, w)| w > 0)
            .collect()
    };
    if mix.is_empty() {
        return Err("every scenario has weight 0".into());
    }
    let mut pools = Vec::with_capacity(mix.len());
    for &(s, _) in &mix {
        let mut pool = Vec::with_capacity(cfg.templates as usize);
        for v in 0..cfg.templates.max(1) {
            pool.push(scenario::build(s, v, cfg.open, m)?);
        }
        pools.push(pool);
    }
    Ok(TemplatePool {
        mix,
        templates: pools,
    })
}

/// Writes the capture to `pcap_out` and, when given, the truth lines to `truth_out`.
pub fn generate<W: Write, T: Write>(
    cfg: &Config,
    pcap_out: &mut W,
    mut truth_out: Option<&mut T>,
) -> Result<Summary> {
    if cfg.connections > MAX_CONNECTIONS {
        return Err(format!(
            "at most {MAX_CONNECTIONS} connections (distinct client address and port)"
        )
        .into());
    }
    if cfg.servers == 0 || cfg.servers > MAX_SERVERS {
        return Err(format!("--servers must be 1..={MAX_SERVERS}").into());
    }
    if cfg.rate == 0 {
        return Err("--rate must be at least 1".into());
    }
    let materials = Materials::generate()?;
    let TemplatePool {
        mix,
        templates: pools,
    } = build_templates(cfg, &materials)?;
    let total_weight: u64 = mix.iter().map(|&(_, w)| u64::from(w)).sum();

    let root = Rng::new(cfg.seed);
    let mut port_rng = root.fork(1);
    let base_ports: Vec<u16> = (0..CLIENT_POOL)
        .map(|_| port_rng.below(EPHEMERAL_PORTS) as u16)
        .collect();
    let interval_ns = 1_000_000_000 / u64::from(cfg.rate);

    let mut w = PcapWriter::new(&mut *pcap_out)?;
    let mut summary = Summary::default();
    let mut slots: Vec<Option<Live>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut spare: Vec<Vec<Pkt>> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut frame = Vec::with_capacity(2048);
    let mut next_conn: u64 = 0;
    let mut next_start = cfg.start_us;

    loop {
        let start_new = next_conn < cfg.connections
            && heap
                .peek()
                .is_none_or(|Reverse((ts, _, _))| *ts >= next_start);
        if start_new {
            let i = next_conn;
            let mut r = root.fork(0x1000_0000 + i);
            let si = if cfg.cycle {
                (i % mix.len() as u64) as usize
            } else {
                let mut x = r.below(total_weight);
                let mut k = 0;
                for (j, &(_, wgt)) in mix.iter().enumerate() {
                    if x < u64::from(wgt) {
                        k = j;
                        break;
                    }
                    x -= u64::from(wgt);
                }
                k
            };
            let pool = pools.get(si).ok_or("no template pool")?;
            let ti = r.below(pool.len() as u64) as usize;
            let tpl = pool.get(ti).ok_or("no template")?;
            let client = client_endpoint(i, &base_ports);
            let server = server_endpoint(r.below(u64::from(cfg.servers)) as u32);
            let isn = [r.next_u32(), r.next_u32()];
            let ip_id = [r.next_u32() as u16, r.next_u32() as u16];
            let mut pkts = spare.pop().unwrap_or_default();
            pkts.clear();
            tcp::play(&tpl.steps, next_start, isn, &mut r, &mut pkts);
            if let Some(t) = truth_out.as_deref_mut() {
                let line = TruthLine {
                    client: format!("{}:{}", client.ip, client.port),
                    server: format!("{}:{}", server.ip, server.port),
                    expected: &tpl.expected,
                };
                serde_json::to_writer(&mut *t, &line)?;
                t.write_all(b"\n")?;
            }
            summary.connections += 1;
            summary.handshakes += u64::from(tpl.expected.client_hellos);
            let live = Live {
                pkts,
                next: 0,
                scenario: si,
                template: ti,
                client,
                server,
                ip_id,
            };
            let slot = match free.pop() {
                Some(s) => {
                    if let Some(x) = slots.get_mut(s) {
                        *x = Some(live);
                    }
                    s
                }
                None => {
                    slots.push(Some(live));
                    slots.len() - 1
                }
            };
            if let Some(first) = slots
                .get(slot)
                .and_then(|l| l.as_ref())
                .and_then(|l| l.pkts.first())
            {
                heap.push(Reverse((first.ts, i, slot)));
            }
            next_conn += 1;
            let base_ns = next_conn.saturating_mul(interval_ns);
            let jitter = r.below(interval_ns / 2);
            next_start = cfg.start_us + (base_ns + jitter) / 1_000;
            continue;
        }
        let Some(Reverse((_, conn, slot))) = heap.pop() else {
            break;
        };
        let Some(live) = slots.get_mut(slot).and_then(|l| l.as_mut()) else {
            continue;
        };
        let Some(p) = live.pkts.get(live.next).copied() else {
            continue;
        };
        let tpl = pools
            .get(live.scenario)
            .and_then(|p| p.get(live.template))
            .ok_or("template vanished")?;
        render(&mut frame, live, tpl, &p);
        w.write_packet(p.ts, &frame)?;
        live.next += 1;
        if let Some(n) = live.pkts.get(live.next) {
            heap.push(Reverse((n.ts, conn, slot)));
        } else if let Some(done) = slots.get_mut(slot).and_then(Option::take) {
            spare.push(done.pkts);
            free.push(slot);
        }
    }
    summary.packets = w.packets;
    summary.bytes = w.bytes;
    pcap_out.flush()?;
    if let Some(t) = truth_out {
        t.flush()?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashMap;

    /// A packet as an independent reader sees it.
    #[derive(Debug, Clone)]
    struct P {
        ts: u64,
        src: String,
        dst: String,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: Vec<u8>,
    }

    fn rd16(b: &[u8], at: usize) -> usize {
        usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
    }

    fn parse_pcap(b: &[u8]) -> Vec<P> {
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        let mut out = Vec::new();
        let mut at = 24;
        while at < b.len() {
            let sec = u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
            let usec = u64::from(u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()));
            let len = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
            let f = &b[at + 16..at + 16 + len];
            at += 16 + len;
            assert_eq!(&f[12..14], &[8, 0]);
            let ip = &f[14..];
            assert_eq!(ip[0], 0x45);
            assert_eq!(rd16(ip, 2), len - 14);
            assert_eq!(ip[9], 6);
            let tcp = &ip[20..];
            let hl = usize::from(tcp[12] >> 4) * 4;
            let a = |o: &[u8], port: usize| format!("{}.{}.{}.{}:{}", o[0], o[1], o[2], o[3], port);
            out.push(P {
                ts: sec * 1_000_000 + usec,
                src: a(&ip[12..16], rd16(tcp, 0)),
                dst: a(&ip[16..20], rd16(tcp, 2)),
                flags: tcp[13],
                seq: u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                ack: u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
                payload: tcp[hl..].to_vec(),
            });
        }
        out
    }

    /// A byte stream cut into TDS packets and TLS records (their type bytes do not overlap).
    #[derive(Debug)]
    enum Unit {
        Tds(u8, Vec<u8>),
        Tls(u8, Vec<u8>),
    }

    fn units(stream: &[u8]) -> Vec<Unit> {
        let mut out = Vec::new();
        let mut s = stream;
        while !s.is_empty() {
            match s[0] {
                20..=23 => {
                    let l = rd16(s, 3);
                    out.push(Unit::Tls(s[0], s[5..5 + l].to_vec()));
                    s = &s[5 + l..];
                }
                0x01 | 0x04 | 0x10 | 0x12 => {
                    let l = rd16(s, 2);
                    out.push(Unit::Tds(s[0], s[8..l].to_vec()));
                    s = &s[l..];
                }
                x => panic!("unexpected stream byte {x:#x}"),
            }
        }
        out
    }

    /// TLS records of a stream: those wrapped in PRELOGIN packets (after the first, which is the
    /// PRELOGIN itself, unless `strict`) and the bare ones, in order.
    fn tls_records(us: &[Unit], strict: bool) -> Vec<(u8, Vec<u8>)> {
        let mut wrapped = Vec::new();
        let mut out = Vec::new();
        let mut seen_prelogin = strict;
        let flush = |wrapped: &mut Vec<u8>, out: &mut Vec<(u8, Vec<u8>)>| {
            let mut s = wrapped.as_slice();
            while s.len() >= 5 {
                let l = rd16(s, 3);
                out.push((s[0], s[5..5 + l].to_vec()));
                s = &s[5 + l..];
            }
            wrapped.clear();
        };
        for u in us {
            match u {
                Unit::Tds(0x12, p) | Unit::Tds(0x04, p) if !seen_prelogin => {
                    let _ = p;
                    seen_prelogin = true;
                }
                Unit::Tds(0x12, p) => wrapped.extend_from_slice(p),
                Unit::Tls(ct, body) => {
                    flush(&mut wrapped, &mut out);
                    out.push((*ct, body.clone()));
                }
                Unit::Tds(..) => flush(&mut wrapped, &mut out),
            }
        }
        flush(&mut wrapped, &mut out);
        out
    }

    fn server_hello(records: &[(u8, Vec<u8>)]) -> Option<(&'static str, &'static str)> {
        let (_, body) = records
            .iter()
            .find(|(ct, b)| *ct == 22 && b.first() == Some(&2))?;
        let sh = &body[4..];
        let sid = usize::from(sh[34]);
        let suite = rd16(sh, 35 + sid);
        let mut version = rd16(sh, 0);
        let mut e = 35 + sid + 3 + 2;
        while e + 4 <= sh.len() {
            let (ty, l) = (rd16(sh, e), rd16(sh, e + 2));
            if ty == 0x2b {
                version = rd16(sh, e + 4);
            }
            e += 4 + l;
        }
        let v = match version {
            0x0303 => "TLSv1.2",
            0x0304 => "TLSv1.3",
            _ => "other",
        };
        let s = match suite {
            0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
            0x1302 => "TLS_AES_256_GCM_SHA384",
            0x1301 => "TLS_AES_128_GCM_SHA256",
            _ => "other",
        };
        Some((v, s))
    }

    fn prelogin_encryption(us: &[Unit], ty: u8) -> Option<u8> {
        us.iter().find_map(|u| match u {
            Unit::Tds(t, p) if *t == ty && p.first() == Some(&0) => {
                let mut i = 0;
                while p[i] != 0xff {
                    if p[i] == 1 {
                        return Some(p[rd16(p, i + 1)]);
                    }
                    i += 5;
                }
                None
            }
            _ => None,
        })
    }

    fn opt_str(v: &Value) -> Option<&str> {
        v.as_str()
    }

    /// Checks one connection's packets against its truth line, with nothing but the bytes.
    fn check_connection(t: &Value, pk: &[&P]) {
        let client = t["client"].as_str().unwrap();
        let server = t["server"].as_str().unwrap();
        let scen = t["scenario"].as_str().unwrap();
        let from_client = |p: &P| p.src == client;
        assert!(!pk.is_empty(), "{scen}: no packets");
        assert_eq!(pk[0].flags, SYN, "{scen}: starts with a SYN");
        assert!(from_client(pk[0]));
        assert!(pk.windows(2).all(|w| w[0].ts <= w[1].ts));
        // sequence and acknowledgement bookkeeping
        let mut next: HashMap<bool, u32> = HashMap::new();
        for p in pk {
            let c = from_client(p);
            if p.flags & SYN != 0 {
                next.insert(c, p.seq.wrapping_add(1));
                if p.flags & pcap::ACK != 0 {
                    assert_eq!(p.ack, next[&!c]);
                }
                continue;
            }
            if scen == "refused" {
                assert_eq!(p.flags, RST | pcap::ACK);
                assert_eq!(p.ack, next[&true]);
                continue;
            }
            assert_eq!(p.seq, next[&c], "{scen}: seq continuity");
            assert!(p.payload.len() <= tcp::MSS);
            if p.flags & pcap::ACK != 0 {
                assert_eq!(p.ack, next[&!c], "{scen}: ack of everything seen");
            }
            let used = p.payload.len() as u32 + u32::from(p.flags & pcap::FIN != 0);
            next.insert(c, p.seq.wrapping_add(used));
        }
        // who closed
        let first = |flag: u8| {
            pk.iter().find(|p| p.flags & flag != 0).map(|p| {
                if from_client(p) {
                    "client"
                } else {
                    "server"
                }
            })
        };
        assert_eq!(
            first(pcap::FIN),
            opt_str(&t["first_fin"]),
            "{scen}: first FIN"
        );
        assert_eq!(first(RST), opt_str(&t["first_rst"]), "{scen}: first RST");
        // streams
        let cs: Vec<u8> = pk
            .iter()
            .filter(|p| from_client(p))
            .flat_map(|p| p.payload.clone())
            .collect();
        let ss: Vec<u8> = pk
            .iter()
            .filter(|p| p.src == server)
            .flat_map(|p| p.payload.clone())
            .collect();
        let strict = t["mode"] == "tds8_strict";
        let cu = units(&cs);
        let su = units(&ss);
        let crec = tls_records(&cu, strict);
        let srec = tls_records(&su, strict);
        let before_ccs = crec.iter().take_while(|(ct, _)| *ct != 20);
        let hellos = before_ccs
            .filter(|(ct, b)| *ct == 22 && b.first() == Some(&1))
            .count();
        assert_eq!(
            hellos as u64,
            t["client_hellos"].as_u64().unwrap(),
            "{scen}: ClientHellos"
        );
        if strict {
            assert!(
                matches!(cu.first(), Some(Unit::Tls(22, _))),
                "strict: ClientHello first"
            );
        }
        match server_hello(&srec) {
            Some((v, s)) => {
                assert_eq!(Some(v), opt_str(&t["tls_version"]), "{scen}: version");
                assert_eq!(Some(s), opt_str(&t["suite"]), "{scen}: suite");
            }
            None => assert!(
                t["tls_version"].is_null() && t["suite"].is_null(),
                "{scen}: no ServerHello"
            ),
        }
        if t["mode"] == "tds7" {
            let ce = prelogin_encryption(&cu, 0x12).unwrap();
            let se = prelogin_encryption(&su, 0x04).unwrap();
            let enc = match (ce, se) {
                (0, 0) => "login_only",
                (0, 2) | (2, 0) | (2, 2) => "none",
                (0 | 1 | 3, 1 | 3) | (1 | 3, 0) => "full",
                _ => "mismatch",
            };
            assert_eq!(enc, t["encryption"], "{scen}: PRELOGIN says");
        }
        // clear login responses after the PRELOGIN answer
        let clear_resp: Vec<&Vec<u8>> = su
            .iter()
            .skip(1)
            .filter_map(|u| match u {
                Unit::Tds(0x04, p) => Some(p),
                _ => None,
            })
            .collect();
        let ack = clear_resp
            .iter()
            .any(|p| p.windows(5).any(|w| w == [0xad, w[1], w[2], 1, 0x74]));
        let error = clear_resp
            .iter()
            .any(|p| p.first() == Some(&0xaa) && p[3..7] == 18456u32.to_le_bytes());
        let visible = matches!(t["encryption"].as_str(), Some("none" | "login_only"));
        assert_eq!(
            ack,
            visible && t["login"] == "ack",
            "{scen}: clear LOGINACK"
        );
        assert_eq!(error, t["login"] == "error", "{scen}: clear ERROR 18456");
        if t["encryption"] == "none" {
            assert!(matches!(cu.get(1), Some(Unit::Tds(0x10, p)) if p[4..8] == [4, 0, 0, 0x74]));
        }
        match scen {
            "no_common_tls_version" => {
                assert!(srec.iter().any(|(ct, b)| *ct == 21 && b == &[2, 70]));
                let ch = &crec[0].1;
                assert_eq!(&ch[4..6], &[3, 1]);
            }
            "dhe_failure" => {
                assert!(
                    !srec.iter().any(|(ct, _)| *ct == 20),
                    "the server never sends its CCS"
                );
                assert_eq!(
                    crec.iter().map(|r| r.0).collect::<Vec<_>>(),
                    [22, 22, 20, 22]
                );
                assert_eq!(pk.last().unwrap().flags, RST | pcap::ACK);
            }
            "tcp_probe" => assert!(cs.is_empty() && ss.is_empty()),
            "refused" => assert_eq!(pk.len(), 2),
            _ => {}
        }
    }

    fn run(cfg: &Config) -> (Summary, Vec<u8>, Vec<u8>) {
        let mut pcap_bytes = Vec::new();
        let mut truth = Vec::new();
        let s = generate(cfg, &mut pcap_bytes, Some(&mut truth)).unwrap();
        (s, pcap_bytes, truth)
    }

    fn check_all(summary: &Summary, pcap_bytes: &[u8], truth: &[u8]) -> Vec<Value> {
        let pk = parse_pcap(pcap_bytes);
        assert_eq!(pk.len() as u64, summary.packets);
        assert_eq!(pcap_bytes.len() as u64, summary.bytes);
        assert!(
            pk.windows(2).all(|w| w[0].ts <= w[1].ts),
            "file in time order"
        );
        let lines: Vec<Value> = std::str::from_utf8(truth)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, summary.connections);
        let mut by_client: HashMap<&str, Vec<&P>> = HashMap::new();
        for p in &pk {
            let c = if p.dst.ends_with(":1433") {
                &p.src
            } else {
                &p.dst
            };
            by_client.entry(c.as_str()).or_default().push(p);
        }
        assert_eq!(by_client.len(), lines.len(), "one flow per truth line");
        let mut hellos = 0;
        for t in &lines {
            let pkts = &by_client[t["client"].as_str().unwrap()];
            assert!(pkts
                .iter()
                .all(|p| p.src == t["server"] || p.dst == t["server"]));
            check_connection(t, pkts);
            hellos += t["client_hellos"].as_u64().unwrap();
        }
        assert_eq!(hellos, summary.handshakes);
        lines
    }

    #[test]
    fn thirty_connections_match_their_truth() {
        let cfg = Config {
            connections: 30,
            seed: 42,
            cycle: true,
            templates: 2,
            rate: 5_000,
            ..Config::default()
        };
        let (summary, pcap_bytes, truth) = run(&cfg);
        assert_eq!(summary.connections, 30);
        let lines = check_all(&summary, &pcap_bytes, &truth);
        let mut scenarios: Vec<&str> = lines
            .iter()
            .map(|l| l["scenario"].as_str().unwrap())
            .collect();
        scenarios.sort_unstable();
        scenarios.dedup();
        assert_eq!(
            scenarios.len(),
            Scenario::ALL.len(),
            "every scenario appears"
        );
        // expected verdict fields, spot checks per scenario
        for l in &lines {
            let want = match l["scenario"].as_str().unwrap() {
                "login_only_tls12_ecdhe" => {
                    ("tds7", "login_only", "established", "established", None)
                }
                "full_tls12_dhe" => ("tds7", "full", "established", "established", None),
                "tds8_strict" => ("tds8_strict", "strict", "established", "established", None),
                "dhe_failure" => (
                    "tds7",
                    "full",
                    "tls_handshake",
                    "failed",
                    Some("dhe_key_exchange_failure"),
                ),
                "no_common_tls_version" => (
                    "tds7",
                    "login_only",
                    "tls_handshake",
                    "failed",
                    Some("no_common_tls_version"),
                ),
                "login_failed" => (
                    "tds7",
                    "login_only",
                    "login",
                    "failed",
                    Some("login_failed"),
                ),
                "tcp_probe" => ("unknown", "unknown", "connected", "failed", Some("closed")),
                "refused" => ("unknown", "unknown", "syn", "failed", Some("refused")),
                _ => continue,
            };
            assert_eq!(
                (
                    l["mode"].as_str().unwrap(),
                    l["encryption"].as_str().unwrap(),
                    l["stage"].as_str().unwrap(),
                    l["outcome"].as_str().unwrap(),
                    l["reason"].as_str()
                ),
                want
            );
        }
        // connections overlap in time: some connection starts before the previous one ends
        let pk = parse_pcap(&pcap_bytes);
        let syn_ts: Vec<u64> = pk.iter().filter(|p| p.flags == SYN).map(|p| p.ts).collect();
        let last_ts = |c: &str| {
            pk.iter()
                .filter(|p| p.src == c || p.dst == c)
                .map(|p| p.ts)
                .max()
                .unwrap()
        };
        let first_client = lines[0]["client"].as_str().unwrap();
        assert!(syn_ts[1] < last_ts(first_client), "overlapping connections");
    }

    #[test]
    fn weighted_mix_and_same_seed_same_output_shape() {
        let cfg = Config {
            connections: 60,
            seed: 7,
            templates: 1,
            ..Config::default()
        };
        let (s1, p1, t1) = run(&cfg);
        let (s2, p2, t2) = run(&cfg);
        assert_eq!(t1, t2, "same seed, same truth");
        assert_eq!(s1, s2);
        let (a, b) = (parse_pcap(&p1), parse_pcap(&p2));
        let shape = |v: &[P]| {
            v.iter()
                .map(|p| (p.ts, p.src.clone(), p.flags, p.seq, p.ack, p.payload.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shape(&a),
            shape(&b),
            "same seed, same packets (TLS bytes aside)"
        );
        check_all(&s1, &p1, &t1);
        let (_, _, t3) = run(&Config { seed: 8, ..cfg });
        assert_ne!(t1, t3);
    }

    #[test]
    fn open_connections_never_close() {
        let cfg = Config {
            connections: 12,
            open: true,
            templates: 2,
            ..Config::default()
        };
        let (s, p, t) = run(&cfg);
        let lines = check_all(&s, &p, &t);
        assert!(lines
            .iter()
            .all(|l| l["scenario"] == "open_login_only" && l["outcome"] == "unknown"));
        let pk = parse_pcap(&p);
        assert!(pk.iter().all(|p| p.flags & (pcap::FIN | RST) == 0));
        assert_eq!(s.handshakes, 12);
    }

    #[test]
    fn addresses_are_distinct_and_in_range() {
        let ports: Vec<u16> = (0..CLIENT_POOL)
            .map(|k| (k * 7 % EPHEMERAL_PORTS) as u16)
            .collect();
        let mut seen = std::collections::HashSet::new();
        for i in 0..(CLIENT_POOL * 3) {
            let e = client_endpoint(i, &ports);
            assert!(e.port >= 49_152);
            assert!(seen.insert((e.ip, e.port)));
        }
        // wraps within the ephemeral range
        let e = client_endpoint(CLIENT_POOL * (EPHEMERAL_PORTS - 1), &[16_383]);
        assert_eq!(e.port, 49_152 + 16_382);
        assert_eq!(server_endpoint(0).ip, Ipv4Addr::new(10, 20, 0, 10));
        assert_eq!(server_endpoint(241).ip, Ipv4Addr::new(10, 20, 1, 11));
        let cfg = Config {
            connections: MAX_CONNECTIONS + 1,
            ..Config::default()
        };
        assert!(generate(&cfg, &mut Vec::new(), None::<&mut Vec<u8>>).is_err());
    }
}
