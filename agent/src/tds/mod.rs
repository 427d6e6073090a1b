//! TDS: a pure parser over one direction's in-order byte stream. Splits it into TDS packets (or bare
//! TLS records, which need no TDS header), reassembles messages across packets and packets across
//! segments, parses PRELOGIN options, recognises LOGIN7 without keeping its contents, parses LOGINACK,
//! ERROR and routing ENVCHANGE tokens in clear responses, and hands TLS bytes (wrapped in PRELOGIN
//! packets, or bare) on untouched. No I/O, no clocks, no metrics; never keeps user names, passwords or
//! SQL text.
//!
//! At each boundary the first byte decides the framing: 0x14–0x17 a bare TLS record, 0x53 a MARS SMP
//! packet (skipped whole), a known TDS packet type an 8-byte TDS header; anything else, or a header
//! out of bounds, ends the stream with `NotTds`. It refuses to know what the events mean for the
//! connection (the handshake decides), what is inside TLS, and anything of LOGIN7 but its version.

use crate::config::Limits;
use crate::conntrack::Side;
use tokens::Walker;

mod prelogin;
mod tokens;

#[cfg(test)]
mod tests;

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
    /// VERSION: major, minor, build (big-endian on the wire), sub-build (read big-endian too; the
    /// spec gives no order and every capture at hand has 0 there).
    pub version: Option<(u8, u8, u16, u16)>,
    /// ENCRYPTION raw byte (see [`EncryptSetting::from_byte`]; bit 0x80 = client certificate).
    pub encryption: Option<u8>,
    /// INSTOPT: the instance name, printable ASCII only, at most 64 characters.
    pub instance: Option<String>,
    /// MARS: 0 off, 1 on.
    pub mars: Option<u8>,
    /// FEDAUTHREQUIRED: 1 byte.
    pub fedauth_required: Option<u8>,
    /// TRACEID sent with data (servers echo the option with length 0: that is false).
    pub has_trace_id: bool,
    /// NONCEOPT sent with data.
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

/// TDS packet types this parser treats specially ([MS-TDS] 2.2.3.1.1).
const PT_LEGACY_LOGIN: u8 = 0x02;
const PT_RESPONSE: u8 = 0x04;
const PT_TDS5: u8 = 0x0F;
const PT_LOGIN7: u8 = 0x10;
const PT_PRELOGIN: u8 = 0x12;

/// TDS packet header ([MS-TDS] 2.2.3.1): type, status, length (BE, header included), SPID, packet id,
/// window.
const TDS_HEADER_LEN: usize = 8;
/// Largest TDS packet accepted, header included. The negotiated packet size tops out at 32 767
/// ([MS-TDS] 2.2.6.4 PacketSize, 2.2.7.9 ENVCHANGE packet size); 32 768 allows the round number.
const MAX_TDS_PACKET_LEN: usize = 32_768;
/// Status bits defined by [MS-TDS] 2.2.3.1.2 (EOM 0x01 … RESETCONNECTIONSKIPTRAN 0x10).
const TDS_STATUS_BITS: u8 = 0x1F;
const TDS_STATUS_EOM: u8 = 0x01;

/// MARS SMP header ([MS-TDS] 2.2.3.2 via [MC-SMP] 2.2.1): SMID 0x53, flags, SID, length (LE u32,
/// header included), sequence number, window.
const SMP_ID: u8 = 0x53;
const SMP_HEADER_LEN: usize = 16;
/// An SMP DATA packet carries one TDS packet.
const MAX_SMP_PACKET_LEN: usize = SMP_HEADER_LEN + MAX_TDS_PACKET_LEN;
const SMP_SYN: u8 = 0x01;
const SMP_ACK: u8 = 0x02;
const SMP_FIN: u8 = 0x04;
const SMP_DATA: u8 = 0x08;

/// TLS record header: content type, version major and minor, length (BE).
const TLS_HEADER_LEN: usize = 5;
/// Largest TLS record body: 2^14 bytes of plaintext plus 2048 of expansion (RFC 5246 §6.2.3).
const MAX_TLS_RECORD_LEN: usize = 16_384 + 2_048;

/// PRELOGIN option tokens run 0x00 (VERSION) to 0x07 (NONCEOPT); no response token is that small.
const MAX_PRELOGIN_TOKEN: u8 = 0x07;

