//! The handshake state machine: one per connection. Consumes TCP events (SYN, FIN, RST, gaps), TDS
//! events and TLS events, never bytes, and decides stage, mode, encryption, close, outcome and the
//! most specific failure reason the evidence supports. The primer's §4 wire signatures live in
//! [`Handshake::failure_reason`] as explicit rules, in the order of the primer's table.
//!
//! Memory: a connection past its handshake keeps only this struct (the parsers are dropped by the
//! pipeline), so the facts that only some connections have live behind boxes.

use crate::capture::Timestamp;
use crate::conntrack::{ConnInfo, EndCause, Side};
use crate::tds::{self, EncryptSetting, Prelogin, TdsEvent};
use crate::tls::{self, Certificate, ClientHello, KeyExchange, ServerHello, TlsEvent};
use crate::verdict::{
    AlertFact, CertificateFacts, CloseFacts, Durations, Encryption, LoginFacts, LoginResult, Mode,
    Outcome, PreloginFacts, Reason, Stage, TlsFacts, Verdict,
};

/// TCP-level events the machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    Syn,
    SynAck,
    /// Payload bytes from a side (sent for every data delivery; the machine keeps the first).
    Data(Side),
    Gap(Side),
    Fin(Side),
    Rst { side: Side, ttl: u8 },
}

/// Alerts kept per connection; more are counted, not kept.
const MAX_ALERTS: usize = 8;

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

/// What was learned of the TLS handshake; boxed because only TLS connections need it.
#[derive(Debug, Default)]
struct TlsState {
    client_hello: Option<Box<ClientHello>>,
    server_hello: Option<ServerHello>,
    hello_retry: bool,
    certificate: Option<Box<Certificate>>,
    dh_bits: Option<u32>,
    server_hello_done: bool,
    client_key_exchange: bool,
    ccs: [bool; 2],
    /// Finished (an encrypted handshake record after CCS), per side.
    finished: [bool; 2],
    /// Application-data records seen per side (saturating).
    app_data: [u32; 2],
    alerts: Vec<(Side, Option<u8>, Option<u8>)>,
    alerts_dropped: u32,
    /// The first alert (side, description) seen before the handshake completed.
    first_handshake_alert: Option<(Side, Option<u8>)>,
    completed: bool,
    /// Times of key moments, for durations and evidence.
    t_client_hello: Option<Timestamp>,
    t_completed: Option<Timestamp>,
    t_client_finished: Option<Timestamp>,
    t_server_flight_end: Option<Timestamp>,
    /// TLS 1.3: the server's encrypted flight was seen.
    server_flight: bool,
    malformed: bool,
}

impl TlsState {
    fn version(&self) -> Option<u16> {
        self.server_hello.map(|h| h.version)
    }
    fn is_tls13(&self) -> bool {
        self.version() == Some(tls::TLS13)
    }
    fn kx(&self) -> Option<KeyExchange> {
        let hello = self.server_hello?;
        if hello.version == tls::TLS13 {
            hello.key_share_group.map(tls::kx_of_group)
        } else {
            Some(tls::kx_of_suite(hello.suite))
        }
    }
}

/// Login facts and the encrypted-login bookkeeping.
#[derive(Debug, Default)]
struct LoginState {
    /// LOGIN7 seen in clear, or inferred as the client's first record inside TLS.
    login7: bool,
    login7_clear: bool,
    tds_version: Option<u32>,
    ack_version: Option<u32>,
    error: Option<(u32, u8, u8)>,
    routing: bool,
    /// The server answered LOGIN7 (clear response, or TLS data after the client's LOGIN7 record).
    answered: bool,
    t_login7: Option<Timestamp>,
    t_answer: Option<Timestamp>,
    /// Encrypted login: client turns (bursts of records after a server answer) after the TLS
    /// handshake. In TDS 7.x the first turn is LOGIN7; in strict mode PRELOGIN then LOGIN7.
    client_turns: u8,
    /// Server data since the client's last turn.
    server_spoke: bool,
}

/// The per-connection state machine.
#[derive(Debug)]
pub struct Handshake {
    first_seen: Timestamp,
    last_seen: Timestamp,
    stage: Stage,
    mode: Mode,
    /// The first client payload has been classified.
    client_started: bool,
    server_payload: bool,
    syn: bool,
    syn_ack: bool,
    /// Roles from a SYN: the whole connection was seen from its start.
    from_start: bool,
    /// Post-login traffic seen on a connection joined mid-stream.
    midstream_traffic: bool,
    /// The flow is not TDS 7+ (Sybase TDS 5, TDS 4.2, random bytes): no verdict.
    not_tds: bool,
    /// A TDS 7+ message or TLS record was parsed on this flow.
    tds_seen: bool,
    /// Bytes were lost or a parser gave up before the outcome was decided.
    blind: bool,
    client_prelogin: Option<Box<Prelogin>>,
    server_prelogin: Option<Box<Prelogin>>,
    t_prelogin_response: Option<Timestamp>,
    tls: Option<Box<TlsState>>,
    login: Option<Box<LoginState>>,
    first_fin: Option<(Side, Timestamp)>,
    first_rst: Option<(Side, Timestamp)>,
    close_stage: Option<Stage>,
    /// The last protocol event before the first close, for evidence ("after the client's Finished").
    last_event: Option<(Side, &'static str, Timestamp)>,
}

impl Handshake {
    pub fn new(ts: Timestamp, info: &ConnInfo) -> Self {
        Handshake {
            first_seen: ts,
            last_seen: ts,
            stage: if info.roles_from_syn { Stage::Syn } else { Stage::Connected },
            mode: Mode::Unknown,
            client_started: false,
            server_payload: false,
            syn: false,
            syn_ack: false,
            from_start: info.roles_from_syn,
            midstream_traffic: false,
            not_tds: false,
            tds_seen: false,
            blind: false,
            client_prelogin: None,
            server_prelogin: None,
            t_prelogin_response: None,
            tls: None,
            login: None,
            first_fin: None,
            first_rst: None,
            close_stage: None,
            last_event: None,
        }
    }

