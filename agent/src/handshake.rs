//! The handshake state machine: one per connection. Consumes TCP events (SYN, FIN, RST, gaps), TDS
//! events and TLS events, never bytes, and decides stage, mode, encryption, close, outcome and the
//! most specific failure reason the evidence supports. The primer's §4 wire signatures live in
//! [`Handshake::failure_reason`] as explicit rules, in the order of the primer's table.
//!
//! Memory: an open connection past its handshake keeps only this struct (the pipeline drops the
//! parsers), so it is kept small: times are microsecond offsets, and the bulky facts that many
//! connections share (a client stack's ClientHello, a server's certificate, PRELOGIN options) are
//! shared: interned once in [`Shared`] or by the TLS layer, and referenced.

use crate::capture::Timestamp;
use crate::conntrack::{ConnInfo, EndCause, Side};
use crate::tds::{self, EncryptSetting, Prelogin, TdsEvent};
use crate::tls::{self, Certificate, ClientHello, KeyExchange, ServerHello, TlsEvent};
use crate::verdict::{
    AlertFact, CertificateFacts, CloseFacts, Durations, Encryption, LoginFacts, LoginResult, Mode,
    Outcome, PreloginFacts, Reason, Stage, SuiteList, TlsFacts, Verdict, Version4,
};
use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::Hash;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;

/// When an event happened: its time and the time of its connection's first packet (the machine
/// keeps times as offsets from the latter, which conntrack already holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    pub ts: Timestamp,
    pub first_seen: Timestamp,
}

/// TCP-level events the machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    Syn,
    SynAck,
    /// Payload bytes from a side (sent with every delivery).
    Data(Side),
    Gap(Side),
    Fin(Side),
    Rst {
        side: Side,
        ttl: u8,
    },
}

/// Alerts kept per connection; more are counted, not kept.
const MAX_ALERTS: usize = 8;

/// Encrypted answers to LOGIN7 smaller than this are an error (an ERROR token and DONE, about
/// 150 bytes with TLS overhead); a LOGINACK answer with its environment changes and messages takes
/// several hundred.
const SMALL_LOGIN_ANSWER: u16 = 300;

/// Length of a TLS 1.3 record holding an encrypted alert: 2 bytes + content type + 16-byte AEAD tag.
const TLS13_ENCRYPTED_ALERT_LEN: usize = 19;

/// Request message types a client sends once logged in.
fn is_request(packet_type: u8) -> bool {
    matches!(packet_type, 0x01 | 0x03 | 0x06 | 0x07 | 0x0E)
}

/// Signature hashes that SQL Server's TLS 1.2 stack cannot use for its certificate (primer §4).
pub fn is_weak_signature_hash(hash: &str) -> bool {
    matches!(hash, "md5" | "sha224" | "sha512")
}

/// A set of shared values: equal values are stored once and handed out as `Arc`s. Bounded: when
/// full, values no connection holds any more are swept out; if it is still full, new values are
/// simply not shared.
pub struct Interner<T: Hash + Eq> {
    set: HashSet<Arc<T>, ahash::RandomState>,
    cap: usize,
}

impl<T: Hash + Eq> Interner<T> {
    pub fn new(cap: usize) -> Self {
        Interner {
            set: HashSet::with_hasher(ahash::RandomState::new()),
            cap,
        }
    }
    pub fn intern(&mut self, value: T) -> Arc<T> {
        if let Some(shared) = self.set.get(&value) {
            return Arc::clone(shared);
        }
        if self.set.len() >= self.cap {
            self.set.retain(|v| Arc::strong_count(v) > 1);
        }
        let shared = Arc::new(value);
        if self.set.len() < self.cap {
            self.set.insert(Arc::clone(&shared));
        }
        shared
    }
}

/// The PRELOGIN options of both sides of a connection, as seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PreloginPair {
    pub client: Option<Prelogin>,
    pub server: Option<Prelogin>,
}

/// What the machines of one pipeline share. (ClientHello and certificate facts are shared by the TLS
/// layer itself.)
pub struct Shared {
    pub prelogins: Interner<PreloginPair>,
}

impl Default for Shared {
    fn default() -> Self {
        // Distinct pairs of driver and server versions and settings: thousands at most on one host.
        Shared {
            prelogins: Interner::new(16_384),
        }
    }
}

/// Moments of a connection, in microseconds since its first packet (0 = not seen; saturates after
/// 71 minutes, far beyond any handshake).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Times {
    prelogin_response: u32,
    client_hello: u32,
    tls_completed: u32,
    client_finished: u32,
    login7: u32,
    login_answer: u32,
    first_fin: u32,
    first_rst: u32,
    last_event: u32,
}

/// What the last protocol event before the close was, for the evidence line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Prelogin,
    PreloginResponse,
    Login7,
    Login7Encrypted,
    LoginAck,
    LoginError,
    LoginAnswerEncrypted,
    ClientHello,
    ServerHello,
    Certificate,
    ServerKeyExchange,
    ServerHelloDone,
    ClientKeyExchange,
    ChangeCipherSpec,
    Finished,
    EncryptedServerFlight,
    EncryptedAlert,
    Alert,
}

impl Last {
    fn as_str(self) -> &'static str {
        match self {
            Last::Prelogin => "PRELOGIN",
            Last::PreloginResponse => "PRELOGIN response",
            Last::Login7 => "LOGIN7",
            Last::Login7Encrypted => "LOGIN7 (encrypted)",
            Last::LoginAck => "LOGINACK",
            Last::LoginError => "login ERROR",
            Last::LoginAnswerEncrypted => "login response (encrypted)",
            Last::ClientHello => "ClientHello",
            Last::ServerHello => "ServerHello",
            Last::Certificate => "Certificate",
            Last::ServerKeyExchange => "ServerKeyExchange",
            Last::ServerHelloDone => "ServerHelloDone",
            Last::ClientKeyExchange => "ClientKeyExchange",
            Last::ChangeCipherSpec => "ChangeCipherSpec",
            Last::Finished => "Finished",
            Last::EncryptedServerFlight => "encrypted server flight",
            Last::EncryptedAlert => "encrypted alert",
            Last::Alert => "alert",
        }
    }
}

/// A login ERROR token: number, state, class. (Error numbers start at 1; a token claiming 0 is not
/// an error a server sends, and is ignored.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LoginError {
    number: NonZeroU32,
    state: u8,
    class: u8,
}

/// One alert: sender, level and description (`None` when encrypted).
type Alert = (Side, Option<u8>, Option<u8>);

/// The alerts of a connection, boxed so that the many connections without one pay a pointer.
#[derive(Debug, Default)]
struct Alerts(Vec<Alert>);

/// The per-connection state machine.
#[derive(Debug)]
pub struct Handshake {
    t: Times,
    /// Both sides' PRELOGIN options, interned as a pair (one pointer per connection).
    prelogin: Option<Arc<PreloginPair>>,
    client_hello: Option<Arc<ClientHello>>,
    certificate: Option<Arc<Certificate>>,
    /// Rare: allocated on the first alert.
    alerts: Option<Box<Alerts>>,
    server_hello: Option<ServerHello>,
    /// DH prime size from the ServerKeyExchange (DH groups stay below 65 536 bits).
    dh_bits: Option<NonZeroU16>,
    /// LOGIN7's TDS version and the LOGINACK's (0: not seen), and a login ERROR.
    login_version: u32,
    ack_version: u32,
    error: Option<LoginError>,
    stage: Stage,
    mode: Mode,
    close_stage: Option<Stage>,
    first_fin: Option<Side>,
    first_rst: Option<Side>,
    /// The last protocol event before the close (its sender is in the flags).
    last_event: Option<Last>,
    /// The first fatal (or encrypted) alert before the TLS handshake completed.
    /// Its description (`None` inside: encrypted); its sender is in the flags.
    handshake_alert: Option<Option<u8>>,
    /// Encrypted login: client turns (bursts of records after a server answer) after the TLS
    /// handshake. In TDS 7.x the first turn is LOGIN7; in strict mode PRELOGIN, then LOGIN7.
    client_turns: u8,
    /// Encrypted login: bytes of the server's records answering LOGIN7 (saturating).
    answer_bytes: u16,
    f: Flags,
}

/// Yes/no facts, one bit each.
#[derive(Debug, Default, Clone, Copy)]
struct Flags(u32);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident / $set:ident = $bit:expr;)*) => {
        impl Flags {
            $(
                $(#[$doc])*
                fn $name(self) -> bool {
                    self.0 & (1 << $bit) != 0
                }
                fn $set(&mut self, on: bool) {
                    if on { self.0 |= 1 << $bit } else { self.0 &= !(1 << $bit) }
                }
            )*
        }
    };
}

