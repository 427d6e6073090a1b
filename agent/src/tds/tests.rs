//! Stream tests: hand-built byte streams, each fed whole, one byte at a time and in random chunks
//! (the events must be the same, adjacent TLS pieces merged), plus robustness over random and
//! truncated input and two public captures.

use super::*;
use crate::config::Limits;

// ---------------------------------------------------------------------------------------------
// Builders

/// A PRELOGIN payload from (token, data) pairs, data laid out after the table in order.
pub(crate) fn prelogin_payload(options: &[(u8, &[u8])]) -> Vec<u8> {
    let table_len = options.len() * 5 + 1;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (token, d) in options {
        table.push(*token);
        table.extend_from_slice(&((table_len + data.len()) as u16).to_be_bytes());
        table.extend_from_slice(&(d.len() as u16).to_be_bytes());
        data.extend_from_slice(d);
    }
    table.push(0xFF);
    table.extend_from_slice(&data);
    table
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|c| c.to_le_bytes()).collect()
}

fn b_varchar(s: &str) -> Vec<u8> {
    let mut v = vec![s.encode_utf16().count() as u8];
    v.extend(ucs2(s));
    v
}

fn us_varchar(s: &str) -> Vec<u8> {
    let mut v = (s.encode_utf16().count() as u16).to_le_bytes().to_vec();
    v.extend(ucs2(s));
    v
}

/// A token with a u16 LE length before `body`.
fn token16(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend((body.len() as u16).to_le_bytes());
    v.extend(body);
    v
}

/// ERROR token (TDS 7.2+ layout: line number u32).
pub(crate) fn error_token(number: u32, state: u8, class: u8, text: &str) -> Vec<u8> {
    let mut b = number.to_le_bytes().to_vec();
    b.extend([state, class]);
    b.extend(us_varchar(text));
    b.extend(b_varchar("SRV1"));
    b.extend(b_varchar(""));
    b.extend(1u32.to_le_bytes());
    token16(0xAA, &b)
}

fn info_token(number: u32, text: &str) -> Vec<u8> {
    let mut t = error_token(number, 1, 0, text);
    t[0] = 0xAB;
    t
}

fn loginack(version: u32) -> Vec<u8> {
    let mut b = vec![0x01];
    b.extend(version.to_be_bytes());
    b.extend(b_varchar("Microsoft SQL Server"));
    b.extend([16, 0, 0x02, 0x58]);
    token16(0xAD, &b)
}

fn envchange(kind: u8, new: &str, old: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(b_varchar(new));
    b.extend(b_varchar(old));
    token16(0xE3, &b)
}

fn routing(port: u16, server: &str) -> Vec<u8> {
    let mut value = vec![0x00];
    value.extend(port.to_le_bytes());
    value.extend(us_varchar(server));
    let mut b = vec![20];
    b.extend((value.len() as u16).to_le_bytes());
    b.extend(value);
    b.extend([0, 0]);
    token16(0xE3, &b)
}

fn done_token() -> Vec<u8> {
    let mut v = vec![0xFD, 0x00, 0x00, 0x00, 0x00];
    v.extend(0u64.to_le_bytes());
    v
}

/// One TDS packet.
fn pkt(ty: u8, status: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![ty, status];
    v.extend(((payload.len() + 8) as u16).to_be_bytes());
    v.extend([0, 0, 1, 0]);
    v.extend(payload);
    v
}

/// A message cut into packets of at most `max` payload bytes, EOM on the last.
fn msg(ty: u8, payload: &[u8], max: usize) -> Vec<u8> {
    let chunks: Vec<&[u8]> = payload.chunks(max).collect();
    let mut v = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        v.extend(pkt(ty, if i + 1 == chunks.len() { 1 } else { 0 }, c));
    }
    v
}

/// A TLS 1.2 record whose body is `n` bytes of a pattern.
fn rec(ct: u8, n: usize) -> Vec<u8> {
    let mut v = vec![ct, 3, 3];
    v.extend((n as u16).to_be_bytes());
    v.extend((0..n).map(|i| (i * 7 + 1) as u8));
    v
}

fn client_prelogin() -> Vec<u8> {
    prelogin_payload(&[
        (0x00, &[0x11, 0x0A, 0x00, 0x01, 0x00, 0x00]),
        (0x01, &[0x00]),
        (0x02, b"MSSQLServer\0"),
        (0x03, &[0x00, 0x00, 0x12, 0x34]),
        (0x04, &[0x01]),
        (0x05, &[0x42; 36]),
    ])
}

fn client_prelogin_parsed() -> Prelogin {
    Prelogin {
        version: Some((17, 10, 1, 0)),
        encryption: Some(0),
        instance: Some("MSSQLServer".into()),
        mars: Some(1),
        fedauth_required: None,
        has_trace_id: true,
        has_nonce: false,
    }
}

fn server_prelogin() -> Vec<u8> {
    prelogin_payload(&[
        (0x00, &[16, 0, 0x02, 0x58, 0, 0]),
        (0x01, &[0x03]),
        (0x02, &[0]),
        (0x04, &[0]),
    ])
}

fn server_prelogin_parsed() -> Prelogin {
    Prelogin {
        version: Some((16, 0, 600, 0)),
        encryption: Some(3),
        instance: Some(String::new()),
        mars: Some(0),
        ..Prelogin::default()
    }
}

/// A LOGIN7 payload with a user name and an obfuscated password in it.
fn login7_payload(version: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(0u32.to_le_bytes()); // length, patched below
    v.extend(version.to_le_bytes());
    v.extend(4096u32.to_le_bytes());
    v.extend([0u8; 82]); // the rest of the fixed part (offsets, flags …)
    v.extend(ucs2("secretuser"));
    v.extend([0xA5, 0xB3, 0x92, 0x92, 0xD2, 0xA5]); // "password"
    let len = v.len() as u32;
    v[..4].copy_from_slice(&len.to_le_bytes());
    v
}

// ---------------------------------------------------------------------------------------------
// Running

