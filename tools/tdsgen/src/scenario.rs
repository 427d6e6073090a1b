//! The scenarios: what each kind of connection says on the wire, built once per template from real
//! OpenSSL handshakes, and the verdict it should get, written from what the scenario is (never from
//! tdswatch). A template is the connection's payload bytes plus the script that plays them over TCP;
//! connections reuse templates and differ only in addresses, ports, ISNs and timings.

use crate::tcp::{Delay, Step};
use crate::tds::{self, Login7, Message, Prelogin};
use crate::tls::{self, Flight, HandshakeEnd, Materials, Pair, Profile};
use crate::Side;
use openssl::ssl::SslVersion;
use serde::Serialize;

pub type Result<T> = tls::Result<T>;

/// The kinds of connection the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// TDS 7.4, PRELOGIN OFF/OFF, TLS 1.2 ECDHE protects LOGIN7 only; LOGINACK in clear.
    LoginOnlyTls12,
    /// TDS 7.4, PRELOGIN ON/ON or OFF/REQ, TLS 1.2 ECDHE, everything after the handshake in TLS.
    FullTls12Ecdhe,
    /// As above with TLS_DHE_RSA_WITH_AES_256_GCM_SHA384 on ffdhe2048.
    FullTls12Dhe,
    /// TDS 7.4 full encryption over TLS 1.3.
    FullTls13,
    /// PRELOGIN OFF / NOT_SUP: LOGIN7 and everything else in clear.
    NoEncryption,
    /// TDS 8.0: ClientHello first on TCP with ALPN tds/8.0, TLS 1.3, everything bare.
    Strict,
    /// TLS 1.2 DHE; the server resets right after the client's ClientKeyExchange, CCS, Finished.
    DheFailure,
    /// Client offers TLS 1.0 only, server wants 1.2: protocol_version alert, then server FIN.
    NoCommonTlsVersion,
    /// Login-only TLS 1.2; clear ERROR 18456 state 1 class 14 + DONE; the server closes.
    LoginFailed,
    /// SYN, SYN-ACK, ACK, client FIN: a load balancer's health check.
    TcpProbe,
    /// SYN answered by RST.
    Refused,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::LoginOnlyTls12,
        Scenario::FullTls12Ecdhe,
        Scenario::FullTls12Dhe,
        Scenario::FullTls13,
        Scenario::NoEncryption,
        Scenario::Strict,
        Scenario::DheFailure,
        Scenario::NoCommonTlsVersion,
        Scenario::LoginFailed,
        Scenario::TcpProbe,
        Scenario::Refused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoginOnlyTls12 => "login_only_tls12_ecdhe",
            Scenario::FullTls12Ecdhe => "full_tls12_ecdhe",
            Scenario::FullTls12Dhe => "full_tls12_dhe",
            Scenario::FullTls13 => "full_tls13",
            Scenario::NoEncryption => "no_encryption",
            Scenario::Strict => "tds8_strict",
            Scenario::DheFailure => "dhe_failure",
            Scenario::NoCommonTlsVersion => "no_common_tls_version",
            Scenario::LoginFailed => "login_failed",
            Scenario::TcpProbe => "tcp_probe",
            Scenario::Refused => "refused",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Share of connections out of 100 by default: mostly healthy login-only traffic, as on a
    /// typical estate, with every failure present at a few percent.
    pub fn default_weight(self) -> u32 {
        match self {
            Scenario::LoginOnlyTls12 => 40,
            Scenario::FullTls12Ecdhe => 14,
            Scenario::FullTls12Dhe => 8,
            Scenario::FullTls13 => 8,
            Scenario::NoEncryption => 8,
            Scenario::Strict => 8,
            Scenario::DheFailure => 2,
            Scenario::NoCommonTlsVersion => 2,
            Scenario::LoginFailed => 4,
            Scenario::TcpProbe => 4,
            Scenario::Refused => 2,
        }
    }
}

/// What tdswatch should say about a connection, in the primer's §5 vocabulary. `null` fields are
/// facts the scenario does not have (no ServerHello, no close, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub scenario: &'static str,
    pub variant: u32,
    pub mode: &'static str,
    pub encryption: &'static str,
    pub stage: &'static str,
    pub outcome: &'static str,
    pub reason: Option<&'static str>,
    /// Negotiated version ("TLSv1.2"), from the OpenSSL session that made the bytes.
    pub tls_version: Option<&'static str>,
    /// Negotiated suite, IANA name, from the same session.
    pub suite: Option<&'static str>,
    pub kx: Option<&'static str>,
    pub client_max_version: Option<&'static str>,
    pub alpn: Option<&'static str>,
    pub first_fin: Option<&'static str>,
    pub first_rst: Option<&'static str>,
    /// "ack" or "error" when a login response was sent in clear; "unknown" when it was sent
    /// inside TLS (a passive observer sees that the server answered, not what).
    pub login: Option<&'static str>,
    pub error_number: Option<u32>,
    /// ClientHello messages the client sent (0 or 1).
    pub client_hellos: u32,
}