fn valid_tds_type(t: u8) -> bool {
    matches!(t, 0x01..=0x04 | 0x06..=0x08 | 0x0E..=0x12)
}

/// Whether `b` (up to 5 bytes) is the start of a TLS record header as far as it goes: content type
/// 0x14–0x17 (change_cipher_spec, alert, handshake, application_data), major version 3, minor 0–4,
/// length at most [`MAX_TLS_RECORD_LEN`]. With all 5 bytes, whether it is one.
fn tls_header_prefix(b: &[u8]) -> bool {
    let ct = |c: &u8| (0x14..=0x17).contains(c);
    match b {
        [c] => ct(c),
        [c, 3] => ct(c),
        [c, 3, minor] | [c, 3, minor, _] => ct(c) && *minor <= 4,
        [c, 3, minor, hi, lo] => {
            ct(c)
                && *minor <= 4
                && usize::from(u16::from_be_bytes([*hi, *lo])) <= MAX_TLS_RECORD_LEN
        }
        _ => false,
    }
}

/// The body length of the TLS record whose 5-byte header is `h`, if it is one.
fn tls_record_len(h: &[u8]) -> Option<usize> {
    match h {
        [_, _, _, hi, lo] if tls_header_prefix(h) => {
            Some(usize::from(u16::from_be_bytes([*hi, *lo])))
        }
        _ => None,
    }
}

/// What the first byte at a boundary announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderKind {
    Tds,
    Tls,
    Smp,
}

impl HeaderKind {
    fn of(first: u8) -> Option<Self> {
        match first {
            0x14..=0x17 => Some(HeaderKind::Tls),
            SMP_ID => Some(HeaderKind::Smp),
            t if valid_tds_type(t) => Some(HeaderKind::Tds),
            _ => None,
        }
    }
    fn len(self) -> usize {
        match self {
            HeaderKind::Tds => TDS_HEADER_LEN,
            HeaderKind::Tls => TLS_HEADER_LEN,
            HeaderKind::Smp => SMP_HEADER_LEN,
        }
    }
}

/// Where the stream is between two boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// At a boundary: the next bytes are a header (possibly partly held in `hdr`).
    Boundary,
    /// Inside a TDS packet; `remaining` payload bytes to come (never 0).
    Packet { remaining: usize },
    /// Inside a bare TLS record; `remaining` body bytes to come (never 0).
    BareTls { remaining: usize },
    /// Inside an SMP packet being skipped.
    Smp { remaining: usize },
}

/// What the current TDS message is, as far as this parser cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// No message in progress.
    Idle,
    /// The message's first payload bytes, held in `look`, will say what it is: TLS (when `tls`), or
    /// for the server's first 0x04 message, PRELOGIN or tokens.
    Classify { tls: bool, first_response: bool },
    /// Wrapped TLS: streamed on, never buffered.
    Tls,
    /// A PRELOGIN option table, buffered in `buf` (`from_server`: the server's answer).
    Prelogin { from_server: bool },
    /// LOGIN7: `seen` payload bytes so far; the TDS version (payload bytes 4..8) gathered in `version`.
    Login7 { seen: u8, version: u32 },
    /// A clear server response, walked token by token.
    Response,
    /// Anything else: counted to its end, nothing kept.
    Skip,
}

/// Follows TLS record boundaries inside wrapped (PRELOGIN-carried) TLS, across packets and messages,
/// so that a record left incomplete at the end of a message claims the start of the next one.
#[derive(Debug, Clone, Copy, Default)]
struct RecordTracker {
    /// Body bytes of the current record still to come.
    remaining: usize,
    /// A record header split across packets.
    hdr: [u8; TLS_HEADER_LEN],
    hdr_len: usize,
    /// A record header was invalid: record boundaries are unknown until the message ends.
    lost: bool,
}

impl RecordTracker {
    /// A record (or its header) started earlier is still incomplete.
    fn pending(&self) -> bool {
        !self.lost && (self.remaining > 0 || self.hdr_len > 0)
    }

