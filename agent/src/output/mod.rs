//! Outputs: render verdicts for people and machines: the `analyze` report, JSON lines, Prometheus
//! families (`analyze --format prometheus`, and the live agent) and (with the live agent) the event
//! log. Everything here starts from [`Verdict`] records and run counters; nothing here parses bytes.

pub mod json;
pub mod metrics;
pub mod report;

/// Counters of a whole run, shown under the report (what was read, what was skipped and why).
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub files: Vec<String>,
    pub frames: u64,
    pub tcp_segments: u64,
    /// Frames that were not TCP over IP, by cause.
    pub not_tcp: u64,
    pub decode_errors: u64,
    pub duplicates: u64,
    pub retransmissions: u64,
    pub gaps: u64,
    /// Flows on a watched port whose bytes were not TDS 7+ (Sybase TDS 5, TDS 4.2, random bytes).
    pub non_tds_flows: u64,
    pub evicted: u64,
    pub first_ts: Option<crate::capture::Timestamp>,
    pub last_ts: Option<crate::capture::Timestamp>,
}

impl RunSummary {
    /// The counts added since `earlier` (a live agent publishes its counters as they grow).
    pub fn since(&self, earlier: &RunSummary) -> RunSummary {
        RunSummary {
            files: Vec::new(),
            frames: self.frames.saturating_sub(earlier.frames),
            tcp_segments: self.tcp_segments.saturating_sub(earlier.tcp_segments),
            not_tcp: self.not_tcp.saturating_sub(earlier.not_tcp),
            decode_errors: self.decode_errors.saturating_sub(earlier.decode_errors),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            retransmissions: self.retransmissions.saturating_sub(earlier.retransmissions),
            gaps: self.gaps.saturating_sub(earlier.gaps),
            non_tds_flows: self.non_tds_flows.saturating_sub(earlier.non_tds_flows),
            evicted: self.evicted.saturating_sub(earlier.evicted),
            first_ts: self.first_ts,
            last_ts: self.last_ts,
        }
    }
}
