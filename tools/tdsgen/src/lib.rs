//! tdsgen: writes synthetic SQL Server (TDS) captures whose TLS handshakes are real OpenSSL
//! handshakes, together with the verdict each connection should get. The expected verdicts come
//! from what was generated, never from tdswatch (this crate does not depend on it).

pub mod gen;
pub mod pcap;
pub mod rng;
pub mod scenario;
pub mod tcp;
pub mod tds;
pub mod tls;

/// Which end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}