flags! {
    /// The first client payload has been classified (it sets the mode).
    client_started / set_client_started = 0;
    server_payload / set_server_payload = 1;
    /// Roles from a SYN: the whole connection was seen, from its start.
    whole / set_whole = 2;
    /// Post-login traffic seen on a connection joined mid-stream.
    midstream_traffic / set_midstream_traffic = 3;
    /// The flow is not TDS 7+ (Sybase TDS 5, TDS 4.2, random bytes): no verdict.
    not_tds / set_not_tds = 4;
    /// A TDS 7+ message or TLS record was parsed on this flow.
    tds_seen / set_tds_seen = 5;
    /// Bytes were lost or a parser gave up before the outcome was decided.
    blind / set_blind = 6;
    hello_retry / set_hello_retry = 7;
    server_hello_done / set_server_hello_done = 8;
    client_key_exchange / set_client_key_exchange = 9;
    tls_completed / set_tls_completed = 10;
    /// TLS 1.3: the server's encrypted flight was seen.
    server_flight / set_server_flight = 11;
    /// LOGIN7 seen in clear, or inferred as the client's login turn inside TLS.
    login7 / set_login7 = 12;
    login7_clear / set_login7_clear = 13;
    /// The server answered LOGIN7 (clear response, or TLS data after the client's LOGIN7 turn).
    answered / set_answered = 14;
    /// Server data since the client's last turn.
    server_spoke / set_server_spoke = 15;
    routing / set_routing = 16;
    ccs_client / set_ccs_client = 17;
    ccs_server / set_ccs_server = 18;
    /// Finished: an encrypted handshake record after CCS, or TLS 1.3's client Finished.
    finished_client / set_finished_client = 19;
    finished_server / set_finished_server = 20;
    client_payload / set_client_payload = 21;
    last_event_server / set_last_event_server = 22;
    handshake_alert_server / set_handshake_alert_server = 23;
}

impl Flags {
    fn ccs(self, side: Side) -> bool {
        match side {
            Side::Client => self.ccs_client(),
            Side::Server => self.ccs_server(),
        }
    }
    fn set_ccs(&mut self, side: Side) {
        match side {
            Side::Client => self.set_ccs_client(true),
            Side::Server => self.set_ccs_server(true),
        }
    }
    fn finished(self, side: Side) -> bool {
        match side {
            Side::Client => self.finished_client(),
            Side::Server => self.finished_server(),
        }
    }
    fn set_finished(&mut self, side: Side) {
        match side {
            Side::Client => self.set_finished_client(true),
            Side::Server => self.set_finished_server(true),
        }
    }
}

impl Handshake {
    pub fn new(info: &ConnInfo) -> Self {
        Handshake {
            t: Times::default(),
            prelogin: None,
            client_hello: None,
            certificate: None,
            alerts: None,
            server_hello: None,
            dh_bits: None,
            login_version: 0,
            ack_version: 0,
            error: None,
            stage: if info.roles_from_syn {
                Stage::Syn
            } else {
                Stage::Connected
            },
            mode: Mode::Unknown,
            close_stage: None,
            first_fin: None,
            first_rst: None,
            last_event: None,
            handshake_alert: None,
            client_turns: 0,
            answer_bytes: 0,
            f: {
                let mut f = Flags::default();
                f.set_whole(info.roles_from_syn);
                f
            },
        }
    }

    /// Microseconds since the first packet, at least 1 (0 means "not seen").
    fn at(&self, ts: When) -> u32 {
        u32::try_from(ts.ts.since(ts.first_seen) / 1000)
            .unwrap_or(u32::MAX)
            .max(1)
    }

    fn last_event(&self) -> Option<(Side, Last)> {
        let side = if self.f.last_event_server() {
            Side::Server
        } else {
            Side::Client
        };
        self.last_event.map(|what| (side, what))
    }

    /// The first fatal (or encrypted) alert before the TLS handshake completed.
    fn handshake_alert(&self) -> Option<(Side, Option<u8>)> {
        let side = if self.f.handshake_alert_server() {
            Side::Server
        } else {
            Side::Client
        };
        self.handshake_alert.map(|desc| (side, desc))
    }

    fn set_handshake_alert(&mut self, side: Side, description: Option<u8>) {
        self.handshake_alert = Some(description);
        self.f.set_handshake_alert_server(side == Side::Server);
    }

    fn closed(&self) -> bool {
        self.first_fin.is_some() || self.first_rst.is_some()
    }

    fn advance(&mut self, stage: Stage) {
        if stage > self.stage {
            self.stage = stage;
        }
    }

    fn note(&mut self, side: Side, what: Last, ts: When) {
        if !self.closed() {
            self.last_event = Some(what);
            self.f.set_last_event_server(side == Side::Server);
            self.t.last_event = self.at(ts);
        }
    }

    fn is_tls13(&self) -> bool {
        self.server_hello.is_some_and(|h| h.version == tls::TLS13)
    }

    fn kx(&self) -> Option<KeyExchange> {
        let hello = self.server_hello?;
        if hello.version == tls::TLS13 {
            hello.key_share_group.map(tls::kx_of_group)
        } else {
            Some(tls::kx_of_suite(hello.suite))
        }
    }

    pub fn on_tcp(&mut self, ts: When, ev: TcpEvent) {
        match ev {
            TcpEvent::Syn => {}
            TcpEvent::SynAck => self.advance(Stage::Connected),
            TcpEvent::Data(side) => {
                self.advance(Stage::Connected);
                match side {
                    Side::Server => self.f.set_server_payload(true),
                    Side::Client => self.f.set_client_payload(true),
                }
            }
            TcpEvent::Gap(_) => {
                if self.stage < Stage::Established {
                    self.f.set_blind(true);
                }
            }
            TcpEvent::Fin(side) => {
                if self.first_fin.is_none() {
                    self.first_fin = Some(side);
                    self.t.first_fin = self.at(ts);
                    self.close_stage.get_or_insert(self.stage);
                }
            }
            TcpEvent::Rst { side, .. } => {
                if self.first_rst.is_none() {
                    self.first_rst = Some(side);
                    self.t.first_rst = self.at(ts);
                    self.close_stage.get_or_insert(self.stage);
                }
            }
        }
    }

    /// The first client payload tells the mode: PRELOGIN or LOGIN7 → TDS 7.x, a TLS ClientHello →
    /// TDS 8.0 strict, anything else → joined mid-stream.
    fn client_start(&mut self, mode: Mode) {
        if !self.f.client_started() {
            self.f.set_client_started(true);
            self.mode = mode;
        }
    }

    /// A TDS event (never [`TdsEvent::TlsData`], which goes to the TLS layer).
    pub fn on_tds(&mut self, ts: When, side: Side, ev: &TdsEvent<'_>, shared: &mut Shared) {
        match ev {
            TdsEvent::TlsData { .. } => {}
            TdsEvent::Prelogin(p) => {
                self.f.set_tds_seen(true);
                match side {
                    Side::Client => {
                        self.client_start(Mode::Tds7);
                        if self.client_prelogin().is_none() {
                            let pair = PreloginPair {
                                client: Some(p.clone()),
                                server: None,
                            };
                            self.prelogin = Some(shared.prelogins.intern(pair));
                        }
                        self.advance(Stage::Prelogin);
                        self.note(side, Last::Prelogin, ts);
                    }
                    Side::Server => {
                        if self.server_prelogin().is_none() {
                            let pair = PreloginPair {
                                client: self.client_prelogin().cloned(),
                                server: Some(p.clone()),
                            };
                            self.prelogin = Some(shared.prelogins.intern(pair));
                            self.t.prelogin_response = self.at(ts);
                        }
                        self.note(side, Last::PreloginResponse, ts);
                    }
                }
            }
            TdsEvent::Login7 { tds_version } => {
                if side != Side::Client {
                    return;
                }
                self.f.set_tds_seen(true);
                self.client_start(Mode::Tds7);
                if !self.f.login7() {
                    self.f.set_login7(true);
                    self.f.set_login7_clear(true);
                    self.login_version = *tds_version;
                    self.t.login7 = self.at(ts);
                }
                self.advance(Stage::Login);
                self.note(side, Last::Login7, ts);
            }
            TdsEvent::LegacyLogin => {
                if !self.f.tds_seen() {
                    self.f.set_not_tds(true);
                }
            }
            TdsEvent::LoginAck { tds_version } => {
                if side != Side::Server {
                    return;
                }
                self.f.set_tds_seen(true);
                if self.ack_version == 0 {
                    self.ack_version = *tds_version;
                }
                self.login_answered(ts);
                self.advance(Stage::Established);
                self.note(side, Last::LoginAck, ts);
            }
            TdsEvent::Error {
                number,
                state,
                class,
            } => {
                if side != Side::Server || self.stage >= Stage::Established {
                    return;
                }
                self.f.set_tds_seen(true);
                let Some(number) = NonZeroU32::new(*number) else {
                    return;
                };
                self.error.get_or_insert(LoginError {
                    number,
                    state: *state,
                    class: *class,
                });
                self.login_answered(ts);
                self.note(side, Last::LoginError, ts);
            }
            TdsEvent::Routing { .. } => {
                if side == Side::Server {
                    self.f.set_routing(true);
                }
            }
            TdsEvent::Message { packet_type } => {
                self.f.set_tds_seen(true);
                match side {
                    Side::Client => {
                        // A request first: joined mid-stream; the mode stays unknown.
                        self.client_start(Mode::Unknown);
                        if is_request(*packet_type) {
                            if self.f.answered() && self.error.is_none() {
                                self.advance(Stage::Established);
                            } else if !self.f.whole() && !self.f.login7() {
                                self.f.set_midstream_traffic(true);
                            }
                        }
                    }
                    Side::Server => {
                        if *packet_type == 0x04
                            && !self.f.whole()
                            && self.client_prelogin().is_none()
                            && !self.f.login7()
                        {
                            self.f.set_midstream_traffic(true);
                        }
                    }
                }
            }
            TdsEvent::NotTds => {
                if !self.f.tds_seen() {
                    self.f.set_not_tds(true);
                } else if self.stage < Stage::Established {
                    self.f.set_blind(true);
                }
            }
            TdsEvent::Desync => {
                if self.stage < Stage::Established {
                    self.f.set_blind(true);
                }
            }
        }
    }

