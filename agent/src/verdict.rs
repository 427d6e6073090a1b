//! The verdict: the one record each tracked connection ends with (the primer's §5). Metrics, the
//! event log, the `analyze` report and its JSON all derive from it, so they always agree. This module
//! owns the record and its vocabulary; it parses nothing.

use crate::capture::Timestamp;
use crate::tls;
use serde::Serialize;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which end of a connection.
pub use crate::conntrack::Side;

/// Stage reached, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Syn,
    Connected,
    Prelogin,
    TlsHandshake,
    Login,
    Established,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Tds7,
    Tds8Strict,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    None,
    LoginOnly,
    Full,
    Strict,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Established,
    Failed,
    Unknown,
}

/// Why a connection failed: the most specific reason the evidence supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Refused,
    NoResponse,
    EncryptionMismatch,
    StrictMismatch,
    NoCommonTlsVersion,
    NoCommonCipher,
    WeakCertificateSignature,
    CertificateRejected,
    DheKeyExchangeFailure,
    KeyExchangeFailure,
    TlsAlert,
    LoginFailed,
    Reset,
    Closed,
    IdleTimeout,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            /// Every value, in order.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Stage { Syn => "syn", Connected => "connected", Prelogin => "prelogin",
    TlsHandshake => "tls_handshake", Login => "login", Established => "established" });
names!(Mode { Tds7 => "tds7", Tds8Strict => "tds8_strict", Unknown => "unknown" });
names!(Encryption { None => "none", LoginOnly => "login_only", Full => "full", Strict => "strict",
    Unknown => "unknown" });
names!(Outcome { Established => "established", Failed => "failed", Unknown => "unknown" });
names!(Reason { Refused => "refused", NoResponse => "no_response",
    EncryptionMismatch => "encryption_mismatch", StrictMismatch => "strict_mismatch",
    NoCommonTlsVersion => "no_common_tls_version", NoCommonCipher => "no_common_cipher",
    WeakCertificateSignature => "weak_certificate_signature",
    CertificateRejected => "certificate_rejected",
    DheKeyExchangeFailure => "dhe_key_exchange_failure",
    KeyExchangeFailure => "key_exchange_failure", TlsAlert => "tls_alert",
    LoginFailed => "login_failed", Reset => "reset", Closed => "closed",
    IdleTimeout => "idle_timeout" });

/// PRELOGIN facts (`null` where the side sent none or it was not seen).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PreloginFacts {
    /// Driver version, "major.minor.build.subbuild".
    pub client_version: Option<Version4>,
    /// "OFF", "ON", "NOT_SUP", "REQ".
    pub client_encryption: Option<&'static str>,
    pub server_version: Option<Version4>,
    pub server_encryption: Option<&'static str>,
    pub mars: Option<bool>,
    pub instance: Option<String>,
}

/// A clear TLS alert with its sender. `level`/`description` are `null` for an encrypted alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertFact {
    pub from: Side,
    /// "warning" or "fatal".
    pub level: Option<&'static str>,
    /// "protocol_version", "handshake_failure", …
    pub description: Option<String>,
}

/// Facts of the server's leaf certificate, shared with every connection that showed it; written
/// as `subject`, `issuer`, `signature_algorithm`, `key_type`, `key_bits`, `not_before`,
/// `not_after` (RFC 3339).
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateFacts(pub Arc<tls::Certificate>);

impl std::ops::Deref for CertificateFacts {
    type Target = tls::Certificate;
    fn deref(&self) -> &tls::Certificate {
        &self.0
    }
}

impl Serialize for CertificateFacts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let c = &self.0;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("subject", &c.subject)?;
        m.serialize_entry("issuer", &c.issuer)?;
        m.serialize_entry("signature_algorithm", &c.signature_algorithm)?;
        m.serialize_entry("key_type", &c.key_type)?;
        m.serialize_entry("key_bits", &c.key_bits)?;
        m.serialize_entry("not_before", &format_unix_secs(c.not_before))?;
        m.serialize_entry("not_after", &format_unix_secs(c.not_after))?;
        m.end()
    }
}

