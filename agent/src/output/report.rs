//! The `analyze` report: what a DBA reads in one screen. Per server: connections, established,
//! failed by reason, abnormal closes by stage and side, encryption, TLS versions, suites, key
//! exchange and the DHE failure ratio, old clients, the certificate, phase durations; then each
//! failed connection with its evidence; then the capture notes of the run. Plain text, no colour.
//!
//! Memory is bounded whatever the input: at most [`MAX_SERVERS`] servers are kept apart (the rest
//! are folded into "other servers"), every per-server tally of strings keeps at most
//! [`MAX_DISTINCT`] values, and at most [`MAX_FAILURES_PER_REASON`] failed connections per reason
//! are kept for the detail list (the rest are counted). It only reads [`Verdict`]s and counters.

use super::RunSummary;
use crate::capture::Timestamp;
use crate::conntrack::Side;
use crate::verdict::{
    format_rfc3339, format_unix_secs, Encryption, Outcome, Reason, Stage, Verdict,
};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

/// Servers (address and port) kept apart in the report; the others are summed as "other servers".
pub const MAX_SERVERS: usize = 64;
/// Failed connections kept per reason for the detail list (the most recent ones).
pub const MAX_FAILURES_PER_REASON: usize = 20;
/// Distinct values kept per tally (TLS versions, suites, login error numbers …) and server.
pub const MAX_DISTINCT: usize = 16;
/// Characters kept of any text taken from a verdict (evidence, suite names, certificate names).
pub const MAX_TEXT_CHARS: usize = 240;
/// Client hosts named per server on the "offers < TLS 1.2" line.
const MAX_OLD_CLIENT_HOSTS: usize = 6;
/// Width of the label column of a server's block.
const LABEL: usize = 18;

const N_REASONS: usize = Reason::ALL.len();
const N_STAGES: usize = Stage::ALL.len();
const N_ENCRYPTIONS: usize = Encryption::ALL.len();
/// Key exchanges in the order they are shown, as the verdict spells them.
const KX: [&str; 4] = ["ecdhe", "dhe", "rsa", "other"];

/// Accumulates verdicts for the report. Keeps per-server aggregates and the failed connections
/// (bounded), not every verdict.
pub struct Report {
    max_servers: usize,
    max_failures: usize,
    index: HashMap<SocketAddr, usize>,
    servers: Vec<ServerStats>,
    /// Servers not kept apart (see [`Report::server_mut`]), summed.
    other: ServerStats,
    total: Totals,
    /// Failed connections per reason; the last slot is for a failure without a reason.
    failures: Vec<FailureList>,
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

impl Report {
    pub fn new() -> Self {
        Report::with_limits(MAX_SERVERS, MAX_FAILURES_PER_REASON)
    }

    /// A report that keeps `max_servers` servers apart and `max_failures_per_reason` failed
    /// connections per reason in its detail list.
    pub fn with_limits(max_servers: usize, max_failures_per_reason: usize) -> Self {
        Report {
            max_servers,
            max_failures: max_failures_per_reason,
            index: HashMap::new(),
            servers: Vec::new(),
            other: ServerStats::new(None),
            total: Totals::default(),
            failures: (0..=N_REASONS).map(|_| FailureList::default()).collect(),
            first_seen: None,
            last_seen: None,
        }
    }

    pub fn add(&mut self, v: &Verdict) {
        self.first_seen = Some(
            self.first_seen
                .map_or(v.first_seen, |t| t.min(v.first_seen)),
        );
        self.last_seen = Some(self.last_seen.map_or(v.last_seen, |t| t.max(v.last_seen)));
        self.total.add(v);
        self.server_mut(v.server).add(v);
        if !v.probe && v.outcome == Outcome::Failed {
            let slot = reason_slot(v.reason);
            if let Some(list) = self.failures.get_mut(slot) {
                list.push(v, self.max_failures);
            }
        }
    }

    /// The server's aggregates. When every slot is taken, a new server takes the slot of the least
    /// busy server if that one was seen only once (a port scan's targets then churn through one
    /// slot instead of pushing real servers out), the old slot's counts going to "other servers";
    /// otherwise the new server is counted under "other servers" from the start.
    fn server_mut(&mut self, addr: SocketAddr) -> &mut ServerStats {
        let i = match self.index.get(&addr) {
            Some(&i) => Some(i),
            None if self.servers.len() < self.max_servers => {
                let i = self.servers.len();
                self.servers.push(ServerStats::new(Some(addr)));
                self.index.insert(addr, i);
                Some(i)
            }
            None => {
                let least = self
                    .servers
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.seen());
                match least {
                    Some((i, s)) if s.seen() <= 1 => {
                        let old = self
                            .servers
                            .get_mut(i)
                            .map(|slot| std::mem::replace(slot, ServerStats::new(Some(addr))));
                        if let Some(old) = old {
                            if let Some(old_addr) = old.addr {
                                self.index.remove(&old_addr);
                            }
                            self.other.absorb(old);
                        }
                        self.index.insert(addr, i);
                        Some(i)
                    }
                    _ => None,
                }
            }
        };
        match i.and_then(|i| self.servers.get_mut(i)) {
            Some(s) => s,
            None => &mut self.other,
        }
    }

    pub fn render(&self, w: &mut dyn Write, summary: &RunSummary) -> io::Result<()> {
        // Built in memory (one screen or so), then written at once.
        let mut out = String::with_capacity(8 * 1024);
        self.render_header(&mut out, summary);
        let mut servers: Vec<&ServerStats> = self.servers.iter().collect();
        servers.sort_by(|a, b| b.seen().cmp(&a.seen()).then(a.addr.cmp(&b.addr)));
        if self.other.seen() > 0 {
            servers.push(&self.other);
        }
        for s in servers {
            out.push('\n');
            s.render(&mut out, self.max_servers);
        }
        self.render_failures(&mut out);
        render_notes(&mut out, summary, &self.total);
        w.write_all(out.as_bytes())?;
        w.flush()
    }

    fn render_header(&self, out: &mut String, summary: &RunSummary) {
        let t = &self.total;
        let files = summary.files.len();
        let _ = write!(
            out,
            "tdswatch analyze: {} file{}, {} frames, {} connection{}",
            num(files as u64),
            plural(files as u64),
            num(summary.frames),
            num(t.connections),
            plural(t.connections),
        );
        if t.probes > 0 {
            let _ = write!(out, " (+{} TCP probe{})", num(t.probes), plural(t.probes));
        }
        if summary.non_tds_flows > 0 {
            let _ = write!(out, ", {} ignored: not TDS 7+", num(summary.non_tds_flows));
        }
        out.push('\n');
        let (first, last) = match (summary.first_ts, summary.last_ts) {
            (Some(a), Some(b)) => (Some(a), Some(b)),
            _ => (self.first_seen, self.last_seen),
        };
        if let (Some(a), Some(b)) = (first, last) {
            let _ = writeln!(
                out,
                "captured {} to {} ({})",
                time_ms(a),
                time_ms(b),
                duration_words(b.since(a))
            );
        }
        if t.connections + t.probes == 0 {
            out.push_str(
                "\nno SQL Server (TDS 7+) connection found. Named and non-default instances listen \
                 on other ports than 1433: add them with --port.\n",
            );
            return;
        }
        if self.servers.len() > 1 || self.other.seen() > 0 {
            let _ = writeln!(out, "\nall servers");
            let _ = writeln!(out, "  {}", t.counts_line());
        }
    }