/// Owned events; adjacent TLS pieces of the same kind merged (record boundaries are not promised).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Prelogin(Prelogin),
    Tls(Vec<u8>, bool),
    Login7(u32),
    Legacy,
    LoginAck(u32),
    Error(u32, u8, u8),
    Routing(u16),
    Message(u8),
    NotTds,
    Desync,
}

fn push(evs: &mut Vec<Ev>, e: TdsEvent<'_>) {
    let ev = match e {
        TdsEvent::TlsData { bytes, wrapped } => {
            if let Some(Ev::Tls(b, w)) = evs.last_mut() {
                if *w == wrapped {
                    b.extend_from_slice(bytes);
                    return;
                }
            }
            Ev::Tls(bytes.to_vec(), wrapped)
        }
        TdsEvent::Prelogin(p) => Ev::Prelogin(p),
        TdsEvent::Login7 { tds_version } => Ev::Login7(tds_version),
        TdsEvent::LegacyLogin => Ev::Legacy,
        TdsEvent::LoginAck { tds_version } => Ev::LoginAck(tds_version),
        TdsEvent::Error {
            number,
            state,
            class,
        } => Ev::Error(number, state, class),
        TdsEvent::Routing { port } => Ev::Routing(port),
        TdsEvent::Message { packet_type } => Ev::Message(packet_type),
        TdsEvent::NotTds => Ev::NotTds,
        TdsEvent::Desync => Ev::Desync,
    };
    evs.push(ev);
}

/// xorshift64*: deterministic randomness without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Feeds `bytes` in chunks chosen by `size`, checking the buffer bound after every call.
fn run_with(side: Side, limits: &Limits, bytes: &[u8], mut size: impl FnMut() -> usize) -> Vec<Ev> {
    let mut s = TdsStream::new(side, limits);
    let mut evs = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = size().clamp(1, rest.len());
        let (now, later) = rest.split_at(n);
        s.feed(now, &mut |e| push(&mut evs, e));
        assert!(
            s.buffered_bytes() <= limits.max_tds_message,
            "buffer over the cap"
        );
        rest = later;
    }
    evs
}

/// The events of `bytes` from `side`, the same whether fed whole, one byte at a time or in random
/// chunks (asserted).
fn events_with(side: Side, limits: &Limits, bytes: &[u8]) -> Vec<Ev> {
    let whole = run_with(side, limits, bytes, || usize::MAX);
    let bytewise = run_with(side, limits, bytes, || 1);
    assert_eq!(bytewise, whole, "one byte at a time");
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let max = [3, 9, 40, 700][seed as usize % 4];
        let chunked = run_with(side, limits, bytes, || 1 + rng.below(max));
        assert_eq!(chunked, whole, "random chunks, seed {seed}");
    }
    whole
}