    fn observe(&mut self, mut b: &[u8]) {
        while !b.is_empty() && !self.lost {
            if self.remaining > 0 {
                let n = self.remaining.min(b.len());
                self.remaining -= n;
                b = b.get(n..).unwrap_or_default();
                continue;
            }
            let n = (TLS_HEADER_LEN - self.hdr_len).min(b.len());
            let (part, rest) = b.split_at(n);
            if let Some(dst) = self.hdr.get_mut(self.hdr_len..self.hdr_len + n) {
                dst.copy_from_slice(part);
            }
            self.hdr_len += n;
            b = rest;
            if self.hdr_len == TLS_HEADER_LEN {
                self.hdr_len = 0;
                match tls_record_len(&self.hdr) {
                    Some(len) => self.remaining = len,
                    None => self.lost = true,
                }
            }
        }
    }

    /// The message carrying these records ended: a lost tracker starts afresh.
    fn end_message(&mut self) {
        if self.lost {
            *self = RecordTracker::default();
        }
    }
}

/// One direction of a TDS connection.
///
/// Memory: the only heap buffer is the PRELOGIN message being reassembled (at most
/// `Limits::max_tds_message` bytes, freed when the message ends); headers split across chunks, the
/// first bytes of a message and response tokens in progress sit in small fixed arrays inside the struct
/// (at most 16 bytes each), which [`TdsStream::buffered_bytes`] does not count.
pub struct TdsStream {
    side: Side,
    max_message: usize,
    /// NotTds, LegacyLogin or Desync was emitted: everything after is ignored.
    stopped: bool,
    unit: Unit,
    /// A header split across chunks.
    hdr: [u8; SMP_HEADER_LEN],
    hdr_len: usize,
    /// The current packet ends its message.
    pkt_eom: bool,
    /// Type of the message in progress (meaningful unless `body` is `Idle`).
    msg_type: u8,
    body: Body,
    /// First payload bytes of a message being classified.
    look: [u8; TLS_HEADER_LEN],
    look_len: usize,
    /// PRELOGIN reassembly, at most `max_message` bytes.
    buf: Vec<u8>,
    /// The PRELOGIN message outgrew `max_message`: it is counted, not parsed.
    buf_overflow: bool,
    walker: Walker,
    records: RecordTracker,
    /// A 0x04 message has started (so the next is not the PRELOGIN response).
    seen_response: bool,
    /// The server's TLS handshake may be running inside TDS: its 0x04 messages may carry TLS.
    tls_in_tds: bool,
}

impl TdsStream {
    /// `side` is the sender of the bytes this stream parses.
    pub fn new(side: Side, limits: &Limits) -> Self {
        TdsStream {
            side,
            max_message: limits.max_tds_message,
            stopped: false,
            unit: Unit::Boundary,
            hdr: [0; SMP_HEADER_LEN],
            hdr_len: 0,
            pkt_eom: false,
            msg_type: 0,
            body: Body::Idle,
            look: [0; TLS_HEADER_LEN],
            look_len: 0,
            buf: Vec::new(),
            buf_overflow: false,
            walker: Walker::new(limits.max_tds_message),
            records: RecordTracker::default(),
            seen_response: false,
            tls_in_tds: false,
        }
    }

    /// Parses the next in-order bytes, calling `out` for each event. Any chunking of the same bytes
    /// gives the same events, except that TLS bytes may be handed on in different pieces.
    pub fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(TdsEvent<'_>)) {
        let mut data = bytes;
        while !data.is_empty() && !self.stopped {
            data = match self.unit {
                Unit::Boundary => self.boundary(data, out),
                Unit::Packet { remaining } => {
                    let (now, rest) = data.split_at(remaining.min(data.len()));
                    let left = remaining - now.len();
                    self.unit = Unit::Packet { remaining: left };
                    self.payload(now, out);
                    if left == 0 {
                        self.end_packet(out);
                    }
                    rest
                }
                Unit::BareTls { remaining } => {
                    let (now, rest) = data.split_at(remaining.min(data.len()));
                    let left = remaining - now.len();
                    self.unit = if left == 0 {
                        Unit::Boundary
                    } else {
                        Unit::BareTls { remaining: left }
                    };
                    out(TdsEvent::TlsData {
                        bytes: now,
                        wrapped: false,
                    });
                    rest
                }
                Unit::Smp { remaining } => {
                    let (now, rest) = data.split_at(remaining.min(data.len()));
                    let left = remaining - now.len();
                    self.unit = if left == 0 {
                        Unit::Boundary
                    } else {
                        Unit::Smp { remaining: left }
                    };
                    rest
                }
            };
        }
    }