/// A connection's payload bytes and the script that plays them.
#[derive(Debug, Clone)]
pub struct Template {
    pub scenario: Scenario,
    pub variant: u32,
    pub data: Vec<u8>,
    pub steps: Vec<Step>,
    pub expected: Expected,
}

// Think times (µs) before each flight: what the application or the TLS stack takes.
const CLIENT_PRELOGIN: Delay = (100, 800);
const SERVER_PRELOGIN: Delay = (80, 500);
const CLIENT_TLS_START: Delay = (200, 1200);
const SERVER_TLS_FLIGHT: Delay = (400, 2500);
const CLIENT_KEY_EXCHANGE: Delay = (300, 1500);
const SERVER_FINISH: Delay = (150, 800);
const CLIENT_NEXT: Delay = (60, 400);
const SERVER_LOGIN: Delay = (800, 5000);
const SERVER_QUERY: Delay = (100, 1500);
const CLIENT_CLOSE: Delay = (200, 3000);
const SERVER_ABORT: Delay = (100, 900);
const SERVER_CLOSE_AFTER: Delay = (20, 200);
const PROBE_CLOSE: Delay = (300, 5000);

const PACKET_SIZE: usize = 4096;
const SPLIT_PACKET_SIZE: usize = 512;

const ALPN_TDS8: &[u8] = b"\x07tds/8.0";
const SNI: [Option<&str>; 4] = [
    Some("sqlprod01.corp.example.test"),
    None,
    Some("sqlprod02.corp.example.test"),
    None,
];

const USER: &str = "tdsgen_user";
const SERVER_NAME: &str = "SQLPROD01";

struct Builder {
    data: Vec<u8>,
    steps: Vec<Step>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            data: Vec::with_capacity(8192),
            steps: Vec::with_capacity(24),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> (u32, u32) {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        (off, bytes.len() as u32)
    }

    fn send_parts(&mut self, from: Side, think: Delay, parts: &[&[u8]], ack: bool) {
        let writes = parts.iter().map(|p| self.put(p)).collect();
        self.steps.push(Step::Send {
            from,
            writes,
            think,
            ack,
        });
    }

    fn send(&mut self, from: Side, think: Delay, bytes: &[u8]) {
        self.send_parts(from, think, &[bytes], true);
    }

    fn tds(&mut self, from: Side, think: Delay, ty: u8, spid: u16, payload: &[u8]) {
        let mut msg = Vec::with_capacity(payload.len() + 16);
        tds::push_message(&mut msg, ty, spid, payload, PACKET_SIZE);
        self.send(from, think, &msg);
    }
}

/// The driver/server personalities a template takes, chosen by its variant number.
struct Persona {
    client_version: [u8; 6],
    trace_id: bool,
    library: &'static str,
    server_version: [u8; 6],
    spid: u16,
}

fn persona(variant: u32) -> Persona {
    let v = variant as usize;
    let (client_version, trace_id, library) = [
        ([18, 3, 0, 2, 0, 0], true, "ODBC"),
        (
            [5, 1, 0, 0, 0, 0],
            true,
            "Core Microsoft SqlClient Data Provider",
        ),
        ([12, 4, 0, 2, 0, 0], false, "Microsoft JDBC Driver 12.4"),
    ][v % 3];
    let server_version = if v % 2 == 0 {
        [16, 0, 0x03, 0xe8, 0, 0]
    } else {
        [15, 0, 0x07, 0xd0, 0, 0]
    };
    Persona {
        client_version,
        trace_id,
        library,
        server_version,
        spid: 51 + (variant as u16 % 200),
    }
}

fn prelogin_pair(b: &mut Builder, p: &Persona, variant: u32, client_enc: u8, server_enc: u8) {
    let mut trace = [0u8; 36];
    for (i, t) in trace.iter_mut().enumerate() {
        *t = (i as u8).wrapping_mul(37).wrapping_add(variant as u8);
    }
    let client = tds::prelogin_payload(&Prelogin {
        version: p.client_version,
        encryption: client_enc,
        instopt: &[0],
        thread_id: Some(0x1000 + variant),
        mars: 0,
        trace_id: p.trace_id.then_some(trace),
    });
    let server = tds::prelogin_payload(&Prelogin {
        version: p.server_version,
        encryption: server_enc,
        instopt: &[0],
        thread_id: None,
        mars: 0,
        trace_id: None,
    });
    b.tds(
        Side::Client,
        CLIENT_PRELOGIN,
        tds::TYPE_PRELOGIN,
        0,
        &client,
    );
    b.tds(
        Side::Server,
        SERVER_PRELOGIN,
        tds::TYPE_PRELOGIN_RESPONSE,
        0,
        &server,
    );
}