    fn render_failures(&self, out: &mut String) {
        let mut groups: Vec<(usize, &FailureList)> = self
            .failures
            .iter()
            .enumerate()
            .filter(|(_, l)| l.total > 0)
            .collect();
        if groups.is_empty() {
            return;
        }
        groups.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(&b.0)));
        let _ = writeln!(
            out,
            "\nfailed connections (the most recent {} per reason)",
            self.max_failures
        );
        // Addresses padded to the widest one listed, so that reasons line up.
        let width = |f: fn(&FailureEntry) -> SocketAddr| {
            let mut buf = String::new();
            groups
                .iter()
                .flat_map(|(_, l)| l.recent.iter())
                .map(|e| {
                    buf.clear();
                    let _ = write!(buf, "{}", f(e));
                    buf.len()
                })
                .max()
                .unwrap_or(0)
        };
        let client_width = width(|e| e.client);
        let server_width = width(|e| e.server);
        for (slot, list) in groups {
            let name = slot_name(slot);
            let mut recent: Vec<&FailureEntry> = list.recent.iter().collect();
            recent.sort_by_key(|e| (e.first_seen, e.seq));
            for e in recent {
                let _ = writeln!(
                    out,
                    "  {}  {:<client_width$} → {:<server_width$}  {} at {}",
                    time_ms(e.first_seen),
                    e.client.to_string(),
                    e.server.to_string(),
                    name,
                    e.stage
                );
                if !e.evidence.is_empty() {
                    let _ = writeln!(out, "      {}", e.evidence);
                }
            }
            let kept = list.recent.len() as u64;
            if list.total > kept {
                let _ = writeln!(out, "  … and {} more {}", num(list.total - kept), name);
            }
        }
    }
}

/// Counts over all servers, for the header.
#[derive(Default)]
struct Totals {
    connections: u64,
    established: u64,
    failed: u64,
    unknown: u64,
    probes: u64,
}

impl Totals {
    fn add(&mut self, v: &Verdict) {
        if v.probe {
            self.probes += 1;
            return;
        }
        self.connections += 1;
        match v.outcome {
            Outcome::Established => self.established += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }

    fn absorb(&mut self, from: &Totals) {
        self.connections += from.connections;
        self.established += from.established;
        self.failed += from.failed;
        self.unknown += from.unknown;
        self.probes += from.probes;
    }

    fn counts_line(&self) -> String {
        let mut s = format!(
            "{:<LABEL$}{}   established {}   failed {}",
            "connections",
            num(self.connections),
            num(self.established),
            num(self.failed)
        );
        if self.failed > 0 {
            let _ = write!(s, " ({})", pct(self.failed, self.connections));
        }
        if self.unknown > 0 {
            let _ = write!(s, "   unknown {}", num(self.unknown));
        }
        if self.probes > 0 {
            let _ = write!(s, "   (TCP probes {})", num(self.probes));
        }
        s
    }
}

/// Per-server aggregates. Fixed-size except for the bounded tallies.
struct ServerStats {
    /// `None` for the servers folded together.
    addr: Option<SocketAddr>,
    counts: Totals,
    by_reason: [u64; N_REASONS + 1],
    /// Abnormal closes by stage and by what happened first: `[stage][side][fin = 0, rst = 1]`.
    abnormal: [[[u64; 2]; 2]; N_STAGES],
    encryption: [u64; N_ENCRYPTIONS],
    tls_versions: Tally,
    suites: Tally,
    /// ServerHellos seen (connections with a negotiated key exchange), by key exchange ([`KX`]).
    kx: [u64; 4],
    /// Failed connections by negotiated key exchange.
    kx_failed: [u64; 4],
    dh_bits_min: Option<u32>,
    dh_bits_max: Option<u32>,
    /// Connections whose client offered at most TLS 1.1.
    old_clients: u64,
    old_client_max: Tally,
    old_client_hosts: Vec<IpAddr>,
    old_client_hosts_more: bool,
    login_errors: Tally,
    certificate: Option<CertSummary>,
    /// Different certificates seen (counted when the one seen changes).
    certificate_changes: u64,
    prelogin_ms: Histogram,
    tls_ms: Histogram,
    login_ms: Histogram,
}

struct CertSummary {
    /// The certificate this summary was made from: verdicts share certificate facts by pointer,
    /// so the same certificate again (the common case) is recognised without comparing text.
    source: std::sync::Arc<crate::tls::Certificate>,
    subject: String,
    issuer: String,
    signature: String,
    key: String,
    key_bits: Option<u32>,
    not_after: String,
    not_after_unix: i64,
    /// The connection's time was past `not_after` (or before `not_before`: not tracked typed).
    expired: bool,
}

impl ServerStats {
    fn new(addr: Option<SocketAddr>) -> Self {
        ServerStats {
            addr,
            counts: Totals::default(),
            by_reason: [0; N_REASONS + 1],
            abnormal: [[[0; 2]; 2]; N_STAGES],
            encryption: [0; N_ENCRYPTIONS],
            tls_versions: Tally::default(),
            suites: Tally::default(),
            kx: [0; 4],
            kx_failed: [0; 4],
            dh_bits_min: None,
            dh_bits_max: None,
            old_clients: 0,
            old_client_max: Tally::default(),
            old_client_hosts: Vec::new(),
            old_client_hosts_more: false,
            login_errors: Tally::default(),
            certificate: None,
            certificate_changes: 0,
            prelogin_ms: Histogram::default(),
            tls_ms: Histogram::default(),
            login_ms: Histogram::default(),
        }
    }

    /// Verdicts seen, probes included (the sort key of the report).
    fn seen(&self) -> u64 {
        self.counts.connections + self.counts.probes
    }