    fn login_answered(&mut self, ts: When) {
        if !self.f.answered() {
            self.f.set_answered(true);
            self.t.login_answer = self.at(ts);
        }
    }

    pub fn on_tls(&mut self, ts: When, side: Side, ev: TlsEvent) {
        self.f.set_tds_seen(true);
        match (side, ev) {
            (Side::Client, TlsEvent::ClientHello(hello)) => {
                // TLS before any PRELOGIN: TDS 8.0 strict.
                self.client_start(Mode::Tds8Strict);
                self.advance(Stage::TlsHandshake);
                if self.t.client_hello == 0 {
                    self.t.client_hello = self.at(ts);
                }
                // After a HelloRetryRequest the second ClientHello replaces the first.
                if self.client_hello.is_none() || self.f.hello_retry() {
                    self.client_hello = Some(hello);
                }
                self.note(side, Last::ClientHello, ts);
            }
            (Side::Server, TlsEvent::ServerHello(hello)) => {
                if hello.hello_retry {
                    self.f.set_hello_retry(true);
                } else if self.server_hello.is_none() {
                    self.server_hello = Some(hello);
                }
                self.note(side, Last::ServerHello, ts);
            }
            (Side::Server, TlsEvent::Certificate(cert)) => {
                if self.certificate.is_none() {
                    self.certificate = Some(cert);
                }
                self.note(side, Last::Certificate, ts);
            }
            (Side::Server, TlsEvent::ServerKeyExchange { dh_bits, .. }) => {
                if let Some(bits) = dh_bits {
                    self.dh_bits = NonZeroU16::new(u16::try_from(bits).unwrap_or(u16::MAX));
                }
                self.note(side, Last::ServerKeyExchange, ts);
            }
            (Side::Server, TlsEvent::ServerHelloDone) => {
                self.f.set_server_hello_done(true);
                self.note(side, Last::ServerHelloDone, ts);
            }
            (Side::Client, TlsEvent::ClientKeyExchange) => {
                self.f.set_client_key_exchange(true);
                self.note(side, Last::ClientKeyExchange, ts);
            }
            (_, TlsEvent::ChangeCipherSpec) => {
                self.f.set_ccs(side);
                self.note(side, Last::ChangeCipherSpec, ts);
            }
            (_, TlsEvent::EncryptedHandshake) => {
                if self.is_tls13() {
                    return;
                }
                self.f.set_finished(side);
                if side == Side::Client && self.t.client_finished == 0 {
                    self.t.client_finished = self.at(ts);
                }
                if self.f.finished(Side::Client) && self.f.finished(Side::Server) {
                    self.tls_completed(ts);
                }
                self.note(side, Last::Finished, ts);
            }
            (_, TlsEvent::Alert { level, description }) => {
                let alerts = &mut self.alerts.get_or_insert_with(Default::default).0;
                if alerts.len() < MAX_ALERTS {
                    alerts.push((side, level, description));
                }
                // A warning (close_notify, …) is not a handshake failure signal.
                if !self.f.tls_completed() && self.handshake_alert.is_none() && level != Some(1) {
                    self.set_handshake_alert(side, description);
                }
                self.note(side, Last::Alert, ts);
            }
            (_, TlsEvent::ApplicationData { len }) => self.on_app_data(ts, side, len),
            (_, TlsEvent::Malformed { .. }) if self.stage < Stage::Established => {
                self.f.set_blind(true);
            }
            // Messages from the wrong side, CertificateRequest, NewSessionTicket: nothing to learn.
            _ => {}
        }
    }

    fn tls_completed(&mut self, ts: When) {
        if self.f.tls_completed() {
            return;
        }
        self.f.set_tls_completed(true);
        self.t.tls_completed = self.at(ts);
        // In TDS 8.0 strict the whole login (PRELOGIN and LOGIN7) runs inside TLS once it is up.
        if self.mode == Mode::Tds8Strict {
            self.advance(Stage::Login);
        }
    }

    fn on_app_data(&mut self, ts: When, side: Side, len: usize) {
        if !self.f.tls_completed() {
            // Before a TLS ≤ 1.2 handshake ended: resumption or a record we could not follow.
            if !self.is_tls13() {
                return;
            }
            match side {
                Side::Server => {
                    self.f.set_server_flight(true);
                    self.note(side, Last::EncryptedServerFlight, ts);
                }
                Side::Client if self.f.server_flight() => {
                    if len == TLS13_ENCRYPTED_ALERT_LEN {
                        // The size of an encrypted alert, not of a Finished (≥ 53 bytes).
                        if self.handshake_alert.is_none() {
                            self.set_handshake_alert(side, None);
                        }
                        self.note(side, Last::EncryptedAlert, ts);
                        return;
                    }
                    self.f.set_finished(side);
                    self.t.client_finished = self.at(ts);
                    self.tls_completed(ts);
                    self.note(side, Last::Finished, ts);
                }
                Side::Client => {}
            }
            return;
        }
        // After the handshake: the login runs inside TLS (full or strict), or LOGIN7 alone is
        // inside TLS (login-only) and the answer comes in clear.
        let login_turn = if self.mode == Mode::Tds8Strict { 2 } else { 1 };
        match side {
            Side::Client => {
                if self.client_turns == 0 || self.f.server_spoke() {
                    self.client_turns = self.client_turns.saturating_add(1);
                    self.f.set_server_spoke(false);
                    if self.client_turns == login_turn && !self.f.login7() {
                        self.f.set_login7(true);
                        self.t.login7 = self.at(ts);
                        self.advance(Stage::Login);
                        self.note(side, Last::Login7Encrypted, ts);
                    } else if self.client_turns > login_turn && self.f.answered() {
                        self.advance(Stage::Established);
                    }
                }
            }
            Side::Server => {
                if self.client_turns > 0 {
                    self.f.set_server_spoke(true);
                }
                if self.f.login7() && self.client_turns == login_turn {
                    let len = u16::try_from(len).unwrap_or(u16::MAX);
                    self.answer_bytes = self.answer_bytes.saturating_add(len);
                }
                if self.f.login7() && !self.f.answered() {
                    self.login_answered(ts);
                    self.note(side, Last::LoginAnswerEncrypted, ts);
                }
            }
        }
    }

    /// The furthest stage reached so far.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The handshake is decided: only the close matters from now on.
    pub fn done(&self) -> bool {
        self.f.not_tds() || self.stage == Stage::Established || self.f.midstream_traffic()
    }