    fn closed(&self) -> bool {
        self.first_fin.is_some() || self.first_rst.is_some()
    }

    fn advance(&mut self, stage: Stage) {
        if stage > self.stage {
            self.stage = stage;
        }
    }

    fn note(&mut self, side: Side, what: &'static str, ts: Timestamp) {
        if !self.closed() {
            self.last_event = Some((side, what, ts));
        }
    }

    fn tls_mut(&mut self) -> &mut TlsState {
        self.tls.get_or_insert_with(Default::default)
    }

    fn login_mut(&mut self) -> &mut LoginState {
        self.login.get_or_insert_with(Default::default)
    }

    pub fn on_tcp(&mut self, ts: Timestamp, ev: TcpEvent) {
        self.last_seen = self.last_seen.max(ts);
        match ev {
            TcpEvent::Syn => self.syn = true,
            TcpEvent::SynAck => {
                self.syn_ack = true;
                self.advance(Stage::Connected);
            }
            TcpEvent::Data(side) => {
                self.advance(Stage::Connected);
                if side == Side::Server {
                    self.server_payload = true;
                }
            }
            TcpEvent::Gap(_) => {
                if self.stage < Stage::Established {
                    self.blind = true;
                }
            }
            TcpEvent::Fin(side) => {
                if self.first_fin.is_none() {
                    self.first_fin = Some((side, ts));
                    if self.close_stage.is_none() {
                        self.close_stage = Some(self.stage);
                    }
                }
            }
            TcpEvent::Rst { side, .. } => {
                if self.first_rst.is_none() {
                    self.first_rst = Some((side, ts));
                    if self.close_stage.is_none() {
                        self.close_stage = Some(self.stage);
                    }
                }
            }
        }
    }

    /// The first client payload tells the mode: PRELOGIN or LOGIN7 → TDS 7.x, a TLS ClientHello →
    /// TDS 8.0 strict, anything else → joined mid-stream.
    fn client_start(&mut self, mode: Mode) {
        if !self.client_started {
            self.client_started = true;
            self.mode = mode;
        }
    }

    /// A TDS event (never [`TdsEvent::TlsData`], which goes to the TLS layer).
    pub fn on_tds(&mut self, ts: Timestamp, side: Side, ev: &TdsEvent<'_>) {
        self.last_seen = self.last_seen.max(ts);
        match ev {
            TdsEvent::TlsData { .. } => {}
            TdsEvent::Prelogin(p) => {
                self.tds_seen = true;
                match side {
                    Side::Client => {
                        self.client_start(Mode::Tds7);
                        if self.client_prelogin.is_none() {
                            self.client_prelogin = Some(Box::new(p.clone()));
                        }
                        self.advance(Stage::Prelogin);
                        self.note(side, "PRELOGIN", ts);
                    }
                    Side::Server => {
                        if self.server_prelogin.is_none() {
                            self.server_prelogin = Some(Box::new(p.clone()));
                            self.t_prelogin_response = Some(ts);
                        }
                        self.note(side, "PRELOGIN response", ts);
                    }
                }
            }
            TdsEvent::Login7 { tds_version } => {
                if side != Side::Client {
                    return;
                }
                self.tds_seen = true;
                self.client_start(Mode::Tds7);
                let login = self.login_mut();
                if !login.login7 {
                    login.login7 = true;
                    login.login7_clear = true;
                    login.tds_version = Some(*tds_version);
                    login.t_login7 = Some(ts);
                }
                self.advance(Stage::Login);
                self.note(side, "LOGIN7", ts);
            }
            TdsEvent::LegacyLogin => {
                if !self.tds_seen {
                    self.not_tds = true;
                }
            }
            TdsEvent::LoginAck { tds_version } => {
                if side != Side::Server {
                    return;
                }
                self.tds_seen = true;
                let login = self.login_mut();
                login.ack_version.get_or_insert(*tds_version);
                if !login.answered {
                    login.answered = true;
                    login.t_answer = Some(ts);
                }
                self.advance(Stage::Established);
                self.note(side, "LOGINACK", ts);
            }
            TdsEvent::Error { number, state, class } => {
                if side != Side::Server {
                    return;
                }
                self.tds_seen = true;
                if self.stage < Stage::Established {
                    let login = self.login_mut();
                    login.error.get_or_insert((*number, *state, *class));
                    if !login.answered {
                        login.answered = true;
                        login.t_answer = Some(ts);
                    }
                    self.note(side, "login ERROR", ts);
                }
            }
            TdsEvent::Routing { .. } => {
                if side == Side::Server {
                    self.login_mut().routing = true;
                }
            }
            TdsEvent::Message { packet_type } => {
                self.tds_seen = true;
                match side {
                    Side::Client => {
                        if !self.client_started {
                            // A request first: joined mid-stream (or a pre-login-less client
                            // that we cannot place); the mode stays unknown.
                            self.client_start(Mode::Unknown);
                        }
                        if is_request(*packet_type) {
                            let answered = self.login.as_ref().is_some_and(|l| l.answered);
                            if answered && self.login.as_ref().is_some_and(|l| l.error.is_none()) {
                                self.advance(Stage::Established);
                            } else if !self.from_start && self.login.is_none() {
                                self.midstream_traffic = true;
                            }
                        }
                    }
                    Side::Server => {
                        if *packet_type == 0x04
                            && !self.from_start
                            && self.client_prelogin.is_none()
                            && self.login.is_none()
                        {
                            self.midstream_traffic = true;
                        }
                    }
                }
            }
            TdsEvent::NotTds => {
                if !self.tds_seen {
                    self.not_tds = true;
                } else if self.stage < Stage::Established {
                    self.blind = true;
                }
            }
            TdsEvent::Desync => {
                if self.stage < Stage::Established {
                    self.blind = true;
                }
            }
        }
    }

