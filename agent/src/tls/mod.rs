//! TLS: a pure parser over one direction's TLS bytes (as the TDS layer hands them on, wrapped or
//! bare). Reassembles records across chunks and handshake messages across records, and reports the
//! facts a passive observer can see: ClientHello offer (versions, suites, SNI, ALPN, JA4),
//! ServerHello choice (TLS 1.3 through `supported_versions`, HelloRetryRequest), the server
//! certificate, the DH group size, ChangeCipherSpec, encrypted handshake records, alerts with their
//! level and description while in clear, and application data. Built on `tls-parser` and
//! `x509-parser`. No I/O, no clocks, no metrics. It refuses to know TDS framing (the `tds` layer
//! strips it) and what the events mean for the connection (that is `handshake`'s); it never
//! decrypts, and never keeps record payloads.

mod cert;
mod hello;
pub mod ja4;
#[cfg(test)]
mod tests;

use crate::config::Limits;
use crate::conntrack::Side;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

/// TLS protocol versions as they appear on the wire.
pub const SSL3: u16 = 0x0300;
pub const TLS10: u16 = 0x0301;
pub const TLS11: u16 = 0x0302;
pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// "TLSv1.2" for 0x0303 …, "SSLv3" for 0x0300, "0x7f1c" for anything else.
pub fn version_name(v: u16) -> Cow<'static, str> {
    match v {
        SSL3 => "SSLv3".into(),
        TLS10 => "TLSv1.0".into(),
        TLS11 => "TLSv1.1".into(),
        TLS12 => "TLSv1.2".into(),
        TLS13 => "TLSv1.3".into(),
        other => format!("0x{other:04x}").into(),
    }
}

/// The IANA name of a cipher suite ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), or "0xc02f" when unknown.
pub fn suite_name(id: u16) -> Cow<'static, str> {
    match suite_info(id) {
        Some((name, _)) => name.into(),
        None => format!("0x{id:04x}").into(),
    }
}

/// Name and key exchange of every suite tls-parser knows, indexed by id: built once, then each
/// look-up is an array access (suites are looked up for every ClientHello and verdict).
fn suite_info(id: u16) -> Option<(&'static str, KeyExchange)> {
    static TABLE: OnceLock<Vec<Option<(&'static str, KeyExchange)>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = vec![None; 1 << 16];
        for (&id, suite) in tls_parser::CIPHERS.entries() {
            if let Some(slot) = table.get_mut(usize::from(id)) {
                *slot = Some((suite.name, kx_of_name(suite.name)));
            }
        }
        table
    });
    table.get(usize::from(id)).copied().flatten()
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

/// Key exchange of a TLS ≤ 1.2 suite, from its IANA name: `TLS_RSA_*` → `Rsa`, `TLS_DHE_*` → `Dhe`,
/// `TLS_ECDHE_*` → `Ecdhe`; the PSK variants of those (`TLS_RSA_PSK_*`, `TLS_DHE_PSK_*`,
/// `TLS_ECDHE_PSK_*`), static DH/ECDH, anonymous, SRP, Kerberos, TLS 1.3 suites and unknown ids → `Other`.
pub fn kx_of_suite(id: u16) -> KeyExchange {
    suite_info(id).map_or(KeyExchange::Other, |(_, kx)| kx)
}