    fn add(&mut self, v: &Verdict) {
        self.counts.add(v);
        if v.probe {
            // Kept apart: a probe is neither a failure nor an abnormal close.
            return;
        }
        let failed = v.outcome == Outcome::Failed;
        if failed {
            if let Some(c) = self.by_reason.get_mut(reason_slot(v.reason)) {
                *c += 1;
            }
        }
        if v.close.abnormal {
            let stage = v.close.stage.unwrap_or(v.stage);
            let (side, kind) = if v.close.first_fin == Some(Side::Server) {
                (Side::Server, 0)
            } else if let Some(side) = v.close.first_rst {
                (side, 1)
            } else {
                (v.close.first_fin.unwrap_or(Side::Server), 0)
            };
            if let Some(c) = self
                .abnormal
                .get_mut(stage as usize)
                .and_then(|s| s.get_mut(side.index()))
                .and_then(|s| s.get_mut(kind))
            {
                *c += 1;
            }
        }
        if let Some(c) = self.encryption.get_mut(v.encryption as usize) {
            *c += 1;
        }
        let tls = &v.tls;
        if let Some(version) = &tls.version {
            self.tls_versions.add(version);
        }
        if let Some(suite) = &tls.suite {
            self.suites.add(suite);
        }
        if let Some(kx) = tls.kx {
            let i = KX.iter().position(|k| *k == kx).unwrap_or(KX.len() - 1);
            if let Some(c) = self.kx.get_mut(i) {
                *c += 1;
            }
            // A failed TLS handshake, not a failed connection: a login error after a good
            // handshake says nothing about the key exchange.
            if failed && tls.completed == Some(false) {
                if let Some(c) = self.kx_failed.get_mut(i) {
                    *c += 1;
                }
            }
        }
        if let Some(bits) = tls.dh_bits {
            self.dh_bits_min = Some(self.dh_bits_min.map_or(bits, |b| b.min(bits)));
            self.dh_bits_max = Some(self.dh_bits_max.map_or(bits, |b| b.max(bits)));
        }
        if let Some(max) = tls.client_max_version.as_deref() {
            if is_older_than_tls12(max) {
                self.old_clients += 1;
                self.old_client_max.add(max);
                self.note_old_client_host(v.client.ip());
            }
        }
        if let Some(n) = v.login.error_number {
            self.login_errors.add(&n.to_string());
        }
        // "Other servers" mixes servers: no one certificate to show.
        if let (Some(cert), Some(_)) = (&tls.certificate, self.addr) {
            let expired = i128::from(cert.not_after) * 1_000_000_000 < i128::from(v.last_seen.0);
            // The same certificate as last time (the common case): nothing to rebuild.
            let same = self.certificate.as_ref().is_some_and(|old| {
                std::sync::Arc::ptr_eq(&old.source, &cert.0)
                    || old.not_after_unix == cert.not_after
                        && old.key_bits == cert.key_bits
                        && same_clean(&old.subject, &cert.subject)
                        && same_clean(&old.issuer, &cert.issuer)
            });
            match (&mut self.certificate, same) {
                (Some(old), true) => old.expired = expired,
                (old, _) => {
                    self.certificate_changes += 1;
                    *old = Some(CertSummary {
                        source: std::sync::Arc::clone(&cert.0),
                        subject: clean(&cert.subject),
                        issuer: clean(&cert.issuer),
                        signature: clean(&cert.signature_algorithm),
                        key: match cert.key_bits {
                            Some(bits) => format!("{} {}", clean(&cert.key_type), bits),
                            None => clean(&cert.key_type),
                        },
                        key_bits: cert.key_bits,
                        not_after: format_unix_secs(cert.not_after),
                        not_after_unix: cert.not_after,
                        expired,
                    });
                }
            }
        }
        let d = &v.durations_ms;
        self.prelogin_ms.add(d.prelogin);
        self.tls_ms.add(d.tls_handshake);
        self.login_ms.add(d.login);
    }

    /// Adds `from`'s counts to these (for "other servers": its certificate is not kept).
    fn absorb(&mut self, from: ServerStats) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
        self.counts.absorb(&from.counts);
        add(&mut self.by_reason, &from.by_reason);
        for (a, b) in self.abnormal.iter_mut().zip(from.abnormal.iter()) {
            for (a, b) in a.iter_mut().zip(b.iter()) {
                add(a, b);
            }
        }
        add(&mut self.encryption, &from.encryption);
        self.tls_versions.absorb(from.tls_versions);
        self.suites.absorb(from.suites);
        add(&mut self.kx, &from.kx);
        add(&mut self.kx_failed, &from.kx_failed);
        self.dh_bits_min = match (self.dh_bits_min, from.dh_bits_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.dh_bits_max = self.dh_bits_max.max(from.dh_bits_max);
        self.old_clients += from.old_clients;
        self.old_client_max.absorb(from.old_client_max);
        for ip in from.old_client_hosts {
            self.note_old_client_host(ip);
        }
        self.old_client_hosts_more |= from.old_client_hosts_more;
        self.login_errors.absorb(from.login_errors);
        self.prelogin_ms.absorb(&from.prelogin_ms);
        self.tls_ms.absorb(&from.tls_ms);
        self.login_ms.absorb(&from.login_ms);
    }

    fn note_old_client_host(&mut self, ip: IpAddr) {
        if !self.old_client_hosts.contains(&ip) {
            if self.old_client_hosts.len() < MAX_OLD_CLIENT_HOSTS {
                self.old_client_hosts.push(ip);
            } else {
                self.old_client_hosts_more = true;
            }
        }
    }