    pub fn on_tls(&mut self, ts: Timestamp, side: Side, ev: TlsEvent) {
        self.last_seen = self.last_seen.max(ts);
        self.tds_seen = true;
        let i = side.index();
        match ev {
            TlsEvent::ClientHello(hello) => {
                if side != Side::Client {
                    return;
                }
                // TLS before any PRELOGIN: TDS 8.0 strict.
                self.client_start(Mode::Tds8Strict);
                self.advance(Stage::TlsHandshake);
                let st = self.tls_mut();
                st.t_client_hello.get_or_insert(ts);
                // After a HelloRetryRequest the second ClientHello replaces the first.
                if st.client_hello.is_none() || st.hello_retry {
                    st.client_hello = Some(hello);
                }
                self.note(side, "ClientHello", ts);
            }
            TlsEvent::ServerHello(hello) => {
                if side != Side::Server {
                    return;
                }
                let st = self.tls_mut();
                if hello.hello_retry {
                    st.hello_retry = true;
                } else if st.server_hello.is_none() {
                    st.server_hello = Some(hello);
                }
                self.note(side, "ServerHello", ts);
            }
            TlsEvent::Certificate(cert) => {
                if side == Side::Server {
                    let st = self.tls_mut();
                    if st.certificate.is_none() {
                        st.certificate = Some(cert);
                    }
                    self.note(side, "Certificate", ts);
                }
            }
            TlsEvent::ServerKeyExchange { dh_bits, .. } => {
                if side == Side::Server {
                    let st = self.tls_mut();
                    if dh_bits.is_some() {
                        st.dh_bits = dh_bits;
                    }
                    self.note(side, "ServerKeyExchange", ts);
                }
            }
            TlsEvent::ServerHelloDone => {
                if side == Side::Server {
                    let st = self.tls_mut();
                    st.server_hello_done = true;
                    st.t_server_flight_end = Some(ts);
                    self.note(side, "ServerHelloDone", ts);
                }
            }
            TlsEvent::ClientKeyExchange => {
                if side == Side::Client {
                    self.tls_mut().client_key_exchange = true;
                    self.note(side, "ClientKeyExchange", ts);
                }
            }
            TlsEvent::CertificateRequest | TlsEvent::NewSessionTicket => {}
            TlsEvent::ChangeCipherSpec => {
                self.tls_mut().ccs[i] = true;
                self.note(side, "ChangeCipherSpec", ts);
            }
            TlsEvent::EncryptedHandshake => {
                let st = self.tls_mut();
                if st.is_tls13() {
                    // TLS 1.3 middlebox-compatibility: not expected, but harmless.
                    return;
                }
                st.finished[i] = true;
                if side == Side::Client {
                    st.t_client_finished.get_or_insert(ts);
                }
                if st.finished[0] && st.finished[1] && !st.completed {
                    st.completed = true;
                    st.t_completed = Some(ts);
                    self.tls_completed();
                }
                self.note(side, "Finished", ts);
            }
            TlsEvent::Alert { level, description } => {
                let st = self.tls_mut();
                if st.alerts.len() < MAX_ALERTS {
                    st.alerts.push((side, level, description));
                } else {
                    st.alerts_dropped = st.alerts_dropped.saturating_add(1);
                }
                if !st.completed && st.first_handshake_alert.is_none() {
                    // A warning close_notify is not a handshake failure signal.
                    let fatal = level != Some(1);
                    if fatal {
                        st.first_handshake_alert = Some((side, description));
                    }
                }
                self.note(side, "alert", ts);
            }
            TlsEvent::ApplicationData { len } => self.on_app_data(ts, side, len),
            TlsEvent::Malformed { .. } => {
                self.tls_mut().malformed = true;
                if self.stage < Stage::Established {
                    self.blind = true;
                }
            }
        }
    }

    /// In TDS 8.0 strict the whole login (PRELOGIN and LOGIN7) runs inside TLS once it is up.
    fn tls_completed(&mut self) {
        if self.mode == Mode::Tds8Strict {
            self.advance(Stage::Login);
        }
    }

    fn on_app_data(&mut self, ts: Timestamp, side: Side, len: usize) {
        let i = side.index();
        let mode = self.mode;
        let st = self.tls_mut();
        st.app_data[i] = st.app_data[i].saturating_add(1);
        if !st.completed {
            if !st.is_tls13() {
                // Application data before the TLS ≤ 1.2 handshake ended: resumption or a record
                // we could not follow; nothing to conclude.
                return;
            }
            match side {
                Side::Server => {
                    st.server_flight = true;
                    st.t_server_flight_end = Some(ts);
                    self.note(side, "encrypted server flight", ts);
                }
                Side::Client => {
                    if !st.server_flight {
                        return;
                    }
                    if len == TLS13_ENCRYPTED_ALERT_LEN {
                        // The size of an encrypted alert, not of a Finished (≥ 53 bytes).
                        if st.first_handshake_alert.is_none() {
                            st.first_handshake_alert = Some((side, None));
                        }
                        self.note(side, "encrypted alert", ts);
                        return;
                    }
                    st.finished[i] = true;
                    st.t_client_finished = Some(ts);
                    st.completed = true;
                    st.t_completed = Some(ts);
                    self.tls_completed();
                    self.note(side, "Finished", ts);
                }
            }
            return;
        }
        // After the handshake: the login runs inside TLS (full or strict), or LOGIN7 alone is
        // inside TLS (login-only) and the answer comes in clear.
        let login_turn = if mode == Mode::Tds8Strict { 2 } else { 1 };
        let login = self.login_mut();
        match side {
            Side::Client => {
                if login.client_turns == 0 || login.server_spoke {
                    login.client_turns = login.client_turns.saturating_add(1);
                    login.server_spoke = false;
                    if login.client_turns == login_turn && !login.login7 {
                        login.login7 = true;
                        login.t_login7 = Some(ts);
                    } else if login.client_turns > login_turn && login.answered {
                        self.advance(Stage::Established);
                        return;
                    }
                }
                if self.login.as_ref().is_some_and(|l| l.login7) {
                    self.advance(Stage::Login);
                    self.note(side, "LOGIN7 (encrypted)", ts);
                }
            }
            Side::Server => {
                if login.client_turns > 0 {
                    login.server_spoke = true;
                }
                if login.login7 && !login.answered {
                    login.answered = true;
                    login.t_answer = Some(ts);
                    self.note(side, "login response (encrypted)", ts);
                }
            }
        }
    }