/// A four-part version ("16.0.600.0": major, minor, build, sub-build), written as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version4(pub u8, pub u8, pub u16, pub u16);

impl std::fmt::Display for Version4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}.{}", self.0, self.1, self.2, self.3)
    }
}

impl Serialize for Version4 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Cipher suites as offered, kept as their ids and written as IANA names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuiteList(pub Vec<u16>);

impl SuiteList {
    pub fn names(&self) -> impl Iterator<Item = Cow<'static, str>> + '_ {
        self.0.iter().map(|&id| crate::tls::suite_name(id))
    }
}

impl Serialize for SuiteList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// TLS facts (`null` where not seen).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TlsFacts {
    pub client_max_version: Option<Cow<'static, str>>,
    pub client_min_version: Option<Cow<'static, str>>,
    pub client_suites: Option<SuiteList>,
    pub dhe_offered: Option<bool>,
    pub sni: Option<String>,
    pub alpn: Option<Vec<String>>,
    pub ja4: Option<String>,
    /// Negotiated version: "TLSv1.2" …
    pub version: Option<Cow<'static, str>>,
    /// Negotiated suite, IANA name.
    pub suite: Option<Cow<'static, str>>,
    /// "rsa", "dhe", "ecdhe", "other".
    pub kx: Option<&'static str>,
    pub dh_bits: Option<u32>,
    /// Both Finished messages seen (TLS ≤ 1.2), or the client's Finished after the server flight (1.3).
    pub completed: Option<bool>,
    pub certificate: Option<CertificateFacts>,
    pub alerts: Vec<AlertFact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginResult {
    Ack,
    Error,
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoginFacts {
    /// `null` when no LOGIN7 was seen.
    pub result: Option<LoginResult>,
    pub error_number: Option<u32>,
    /// "7.4" …: the LOGINACK's when seen, else LOGIN7's.
    pub tds_version: Option<Cow<'static, str>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CloseFacts {
    pub first_fin: Option<Side>,
    pub first_rst: Option<Side>,
    /// Stage when the first FIN or RST was seen.
    pub stage: Option<Stage>,
    /// Any RST, or a server FIN before the client's FIN.
    pub abnormal: bool,
}

/// Durations in milliseconds (`null` when the phase was not seen whole).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durations {
    /// SYN (or first packet) to the PRELOGIN response.
    pub prelogin: Option<f64>,
    /// ClientHello to the end of the TLS handshake.
    pub tls_handshake: Option<f64>,
    /// LOGIN7 to the login response.
    pub login: Option<f64>,
    /// First to last packet.
    pub total: Option<f64>,
}

/// The record of one connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub client: SocketAddr,
    pub server: SocketAddr,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: Timestamp,
    pub mode: Mode,
    pub encryption: Encryption,
    pub stage: Stage,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub prelogin: PreloginFacts,
    pub tls: TlsFacts,
    pub login: LoginFacts,
    pub close: CloseFacts,
    pub durations_ms: Durations,
    /// One line a DBA can read: what on the wire supports the outcome and reason. Not in the JSON.
    #[serde(skip)]
    pub evidence: Cow<'static, str>,
    /// The connection closed before any TDS byte (a TCP probe or port scan): kept apart in reports
    /// and out of handshake-failure alerts. Not in the JSON (it is `stage == connected`).
    #[serde(skip)]
    pub probe: bool,
}

/// RFC 3339 with microseconds, UTC, fixed width ("2024-05-01T10:00:00.123456Z").
pub fn format_rfc3339(ts: Timestamp) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.0)) {
        Ok(t) => t.format(FORMAT).unwrap_or_else(|_| ts.0.to_string()),
        Err(_) => ts.0.to_string(),
    }
}

/// RFC 3339 for whole seconds since the epoch (certificate validity).
pub fn format_unix_secs(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| secs.to_string()),
        Err(_) => secs.to_string(),
    }
}

fn rfc3339<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ts))
}

impl Serialize for Side {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
