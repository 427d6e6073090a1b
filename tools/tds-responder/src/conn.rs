//! One connection from first byte to close (PRELOGIN and the negotiation table, the TLS handshake
//! wrapped or strict, LOGIN7, the login answer, batches, faults), its one-line log record, and the
//! accept loop that serves connections concurrently within a time bound.

use crate::config::{Config, Encryption, Fault, LoginResult, Result};
use crate::wire::{self, Fired, Triggers, Wire};
use openssl::ssl::{Ssl, SslContext, SslStream};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tdsgen::rng::Rng;
use tdsgen::tds;

/// How long the responder waits for the peer to close after it sent its FIN or a login error.
const LINGER: Duration = Duration::from_secs(2);
/// SQL Server 2022 (16.0.1000), as its PRELOGIN VERSION and LOGINACK carry it.
const SERVER_VERSION: [u8; 6] = [16, 0, 0x03, 0xe8, 0, 0];

/// What the two PRELOGIN answers give ([MS-TDS] table in the primer §1), from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    None,
    LoginOnly,
    Full,
    /// The server closes right after its PRELOGIN response.
    ServerCloses,
}

pub fn negotiate(client: u8, server: Encryption) -> Negotiated {
    use Negotiated::*;
    match (client & 0x0f, server) {
        (2, Encryption::On | Encryption::Req) => ServerCloses,
        (2, _) | (_, Encryption::NotSup) => None,
        (0, Encryption::Off) => LoginOnly,
        _ => Full,
    }
}

/// The log record of one connection. It never holds user names, passwords or SQL text.
#[derive(Debug, Default, Clone)]
pub struct ConnLog {
    pub id: u64,
    pub scenario: String,
    pub peer: String,
    pub mode: &'static str,
    pub client_encryption: Option<u8>,
    pub encryption: &'static str,
    pub tls_version: Option<String>,
    pub suite: Option<String>,
    pub alpn: Option<String>,
    pub raw_records: u32,
    pub wrapped_packets: u32,
    pub login: &'static str,
    pub batches: u32,
    pub fault: String,
    pub fired: Option<&'static str>,
    pub end: String,
}

impl fmt::Display for ConnLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "conn={} scenario={} peer={} mode={} client_enc={} encryption={} tls={} suite={} alpn={} \
             wrapped_packets={} raw_records={} login={} batches={} fault={} fired={} end={:?}",
            self.id,
            self.scenario,
            self.peer,
            self.mode,
            self.client_encryption
                .map_or_else(|| "-".into(), |b| format!("{b:#04x}")),
            self.encryption,
            o(&self.tls_version),
            o(&self.suite),
            o(&self.alpn),
            self.wrapped_packets,
            self.raw_records,
            self.login,
            self.batches,
            self.fault,
            self.fired.unwrap_or("-"),
            self.end,
        )
    }
}

/// Everything the connection threads share.
pub struct Shared {
    pub config: Config,
    pub context: SslContext,
    /// No connection lives past this: the login phase closes (FIN) when it passes.
    pub deadline: Option<Instant>,
}

impl Shared {
    pub fn new(config: Config) -> Result<Shared> {
        let context = config.tls()?.context;
        Ok(Shared {
            config,
            context,
            deadline: None,
        })
    }
}

/// Connections served at the same time, at most; more wait in the listen backlog.
const MAX_CONCURRENT: usize = 512;

/// A read/write stream the login phase runs on: the bare socket or the TLS stream.
trait Rw: Read + Write {}
impl<T: Read + Write> Rw for T {}

/// Serves one connection and returns its log record.
pub fn handle(tcp: TcpStream, sh: &Shared, id: u64) -> ConnLog {
    let cfg = &sh.config;
    let mut log = ConnLog {
        id,
        scenario: cfg.scenario.clone(),
        peer: tcp
            .peer_addr()
            .map_or_else(|_| "-".into(), |a| a.to_string()),
        mode: if cfg.strict { "tds8_strict" } else { "tds7" },
        encryption: "-",
        login: "-",
        fault: cfg.fault.to_string(),
        ..ConnLog::default()
    };
    let timeout = Duration::from_millis(cfg.io_timeout_ms.max(1));
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    log.end = match run(tcp, sh, id, &mut log) {
        Ok(end) => end,
        Err(e) => format!("error: {e}"),
    };
    log
}