    fn render(&self, out: &mut String, max_servers: usize) {
        match self.addr {
            Some(addr) => {
                let _ = writeln!(out, "server {addr}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "other servers (summed; at most {max_servers} servers are shown apart)"
                );
            }
        }
        let c = &self.counts;
        let _ = writeln!(out, "  {}", c.counts_line());
        let line = |out: &mut String, label: &str, value: &str| {
            if !value.is_empty() {
                let _ = writeln!(out, "  {label:<LABEL$}{value}");
            }
        };

        // Failed by reason, most frequent first.
        let mut reasons: Vec<(usize, u64)> = self
            .by_reason
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let reasons: Vec<String> = reasons
            .iter()
            .map(|&(i, n)| format!("{} {}", slot_name(i), num(n)))
            .collect();
        line(out, "failed by reason", &reasons.join(" · "));

        // Abnormal closes, most frequent first.
        let mut closes: Vec<(u64, usize, usize, usize)> = Vec::new();
        for (stage, sides) in self.abnormal.iter().enumerate() {
            for (side, kinds) in sides.iter().enumerate() {
                for (kind, &n) in kinds.iter().enumerate() {
                    if n > 0 {
                        closes.push((n, stage, side, kind));
                    }
                }
            }
        }
        closes.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2, a.3).cmp(&(b.1, b.2, b.3))));
        let closes: Vec<String> = closes
            .iter()
            .map(|&(n, stage, side, kind)| {
                let stage = Stage::ALL.get(stage).map_or("?", |s| s.as_str());
                let side = if side == Side::Client.index() {
                    "client"
                } else {
                    "server"
                };
                let kind = if kind == 0 { "FIN" } else { "RST" };
                format!("{stage}: {side} {kind} {}", num(n))
            })
            .collect();
        line(out, "abnormal closes", &closes.join(" · "));

        // Encryption, over every connection (probes aside).
        let mut enc: Vec<(usize, u64)> = self
            .encryption
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .collect();
        enc.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let enc: Vec<String> = enc
            .iter()
            .map(|&(i, n)| {
                let name = Encryption::ALL.get(i).map_or("?", |e| e.as_str());
                format!("{name} {}", pct(n, c.connections))
            })
            .collect();
        line(out, "encryption", &enc.join(" · "));

        line(out, "TLS versions", &self.tls_versions.shares(usize::MAX));
        line(out, "cipher suites", &self.suites.shares(3));

        let kx_total: u64 = self.kx.iter().sum();
        let kx: Vec<String> = KX
            .iter()
            .zip(self.kx.iter())
            .filter(|(_, &n)| n > 0)
            .map(|(name, &n)| format!("{name} {}", pct(n, kx_total)))
            .collect();
        line(out, "key exchange", &kx.join(" · "));

        let dhe = self.kx.get(1).copied().unwrap_or(0);
        if dhe > 0 {
            let dhe_failed = self.kx_failed.get(1).copied().unwrap_or(0);
            let failed_total: u64 = self.kx_failed.iter().sum();
            let others = kx_total.saturating_sub(dhe);
            let mut s = format!(
                "{} of {} DHE handshakes failed ({})",
                num(dhe_failed),
                num(dhe),
                pct(dhe_failed, dhe)
            );
            if others > 0 {
                let _ = write!(
                    s,
                    ", other key exchanges {}",
                    pct(failed_total.saturating_sub(dhe_failed), others)
                );
            }
            match (self.dh_bits_min, self.dh_bits_max) {
                (Some(a), Some(b)) if a == b => {
                    let _ = write!(s, "; DH group {a} bits");
                }
                (Some(a), Some(b)) => {
                    let _ = write!(s, "; DH groups {a}–{b} bits");
                }
                _ => {}
            }
            line(out, "DHE", &s);
        }

        if self.old_clients > 0 {
            let mut s = format!(
                "{} connection{} (max {})",
                num(self.old_clients),
                plural(self.old_clients),
                self.old_client_max.counts()
            );
            let hosts: Vec<String> = self
                .old_client_hosts
                .iter()
                .map(|ip| ip.to_string())
                .collect();
            let _ = write!(s, " from {}", hosts.join(", "));
            if self.old_client_hosts_more {
                s.push_str(" and others");
            }
            line(out, "offers < TLS 1.2", &s);
        }

        line(out, "login errors", &self.login_errors.counts());

        if let Some(cert) = &self.certificate {
            let mut s = format!("{} · issuer {}", cert.subject, cert.issuer);
            if cert.subject == cert.issuer {
                s.push_str(" (self-signed)");
            }
            let _ = write!(
                s,
                " · {} · {} · valid until {}",
                cert.signature, cert.key, cert.not_after
            );
            if cert.expired {
                s.push_str(" (EXPIRED at capture time)");
            }
            if self.certificate_changes > 1 {
                let _ = write!(
                    s,
                    " · {} different certificates seen, latest shown",
                    num(self.certificate_changes)
                );
            }
            line(out, "certificate", &s);
        }

        let mut times: Vec<String> = Vec::new();
        for (name, h) in [
            ("prelogin", &self.prelogin_ms),
            ("TLS", &self.tls_ms),
            ("login", &self.login_ms),
        ] {
            if let (Some(p50), Some(p99)) = (h.quantile(0.5), h.quantile(0.99)) {
                times.push(format!("{name} {p50} / {p99}"));
            }
        }
        line(out, "median / p99", &times.join(" · "));
    }
}

/// Slot of a failure reason in per-reason arrays: the reason's position, or the last slot when the
/// verdict gives none.
fn reason_slot(reason: Option<Reason>) -> usize {
    match reason {
        Some(r) => r as usize,
        None => N_REASONS,
    }
}

fn slot_name(slot: usize) -> &'static str {
    Reason::ALL.get(slot).map_or("unspecified", |r| r.as_str())
}

/// One failed connection kept for the detail list.
struct FailureEntry {
    first_seen: Timestamp,
    /// Arrival order, to keep the sort stable for equal times.
    seq: u64,
    client: SocketAddr,
    server: SocketAddr,
    stage: Stage,
    /// The verdict's evidence, cleaned and cut to [`MAX_TEXT_CHARS`].
    evidence: String,
}

/// The most recent failed connections of one reason, and how many there were.
#[derive(Default)]
struct FailureList {
    recent: VecDeque<FailureEntry>,
    total: u64,
}

impl FailureList {
    fn push(&mut self, v: &Verdict, cap: usize) {
        let seq = self.total;
        self.total += 1;
        if cap == 0 {
            return;
        }
        // Reuse the oldest entry's buffer once full: no allocation per failure in steady state.
        let mut evidence = if self.recent.len() >= cap {
            self.recent
                .pop_front()
                .map(|e| e.evidence)
                .unwrap_or_default()
        } else {
            String::new()
        };
        evidence.clear();
        clean_into(&mut evidence, &v.evidence);
        self.recent.push_back(FailureEntry {
            first_seen: v.first_seen,
            seq,
            client: v.client,
            server: v.server,
            stage: v.stage,
            evidence,
        });
    }
}

/// Counts of at most [`MAX_DISTINCT`] distinct strings (cleaned and cut); further values are
/// counted under "other".
#[derive(Default)]
struct Tally {
    items: Vec<(String, u64)>,
    other: u64,
}

impl Tally {
    fn add(&mut self, key: &str) {
        self.add_n(key, 1);
    }