fn kx_of_name(name: &str) -> KeyExchange {
    if name.contains("_PSK_") {
        KeyExchange::Other
    } else if name.starts_with("TLS_RSA_") {
        KeyExchange::Rsa
    } else if name.starts_with("TLS_DHE_") {
        KeyExchange::Dhe
    } else if name.starts_with("TLS_ECDHE_") {
        KeyExchange::Ecdhe
    } else {
        KeyExchange::Other
    }
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
    /// Shared: equal offers are parsed once per thread.
    ClientHello(Arc<ClientHello>),
    ServerHello(ServerHello),
    /// The first (leaf) certificate of a clear Certificate message.
    Certificate(Arc<Certificate>),
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

/// Largest record body accepted: 2^14 bytes of plaintext plus the 2048 bytes of expansion
/// RFC 5246 §6.2.3 allows a ciphertext. Anything longer is not TLS.
pub const MAX_RECORD_BODY: usize = (1 << 14) + 2048;

const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;
const CT_HEARTBEAT: u8 = 24;

const HT_NEW_SESSION_TICKET: u8 = 4;
const HT_CLIENT_HELLO: u8 = 1;
const HT_SERVER_HELLO: u8 = 2;
const HT_CERTIFICATE: u8 = 11;
const HT_SERVER_KEY_EXCHANGE: u8 = 12;
const HT_CERTIFICATE_REQUEST: u8 = 13;
const HT_SERVER_HELLO_DONE: u8 = 14;
const HT_CLIENT_KEY_EXCHANGE: u8 = 16;

/// What the body of the current record is being used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Clear handshake bytes, streamed into the message reassembler.
    Handshake,
    /// A handshake record from a client that offered TLS 1.3 and already sent a ChangeCipherSpec
    /// (the TLS 1.3 "middlebox compatibility" one may come before a second ClientHello): its first 4
    /// bytes tell a clear ClientHello from an encrypted TLS ≤ 1.2 Finished.
    Peek,
    /// Clear alerts, two bytes each.
    Alert,
    ChangeCipherSpec,
    /// Not looked at; `Done` says what to report when the record ends.
    Skip(Done),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    ApplicationData,
    EncryptedHandshake,
    EncryptedAlert,
    Nothing,
}

/// Reassembly of one handshake message across records.
#[derive(Debug, Default)]
struct Reassembly {
    /// Message header bytes gathered (type, 24-bit length).
    hdr: [u8; 4],
    hdr_len: usize,
    msg_type: u8,
    msg_len: usize,
    /// Body bytes still to come.
    left: usize,
    /// Over the size cap: the body is dropped as it passes.
    skipping: bool,
    /// Body bytes so far, when the message spans records or chunks (capacity ≤ `msg_len`).
    buf: Vec<u8>,
}

/// One direction of a TLS connection.
///
/// Memory: the 5-byte record header and the 4-byte handshake message header are kept inline; the
/// only heap buffer is one handshake message being reassembled (at most
/// `Limits::max_tls_handshake_message` bytes, freed once the message is parsed). Record bodies are
/// never buffered: handshake bytes stream into the message reassembler, alerts are read two bytes
/// at a time, everything else is skipped as it passes.
pub struct TlsStream {
    side: Side,
    max_handshake_message: usize,
    stopped: bool,
    /// At least one whole record header was seen.
    started: bool,
    hdr: [u8; 5],
    hdr_len: usize,
    rec_len: usize,
    /// Body bytes of the current record still to come (meaningful when `hdr_len == 5`).
    rec_left: usize,
    body: Body,
    peek: [u8; 4],
    peek_len: usize,
    /// First byte of a clear alert whose second byte has not come yet.
    alert_level: Option<u8>,
    hs: Reassembly,
    /// This side sent ChangeCipherSpec.
    ccs: bool,
    /// (Server) a HelloRetryRequest was sent.
    hrr: bool,
    /// (Server) a ServerHello chose TLS 1.3: the rest of its handshake is encrypted.
    tls13: bool,
    /// (Client) a ClientHello offered TLS 1.3.
    offered13: bool,
    /// The suite of the last real ServerHello, for ServerKeyExchange.
    suite: Option<u16>,
}

impl TlsStream {
    /// `side` is the sender of the bytes this stream parses.
    pub fn new(side: Side, limits: &Limits) -> Self {
        TlsStream {
            side,
            max_handshake_message: limits.max_tls_handshake_message,
            stopped: false,
            started: false,
            hdr: [0; 5],
            hdr_len: 0,
            rec_len: 0,
            rec_left: 0,
            body: Body::Skip(Done::Nothing),
            peek: [0; 4],
            peek_len: 0,
            alert_level: None,
            hs: Reassembly::default(),
            ccs: false,
            hrr: false,
            tls13: false,
            offered13: false,
            suite: None,
        }
    }