    /// The server certificate's signature hash, when one was seen (shared across connections by the
    /// pipeline to explain silent closes after a ClientHello).
    pub fn certificate_hash(&self) -> Option<&'static str> {
        self.certificate.as_ref()?.signature_hash
    }

    fn client_prelogin(&self) -> Option<&Prelogin> {
        self.prelogin.as_ref()?.client.as_ref()
    }

    fn server_prelogin(&self) -> Option<&Prelogin> {
        self.prelogin.as_ref()?.server.as_ref()
    }

    fn setting(p: Option<&Prelogin>) -> Option<EncryptSetting> {
        p.and_then(|p| p.encryption)
            .and_then(EncryptSetting::from_byte)
    }

    fn encryption(&self) -> Encryption {
        if self.mode == Mode::Tds8Strict {
            return Encryption::Strict;
        }
        // What was seen beats what was negotiated.
        if self.f.login7_clear() {
            return Encryption::None;
        }
        if self.f.tls_completed() && self.f.answered() {
            let clear_answer = self.ack_version != 0 || self.error.is_some();
            return if clear_answer {
                Encryption::LoginOnly
            } else {
                Encryption::Full
            };
        }
        match (
            Self::setting(self.client_prelogin()),
            Self::setting(self.server_prelogin()),
        ) {
            (Some(c), Some(s)) => negotiated_encryption(c, s).unwrap_or(Encryption::None),
            _ => Encryption::Unknown,
        }
    }

    /// The server sent TLS: a ServerHello, or an alert in clear.
    fn server_spoke_tls(&self) -> bool {
        self.server_hello.is_some()
            || self
                .alerts
                .as_ref()
                .is_some_and(|a| a.0.iter().any(|x| x.0 == Side::Server))
    }

    /// PRELOGIN settings that the negotiation table says end the connection.
    fn encryption_mismatch(&self) -> bool {
        match (
            Self::setting(self.client_prelogin()),
            Self::setting(self.server_prelogin()),
        ) {
            (Some(c), Some(s)) => negotiated_encryption(c, s).is_none(),
            _ => false,
        }
    }

    /// The first close: side, kind, and microseconds since the first packet.
    fn first_close(&self) -> Option<Close> {
        let fin = self.first_fin.map(|s| Close {
            side: s,
            rst: false,
            at: self.t.first_fin,
        });
        let rst = self.first_rst.map(|s| Close {
            side: s,
            rst: true,
            at: self.t.first_rst,
        });
        match (fin, rst) {
            (Some(f), Some(r)) => Some(if r.at < f.at { r } else { f }),
            (f, r) => f.or(r),
        }
    }

    /// "1.0 ms after the server's Certificate", from the last protocol event to `at`.
    fn after_last(&self, at: u32) -> String {
        match self.last_event() {
            Some((side, what)) => format!(
                "{} after the {}'s {}",
                us_text(at.saturating_sub(self.t.last_event)),
                side,
                what.as_str()
            ),
            None => String::new(),
        }
    }

    /// "server RST 1.0 ms after the client's Finished".
    fn close_text(&self, c: Close) -> String {
        format!("{} {} {}", c.side, c.kind(), self.after_last(c.at))
            .trim_end()
            .to_string()
    }

    /// `closed` or `reset` by the kind of the first close: what is left when nothing more specific
    /// is supported by the evidence.
    fn generic(&self, c: Close, extra: &str) -> (Reason, String) {
        let reason = if c.rst { Reason::Reset } else { Reason::Closed };
        (reason, format!("{}{extra}", self.close_text(c)))
    }

    /// Primer §4, most specific first. Called only for connections that ended before
    /// `established`, from their start, with no bytes lost.
    fn failure_reason(
        &self,
        cause: EndCause,
        known_cert_hash: Option<&str>,
        first_seen: Timestamp,
    ) -> (Reason, String) {
        // No TCP connection.
        if self.stage == Stage::Syn {
            if self.first_rst == Some(Side::Server) {
                return (Reason::Refused, "server RST answered the SYN".into());
            }
            return (Reason::NoResponse, "SYN never answered".into());
        }
        let Some(c) = self.first_close() else {
            let why = if cause == EndCause::IdleTimeout {
                format!(
                    "handshake stalled at {}: no packet for the idle timeout",
                    self.stage
                )
            } else {
                format!("ended at {} with no FIN or RST ({cause:?})", self.stage)
            };
            return (Reason::IdleTimeout, why);
        };

        // TDS 8.0 strict client, and the server did not answer in TLS.
        if self.mode == Mode::Tds8Strict
            && !self.server_spoke_tls()
            && (self.f.server_payload() || c.side == Side::Server)
        {
            return (
                Reason::StrictMismatch,
                format!(
                    "TDS 8.0 client (ClientHello first) and the server did not answer in TLS; {}",
                    self.close_text(c)
                ),
            );
        }
        // PRELOGIN sent, and the server answered in TLS instead: a strict-only server.
        if self.mode == Mode::Tds7
            && self.server_prelogin().is_none()
            && self.client_hello.is_none()
            && self
                .alerts
                .as_ref()
                .is_some_and(|a| a.0.iter().any(|x| x.0 == Side::Server))
        {
            return (
                Reason::StrictMismatch,
                format!(
                    "PRELOGIN answered with a TLS alert (a TDS 8.0 strict-only server); {}",
                    self.close_text(c)
                ),
            );
        }

        // The negotiation table says one side closes, and one did before any TLS or login answer
        // (a client may still push its ClientHello or LOGIN7 into the half-closed connection,
        // before or after the server's FIN crosses it on the wire: a server that closes without
        // a word of TLS after settings it refuses closed on those settings, whichever came first).
        let closed_at_prelogin = self.close_stage.is_some_and(|st| st <= Stage::Prelogin);
        let server_closed_silently = c.side == Side::Server && !self.server_spoke_tls();
        if self.encryption_mismatch()
            && (closed_at_prelogin || self.client_hello.is_none() || server_closed_silently)
            && !self.f.answered()
        {
            let name = |p: Option<&Prelogin>| Self::setting(p).map_or("?", |e| e.as_str());
            return (
                Reason::EncryptionMismatch,
                format!(
                    "client ENCRYPT_{} vs server ENCRYPT_{}; {}",
                    name(self.client_prelogin()),
                    name(self.server_prelogin()),
                    self.close_text(c)
                ),
            );
        }
        // PRELOGIN sent, and the server closed on it without a PRELOGIN response: a TDS 7.x server
        // always answers PRELOGIN; a TDS 8.0 strict-only one expects a ClientHello first.
        if self.mode == Mode::Tds7
            && self.client_prelogin().is_some()
            && self.server_prelogin().is_none()
            && !self.f.server_payload()
            && c.side == Side::Server
        {
            return (
                Reason::StrictMismatch,
                format!(
                    "server closed on the PRELOGIN without answering it, as a TDS 8.0 \
                     strict-only server does; {}",
                    self.close_text(c)
                ),
            );
        }
        match self.stage {
            Stage::Prelogin => {
                if self.encryption_mismatch() {
                    let name = |p: Option<&Prelogin>| Self::setting(p).map_or("?", |e| e.as_str());
                    return (
                        Reason::EncryptionMismatch,
                        format!(
                            "client ENCRYPT_{} vs server ENCRYPT_{}; {}",
                            name(self.client_prelogin()),
                            name(self.server_prelogin()),
                            self.close_text(c)
                        ),
                    );
                }
                if self.server_prelogin().is_none() {
                    return self.generic(c, "; no PRELOGIN response");
                }
                self.generic(c, "")
            }
            Stage::TlsHandshake => self.tls_failure(c, known_cert_hash, first_seen),
            Stage::Login => {
                if let Some(LoginError {
                    number,
                    state,
                    class,
                }) = self.error
                {
                    return (
                        Reason::LoginFailed,
                        format!(
                            "login ERROR {number} (state {state}, class {class}); {}",
                            self.close_text(c)
                        ),
                    );
                }
                // Primer §4: with the login response encrypted, a failure is "a small server
                // response, then close". A LOGINACK answer (environment changes, messages,
                // LOGINACK, DONE) takes several hundred bytes; an ERROR and its DONE, far fewer.
                if !self.f.login7_clear()
                    && self.f.answered()
                    && self.answer_bytes > 0
                    && self.answer_bytes < SMALL_LOGIN_ANSWER
                {
                    return (
                        Reason::LoginFailed,
                        format!(
                            "encrypted LOGIN7 answered with only {} bytes, then {} with no \
                             request (an error answer; encryption hides its number)",
                            self.answer_bytes,
                            self.close_text(c)
                        ),
                    );
                }
                self.generic(c, "")
            }
            _ => self.generic(c, ""),
        }
    }

    fn tls_failure(
        &self,
        c: Close,
        known_cert_hash: Option<&str>,
        first_seen: Timestamp,
    ) -> (Reason, String) {
        let suite_note = self
            .server_hello
            .map(|h| format!("; suite {}", tls::suite_name(h.suite)))
            .unwrap_or_default();
        let client_max = self
            .client_hello
            .as_ref()
            .map(|h| tls::version_name(h.max_version));
        let client_max = client_max.unwrap_or(std::borrow::Cow::Borrowed("?"));
        let server_ccs = self.f.ccs(Side::Server);

        if let Some((side, desc)) = self.handshake_alert() {
            let name = desc.map_or_else(|| "encrypted".to_string(), tls::alert_name);
            let alert = format!("{side} alert {name}");
            if side == Side::Server && self.server_hello.is_none() {
                return match desc {
                    Some(70) => (
                        Reason::NoCommonTlsVersion,
                        format!(
                            "{alert} after the ClientHello (the client offers up to {client_max})"
                        ),
                    ),
                    Some(40) | Some(71) => (
                        Reason::NoCommonCipher,
                        format!("{alert} after the ClientHello, no ServerHello"),
                    ),
                    _ => (Reason::TlsAlert, format!("{alert} after the ClientHello")),
                };
            }
            if side == Side::Server && self.f.client_key_exchange() && !server_ccs {
                return self.key_exchange_failure(&alert, &suite_note);
            }
            if side == Side::Client {
                return match desc {
                    Some(42..=46) | Some(48) | Some(112) | None => (
                        Reason::CertificateRejected,
                        format!(
                            "{alert} after the server's certificate{}",
                            self.certificate_doubts(first_seen)
                        ),
                    ),
                    Some(70) => (
                        Reason::NoCommonTlsVersion,
                        format!("{alert} after the ServerHello"),
                    ),
                    _ => (Reason::TlsAlert, format!("{alert}{suite_note}")),
                };
            }
            return (Reason::TlsAlert, format!("{alert}{suite_note}"));
        }
        if self.server_hello.is_none() {
            if c.side == Side::Server {
                if let Some(hash) = known_cert_hash.filter(|h| is_weak_signature_hash(h)) {
                    return (
                        Reason::WeakCertificateSignature,
                        format!(
                            "server {} right after the ClientHello; its certificate (seen on another \
                             connection) is signed with {hash}",
                            c.kind()
                        ),
                    );
                }
                let old_client = self
                    .client_hello
                    .as_ref()
                    .is_some_and(|h| h.max_version < tls::TLS12);
                if old_client {
                    return (
                        Reason::NoCommonTlsVersion,
                        format!(
                            "server {} right after a ClientHello offering at most {client_max}",
                            c.kind()
                        ),
                    );
                }
            }
            return self.generic(c, "; no ServerHello");
        }
        if c.side == Side::Server && self.f.client_key_exchange() && !server_ccs {
            return self.key_exchange_failure(&format!("server {}", c.kind()), &suite_note);
        }
        let server_flight_done = self.f.server_hello_done() || self.f.server_flight();
        if c.side == Side::Client
            && server_flight_done
            && !self.f.client_key_exchange()
            && !self.f.finished(Side::Client)
        {
            return (
                Reason::CertificateRejected,
                format!(
                    "client {} right after the server's certificate flight{}",
                    c.kind(),
                    self.certificate_doubts(first_seen)
                ),
            );
        }
        self.generic(c, &suite_note)
    }

    /// The DHE signature (KB4557473): the client's key exchange and Finished, then the server's
    /// alert, FIN or RST instead of its ChangeCipherSpec.
    fn key_exchange_failure(&self, what: &str, suite_note: &str) -> (Reason, String) {
        let when = match (self.t.client_finished, self.first_close()) {
            (f, Some(c)) if f > 0 => {
                format!(
                    "{} after the client's Finished",
                    us_text(c.at.saturating_sub(f))
                )
            }
            _ => "after the client's key exchange".into(),
        };
        if self.kx() == Some(KeyExchange::Dhe) {
            let dh = self
                .dh_bits
                .map(|b| format!(", DH {b} bits"))
                .unwrap_or_default();
            (
                Reason::DheKeyExchangeFailure,
                format!("{what} {when} instead of its ChangeCipherSpec{suite_note}{dh}"),
            )
        } else {
            (
                Reason::KeyExchangeFailure,
                format!("{what} {when} instead of its ChangeCipherSpec{suite_note}"),
            )
        }
    }

    /// What a validating driver would object to in the certificate, when it was visible.
    fn certificate_doubts(&self, first_seen: Timestamp) -> String {
        let Some(cert) = self.certificate.as_deref() else {
            return String::new();
        };
        let mut doubts = Vec::new();
        let now = i64::try_from(first_seen.0 / 1_000_000_000).unwrap_or(i64::MAX);
        if now > cert.not_after {
            doubts.push("expired".to_string());
        } else if now < cert.not_before {
            doubts.push("not yet valid".to_string());
        }
        if let Some(sni) = self.client_hello.as_ref().and_then(|h| h.sni.as_deref()) {
            if !cert.dns_names.iter().any(|n| name_matches(n, sni)) {
                doubts.push(format!("no name matching {sni}"));
            }
        }
        if cert.server_auth_eku == Some(false) {
            doubts.push("no server-authentication EKU".into());
        }
        if cert.self_signed {
            doubts.push("self-signed".into());
        }
        if let Some(h) = cert
            .signature_hash
            .filter(|h| is_weak_signature_hash(h) || *h == "sha1")
        {
            doubts.push(format!("signed with {h}"));
        }
        if doubts.is_empty() {
            String::new()
        } else {
            format!(" (certificate: {})", doubts.join(", "))
        }
    }

    /// The verdict, or `None` when the flow turned out not to be TDS 7+. `known_cert_hash` is the
    /// signature hash of this server's certificate when another connection showed it.
    pub fn finish(
        self,
        info: &ConnInfo,
        cause: EndCause,
        known_cert_hash: Option<&str>,
    ) -> Option<Verdict> {
        if self.f.not_tds() {
            return None;
        }
        let first_seen = info.first_seen;
        let last_seen = info.last_seen.max(first_seen);
        let midstream = !self.f.whole()
            && self.client_prelogin().is_none()
            && !self.f.login7()
            && self.mode != Mode::Tds8Strict;
        let still_open = cause == EndCause::EndOfInput && !self.closed();
        // Pushed out of the table (or its 4-tuple reused) before any close: nothing says how the
        // handshake would have ended.
        let cut_short = matches!(
            cause,
            EndCause::EvictedCapacity | EndCause::EvictedMemory | EndCause::Reused
        ) && !self.closed();
        let established = self.stage == Stage::Established;
        // Seen from its SYN, and not one byte either way before the client closed.
        let probe = self.f.whole()
            && self.stage == Stage::Connected
            && !self.f.client_payload()
            && !self.f.server_payload()
            && self.first_close().is_some_and(|c| c.side == Side::Client);

        let (outcome, reason, evidence): (_, _, Cow<'static, str>) = if midstream {
            let why = if established || self.f.midstream_traffic() {
                "joined mid-stream: requests and responses seen, the handshake was not"
            } else {
                "joined mid-stream: no SYN, PRELOGIN or LOGIN7 seen"
            };
            (Outcome::Unknown, None, why.into())
        } else if still_open {
            (
                Outcome::Unknown,
                None,
                format!("still open at {} when the capture ended", self.stage).into(),
            )
        } else if cut_short && !established {
            let why = match cause {
                EndCause::Reused => "a new SYN reused its addresses and ports",
                _ => "evicted from the connection table (limits reached)",
            };
            (
                Outcome::Unknown,
                None,
                format!("{why} at {}", self.stage).into(),
            )
        } else if established {
            (Outcome::Established, None, self.established_evidence())
        } else if self.f.blind() {
            (
                Outcome::Unknown,
                None,
                format!("bytes lost at {}: the outcome cannot be told", self.stage).into(),
            )
        } else if probe {
            let text = "client closed before sending any TDS byte (TCP probe or port scan)";
            (Outcome::Failed, Some(Reason::Closed), text.into())
        } else {
            let (reason, text) = self.failure_reason(cause, known_cert_hash, first_seen);
            (Outcome::Failed, Some(reason), text.into())
        };

        let encryption = if midstream {
            Encryption::Unknown
        } else {
            self.encryption()
        };
        let asked_for_tls = Self::setting(self.client_prelogin())
            .is_some_and(|s| matches!(s, EncryptSetting::On | EncryptSetting::Req));
        let evidence = if encryption == Encryption::None && asked_for_tls && self.f.login7_clear() {
            format!("{evidence}; DOWNGRADE: the client asked for encryption and logged in in clear")
                .into()
        } else {
            evidence
        };
        Some(Verdict {
            client: info.client,
            server: info.server,
            first_seen,
            last_seen,
            mode: if midstream { Mode::Unknown } else { self.mode },
            encryption,
            stage: self.stage,
            outcome,
            reason,
            prelogin: self.prelogin_facts(),
            tls: self.tls_facts(),
            login: self.login_facts(),
            close: CloseFacts {
                first_fin: self.first_fin,
                first_rst: self.first_rst,
                stage: self.close_stage,
                abnormal: self.first_rst.is_some() || self.first_fin == Some(Side::Server),
            },
            durations_ms: self.durations(first_seen, last_seen),
            evidence,
            probe,
        })
    }

    fn established_evidence(&self) -> Cow<'static, str> {
        let how = if self.ack_version != 0 {
            "LOGINACK seen"
        } else if self.f.answered() {
            "encrypted login answered, and the client went on sending requests"
        } else {
            "requests after the login"
        };
        if self.f.routing() {
            format!("{how}; the server routed the client elsewhere (ENVCHANGE routing)").into()
        } else {
            how.into()
        }
    }

    fn prelogin_facts(&self) -> PreloginFacts {
        let version = |p: &Prelogin| p.version.map(|(a, b, c, d)| Version4(a, b, c, d));
        let enc = |p: &Prelogin| {
            p.encryption
                .and_then(EncryptSetting::from_byte)
                .map(|e| e.as_str())
        };
        let client = self.client_prelogin();
        let server = self.server_prelogin();
        PreloginFacts {
            client_version: client.and_then(version),
            client_encryption: client.and_then(enc),
            server_version: server.and_then(version),
            server_encryption: server.and_then(enc),
            mars: client.and_then(|p| p.mars).map(|m| m == 1),
            instance: client
                .and_then(|p| p.instance.clone())
                .filter(|s| !s.is_empty()),
        }
    }

    fn tls_facts(&self) -> TlsFacts {
        let ch = self.client_hello.as_deref();
        let sh = self.server_hello;
        let alerts = self.alerts.as_deref().map_or(&[][..], |a| a.0.as_slice());
        TlsFacts {
            client_max_version: ch.map(|h| tls::version_name(h.max_version)),
            client_min_version: ch.map(|h| tls::version_name(h.min_version)),
            client_suites: ch.map(|h| SuiteList(h.suites.clone())),
            dhe_offered: ch.map(|h| h.dhe_offered),
            sni: ch.and_then(|h| h.sni.clone()),
            alpn: ch.filter(|h| !h.alpn.is_empty()).map(|h| h.alpn.clone()),
            ja4: ch.map(|h| h.ja4.clone()),
            version: sh.map(|h| tls::version_name(h.version)),
            suite: sh.map(|h| tls::suite_name(h.suite)),
            kx: self.kx().map(KeyExchange::as_str),
            dh_bits: self.dh_bits.map(|b| u32::from(b.get())),
            completed: ch.map(|_| self.f.tls_completed()),
            certificate: self.certificate.clone().map(CertificateFacts),
            alerts: alerts
                .iter()
                .map(|&(side, level, desc)| AlertFact {
                    from: side,
                    level: level.map(|l| if l == 1 { "warning" } else { "fatal" }),
                    description: desc.map(tls::alert_name),
                })
                .collect(),
        }
    }

    fn login_facts(&self) -> LoginFacts {
        let result = if !self.f.login7() {
            None
        } else if self.ack_version != 0 {
            Some(LoginResult::Ack)
        } else if self.error.is_some() {
            Some(LoginResult::Error)
        } else {
            Some(LoginResult::Unknown)
        };
        LoginFacts {
            result,
            error_number: self.error.map(|e| e.number.get()),
            tds_version: [self.ack_version, self.login_version]
                .into_iter()
                .find(|&v| v != 0)
                .map(tds::tds_version_name),
        }
    }

    fn durations(&self, first_seen: Timestamp, last_seen: Timestamp) -> Durations {
        let span = |a: u32, b: u32| (a > 0 && b > 0).then(|| f64::from(b.saturating_sub(a)) / 1e3);
        let t = &self.t;
        Durations {
            prelogin: (t.prelogin_response > 0).then(|| f64::from(t.prelogin_response) / 1e3),
            tls_handshake: span(t.client_hello, t.tls_completed),
            login: span(t.login7, t.login_answer),
            total: Some(last_seen.since(first_seen) as f64 / 1e6),
        }
    }
}