    /// The handshake is decided: only the close matters from now on.
    pub fn done(&self) -> bool {
        self.not_tds || self.stage == Stage::Established || self.midstream_traffic
    }

    /// The flow turned out not to be TDS 7+.
    pub fn not_tds(&self) -> bool {
        self.not_tds
    }

    /// The server certificate's signature hash, when one was seen (shared across connections by the
    /// pipeline to explain silent closes after a ClientHello).
    pub fn certificate_hash(&self) -> Option<&'static str> {
        self.tls.as_ref()?.certificate.as_ref()?.signature_hash
    }

    fn encryption(&self) -> Encryption {
        if self.mode == Mode::Tds8Strict {
            return Encryption::Strict;
        }
        let tls_completed = self.tls.as_ref().is_some_and(|t| t.completed);
        // What was seen beats what was negotiated.
        if let Some(login) = &self.login {
            if login.login7_clear {
                return Encryption::None;
            }
            if tls_completed && login.answered {
                let clear_answer = login.ack_version.is_some() || login.error.is_some();
                return if clear_answer { Encryption::LoginOnly } else { Encryption::Full };
            }
        }
        let setting = |p: &Option<Box<Prelogin>>| {
            p.as_ref().and_then(|p| p.encryption).and_then(EncryptSetting::from_byte)
        };
        match (setting(&self.client_prelogin), setting(&self.server_prelogin)) {
            (Some(c), Some(s)) => negotiated_encryption(c, s).unwrap_or(Encryption::None),
            _ => Encryption::Unknown,
        }
    }

    /// PRELOGIN settings that the negotiation table says end the connection.
    fn encryption_mismatch(&self) -> bool {
        let setting = |p: &Option<Box<Prelogin>>| {
            p.as_ref().and_then(|p| p.encryption).and_then(EncryptSetting::from_byte)
        };
        match (setting(&self.client_prelogin), setting(&self.server_prelogin)) {
            (Some(c), Some(s)) => negotiated_encryption(c, s).is_none(),
            _ => false,
        }
    }

    /// The side and kind ("FIN"/"RST") and time of the first close.
    fn first_close(&self) -> Option<(Side, &'static str, Timestamp)> {
        match (self.first_fin, self.first_rst) {
            (Some((fs, ft)), Some((rs, rt))) => {
                if rt < ft {
                    Some((rs, "RST", rt))
                } else {
                    Some((fs, "FIN", ft))
                }
            }
            (Some((s, t)), None) => Some((s, "FIN", t)),
            (None, Some((s, t))) => Some((s, "RST", t)),
            (None, None) => None,
        }
    }

    /// Primer §4, most specific first. Called only for connections that ended before
    /// `established` with something to say (closed, or timed out).
    fn failure_reason(&self, cause: EndCause, known_cert_hash: Option<&str>) -> (Reason, String) {
        let close = self.first_close();
        let generic = |what: &str| -> (Reason, String) {
            match close {
                Some((side, "RST", _)) => (Reason::Reset, format!("{side} RST {what}")),
                Some((side, _, _)) => (Reason::Closed, format!("{side} FIN {what}")),
                None => (Reason::IdleTimeout, format!("no packet for the idle timeout {what}")),
            }
        };
        let after = |ts: Timestamp| -> String {
            match self.last_event {
                Some((side, what, t)) => {
                    format!("{} after the {}'s {}", ms_text(ts.since(t)), side, what)
                }
                None => String::new(),
            }
        };
        let close_text = |c: (Side, &'static str, Timestamp)| -> String {
            format!("{} {} {}", c.0, c.1, after(c.2))
        };

        // No TCP connection.
        if self.stage == Stage::Syn {
            if let Some((Side::Server, _)) = self.first_rst {
                return (Reason::Refused, "server RST answered the SYN".into());
            }
            return (Reason::NoResponse, "SYN never answered".into());
        }
        if cause == EndCause::IdleTimeout && close.is_none() {
            return (
                Reason::IdleTimeout,
                format!("handshake stalled at {}: no packet for the idle timeout", self.stage),
            );
        }
        let Some(c) = close else {
            return generic("");
        };
        let (close_side, close_kind, close_ts) = c;

        // TDS 8.0 strict: ClientHello first, the server answered with no TLS at all.
        let tls = self.tls.as_deref();
        if self.mode == Mode::Tds8Strict {
            let server_tls = tls.is_some_and(|t| t.server_hello.is_some() || t.alerts.iter().any(|a| a.0 == Side::Server));
            if !server_tls && (self.server_payload || close_side == Side::Server) {
                return (
                    Reason::StrictMismatch,
                    format!(
                        "TDS 8.0 client (ClientHello first) and the server did not answer in TLS; {}",
                        close_text(c)
                    ),
                );
            }
        }
        // PRELOGIN sent, the server answered TLS instead of PRELOGIN: a strict-only server.
        if self.mode == Mode::Tds7 && self.server_prelogin.is_none() {
            if let Some(t) = tls {
                if t.client_hello.is_none() && t.alerts.iter().any(|a| a.0 == Side::Server) {
                    return (
                        Reason::StrictMismatch,
                        "PRELOGIN to a server that answered in TLS (TDS 8.0 strict only)".into(),
                    );
                }
            }
        }

        if self.stage == Stage::Prelogin {
            if self.encryption_mismatch() {
                let c_set = self.client_prelogin.as_ref().and_then(|p| p.encryption);
                let s_set = self.server_prelogin.as_ref().and_then(|p| p.encryption);
                return (
                    Reason::EncryptionMismatch,
                    format!(
                        "client ENCRYPT_{} vs server ENCRYPT_{}; {}",
                        enc_name(c_set),
                        enc_name(s_set),
                        close_text(c)
                    ),
                );
            }
            if self.server_prelogin.is_none() {
                return generic(&format!("{}, no PRELOGIN response", after(close_ts)));
            }
            return generic(&after(close_ts));
        }

        if self.stage == Stage::TlsHandshake {
            if let Some(t) = tls {
                return self.tls_failure(t, c, known_cert_hash, &close_text);
            }
        }

        if self.stage == Stage::Login {
            if let Some(login) = &self.login {
                if let Some((number, state, class)) = login.error {
                    return (
                        Reason::LoginFailed,
                        format!("login ERROR {number} (state {state}, class {class}); {}", close_text(c)),
                    );
                }
                if !login.login7_clear
                    && login.answered
                    && close_side == Side::Server
                    && self.encryption() == Encryption::Full
                {
                    return (
                        Reason::LoginFailed,
                        format!(
                            "encrypted login answered, then server {close_kind} with no request \
                             from the client (login responses are encrypted: error number hidden)"
                        ),
                    );
                }
            }
        }
        generic(&after(close_ts))
    }