    fn add_n(&mut self, key: &str, n: u64) {
        // Keys are nearly always clean already (suite names, versions) and already counted: a
        // key equal to a stored one is clean (stored keys are), so it is looked up as it is
        // first; only a new or unclean key is checked, cleaned (and copied).
        if let Some(item) = self.items.iter_mut().find(|(k, _)| k == key) {
            item.1 += n;
            return;
        }
        let key: std::borrow::Cow<'_, str> = if needs_cleaning(key) {
            clean(key).into()
        } else {
            key.into()
        };
        if let Some(item) = self.items.iter_mut().find(|(k, _)| *k == *key) {
            item.1 += n;
        } else if self.items.len() < MAX_DISTINCT {
            self.items.push((key.into_owned(), n));
        } else {
            self.other += n;
        }
    }

    fn absorb(&mut self, from: Tally) {
        for (k, n) in &from.items {
            self.add_n(k, *n);
        }
        self.other += from.other;
    }

    fn total(&self) -> u64 {
        self.items.iter().map(|(_, n)| n).sum::<u64>() + self.other
    }

    fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.items.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// "TLSv1.2 97.0% · TLSv1.3 3.0%", the `top` most frequent, the rest summed.
    fn shares(&self, top: usize) -> String {
        let total = self.total();
        if total == 0 {
            return String::new();
        }
        let sorted = self.sorted();
        let mut parts: Vec<String> = sorted
            .iter()
            .take(top)
            .map(|(k, n)| format!("{k} {}", pct(*n, total)))
            .collect();
        let shown: u64 = sorted.iter().take(top).map(|(_, n)| n).sum();
        let rest = total - shown;
        if rest > 0 {
            if self.other > 0 {
                // Values beyond the tally's bound were not told apart: no count of them.
                parts.push(format!("others {}", pct(rest, total)));
            } else {
                let others = sorted.len().saturating_sub(top) as u64;
                parts.push(format!(
                    "{} other{} {}",
                    num(others),
                    plural(others),
                    pct(rest, total)
                ));
            }
        }
        parts.join(" · ")
    }

    /// "18456 ×30 · 4060 ×2".
    fn counts(&self) -> String {
        let mut parts: Vec<String> = self
            .sorted()
            .iter()
            .map(|(k, n)| format!("{k} ×{}", num(*n)))
            .collect();
        if self.other > 0 {
            parts.push(format!("other ×{}", num(self.other)));
        }
        parts.join(" · ")
    }
}

/// A histogram of durations in milliseconds over fixed bounds: memory fixed, quantiles given as
/// the bucket's upper bound ("≤ 5 ms").
#[derive(Default)]
struct Histogram {
    counts: [u64; BOUNDS_MS.len() + 1],
    total: u64,
}

const BOUNDS_MS: [f64; 17] = [
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
    10000.0, 30000.0,
];

impl Histogram {
    fn absorb(&mut self, from: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(from.counts.iter()) {
            *a += b;
        }
        self.total += from.total;
    }

    fn add(&mut self, ms: Option<f64>) {
        let Some(ms) = ms else { return };
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        let i = BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(BOUNDS_MS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
            self.total += 1;
        }
    }

    /// "≤5 ms", or `None` without data.
    fn quantile(&self, q: f64) -> Option<String> {
        if self.total == 0 {
            return None;
        }
        // Rank of the quantile, 1-based: ceil(q × total), at least 1.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(match BOUNDS_MS.get(i) {
                    Some(&b) => format!("≤{}", ms_words(b)),
                    None => format!(
                        ">{}",
                        ms_words(BOUNDS_MS.last().copied().unwrap_or(f64::MAX))
                    ),
                });
            }
        }
        None
    }
}

fn ms_words(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", ms / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// True for a client's highest offered version below TLS 1.2 ("SSLv3", "TLSv1.0", "TLSv1.1", or a
/// raw "0x0302"). Unknown spellings are not counted.
fn is_older_than_tls12(version: &str) -> bool {
    match version {
        "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.0" | "TLSv1.1" => true,
        other => other
            .strip_prefix("0x")
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            .is_some_and(|v| (0x0200..crate::tls::TLS12).contains(&v)),
    }
}

/// `1 234 567`.
fn num(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A share as a percentage: "100%", "97.0%", "0.86%", "<0.01%", "0%"; "–" without a denominator.
fn pct(n: u64, total: u64) -> String {
    if total == 0 {
        return "–".to_string();
    }
    if n == 0 {
        return "0%".to_string();
    }
    if n >= total {
        return "100%".to_string();
    }
    let p = n as f64 * 100.0 / total as f64;
    if p >= 99.95 {
        // Never round a part up to the whole.
        "99.9%".to_string()
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else if p >= 0.01 {
        format!("{p:.2}%")
    } else {
        "<0.01%".to_string()
    }
}

/// UTC to the millisecond, fixed width so that columns line up: "2024-05-01T10:00:00.700Z".
fn time_ms(ts: Timestamp) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.0))
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format_rfc3339(ts))
}

/// "1 h 02 min", "3 min 20 s", "1.5 s", "30 ms".
fn duration_words(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    if secs == 0 {
        format!("{} ms", ns / 1_000_000)
    } else if secs >= 3600 {
        format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{:.1} s", ns as f64 / 1e9)
    }
}

/// True for characters that must not reach a terminal from captured data: controls (escape
/// sequences) and the invisible bidirectional overrides that can make text read differently.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Appends `s` to `out` with unsafe characters replaced by '?', cut to [`MAX_TEXT_CHARS`]
/// characters (an ellipsis marks the cut).
fn clean_into(out: &mut String, s: &str) {
    for (i, c) in s.chars().enumerate() {
        if i >= MAX_TEXT_CHARS {
            out.push('…');
            return;
        }
        out.push(if is_unsafe_char(c) { '?' } else { c });
    }
}

/// Whether [`clean`] would change `s`.
fn needs_cleaning(s: &str) -> bool {
    s.chars()
        .take(MAX_TEXT_CHARS + 1)
        .enumerate()
        .any(|(i, c)| i >= MAX_TEXT_CHARS || is_unsafe_char(c))
}

fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT_CHARS * 4));
    clean_into(&mut out, s);
    out
}

/// `cleaned == clean(raw)`, without allocating.
fn same_clean(cleaned: &str, raw: &str) -> bool {
    let mut a = cleaned.chars();
    for (i, c) in raw.chars().enumerate() {
        if i >= MAX_TEXT_CHARS {
            return a.next() == Some('…') && a.next().is_none();
        }
        let c = if is_unsafe_char(c) { '?' } else { c };
        if a.next() != Some(c) {
            return false;
        }
    }
    a.next().is_none()
}