    /// `len` bytes are missing at this point of the stream: emits `Desync` and stops parsing for good
    /// (buffers freed). Nothing happens when `len` is 0 or the stream has already stopped.
    pub fn gap(&mut self, len: u64, out: &mut dyn FnMut(TdsEvent<'_>)) {
        if len > 0 && !self.stopped {
            self.stop(TdsEvent::Desync, out);
        }
    }

    /// Bytes held in reassembly buffers: the PRELOGIN message being reassembled, never more than
    /// `Limits::max_tds_message`. The inline arrays of at most 16 bytes are not counted.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Emits `ev` (NotTds, LegacyLogin or Desync) and stops parsing for good, freeing the buffers.
    fn stop(&mut self, ev: TdsEvent<'_>, out: &mut dyn FnMut(TdsEvent<'_>)) {
        out(ev);
        self.stopped = true;
        self.unit = Unit::Boundary;
        self.body = Body::Idle;
        self.buf = Vec::new();
        self.buf_overflow = false;
        self.hdr_len = 0;
        self.look_len = 0;
    }

    /// At a boundary: gathers the header its first byte announces and acts on it. Returns the bytes
    /// left after what it consumed.
    fn boundary<'d>(&mut self, data: &'d [u8], out: &mut dyn FnMut(TdsEvent<'_>)) -> &'d [u8] {
        let first = match (self.hdr_len, data.first()) {
            (0, Some(&b)) => b,
            (0, None) => return data,
            _ => self.hdr[0],
        };
        let Some(kind) = HeaderKind::of(first) else {
            self.stop(TdsEvent::NotTds, out);
            return &[];
        };
        let need = kind.len();
        if self.hdr_len == 0 && data.len() >= need {
            // The whole header is at hand: no copy.
            let (h, rest) = data.split_at(need);
            if !self.on_header(kind, h, out) {
                return &[];
            }
            if let (HeaderKind::Tls, Unit::BareTls { remaining }) = (kind, self.unit) {
                // Pass the header on with the body bytes at hand, in one piece.
                let n = remaining.min(rest.len());
                let (now, rest) = data.split_at(need + n);
                let left = remaining - n;
                self.unit = if left == 0 {
                    Unit::Boundary
                } else {
                    Unit::BareTls { remaining: left }
                };
                out(TdsEvent::TlsData {
                    bytes: now,
                    wrapped: false,
                });
                return rest;
            }
            if kind == HeaderKind::Tls {
                out(TdsEvent::TlsData {
                    bytes: h,
                    wrapped: false,
                });
            }
            return rest;
        }
        let take = need.saturating_sub(self.hdr_len).min(data.len());
        let (part, rest) = data.split_at(take);
        if let Some(dst) = self.hdr.get_mut(self.hdr_len..self.hdr_len + take) {
            dst.copy_from_slice(part);
        }
        self.hdr_len += take;
        if self.hdr_len >= need {
            let hdr = self.hdr;
            self.hdr_len = 0;
            let h = hdr.get(..need).unwrap_or_default();
            if self.on_header(kind, h, out) && kind == HeaderKind::Tls {
                out(TdsEvent::TlsData {
                    bytes: h,
                    wrapped: false,
                });
            }
        }
        rest
    }

    /// Acts on a complete header at a boundary. Returns false when the stream stopped.
    fn on_header(&mut self, kind: HeaderKind, h: &[u8], out: &mut dyn FnMut(TdsEvent<'_>)) -> bool {
        match (kind, h) {
            (HeaderKind::Tls, _) => {
                let Some(len) = tls_record_len(h) else {
                    self.stop(TdsEvent::NotTds, out);
                    return false;
                };
                // TLS runs bare on TCP: wrapping is over, whatever wrapped record was pending.
                self.records = RecordTracker::default();
                self.tls_in_tds = false;
                self.unit = if len == 0 {
                    Unit::Boundary
                } else {
                    Unit::BareTls { remaining: len }
                };
                true
            }
            (HeaderKind::Smp, [_, flags, _, _, l0, l1, l2, l3, ..]) => {
                let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                let ok = match *flags {
                    SMP_SYN | SMP_ACK | SMP_FIN => len == SMP_HEADER_LEN,
                    SMP_DATA => (SMP_HEADER_LEN..=MAX_SMP_PACKET_LEN).contains(&len),
                    _ => false,
                };
                if !ok {
                    self.stop(TdsEvent::NotTds, out);
                    return false;
                }
                let body = len - SMP_HEADER_LEN;
                self.unit = if body == 0 {
                    Unit::Boundary
                } else {
                    Unit::Smp { remaining: body }
                };
                true
            }
            (HeaderKind::Tds, [ty, status, l0, l1, ..]) => {
                let len = usize::from(u16::from_be_bytes([*l0, *l1]));
                if status & !TDS_STATUS_BITS != 0
                    || !(TDS_HEADER_LEN..=MAX_TDS_PACKET_LEN).contains(&len)
                {
                    self.stop(TdsEvent::NotTds, out);
                    return false;
                }
                if *ty == PT_LEGACY_LOGIN || *ty == PT_TDS5 {
                    self.stop(TdsEvent::LegacyLogin, out);
                    return false;
                }
                self.start_packet(*ty, status & TDS_STATUS_EOM != 0);
                let payload = len - TDS_HEADER_LEN;
                if payload == 0 {
                    self.end_packet(out);
                } else {
                    self.unit = Unit::Packet { remaining: payload };
                }
                true
            }
            _ => {
                self.stop(TdsEvent::NotTds, out);
                false
            }
        }
    }

    fn start_packet(&mut self, ty: u8, eom: bool) {
        if self.body != Body::Idle && self.msg_type != ty {
            // A packet of another type before the end of the message: that message is abandoned,
            // incomplete (no `Message`).
            self.abandon_message();
        }
        if self.body == Body::Idle {
            self.start_message(ty);
        }
        self.pkt_eom = eom;
    }

    fn start_message(&mut self, ty: u8) {
        self.msg_type = ty;
        self.body = match (ty, self.side) {
            (PT_PRELOGIN, _) => self.maybe_tls(false),
            (PT_RESPONSE, Side::Server) => {
                let first = !self.seen_response;
                self.seen_response = true;
                if self.tls_in_tds {
                    self.maybe_tls(first)
                } else if first {
                    Body::Classify {
                        tls: false,
                        first_response: true,
                    }
                } else {
                    self.walker.start();
                    Body::Response
                }
            }
            (PT_LOGIN7, _) => Body::Login7 {
                seen: 0,
                version: 0,
            },
            _ => Body::Skip,
        };
    }

    /// A message that carries TLS if a wrapped record is pending or its payload starts with one.
    fn maybe_tls(&self, first_response: bool) -> Body {
        if self.records.pending() {
            Body::Tls
        } else {
            Body::Classify {
                tls: true,
                first_response,
            }
        }
    }

    fn abandon_message(&mut self) {
        self.body = Body::Idle;
        self.buf = Vec::new();
        self.buf_overflow = false;
        self.look_len = 0;
        self.records.end_message();
    }

    /// Payload bytes of the current packet.
    fn payload(&mut self, bytes: &[u8], out: &mut dyn FnMut(TdsEvent<'_>)) {
        match self.body {
            Body::Idle => {}
            Body::Classify { tls, .. } => {
                let need = if tls { TLS_HEADER_LEN } else { 1 };
                let take = need.saturating_sub(self.look_len).min(bytes.len());
                let (part, rest) = bytes.split_at(take);
                if let Some(dst) = self.look.get_mut(self.look_len..self.look_len + take) {
                    dst.copy_from_slice(part);
                }
                self.look_len += take;
                if self.look_len >= need {
                    self.decide(out);
                    self.payload(rest, out);
                }
            }
            Body::Tls => {
                if !bytes.is_empty() {
                    out(TdsEvent::TlsData {
                        bytes,
                        wrapped: true,
                    });
                    self.records.observe(bytes);
                }
            }
            Body::Prelogin { .. } => self.buffer(bytes),
            Body::Login7 { seen, mut version } => {
                // Payload bytes 4..8 are the TDS version (LE); nothing else of LOGIN7 is looked at.
                let mut now = seen;
                for &b in bytes.iter().take(8usize.saturating_sub(usize::from(seen))) {
                    if now >= 4 {
                        version |= u32::from(b) << (8 * u32::from(now - 4));
                    }
                    now += 1;
                }
                self.body = Body::Login7 { seen: now, version };
                if seen < 8 && now == 8 {
                    out(TdsEvent::Login7 {
                        tds_version: version,
                    });
                }
            }
            Body::Response => self.walker.feed(bytes, out),
            Body::Skip => {}
        }
    }

    /// Decides what a message in `Classify` is from its first bytes (all of them, or all there were)
    /// and replays those bytes into it.
    fn decide(&mut self, out: &mut dyn FnMut(TdsEvent<'_>)) {
        let Body::Classify {
            tls,
            first_response,
        } = self.body
        else {
            return;
        };
        let look = self.look;
        let head = look.get(..self.look_len).unwrap_or_default();
        self.look_len = 0;
        if tls && tls_header_prefix(head) {
            self.body = Body::Tls;
            if self.side == Side::Server && self.msg_type == PT_PRELOGIN {
                self.tls_in_tds = true;
            }
            out(TdsEvent::TlsData {
                bytes: head,
                wrapped: true,
            });
            self.records.observe(head);
            return;
        }
        if tls && self.msg_type == PT_RESPONSE {
            // A clear response: whatever TLS ran inside TDS is over.
            self.tls_in_tds = false;
        }
        self.body = match self.msg_type {
            PT_PRELOGIN => Body::Prelogin {
                from_server: self.side == Side::Server,
            },
            PT_RESPONSE
                if first_response && head.first().is_some_and(|&b| b <= MAX_PRELOGIN_TOKEN) =>
            {
                Body::Prelogin { from_server: true }
            }
            PT_RESPONSE => {
                self.walker.start();
                Body::Response
            }
            _ => Body::Skip,
        };
        self.payload(head, out);
    }

    /// Appends PRELOGIN bytes, up to `max_message`; beyond it the message is only counted.
    fn buffer(&mut self, bytes: &[u8]) {
        if self.buf_overflow || bytes.is_empty() {
            return;
        }
        let needed = self.buf.len().saturating_add(bytes.len());
        if needed > self.max_message {
            self.buf_overflow = true;
            self.buf = Vec::new();
            return;
        }
        if needed > self.buf.capacity() {
            // Grow geometrically but never past the cap, so capacity stays bounded too.
            let target = needed
                .max(self.buf.capacity().saturating_mul(2))
                .max(256)
                .min(self.max_message);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    fn end_packet(&mut self, out: &mut dyn FnMut(TdsEvent<'_>)) {
        self.unit = Unit::Boundary;
        if self.pkt_eom {
            self.end_message(out);
        }
    }

    fn end_message(&mut self, out: &mut dyn FnMut(TdsEvent<'_>)) {
        if let Body::Classify { .. } = self.body {
            // Fewer bytes than a TLS header in the whole message: decide on what there is.
            self.decide(out);
        }
        let ty = self.msg_type;
        match std::mem::replace(&mut self.body, Body::Idle) {
            Body::Idle => return,
            Body::Tls => self.records.end_message(),
            Body::Prelogin { from_server } => {
                let buf = std::mem::take(&mut self.buf);
                if !std::mem::take(&mut self.buf_overflow) {
                    if let Some(p) = prelogin::parse(&buf) {
                        out(TdsEvent::Prelogin(p));
                        if from_server {
                            // The server agreed to PRELOGIN: its TLS handshake may follow in 0x04.
                            self.tls_in_tds = true;
                        }
                    }
                }
            }
            Body::Response => self.walker.finish(out),
            Body::Classify { .. } | Body::Login7 { .. } | Body::Skip => {}
        }
        out(TdsEvent::Message { packet_type: ty });
    }
}

/// "7.4", "7.3B", "8.0" … for a TDS version as LOGIN7 and LOGINACK carry it (0x74000004 …).
pub fn tds_version_name(v: u32) -> std::borrow::Cow<'static, str> {
    match v {
        0x7000_0000 => "7.0".into(),
        0x7100_0000 | 0x7100_0001 => "7.1".into(),
        0x7209_0002 => "7.2".into(),
        0x730A_0003 => "7.3A".into(),
        0x730B_0003 => "7.3B".into(),
        0x7400_0004 => "7.4".into(),
        0x0800_0000 => "8.0".into(),
        other => format!("0x{other:08X}").into(),
    }
}
