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
    /// Frames that could not be decoded (parse errors of the decode layer).
    pub decode_errors: u64,
    /// Streams on a watched port whose bytes stopped parsing as TDS (parse errors of the tds layer).
    pub tds_parse_errors: u64,
    /// TLS records or handshake messages that did not parse (parse errors of the tls layer).
    pub tls_parse_errors: u64,
    pub duplicates: u64,
    /// Connections seen twice under other addresses (NAT): counted once, the copy muted.
    pub duplicate_connections: u64,
    pub retransmissions: u64,
    pub gaps: u64,
    /// Flows on a watched port whose bytes were not TDS 7+ (Sybase TDS 5, TDS 4.2, random bytes).
    pub non_tds_flows: u64,
    /// Connections pushed out because the table was full.
    pub evicted_capacity: u64,
    /// Connections pushed out because buffered bytes went over the total cap.
    pub evicted_memory: u64,
    /// Segments the pipeline discarded (too far from the stream's next byte to belong to it).
    pub dropped_segments: u64,
    /// Gauge: connections in the table now.
    pub connections_tracked: u64,
    /// Gauge: bytes held in reassembly buffers now.
    pub buffered_bytes: u64,
    pub first_ts: Option<crate::capture::Timestamp>,
    pub last_ts: Option<crate::capture::Timestamp>,
}

impl RunSummary {
    /// Connections pushed out of the table by its limits, whatever the cause.
    pub fn evicted(&self) -> u64 {
        self.evicted_capacity + self.evicted_memory
    }

    /// The counts added since `earlier` (a live agent publishes its counters as they grow); the
    /// gauges keep their latest value.
    pub fn since(&self, earlier: &RunSummary) -> RunSummary {
        RunSummary {
            files: Vec::new(),
            frames: self.frames.saturating_sub(earlier.frames),
            tcp_segments: self.tcp_segments.saturating_sub(earlier.tcp_segments),
            not_tcp: self.not_tcp.saturating_sub(earlier.not_tcp),
            decode_errors: self.decode_errors.saturating_sub(earlier.decode_errors),
            tds_parse_errors: self
                .tds_parse_errors
                .saturating_sub(earlier.tds_parse_errors),
            tls_parse_errors: self
                .tls_parse_errors
                .saturating_sub(earlier.tls_parse_errors),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            duplicate_connections: self
                .duplicate_connections
                .saturating_sub(earlier.duplicate_connections),
            retransmissions: self.retransmissions.saturating_sub(earlier.retransmissions),
            gaps: self.gaps.saturating_sub(earlier.gaps),
            non_tds_flows: self.non_tds_flows.saturating_sub(earlier.non_tds_flows),
            evicted_capacity: self
                .evicted_capacity
                .saturating_sub(earlier.evicted_capacity),
            evicted_memory: self.evicted_memory.saturating_sub(earlier.evicted_memory),
            dropped_segments: self
                .dropped_segments
                .saturating_sub(earlier.dropped_segments),
            // Gauges: the latest value, not a difference.
            connections_tracked: self.connections_tracked,
            buffered_bytes: self.buffered_bytes,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
        }
    }
}