/// The run's capture notes (only the non-zero counters), and what the words that appeared mean.
fn render_notes(out: &mut String, s: &RunSummary, t: &Totals) {
    if t.unknown > 0 || t.probes > 0 {
        out.push('\n');
    }
    if t.unknown > 0 {
        out.push_str(
            "unknown: connections joined mid-way (open before the capture started) or still open \
             when it ended\n",
        );
    }
    if t.probes > 0 {
        out.push_str(
            "TCP probes: connections closed before any TDS byte (load balancer or Kubernetes \
             checks, port scans); not counted as failures\n",
        );
    }
    let notes: [(&str, u64); 11] = [
        ("duplicate frames dropped", s.duplicates),
        ("connections seen twice (NAT)", s.duplicate_connections),
        ("TCP retransmissions", s.retransmissions),
        ("gaps (bytes not captured)", s.gaps),
        ("frames not TCP/IP", s.not_tcp),
        ("frames that failed to decode", s.decode_errors),
        ("streams that stopped as TDS", s.tds_parse_errors),
        ("TLS records that did not parse", s.tls_parse_errors),
        ("segments out of window", s.dropped_segments),
        ("non-TDS flows on SQL ports", s.non_tds_flows),
        ("connections evicted (limits)", s.evicted()),
    ];
    if notes.iter().all(|(_, n)| *n == 0) {
        return;
    }
    out.push_str("\ncapture notes\n");
    for (label, n) in notes {
        if n > 0 {
            let _ = writeln!(out, "  {label:<30}{}", num(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{
        AlertFact, CertificateFacts, CloseFacts, Durations, LoginFacts, LoginResult, Mode,
        PreloginFacts, TlsFacts,
    };

    const T0: u64 = 1_714_557_600_000_000_000; // 2024-05-01T10:00:00Z

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn base(client: &str, server: &str, ms: u64) -> Verdict {
        Verdict {
            client: addr(client),
            server: addr(server),
            first_seen: Timestamp(T0 + ms * 1_000_000),
            last_seen: Timestamp(T0 + (ms + 30) * 1_000_000),
            mode: Mode::Tds7,
            encryption: Encryption::LoginOnly,
            stage: Stage::Established,
            outcome: Outcome::Established,
            reason: None,
            prelogin: PreloginFacts::default(),
            tls: TlsFacts::default(),
            login: LoginFacts::default(),
            close: CloseFacts::default(),
            durations_ms: Durations::default(),
            evidence: "".into(),
            probe: false,
        }
    }

    fn established_ecdhe(client: &str, ms: u64) -> Verdict {
        let mut v = base(client, "10.0.0.5:1433", ms);
        v.tls.client_max_version = Some("TLSv1.2".into());
        v.tls.version = Some("TLSv1.2".into());
        v.tls.suite = Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into());
        v.tls.kx = Some("ecdhe");
        v.tls.completed = Some(true);
        v.login.result = Some(LoginResult::Ack);
        v.close = CloseFacts {
            first_fin: Some(Side::Client),
            first_rst: None,
            stage: Some(Stage::Established),
            abnormal: false,
        };
        v.durations_ms = Durations {
            prelogin: Some(0.8),
            tls_handshake: Some(4.0),
            login: Some(12.0),
            total: Some(30.0),
        };
        v.evidence = "LOGINACK after login-only TLS".into();
        v
    }

    fn failed_dhe(ms: u64) -> Verdict {
        let mut v = base("10.0.0.9:51234", "10.0.0.5:1433", ms);
        v.stage = Stage::TlsHandshake;
        v.outcome = Outcome::Failed;
        v.reason = Some(Reason::DheKeyExchangeFailure);
        v.tls.client_max_version = Some("TLSv1.2".into());
        v.tls.version = Some("TLSv1.2".into());
        v.tls.suite = Some("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384".into());
        v.tls.kx = Some("dhe");
        v.tls.dh_bits = Some(2048);
        v.tls.completed = Some(false);
        v.close = CloseFacts {
            first_fin: None,
            first_rst: Some(Side::Server),
            stage: Some(Stage::TlsHandshake),
            abnormal: true,
        };
        v.evidence = "server RST 2 ms after the client's Finished; suite \
                      TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"
            .into();
        v
    }

    fn failed_old_client(ms: u64) -> Verdict {
        let mut v = base("10.0.0.20:40000", "10.0.0.5:1433", ms);
        v.stage = Stage::TlsHandshake;
        v.outcome = Outcome::Failed;
        v.reason = Some(Reason::NoCommonTlsVersion);
        v.tls.client_max_version = Some("TLSv1.0".into());
        v.tls.client_min_version = Some("TLSv1.0".into());
        v.tls.alerts = vec![AlertFact {
            from: Side::Server,
            level: Some("fatal"),
            description: Some("protocol_version".into()),
        }];
        v.close = CloseFacts {
            first_fin: Some(Side::Server),
            first_rst: None,
            stage: Some(Stage::TlsHandshake),
            abnormal: true,
        };
        v.evidence = "server alert protocol_version right after a ClientHello offering at most \
                      TLSv1.0"
            .into();
        v
    }

    fn probe(ms: u64) -> Verdict {
        let mut v = base("10.0.0.99:33000", "10.0.0.5:1433", ms);
        v.mode = Mode::Unknown;
        v.encryption = Encryption::Unknown;
        v.stage = Stage::Connected;
        v.outcome = Outcome::Failed;
        v.reason = Some(Reason::Closed);
        v.close = CloseFacts {
            first_fin: None,
            first_rst: Some(Side::Client),
            stage: Some(Stage::Connected),
            abnormal: true,
        };
        v.evidence = "client closed before any TDS byte".into();
        v.probe = true;
        v
    }

    fn unknown(ms: u64) -> Verdict {
        let mut v = base("10.0.0.30:50000", "10.0.0.5:1433", ms);
        v.mode = Mode::Unknown;
        v.encryption = Encryption::Unknown;
        v.stage = Stage::Established;
        v.outcome = Outcome::Unknown;
        v.evidence = "joined mid-stream".into();
        v
    }

    fn render(r: &Report, s: &RunSummary) -> String {
        let mut out = Vec::new();
        r.render(&mut out, s).expect("render to a Vec");
        String::from_utf8(out).expect("report is UTF-8")
    }

    fn line_with<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
    }

    fn mixed_report() -> (Report, RunSummary) {
        let mut r = Report::new();
        for i in 0..6 {
            r.add(&established_ecdhe(
                &format!("10.0.0.{}:5000{i}", 10 + i),
                i * 100,
            ));
        }
        r.add(&failed_dhe(700));
        r.add(&failed_old_client(800));
        r.add(&probe(900));
        r.add(&unknown(1000));
        let summary = RunSummary {
            files: vec!["a.pcap".into(), "b.pcapng".into()],
            frames: 1_234_567,
            non_tds_flows: 9,
            duplicates: 1_200,
            ..RunSummary::default()
        };
        (r, summary)
    }

    #[test]
    fn header_counts_and_capture_span() {
        let (r, s) = mixed_report();
        let text = render(&r, &s);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "tdswatch analyze: 2 files, 1 234 567 frames, 9 connections (+1 TCP probe), \
                 9 ignored: not TDS 7+"
            )
        );
        assert_eq!(
            lines.next(),
            Some("captured 2024-05-01T10:00:00.000Z to 2024-05-01T10:00:01.030Z (1.0 s)")
        );
        // One server: no "all servers" block.
        assert!(!text.contains("all servers"), "{text}");
    }

    #[test]
    fn server_block_counts_and_shares() {
        let (r, s) = mixed_report();
        let text = render(&r, &s);
        assert!(text.contains("\nserver 10.0.0.5:1433\n"), "{text}");
        assert_eq!(
            line_with(&text, "connections"),
            "  connections       9   established 6   failed 2 (22.2%)   \
             unknown 1   (TCP probes 1)"
        );
        assert_eq!(
            line_with(&text, "failed by reason"),
            "  failed by reason  no_common_tls_version 1 · dhe_key_exchange_failure 1"
        );
        // The probe's client RST is not an abnormal close; the two failures are.
        assert_eq!(
            line_with(&text, "abnormal closes"),
            "  abnormal closes   tls_handshake: server FIN 1 · tls_handshake: server RST 1"
        );
        assert_eq!(
            line_with(&text, "encryption"),
            "  encryption        login_only 88.9% · unknown 11.1%"
        );
        assert_eq!(
            line_with(&text, "TLS versions"),
            "  TLS versions      TLSv1.2 100%"
        );
        assert_eq!(
            line_with(&text, "cipher suites"),
            "  cipher suites     TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 85.7% · \
             TLS_DHE_RSA_WITH_AES_256_GCM_SHA384 14.3%"
        );
        assert_eq!(
            line_with(&text, "key exchange"),
            "  key exchange      ecdhe 85.7% · dhe 14.3%"
        );
        assert_eq!(
            line_with(&text, "DHE"),
            "  DHE               1 of 1 DHE handshakes failed (100%), other key exchanges 0%; \
             DH group 2048 bits"
        );
        assert_eq!(
            line_with(&text, "offers < TLS 1.2"),
            "  offers < TLS 1.2  1 connection (max TLSv1.0 ×1) from 10.0.0.20"
        );
        assert_eq!(
            line_with(&text, "median / p99"),
            "  median / p99      prelogin ≤1 ms / ≤1 ms · TLS ≤5 ms / ≤5 ms · login ≤20 ms / ≤20 ms"
        );
    }

    #[test]
    fn failed_connections_listed_with_evidence_probe_and_unknown_kept_apart() {
        let (r, s) = mixed_report();
        let text = render(&r, &s);
        let start = text.find("failed connections").expect("detail list");
        let details: Vec<&str> = text[start..].lines().collect();
        assert_eq!(
            details[0],
            "failed connections (the most recent 20 per reason)"
        );
        // Equal counts: reasons in vocabulary order.
        assert_eq!(
            details[1],
            "  2024-05-01T10:00:00.800Z  10.0.0.20:40000 → 10.0.0.5:1433  no_common_tls_version \
             at tls_handshake"
        );
        assert_eq!(
            details[2],
            "      server alert protocol_version right after a ClientHello offering at most TLSv1.0"
        );
        assert_eq!(
            details[3],
            "  2024-05-01T10:00:00.700Z  10.0.0.9:51234  → 10.0.0.5:1433  dhe_key_exchange_failure \
             at tls_handshake"
        );
        assert_eq!(
            details[4],
            "      server RST 2 ms after the client's Finished; suite \
             TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"
        );
        // Neither the probe nor the open connection is a failure.
        assert!(!text.contains("10.0.0.99"), "{text}");
        assert!(
            !text.contains("client closed before any TDS byte"),
            "{text}"
        );
        assert!(!text.contains("10.0.0.30"), "{text}");
        assert!(!text.contains("closed 1"), "{text}");
    }

    #[test]
    fn footer_lists_only_non_zero_counters() {
        let (r, s) = mixed_report();
        let text = render(&r, &s);
        let start = text.find("\nunknown: ").expect("notes");
        let notes: Vec<&str> = text[start + 1..].lines().collect();
        assert_eq!(
            notes,
            vec![
                "unknown: connections joined mid-way (open before the capture started) or still \
                 open when it ended",
                "TCP probes: connections closed before any TDS byte (load balancer or Kubernetes \
                 checks, port scans); not counted as failures",
                "",
                "capture notes",
                "  duplicate frames dropped      1 200",
                "  non-TDS flows on SQL ports    9",
            ]
        );
        let text = render(&r, &RunSummary::default());
        assert!(!text.contains("capture notes"), "{text}");
    }

    #[test]
    fn failures_per_reason_are_bounded_and_the_rest_counted() {
        let mut r = Report::with_limits(64, 3);
        for i in 0..10 {
            let mut v = failed_dhe(i);
            v.evidence = format!("failure number {i}").into();
            r.add(&v);
        }
        let text = render(&r, &RunSummary::default());
        assert!(
            text.contains("failed connections (the most recent 3 per reason)"),
            "{text}"
        );
        // The three most recent, oldest first, then the count of the others.
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("failure number"))
            .collect();
        assert_eq!(
            kept,
            vec![
                "      failure number 7",
                "      failure number 8",
                "      failure number 9"
            ]
        );
        assert!(
            text.contains("\n  … and 7 more dhe_key_exchange_failure\n"),
            "{text}"
        );
        assert_eq!(
            line_with(&text, "DHE "),
            "  DHE               10 of 10 DHE handshakes failed (100%); DH group 2048 bits"
        );
    }

    #[test]
    fn servers_beyond_the_cap_are_folded() {
        let mut r = Report::with_limits(2, 20);
        for (i, port) in [1433u16, 1433, 1433, 14330, 14330, 50000, 50001]
            .iter()
            .enumerate()
        {
            r.add(&base(
                &format!("10.0.1.1:{}", 40000 + i),
                &format!("10.0.0.5:{port}"),
                0,
            ));
        }
        let text = render(&r, &RunSummary::default());
        let heads: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("server ") || l.starts_with("other servers") || l.starts_with("all")
            })
            .collect();
        assert_eq!(
            heads,
            vec![
                "all servers",
                "server 10.0.0.5:1433",
                "server 10.0.0.5:14330",
                "other servers (summed; at most 2 servers are shown apart)"
            ]
        );
        let counts: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("connections"))
            .collect();
        assert_eq!(
            counts[0],
            "  connections       7   established 7   failed 0"
        );
        assert_eq!(
            counts[3],
            "  connections       2   established 2   failed 0"
        );
        assert_eq!(r.servers.len(), 2);
    }

    #[test]
    fn servers_seen_once_give_way_to_busy_ones() {
        let mut r = Report::with_limits(2, 20);
        // A scan first: two targets refused, seen once each, fill both slots.
        for target in ["10.0.9.1:1433", "10.0.9.2:1433"] {
            let mut v = base("10.0.1.1:40000", target, 0);
            v.stage = Stage::Syn;
            v.outcome = Outcome::Failed;
            v.reason = Some(Reason::Refused);
            r.add(&v);
        }
        // Then the real servers: each takes a scan target's slot, which goes to "other servers".
        for _ in 0..3 {
            r.add(&established_ecdhe("10.0.1.2:40001", 0));
        }
        for _ in 0..2 {
            r.add(&base("10.0.1.3:40002", "10.0.0.6:1433", 0));
        }
        // A later scan target finds no server seen only once: straight to "other servers".
        r.add(&base("10.0.1.1:40003", "10.0.9.3:1433", 0));
        let text = render(&r, &RunSummary::default());
        let blocks: Vec<&str> = text.split("\n\n").collect();
        assert!(
            blocks[2].starts_with("server 10.0.0.5:1433\n  connections       3 "),
            "{text}"
        );
        assert!(
            blocks[3].starts_with("server 10.0.0.6:1433\n  connections       2 "),
            "{text}"
        );
        let other = blocks[4];
        assert!(other.starts_with("other servers (summed; at most 2 servers are shown apart)\n"));
        assert!(other.contains("\n  connections       3   established 1   failed 2 (66.7%)\n"));
        assert!(
            other.contains("\n  failed by reason  refused 2\n"),
            "{other}"
        );
        // The detail list still names the scan's refused connections.
        assert_eq!(text.matches("→ 10.0.9.").count(), 2, "{text}");
        assert!(
            text.contains("  10.0.1.1:40000 → 10.0.9.2:1433  refused at syn\n"),
            "{text}"
        );
    }

    #[test]
    fn empty_report_says_so() {
        let r = Report::new();
        let text = render(
            &r,
            &RunSummary {
                files: vec!["x.pcap".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            text,
            "tdswatch analyze: 1 file, 0 frames, 0 connections\n\nno SQL Server (TDS 7+) \
             connection found. Named and non-default instances listen on other ports than 1433: \
             add them with --port.\n"
        );
    }

    #[test]
    fn hostile_text_is_neutralised_and_cut() {
        let mut r = Report::new();
        let mut v = failed_dhe(0);
        v.evidence = format!("evil\x1b[31mred\u{202e}txt\n{}", "x".repeat(1000)).into();
        v.tls.suite = Some("SUITE\x1b]0;title\x07".into());
        r.add(&v);
        let text = render(&r, &RunSummary::default());
        assert!(!text.contains('\x1b') && !text.contains('\u{202e}') && !text.contains('\x07'));
        let ev = line_with(&text, "evil");
        assert!(ev.starts_with("      evil?[31mred?txt?xxx"), "{ev}");
        assert_eq!(ev.trim_start().chars().count(), MAX_TEXT_CHARS + 1);
        assert!(ev.ends_with('…'));
        assert_eq!(
            line_with(&text, "cipher suites"),
            "  cipher suites     SUITE?]0;title? 100%"
        );
    }

    #[test]
    fn tallies_are_bounded() {
        let mut t = Tally::default();
        for i in 0..100 {
            t.add(&format!("0x{i:04x}"));
        }
        t.add("0x0000");
        assert_eq!(t.items.len(), MAX_DISTINCT);
        assert_eq!(t.other, 84);
        assert_eq!(t.total(), 101);
        assert_eq!(t.sorted()[0], ("0x0000", 2));
        assert_eq!(t.shares(1), "0x0000 2.0% · others 98.0%");
        let mut t = Tally::default();
        for s in ["a", "a", "b", "c"] {
            t.add(s);
        }
        assert_eq!(t.shares(1), "a 50.0% · 2 others 50.0%");
    }

    #[test]
    fn certificate_line_flags_self_signed_and_expired() {
        let mut r = Report::new();
        let mut v = established_ecdhe("10.0.0.10:50000", 0);
        v.tls.certificate = Some(CertificateFacts(std::sync::Arc::new(
            crate::tls::Certificate {
                subject: "CN=SSL_Self_Signed_Fallback".into(),
                issuer: "CN=SSL_Self_Signed_Fallback".into(),
                signature_algorithm: "sha1WithRSAEncryption".into(),
                key_type: "RSA".into(),
                key_bits: Some(1024),
                not_before: 1_577_836_800, // 2020-01-01T00:00:00Z
                not_after: 1_704_067_200,  // 2024-01-01T00:00:00Z
                ..Default::default()
            },
        )));
        r.add(&v);
        let text = render(&r, &RunSummary::default());
        assert_eq!(
            line_with(&text, "certificate"),
            "  certificate       CN=SSL_Self_Signed_Fallback · issuer CN=SSL_Self_Signed_Fallback \
             (self-signed) · sha1WithRSAEncryption · RSA 1024 · valid until 2024-01-01T00:00:00Z \
             (EXPIRED at capture time)"
        );
    }

    #[test]
    fn login_errors_are_counted() {
        let mut r = Report::new();
        for _ in 0..3 {
            let mut v = base("10.0.0.40:1000", "10.0.0.5:1433", 0);
            v.stage = Stage::Login;
            v.outcome = Outcome::Failed;
            v.reason = Some(Reason::LoginFailed);
            v.login = LoginFacts {
                result: Some(LoginResult::Error),
                error_number: Some(18456),
                tds_version: Some("7.4".into()),
            };
            r.add(&v);
        }
        let text = render(&r, &RunSummary::default());
        assert_eq!(
            line_with(&text, "login errors"),
            "  login errors      18456 ×3"
        );
        assert_eq!(
            line_with(&text, "failed by reason"),
            "  failed by reason  login_failed 3"
        );
    }

    #[test]
    fn number_and_percentage_formats() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1 000");
        assert_eq!(num(1_234_567), "1 234 567");
        assert_eq!(pct(1, 0), "–");
        assert_eq!(pct(0, 10), "0%");
        assert_eq!(pct(10, 10), "100%");
        assert_eq!(pct(97, 100), "97.0%");
        assert_eq!(pct(120, 14_000), "0.86%");
        assert_eq!(pct(1, 1_000_000), "<0.01%");
        assert_eq!(pct(99_999, 100_000), "99.9%");
        assert!(is_older_than_tls12("TLSv1.0"));
        assert!(is_older_than_tls12("0x0302"));
        assert!(!is_older_than_tls12("TLSv1.2"));
        assert!(!is_older_than_tls12("0x7f1c"));
        assert_eq!(duration_words(3_720_000_000_000), "1 h 02 min");
        assert_eq!(duration_words(200_000_000_000), "3 min 20 s");
        assert_eq!(duration_words(1_500_000_000), "1.5 s");
        assert_eq!(duration_words(30_000_000), "30 ms");
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..98 {
            h.add(Some(3.0));
        }
        h.add(Some(400.0));
        h.add(Some(1e9));
        h.add(Some(f64::NAN));
        h.add(Some(-1.0));
        assert_eq!(h.total, 100);
        assert_eq!(h.quantile(0.5).as_deref(), Some("≤5 ms"));
        assert_eq!(h.quantile(0.99).as_deref(), Some("≤500 ms"));
        assert_eq!(h.quantile(1.0).as_deref(), Some(">30 s"));
    }
}
