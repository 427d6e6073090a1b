//! Limits and settings shared by the pipeline stages: one struct, each field with its default and the
//! reason for it. Nothing here reads files or flags; the command line and the config file fill it in.

/// Bounds on what the pipeline keeps. Every limit that is reached is counted where it bites.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections tracked at once. 1 M connections at well under 1 KiB each stays below 1 GiB; a
    /// host with more concurrent SQL Server connections than that is beyond one agent's remit.
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction of a connection before the hole is declared lost.
    /// 256 KiB covers a full TCP window of handshake traffic.
    pub max_ooo_bytes_per_direction: usize,
    /// Out-of-order segments buffered per direction (bounds the bookkeeping, not just the bytes).
    pub max_ooo_segments_per_direction: usize,
    /// Bytes buffered across all connections (out-of-order data plus protocol reassembly buffers).
    /// When exceeded, the oldest idle connection is evicted.
    pub max_buffered_bytes_total: usize,
    /// Largest TDS message kept whole for parsing (PRELOGIN, login response). Real ones are < 4 KiB;
    /// larger login responses are parsed from their first 64 KiB.
    pub max_tds_message: usize,
    /// Largest TLS handshake message kept whole (a certificate chain). 64 KiB holds any sane chain.
    pub max_tls_handshake_message: usize,
    /// A connection still in its handshake with no packet for this long is ended: `idle_timeout`.
    /// Clients give up after 15 s (the default login timeout); 120 s leaves room for slow links.
    pub handshake_idle_timeout_ns: u64,
    /// An established connection with no packet for this long is forgotten (its verdict is emitted
    /// with the close unknown). Connection pools keep idle connections for hours; 2 h bounds memory.
    pub established_idle_timeout_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1_000_000,
            max_ooo_bytes_per_direction: 256 * 1024,
            max_ooo_segments_per_direction: 64,
            max_buffered_bytes_total: 256 * 1024 * 1024,
            max_tds_message: 64 * 1024,
            max_tls_handshake_message: 64 * 1024,
            handshake_idle_timeout_ns: 120 * 1_000_000_000,
            established_idle_timeout_ns: 2 * 3600 * 1_000_000_000,
        }
    }
}

/// Everything the pipeline needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP ports that SQL Server listens on (1433 by default; named instances use others).
    pub ports: Vec<u16>,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ports: vec![1433],
            limits: Limits::default(),
        }
    }
}
