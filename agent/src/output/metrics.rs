//! Prometheus metrics: the `tds_*` families, fed only from [`Verdict`] records, and the agent's
//! own `tdswatch_*` counters, fed from [`RunSummary`]. `analyze --format prometheus` and the live
//! agent both go through [`Metrics::observe`], so a file and a live run over the same packets give
//! the same counts. Owns the family names, their labels and the bounds on label values; encodes
//! OpenMetrics text with the official `prometheus-client` crate.
//!
//! Label values are bounded: `server` keeps the first [`MetricsConfig::max_servers`] servers seen
//! and folds the rest into `server="other"`; every label whose value comes from the wire (TLS
//! version, cipher suite, alert description, login error number, certificate subject, issuer,
//! signature algorithm and key size) keeps the first [`caps`] distinct values and folds the rest
//! into `"other"`. There is no client address label.
//!
//! One family is not fed from verdicts: the gauge `tds_connections_open{server, stage}`, set from
//! the pipeline's snapshot of the connections it tracks now ([`Metrics::set_open`]) on each tick of
//! the live agent.

use super::RunSummary;
use crate::verdict::{Encryption, LoginResult, Outcome, Side, Stage, Verdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;

/// Bounds on the label values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Distinct `server` label values; servers beyond it are counted as `server="other"`.
    pub max_servers: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { max_servers: 64 }
    }
}

/// Distinct values kept per wire-derived label (over all servers); later values become `"other"`.
pub mod caps {
    /// Negotiated and offered TLS versions ("TLSv1.2", or "0x7f1c" for an unknown one).
    pub const TLS_VERSIONS: usize = 16;
    /// Negotiated cipher suites (IANA names, or "0x…" for unknown ids).
    pub const SUITES: usize = 64;
    /// TLS alert descriptions.
    pub const ALERTS: usize = 32;
    /// Login error numbers.
    pub const LOGIN_ERRORS: usize = 32;
    /// Certificate subjects and issuers (each).
    pub const CERT_NAMES: usize = 64;
    /// Certificate signature algorithms.
    pub const SIGNATURE_ALGORITHMS: usize = 16;
    /// Certificate key sizes.
    pub const KEY_BITS: usize = 16;
}

/// The value folded labels take.
pub const OTHER: &str = "other";

/// Upper bounds of the duration histograms, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Keeps the first `limit` distinct values of one label; later ones are folded into [`OTHER`].
#[derive(Debug)]
struct Cap {
    limit: usize,
    seen: Mutex<HashSet<String>>,
}

impl Cap {
    fn new(limit: usize) -> Self {
        Cap {
            limit,
            seen: Mutex::new(HashSet::new()),
        }
    }