fn login7_packet(p: &Persona, variant: u32) -> Vec<u8> {
    let host = format!("APPHOST{variant:02}");
    let payload = tds::login7_payload(&Login7 {
        tds_version: tds::TDS_7_4,
        packet_size: PACKET_SIZE as u32,
        client_prog_ver: 0x0700_0000,
        client_pid: 4000 + variant,
        host_name: &host,
        user_name: USER,
        password: "tdsgen-fake-password",
        app_name: "tdsgen benchmark",
        server_name: "sqlprod01.corp.example.test",
        library: p.library,
        language: "us_english",
        database: "benchdb",
        client_id: [0x02, 0x00, 0x5e, 0x10, 0x00, variant as u8],
    });
    let mut msg = Vec::with_capacity(payload.len() + 8);
    tds::push_message(&mut msg, tds::TYPE_LOGIN7, 0, &payload, PACKET_SIZE);
    msg
}

fn login_ack_packet(p: &Persona) -> Vec<u8> {
    let mut t = Vec::with_capacity(256);
    tds::push_envchange(&mut t, 1, "benchdb", "master");
    tds::push_info(
        &mut t,
        &Message {
            number: 5701,
            state: 2,
            class: 0,
            text: "Changed database context to 'benchdb'.",
            server: SERVER_NAME,
            procedure: "",
            line: 1,
        },
    );
    tds::push_envchange(&mut t, 2, "us_english", "");
    let pv = p.server_version;
    tds::push_loginack(
        &mut t,
        tds::TDS_7_4,
        "Microsoft SQL Server",
        [pv[0], pv[1], pv[2], pv[3]],
    );
    tds::push_envchange(&mut t, 4, "4096", "4096");
    tds::push_done(&mut t, tds::DONE_FINAL, 0, 0);
    let mut msg = Vec::with_capacity(t.len() + 8);
    tds::push_message(&mut msg, tds::TYPE_RESPONSE, p.spid, &t, PACKET_SIZE);
    msg
}

fn login_error_packet(p: &Persona) -> Vec<u8> {
    let mut t = Vec::with_capacity(160);
    let text = format!("Login failed for user '{USER}'.");
    tds::push_error(
        &mut t,
        &Message {
            number: 18456,
            state: 1,
            class: 14,
            text: &text,
            server: SERVER_NAME,
            procedure: "",
            line: 1,
        },
    );
    tds::push_done(&mut t, tds::DONE_ERROR, 0, 0);
    let mut msg = Vec::with_capacity(t.len() + 8);
    tds::push_message(&mut msg, tds::TYPE_RESPONSE, p.spid, &t, PACKET_SIZE);
    msg
}

fn batch_packets(p: &Persona) -> (Vec<u8>, Vec<u8>) {
    let mut req = Vec::with_capacity(64);
    tds::push_message(
        &mut req,
        tds::TYPE_SQL_BATCH,
        0,
        &tds::sql_batch_payload("select 1"),
        PACKET_SIZE,
    );
    let mut t = Vec::with_capacity(64);
    tds::push_select_int_response(&mut t, 1);
    let mut resp = Vec::with_capacity(t.len() + 8);
    tds::push_message(&mut resp, tds::TYPE_RESPONSE, p.spid, &t, PACKET_SIZE);
    (req, resp)
}

/// Think time before the i-th handshake flight.
fn flight_think(i: usize) -> Delay {
    match i {
        0 => CLIENT_TLS_START,
        1 => SERVER_TLS_FLIGHT,
        2 => CLIENT_KEY_EXCHANGE,
        _ => SERVER_FINISH,
    }
}

/// Sends handshake flights wrapped in TDS PRELOGIN packets (`bare` flights go straight on TCP:
/// strict mode, or the client's TLS 1.3 second flight of some drivers). The server's flights use
/// 512-byte packets with `split`. The last flight is not ACKed when `last_unacked` (a close or a
/// reset follows at once).
fn send_flights(
    b: &mut Builder,
    flights: &[Flight],
    wrap: bool,
    split: bool,
    bare_from: Option<usize>,
    last_unacked: bool,
) {
    for (i, f) in flights.iter().enumerate() {
        let bare = !wrap || bare_from.is_some_and(|k| i >= k);
        let bytes = if bare {
            f.bytes.clone()
        } else {
            let size = if f.from == Side::Server && split {
                SPLIT_PACKET_SIZE
            } else {
                PACKET_SIZE
            };
            let mut m = Vec::with_capacity(f.bytes.len() + 64);
            tds::push_message(&mut m, tds::TYPE_PRELOGIN, 0, &f.bytes, size);
            m
        };
        let ack = !(last_unacked && i + 1 == flights.len());
        b.send_parts(f.from, flight_think(i), &[&bytes], ack);
    }
}