fn events(side: Side, bytes: &[u8]) -> Vec<Ev> {
    events_with(side, &Limits::default(), bytes)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const C: Side = Side::Client;
const S: Side = Side::Server;

// ---------------------------------------------------------------------------------------------
// PRELOGIN

#[test]
fn client_prelogin_message() {
    let got = events(C, &pkt(0x12, 1, &client_prelogin()));
    assert_eq!(
        got,
        vec![Ev::Prelogin(client_prelogin_parsed()), Ev::Message(0x12)]
    );
}

#[test]
fn server_prelogin_response() {
    let got = events(S, &pkt(0x04, 1, &server_prelogin()));
    assert_eq!(
        got,
        vec![Ev::Prelogin(server_prelogin_parsed()), Ev::Message(0x04)]
    );
}

#[test]
fn prelogin_over_several_packets() {
    let got = events(C, &msg(0x12, &client_prelogin(), 7));
    assert_eq!(
        got,
        vec![Ev::Prelogin(client_prelogin_parsed()), Ev::Message(0x12)]
    );
}

#[test]
fn prelogin_over_the_cap_is_only_counted() {
    let limits = Limits {
        max_tds_message: 40,
        ..Limits::default()
    };
    let p = client_prelogin();
    assert!(p.len() > 40);
    let got = events_with(C, &limits, &msg(0x12, &p, 16));
    assert_eq!(got, vec![Ev::Message(0x12)]);
}

#[test]
fn malformed_prelogin_is_a_message_only() {
    let mut p = client_prelogin();
    p[2] = 0xF0; // VERSION offset beyond the payload
    assert_eq!(events(C, &pkt(0x12, 1, &p)), vec![Ev::Message(0x12)]);
    // An empty PRELOGIN packet, and a 2-byte one: no TLS, no table.
    assert_eq!(events(C, &pkt(0x12, 1, &[])), vec![Ev::Message(0x12)]);
    assert_eq!(
        events(C, &pkt(0x12, 1, &[0x00, 0x00])),
        vec![Ev::Message(0x12)]
    );
}

#[test]
fn buffered_bytes_tracks_the_prelogin_buffer() {
    let mut s = TdsStream::new(C, &Limits::default());
    let bytes = pkt(0x12, 1, &client_prelogin());
    let mut evs = Vec::new();
    s.feed(&bytes[..30], &mut |e| push(&mut evs, e));
    assert_eq!(s.buffered_bytes(), 22);
    s.feed(&bytes[30..], &mut |e| push(&mut evs, e));
    assert_eq!(s.buffered_bytes(), 0);
    assert_eq!(evs.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// TLS wrapped in PRELOGIN packets

#[test]
fn one_record_per_packet() {
    let (r1, r2) = (rec(0x16, 200), rec(0x16, 60));
    let stream = cat(&[
        &pkt(0x12, 1, &client_prelogin()),
        &pkt(0x12, 1, &r1),
        &pkt(0x12, 1, &r2),
    ]);
    let got = events(C, &stream);
    assert_eq!(
        got,
        vec![
            Ev::Prelogin(client_prelogin_parsed()),
            Ev::Message(0x12),
            Ev::Tls(r1, true),
            Ev::Message(0x12),
            Ev::Tls(r2, true),
            Ev::Message(0x12),
        ]
    );
}

#[test]
fn several_records_per_packet() {
    let flight = cat(&[&rec(0x16, 70), &rec(0x14, 1), &rec(0x16, 40)]);
    let got = events(C, &pkt(0x12, 1, &flight));
    assert_eq!(got, vec![Ev::Tls(flight, true), Ev::Message(0x12)]);
}

#[test]
fn one_record_over_three_packets() {
    let r = rec(0x16, 1200);
    let stream = msg(0x12, &r, 410);
    assert_eq!(stream.len(), r.len() + 3 * 8);
    let got = events(S, &cat(&[&pkt(0x04, 1, &server_prelogin()), &stream]));
    assert_eq!(
        got,
        vec![
            Ev::Prelogin(server_prelogin_parsed()),
            Ev::Message(0x04),
            Ev::Tls(r, true),
            Ev::Message(0x12)
        ]
    );
}

#[test]
fn record_header_split_across_packets() {
    // Packet 1 ends 3 bytes into the second record's header; packet 2 starts with its last 2 bytes.
    let (r1, r2) = (rec(0x16, 30), rec(0x16, 0x0100));
    let flight = cat(&[&r1, &r2]);
    let cut = r1.len() + 3;
    let stream = cat(&[&pkt(0x12, 0, &flight[..cut]), &pkt(0x12, 1, &flight[cut..])]);
    assert_eq!(
        events(C, &stream),
        vec![Ev::Tls(flight.clone(), true), Ev::Message(0x12)]
    );
    // The same with the cut at a message end: the header continues into the next message.
    let stream = cat(&[&pkt(0x12, 1, &flight[..cut]), &pkt(0x12, 1, &flight[cut..])]);
    assert_eq!(
        events(C, &stream),
        vec![
            Ev::Tls(flight[..cut].to_vec(), true),
            Ev::Message(0x12),
            Ev::Tls(flight[cut..].to_vec(), true),
            Ev::Message(0x12)
        ]
    );
    // A message whose only payload is the first 2 bytes of a record header (decided at its end).
    let stream = cat(&[&pkt(0x12, 1, &r2[..2]), &pkt(0x12, 1, &r2[2..])]);
    assert_eq!(
        events(C, &stream),
        vec![
            Ev::Tls(r2[..2].to_vec(), true),
            Ev::Message(0x12),
            Ev::Tls(r2[2..].to_vec(), true),
            Ev::Message(0x12)
        ]
    );
}

#[test]
fn record_continuing_across_messages() {
    // The continuation starts with 0x00, like a PRELOGIN table would: it must still be TLS.
    let mut r = rec(0x16, 300);
    r[100] = 0x00;
    let stream = cat(&[&pkt(0x12, 1, &r[..100]), &pkt(0x12, 1, &r[100..])]);
    assert_eq!(
        events(C, &stream),
        vec![
            Ev::Tls(r[..100].to_vec(), true),
            Ev::Message(0x12),
            Ev::Tls(r[100..].to_vec(), true),
            Ev::Message(0x12)
        ]
    );
}

#[test]
fn server_flight_in_response_packets() {
    // PRELOGIN response, then ServerHello … ServerHelloDone in 0x04 packets (split), then, after the
    // client's LOGIN7 in TLS, the login response in clear (login-only encryption).
    let flight = cat(&[&rec(0x16, 90), &rec(0x16, 900), &rec(0x16, 4)]);
    let finished = cat(&[&rec(0x14, 1), &rec(0x16, 40)]);
    let response = cat(&[&loginack(0x7400_0004), &done_token()]);
    let stream = cat(&[
        &pkt(0x04, 1, &server_prelogin()),
        &msg(0x04, &flight, 512),
        &pkt(0x04, 1, &finished),
        &pkt(0x04, 1, &response),
    ]);
    assert_eq!(
        events(S, &stream),
        vec![
            Ev::Prelogin(server_prelogin_parsed()),
            Ev::Message(0x04),
            Ev::Tls(flight, true),
            Ev::Message(0x04),
            Ev::Tls(finished, true),
            Ev::Message(0x04),
            Ev::LoginAck(0x7400_0004),
            Ev::Message(0x04),
        ]
    );
}

#[test]
fn raw_records_after_wrapped_ones() {
    // msodbc18 / jTDS / FreeTDS with TLS 1.3: ClientHello wrapped, the second flight bare on TCP,
    // then LOGIN7 and everything else in bare application data records.
    let hello = rec(0x16, 500);
    let second = cat(&[&rec(0x14, 1), &rec(0x17, 53)]);
    let login = rec(0x17, 300);
    let stream = cat(&[
        &pkt(0x12, 1, &client_prelogin()),
        &pkt(0x12, 1, &hello),
        &second,
        &login,
    ]);
    assert_eq!(
        events(C, &stream),
        vec![
            Ev::Prelogin(client_prelogin_parsed()),
            Ev::Message(0x12),
            Ev::Tls(hello, true),
            Ev::Message(0x12),
            Ev::Tls(cat(&[&second, &login]), false),
        ]
    );
}

#[test]
fn strict_mode_is_bare_records_only() {
    let client = cat(&[
        &rec(0x16, 517),
        &rec(0x14, 1),
        &rec(0x17, 64),
        &rec(0x17, 400),
        &rec(0x15, 2),
    ]);
    assert_eq!(events(C, &client), vec![Ev::Tls(client.clone(), false)]);
    let server = cat(&[
        &rec(0x16, 122),
        &rec(0x14, 1),
        &rec(0x17, 4000),
        &rec(0x17, 0),
    ]);
    assert_eq!(events(S, &server), vec![Ev::Tls(server.clone(), false)]);
}

#[test]
fn bare_record_too_long_is_not_tds() {
    let mut r = rec(0x16, 10);
    r[3..5].copy_from_slice(&((MAX_TLS_RECORD_LEN + 1) as u16).to_be_bytes());
    assert_eq!(events(C, &r), vec![Ev::NotTds]);
    // Wrong major version.
    assert_eq!(
        events(C, &[0x16, 0x02, 0x00, 0x00, 0x01, 0x00]),
        vec![Ev::NotTds]
    );
}

#[test]
fn server_wrapped_tls_in_prelogin_packets_then_clear_error() {
    let flight = rec(0x16, 1500);
    let response = cat(&[
        &error_token(18456, 1, 14, "Login failed for user 'bob'."),
        &done_token(),
    ]);
    let stream = cat(&[
        &pkt(0x04, 1, &server_prelogin()),
        &msg(0x12, &flight, 1000),
        &pkt(0x12, 1, &rec(0x16, 10)),
        &pkt(0x04, 1, &response),
    ]);
    assert_eq!(
        events(S, &stream),
        vec![
            Ev::Prelogin(server_prelogin_parsed()),
            Ev::Message(0x04),
            Ev::Tls(flight, true),
            Ev::Message(0x12),
            Ev::Tls(rec(0x16, 10), true),
            Ev::Message(0x12),
            Ev::Error(18456, 1, 14),
            Ev::Message(0x04),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// LOGIN7 and legacy logins

#[test]
fn login7_header_and_payload_in_separate_chunks() {
    let payload = login7_payload(0x7400_0004);
    let packet = pkt(0x10, 1, &payload);
    let mut s = TdsStream::new(C, &Limits::default());
    let mut evs = Vec::new();
    s.feed(&packet[..8], &mut |e| push(&mut evs, e));
    assert_eq!(s.buffered_bytes(), 0);
    assert!(evs.is_empty());
    // The payload streams through in pieces; nothing of it is held.
    for piece in packet[8..].chunks(13) {
        s.feed(piece, &mut |e| push(&mut evs, e));
        assert_eq!(s.buffered_bytes(), 0);
    }
    assert_eq!(evs, vec![Ev::Login7(0x7400_0004), Ev::Message(0x10)]);
    assert_eq!(events(C, &packet), evs);
    // The event carries the version and nothing else: no trace of the user name.
    let mut printed = String::new();
    let mut s = TdsStream::new(C, &Limits::default());
    s.feed(&packet, &mut |e| printed.push_str(&format!("{e:?}")));
    assert!(
        !printed.contains("secret") && !printed.contains("115, 101"),
        "{printed}"
    );
    assert_eq!(
        printed,
        "Login7 { tds_version: 1946157060 }Message { packet_type: 16 }"
    );
}

#[test]
fn login7_over_packets_and_truncated() {
    let payload = login7_payload(0x7100_0001);
    assert_eq!(
        events(C, &msg(0x10, &payload, 6)),
        vec![Ev::Login7(0x7100_0001), Ev::Message(0x10)]
    );
    // A LOGIN7 too short to hold its version: a message, no version guessed.
    assert_eq!(
        events(C, &pkt(0x10, 1, &payload[..7])),
        vec![Ev::Message(0x10)]
    );
}

#[test]
fn legacy_logins_stop_the_stream() {
    // TDS 4.2/5.0 login (type 0x02), then more bytes that would be TDS: ignored.
    let mut login = vec![b'h'; 30];
    login.extend(b"password");
    let stream = cat(&[
        &pkt(0x02, 0, &login),
        &pkt(0x02, 1, &[0; 20]),
        &pkt(0x12, 1, &client_prelogin()),
    ]);
    assert_eq!(events(C, &stream), vec![Ev::Legacy]);
    assert_eq!(events(C, &pkt(0x0F, 1, &[0xAD, 0x00])), vec![Ev::Legacy]);
}

// ---------------------------------------------------------------------------------------------
// Server responses

#[test]
fn loginack_response() {
    let response = cat(&[
        &envchange(1, "master", "master"),
        &info_token(5701, "Changed database context to 'master'."),
        &loginack(0x7400_0004),
        &envchange(4, "4096", "4096"),
        &done_token(),
    ]);
    // As the first response (no PRELOGIN: jTDS ssl=off), and after a PRELOGIN response.
    assert_eq!(
        events(S, &pkt(0x04, 1, &response)),
        vec![Ev::LoginAck(0x7400_0004), Ev::Message(0x04)]
    );
    let stream = cat(&[&pkt(0x04, 1, &server_prelogin()), &msg(0x04, &response, 33)]);
    assert_eq!(
        events(S, &stream),
        vec![
            Ev::Prelogin(server_prelogin_parsed()),
            Ev::Message(0x04),
            Ev::LoginAck(0x7400_0004),
            Ev::Message(0x04)
        ]
    );
}

#[test]
fn login_failed_response() {
    let response = cat(&[
        &error_token(18456, 1, 14, "Login failed for user 'sa'."),
        &done_token(),
    ]);
    let stream = cat(&[&pkt(0x04, 1, &server_prelogin()), &pkt(0x04, 1, &response)]);
    let got = events(S, &stream);
    assert_eq!(
        got,
        vec![
            Ev::Prelogin(server_prelogin_parsed()),
            Ev::Message(0x04),
            Ev::Error(18456, 1, 14),
            Ev::Message(0x04)
        ]
    );
    // The message text never leaves: nothing printed holds the user name.
    let mut printed = String::new();
    let mut s = TdsStream::new(S, &Limits::default());
    s.feed(&stream, &mut |e| printed.push_str(&format!("{e:?}")));
    assert!(
        !printed.contains("sa'") && !printed.contains("Login failed"),
        "{printed}"
    );
}

#[test]
fn routing_response() {
    let response = cat(&[
        &loginack(0x7400_0004),
        &routing(1450, "replica2.contoso.internal"),
        &envchange(4, "8000", "4096"),
        &done_token(),
    ]);
    assert_eq!(
        events(S, &pkt(0x04, 1, &response)),
        vec![
            Ev::LoginAck(0x7400_0004),
            Ev::Routing(1450),
            Ev::Message(0x04)
        ]
    );
}

#[test]
fn each_token_event_once_per_message() {
    let response = cat(&[
        &error_token(18456, 1, 14, "a"),
        &error_token(18452, 2, 14, "b"),
        &done_token(),
        &error_token(4060, 1, 11, "c"),
    ]);
    let stream = cat(&[&pkt(0x04, 1, &response), &pkt(0x04, 1, &response)]);
    assert_eq!(
        events(S, &stream),
        vec![
            Ev::Error(18456, 1, 14),
            Ev::Message(0x04),
            Ev::Error(18456, 1, 14),
            Ev::Message(0x04)
        ]
    );
}

#[test]
fn tds71_response_with_short_done() {
    // SQL Server 2000: 8-byte DONE and 2-byte line numbers.
    let mut err = error_token(18456, 1, 14, "x");
    let n = err.len();
    err.truncate(n - 2);
    err[1..3].copy_from_slice(&((n - 5) as u16).to_le_bytes());
    let done8 = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0];
    let response = cat(&[&loginack(0x7100_0001), &done8, &done8, &err]);
    assert_eq!(
        events(S, &pkt(0x04, 1, &response)),
        vec![
            Ev::LoginAck(0x7100_0001),
            Ev::Error(18456, 1, 14),
            Ev::Message(0x04)
        ]
    );
    // Without a LOGINACK the DONE size is guessed from what follows it.
    let response = cat(&[&done8, &done8, &err]);
    assert_eq!(
        events(S, &pkt(0x04, 1, &response)),
        vec![Ev::Error(18456, 1, 14), Ev::Message(0x04)]
    );
}

#[test]
fn lying_token_lengths() {
    let cases: Vec<Vec<u8>> = vec![
        // INFO claiming 64 KiB, in a short message; then an ERROR that must not be read.
        cat(&[
            &[0xAB, 0xFF, 0xFF, 1, 2, 3],
            &error_token(18456, 1, 14, "x"),
        ]),
        // ERROR claiming more than the message.
        cat(&[&[0xAA, 0xF0, 0xFF], &error_token(18456, 1, 14, "x")[3..]]),
        // SESSIONSTATE and FEDAUTHINFO claiming 4 GiB.
        vec![0xE4, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3],
        vec![0xEE, 0xFF, 0xFF, 0xFF, 0xFF],
        // FEATUREEXTACK with a feature of 4 GiB, and one never terminated.
        vec![0xAE, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0],
        vec![0xAE, 0x01, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00],
        // LOGINACK whose length does not add up.
        {
            let mut t = loginack(0x7400_0004);
            t[1] = t[1].wrapping_add(2);
            t
        },
        // Routing ENVCHANGE whose value is longer than the token.
        {
            let mut t = routing(1450, "srv");
            t[5] = 0xFF;
            t
        },
        // An unknown token first (COLMETADATA): the walk stops at once.
        cat(&[&[0x81, 0x01, 0x00], &loginack(0x7400_0004)]),
        // Truncated heads at the end of the message.
        vec![0xAD, 0x20],
        vec![0xFD, 0x00],
        vec![0xE3, 0x10, 0x00, 20, 0x05],
    ];
    for (i, response) in cases.iter().enumerate() {
        let stream = cat(&[
            &pkt(0x04, 1, &server_prelogin()),
            &pkt(0x04, 1, response),
            &pkt(0x04, 1, &done_token()),
        ]);
        let got = events(S, &stream);
        assert_eq!(
            got,
            vec![
                Ev::Prelogin(server_prelogin_parsed()),
                Ev::Message(0x04),
                Ev::Message(0x04),
                Ev::Message(0x04)
            ],
            "case {i}"
        );
    }
}

#[test]
fn result_sets_are_not_buffered() {
    let mut rows = vec![0x81, 0x01, 0x00];
    rows.extend(vec![0x55; 20_000]);
    let stream = cat(&[&pkt(0x04, 1, &server_prelogin()), &msg(0x04, &rows, 4088)]);
    let mut s = TdsStream::new(S, &Limits::default());
    let mut evs = Vec::new();
    for c in stream.chunks(1000) {
        s.feed(c, &mut |e| push(&mut evs, e));
        assert_eq!(s.buffered_bytes(), 0);
    }
    assert_eq!(evs.last(), Some(&Ev::Message(0x04)));
}

#[test]
fn requests_are_counted_not_kept() {
    let batch = ucs2("SELECT secret FROM t");
    let stream = cat(&[
        &msg(0x01, &batch, 10),
        &pkt(0x03, 1, &[1, 2, 3]),
        &pkt(0x06, 1, &[]),
        &pkt(0x07, 1, &[0; 9]),
        &pkt(0x0E, 1, &[0; 4]),
        &pkt(0x11, 1, b"NTLMSSP\0"),
        &pkt(0x08, 1, &[0; 3]),
    ]);
    assert_eq!(
        events(C, &stream),
        vec![
            Ev::Message(0x01),
            Ev::Message(0x03),
            Ev::Message(0x06),
            Ev::Message(0x07),
            Ev::Message(0x0E),
            Ev::Message(0x11),
            Ev::Message(0x08)
        ]
    );
}

#[test]
fn packet_of_another_type_abandons_the_message() {
    let p = client_prelogin();
    let stream = cat(&[
        &pkt(0x12, 0, &p[..10]),
        &pkt(0x01, 1, &[0; 4]),
        &pkt(0x12, 1, &p),
    ]);
    assert_eq!(
        events(C, &stream),
        vec![
            Ev::Message(0x01),
            Ev::Prelogin(client_prelogin_parsed()),
            Ev::Message(0x12)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Framing failures, gaps, SMP

#[test]
fn random_bytes_are_not_tds() {
    assert_eq!(
        events(C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        vec![Ev::NotTds]
    );
    // A TDS packet, then a bogus reply of type 0x00 (as in the tdspsql capture): NotTds once.
    let stream = cat(&[
        &pkt(0x01, 1, &[1, 2]),
        &pkt(0x00, 1, &[0; 30]),
        &pkt(0x01, 1, &[1]),
    ]);
    assert_eq!(events(C, &stream), vec![Ev::Message(0x01), Ev::NotTds]);
    // Status bits above 0x1F, length below 8 or above 32 768.
    assert_eq!(
        events(C, &[0x01, 0x21, 0x00, 0x08, 0, 0, 0, 0]),
        vec![Ev::NotTds]
    );
    assert_eq!(
        events(C, &[0x01, 0x01, 0x00, 0x07, 0, 0, 0, 0]),
        vec![Ev::NotTds]
    );
    assert_eq!(
        events(C, &[0x01, 0x01, 0x80, 0x01, 0, 0, 0, 0]),
        vec![Ev::NotTds]
    );
    // 32 768 itself is allowed.
    let mut big = pkt(0x01, 1, &vec![0; 32_760]);
    big.extend(pkt(0x01, 1, &[0]));
    assert_eq!(events(C, &big), vec![Ev::Message(0x01), Ev::Message(0x01)]);
}

#[test]
fn gap_desyncs_once() {
    let stream = pkt(0x12, 1, &client_prelogin());
    let mut s = TdsStream::new(C, &Limits::default());
    let mut evs = Vec::new();
    s.feed(&stream[..20], &mut |e| push(&mut evs, e));
    assert_eq!(s.buffered_bytes(), 12);
    s.gap(0, &mut |e| push(&mut evs, e));
    assert!(evs.is_empty(), "an empty gap is no gap");
    s.gap(100, &mut |e| push(&mut evs, e));
    assert_eq!(s.buffered_bytes(), 0);
    s.feed(&stream, &mut |e| push(&mut evs, e));
    s.gap(5, &mut |e| push(&mut evs, e));
    s.feed(&stream, &mut |e| push(&mut evs, e));
    assert_eq!(evs, vec![Ev::Desync]);
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn smp_packets_are_skipped() {
    fn smp(flags: u8, sid: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x53, flags];
        v.extend(sid.to_le_bytes());
        v.extend(((payload.len() + 16) as u32).to_le_bytes());
        v.extend(1u32.to_le_bytes());
        v.extend(4u32.to_le_bytes());
        v.extend(payload);
        v
    }
    let stream = cat(&[
        &pkt(0x12, 1, &client_prelogin()),
        &smp(0x01, 0, &[]),
        &smp(0x08, 0, &pkt(0x01, 1, &ucs2("SELECT 1"))),
        &smp(0x02, 0, &[]),
        &smp(0x08, 1, &pkt(0x01, 1, &ucs2("SELECT 2"))),
        &smp(0x04, 1, &[]),
        &pkt(0x0E, 1, &[0; 4]),
    ]);
    assert_eq!(
        events(C, &stream),
        vec![
            Ev::Prelogin(client_prelogin_parsed()),
            Ev::Message(0x12),
            Ev::Message(0x0E)
        ]
    );
    // A control packet with a body, an unknown flag, an oversized DATA packet: not TDS.
    let mut bad = smp(0x01, 0, &[0; 4]);
    assert_eq!(events(C, &bad), vec![Ev::NotTds]);
    bad = smp(0x10, 0, &[]);
    assert_eq!(events(C, &bad), vec![Ev::NotTds]);
    bad = smp(0x08, 0, &[]);
    bad[4..8].copy_from_slice(&((MAX_SMP_PACKET_LEN + 1) as u32).to_le_bytes());
    assert_eq!(events(C, &bad), vec![Ev::NotTds]);
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// A stream of plausible pieces (valid packets, records, tokens, SMP) and random damage.
fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..1 + rng.below(8) {
        let piece = match rng.below(12) {
            0 => pkt(0x12, 1, &client_prelogin()),
            1 => pkt(0x04, 1, &server_prelogin()),
            2 => msg(0x12, &rec(0x16, rng.below(600)), 1 + rng.below(300)),
            3 => msg(0x04, &rec(0x16, rng.below(600)), 1 + rng.below(300)),
            4 => rec(0x14 + rng.below(4) as u8, rng.below(300)),
            5 => pkt(0x10, 1, &login7_payload(0x7400_0004)),
            6 => pkt(
                0x04,
                1,
                &cat(&[
                    &loginack(0x7400_0004),
                    &routing(1450, "r"),
                    &error_token(18456, 1, 14, "x"),
                    &done_token(),
                ]),
            ),
            7 => {
                let n = rng.below(64);
                (0..n).map(|_| rng.next() as u8).collect()
            }
            8 => {
                let n = rng.below(64);
                let payload: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                pkt(
                    [0x01, 0x04, 0x12, 0x10, 0x11][rng.below(5)],
                    rng.below(2) as u8,
                    &payload,
                )
            }
            9 => vec![
                0x53, 0x08, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
            ],
            10 => {
                // A response of random tokens with plausible types.
                let n = rng.below(40);
                let mut p: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                if let Some(b) = p.first_mut() {
                    *b = [
                        0xAD, 0xAA, 0xAB, 0xE3, 0xAE, 0xE4, 0xEE, 0xFD, 0xFF, 0xA9, 0x79,
                    ][rng.below(11)];
                }
                pkt(0x04, 1, &p)
            }
            _ => pkt(
                0x12,
                rng.below(2) as u8,
                &rec(0x17, rng.below(50))[..rng.below(6)],
            ),
        };
        v.extend(piece);
    }
    // Damage: flip a few bytes.
    for _ in 0..rng.below(4) {
        if !v.is_empty() {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
    }
    v
}

#[test]
fn random_inputs_never_panic_and_stay_bounded() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let small = Limits {
        max_tds_message: 48,
        ..Limits::default()
    };
    for i in 0..10_000 {
        let input: Vec<u8> = if i % 3 == 0 {
            let n = rng.below(300);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            random_stream(&mut rng)
        };
        let side = if i % 2 == 0 { C } else { S };
        let limits = if i % 5 == 0 {
            &small
        } else {
            &Limits::default()
        };
        // Whole versus random chunks (events equal), and a gap somewhere.
        let whole = run_with(side, limits, &input, || usize::MAX);
        let mut crng = Rng(i as u64 + 1);
        let chunked = run_with(side, limits, &input, || 1 + crng.below(17));
        assert_eq!(chunked, whole, "input {i}: {input:02x?}");
        let mut s = TdsStream::new(side, limits);
        let cut = rng.below(input.len() + 1);
        let mut n = 0usize;
        s.feed(&input[..cut], &mut |_| n += 1);
        s.gap(3, &mut |_| n += 1);
        s.feed(&input[cut..], &mut |_| n += 1);
        assert_eq!(s.buffered_bytes(), 0, "a gap frees the buffers");
    }
}

#[test]
fn truncations_of_valid_streams_never_panic() {
    let client = cat(&[
        &msg(0x12, &client_prelogin(), 20),
        &msg(0x12, &cat(&[&rec(0x16, 300), &rec(0x16, 5)]), 100),
        &rec(0x17, 80),
        &pkt(0x10, 1, &login7_payload(0x7400_0004)),
        &pkt(0x01, 1, &ucs2("SELECT 1")),
    ]);
    let server = cat(&[
        &pkt(0x04, 1, &server_prelogin()),
        &msg(0x04, &rec(0x16, 700), 256),
        &msg(
            0x04,
            &cat(&[
                &loginack(0x7400_0004),
                &routing(1450, "r"),
                &error_token(18456, 1, 14, "x"),
                &done_token(),
            ]),
            9,
        ),
    ]);
    let small = Limits {
        max_tds_message: 30,
        ..Limits::default()
    };
    for (side, stream) in [(C, &client), (S, &server)] {
        let full = events(side, stream);
        assert!(full.len() >= 5);
        for limits in [&Limits::default(), &small] {
            for n in 0..=stream.len() {
                let got = run_with(side, limits, &stream[..n], || 1 + n % 7);
                // A prefix never yields an event the whole stream does not.
                if limits.max_tds_message == Limits::default().max_tds_message {
                    for e in &got {
                        if let Ev::Tls(..) = e {
                            continue;
                        }
                        assert!(full.contains(e), "prefix {n} gave {e:?}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public captures

/// One TCP segment's payload from a capture: its flow as (source, destination) and its bytes.
type Segment = ((std::net::SocketAddr, std::net::SocketAddr), Vec<u8>);

/// The TCP payloads of a classic pcap (Ethernet or Linux cooked; IPv4 or IPv6 without extension
/// headers), in capture order, each segment once (duplicates from multi-interface captures dropped
/// by flow and sequence number). Frames cut short by the snap length give what they hold.
fn pcap_segments(name: &str) -> Vec<Segment> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    // `agent/../../shared` in the main checkout and in CI; one level further up from a worktree.
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = manifest
        .ancestors()
        .map(|d| d.join("shared/captures/public").join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found above {}", manifest.display()));
    let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cap = pcap_parser::PcapCapture::from_file(&file).expect("pcap");
    let link = cap.header.network.0;
    let be16 = |b: &[u8], at: usize| b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for b in &cap.blocks {
        let d = b.data;
        let (mut l2, mut ethertype) = match link {
            1 => (14, be16(d, 12)),
            113 => (16, be16(d, 14)),
            other => panic!("link type {other}"),
        };
        if ethertype == Some(0x8100) {
            // 802.1Q VLAN tag.
            ethertype = be16(d, l2 + 2);
            l2 += 4;
        }
        let Some(ip) = d.get(l2..) else { continue };
        let (src, dst, tcp) = match ethertype {
            Some(0x0800) if ip.len() >= 20 && ip[9] == 6 => {
                let ihl = usize::from(ip[0] & 0x0F) * 4;
                let end = usize::from(be16(ip, 2).unwrap_or(0)).min(ip.len());
                let a = |at: usize| {
                    IpAddr::V4(Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]))
                };
                (a(12), a(16), ip.get(ihl..end))
            }
            Some(0x86DD) if ip.len() >= 40 && ip[6] == 6 => {
                let end = (40 + usize::from(be16(ip, 4).unwrap_or(0))).min(ip.len());
                let a = |at: usize| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&ip[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(o))
                };
                (a(8), a(24), ip.get(40..end))
            }
            _ => continue,
        };
        let Some(tcp) = tcp.filter(|t| t.len() >= 20) else {
            continue;
        };
        let src = SocketAddr::new(src, be16(tcp, 0).unwrap_or(0));
        let dst = SocketAddr::new(dst, be16(tcp, 2).unwrap_or(0));
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let payload = tcp.get(usize::from(tcp[12] >> 4) * 4..).unwrap_or_default();
        if !payload.is_empty() && seen.insert((src, dst, seq)) {
            out.push(((src, dst), payload.to_vec()));
        }
    }
    out
}

/// Feeds each direction of each connection to `server_port` its segments in capture order, one
/// segment per `feed`; returns (client events, server events) per connection, in order of first
/// appearance. Each direction's bytes fed whole, byte by byte and in random chunks give the same.
fn capture_connections(name: &str, server_port: u16) -> Vec<(Vec<Ev>, Vec<Ev>)> {
    type Conn = (TdsStream, TdsStream, Vec<Ev>, Vec<Ev>, Vec<u8>, Vec<u8>);
    let mut conns: Vec<(std::net::SocketAddr, Conn)> = Vec::new();
    for ((src, dst), payload) in pcap_segments(name) {
        let (client, from_server) = match (src.port() == server_port, dst.port() == server_port) {
            (true, _) => (dst, true),
            (_, true) => (src, false),
            _ => continue,
        };
        let i = match conns.iter().position(|(c, _)| *c == client) {
            Some(i) => i,
            None => {
                let l = Limits::default();
                let conn = (
                    TdsStream::new(C, &l),
                    TdsStream::new(S, &l),
                    vec![],
                    vec![],
                    vec![],
                    vec![],
                );
                conns.push((client, conn));
                conns.len() - 1
            }
        };
        let (cs, ss, ce, se, cb, sb) = &mut conns[i].1;
        if from_server {
            ss.feed(&payload, &mut |e| push(se, e));
            sb.extend(&payload);
        } else {
            cs.feed(&payload, &mut |e| push(ce, e));
            cb.extend(&payload);
        }
    }
    conns
        .into_iter()
        .map(|(_, (_, _, ce, se, cb, sb))| {
            assert_eq!(events(C, &cb), ce, "{name}: client bytes rechunked");
            assert_eq!(events(S, &sb), se, "{name}: server bytes rechunked");
            (ce, se)
        })
        .collect()
}

/// The one connection of a capture.
fn capture_events(name: &str, server_port: u16) -> (Vec<Ev>, Vec<Ev>) {
    let mut conns = capture_connections(name, server_port);
    assert_eq!(conns.len(), 1, "{name}");
    conns.remove(0)
}

#[test]
fn capture_sql_server_2000_no_encryption() {
    let (client, server) = capture_events("arkime__tds7.pcap", 1433);
    assert_eq!(
        client,
        vec![
            Ev::Prelogin(Prelogin {
                version: Some((8, 0, 341, 0)),
                encryption: Some(0),
                instance: Some("MSSQLServer".into()),
                ..Prelogin::default()
            }),
            Ev::Message(0x12),
            Ev::Login7(0x7100_0001),
            Ev::Message(0x10),
            Ev::Message(0x01),
        ]
    );
    assert_eq!(
        server,
        vec![
            Ev::Prelogin(Prelogin {
                version: Some((8, 0, 2039, 0)),
                encryption: Some(2),
                instance: Some(String::new()),
                ..Prelogin::default()
            }),
            Ev::Message(0x04),
            Ev::LoginAck(0x7100_0001),
            Ev::Message(0x04),
            Ev::Message(0x04),
        ]
    );
}

/// Events in short: TLS as its first byte (the content type) after checking that the bytes are whole
/// TLS records end to end (no TDS header leaked in, nothing lost), PRELOGIN as version and encryption.
fn kinds(evs: &[Ev]) -> Vec<String> {
    evs.iter()
        .map(|e| match e {
            Ev::Tls(b, w) => {
                let mut rest = &b[..];
                while !rest.is_empty() {
                    let len = tls_record_len(&rest[..5]).expect("a TLS record header");
                    rest = &rest[5 + len..];
                }
                format!("Tls({}, {w})", b[0])
            }
            Ev::Prelogin(p) => format!("Prelogin({:?}, {:?})", p.version, p.encryption),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn captures_sql_server_2019_and_2022_login_only() {
    for (name, server_version, batches) in [
        ("0x5CE-beats__mssql_login.pcap", "(16, 0, 600, 0)", 2),
        (
            "0x5CE-beats__mssql_login_and_select.pcap",
            "(16, 0, 600, 0)",
            3,
        ),
        (
            "0x5CE-beats__mssql_15x_login_and_select.pcap",
            "(15, 0, 4236, 0)",
            3,
        ),
    ] {
        let (client, server) = capture_events(name, 1433);
        let mut want_client = vec![
            "Prelogin(Some((17, 10, 1, 0)), Some(0))",
            "Message(18)",
            "Tls(22, true)",
            "Message(18)",
            "Tls(22, true)",
            "Message(18)",
            "Tls(23, false)",
        ];
        want_client.extend(vec!["Message(1)"; batches]);
        let prelogin = format!("Prelogin(Some({server_version}), Some(0))");
        let mut want_server = vec![
            prelogin.as_str(),
            "Message(4)",
            "Tls(22, true)",
            "Message(18)",
            "Tls(22, true)",
            "Message(18)",
            "LoginAck(1946157060)",
            "Message(4)",
        ];
        want_server.extend(vec!["Message(4)"; batches]);
        assert_eq!(kinds(&client), want_client, "{name}");
        assert_eq!(kinds(&server), want_server, "{name}");
    }
}

#[test]
fn capture_sybase_tds5_is_legacy() {
    let (client, server) = capture_events("arkime__tds5.pcap", 3106);
    assert_eq!(client, vec![Ev::Legacy]);
    // Its server speaks TDS 5 tokens: counted, no LOGINACK claimed for it.
    assert_eq!(server, vec![Ev::Message(0x04), Ev::Message(0x04)]);
}

#[test]
fn capture_pre_tds7_login_with_bogus_reply() {
    let (client, server) = capture_events("tdspsql__tds.pcap", 1433);
    assert_eq!(client, vec![Ev::Legacy]);
    assert_eq!(server, vec![Ev::NotTds]);
}

#[test]
fn capture_login7_first_with_sspi() {
    let (client, server) = capture_events("arkime__ntlm_synthetic.pcap", 1433);
    assert_eq!(
        client,
        vec![
            Ev::Login7(0x7400_0004),
            Ev::Message(0x10),
            Ev::Message(0x11)
        ]
    );
    assert_eq!(server, vec![Ev::Message(0x11)]);
}

#[test]
fn capture_joined_mid_stream() {
    let conns = capture_connections("nDPI__mssql_tds.pcap", 1433);
    assert_eq!(conns.len(), 12);
    let mut count = std::collections::BTreeMap::new();
    for (client, server) in &conns {
        for e in client.iter().chain(server) {
            let Ev::Message(t) = e else {
                panic!("unexpected {e:?}")
            };
            *count.entry(*t).or_insert(0) += 1;
        }
    }
    assert_eq!(
        count,
        [(0x01, 3), (0x03, 16), (0x04, 10)].into_iter().collect()
    );
}

#[test]
fn capture_fuzz_is_not_tds() {
    let conns = capture_connections("mrp__tds.pcap", 1433);
    assert_eq!(conns, vec![(vec![], vec![Ev::NotTds])]);
}