    fn label(&self, value: &str) -> String {
        // A panic elsewhere while holding the lock leaves the set whole: go on with it.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.limit {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        OTHER.to_owned()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    server: String,
    encryption: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    server: String,
    stage: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    server: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    server: String,
    stage: &'static str,
    side: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabels {
    server: String,
    version: String,
    suite: String,
    kx: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientHelloLabels {
    server: String,
    max_version: String,
    dhe_offered: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    server: String,
    side: &'static str,
    description: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PreloginLabels {
    server: String,
    client: &'static str,
    server_setting: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    server: String,
    result: &'static str,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    server: String,
    encryption: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    server: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    server: String,
    subject: String,
    issuer: String,
    signature_algorithm: String,
    key_bits: String,
}

/// `tdswatch_parse_errors_total{layer}` values, in [`RunSummary`]'s order: decode, tds, tls.
const PARSE_LAYERS: [&str; 3] = ["decode", "tds", "tls"];
/// `tdswatch_evicted_connections_total{cause}` values: capacity, memory.
const EVICTION_CAUSES: [&str; 2] = ["capacity", "memory"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LayerLabels {
    layer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The agent's own counters, from [`RunSummary`].
#[derive(Debug, Default)]
struct RunCounters {
    frames: Counter,
    tcp_segments: Counter,
    not_tcp: Counter,
    /// By layer: `decode` (frames), `tds` (streams not TDS), `tls` (records that do not parse).
    parse_errors: Family<LayerLabels, Counter>,
    duplicates: Counter,
    duplicate_connections: Counter,
    retransmissions: Counter,
    gaps: Counter,
    non_tds_flows: Counter,
    /// By cause: `capacity` (table full), `memory` (buffered bytes over the cap).
    evicted: Family<CauseLabels, Counter>,
    dropped_segments: Counter,
    connections_tracked: Gauge,
    buffered_bytes: Gauge,
}

/// Every family, and the registry that encodes them. Shareable between threads (`&self` methods).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    servers: Cap,
    tls_versions: Cap,
    suites: Cap,
    alerts: Cap,
    login_errors: Cap,
    subjects: Cap,
    issuers: Cap,
    signature_algorithms: Cap,
    key_bits: Cap,
    connections: Family<ConnectionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    probes: Family<ServerLabels, Counter>,
    abnormal_closes: Family<CloseLabels, Counter>,
    tls_handshakes: Family<TlsLabels, Counter>,
    client_hellos: Family<ClientHelloLabels, Counter>,
    alerts_total: Family<AlertLabels, Counter>,
    prelogin_encryption: Family<PreloginLabels, Counter>,
    login_results: Family<LoginLabels, Counter>,
    handshake_duration: HistogramFamily<DurationLabels>,
    stage_duration: HistogramFamily<StageLabels>,
    certificate_info: Family<CertificateLabels, Gauge>,
    certificate_not_after: Family<ServerLabels, Gauge>,
    /// The certificate series each server shows now, so a new certificate replaces the old one.
    latest_certificate: Mutex<HashMap<String, CertificateLabels>>,
    connections_open: Family<OpenLabels, Gauge>,
    /// The open-connection series set by the last [`Metrics::set_open`] (to zero those gone).
    open_series: Mutex<HashSet<OpenLabels>>,
    run: RunCounters,
}

impl Metrics {
    pub fn new(cfg: &MetricsConfig) -> Self {
        let m = Metrics {
            registry: Registry::default(),
            servers: Cap::new(cfg.max_servers),
            tls_versions: Cap::new(caps::TLS_VERSIONS),
            suites: Cap::new(caps::SUITES),
            alerts: Cap::new(caps::ALERTS),
            login_errors: Cap::new(caps::LOGIN_ERRORS),
            subjects: Cap::new(caps::CERT_NAMES),
            issuers: Cap::new(caps::CERT_NAMES),
            signature_algorithms: Cap::new(caps::SIGNATURE_ALGORITHMS),
            key_bits: Cap::new(caps::KEY_BITS),
            connections: Family::default(),
            failures: Family::default(),
            probes: Family::default(),
            abnormal_closes: Family::default(),
            tls_handshakes: Family::default(),
            client_hellos: Family::default(),
            alerts_total: Family::default(),
            prelogin_encryption: Family::default(),
            login_results: Family::default(),
            handshake_duration: Family::new_with_constructor(duration_histogram),
            stage_duration: Family::new_with_constructor(duration_histogram),
            certificate_info: Family::default(),
            certificate_not_after: Family::default(),
            latest_certificate: Mutex::new(HashMap::new()),
            connections_open: Family::default(),
            open_series: Mutex::new(HashSet::new()),
            run: RunCounters::default(),
        };
        m.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "tds_connections",
            "SQL Server connections that ended, by encryption and outcome",
            self.connections.clone(),
        );
        r.register(
            "tds_handshake_failures",
            "Failed handshakes (TCP probes excluded), by the stage reached and the reason",
            self.failures.clone(),
        );
        r.register(
            "tds_tcp_probes",
            "Connections closed by the client before any TDS byte (TCP probes, port scans)",
            self.probes.clone(),
        );
        r.register(
            "tds_abnormal_closes",
            "Connections closed by a server FIN first (kind fin) or by any RST (kind rst)",
            self.abnormal_closes.clone(),
        );
        r.register(
            "tds_tls_handshakes",
            "TLS handshakes that got a ServerHello, by negotiated version, suite, key exchange and result",
            self.tls_handshakes.clone(),
        );
        r.register(
            "tds_tls_client_hellos",
            "TLS ClientHellos, by the highest version offered and whether a DHE suite was offered",
            self.client_hellos.clone(),
        );
        r.register(
            "tds_tls_alerts",
            "Clear TLS alerts, by sender and description (encrypted alerts: description encrypted)",
            self.alerts_total.clone(),
        );
        r.register(
            "tds_prelogin_encryption",
            "PRELOGIN encryption settings, as the client and the server sent them",
            self.prelogin_encryption.clone(),
        );
        r.register(
            "tds_login_results",
            "Login responses seen, by result and error number",
            self.login_results.clone(),
        );
        r.register(
            "tds_handshake_duration_seconds",
            "Established handshakes: SYN to the login response, the sum of the stage durations",
            self.handshake_duration.clone(),
        );
        r.register(
            "tds_stage_duration_seconds",
            "Handshake stage durations: prelogin (SYN to PRELOGIN response), tls_handshake, login",
            self.stage_duration.clone(),
        );
        r.register(
            "tds_server_certificate_info",
            "The server's latest leaf certificate (value 1)",
            self.certificate_info.clone(),
        );
        r.register(
            "tds_server_certificate_not_after_seconds",
            "End of validity of the server's latest leaf certificate, seconds since the epoch",
            self.certificate_not_after.clone(),
        );
        r.register(
            "tds_connections_open",
            "SQL Server connections tracked now, by the stage they reached",
            self.connections_open.clone(),
        );
        let run = &self.run;
        let counters: [(&str, &str, &Counter); 9] = [
            ("tdswatch_frames", "Frames read", &run.frames),
            (
                "tdswatch_tcp_segments",
                "TCP segments decoded",
                &run.tcp_segments,
            ),
            (
                "tdswatch_not_tcp_frames",
                "Frames that were not TCP over IP",
                &run.not_tcp,
            ),
            (
                "tdswatch_duplicate_segments",
                "Segments seen twice (captured on two interfaces)",
                &run.duplicates,
            ),
            (
                "tdswatch_duplicate_connections",
                "Connections seen a second time under other addresses (NAT: pod veth and host \
                 uplink, Service DNAT), recognised by their TCP ISN pair and counted once",
                &run.duplicate_connections,
            ),
            (
                "tdswatch_retransmitted_segments",
                "TCP retransmissions",
                &run.retransmissions,
            ),
            (
                "tdswatch_stream_gaps",
                "Holes in a TCP stream (bytes lost to the capture)",
                &run.gaps,
            ),
            (
                "tdswatch_non_tds_flows",
                "Flows on a watched port that were not TDS 7+",
                &run.non_tds_flows,
            ),
            (
                "tdswatch_dropped_segments",
                "Segments tdswatch itself discarded after capture (too far outside their stream's \
                 window); there is no queue between the capture ring and the pipeline",
                &run.dropped_segments,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        // Every label value exists from the start, at 0, so rate() and alerts see the first one.
        for layer in PARSE_LAYERS {
            let _ = run.parse_errors.get_or_create(&LayerLabels { layer });
        }
        r.register(
            "tdswatch_parse_errors",
            "Parse errors by layer: decode (frames), tds (streams that stopped parsing as TDS), \
             tls (records or messages that did not parse)",
            run.parse_errors.clone(),
        );
        for cause in EVICTION_CAUSES {
            let _ = run.evicted.get_or_create(&CauseLabels { cause });
        }
        r.register(
            "tdswatch_evicted_connections",
            "Connections pushed out of the table by its limits: capacity (max_connections) or \
             memory (max_buffered_bytes)",
            run.evicted.clone(),
        );
        r.register(
            "tdswatch_connections_tracked",
            "Connections in the connection table now (TDS or not yet known)",
            run.connections_tracked.clone(),
        );
        r.register(
            "tdswatch_buffered_bytes",
            "Bytes held in reassembly buffers now",
            run.buffered_bytes.clone(),
        );
        let build: Family<VersionLabels, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("tdswatch_build_info", "tdswatch's version (value 1)", build);
        self
    }

    /// Counts one connection's verdict in every family it belongs to.
    pub fn observe(&self, v: &Verdict) {
        let server = self.servers.label(&v.server.to_string());
        let encryption = v.encryption.as_str();

        self.connections
            .get_or_create(&ConnectionLabels {
                server: server.clone(),
                encryption,
                outcome: v.outcome.as_str(),
            })
            .inc();

        if v.outcome == Outcome::Failed {
            if v.probe {
                self.probes
                    .get_or_create(&ServerLabels {
                        server: server.clone(),
                    })
                    .inc();
            } else {
                self.failures
                    .get_or_create(&FailureLabels {
                        server: server.clone(),
                        stage: v.stage.as_str(),
                        reason: v.reason.map_or("unknown", |r| r.as_str()),
                    })
                    .inc();
            }
        }

        if v.close.abnormal {
            let (side, kind) = match (v.close.first_rst, v.close.first_fin) {
                (Some(side), _) => (side, "rst"),
                (None, Some(side)) => (side, "fin"),
                // `abnormal` without a FIN or RST would be a verdict bug; say so in the label.
                (None, None) => (Side::Server, "unknown"),
            };
            self.abnormal_closes
                .get_or_create(&CloseLabels {
                    server: server.clone(),
                    stage: v.close.stage.unwrap_or(v.stage).as_str(),
                    side: side.as_str(),
                    kind,
                })
                .inc();
        }

        self.observe_tls(v, &server);

        if v.prelogin.client_encryption.is_some() || v.prelogin.server_encryption.is_some() {
            self.prelogin_encryption
                .get_or_create(&PreloginLabels {
                    server: server.clone(),
                    client: v.prelogin.client_encryption.unwrap_or("none"),
                    server_setting: v.prelogin.server_encryption.unwrap_or("none"),
                })
                .inc();
        }

        if let Some(result) = v.login.result {
            let error = match v.login.error_number {
                Some(n) => self.login_errors.label(&n.to_string()),
                None => String::new(),
            };
            self.login_results
                .get_or_create(&LoginLabels {
                    server: server.clone(),
                    result: match result {
                        LoginResult::Ack => "ack",
                        LoginResult::Error => "error",
                        LoginResult::Unknown => "unknown",
                    },
                    error,
                })
                .inc();
        }

        self.observe_durations(v, &server, encryption);
        self.observe_certificate(v, server);
    }

    fn observe_tls(&self, v: &Verdict, server: &str) {
        let tls = &v.tls;
        if let Some(max) = &tls.client_max_version {
            self.client_hellos
                .get_or_create(&ClientHelloLabels {
                    server: server.to_owned(),
                    max_version: self.tls_versions.label(max),
                    dhe_offered: match tls.dhe_offered {
                        Some(true) => "true",
                        Some(false) => "false",
                        None => "unknown",
                    },
                })
                .inc();
        }
        // Only handshakes with both hellos: a ClientHello left unanswered has no version or suite
        // to count (its failure is in tds_handshake_failures_total). A handshake that is neither
        // completed nor failed (the capture ended, the connection is still open) is not counted.
        if let (Some(_), Some(version)) = (&tls.client_max_version, &tls.version) {
            let result = if tls.completed == Some(true) {
                Some("completed")
            } else if v.outcome == Outcome::Failed {
                Some("failed")
            } else {
                None
            };
            if let Some(result) = result {
                self.tls_handshakes
                    .get_or_create(&TlsLabels {
                        server: server.to_owned(),
                        version: self.tls_versions.label(version),
                        suite: self.suites.label(tls.suite.as_deref().unwrap_or("unknown")),
                        kx: tls.kx.unwrap_or("unknown"),
                        result,
                    })
                    .inc();
            }
        }
        for alert in &tls.alerts {
            let description = match &alert.description {
                Some(d) => self.alerts.label(d),
                None => "encrypted".to_owned(),
            };
            self.alerts_total
                .get_or_create(&AlertLabels {
                    server: server.to_owned(),
                    side: alert.from.as_str(),
                    description,
                })
                .inc();
        }
    }

    fn observe_durations(&self, v: &Verdict, server: &str, encryption: &'static str) {
        let d = &v.durations_ms;
        for (stage, ms) in [
            (Stage::Prelogin, d.prelogin),
            (Stage::TlsHandshake, d.tls_handshake),
            (Stage::Login, d.login),
        ] {
            if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
                self.stage_duration
                    .get_or_create(&StageLabels {
                        server: server.to_owned(),
                        stage: stage.as_str(),
                    })
                    .observe(ms / 1e3);
            }
        }
        if v.outcome != Outcome::Established {
            return;
        }
        // SYN to the login response, as the sum of the stages the verdict times: it leaves out
        // the client's think time between stages, so it is a lower bound. Without TLS there is
        // no TLS stage; in strict mode the PRELOGIN travels encrypted (then the TLS handshake,
        // from the ClientHello, stands for the start) or, when seen, its response already
        // follows the TLS handshake.
        let parts = match v.encryption {
            Encryption::LoginOnly | Encryption::Full => [d.prelogin, d.tls_handshake, d.login],
            Encryption::Strict => match d.prelogin {
                Some(p) => [Some(p), Some(0.0), d.login],
                None => [Some(0.0), d.tls_handshake, d.login],
            },
            Encryption::None | Encryption::Unknown => [d.prelogin, Some(0.0), d.login],
        };
        if let [Some(p), Some(t), Some(l)] = parts {
            let ms = p + t + l;
            if ms.is_finite() && ms >= 0.0 {
                self.handshake_duration
                    .get_or_create(&DurationLabels {
                        server: server.to_owned(),
                        encryption,
                    })
                    .observe(ms / 1e3);
            }
        }
    }

    fn observe_certificate(&self, v: &Verdict, server: String) {
        let Some(cert) = &v.tls.certificate else {
            return;
        };
        let labels = CertificateLabels {
            server: server.clone(),
            subject: self.subjects.label(&cert.subject),
            issuer: self.issuers.label(&cert.issuer),
            signature_algorithm: self.signature_algorithms.label(&cert.signature_algorithm),
            key_bits: match cert.key_bits {
                Some(b) => self.key_bits.label(&b.to_string()),
                None => "unknown".to_owned(),
            },
        };
        let mut latest = self
            .latest_certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(old) = latest.get(&server) {
            if *old != labels {
                self.certificate_info.remove(old);
            }
        }
        self.certificate_info.get_or_create(&labels).set(1);
        latest.insert(server.clone(), labels);
        self.certificate_not_after
            .get_or_create(&ServerLabels { server })
            .set(cert.not_after);
    }

    /// Adds a run's counters (a whole `analyze` run, or what a live run read since the last call).
    pub fn observe_run(&self, s: &RunSummary) {
        let r = &self.run;
        r.frames.inc_by(s.frames);
        r.tcp_segments.inc_by(s.tcp_segments);
        r.not_tcp.inc_by(s.not_tcp);
        let layers = [s.decode_errors, s.tds_parse_errors, s.tls_parse_errors];
        for (layer, n) in PARSE_LAYERS.into_iter().zip(layers) {
            r.parse_errors
                .get_or_create(&LayerLabels { layer })
                .inc_by(n);
        }
        r.duplicates.inc_by(s.duplicates);
        r.duplicate_connections.inc_by(s.duplicate_connections);
        r.retransmissions.inc_by(s.retransmissions);
        r.gaps.inc_by(s.gaps);
        r.non_tds_flows.inc_by(s.non_tds_flows);
        let evicted = [s.evicted_capacity, s.evicted_memory];
        for (cause, n) in EVICTION_CAUSES.into_iter().zip(evicted) {
            r.evicted.get_or_create(&CauseLabels { cause }).inc_by(n);
        }
        r.dropped_segments.inc_by(s.dropped_segments);
        r.connections_tracked
            .set(i64::try_from(s.connections_tracked).unwrap_or(i64::MAX));
        r.buffered_bytes
            .set(i64::try_from(s.buffered_bytes).unwrap_or(i64::MAX));
    }

    /// Sets `tds_connections_open` from a snapshot of the connections tracked now (server, stage,
    /// count). Servers go through the same cap as the counters (beyond it they add up under
    /// `server="other"`); a series present before and absent now is set to 0 rather than removed,
    /// so a scrape never sees a family half rewritten. Costs one pass over the snapshot.
    pub fn set_open(&self, open: &[(SocketAddr, Stage, u64)]) {
        let mut now: HashMap<OpenLabels, i64> = HashMap::new();
        for &(server, stage, n) in open {
            let labels = OpenLabels {
                server: self.servers.label(&server.to_string()),
                stage: stage.as_str(),
            };
            let v = now.entry(labels).or_insert(0);
            *v = v.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut series = self.open_series.lock().unwrap_or_else(|e| e.into_inner());
        for (labels, n) in &now {
            self.connections_open.get_or_create(labels).set(*n);
        }
        for labels in series.iter() {
            if !now.contains_key(labels) {
                self.connections_open.get_or_create(labels).set(0);
            }
        }
        series.extend(now.into_keys());
    }

    /// Every family in the OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave the text cut short,
        // and the missing `# EOF` tells a scraper so.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;
    use crate::tls::Certificate;
    use crate::verdict::{
        AlertFact, CertificateFacts, CloseFacts, Durations, LoginFacts, Mode, PreloginFacts,
        Reason, TlsFacts,
    };
    use std::borrow::Cow;
    use std::sync::Arc;

    /// An established login-only TLS 1.2 connection to `server`.
    fn established(server: &str) -> Verdict {
        Verdict {
            client: "10.0.0.9:50000".parse().expect("address"),
            server: server.parse().expect("address"),
            first_seen: Timestamp(1_714_557_600_000_000_000),
            last_seen: Timestamp(1_714_557_601_000_000_000),
            mode: Mode::Tds7,
            encryption: Encryption::LoginOnly,
            stage: Stage::Established,
            outcome: Outcome::Established,
            reason: None,
            prelogin: PreloginFacts {
                client_encryption: Some("OFF"),
                server_encryption: Some("OFF"),
                ..PreloginFacts::default()
            },
            tls: TlsFacts {
                client_max_version: Some(Cow::Borrowed("TLSv1.2")),
                dhe_offered: Some(false),
                version: Some(Cow::Borrowed("TLSv1.2")),
                suite: Some(Cow::Borrowed("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")),
                kx: Some("ecdhe"),
                completed: Some(true),
                ..TlsFacts::default()
            },
            login: LoginFacts {
                result: Some(LoginResult::Ack),
                ..LoginFacts::default()
            },
            close: CloseFacts {
                first_fin: Some(Side::Client),
                stage: Some(Stage::Established),
                ..CloseFacts::default()
            },
            durations_ms: Durations {
                prelogin: Some(2.0),
                tls_handshake: Some(5.0),
                login: Some(3.0),
                total: Some(1000.0),
            },
            evidence: Cow::Borrowed("LOGINACK seen"),
            probe: false,
        }
    }

    /// A DHE handshake the client reset after the ServerHello.
    fn dhe_reset(server: &str) -> Verdict {
        let mut v = established(server);
        v.stage = Stage::TlsHandshake;
        v.outcome = Outcome::Failed;
        v.reason = Some(Reason::DheKeyExchangeFailure);
        v.tls.dhe_offered = Some(true);
        v.tls.suite = Some(Cow::Borrowed("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"));
        v.tls.kx = Some("dhe");
        v.tls.completed = Some(false);
        v.tls.alerts = vec![
            AlertFact {
                from: Side::Client,
                level: Some("fatal"),
                description: Some("decrypt_error".into()),
            },
            AlertFact {
                from: Side::Server,
                level: None,
                description: None,
            },
        ];
        v.login = LoginFacts::default();
        v.close = CloseFacts {
            first_fin: None,
            first_rst: Some(Side::Client),
            stage: Some(Stage::TlsHandshake),
            abnormal: true,
        };
        v.durations_ms.tls_handshake = None;
        v.durations_ms.login = None;
        v
    }

    fn probe(server: &str) -> Verdict {
        let mut v = established(server);
        v.encryption = Encryption::Unknown;
        v.stage = Stage::Connected;
        v.outcome = Outcome::Failed;
        v.reason = Some(Reason::Closed);
        v.prelogin = PreloginFacts::default();
        v.tls = TlsFacts::default();
        v.login = LoginFacts::default();
        v.close.stage = Some(Stage::Connected);
        v.durations_ms = Durations::default();
        v.probe = true;
        v
    }

    fn certificate(subject: &str, not_after: i64) -> CertificateFacts {
        CertificateFacts(Arc::new(Certificate {
            subject: subject.to_owned(),
            issuer: "CN=SSL_Self_Signed_Fallback".to_owned(),
            signature_algorithm: "sha256WithRSAEncryption".to_owned(),
            key_type: "RSA".to_owned(),
            key_bits: Some(2048),
            not_after,
            ..Certificate::default()
        }))
    }

    /// The sample lines (not comments), sorted.
    fn samples(m: &Metrics) -> Vec<String> {
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    fn has(lines: &[String], line: &str) {
        assert!(
            lines.iter().any(|l| l == line),
            "missing `{line}` in:\n{}",
            lines.join("\n")
        );
    }

    fn lacks(lines: &[String], prefix: &str) {
        assert!(
            !lines.iter().any(|l| l.starts_with(prefix)),
            "unexpected `{prefix}` in:\n{}",
            lines.join("\n")
        );
    }

    #[test]
    fn an_established_connection() {
        let m = Metrics::new(&MetricsConfig::default());
        m.observe(&established("10.1.1.1:1433"));
        m.observe(&established("10.1.1.1:1433"));
        let s = samples(&m);
        let srv = r#"server="10.1.1.1:1433""#;
        has(
            &s,
            &format!(
                r#"tds_connections_total{{{srv},encryption="login_only",outcome="established"}} 2"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_tls_handshakes_total{{{srv},version="TLSv1.2",suite="TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",kx="ecdhe",result="completed"}} 2"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_tls_client_hellos_total{{{srv},max_version="TLSv1.2",dhe_offered="false"}} 2"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_prelogin_encryption_total{{{srv},client="OFF",server_setting="OFF"}} 2"#
            ),
        );
        has(
            &s,
            &format!(r#"tds_login_results_total{{{srv},result="ack",error=""}} 2"#),
        );
        // 2 + 5 + 3 ms.
        has(
            &s,
            &format!(r#"tds_handshake_duration_seconds_sum{{{srv},encryption="login_only"}} 0.02"#),
        );
        has(
            &s,
            &format!(r#"tds_handshake_duration_seconds_count{{{srv},encryption="login_only"}} 2"#),
        );
        has(
            &s,
            &format!(
                r#"tds_handshake_duration_seconds_bucket{{le="0.01",{srv},encryption="login_only"}} 2"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_handshake_duration_seconds_bucket{{le="0.005",{srv},encryption="login_only"}} 0"#
            ),
        );
        has(
            &s,
            &format!(r#"tds_stage_duration_seconds_sum{{{srv},stage="tls_handshake"}} 0.01"#),
        );
        has(
            &s,
            &format!(r#"tds_stage_duration_seconds_count{{{srv},stage="login"}} 2"#),
        );
        has(&s, r#"tdswatch_build_info{version="0.1.0"} 1"#);
        lacks(&s, "tds_handshake_failures_total");
        lacks(&s, "tds_abnormal_closes_total");
        lacks(&s, "tds_tcp_probes_total");
        lacks(&s, "tds_tls_alerts_total");
        lacks(&s, "tds_server_certificate");
    }

    #[test]
    fn a_failure_an_abnormal_close_alerts_and_a_probe() {
        let m = Metrics::new(&MetricsConfig::default());
        m.observe(&dhe_reset("10.1.1.1:1433"));
        m.observe(&probe("10.1.1.1:1433"));
        let s = samples(&m);
        let srv = r#"server="10.1.1.1:1433""#;
        has(
            &s,
            &format!(
                r#"tds_connections_total{{{srv},encryption="login_only",outcome="failed"}} 1"#
            ),
        );
        has(
            &s,
            &format!(r#"tds_connections_total{{{srv},encryption="unknown",outcome="failed"}} 1"#),
        );
        has(
            &s,
            &format!(
                r#"tds_handshake_failures_total{{{srv},stage="tls_handshake",reason="dhe_key_exchange_failure"}} 1"#
            ),
        );
        has(&s, &format!(r#"tds_tcp_probes_total{{{srv}}} 1"#));
        has(
            &s,
            &format!(
                r#"tds_abnormal_closes_total{{{srv},stage="tls_handshake",side="client",kind="rst"}} 1"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_tls_handshakes_total{{{srv},version="TLSv1.2",suite="TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",kx="dhe",result="failed"}} 1"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_tls_client_hellos_total{{{srv},max_version="TLSv1.2",dhe_offered="true"}} 1"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_tls_alerts_total{{{srv},side="client",description="decrypt_error"}} 1"#
            ),
        );
        has(
            &s,
            &format!(r#"tds_tls_alerts_total{{{srv},side="server",description="encrypted"}} 1"#),
        );
        // Neither failed connection reached the login, nor is either one established.
        lacks(&s, "tds_login_results_total");
        lacks(&s, "tds_handshake_duration_seconds");
        // Only one of the two failures counts as a handshake failure; only the probe closed normally.
        assert_eq!(
            s.iter()
                .filter(|l| l.starts_with("tds_handshake_failures_total"))
                .count(),
            1
        );
        assert_eq!(
            s.iter()
                .filter(|l| l.starts_with("tds_abnormal_closes_total"))
                .count(),
            1
        );
    }

    #[test]
    fn a_server_fin_first_and_a_login_error() {
        let m = Metrics::new(&MetricsConfig::default());
        let mut v = established("10.1.1.1:1433");
        v.stage = Stage::Login;
        v.outcome = Outcome::Failed;
        v.reason = Some(Reason::LoginFailed);
        v.login = LoginFacts {
            result: Some(LoginResult::Error),
            error_number: Some(18456),
            tds_version: None,
        };
        v.close = CloseFacts {
            first_fin: Some(Side::Server),
            first_rst: None,
            stage: Some(Stage::Login),
            abnormal: true,
        };
        m.observe(&v);
        let s = samples(&m);
        let srv = r#"server="10.1.1.1:1433""#;
        has(
            &s,
            &format!(r#"tds_login_results_total{{{srv},result="error",error="18456"}} 1"#),
        );
        has(
            &s,
            &format!(
                r#"tds_abnormal_closes_total{{{srv},stage="login",side="server",kind="fin"}} 1"#
            ),
        );
        has(
            &s,
            &format!(
                r#"tds_handshake_failures_total{{{srv},stage="login",reason="login_failed"}} 1"#
            ),
        );
    }

    #[test]
    fn servers_beyond_the_cap_are_other() {
        let m = Metrics::new(&MetricsConfig { max_servers: 2 });
        for server in [
            "10.0.0.1:1433",
            "10.0.0.2:1433",
            "10.0.0.3:1433",
            "10.0.0.4:1433",
            "10.0.0.1:1433",
        ] {
            m.observe(&established(server));
        }
        let s = samples(&m);
        let line = |server: &str, n: u32| {
            format!(
                r#"tds_connections_total{{server="{server}",encryption="login_only",outcome="established"}} {n}"#
            )
        };
        has(&s, &line("10.0.0.1:1433", 2));
        has(&s, &line("10.0.0.2:1433", 1));
        has(&s, &line("other", 2));
        assert_eq!(
            s.iter()
                .filter(|l| l.starts_with("tds_connections_total"))
                .count(),
            3
        );
    }

    #[test]
    fn wire_values_beyond_their_cap_are_other() {
        let m = Metrics::new(&MetricsConfig::default());
        for i in 0..caps::SUITES + 10 {
            let mut v = established("10.1.1.1:1433");
            v.tls.suite = Some(Cow::Owned(format!("0x{i:04x}")));
            m.observe(&v);
        }
        let s = samples(&m);
        let tls: Vec<_> = s
            .iter()
            .filter(|l| l.starts_with("tds_tls_handshakes_total"))
            .collect();
        assert_eq!(tls.len(), caps::SUITES + 1);
        has(
            &s,
            r#"tds_tls_handshakes_total{server="10.1.1.1:1433",version="TLSv1.2",suite="other",kx="ecdhe",result="completed"} 10"#,
        );
    }

    #[test]
    fn the_latest_certificate_replaces_the_previous_one() {
        let m = Metrics::new(&MetricsConfig::default());
        let mut v = established("10.1.1.1:1433");
        v.tls.certificate = Some(certificate("CN=old \"quoted\"", 1_800_000_000));
        m.observe(&v);
        let s = samples(&m);
        has(
            &s,
            r#"tds_server_certificate_info{server="10.1.1.1:1433",subject="CN=old \"quoted\"",issuer="CN=SSL_Self_Signed_Fallback",signature_algorithm="sha256WithRSAEncryption",key_bits="2048"} 1"#,
        );
        has(
            &s,
            r#"tds_server_certificate_not_after_seconds{server="10.1.1.1:1433"} 1800000000"#,
        );
        v.tls.certificate = Some(certificate("CN=new", 1_900_000_000));
        m.observe(&v);
        let s = samples(&m);
        has(
            &s,
            r#"tds_server_certificate_info{server="10.1.1.1:1433",subject="CN=new",issuer="CN=SSL_Self_Signed_Fallback",signature_algorithm="sha256WithRSAEncryption",key_bits="2048"} 1"#,
        );
        has(
            &s,
            r#"tds_server_certificate_not_after_seconds{server="10.1.1.1:1433"} 1900000000"#,
        );
        assert_eq!(
            s.iter()
                .filter(|l| l.starts_with("tds_server_certificate_info"))
                .count(),
            1
        );
    }

    #[test]
    fn hostile_values_are_escaped_and_odd_durations_skipped() {
        let m = Metrics::new(&MetricsConfig::default());
        let mut v = established("10.1.1.1:1433");
        v.tls.certificate = Some(certificate("CN=a\\b\n} 1\n# EOF", 0));
        v.tls.alerts = vec![AlertFact {
            from: Side::Server,
            level: Some("fatal"),
            description: Some("x\"y".into()),
        }];
        v.durations_ms = Durations {
            prelogin: Some(f64::NAN),
            tls_handshake: Some(-1.0),
            login: Some(f64::INFINITY),
            total: None,
        };
        m.observe(&v);
        let text = m.encode();
        assert!(text.contains(r#"subject="CN=a\\b\n} 1\n# EOF""#), "{text}");
        assert!(text.contains(r#"description="x\"y""#), "{text}");
        // One `# EOF`, at the end; every line is a comment or one sample.
        assert_eq!(text.lines().filter(|l| *l == "# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("tds_stage_duration_seconds"), "{text}");
        assert!(!text.contains("tds_handshake_duration_seconds"), "{text}");
    }

    #[test]
    fn shareable_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Metrics>();
    }

    #[test]
    fn run_counters_add_up() {
        let m = Metrics::new(&MetricsConfig::default());
        let run = RunSummary {
            frames: 10,
            tcp_segments: 9,
            not_tcp: 1,
            decode_errors: 2,
            duplicates: 3,
            retransmissions: 4,
            gaps: 5,
            non_tds_flows: 6,
            evicted_capacity: 7,
            evicted_memory: 1,
            tds_parse_errors: 3,
            tls_parse_errors: 4,
            dropped_segments: 5,
            connections_tracked: 11,
            buffered_bytes: 4096,
            ..RunSummary::default()
        };
        m.observe_run(&run);
        // Gauges take the latest value; counters add up.
        m.observe_run(&RunSummary {
            connections_tracked: 12,
            buffered_bytes: 100,
            ..run.clone()
        });
        let s = samples(&m);
        for line in [
            "tdswatch_frames_total 20",
            "tdswatch_tcp_segments_total 18",
            "tdswatch_not_tcp_frames_total 2",
            r#"tdswatch_parse_errors_total{layer="decode"} 4"#,
            r#"tdswatch_parse_errors_total{layer="tds"} 6"#,
            r#"tdswatch_parse_errors_total{layer="tls"} 8"#,
            "tdswatch_duplicate_segments_total 6",
            "tdswatch_retransmitted_segments_total 8",
            "tdswatch_stream_gaps_total 10",
            "tdswatch_non_tds_flows_total 12",
            r#"tdswatch_evicted_connections_total{cause="capacity"} 14"#,
            r#"tdswatch_evicted_connections_total{cause="memory"} 2"#,
            "tdswatch_dropped_segments_total 10",
            "tdswatch_connections_tracked 12",
            "tdswatch_buffered_bytes 100",
        ] {
            has(&s, line);
        }
    }

    #[test]
    fn open_connections_gauge_follows_the_snapshots_under_the_server_cap() {
        let m = Metrics::new(&MetricsConfig { max_servers: 2 });
        let a: SocketAddr = "10.0.0.1:1433".parse().expect("address");
        let b: SocketAddr = "10.0.0.2:1433".parse().expect("address");
        let c: SocketAddr = "10.0.0.3:1433".parse().expect("address");
        let d: SocketAddr = "10.0.0.4:1433".parse().expect("address");
        m.set_open(&[
            (a, Stage::Syn, 3),
            (a, Stage::Established, 40),
            (b, Stage::TlsHandshake, 2),
            (c, Stage::Syn, 5),
            (d, Stage::Syn, 7),
        ]);
        let s = samples(&m);
        assert!(m.encode().contains("# TYPE tds_connections_open gauge\n"));
        has(
            &s,
            r#"tds_connections_open{server="10.0.0.1:1433",stage="syn"} 3"#,
        );
        has(
            &s,
            r#"tds_connections_open{server="10.0.0.1:1433",stage="established"} 40"#,
        );
        has(
            &s,
            r#"tds_connections_open{server="10.0.0.2:1433",stage="tls_handshake"} 2"#,
        );
        // Servers beyond the cap add up under "other".
        has(&s, r#"tds_connections_open{server="other",stage="syn"} 12"#);
        assert_eq!(
            s.iter()
                .filter(|l| l.starts_with("tds_connections_open{"))
                .count(),
            4
        );

        // The next snapshot: series gone are zero, the others take the new values.
        m.set_open(&[(a, Stage::Established, 41)]);
        let s = samples(&m);
        has(
            &s,
            r#"tds_connections_open{server="10.0.0.1:1433",stage="established"} 41"#,
        );
        has(
            &s,
            r#"tds_connections_open{server="10.0.0.1:1433",stage="syn"} 0"#,
        );
        has(
            &s,
            r#"tds_connections_open{server="10.0.0.2:1433",stage="tls_handshake"} 0"#,
        );
        has(&s, r#"tds_connections_open{server="other",stage="syn"} 0"#);

        // The same cap as the verdict counters: a verdict for c counts as "other".
        m.observe(&established("10.0.0.3:1433"));
        has(
            &samples(&m),
            r#"tds_connections_total{server="other",encryption="login_only",outcome="established"} 1"#,
        );
    }

    #[test]
    fn nothing_observed_is_still_valid() {
        let m = Metrics::new(&MetricsConfig::default());
        let text = m.encode();
        // Families without a sample are left out; the agent's own counters are always there.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("tds_") || l.starts_with("# TYPE tds_")),
            "{text}"
        );
        assert!(text.contains("tdswatch_frames_total 0\n"), "{text}");
        // Labelled health counters start at 0 for every label value, so the first one shows up
        // in rate() and increase().
        for line in [
            "tdswatch_parse_errors_total{layer=\"tls\"} 0\n",
            "tdswatch_evicted_connections_total{cause=\"memory\"} 0\n",
        ] {
            assert!(text.contains(line), "{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
