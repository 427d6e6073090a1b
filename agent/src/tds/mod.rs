//! TDS: a pure parser over one direction's in-order byte stream. Splits it into TDS packets (or bare
//! TLS records, which need no TDS header), reassembles messages across packets and packets across
//! segments, parses PRELOGIN options, recognises LOGIN7 without keeping its contents, parses LOGINACK,
//! ERROR and routing ENVCHANGE tokens in clear responses, and hands TLS bytes (wrapped in PRELOGIN
//! packets, or bare) on untouched. No I/O, no clocks, no metrics; never keeps user names, passwords or
//! SQL text.

use crate::config::Limits;
use crate::conntrack::Side;

/// PRELOGIN ENCRYPTION values ([MS-TDS] 2.2.6.5), without the client-certificate bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptSetting {
    Off,
    On,
    NotSup,
    Req,
}

impl EncryptSetting {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b & 0x7f {
            0 => Some(EncryptSetting::Off),
            1 => Some(EncryptSetting::On),
            2 => Some(EncryptSetting::NotSup),
            3 => Some(EncryptSetting::Req),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptSetting::Off => "OFF",
            EncryptSetting::On => "ON",
            EncryptSetting::NotSup => "NOT_SUP",
            EncryptSetting::Req => "REQ",
        }
    }
}

/// The PRELOGIN options one side sent. Everything optional: a field absent or malformed is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Prelogin {
    /// VERSION: major, minor, build (big-endian on the wire), sub-build.
    pub version: Option<(u8, u8, u16, u16)>,
    /// ENCRYPTION raw byte (see [`EncryptSetting::from_byte`]; bit 0x80 = client certificate).
    pub encryption: Option<u8>,
    /// INSTOPT: the instance name, printable ASCII only, at most 64 characters.
    pub instance: Option<String>,
    /// MARS: 0 off, 1 on.
    pub mars: Option<u8>,
    pub fedauth_required: Option<u8>,
    pub has_trace_id: bool,
    pub has_nonce: bool,
}

/// What a TDS stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TdsEvent<'a> {
    /// A whole PRELOGIN message (client 0x12, or the server's 0x04 answer to it).
    Prelogin(Prelogin),
    /// TLS bytes, in order: inside PRELOGIN packets (`wrapped`) or bare on TCP. Record boundaries are
    /// not guaranteed: the TLS layer reassembles.
    TlsData { bytes: &'a [u8], wrapped: bool },
    /// A LOGIN7 message in clear (type 0x10); only its TDS version is kept.
    Login7 { tds_version: u32 },
    /// A TDS 4.2/5.0 login (type 0x02): Sybase or pre-7 SQL Server, not a TDS 7+ handshake.
    LegacyLogin,
    /// A LOGINACK token in a clear response, with the TDS version the server agreed to.
    LoginAck { tds_version: u32 },
    /// An ERROR token in a clear response (its message text is never kept: it names the user).
    Error { number: u32, state: u8, class: u8 },
    /// A routing ENVCHANGE (type 20) in a clear response: the client is sent elsewhere.
    Routing { port: u16 },
    /// A complete TDS message of type `packet_type` (every message, including those above).
    Message { packet_type: u8 },
    /// Bytes at a packet boundary that are neither a TDS packet header nor a TLS record header: the
    /// stream is not TDS 7+ (random bytes, another protocol). The stream stops parsing.
    NotTds,
    /// A hole in the stream broke framing; the stream stops parsing.
    Desync,
}

/// One direction of a TDS connection.
pub struct TdsStream {
    _private: (),
}

impl TdsStream {
    /// `side` is the sender of the bytes this stream parses.
    pub fn new(side: Side, limits: &Limits) -> Self {
        let _ = (side, limits);
        todo!("tds")
    }

    /// Parses the next in-order bytes, calling `out` for each event.
    pub fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(TdsEvent<'_>)) {
        let _ = (bytes, out);
        todo!("tds")
    }

    /// `len` bytes are missing at this point of the stream.
    pub fn gap(&mut self, len: u64, out: &mut dyn FnMut(TdsEvent<'_>)) {
        let _ = (len, out);
        todo!("tds")
    }

    /// Bytes held in reassembly buffers.
    pub fn buffered_bytes(&self) -> usize {
        todo!("tds")
    }
}

/// "7.4", "7.3B", "8.0" … for a TDS version as LOGIN7 and LOGINACK carry it (0x74000004 …).
pub fn tds_version_name(v: u32) -> String {
    match v {
        0x7000_0000 => "7.0".into(),
        0x7100_0000 | 0x7100_0001 => "7.1".into(),
        0x7209_0002 => "7.2".into(),
        0x730A_0003 => "7.3A".into(),
        0x730B_0003 => "7.3B".into(),
        0x7400_0004 => "7.4".into(),
        0x0800_0000 => "8.0".into(),
        other => format!("0x{other:08X}"),
    }
}