/// Encrypts `data` from `from` and sends the records bare on TCP.
fn send_tls(b: &mut Builder, pair: &mut Pair, from: Side, think: Delay, data: &[u8]) -> Result<()> {
    let (wire, plain) = pair.send(from, data)?;
    if plain != data {
        return Err("TLS peer did not read back what was sent".into());
    }
    b.send(from, think, &wire);
    Ok(())
}

/// DHE public values normally take the full 256 bytes; one in 256 has a leading zero byte that
/// OpenSSL strips (the KB4557473 trigger). Templates with a short value are redrawn so that packet
/// sizes, and so the pcap's packet count, do not depend on OpenSSL's randomness.
fn dhe_sizes_full(flights: &[Flight], dhe: bool) -> bool {
    if !dhe {
        return true;
    }
    let mut ok = true;
    for f in flights {
        for (ty, body) in tls::clear_handshake_messages(&f.bytes) {
            let full = match ty {
                12 => {
                    let p_len = body
                        .get(0..2)
                        .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
                    let g_at = 2 + p_len;
                    let g_len = body
                        .get(g_at..g_at + 2)
                        .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
                    let y_at = g_at + 2 + g_len;
                    body.get(y_at..y_at + 2) == Some(&[1, 0][..])
                        && body.get(y_at + 2).is_some_and(|&x| x != 0)
                }
                16 => body.get(0..2) == Some(&[1, 0][..]),
                _ => true,
            };
            ok &= full;
        }
    }
    ok
}

fn profile(s: Scenario, variant: u32) -> Profile {
    let v = variant as usize;
    let base = Profile {
        sni: SNI[v % SNI.len()],
        ..Profile::default()
    };
    match s {
        Scenario::LoginOnlyTls12 | Scenario::LoginFailed => Profile {
            server_ciphers: if v % 4 == 2 {
                "ECDHE-RSA-AES128-GCM-SHA256"
            } else {
                base.server_ciphers
            },
            sha1_cert: v % 4 == 3,
            ..base
        },
        Scenario::FullTls12Ecdhe => Profile {
            sha1_cert: v % 4 == 3,
            ..base
        },
        Scenario::FullTls12Dhe | Scenario::DheFailure => Profile {
            server_ciphers: "DHE-RSA-AES256-GCM-SHA384",
            ..base
        },
        Scenario::FullTls13 => Profile {
            server_min: Some(SslVersion::TLS1_3),
            server_max: Some(SslVersion::TLS1_3),
            server_suites: if v % 2 == 1 {
                "TLS_AES_128_GCM_SHA256"
            } else {
                "TLS_AES_256_GCM_SHA384"
            },
            ..base
        },
        Scenario::Strict => Profile {
            client_min: Some(SslVersion::TLS1_3),
            server_min: Some(SslVersion::TLS1_3),
            server_max: Some(SslVersion::TLS1_3),
            server_suites: if v % 2 == 1 {
                "TLS_AES_128_GCM_SHA256"
            } else {
                "TLS_AES_256_GCM_SHA384"
            },
            client_alpn: Some(ALPN_TDS8),
            server_alpn: Some(ALPN_TDS8),
            sni: Some("sqlprod01.corp.example.test"),
            ..base
        },
        Scenario::NoCommonTlsVersion => Profile {
            client_min: Some(SslVersion::TLS1),
            client_max: Some(SslVersion::TLS1),
            client_security_level: Some(0),
            ..base
        },
        Scenario::NoEncryption | Scenario::TcpProbe | Scenario::Refused => base,
    }
}

fn expected(s: Scenario, variant: u32) -> Expected {
    let mut e = Expected {
        scenario: s.name(),
        variant,
        mode: "tds7",
        encryption: "full",
        stage: "established",
        outcome: "established",
        reason: None,
        tls_version: None,
        suite: None,
        kx: None,
        client_max_version: None,
        alpn: None,
        first_fin: Some("client"),
        first_rst: None,
        login: Some("ack"),
        error_number: None,
        client_hellos: 1,
    };
    match s {
        Scenario::LoginOnlyTls12 => e.encryption = "login_only",
        Scenario::FullTls12Ecdhe | Scenario::FullTls12Dhe | Scenario::FullTls13 => {
            e.login = Some("unknown");
        }
        Scenario::NoEncryption => {
            e.encryption = "none";
            e.client_hellos = 0;
        }
        Scenario::Strict => {
            e.mode = "tds8_strict";
            e.encryption = "strict";
            e.alpn = Some("tds/8.0");
            e.login = Some("unknown");
        }
        Scenario::DheFailure => {
            e.stage = "tls_handshake";
            e.outcome = "failed";
            e.reason = Some("dhe_key_exchange_failure");
            e.first_fin = None;
            e.first_rst = Some("server");
            e.login = None;
        }
        Scenario::NoCommonTlsVersion => {
            e.encryption = "login_only";
            e.stage = "tls_handshake";
            e.outcome = "failed";
            e.reason = Some("no_common_tls_version");
            e.first_fin = Some("server");
            e.login = None;
            e.client_max_version = Some("TLSv1.0");
        }
        Scenario::LoginFailed => {
            e.encryption = "login_only";
            e.stage = "login";
            e.outcome = "failed";
            e.reason = Some("login_failed");
            e.first_fin = Some("server");
            e.login = Some("error");
            e.error_number = Some(18456);
        }
        Scenario::TcpProbe => {
            e.mode = "unknown";
            e.encryption = "unknown";
            e.stage = "connected";
            e.outcome = "failed";
            e.reason = Some("closed");
            e.login = None;
            e.client_hellos = 0;
        }
        Scenario::Refused => {
            e.mode = "unknown";
            e.encryption = "unknown";
            e.stage = "syn";
            e.outcome = "failed";
            e.reason = Some("refused");
            e.first_fin = None;
            e.first_rst = Some("server");
            e.login = None;
            e.client_hellos = 0;
        }
    }
    e
}