fn triggers(cfg: &Config, id: u64) -> Triggers {
    let dhe = match cfg.fault {
        Fault::DheResetFraction(f) => {
            let draw = Rng::new(cfg.seed).fork(id).below(1 << 32) as f64;
            draw < f * (1u64 << 32) as f64
        }
        _ => false,
    };
    Triggers {
        fin_after_client_hello: cfg.fault == Fault::FinAfterClientHello,
        fin_after_server_hello: cfg.fault == Fault::FinAfterServerHello,
        fin_after_key_exchange: cfg.fault == Fault::FinAfterClientKeyExchange,
        rst_after_key_exchange: cfg.fault == Fault::RstAfterClientKeyExchange,
        rst_after_dhe_finished: dhe,
    }
}

/// Runs the TLS handshake as server over `wire`; on failure closes as the fault said (RST, or FIN
/// and drain) or, without a fault, with FIN after the alert OpenSSL sent.
fn handshake(
    wire: Wire,
    sh: &Shared,
    log: &mut ConnLog,
) -> std::result::Result<SslStream<Wire>, String> {
    let ssl = Ssl::new(&sh.context).map_err(|e| format!("ssl: {e}"))?;
    match ssl.accept(wire) {
        Ok(mut s) => {
            log.tls_version = Some(s.ssl().version_str().to_string());
            log.suite = s.ssl().current_cipher().map(|c| c.name().to_string());
            log.alpn = s
                .ssl()
                .selected_alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let w = s.get_mut();
            log.raw_records = w.raw_records;
            log.wrapped_packets = w.wrapped_packets;
            w.bare();
            Ok(s)
        }
        Err(e) => {
            let detail = e.to_string();
            let Some(mut mid) = (match e {
                openssl::ssl::HandshakeError::Failure(m)
                | openssl::ssl::HandshakeError::WouldBlock(m) => Some(m),
                openssl::ssl::HandshakeError::SetupFailure(_) => None,
            }) else {
                return Err(format!("tls setup failed: {detail}"));
            };
            let w = mid.get_mut();
            log.raw_records = w.raw_records;
            log.wrapped_packets = w.wrapped_packets;
            // Version and suite only once this side has sent its ServerHello.
            if let Some(id) = w.suite {
                log.tls_version = Some(mid.ssl().version_str().to_string());
                log.suite = Some(
                    mid.ssl()
                        .current_cipher()
                        .map_or_else(|| format!("{id:#06x}"), |c| c.name().to_string()),
                );
            }
            match mid.get_ref().fired {
                Some(Fired::Rst) => {
                    log.fired = Some("rst");
                    Err("server reset the handshake (fault)".into())
                }
                Some(Fired::Fin) => {
                    log.fired = Some("fin");
                    wire::drain(&mid.get_ref().tcp, LINGER);
                    Err("server closed the handshake (fault)".into())
                }
                None => {
                    wire::fin_and_drain(&mid.get_ref().tcp, LINGER);
                    Err(format!("handshake failed: {}", one_line(&detail)))
                }
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(tcp: TcpStream, sh: &Shared, id: u64, log: &mut ConnLog) -> io::Result<String> {
    let cfg = &sh.config;
    let mut first = [0u8; 1];
    if tcp.peek(&mut first)? == 0 {
        return Ok("client closed before any byte".into());
    }
    let tls_first = first[0] == 0x16;
    if cfg.strict != tls_first {
        log.encryption = "-";
        wire::fin_and_drain(&tcp, LINGER);
        return Ok(if cfg.strict {
            "strict mismatch: PRELOGIN to a strict server, server closed".into()
        } else {
            "strict mismatch: TLS first to a TDS 7.x server, server closed".into()
        });
    }
    if cfg.strict {
        log.encryption = "strict";
        let mut wire = Wire::new(tcp, false, false, cfg.packet_size);
        wire.triggers = triggers(cfg, id);
        let mut s = match handshake(wire, sh, log) {
            Ok(s) => s,
            Err(end) => return Ok(end),
        };
        let Some((ty, payload)) = wire::read_message(&mut s)? else {
            return Ok("client closed after the TLS handshake".into());
        };
        if ty != wire::TYPE_PRELOGIN {
            return Ok(format!("expected PRELOGIN inside TLS, got type {ty:#04x}"));
        }
        log.client_encryption = prelogin_encryption(&payload);
        write_message(&mut s, wire::TYPE_RESPONSE, &prelogin_response(cfg), cfg)?;
        let Some(msg) = wire::read_message(&mut s)? else {
            return Ok("client closed after PRELOGIN".into());
        };
        let tcp = s.get_ref().tcp.try_clone()?;
        return login_phase(&mut s, &tcp, msg, sh, log);
    }

    let mut tcp = tcp;
    let Some((ty, payload)) = wire::read_message(&mut tcp)? else {
        return Ok("client closed before PRELOGIN".into());
    };
    if ty == wire::TYPE_LOGIN7 {
        log.encryption = "none";
        let probe = tcp.try_clone()?;
        return login_phase(&mut tcp, &probe, (ty, payload), sh, log);
    }
    if ty != wire::TYPE_PRELOGIN {
        wire::fin_and_drain(&tcp, LINGER);
        return Ok(format!(
            "unexpected first message type {ty:#04x}, server closed"
        ));
    }
    let client = prelogin_encryption(&payload).unwrap_or(0);
    log.client_encryption = Some(client);
    write_message(&mut tcp, wire::TYPE_RESPONSE, &prelogin_response(cfg), cfg)?;
    let neg = negotiate(client, cfg.encryption);
    log.encryption = match neg {
        Negotiated::None => "none",
        Negotiated::LoginOnly => "login_only",
        Negotiated::Full => "full",
        Negotiated::ServerCloses => "-",
    };
    match neg {
        Negotiated::ServerCloses => {
            wire::fin_and_drain(&tcp, LINGER);
            Ok("encryption mismatch: server closed after its PRELOGIN response".into())
        }
        Negotiated::None => {
            let Some(msg) = wire::read_message(&mut tcp)? else {
                return Ok("client closed after PRELOGIN".into());
            };
            let probe = tcp.try_clone()?;
            login_phase(&mut tcp, &probe, msg, sh, log)
        }
        Negotiated::LoginOnly | Negotiated::Full => {
            if tcp.peek(&mut first)? == 0 {
                return Ok("client closed after PRELOGIN".into());
            }
            let mut wire = Wire::new(tcp, true, true, cfg.packet_size);
            wire.triggers = triggers(cfg, id);
            let mut s = match handshake(wire, sh, log) {
                Ok(s) => s,
                Err(end) => return Ok(end),
            };
            let Some(msg) = wire::read_message(&mut s)? else {
                return Ok("client closed after the TLS handshake".into());
            };
            let mut tcp = s.get_ref().tcp.try_clone()?;
            if neg == Negotiated::LoginOnly {
                // TLS protected LOGIN7 alone: the answer and all that follows are clear text.
                let probe = tcp.try_clone()?;
                let r = login_phase(&mut tcp, &probe, msg, sh, log);
                drop(s);
                r
            } else {
                login_phase(&mut s, &tcp, msg, sh, log)
            }
        }
    }
}

fn write_message<W: Write + ?Sized>(
    w: &mut W,
    ty: u8,
    payload: &[u8],
    cfg: &Config,
) -> io::Result<()> {
    wire::write_message(w, ty, payload, cfg.packet_size)
}

/// The ENCRYPTION option of a PRELOGIN body, if the option table holds one in bounds.
pub fn prelogin_encryption(p: &[u8]) -> Option<u8> {
    let mut at = 0;
    while let Some(&token) = p.get(at) {
        if token == 0xff {
            return None;
        }
        let e = p.get(at..at + 5)?;
        let off = usize::from(u16::from_be_bytes([e[1], e[2]]));
        let len = usize::from(u16::from_be_bytes([e[3], e[4]]));
        if token == 0x01 && len >= 1 {
            return p.get(off).copied();
        }
        at += 5;
    }
    None
}

fn prelogin_response(cfg: &Config) -> Vec<u8> {
    tds::prelogin_payload(&tds::Prelogin {
        version: SERVER_VERSION,
        encryption: cfg.encryption.byte(),
        instopt: &[0],
        thread_id: None,
        mars: 0,
        trace_id: None,
    })
}

const KNOWN_TDS: [u32; 7] = [
    0x7000_0000,
    0x7100_0000,
    0x7100_0001,
    0x7209_0002,
    0x730a_0003,
    0x730b_0003,
    0x7400_0004,
];

fn u32_le(p: &[u8], at: usize) -> Option<u32> {
    let b = p.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn login_ack(login7: &[u8]) -> Vec<u8> {
    let version = u32_le(login7, 4)
        .filter(|v| KNOWN_TDS.contains(v))
        .unwrap_or(0x7400_0004);
    let packet = u32_le(login7, 8)
        .filter(|p| (512..=32_767).contains(p))
        .unwrap_or(4096);
    let info = |number, text| tds::Message {
        number,
        state: 1,
        class: 0,
        text,
        server: "tds-responder",
        procedure: "",
        line: 1,
    };
    let mut out = Vec::with_capacity(400);
    tds::push_envchange(&mut out, 1, "master", "master");
    tds::push_info(
        &mut out,
        &info(5701, "Changed database context to 'master'."),
    );
    // SQL collation Latin1_General_CI_AS: ENVCHANGE type 7 with B_VARBYTE values.
    out.extend_from_slice(&[0xe3, 8, 0, 7, 5, 0x09, 0x04, 0xd0, 0x00, 0x34, 0]);
    tds::push_envchange(&mut out, 2, "us_english", "");
    tds::push_info(
        &mut out,
        &info(5703, "Changed language setting to us_english."),
    );
    tds::push_loginack(
        &mut out,
        version,
        "Microsoft SQL Server",
        [16, 0, 0x03, 0xe8],
    );
    tds::push_envchange(&mut out, 4, &packet.to_string(), &packet.to_string());
    tds::push_done(&mut out, tds::DONE_FINAL, 0, 0);
    out
}

fn login_error() -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    tds::push_error(
        &mut out,
        &tds::Message {
            number: 18456,
            state: 1,
            class: 14,
            text: "Login failed for user.",
            server: "tds-responder",
            procedure: "",
            line: 1,
        },
    );
    tds::push_done(&mut out, tds::DONE_ERROR, 0, 0);
    out
}

/// The integer of a `SELECT <int>` batch, read from the UCS-2 text after ALL_HEADERS.
pub fn select_int(batch: &[u8]) -> Option<i32> {
    let text = match u32_le(batch, 0) {
        Some(total) if total >= 4 && (total as usize) <= batch.len() => &batch[total as usize..],
        _ => batch,
    };
    let units: Vec<u16> = text
        .chunks_exact(2)
        .take(4096)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16_lossy(&units);
    let s = s.trim().trim_end_matches(';').trim();
    let (kw, rest) = s.split_once(char::is_whitespace)?;
    if !kw.eq_ignore_ascii_case("select") {
        return None;
    }
    rest.trim().parse().ok()
}

/// LOGIN7 → answer → requests until the peer closes (or the idle fault closes first).
/// `tcp` is the socket under `s`, for RST and FIN.
fn login_phase(
    s: &mut dyn Rw,
    tcp: &TcpStream,
    (ty, login7): (u8, Vec<u8>),
    sh: &Shared,
    log: &mut ConnLog,
) -> io::Result<String> {
    let cfg = &sh.config;
    if ty != wire::TYPE_LOGIN7 {
        wire::fin_and_drain(tcp, LINGER);
        return Ok(format!(
            "expected LOGIN7, got type {ty:#04x}; server closed"
        ));
    }
    // The fixed part of LOGIN7 is 86 bytes from TDS 7.0 on, and its Length field covers the record.
    let declared = u32_le(&login7, 0).unwrap_or(0) as usize;
    if login7.len() < 86 || declared < 86 || declared > login7.len() {
        wire::fin_and_drain(tcp, LINGER);
        return Ok("malformed LOGIN7; server closed".into());
    }
    if cfg.fault == Fault::RstAfterLogin7 {
        wire::set_linger_zero(tcp)?;
        log.fired = Some("rst");
        return Ok("server reset after LOGIN7 (fault)".into());
    }
    if cfg.login == LoginResult::Error {
        log.login = "error_18456";
        write_message(s, wire::TYPE_RESPONSE, &login_error(), cfg)?;
        wire::drain(tcp, LINGER);
        return Ok("login error 18456 sent".into());
    }
    log.login = "ack";
    write_message(s, wire::TYPE_RESPONSE, &login_ack(&login7), cfg)?;
    if let Fault::IdleCloseFirst(ms) = cfg.fault {
        tcp.set_read_timeout(Some(Duration::from_millis(ms.max(1))))?;
    }
    loop {
        if sh.deadline.is_some_and(|d| Instant::now() >= d) {
            wire::fin_and_drain(tcp, LINGER);
            return Ok("run time over: server closed".into());
        }
        let msg = match wire::read_message(s) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok("client closed".into()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if let Fault::IdleCloseFirst(_) = cfg.fault {
                    log.fired = Some("fin");
                    wire::fin_and_drain(tcp, LINGER);
                    return Ok("idle: server closed first (fault)".into());
                }
                return Ok("idle timeout".into());
            }
            Err(e) => return Ok(format!("client went away: {}", e.kind())),
        };
        let mut out = Vec::with_capacity(64);
        match msg.0 {
            wire::TYPE_SQL_BATCH => {
                log.batches += 1;
                match select_int(&msg.1) {
                    Some(v) => tds::push_select_int_response(&mut out, v),
                    None => tds::push_done(&mut out, tds::DONE_FINAL, 0, 0),
                }
            }
            wire::TYPE_ATTENTION => tds::push_done(&mut out, 0x0020, 0, 0),
            wire::TYPE_RPC => tds::push_done(&mut out, tds::DONE_FINAL, 0, 0),
            _ => tds::push_done(&mut out, tds::DONE_FINAL, 0, 0),
        }
        write_message(s, wire::TYPE_RESPONSE, &out, cfg)?;
    }
}

/// Limits of one serving run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Stop accepting after this long.
    pub max_seconds: u64,
    /// Stop accepting after this many connections.
    pub max_connections: Option<u64>,
}

/// Accepts connections until a limit is reached, one thread each, and waits for them to end.
/// `on_log` gets one line per connection.
/// Every connection is closed by the responder at the latest one read timeout after the end.
pub fn serve(
    listener: TcpListener,
    mut shared: Shared,
    limits: Limits,
    on_log: Arc<dyn Fn(&ConnLog) + Send + Sync>,
) -> io::Result<u64> {
    listener.set_nonblocking(true)?;
    let end = Instant::now() + Duration::from_secs(limits.max_seconds);
    shared.deadline = Some(end + Duration::from_millis(shared.config.io_timeout_ms));
    let shared = Arc::new(shared);
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut n = 0u64;
    while Instant::now() < end && limits.max_connections.is_none_or(|m| n < m) {
        threads.retain(|t| !t.is_finished());
        if threads.len() >= MAX_CONCURRENT {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match listener.accept() {
            Ok((tcp, _)) => {
                tcp.set_nonblocking(false)?;
                n += 1;
                let (sh, cb, id) = (Arc::clone(&shared), Arc::clone(&on_log), n);
                threads.push(std::thread::spawn(move || cb(&handle(tcp, &sh, id))));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_table() {
        use Encryption::*;
        use Negotiated as N;
        let rows = [
            (0u8, [N::LoginOnly, N::Full, N::None, N::Full]),
            (1, [N::Full, N::Full, N::None, N::Full]),
            (2, [N::None, N::ServerCloses, N::None, N::ServerCloses]),
            (3, [N::Full, N::Full, N::None, N::Full]),
        ];
        for (c, want) in rows {
            for (s, w) in [Off, On, NotSup, Req].into_iter().zip(want) {
                assert_eq!(negotiate(c, s), w, "client {c} server {s:?}");
            }
        }
        assert_eq!(negotiate(0x80, Off), N::LoginOnly);
    }

    #[test]
    fn prelogin_encryption_is_bounded() {
        let p = tds::prelogin_payload(&tds::Prelogin {
            version: [1; 6],
            encryption: 3,
            instopt: &[0],
            thread_id: Some(7),
            mars: 0,
            trace_id: None,
        });
        assert_eq!(prelogin_encryption(&p), Some(3));
        for cut in 0..p.len() {
            let _ = prelogin_encryption(&p[..cut]);
        }
        assert_eq!(prelogin_encryption(&[0x01, 0xff, 0xff, 0, 1]), None);
    }

    #[test]
    fn select_int_reads_batches_with_and_without_headers() {
        assert_eq!(select_int(&tds::sql_batch_payload("SELECT 1")), Some(1));
        assert_eq!(
            select_int(&tds::sql_batch_payload(" select  42 ;")),
            Some(42)
        );
        let bare: Vec<u8> = "SELECT 7"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(select_int(&bare), Some(7));
        assert_eq!(select_int(&tds::sql_batch_payload("SET TEXTSIZE 1")), None);
        assert_eq!(select_int(&[0xff; 3]), None);
    }
}