    /// The next in-order TLS bytes.
    pub fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(TlsEvent)) {
        let mut bytes = bytes;
        while !self.stopped && !bytes.is_empty() {
            if self.hdr_len < 5 {
                let n = self.hdr_len;
                let take = (5 - n).min(bytes.len());
                let (head, rest) = bytes.split_at(take);
                bytes = rest;
                if let Some(dst) = self.hdr.get_mut(n..n + take) {
                    dst.copy_from_slice(head);
                }
                self.hdr_len = n + take;
                if let Some(detail) = self.header_problem() {
                    self.malformed(detail, out);
                    return;
                }
                if self.hdr_len == 5 {
                    self.begin_record(out);
                }
            } else {
                let take = self.rec_left.min(bytes.len());
                let (chunk, rest) = bytes.split_at(take);
                bytes = rest;
                self.rec_left -= take;
                self.record_bytes(chunk, out);
                if !self.stopped && self.rec_left == 0 {
                    self.end_record(out);
                }
            }
        }
    }

    /// Bytes are missing here: the stream stops parsing (buffers freed).
    pub fn gap(&mut self) {
        self.stop();
    }

    /// Heap bytes held for reassembly.
    pub fn buffered_bytes(&self) -> usize {
        self.hs.buf.capacity()
    }

    /// The parse stopped (malformed input or a gap); nothing more will be reported.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.hs = Reassembly::default();
    }

    fn malformed(&mut self, detail: &'static str, out: &mut dyn FnMut(TlsEvent)) {
        out(TlsEvent::Malformed { detail });
        self.stop();
    }

    /// What is wrong with the record header bytes gathered so far, judged as soon as each byte is in.
    fn header_problem(&self) -> Option<&'static str> {
        let h = self.hdr.get(..self.hdr_len)?;
        if let Some(&ty) = h.first() {
            if !(CT_CHANGE_CIPHER_SPEC..=CT_HEARTBEAT).contains(&ty) {
                return Some(if !self.started && ty & 0x80 != 0 {
                    "sslv2"
                } else {
                    "bad content type"
                });
            }
        }
        if h.get(1).is_some_and(|&major| major != 3) || h.get(2).is_some_and(|&minor| minor > 4) {
            return Some("bad record version");
        }
        None
    }

    /// This side's handshake records are still in clear.
    fn handshake_clear(&self) -> bool {
        match self.side {
            Side::Client => !self.ccs,
            // A TLS 1.3 server sends its compatibility ChangeCipherSpec right after a
            // HelloRetryRequest, and its real ServerHello in clear after that.
            Side::Server => !self.tls13 && (!self.ccs || self.hrr),
        }
    }

    fn begin_record(&mut self, out: &mut dyn FnMut(TlsEvent)) {
        let [ty, _, _, l0, l1] = self.hdr;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len > MAX_RECORD_BODY {
            self.malformed("record too long", out);
            return;
        }
        self.started = true;
        self.rec_len = len;
        self.rec_left = len;
        self.peek_len = 0;
        self.alert_level = None;
        self.body = match ty {
            CT_CHANGE_CIPHER_SPEC => Body::ChangeCipherSpec,
            // A 2-byte alert is clear whatever came before: no cipher adds nothing.
            CT_ALERT if (self.ccs || self.tls13) && len != 2 => Body::Skip(Done::EncryptedAlert),
            CT_ALERT => {
                if len == 0 || len % 2 != 0 {
                    self.malformed("short alert", out);
                    return;
                }
                Body::Alert
            }
            CT_HANDSHAKE if self.handshake_clear() => Body::Handshake,
            CT_HANDSHAKE if self.side == Side::Client && self.offered13 => Body::Peek,
            CT_HANDSHAKE => Body::Skip(Done::EncryptedHandshake),
            CT_APPLICATION_DATA => Body::Skip(Done::ApplicationData),
            _ => Body::Skip(Done::Nothing),
        };
        if len == 0 {
            self.end_record(out);
        }
    }

    fn record_bytes(&mut self, chunk: &[u8], out: &mut dyn FnMut(TlsEvent)) {
        match self.body {
            Body::Handshake => self.handshake_bytes(chunk, out),
            Body::Peek => {
                let n = self.peek_len;
                let take = (4 - n).min(chunk.len());
                let (head, rest) = chunk.split_at(take);
                if let Some(dst) = self.peek.get_mut(n..n + take) {
                    dst.copy_from_slice(head);
                }
                self.peek_len = n + take;
                if self.peek_len == 4 {
                    let [t, l0, l1, l2] = self.peek;
                    let msg_len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                    if t == HT_CLIENT_HELLO && msg_len + 4 == self.rec_len {
                        self.body = Body::Handshake;
                        let peeked = self.peek;
                        self.handshake_bytes(&peeked, out);
                        self.handshake_bytes(rest, out);
                    } else {
                        self.body = Body::Skip(Done::EncryptedHandshake);
                    }
                }
            }
            Body::Alert => {
                for &b in chunk {
                    match self.alert_level.take() {
                        None => self.alert_level = Some(b),
                        Some(level) => out(TlsEvent::Alert {
                            level: Some(level),
                            description: Some(b),
                        }),
                    }
                }
            }
            Body::ChangeCipherSpec | Body::Skip(_) => {}
        }
    }

    fn end_record(&mut self, out: &mut dyn FnMut(TlsEvent)) {
        self.hdr_len = 0;
        match self.body {
            Body::ChangeCipherSpec => {
                if self.rec_len != 1 {
                    self.malformed("bad change_cipher_spec", out);
                    return;
                }
                out(TlsEvent::ChangeCipherSpec);
                self.ccs = true;
                if !self.handshake_clear() {
                    // A message cut by the cipher change will never complete in clear.
                    self.hs = Reassembly::default();
                }
            }
            Body::Peek | Body::Skip(Done::EncryptedHandshake) => out(TlsEvent::EncryptedHandshake),
            Body::Skip(Done::ApplicationData) => {
                out(TlsEvent::ApplicationData { len: self.rec_len })
            }
            Body::Skip(Done::EncryptedAlert) => out(TlsEvent::Alert {
                level: None,
                description: None,
            }),
            Body::Handshake | Body::Alert | Body::Skip(Done::Nothing) => {}
        }
        self.body = Body::Skip(Done::Nothing);
    }

    /// Clear handshake bytes of the current record.
    fn handshake_bytes(&mut self, mut data: &[u8], out: &mut dyn FnMut(TlsEvent)) {
        while !data.is_empty() && !self.stopped && self.body == Body::Handshake {
            if self.hs.hdr_len < 4 {
                let n = self.hs.hdr_len;
                let take = (4 - n).min(data.len());
                let (head, rest) = data.split_at(take);
                data = rest;
                if let Some(dst) = self.hs.hdr.get_mut(n..n + take) {
                    dst.copy_from_slice(head);
                }
                self.hs.hdr_len = n + take;
                if self.hs.hdr_len == 4 {
                    self.begin_message(out);
                }
                continue;
            }
            let take = self.hs.left.min(data.len());
            let (part, rest) = data.split_at(take);
            data = rest;
            if self.hs.skipping {
                self.hs.left -= take;
                if self.hs.left == 0 {
                    let ty = self.hs.msg_type;
                    self.hs.hdr_len = 0;
                    self.skipped_message(ty, out);
                }
            } else if self.hs.buf.is_empty() && take == self.hs.left {
                // The whole body is in this chunk: parse it where it lies.
                self.hs.left = 0;
                self.hs.hdr_len = 0;
                self.message(self.hs.msg_type, part, out);
            } else {
                self.hs.left -= take;
                self.collect(part);
                if self.hs.left == 0 {
                    let buf = std::mem::take(&mut self.hs.buf);
                    self.hs.hdr_len = 0;
                    self.message(self.hs.msg_type, &buf, out);
                }
            }
        }
    }

    /// A whole handshake message header is in.
    fn begin_message(&mut self, out: &mut dyn FnMut(TlsEvent)) {
        let [ty, l0, l1, l2] = self.hs.hdr;
        let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        self.hs.msg_type = ty;
        self.hs.msg_len = len;
        self.hs.left = len;
        self.hs.skipping = len > self.max_handshake_message;
        self.hs.buf = Vec::new();
        if self.hs.skipping
            && matches!(
                ty,
                HT_CLIENT_HELLO
                    | HT_SERVER_HELLO
                    | HT_SERVER_KEY_EXCHANGE
                    | HT_SERVER_HELLO_DONE
                    | HT_CLIENT_KEY_EXCHANGE
            )
        {
            // These are small; one this large is not a handshake we can vouch for.
            self.malformed("handshake message too long", out);
            return;
        }
        if len == 0 {
            self.hs.hdr_len = 0;
            self.message(ty, &[], out);
        }
    }

    /// Appends to the message buffer, growing it geometrically but never past the message size.
    fn collect(&mut self, part: &[u8]) {
        let buf = &mut self.hs.buf;
        let need = buf.len() + part.len();
        if buf.capacity() < need {
            let target = need.max(buf.capacity() * 2).max(256).min(self.hs.msg_len);
            buf.reserve_exact(target.saturating_sub(buf.len()));
        }
        buf.extend_from_slice(part);
    }

    /// A message over the size cap went by unread.
    fn skipped_message(&mut self, ty: u8, out: &mut dyn FnMut(TlsEvent)) {
        match ty {
            HT_CERTIFICATE_REQUEST => out(TlsEvent::CertificateRequest),
            HT_NEW_SESSION_TICKET => out(TlsEvent::NewSessionTicket),
            // A Certificate (a long chain) and anything else: nothing to say.
            _ => {}
        }
    }

    /// One whole clear handshake message (body without its header).
    fn message(&mut self, ty: u8, body: &[u8], out: &mut dyn FnMut(TlsEvent)) {
        match ty {
            HT_CLIENT_HELLO => match hello::client_hello_shared(body) {
                Some(ch) => {
                    if self.side == Side::Client && ch.max_version >= TLS13 {
                        self.offered13 = true;
                    }
                    out(TlsEvent::ClientHello(ch));
                }
                None => self.malformed("bad client_hello", out),
            },
            HT_SERVER_HELLO => match hello::server_hello(body) {
                Some(sh) => {
                    if sh.hello_retry {
                        self.hrr = true;
                    } else {
                        self.suite = Some(sh.suite);
                        if sh.version >= TLS13 {
                            self.tls13 = true;
                        }
                    }
                    out(TlsEvent::ServerHello(sh));
                    if self.side == Side::Server && !self.handshake_clear() {
                        // Whatever follows a TLS 1.3 ServerHello is not clear.
                        self.hs = Reassembly::default();
                        self.body = Body::Skip(Done::Nothing);
                    }
                }
                None => self.malformed("bad server_hello", out),
            },
            HT_CERTIFICATE => {
                let first = tls_parser::parse_tls_handshake_msg_certificate(body)
                    .ok()
                    .and_then(|(_, msg)| match msg {
                        tls_parser::TlsMessageHandshake::Certificate(c) => {
                            c.cert_chain.first().map(|raw| raw.data)
                        }
                        _ => None,
                    });
                if let Some(c) = first.and_then(cert::certificate) {
                    out(TlsEvent::Certificate(c));
                }
            }
            HT_SERVER_KEY_EXCHANGE => match hello::server_key_exchange(body, self.suite) {
                Ok((dh_bits, curve)) => out(TlsEvent::ServerKeyExchange { dh_bits, curve }),
                Err(()) => self.malformed("bad server_key_exchange", out),
            },
            HT_CERTIFICATE_REQUEST => {
                if tls_parser::parse_tls_handshake_certificaterequest(body).is_ok() {
                    out(TlsEvent::CertificateRequest);
                } else {
                    self.malformed("bad certificate_request", out);
                }
            }
            HT_SERVER_HELLO_DONE => out(TlsEvent::ServerHelloDone),
            HT_CLIENT_KEY_EXCHANGE => out(TlsEvent::ClientKeyExchange),
            HT_NEW_SESSION_TICKET => out(TlsEvent::NewSessionTicket),
            // HelloRequest, CertificateVerify, Finished, CertificateStatus, EncryptedExtensions,
            // KeyUpdate, NextProtocol, unknown types: nothing to report.
            _ => {}
        }
    }
}

/// Alert description names (RFC 8446 §6 and earlier): "protocol_version", "handshake_failure", …
pub fn alert_name(description: u8) -> String {
    let name = match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        other => return format!("unknown_{other}"),
    };
    name.to_owned()
}