/// Runs a handshake, redrawing while DHE values are short (see [`dhe_sizes_full`]).
fn handshake(m: &Materials, p: &Profile) -> Result<(Pair, Vec<Flight>, HandshakeEnd)> {
    for _ in 0..64 {
        let mut pair = Pair::new(m, p)?;
        let (flights, end) = pair.handshake()?;
        if dhe_sizes_full(&flights, p.server_ciphers.starts_with("DHE-")) {
            return Ok((pair, flights, end));
        }
    }
    Err("could not draw a DHE handshake with full-length values".into())
}

fn check(cond: bool, what: &str, s: Scenario) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(format!("{}: OpenSSL did not produce {what}", s.name()).into())
    }
}

/// Builds template `variant` of scenario `s`. With `open`, the connection stops after the
/// LOGINACK (login-only scenario only): it never closes.
pub fn build(s: Scenario, variant: u32, open: bool, m: &Materials) -> Result<Template> {
    let v = variant as usize;
    let p = persona(variant);
    let mut b = Builder::new();
    let mut e = expected(s, variant);
    let split = v % 2 == 1;
    match s {
        Scenario::Refused => b.steps.push(Step::Refused),
        Scenario::TcpProbe => {
            b.steps.push(Step::Connect);
            b.steps.push(Step::Close {
                first: Side::Client,
                delay: PROBE_CLOSE,
            });
        }
        Scenario::NoEncryption => {
            b.steps.push(Step::Connect);
            prelogin_pair(&mut b, &p, variant, tds::ENCRYPT_OFF, tds::ENCRYPT_NOT_SUP);
            let login = login7_packet(&p, variant);
            if split {
                // jTDS writes the 8-byte header and the body separately.
                let (h, body) = login.split_at(tds::HEADER_LEN);
                b.send_parts(Side::Client, CLIENT_NEXT, &[h, body], true);
            } else {
                b.send(Side::Client, CLIENT_NEXT, &login);
            }
            b.send(Side::Server, SERVER_LOGIN, &login_ack_packet(&p));
            let (req, resp) = batch_packets(&p);
            b.send(Side::Client, CLIENT_NEXT, &req);
            b.send(Side::Server, SERVER_QUERY, &resp);
            b.steps.push(Step::Close {
                first: Side::Client,
                delay: CLIENT_CLOSE,
            });
        }
        Scenario::Strict => {
            let prof = profile(s, variant);
            let (mut pair, flights, end) = handshake(m, &prof)?;
            check(
                end == HandshakeEnd::Completed && flights.len() == 3,
                "a TLS 1.3 handshake",
                s,
            )?;
            check(
                pair.alpn().as_deref() == Some(&b"tds/8.0"[..]),
                "ALPN tds/8.0",
                s,
            )?;
            e.tls_version = Some(pair.version());
            e.suite = pair.suite();
            e.kx = Some("ecdhe");
            b.steps.push(Step::Connect);
            send_flights(&mut b, &flights, false, false, None, false);
            let client = tds::prelogin_payload(&Prelogin {
                version: p.client_version,
                encryption: tds::ENCRYPT_ON,
                instopt: &[0],
                thread_id: Some(0x1000 + variant),
                mars: 0,
                trace_id: None,
            });
            let server = tds::prelogin_payload(&Prelogin {
                version: p.server_version,
                encryption: tds::ENCRYPT_ON,
                instopt: &[0],
                thread_id: None,
                mars: 0,
                trace_id: None,
            });
            let mut cm = Vec::new();
            tds::push_message(&mut cm, tds::TYPE_PRELOGIN, 0, &client, PACKET_SIZE);
            let mut sm = Vec::new();
            tds::push_message(
                &mut sm,
                tds::TYPE_PRELOGIN_RESPONSE,
                0,
                &server,
                PACKET_SIZE,
            );
            send_tls(&mut b, &mut pair, Side::Client, CLIENT_NEXT, &cm)?;
            send_tls(&mut b, &mut pair, Side::Server, SERVER_PRELOGIN, &sm)?;
            send_tls(
                &mut b,
                &mut pair,
                Side::Client,
                CLIENT_NEXT,
                &login7_packet(&p, variant),
            )?;
            send_tls(
                &mut b,
                &mut pair,
                Side::Server,
                SERVER_LOGIN,
                &login_ack_packet(&p),
            )?;
            let (req, resp) = batch_packets(&p);
            send_tls(&mut b, &mut pair, Side::Client, CLIENT_NEXT, &req)?;
            send_tls(&mut b, &mut pair, Side::Server, SERVER_QUERY, &resp)?;
            b.steps.push(Step::Close {
                first: Side::Client,
                delay: CLIENT_CLOSE,
            });
        }
        Scenario::NoCommonTlsVersion => {
            let prof = profile(s, variant);
            let (_pair, flights, end) = handshake(m, &prof)?;
            let alert_ok = flights.get(1).is_some_and(|f| {
                f.from == Side::Server
                    && f.bytes.len() == 7
                    && f.bytes.first() == Some(&21)
                    && f.bytes.get(6) == Some(&70)
            });
            check(
                matches!(end, HandshakeEnd::ServerFailed(_)) && flights.len() == 2 && alert_ok,
                "a protocol_version alert",
                s,
            )?;
            b.steps.push(Step::Connect);
            prelogin_pair(&mut b, &p, variant, tds::ENCRYPT_OFF, tds::ENCRYPT_OFF);
            send_flights(&mut b, &flights, true, split, None, true);
            b.steps.push(Step::Close {
                first: Side::Server,
                delay: SERVER_CLOSE_AFTER,
            });
        }
        Scenario::DheFailure => {
            let prof = profile(s, variant);
            let (pair, flights, end) = handshake(m, &prof)?;
            check(
                end == HandshakeEnd::Completed && flights.len() == 4,
                "a full TLS 1.2 handshake",
                s,
            )?;
            check(
                pair.suite() == Some("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
                "the DHE suite",
                s,
            )?;
            e.tls_version = Some(pair.version());
            e.suite = pair.suite();
            e.kx = Some("dhe");
            let (ce, se) = if v % 2 == 0 {
                (tds::ENCRYPT_ON, tds::ENCRYPT_ON)
            } else {
                (tds::ENCRYPT_OFF, tds::ENCRYPT_REQ)
            };
            b.steps.push(Step::Connect);
            prelogin_pair(&mut b, &p, variant, ce, se);
            // Everything up to the client's ClientKeyExchange + CCS + Finished; then the reset.
            send_flights(
                &mut b,
                flights.get(..3).unwrap_or_default(),
                true,
                split,
                None,
                true,
            );
            b.steps.push(Step::Reset {
                from: Side::Server,
                delay: SERVER_ABORT,
            });
        }
        Scenario::LoginOnlyTls12
        | Scenario::LoginFailed
        | Scenario::FullTls12Ecdhe
        | Scenario::FullTls12Dhe
        | Scenario::FullTls13 => {
            let prof = profile(s, variant);
            let (mut pair, flights, end) = handshake(m, &prof)?;
            let tls13 = s == Scenario::FullTls13;
            check(end == HandshakeEnd::Completed, "a completed handshake", s)?;
            check(
                flights.len() == if tls13 { 3 } else { 4 },
                "the usual number of flights",
                s,
            )?;
            check(
                pair.version() == if tls13 { "TLSv1.3" } else { "TLSv1.2" },
                "the intended version",
                s,
            )?;
            let dhe = s == Scenario::FullTls12Dhe;
            check(
                pair.suite().is_some_and(|x| x.contains("_DHE_") == dhe),
                "the intended key exchange",
                s,
            )?;
            e.tls_version = Some(pair.version());
            e.suite = pair.suite();
            e.kx = Some(if dhe { "dhe" } else { "ecdhe" });
            let full = matches!(
                s,
                Scenario::FullTls12Ecdhe | Scenario::FullTls12Dhe | Scenario::FullTls13
            );
            let (ce, se) = match (full, v % 2) {
                (false, _) => (tds::ENCRYPT_OFF, tds::ENCRYPT_OFF),
                (true, 0) => (tds::ENCRYPT_ON, tds::ENCRYPT_ON),
                (true, _) => (tds::ENCRYPT_OFF, tds::ENCRYPT_REQ),
            };
            b.steps.push(Step::Connect);
            prelogin_pair(&mut b, &p, variant, ce, se);
            // msodbc18, jTDS and FreeTDS send their TLS 1.3 second flight unwrapped.
            let bare_from = (tls13 && v % 4 == 3).then_some(2);
            send_flights(&mut b, &flights, true, split, bare_from, false);
            send_tls(
                &mut b,
                &mut pair,
                Side::Client,
                CLIENT_NEXT,
                &login7_packet(&p, variant),
            )?;
            if s == Scenario::LoginFailed {
                b.send_parts(
                    Side::Server,
                    SERVER_LOGIN,
                    &[&login_error_packet(&p)],
                    false,
                );
                b.steps.push(Step::Close {
                    first: Side::Server,
                    delay: SERVER_CLOSE_AFTER,
                });
            } else if full {
                send_tls(
                    &mut b,
                    &mut pair,
                    Side::Server,
                    SERVER_LOGIN,
                    &login_ack_packet(&p),
                )?;
                let (req, resp) = batch_packets(&p);
                send_tls(&mut b, &mut pair, Side::Client, CLIENT_NEXT, &req)?;
                send_tls(&mut b, &mut pair, Side::Server, SERVER_QUERY, &resp)?;
                b.steps.push(Step::Close {
                    first: Side::Client,
                    delay: CLIENT_CLOSE,
                });
            } else {
                b.send(Side::Server, SERVER_LOGIN, &login_ack_packet(&p));
                if open {
                    e.scenario = "open_login_only";
                    e.first_fin = None;
                    // The capture ends with the connection open: the primer's outcome for that
                    // is `unknown`, whatever stage it reached.
                    e.outcome = "unknown";
                } else {
                    let (req, resp) = batch_packets(&p);
                    b.send(Side::Client, CLIENT_NEXT, &req);
                    b.send(Side::Server, SERVER_QUERY, &resp);
                    b.steps.push(Step::Close {
                        first: Side::Client,
                        delay: CLIENT_CLOSE,
                    });
                }
            }
        }
    }
    Ok(Template {
        scenario: s,
        variant,
        data: b.data,
        steps: b.steps,
        expected: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn materials() -> &'static Materials {
        static M: OnceLock<Materials> = OnceLock::new();
        M.get_or_init(|| Materials::generate().expect("materials"))
    }

    fn sends(t: &Template) -> Vec<(Side, Vec<u8>)> {
        t.steps
            .iter()
            .filter_map(|s| match s {
                Step::Send { from, writes, .. } => {
                    let mut v = Vec::new();
                    for &(o, l) in writes {
                        v.extend_from_slice(&t.data[o as usize..(o + l) as usize]);
                    }
                    Some((*from, v))
                }
                _ => None,
            })
            .collect()
    }

    /// The ENCRYPTION option of a PRELOGIN packet, found through its option table.
    fn encryption(packet: &[u8]) -> u8 {
        let p = &packet[8..];
        let entry = p.chunks(5).find(|e| e[0] == tds::PL_ENCRYPTION).unwrap();
        p[usize::from(u16::from_be_bytes([entry[1], entry[2]]))]
    }

    #[test]
    fn names_round_trip_and_weights_sum_to_100() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::from_name(s.name()), Some(s));
        }
        assert_eq!(Scenario::from_name("nope"), None);
        assert_eq!(
            Scenario::ALL
                .iter()
                .map(|s| s.default_weight())
                .sum::<u32>(),
            100
        );
    }

    #[test]
    fn login_only_shape() {
        let t = build(Scenario::LoginOnlyTls12, 0, false, materials()).unwrap();
        assert_eq!(t.steps.first(), Some(&Step::Connect));
        assert!(matches!(
            t.steps.last(),
            Some(Step::Close {
                first: Side::Client,
                ..
            })
        ));
        let s = sends(&t);
        // PRELOGIN, answer, 4 wrapped flights, LOGIN7 record, LOGINACK, batch, response
        assert_eq!(s.len(), 10);
        assert_eq!(s[0].1[0], tds::TYPE_PRELOGIN);
        assert_eq!(s[1].1[0], tds::TYPE_PRELOGIN_RESPONSE);
        for (i, f) in s[2..6].iter().enumerate() {
            assert_eq!(f.1[0], tds::TYPE_PRELOGIN);
            // handshake records inside the PRELOGIN packets; the last flight opens with CCS
            assert_eq!(f.1[8], if i == 3 { 20 } else { 22 });
        }
        assert_eq!(s[6].0, Side::Client);
        assert_eq!(s[6].1[0], 23, "LOGIN7 goes as TLS application data");
        assert_eq!(s[7].1[0], tds::TYPE_RESPONSE);
        let k = s[7]
            .1
            .iter()
            .position(|&x| x == tds::TOKEN_LOGINACK)
            .unwrap();
        assert_eq!(&s[7].1[k + 3..k + 8], &[1, 0x74, 0, 0, 4]);
        assert_eq!(s[8].1[0], tds::TYPE_SQL_BATCH);
        let e = &t.expected;
        assert_eq!(
            (e.mode, e.encryption, e.stage, e.outcome),
            ("tds7", "login_only", "established", "established")
        );
        assert_eq!(e.tls_version, Some("TLSv1.2"));
        assert_eq!(e.suite, Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"));
        assert_eq!(e.first_fin, Some("client"));
    }

    #[test]
    fn split_variant_uses_512_byte_packets() {
        let t = build(Scenario::FullTls12Ecdhe, 1, false, materials()).unwrap();
        let s = sends(&t);
        let server_flight = &s[3].1;
        assert_eq!(s[3].0, Side::Server);
        assert_eq!(&server_flight[0..4], &[tds::TYPE_PRELOGIN, 0, 0x02, 0x00]);
        assert_eq!(
            &server_flight[512..516],
            &[tds::TYPE_PRELOGIN, 0, 0x02, 0x00]
        );
        // the PRELOGIN encryption byte: client OFF, server REQ for odd full variants
        assert_eq!(encryption(&s[0].1), tds::ENCRYPT_OFF);
        assert_eq!(encryption(&s[1].1), tds::ENCRYPT_REQ);
        // full: the login response is TLS application data
        assert_eq!(s[7].1[0], 23);
    }

    #[test]
    fn failures_end_as_intended() {
        let m = materials();
        let t = build(Scenario::DheFailure, 0, false, m).unwrap();
        assert!(matches!(
            t.steps.last(),
            Some(Step::Reset {
                from: Side::Server,
                ..
            })
        ));
        let s = sends(&t);
        let last = &s.last().unwrap().1;
        assert_eq!(s.last().unwrap().0, Side::Client);
        assert_eq!(tls::record_types(&last[8..]), [22, 20, 22]);
        assert_eq!(
            t.expected.suite,
            Some("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384")
        );

        let t = build(Scenario::NoCommonTlsVersion, 0, false, m).unwrap();
        let s = sends(&t);
        let alert = &s.last().unwrap().1;
        assert_eq!(alert.len(), 8 + 7);
        assert_eq!((alert[8], alert[13], alert[14]), (21, 2, 70));
        assert!(matches!(
            t.steps.last(),
            Some(Step::Close {
                first: Side::Server,
                ..
            })
        ));
        assert_eq!(t.expected.reason, Some("no_common_tls_version"));

        let t = build(Scenario::LoginFailed, 0, false, m).unwrap();
        let s = sends(&t);
        let resp = &s.last().unwrap().1;
        assert_eq!(resp[0], tds::TYPE_RESPONSE);
        assert_eq!(resp[8], tds::TOKEN_ERROR);
        assert_eq!(u32::from_le_bytes(resp[11..15].try_into().unwrap()), 18456);
        assert_eq!((resp[15], resp[16]), (1, 14));

        let t = build(Scenario::Refused, 0, false, m).unwrap();
        assert_eq!(t.steps, [Step::Refused]);
        assert!(t.data.is_empty());
    }

    #[test]
    fn strict_starts_with_a_bare_client_hello() {
        let t = build(Scenario::Strict, 0, false, materials()).unwrap();
        let s = sends(&t);
        assert_eq!(s[0].0, Side::Client);
        assert_eq!(s[0].1[0], 22);
        let ch = tls::clear_handshake_messages(&s[0].1);
        assert_eq!(ch[0].0, 1);
        assert!(ch[0].1.windows(8).any(|w| w == b"\x07tds/8.0"));
        assert!(s[3..].iter().all(|(_, b)| b[0] == 23));
        assert_eq!(t.expected.tls_version, Some("TLSv1.3"));
        assert_eq!(t.expected.mode, "tds8_strict");
    }

    #[test]
    fn open_template_stops_after_loginack() {
        let t = build(Scenario::LoginOnlyTls12, 2, true, materials()).unwrap();
        let s = sends(&t);
        assert_eq!(s.last().unwrap().0, Side::Server);
        assert_eq!(s.last().unwrap().1[0], tds::TYPE_RESPONSE);
        assert!(!t
            .steps
            .iter()
            .any(|x| matches!(x, Step::Close { .. } | Step::Reset { .. })));
        assert_eq!(t.expected.scenario, "open_login_only");
        assert_eq!(t.expected.first_fin, None);
        assert_eq!(
            t.expected.suite,
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
    }

    #[test]
    fn dhe_size_check_reads_the_public_value() {
        let ske = |ys_len: u16, first: u8| {
            let mut body = vec![0, 1, 0xff, 0, 1, 2];
            body.extend_from_slice(&ys_len.to_be_bytes());
            body.push(first);
            let mut msg = vec![12, 0, 0, body.len() as u8];
            msg.extend_from_slice(&body);
            let mut rec = vec![22, 3, 3, 0, msg.len() as u8];
            rec.extend_from_slice(&msg);
            vec![Flight {
                from: Side::Server,
                bytes: rec,
            }]
        };
        assert!(dhe_sizes_full(&ske(256, 7), true));
        assert!(!dhe_sizes_full(&ske(255, 7), true));
        assert!(!dhe_sizes_full(&ske(256, 0), true));
        assert!(dhe_sizes_full(&ske(255, 7), false));
    }
}