/// The first FIN or RST.
#[derive(Debug, Clone, Copy)]
struct Close {
    side: Side,
    rst: bool,
    /// Microseconds since the first packet.
    at: u32,
}

impl Close {
    fn kind(self) -> &'static str {
        if self.rst {
            "RST"
        } else {
            "FIN"
        }
    }
}

/// The primer's §1 negotiation table: `None` where one side closes.
pub fn negotiated_encryption(client: EncryptSetting, server: EncryptSetting) -> Option<Encryption> {
    use EncryptSetting::*;
    match (client, server) {
        (Off, Off) => Some(Encryption::LoginOnly),
        (Off, NotSup) | (NotSup, Off) | (NotSup, NotSup) => Some(Encryption::None),
        (NotSup, On) | (NotSup, Req) | (On, NotSup) | (Req, NotSup) => None,
        _ => Some(Encryption::Full),
    }
}

/// "2.0 ms", "15 ms", "1.2 s" for a number of microseconds.
fn us_text(us: u32) -> String {
    let ms = f64::from(us) / 1e3;
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// A certificate DNS name (maybe a `*.` wildcard) against the name the client asked for.
fn name_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(rest) => h.split_once('.').is_some_and(|(_, tail)| tail == rest),
        None => p == h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const C: Side = Side::Client;
    const S: Side = Side::Server;

    fn info(from_syn: bool) -> ConnInfo {
        ConnInfo {
            client: "10.0.0.9:50000".parse::<SocketAddr>().unwrap(),
            server: "10.0.0.5:1433".parse::<SocketAddr>().unwrap(),
            first_seen: Timestamp(1_700_000_000_000_000_000),
            last_seen: Timestamp(1_700_000_000_000_000_000),
            roles_from_syn: from_syn,
        }
    }

    /// A test driver: events at 1 ms steps.
    struct Run {
        m: Handshake,
        t: u64,
        info: ConnInfo,
        shared: Shared,
    }

    impl Run {
        fn new(from_syn: bool) -> Self {
            let info = info(from_syn);
            Run {
                m: Handshake::new(&info),
                t: info.first_seen.0,
                info,
                shared: Shared::default(),
            }
        }
        fn ts(&mut self) -> When {
            self.t += 1_000_000;
            When {
                ts: Timestamp(self.t),
                first_seen: self.info.first_seen,
            }
        }
        fn tcp(&mut self, ev: TcpEvent) -> &mut Self {
            let ts = self.ts();
            self.m.on_tcp(ts, ev);
            self
        }
        fn tds(&mut self, side: Side, ev: TdsEvent<'static>) -> &mut Self {
            let ts = self.ts();
            self.m.on_tcp(ts, TcpEvent::Data(side));
            self.m.on_tds(ts, side, &ev, &mut self.shared);
            self
        }
        fn tls(&mut self, side: Side, ev: TlsEvent) -> &mut Self {
            let ts = self.ts();
            self.m.on_tcp(ts, TcpEvent::Data(side));
            self.m.on_tls(ts, side, ev);
            self
        }
        fn connect(&mut self) -> &mut Self {
            self.tcp(TcpEvent::Syn).tcp(TcpEvent::SynAck)
        }
        fn prelogin(&mut self, client: u8, server: u8) -> &mut Self {
            let p = |e| Prelogin {
                encryption: Some(e),
                version: Some((16, 0, 600, 0)),
                ..Default::default()
            };
            self.tds(C, TdsEvent::Prelogin(p(client)))
                .tds(S, TdsEvent::Prelogin(p(server)))
        }
        fn client_hello(&mut self, max: u16) -> &mut Self {
            let hello = ClientHello {
                legacy_version: max.min(tls::TLS12),
                max_version: max,
                min_version: tls::TLS10,
                suites: vec![0xc02f, 0x009f],
                dhe_offered: true,
                ja4: "t12d0200h2_000000000000_000000000000".into(),
                ..Default::default()
            };
            self.tls(C, TlsEvent::ClientHello(Arc::new(hello)))
        }
        fn server_hello(&mut self, version: u16, suite: u16) -> &mut Self {
            let group = if version == tls::TLS13 {
                Some(0x001d)
            } else {
                None
            };
            self.tls(
                S,
                TlsEvent::ServerHello(ServerHello {
                    version,
                    suite,
                    hello_retry: false,
                    key_share_group: group,
                }),
            )
        }
        /// ServerHello … ServerHelloDone, client key exchange, CCS and Finished (TLS 1.2).
        fn tls12_until_client_finished(&mut self, suite: u16) -> &mut Self {
            self.client_hello(tls::TLS12)
                .server_hello(tls::TLS12, suite)
                .tls(
                    S,
                    TlsEvent::Certificate(Arc::new(Certificate {
                        signature_hash: Some("sha256"),
                        ..Default::default()
                    })),
                )
                .tls(
                    S,
                    TlsEvent::ServerKeyExchange {
                        dh_bits: Some(2048),
                        curve: None,
                    },
                )
                .tls(S, TlsEvent::ServerHelloDone)
                .tls(C, TlsEvent::ClientKeyExchange)
                .tls(C, TlsEvent::ChangeCipherSpec)
                .tls(C, TlsEvent::EncryptedHandshake)
        }
        fn tls12_complete(&mut self, suite: u16) -> &mut Self {
            self.tls12_until_client_finished(suite)
                .tls(S, TlsEvent::ChangeCipherSpec)
                .tls(S, TlsEvent::EncryptedHandshake)
        }
        fn app(&mut self, side: Side) -> &mut Self {
            self.tls(side, TlsEvent::ApplicationData { len: 100 })
        }
        fn finish(&mut self, cause: EndCause) -> Verdict {
            self.info.last_seen = Timestamp(self.t);
            let m = std::mem::replace(&mut self.m, Handshake::new(&self.info));
            m.finish(&self.info, cause, None).expect("a TDS verdict")
        }
        fn finish_known(&mut self, hash: &str) -> Verdict {
            let m = std::mem::replace(&mut self.m, Handshake::new(&self.info));
            m.finish(&self.info, EndCause::Closed, Some(hash))
                .expect("a TDS verdict")
        }
    }

    const ECDHE: u16 = 0xc02f; // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    const DHE: u16 = 0x009f; // TLS_DHE_RSA_WITH_AES_256_GCM_SHA384

    #[test]
    fn login_only_tls12_established_client_closes() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).tls12_complete(ECDHE).app(C);
        r.tds(
            S,
            TdsEvent::LoginAck {
                tds_version: 0x7400_0004,
            },
        );
        assert!(r.m.done());
        r.tds(C, TdsEvent::Message { packet_type: 0x01 })
            .tcp(TcpEvent::Fin(C))
            .tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(
            (v.outcome, v.stage, v.reason),
            (Outcome::Established, Stage::Established, None)
        );
        assert_eq!(v.mode, Mode::Tds7);
        assert_eq!(v.encryption, Encryption::LoginOnly);
        assert_eq!(v.tls.version.as_deref(), Some("TLSv1.2"));
        assert_eq!(v.tls.kx, Some("ecdhe"));
        assert_eq!(v.tls.completed, Some(true));
        assert_eq!(v.login.result, Some(LoginResult::Ack));
        assert_eq!(v.login.tds_version.as_deref(), Some("7.4"));
        assert_eq!(v.close.first_fin, Some(C));
        assert_eq!(v.close.stage, Some(Stage::Established));
        assert!(!v.close.abnormal);
        assert_eq!(v.prelogin.client_encryption, Some("OFF"));
        assert_eq!(
            v.prelogin.server_version.map(|v| v.to_string()).as_deref(),
            Some("16.0.600.0")
        );
        assert!(v.durations_ms.tls_handshake.is_some_and(|d| d > 0.0));
        assert!(v.durations_ms.login.is_some_and(|d| d > 0.0));
    }

    #[test]
    fn full_encryption_established_by_requests_after_the_answer() {
        let mut r = Run::new(true);
        r.connect()
            .prelogin(1, 0)
            .tls12_complete(ECDHE)
            .app(C)
            .app(S);
        assert!(!r.m.done(), "an answer alone does not prove the login");
        r.app(C);
        assert!(r.m.done());
        r.tcp(TcpEvent::Rst { side: C, ttl: 64 });
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.outcome, Outcome::Established);
        assert_eq!(v.encryption, Encryption::Full);
        assert_eq!(v.close.first_rst, Some(C));
        assert!(v.close.abnormal, "any RST is abnormal");
        assert_eq!(v.login.result, Some(LoginResult::Unknown));
    }

    #[test]
    fn dhe_reset_after_client_finished() {
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .tls12_until_client_finished(DHE)
            .tcp(TcpEvent::Rst { side: S, ttl: 64 });
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.outcome, Outcome::Failed);
        assert_eq!(v.reason, Some(Reason::DheKeyExchangeFailure));
        assert_eq!(v.stage, Stage::TlsHandshake);
        assert_eq!(v.close.stage, Some(Stage::TlsHandshake));
        assert_eq!(v.tls.kx, Some("dhe"));
        assert_eq!(v.tls.dh_bits, Some(2048));
        assert_eq!(v.tls.completed, Some(false));
        assert!(
            v.evidence
                .contains("server RST 1.0 ms after the client's Finished"),
            "{}",
            v.evidence
        );
        assert!(
            v.evidence.contains("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
            "{}",
            v.evidence
        );
    }

    #[test]
    fn ecdhe_reset_after_client_finished_is_key_exchange_failure() {
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .tls12_until_client_finished(ECDHE)
            .tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::KeyExchangeFailure));
        assert!(v.close.abnormal, "server FIN first is abnormal");
    }

    #[test]
    fn protocol_version_alert_is_no_common_tls_version() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS10);
        r.tls(
            S,
            TlsEvent::Alert {
                level: Some(2),
                description: Some(70),
            },
        )
        .tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::NoCommonTlsVersion));
        assert_eq!(v.tls.alerts.len(), 1);
        assert_eq!(v.tls.alerts[0].from, S);
        assert_eq!(v.tls.alerts[0].level, Some("fatal"));
        assert_eq!(v.tls.client_max_version.as_deref(), Some("TLSv1.0"));
    }

    #[test]
    fn handshake_failure_alert_is_no_common_cipher() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12);
        r.tls(
            S,
            TlsEvent::Alert {
                level: Some(2),
                description: Some(40),
            },
        )
        .tcp(TcpEvent::Fin(S));
        assert_eq!(
            r.finish(EndCause::Closed).reason,
            Some(Reason::NoCommonCipher)
        );
    }

    #[test]
    fn silent_close_after_client_hello() {
        // An old client: the version is the likely cause.
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS10)
            .tcp(TcpEvent::Fin(S));
        assert_eq!(
            r.finish(EndCause::Closed).reason,
            Some(Reason::NoCommonTlsVersion)
        );
        // A TLS 1.2 client: nothing specific can be said…
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS12)
            .tcp(TcpEvent::Rst { side: S, ttl: 64 });
        assert_eq!(r.finish(EndCause::Closed).reason, Some(Reason::Reset));
        // … unless the server's certificate was seen elsewhere with a weak hash.
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS12)
            .tcp(TcpEvent::Fin(S));
        assert_eq!(
            r.finish_known("sha512").reason,
            Some(Reason::WeakCertificateSignature)
        );
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS12)
            .tcp(TcpEvent::Fin(S));
        assert_eq!(r.finish_known("sha256").reason, Some(Reason::Closed));
    }

    #[test]
    fn certificate_rejected_by_alert_or_close() {
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS12)
            .server_hello(tls::TLS12, ECDHE);
        r.tls(S, TlsEvent::ServerHelloDone).tls(
            C,
            TlsEvent::Alert {
                level: Some(2),
                description: Some(48),
            },
        );
        r.tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::CertificateRejected));
        assert!(v.evidence.contains("unknown_ca"), "{}", v.evidence);

        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS12)
            .server_hello(tls::TLS12, ECDHE);
        r.tls(S, TlsEvent::ServerHelloDone)
            .tcp(TcpEvent::Rst { side: C, ttl: 64 });
        assert_eq!(
            r.finish(EndCause::Closed).reason,
            Some(Reason::CertificateRejected)
        );

        // TLS 1.3: the client's encrypted alert has the size of an alert, not of a Finished.
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS13)
            .server_hello(tls::TLS13, 0x1301)
            .app(S);
        r.tls(C, TlsEvent::ApplicationData { len: 19 })
            .tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::CertificateRejected));
        assert_eq!(v.tls.completed, Some(false));
    }

    #[test]
    fn encryption_mismatch() {
        let mut r = Run::new(true);
        r.connect().prelogin(2, 3).tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::EncryptionMismatch));
        assert_eq!(v.stage, Stage::Prelogin);
        assert!(
            v.evidence.contains("ENCRYPT_NOT_SUP vs server ENCRYPT_REQ"),
            "{}",
            v.evidence
        );
    }

    #[test]
    fn client_asking_for_encryption_but_logging_in_clear_is_a_downgrade() {
        let mut r = Run::new(true);
        r.connect().prelogin(1, 2).tds(
            C,
            TdsEvent::Login7 {
                tds_version: 0x7400_0004,
            },
        );
        r.tds(
            S,
            TdsEvent::LoginAck {
                tds_version: 0x7400_0004,
            },
        )
        .tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.outcome, Outcome::Established);
        assert_eq!(v.encryption, Encryption::None);
        assert!(v.evidence.contains("DOWNGRADE"), "{}", v.evidence);
    }

    #[test]
    fn strict_success_and_mismatch() {
        let mut r = Run::new(true);
        r.connect()
            .client_hello(tls::TLS13)
            .server_hello(tls::TLS13, 0x1301)
            .app(S);
        r.tls(C, TlsEvent::ApplicationData { len: 53 }); // Finished
        r.app(C).app(S); // PRELOGIN inside TLS
        r.app(C).app(S); // LOGIN7 and its answer
        assert!(!r.m.done());
        r.app(C);
        assert!(r.m.done());
        r.tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(
            (v.mode, v.encryption, v.outcome),
            (Mode::Tds8Strict, Encryption::Strict, Outcome::Established)
        );
        assert_eq!(v.tls.version.as_deref(), Some("TLSv1.3"));

        let mut r = Run::new(true);
        r.connect().client_hello(tls::TLS13).tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::StrictMismatch));
        assert_eq!(v.mode, Mode::Tds8Strict);
    }

    #[test]
    fn login_error_in_clear() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).tls12_complete(ECDHE).app(C);
        r.tds(
            S,
            TdsEvent::Error {
                number: 18456,
                state: 1,
                class: 14,
            },
        )
        .tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(
            (v.outcome, v.reason, v.stage),
            (Outcome::Failed, Some(Reason::LoginFailed), Stage::Login)
        );
        assert_eq!(v.login.result, Some(LoginResult::Error));
        assert_eq!(v.login.error_number, Some(18456));
        assert_eq!(v.encryption, Encryption::LoginOnly);
    }

    #[test]
    fn tcp_only_outcomes() {
        let mut r = Run::new(true);
        r.tcp(TcpEvent::Syn).tcp(TcpEvent::Rst { side: S, ttl: 64 });
        let v = r.finish(EndCause::Closed);
        assert_eq!((v.reason, v.stage), (Some(Reason::Refused), Stage::Syn));

        let mut r = Run::new(true);
        r.tcp(TcpEvent::Syn).tcp(TcpEvent::Syn);
        let v = r.finish(EndCause::IdleTimeout);
        assert_eq!((v.reason, v.stage), (Some(Reason::NoResponse), Stage::Syn));

        let mut r = Run::new(true);
        r.connect().tcp(TcpEvent::Fin(C)).tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(
            (v.outcome, v.reason, v.stage),
            (Outcome::Failed, Some(Reason::Closed), Stage::Connected)
        );
        assert!(v.probe);
        assert_eq!(v.mode, Mode::Unknown);

        let mut r = Run::new(true);
        r.connect().prelogin(0, 0);
        let v = r.finish(EndCause::IdleTimeout);
        assert_eq!(v.reason, Some(Reason::IdleTimeout));
    }

    #[test]
    fn open_at_end_of_input_is_unknown() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).tls12_complete(ECDHE).app(C);
        r.tds(
            S,
            TdsEvent::LoginAck {
                tds_version: 0x7400_0004,
            },
        );
        let v = r.finish(EndCause::EndOfInput);
        assert_eq!(
            (v.outcome, v.stage, v.reason),
            (Outcome::Unknown, Stage::Established, None)
        );
        assert_eq!(v.close, CloseFacts::default());

        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12);
        let v = r.finish(EndCause::EndOfInput);
        assert_eq!((v.outcome, v.reason), (Outcome::Unknown, None));
    }

    #[test]
    fn evicted_or_reused_before_a_close_is_unknown_unless_established() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12);
        let v = r.finish(EndCause::EvictedCapacity);
        assert_eq!((v.outcome, v.reason), (Outcome::Unknown, None));
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0);
        assert_eq!(r.finish(EndCause::Reused).outcome, Outcome::Unknown);
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).tls12_complete(ECDHE).app(C);
        r.tds(
            S,
            TdsEvent::LoginAck {
                tds_version: 0x7400_0004,
            },
        );
        assert_eq!(
            r.finish(EndCause::EvictedMemory).outcome,
            Outcome::Established
        );
    }

    #[test]
    fn a_mid_stream_fragment_or_a_client_that_sent_bytes_is_no_probe() {
        // No SYN: whatever it is, it was not seen opening.
        let mut r = Run::new(false);
        r.tcp(TcpEvent::Data(C)).tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert!(!v.probe);
        assert_eq!(v.outcome, Outcome::Unknown);
        // Bytes that parsed as nothing (a TLS record that is not a ClientHello, say).
        let mut r = Run::new(true);
        r.connect().tcp(TcpEvent::Data(C)).tcp(TcpEvent::Fin(C));
        assert!(!r.finish(EndCause::Closed).probe);
    }

    #[test]
    fn encrypted_login_error_is_a_small_answer_then_close() {
        // A small answer to the encrypted LOGIN7, then the client closes without a request.
        let mut r = Run::new(true);
        r.connect().prelogin(1, 1).tls12_complete(ECDHE).app(C);
        r.tls(S, TlsEvent::ApplicationData { len: 130 })
            .tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(
            (v.outcome, v.reason, v.stage),
            (Outcome::Failed, Some(Reason::LoginFailed), Stage::Login)
        );
        assert!(v.evidence.contains("only 130 bytes"), "{}", v.evidence);
        // A LOGINACK-sized answer and a client that leaves at once: nothing says the login failed.
        let mut r = Run::new(true);
        r.connect().prelogin(1, 1).tls12_complete(ECDHE).app(C);
        r.tls(S, TlsEvent::ApplicationData { len: 640 })
            .tcp(TcpEvent::Fin(C));
        assert_eq!(r.finish(EndCause::Closed).reason, Some(Reason::Closed));
    }

    #[test]
    fn encryption_mismatch_survives_bytes_pushed_into_the_closing_connection() {
        // Client NOT_SUP, server REQ and FIN; the client still sends its ClientHello.
        let mut r = Run::new(true);
        r.connect()
            .prelogin(2, 3)
            .tcp(TcpEvent::Fin(S))
            .client_hello(tls::TLS12)
            .tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::EncryptionMismatch), "{}", v.evidence);
    }

    #[test]
    fn encryption_mismatch_when_the_client_hello_beats_the_server_fin() {
        // The same, but the ClientHello reaches the wire before the server's FIN (a race seen
        // with tsql on loopback): the server still closed on the settings, without a word of TLS.
        let mut r = Run::new(true);
        r.connect()
            .prelogin(2, 3)
            .client_hello(tls::TLS12)
            .tcp(TcpEvent::Fin(S))
            .tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::EncryptionMismatch), "{}", v.evidence);
        // A server that answers the ClientHello in TLS is judged by its TLS: handshake_failure
        // to the ClientHello is no common suite.
        let mut r = Run::new(true);
        r.connect()
            .prelogin(2, 3)
            .client_hello(tls::TLS12)
            .tls(
                S,
                TlsEvent::Alert {
                    level: Some(2),
                    description: Some(40),
                },
            )
            .tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::NoCommonCipher), "{}", v.evidence);
    }

    #[test]
    fn a_server_closing_on_prelogin_without_answer_is_strict_only() {
        let mut r = Run::new(true);
        r.connect().tds(
            C,
            TdsEvent::Prelogin(Prelogin {
                encryption: Some(0),
                ..Default::default()
            }),
        );
        r.tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(
            (v.reason, v.stage),
            (Some(Reason::StrictMismatch), Stage::Prelogin),
            "{}",
            v.evidence
        );
        // The client giving up first says nothing of the server.
        let mut r = Run::new(true);
        r.connect().tds(
            C,
            TdsEvent::Prelogin(Prelogin {
                encryption: Some(0),
                ..Default::default()
            }),
        );
        r.tcp(TcpEvent::Fin(C));
        assert_eq!(r.finish(EndCause::Closed).reason, Some(Reason::Closed));
    }

    #[test]
    fn joined_mid_stream() {
        let mut r = Run::new(false);
        r.tds(C, TdsEvent::Message { packet_type: 0x03 })
            .tds(S, TdsEvent::Message { packet_type: 0x04 });
        assert!(r.m.done());
        r.tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(
            (v.outcome, v.mode, v.encryption),
            (Outcome::Unknown, Mode::Unknown, Encryption::Unknown)
        );
    }

    #[test]
    fn lost_bytes_make_the_outcome_unknown() {
        let mut r = Run::new(true);
        r.connect()
            .prelogin(0, 0)
            .client_hello(tls::TLS12)
            .tcp(TcpEvent::Gap(S))
            .tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!((v.outcome, v.reason), (Outcome::Unknown, None));
    }

    #[test]
    fn non_tds_flows_give_no_verdict() {
        let mut r = Run::new(true);
        r.connect().tds(C, TdsEvent::LegacyLogin);
        assert!(r.m.done());
        let m = std::mem::replace(&mut r.m, Handshake::new(&r.info));
        assert!(m.finish(&r.info, EndCause::Closed, None).is_none());

        let mut r = Run::new(false);
        r.tds(S, TdsEvent::NotTds);
        let m = std::mem::replace(&mut r.m, Handshake::new(&r.info));
        assert!(m.finish(&r.info, EndCause::EndOfInput, None).is_none());
    }

    #[test]
    fn negotiation_table() {
        use EncryptSetting::*;
        assert_eq!(negotiated_encryption(Off, Off), Some(Encryption::LoginOnly));
        assert_eq!(negotiated_encryption(Off, On), Some(Encryption::Full));
        assert_eq!(negotiated_encryption(Off, NotSup), Some(Encryption::None));
        assert_eq!(negotiated_encryption(Off, Req), Some(Encryption::Full));
        assert_eq!(negotiated_encryption(On, Off), Some(Encryption::Full));
        assert_eq!(negotiated_encryption(On, NotSup), None);
        assert_eq!(negotiated_encryption(NotSup, Off), Some(Encryption::None));
        assert_eq!(negotiated_encryption(NotSup, On), None);
        assert_eq!(negotiated_encryption(NotSup, Req), None);
        assert_eq!(negotiated_encryption(Req, Off), Some(Encryption::Full));
        assert_eq!(negotiated_encryption(Req, NotSup), None);
        assert_eq!(negotiated_encryption(Req, Req), Some(Encryption::Full));
    }

    #[test]
    fn certificate_name_matching() {
        assert!(name_matches("*.example.com", "db.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("DB.example.com", "db.EXAMPLE.com"));
    }
}

#[cfg(test)]
mod size {
    /// An open connection past its handshake keeps this struct and conntrack's entry: together
    /// they must stay under 256 bytes (docs/performance.md).
    #[test]
    fn handshake_state_is_small() {
        let size = std::mem::size_of::<super::Handshake>();
        assert!(size <= 112, "Handshake grew to {size} bytes");
    }
}
