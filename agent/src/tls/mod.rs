//! TLS: a pure parser over one direction's TLS bytes (as the TDS layer hands them on, wrapped or
//! bare). Reassembles records across chunks and handshake messages across records, and reports the
//! facts a passive observer can see: ClientHello offer (versions, suites, SNI, ALPN, JA4),
//! ServerHello choice (TLS 1.3 through `supported_versions`, HelloRetryRequest), the server
//! certificate, the DH group size, ChangeCipherSpec, encrypted handshake records, alerts with their
//! level and description while in clear, and application data. Built on `tls-parser` and
//! `x509-parser`. No I/O, no clocks, no metrics.

pub mod ja4;

use crate::config::Limits;
use crate::conntrack::Side;

/// TLS protocol versions as they appear on the wire.
pub const SSL3: u16 = 0x0300;
pub const TLS10: u16 = 0x0301;
pub const TLS11: u16 = 0x0302;
pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// "TLSv1.2" for 0x0303 …, "SSLv3" for 0x0300, "0x7f1c" for anything else.
pub fn version_name(v: u16) -> String {
    match v {
        SSL3 => "SSLv3".into(),
        TLS10 => "TLSv1.0".into(),
        TLS11 => "TLSv1.1".into(),
        TLS12 => "TLSv1.2".into(),
        TLS13 => "TLSv1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// The IANA name of a cipher suite ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), or "0xc02f" when unknown.
pub fn suite_name(id: u16) -> String {
    let _ = id;
    todo!("tls")
}

/// The key exchange a negotiated suite (TLS ≤ 1.2) implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyExchange {
    Rsa,
    Dhe,
    Ecdhe,
    /// PSK, anonymous, SRP, or a TLS 1.3 suite (see [`kx_of_group`]).
    Other,
}

impl KeyExchange {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyExchange::Rsa => "rsa",
            KeyExchange::Dhe => "dhe",
            KeyExchange::Ecdhe => "ecdhe",
            KeyExchange::Other => "other",
        }
    }
}

/// Key exchange of a TLS ≤ 1.2 suite.
pub fn kx_of_suite(id: u16) -> KeyExchange {
    let _ = id;
    todo!("tls")
}

/// Key exchange of a TLS 1.3 key-share group: ffdhe* (0x0100–0x01ff) is `Dhe`, the others `Ecdhe`.
pub fn kx_of_group(group: u16) -> KeyExchange {
    if (0x0100..=0x01ff).contains(&group) {
        KeyExchange::Dhe
    } else {
        KeyExchange::Ecdhe
    }
}

/// True for a GREASE value (RFC 8701): 0x0a0a, 0x1a1a, … 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// What a ClientHello offers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct ClientHello {
    /// The record-layer-independent `legacy_version` of the ClientHello.
    pub legacy_version: u16,
    /// Highest and lowest non-GREASE `supported_versions` entries, else `legacy_version` for both.
    pub max_version: u16,
    pub min_version: u16,
    /// Offered suites in order, GREASE and SCSVs removed.
    pub suites: Vec<u16>,
    /// Any TLS_DHE_* suite offered.
    pub dhe_offered: bool,
    /// server_name (host_name), at most 255 bytes, printable ASCII only.
    pub sni: Option<String>,
    /// ALPN protocol names in order (printable ASCII only).
    pub alpn: Vec<String>,
    /// supported_groups, GREASE removed.
    pub groups: Vec<u16>,
    /// The JA4 fingerprint (FoxIO JA4, TCP: "t13d1516h2_8daaf6152771_e5627efa2ab1").
    pub ja4: String,
}

/// What a ServerHello chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    /// `supported_versions` when present, else `legacy_version`.
    pub version: u16,
    pub suite: u16,
    /// A HelloRetryRequest (ServerHello with the RFC 8446 magic random).
    pub hello_retry: bool,
    /// key_share group (TLS 1.3).
    pub key_share_group: Option<u16>,
}

/// Facts of the leaf certificate, when it travels in clear.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Certificate {
    /// RFC 4514 strings, at most 256 characters each.
    pub subject: String,
    pub issuer: String,
    /// "sha256WithRSAEncryption", "ecdsa-with-SHA384", … or the dotted OID.
    pub signature_algorithm: String,
    /// The hash of the signature algorithm ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"), when known.
    pub signature_hash: Option<&'static str>,
    /// "RSA", "EC", "DSA", "Ed25519", "Ed448", or the dotted OID.
    pub key_type: String,
    pub key_bits: Option<u32>,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// DNS names from subjectAltName (at most 16), and the subject CN.
    pub dns_names: Vec<String>,
    /// extendedKeyUsage: `Some(true)` when it lists serverAuth (or anyExtendedKeyUsage), `Some(false)` when
    /// present without it, `None` when absent.
    pub server_auth_eku: Option<bool>,
}

/// What a TLS stream yields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsEvent {
    ClientHello(Box<ClientHello>),
    ServerHello(ServerHello),
    /// The first (leaf) certificate of a clear Certificate message.
    Certificate(Box<Certificate>),
    /// ServerKeyExchange: the DH prime size for DHE, the named curve for ECDHE.
    ServerKeyExchange {
        dh_bits: Option<u32>,
        curve: Option<u16>,
    },
    CertificateRequest,
    ServerHelloDone,
    ClientKeyExchange,
    NewSessionTicket,
    ChangeCipherSpec,
    /// A handshake record after this side's ChangeCipherSpec (Finished), content unreadable.
    EncryptedHandshake,
    /// An alert record. `level`/`description` are `None` when the alert is encrypted.
    Alert {
        level: Option<u8>,
        description: Option<u8>,
    },
    /// An application_data record (in TLS 1.3 this also carries the encrypted handshake).
    ApplicationData {
        len: usize,
    },
    /// A record or handshake message that does not parse; the stream stops parsing.
    Malformed {
        detail: &'static str,
    },
}

/// One direction of a TLS connection.
pub struct TlsStream {
    _private: (),
}

impl TlsStream {
    pub fn new(side: Side, limits: &Limits) -> Self {
        let _ = (side, limits);
        todo!("tls")
    }

    /// The next in-order TLS bytes.
    pub fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(TlsEvent)) {
        let _ = (bytes, out);
        todo!("tls")
    }

    /// `len` bytes are missing here: the stream stops parsing.
    pub fn gap(&mut self) {
        todo!("tls")
    }

    pub fn buffered_bytes(&self) -> usize {
        todo!("tls")
    }
}

/// Alert description names (RFC 8446 §6 and earlier): "protocol_version", "handshake_failure", …
pub fn alert_name(description: u8) -> String {
    let _ = description;
    todo!("tls")
}