    fn tls_failure(
        &self,
        t: &TlsState,
        c: (Side, &'static str, Timestamp),
        known_cert_hash: Option<&str>,
        close_text: &dyn Fn((Side, &'static str, Timestamp)) -> String,
    ) -> (Reason, String) {
        let (close_side, close_kind, _) = c;
        let suite = t.server_hello.map(|h| tls::suite_name(h.suite));
        let suite_note = suite.as_deref().map(|s| format!("; suite {s}")).unwrap_or_default();
        let client_max = t.client_hello.as_ref().map(|h| h.max_version);
        if let Some((side, desc)) = t.first_handshake_alert {
            let desc_name = desc.map(tls::alert_name).unwrap_or_else(|| "encrypted".into());
            let alert_text = format!("{side} alert {desc_name}");
            if side == Side::Server && t.server_hello.is_none() {
                return match desc {
                    Some(70) => (
                        Reason::NoCommonTlsVersion,
                        format!(
                            "{alert_text} after the ClientHello (client offers up to {})",
                            client_max.map(tls::version_name).unwrap_or_default()
                        ),
                    ),
                    Some(40) | Some(71) => (
                        Reason::NoCommonCipher,
                        format!("{alert_text} after the ClientHello, no ServerHello"),
                    ),
                    _ => (Reason::TlsAlert, format!("{alert_text} after the ClientHello")),
                };
            }
            if side == Side::Server && t.client_key_exchange && !t.ccs[Side::Server.index()] {
                return self.key_exchange_failure(t, format!("{alert_text} {}", self.after_client_finished(t)), &suite_note);
            }
            if side == Side::Client {
                return match desc {
                    Some(42..=46) | Some(48) | Some(112) | None => (
                        Reason::CertificateRejected,
                        format!("{alert_text} after the server's certificate{}", self.certificate_doubts(t)),
                    ),
                    Some(70) => (Reason::NoCommonTlsVersion, format!("{alert_text} after the ServerHello")),
                    _ => (Reason::TlsAlert, format!("{alert_text}{suite_note}")),
                };
            }
            return (Reason::TlsAlert, format!("{alert_text}{suite_note}"));
        }
        if t.server_hello.is_none() {
            if close_side == Side::Server {
                if let Some(hash) = known_cert_hash.filter(|h| is_weak_signature_hash(h)) {
                    return (
                        Reason::WeakCertificateSignature,
                        format!(
                            "server {close_kind} right after the ClientHello; its certificate (seen on \
                             another connection) is signed with {hash}"
                        ),
                    );
                }
                if client_max.is_some_and(|v| v < tls::TLS12) {
                    return (
                        Reason::NoCommonTlsVersion,
                        format!(
                            "server {close_kind} right after a ClientHello offering at most {}",
                            client_max.map(tls::version_name).unwrap_or_default()
                        ),
                    );
                }
            }
            let reason = if close_kind == "RST" { Reason::Reset } else { Reason::Closed };
            return (reason, format!("{}, no ServerHello", close_text(c)));
        }
        if close_side == Side::Server && t.client_key_exchange && !t.ccs[Side::Server.index()] {
            return self.key_exchange_failure(
                t,
                format!("server {close_kind} {}", self.after_client_finished(t)),
                &suite_note,
            );
        }
        let server_flight_done = t.server_hello_done || t.server_flight;
        if close_side == Side::Client && server_flight_done && !t.client_key_exchange && !t.finished[0] {
            return (
                Reason::CertificateRejected,
                format!(
                    "client {close_kind} right after the server's certificate flight{}",
                    self.certificate_doubts(t)
                ),
            );
        }
        let reason = if close_kind == "RST" { Reason::Reset } else { Reason::Closed };
        (reason, format!("{}{suite_note}", close_text(c)))
    }

    fn after_client_finished(&self, t: &TlsState) -> String {
        let at = self.first_close().map(|c| c.2);
        match (t.t_client_finished, at) {
            (Some(f), Some(at)) => format!("{} after the client's Finished", ms_text(at.since(f))),
            _ => "after the client's key exchange".into(),
        }
    }

    fn key_exchange_failure(&self, t: &TlsState, what: String, suite_note: &str) -> (Reason, String) {
        let dh = t.dh_bits.map(|b| format!(", DH {b} bits")).unwrap_or_default();
        if t.kx() == Some(KeyExchange::Dhe) {
            (
                Reason::DheKeyExchangeFailure,
                format!("{what} instead of its ChangeCipherSpec{suite_note}{dh}"),
            )
        } else {
            (Reason::KeyExchangeFailure, format!("{what} instead of its ChangeCipherSpec{suite_note}"))
        }
    }

    /// What a validating driver would object to in the certificate, when it was visible.
    fn certificate_doubts(&self, t: &TlsState) -> String {
        let Some(cert) = t.certificate.as_deref() else {
            return String::new();
        };
        let mut doubts = Vec::new();
        let now = (self.first_seen.0 / 1_000_000_000) as i64;
        if now > cert.not_after {
            doubts.push("expired".to_string());
        } else if now < cert.not_before {
            doubts.push("not yet valid".to_string());
        }
        if let Some(sni) = t.client_hello.as_ref().and_then(|h| h.sni.as_deref()) {
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
        if let Some(h) = cert.signature_hash {
            if is_weak_signature_hash(h) || h == "sha1" {
                doubts.push(format!("signed with {h}"));
            }
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
        if self.not_tds {
            return None;
        }
        let last_seen = self.last_seen.max(info.last_seen);
        let midstream = !self.from_start
            && self.client_prelogin.is_none()
            && self.login.as_ref().is_none_or(|l| !l.login7)
            && self.mode != Mode::Tds8Strict;
        let still_open = matches!(cause, EndCause::EndOfInput) && !self.closed();
        let established = self.stage == Stage::Established;
        let probe = !self.client_started && self.stage == Stage::Connected && !self.server_payload
            && matches!(self.first_close(), Some((Side::Client, _, _)));

        let (outcome, reason, evidence) = if midstream {
            let why = if established || self.midstream_traffic {
                "joined mid-stream: requests and responses seen, the handshake was not"
            } else {
                "joined mid-stream: no SYN, PRELOGIN or LOGIN7 seen"
            };
            (Outcome::Unknown, None, why.to_string())
        } else if still_open {
            (
                Outcome::Unknown,
                None,
                format!("still open at {} when the capture ended", self.stage),
            )
        } else if established {
            (Outcome::Established, None, self.established_evidence())
        } else if self.blind {
            (
                Outcome::Unknown,
                None,
                format!("bytes lost at {}: the outcome cannot be told", self.stage),
            )
        } else if probe {
            (
                Outcome::Failed,
                Some(Reason::Closed),
                "client closed before sending any TDS byte (TCP probe or port scan)".to_string(),
            )
        } else {
            let (reason, text) = self.failure_reason(cause, known_cert_hash);
            (Outcome::Failed, Some(reason), text)
        };

        let tls = self.tls_facts();
        let login = self.login_facts();
        let durations = self.durations(last_seen);
        let close = CloseFacts {
            first_fin: self.first_fin.map(|f| f.0),
            first_rst: self.first_rst.map(|r| r.0),
            stage: self.close_stage,
            abnormal: self.first_rst.is_some()
                || match self.first_fin {
                    Some((Side::Server, _)) => true,
                    _ => false,
                },
        };
        let cert_not_after_unix =
            self.tls.as_ref().and_then(|t| t.certificate.as_ref()).map(|c| c.not_after);
        let encryption = if midstream { Encryption::Unknown } else { self.encryption() };
        let evidence = if encryption == Encryption::None
            && self.client_prelogin.as_ref().and_then(|p| p.encryption).and_then(EncryptSetting::from_byte)
                .is_some_and(|s| matches!(s, EncryptSetting::On | EncryptSetting::Req))
            && self.login.as_ref().is_some_and(|l| l.login7_clear)
        {
            format!("{evidence}; DOWNGRADE: the client asked for encryption and logged in in clear")
        } else {
            evidence
        };
        Some(Verdict {
            client: info.client,
            server: info.server,
            first_seen: self.first_seen.min(info.first_seen),
            last_seen,
            mode: if midstream { Mode::Unknown } else { self.mode },
            encryption,
            stage: self.stage,
            outcome,
            reason,
            prelogin: self.prelogin_facts(),
            tls,
            login,
            close,
            durations_ms: durations,
            evidence,
            probe,
            cert_not_after_unix,
        })
    }

    fn established_evidence(&self) -> String {
        match &self.login {
            Some(l) if l.ack_version.is_some() => "LOGINACK seen".into(),
            Some(l) if l.answered => {
                "encrypted login answered and the client went on sending requests".into()
            }
            _ => "requests after login".into(),
        }
    }

    fn prelogin_facts(&self) -> PreloginFacts {
        let version = |p: &Prelogin| {
            p.version.map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}"))
        };
        let enc = |p: &Prelogin| p.encryption.and_then(EncryptSetting::from_byte).map(|e| e.as_str());
        let client = self.client_prelogin.as_deref();
        let server = self.server_prelogin.as_deref();
        PreloginFacts {
            client_version: client.and_then(version),
            client_encryption: client.and_then(enc),
            server_version: server.and_then(version),
            server_encryption: server.and_then(enc),
            mars: client.and_then(|p| p.mars).map(|m| m == 1),
            instance: client.and_then(|p| p.instance.clone()).filter(|s| !s.is_empty()),
        }
    }

    fn tls_facts(&self) -> TlsFacts {
        let Some(t) = self.tls.as_deref() else {
            return TlsFacts::default();
        };
        let ch = t.client_hello.as_deref();
        let sh = t.server_hello;
        TlsFacts {
            client_max_version: ch.map(|h| tls::version_name(h.max_version)),
            client_min_version: ch.map(|h| tls::version_name(h.min_version)),
            client_suites: ch.map(|h| h.suites.iter().map(|&s| tls::suite_name(s)).collect()),
            dhe_offered: ch.map(|h| h.dhe_offered),
            sni: ch.and_then(|h| h.sni.clone()),
            alpn: ch.filter(|h| !h.alpn.is_empty()).map(|h| h.alpn.clone()),
            ja4: ch.map(|h| h.ja4.clone()),
            version: sh.map(|h| tls::version_name(h.version)),
            suite: sh.map(|h| tls::suite_name(h.suite)),
            kx: t.kx().map(KeyExchange::as_str),
            dh_bits: t.dh_bits,
            completed: if ch.is_some() { Some(t.completed) } else { None },
            certificate: t.certificate.as_deref().map(|c| CertificateFacts {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                signature_algorithm: c.signature_algorithm.clone(),
                key_type: c.key_type.clone(),
                key_bits: c.key_bits,
                not_before: crate::verdict::format_unix_secs(c.not_before),
                not_after: crate::verdict::format_unix_secs(c.not_after),
            }),
            alerts: t
                .alerts
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
        let Some(l) = self.login.as_deref() else {
            return LoginFacts::default();
        };
        let result = if !l.login7 {
            None
        } else if l.ack_version.is_some() || self.stage == Stage::Established {
            Some(if l.ack_version.is_some() { LoginResult::Ack } else { LoginResult::Unknown })
        } else if l.error.is_some() {
            Some(LoginResult::Error)
        } else {
            Some(LoginResult::Unknown)
        };
        LoginFacts {
            result,
            error_number: l.error.map(|e| e.0),
            tds_version: l.ack_version.or(l.tds_version).map(tds::tds_version_name),
        }
    }

    fn durations(&self, last_seen: Timestamp) -> Durations {
        let ms = |a: Timestamp, b: Timestamp| Some(b.since(a) as f64 / 1e6);
        let tls = self.tls.as_deref();
        let login = self.login.as_deref();
        Durations {
            prelogin: self.t_prelogin_response.and_then(|t| ms(self.first_seen, t)),
            tls_handshake: tls.and_then(|t| match (t.t_client_hello, t.t_completed) {
                (Some(a), Some(b)) => ms(a, b),
                _ => None,
            }),
            login: login.and_then(|l| match (l.t_login7, l.t_answer) {
                (Some(a), Some(b)) => ms(a, b),
                _ => None,
            }),
            total: ms(self.first_seen, last_seen),
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

fn enc_name(raw: Option<u8>) -> &'static str {
    raw.and_then(EncryptSetting::from_byte).map(|e| e.as_str()).unwrap_or("?")
}

/// "2 ms", "0.3 ms", "1.2 s".
fn ms_text(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
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
    }

    impl Run {
        fn new(from_syn: bool) -> Self {
            let info = info(from_syn);
            Run { m: Handshake::new(info.first_seen, &info), t: info.first_seen.0, info }
        }
        fn ts(&mut self) -> Timestamp {
            self.t += 1_000_000;
            Timestamp(self.t)
        }
        fn tcp(&mut self, ev: TcpEvent) -> &mut Self {
            let ts = self.ts();
            self.m.on_tcp(ts, ev);
            self
        }
        fn tds(&mut self, side: Side, ev: TdsEvent<'static>) -> &mut Self {
            let ts = self.ts();
            self.m.on_tcp(ts, TcpEvent::Data(side));
            self.m.on_tds(ts, side, &ev);
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
            let p = |e| Prelogin { encryption: Some(e), version: Some((16, 0, 600, 0)), ..Default::default() };
            self.tds(C, TdsEvent::Prelogin(p(client))).tds(S, TdsEvent::Prelogin(p(server)))
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
            self.tls(C, TlsEvent::ClientHello(Box::new(hello)))
        }
        fn server_hello(&mut self, version: u16, suite: u16) -> &mut Self {
            let group = if version == tls::TLS13 { Some(0x001d) } else { None };
            self.tls(S, TlsEvent::ServerHello(ServerHello { version, suite, hello_retry: false, key_share_group: group }))
        }
        /// ServerHello … ServerHelloDone, client key exchange, CCS and Finished (TLS 1.2).
        fn tls12_until_client_finished(&mut self, suite: u16) -> &mut Self {
            self.client_hello(tls::TLS12)
                .server_hello(tls::TLS12, suite)
                .tls(S, TlsEvent::Certificate(Box::new(Certificate { signature_hash: Some("sha256"), ..Default::default() })))
                .tls(S, TlsEvent::ServerKeyExchange { dh_bits: Some(2048), curve: None })
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
            let m = std::mem::replace(&mut self.m, Handshake::new(self.info.first_seen, &self.info));
            m.finish(&self.info, cause, None).expect("a TDS verdict")
        }
        fn finish_known(&mut self, hash: &str) -> Verdict {
            let m = std::mem::replace(&mut self.m, Handshake::new(self.info.first_seen, &self.info));
            m.finish(&self.info, EndCause::Closed, Some(hash)).expect("a TDS verdict")
        }
    }

    const ECDHE: u16 = 0xc02f; // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    const DHE: u16 = 0x009f; // TLS_DHE_RSA_WITH_AES_256_GCM_SHA384

    #[test]
    fn login_only_tls12_established_client_closes() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).tls12_complete(ECDHE).app(C);
        r.tds(S, TdsEvent::LoginAck { tds_version: 0x7400_0004 });
        assert!(r.m.done());
        r.tds(C, TdsEvent::Message { packet_type: 0x01 }).tcp(TcpEvent::Fin(C)).tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!((v.outcome, v.stage, v.reason), (Outcome::Established, Stage::Established, None));
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
        assert_eq!(v.prelogin.server_version.as_deref(), Some("16.0.600.0"));
        assert!(v.durations_ms.tls_handshake.is_some_and(|d| d > 0.0));
        assert!(v.durations_ms.login.is_some_and(|d| d > 0.0));
    }

    #[test]
    fn full_encryption_established_by_requests_after_the_answer() {
        let mut r = Run::new(true);
        r.connect().prelogin(1, 0).tls12_complete(ECDHE).app(C).app(S);
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
        r.connect().prelogin(0, 0).tls12_until_client_finished(DHE).tcp(TcpEvent::Rst { side: S, ttl: 64 });
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.outcome, Outcome::Failed);
        assert_eq!(v.reason, Some(Reason::DheKeyExchangeFailure));
        assert_eq!(v.stage, Stage::TlsHandshake);
        assert_eq!(v.close.stage, Some(Stage::TlsHandshake));
        assert_eq!(v.tls.kx, Some("dhe"));
        assert_eq!(v.tls.dh_bits, Some(2048));
        assert_eq!(v.tls.completed, Some(false));
        assert!(v.evidence.contains("server RST 1.0 ms after the client's Finished"), "{}", v.evidence);
        assert!(v.evidence.contains("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"), "{}", v.evidence);
    }

    #[test]
    fn ecdhe_reset_after_client_finished_is_key_exchange_failure() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).tls12_until_client_finished(ECDHE).tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::KeyExchangeFailure));
        assert!(v.close.abnormal, "server FIN first is abnormal");
    }

    #[test]
    fn protocol_version_alert_is_no_common_tls_version() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS10);
        r.tls(S, TlsEvent::Alert { level: Some(2), description: Some(70) }).tcp(TcpEvent::Fin(S));
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
        r.tls(S, TlsEvent::Alert { level: Some(2), description: Some(40) }).tcp(TcpEvent::Fin(S));
        assert_eq!(r.finish(EndCause::Closed).reason, Some(Reason::NoCommonCipher));
    }

    #[test]
    fn silent_close_after_client_hello() {
        // An old client: the version is the likely cause.
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS10).tcp(TcpEvent::Fin(S));
        assert_eq!(r.finish(EndCause::Closed).reason, Some(Reason::NoCommonTlsVersion));
        // A TLS 1.2 client: nothing specific can be said…
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12).tcp(TcpEvent::Rst { side: S, ttl: 64 });
        assert_eq!(r.finish(EndCause::Closed).reason, Some(Reason::Reset));
        // … unless the server's certificate was seen elsewhere with a weak hash.
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12).tcp(TcpEvent::Fin(S));
        assert_eq!(r.finish_known("sha512").reason, Some(Reason::WeakCertificateSignature));
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12).tcp(TcpEvent::Fin(S));
        assert_eq!(r.finish_known("sha256").reason, Some(Reason::Closed));
    }

    #[test]
    fn certificate_rejected_by_alert_or_close() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12).server_hello(tls::TLS12, ECDHE);
        r.tls(S, TlsEvent::ServerHelloDone).tls(C, TlsEvent::Alert { level: Some(2), description: Some(48) });
        r.tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.reason, Some(Reason::CertificateRejected));
        assert!(v.evidence.contains("unknown_ca"), "{}", v.evidence);

        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12).server_hello(tls::TLS12, ECDHE);
        r.tls(S, TlsEvent::ServerHelloDone).tcp(TcpEvent::Rst { side: C, ttl: 64 });
        assert_eq!(r.finish(EndCause::Closed).reason, Some(Reason::CertificateRejected));

        // TLS 1.3: the client's encrypted alert has the size of an alert, not of a Finished.
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS13).server_hello(tls::TLS13, 0x1301).app(S);
        r.tls(C, TlsEvent::ApplicationData { len: 19 }).tcp(TcpEvent::Fin(C));
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
        assert!(v.evidence.contains("ENCRYPT_NOT_SUP vs server ENCRYPT_REQ"), "{}", v.evidence);
    }

    #[test]
    fn client_asking_for_encryption_but_logging_in_clear_is_a_downgrade() {
        let mut r = Run::new(true);
        r.connect().prelogin(1, 2).tds(C, TdsEvent::Login7 { tds_version: 0x7400_0004 });
        r.tds(S, TdsEvent::LoginAck { tds_version: 0x7400_0004 }).tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!(v.outcome, Outcome::Established);
        assert_eq!(v.encryption, Encryption::None);
        assert!(v.evidence.contains("DOWNGRADE"), "{}", v.evidence);
    }

    #[test]
    fn strict_success_and_mismatch() {
        let mut r = Run::new(true);
        r.connect().client_hello(tls::TLS13).server_hello(tls::TLS13, 0x1301).app(S);
        r.tls(C, TlsEvent::ApplicationData { len: 53 }); // Finished
        r.app(C).app(S); // PRELOGIN inside TLS
        r.app(C).app(S); // LOGIN7 and its answer
        assert!(!r.m.done());
        r.app(C);
        assert!(r.m.done());
        r.tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!((v.mode, v.encryption, v.outcome), (Mode::Tds8Strict, Encryption::Strict, Outcome::Established));
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
        r.tds(S, TdsEvent::Error { number: 18456, state: 1, class: 14 }).tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!((v.outcome, v.reason, v.stage), (Outcome::Failed, Some(Reason::LoginFailed), Stage::Login));
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
        assert_eq!((v.outcome, v.reason, v.stage), (Outcome::Failed, Some(Reason::Closed), Stage::Connected));
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
        r.tds(S, TdsEvent::LoginAck { tds_version: 0x7400_0004 });
        let v = r.finish(EndCause::EndOfInput);
        assert_eq!((v.outcome, v.stage, v.reason), (Outcome::Unknown, Stage::Established, None));
        assert_eq!(v.close, CloseFacts::default());

        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12);
        let v = r.finish(EndCause::EndOfInput);
        assert_eq!((v.outcome, v.reason), (Outcome::Unknown, None));
    }

    #[test]
    fn joined_mid_stream() {
        let mut r = Run::new(false);
        r.tds(C, TdsEvent::Message { packet_type: 0x03 }).tds(S, TdsEvent::Message { packet_type: 0x04 });
        assert!(r.m.done());
        r.tcp(TcpEvent::Fin(C));
        let v = r.finish(EndCause::Closed);
        assert_eq!((v.outcome, v.mode, v.encryption), (Outcome::Unknown, Mode::Unknown, Encryption::Unknown));
    }

    #[test]
    fn lost_bytes_make_the_outcome_unknown() {
        let mut r = Run::new(true);
        r.connect().prelogin(0, 0).client_hello(tls::TLS12).tcp(TcpEvent::Gap(S)).tcp(TcpEvent::Fin(S));
        let v = r.finish(EndCause::Closed);
        assert_eq!((v.outcome, v.reason), (Outcome::Unknown, None));
    }

    #[test]
    fn non_tds_flows_give_no_verdict() {
        let mut r = Run::new(true);
        r.connect().tds(C, TdsEvent::LegacyLogin);
        assert!(r.m.done());
        let m = std::mem::replace(&mut r.m, Handshake::new(r.info.first_seen, &r.info));
        assert!(m.finish(&r.info, EndCause::Closed, None).is_none());

        let mut r = Run::new(false);
        r.tds(S, TdsEvent::NotTds);
        let m = std::mem::replace(&mut r.m, Handshake::new(r.info.first_seen, &r.info));
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

