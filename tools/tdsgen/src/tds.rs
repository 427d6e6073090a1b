//! TDS encoders ([MS-TDS]): the 8-byte packet header and message splitting, PRELOGIN option tables,
//! LOGIN7, SQL batch, and the response tokens the generator needs (LOGINACK, ENVCHANGE, INFO, ERROR,
//! COLMETADATA, ROW, DONE). Pure byte builders: no TLS, no TCP, no randomness.

pub const TYPE_SQL_BATCH: u8 = 0x01;
pub const TYPE_RESPONSE: u8 = 0x04;
pub const TYPE_LOGIN7: u8 = 0x10;
pub const TYPE_PRELOGIN: u8 = 0x12;
/// The server answers PRELOGIN in a tabular-result packet.
pub const TYPE_PRELOGIN_RESPONSE: u8 = TYPE_RESPONSE;

pub const STATUS_EOM: u8 = 0x01;
pub const HEADER_LEN: usize = 8;

pub const ENCRYPT_OFF: u8 = 0x00;
pub const ENCRYPT_ON: u8 = 0x01;
pub const ENCRYPT_NOT_SUP: u8 = 0x02;
pub const ENCRYPT_REQ: u8 = 0x03;

pub const PL_VERSION: u8 = 0x00;
pub const PL_ENCRYPTION: u8 = 0x01;
pub const PL_INSTOPT: u8 = 0x02;
pub const PL_THREADID: u8 = 0x03;
pub const PL_MARS: u8 = 0x04;
pub const PL_TRACEID: u8 = 0x05;
pub const PL_TERMINATOR: u8 = 0xff;

/// TDS 7.4, as LOGIN7 and LOGINACK carry it.
pub const TDS_7_4: u32 = 0x7400_0004;

pub const TOKEN_COLMETADATA: u8 = 0x81;
pub const TOKEN_ERROR: u8 = 0xaa;
pub const TOKEN_INFO: u8 = 0xab;
pub const TOKEN_LOGINACK: u8 = 0xad;
pub const TOKEN_ROW: u8 = 0xd1;
pub const TOKEN_ENVCHANGE: u8 = 0xe3;
pub const TOKEN_DONE: u8 = 0xfd;

pub const DONE_FINAL: u16 = 0x0000;
pub const DONE_ERROR: u16 = 0x0002;
pub const DONE_COUNT: u16 = 0x0010;

/// Appends one TDS packet header.
pub fn push_header(out: &mut Vec<u8>, ty: u8, status: u8, len: u16, spid: u16, packet_id: u8) {
    out.push(ty);
    out.push(status);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&spid.to_be_bytes());
    out.push(packet_id);
    out.push(0); // window
}

/// Appends `payload` as one TDS message of type `ty`, split into packets of at most `max_packet`
/// bytes (header included; clamped to 9..=32767 as [MS-TDS] packet sizes are). Packet ids count from
/// 1; the last packet has the end-of-message bit. Returns the number of packets.
pub fn push_message(
    out: &mut Vec<u8>,
    ty: u8,
    spid: u16,
    payload: &[u8],
    max_packet: usize,
) -> usize {
    let room = max_packet.clamp(HEADER_LEN + 1, 32_767) - HEADER_LEN;
    let mut chunks = payload.chunks(room).peekable();
    let mut id: u8 = 1;
    let mut n = 0;
    if payload.is_empty() {
        push_header(out, ty, STATUS_EOM, HEADER_LEN as u16, spid, id);
        return 1;
    }
    while let Some(c) = chunks.next() {
        let status = if chunks.peek().is_none() {
            STATUS_EOM
        } else {
            0
        };
        push_header(out, ty, status, (HEADER_LEN + c.len()) as u16, spid, id);
        out.extend_from_slice(c);
        id = id.wrapping_add(1);
        n += 1;
    }
    n
}

/// A PRELOGIN message body ([MS-TDS] 2.2.6.5).
#[derive(Debug, Clone)]
pub struct Prelogin<'a> {
    /// Client: driver version; server: SQL Server version (major, minor, build BE, sub-build BE).
    pub version: [u8; 6],
    pub encryption: u8,
    /// Client: instance name with its NUL (`[0]` for the default); server: `[0]` = matched.
    pub instopt: &'a [u8],
    /// `None` writes the option with length 0, as SQL Server does in its answer.
    pub thread_id: Option<u32>,
    pub mars: u8,
    /// Connection id (16) + activity id (16) + sequence (4), as msodbc sends it.
    pub trace_id: Option<[u8; 36]>,
}

/// Encodes a PRELOGIN option table followed by the option data.
pub fn prelogin_payload(p: &Prelogin<'_>) -> Vec<u8> {
    let thread = p.thread_id.map(u32::to_be_bytes);
    let mut opts: Vec<(u8, &[u8])> = vec![
        (PL_VERSION, &p.version[..]),
        (PL_ENCRYPTION, std::slice::from_ref(&p.encryption)),
        (PL_INSTOPT, p.instopt),
        (PL_THREADID, thread.as_ref().map_or(&[][..], |t| &t[..])),
        (PL_MARS, std::slice::from_ref(&p.mars)),
    ];
    if let Some(t) = p.trace_id.as_ref() {
        opts.push((PL_TRACEID, &t[..]));
    }
    let table_len = opts.len() * 5 + 1;
    let mut out = Vec::with_capacity(table_len + 64);
    let mut offset = table_len;
    for (token, data) in &opts {
        out.push(*token);
        out.extend_from_slice(&(offset as u16).to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        offset += data.len();
    }
    out.push(PL_TERMINATOR);
    for (_, data) in &opts {
        out.extend_from_slice(data);
    }
    out
}

fn push_ucs2(out: &mut Vec<u8>, s: &str) -> usize {
    let mut n = 0;
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
        n += 1;
    }
    n
}

/// B_VARCHAR: one byte of character count, then UCS-2 LE (cut at 255 characters).
fn push_b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

/// US_VARCHAR: two bytes (LE) of character count, then UCS-2 LE.
fn push_us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(u16::MAX as usize).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

/// The fields of a LOGIN7 record the generator fills in. All strings are fake and not secret.
#[derive(Debug, Clone)]
pub struct Login7<'a> {
    pub tds_version: u32,
    pub packet_size: u32,
    pub client_prog_ver: u32,
    pub client_pid: u32,
    pub host_name: &'a str,
    pub user_name: &'a str,
    pub password: &'a str,
    pub app_name: &'a str,
    pub server_name: &'a str,
    pub library: &'a str,
    pub language: &'a str,
    pub database: &'a str,
    pub client_id: [u8; 6],
}

/// Offset of the variable part of LOGIN7: the fixed part is 94 bytes for TDS 7.2 and later.
pub const LOGIN7_FIXED_LEN: usize = 94;

/// Encodes a LOGIN7 body ([MS-TDS] 2.2.6.4): Length, TDSVersion (LE) at offset 4, …, then the
/// offset/length table and the UCS-2 strings (the password obfuscated as the spec says).
pub fn login7_payload(l: &Login7<'_>) -> Vec<u8> {
    let mut fixed = Vec::with_capacity(LOGIN7_FIXED_LEN);
    let mut data = Vec::with_capacity(256);
    fixed.extend_from_slice(&[0; 4]); // Length, patched below
    fixed.extend_from_slice(&l.tds_version.to_le_bytes());
    fixed.extend_from_slice(&l.packet_size.to_le_bytes());
    fixed.extend_from_slice(&l.client_prog_ver.to_le_bytes());
    fixed.extend_from_slice(&l.client_pid.to_le_bytes());
    fixed.extend_from_slice(&0u32.to_le_bytes()); // ConnectionID
    fixed.extend_from_slice(&[0xe0, 0x03, 0x00, 0x00]); // OptionFlags1/2, TypeFlags, OptionFlags3
    fixed.extend_from_slice(&0i32.to_le_bytes()); // ClientTimeZone
    fixed.extend_from_slice(&0x0409u32.to_le_bytes()); // ClientLCID
    let string = |fixed: &mut Vec<u8>, data: &mut Vec<u8>, s: &str, obfuscate: bool| {
        let off = LOGIN7_FIXED_LEN + data.len();
        let start = data.len();
        let n = push_ucs2(data, s);
        if obfuscate {
            for b in data.iter_mut().skip(start) {
                *b = b.rotate_left(4) ^ 0xa5;
            }
        }
        fixed.extend_from_slice(&(off as u16).to_le_bytes());
        fixed.extend_from_slice(&(n as u16).to_le_bytes());
    };
    string(&mut fixed, &mut data, l.host_name, false);
    string(&mut fixed, &mut data, l.user_name, false);
    string(&mut fixed, &mut data, l.password, true);
    string(&mut fixed, &mut data, l.app_name, false);
    string(&mut fixed, &mut data, l.server_name, false);
    string(&mut fixed, &mut data, "", false); // Unused / extension
    string(&mut fixed, &mut data, l.library, false);
    string(&mut fixed, &mut data, l.language, false);
    string(&mut fixed, &mut data, l.database, false);
    fixed.extend_from_slice(&l.client_id);
    string(&mut fixed, &mut data, "", false); // SSPI
    string(&mut fixed, &mut data, "", false); // AtchDBFile
    string(&mut fixed, &mut data, "", false); // ChangePassword
    fixed.extend_from_slice(&0u32.to_le_bytes()); // cbSSPILong
    debug_assert_eq!(fixed.len(), LOGIN7_FIXED_LEN);
    fixed.extend_from_slice(&data);
    let total = fixed.len() as u32;
    fixed[0..4].copy_from_slice(&total.to_le_bytes());
    fixed
}

/// A token with a two-byte little-endian length after its type byte.
fn push_len_token(out: &mut Vec<u8>, token: u8, body: &[u8]) {
    out.push(token);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

/// LOGINACK (0xAD): interface T-SQL, the TDS version big-endian, program name and version.
pub fn push_loginack(out: &mut Vec<u8>, tds_version: u32, prog_name: &str, prog_version: [u8; 4]) {
    let mut b = Vec::with_capacity(64);
    b.push(1);
    b.extend_from_slice(&tds_version.to_be_bytes());
    push_b_varchar(&mut b, prog_name);
    b.extend_from_slice(&prog_version);
    push_len_token(out, TOKEN_LOGINACK, &b);
}

/// ENVCHANGE (0xE3) with B_VARCHAR new and old values (database 1, language 2, packet size 4).
pub fn push_envchange(out: &mut Vec<u8>, ty: u8, new: &str, old: &str) {
    let mut b = Vec::with_capacity(64);
    b.push(ty);
    push_b_varchar(&mut b, new);
    push_b_varchar(&mut b, old);
    push_len_token(out, TOKEN_ENVCHANGE, &b);
}

/// The shape shared by ERROR (0xAA) and INFO (0xAB).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub number: u32,
    pub state: u8,
    pub class: u8,
    pub text: &'a str,
    pub server: &'a str,
    pub procedure: &'a str,
    pub line: u32,
}

fn push_message_token(out: &mut Vec<u8>, token: u8, m: &Message<'_>) {
    let mut b = Vec::with_capacity(128);
    b.extend_from_slice(&m.number.to_le_bytes());
    b.push(m.state);
    b.push(m.class);
    push_us_varchar(&mut b, m.text);
    push_b_varchar(&mut b, m.server);
    push_b_varchar(&mut b, m.procedure);
    b.extend_from_slice(&m.line.to_le_bytes());
    push_len_token(out, token, &b);
}

pub fn push_error(out: &mut Vec<u8>, m: &Message<'_>) {
    push_message_token(out, TOKEN_ERROR, m);
}

pub fn push_info(out: &mut Vec<u8>, m: &Message<'_>) {
    push_message_token(out, TOKEN_INFO, m);
}

/// DONE (0xFD): status, current command, 8-byte row count (TDS 7.2+).
pub fn push_done(out: &mut Vec<u8>, status: u16, cur_cmd: u16, rows: u64) {
    out.push(TOKEN_DONE);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&cur_cmd.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
}

/// A SQL batch body: ALL_HEADERS with one transaction-descriptor header, then the UCS-2 text.
pub fn sql_batch_payload(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + text.len() * 2);
    out.extend_from_slice(&22u32.to_le_bytes()); // TotalLength
    out.extend_from_slice(&18u32.to_le_bytes()); // HeaderLength
    out.extend_from_slice(&2u16.to_le_bytes()); // transaction descriptor
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // outstanding requests
    push_ucs2(&mut out, text);
    out
}

/// The answer to `SELECT 1`: one unnamed INTN(4) column, one row with the value, DONE with count.
pub fn push_select_int_response(out: &mut Vec<u8>, value: i32) {
    out.push(TOKEN_COLMETADATA);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // UserType
    out.extend_from_slice(&0x0001u16.to_le_bytes()); // Flags: nullable
    out.extend_from_slice(&[0x26, 4]); // INTNTYPE, length 4
    out.push(0); // column name, empty B_VARCHAR
    out.push(TOKEN_ROW);
    out.push(4);
    out.extend_from_slice(&value.to_le_bytes());
    push_done(out, DONE_COUNT, 0x00c1, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        let mut v = Vec::new();
        push_header(&mut v, TYPE_PRELOGIN, STATUS_EOM, 0x0123, 0x0034, 7);
        assert_eq!(v, [0x12, 0x01, 0x01, 0x23, 0x00, 0x34, 0x07, 0x00]);
    }

    #[test]
    fn message_splits_into_packets_with_eom_on_last() {
        let payload: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
        let mut v = Vec::new();
        let n = push_message(&mut v, TYPE_PRELOGIN, 0, &payload, 512);
        assert_eq!(n, 3);
        assert_eq!(v.len(), 1200 + 3 * 8);
        // packet 1: 512 bytes, status 0, id 1
        assert_eq!(&v[0..8], &[0x12, 0x00, 0x02, 0x00, 0, 0, 1, 0]);
        assert_eq!(v[8], 0);
        // packet 2 starts at 512
        assert_eq!(&v[512..520], &[0x12, 0x00, 0x02, 0x00, 0, 0, 2, 0]);
        assert_eq!(v[520], payload[504]);
        // packet 3: 1200 - 1008 = 192 bytes of payload, EOM
        assert_eq!(&v[1024..1032], &[0x12, 0x01, 0x00, 200, 0, 0, 3, 0]);
        assert_eq!(*v.last().unwrap(), payload[1199]);
        // one packet when it fits
        let mut w = Vec::new();
        assert_eq!(
            push_message(&mut w, TYPE_RESPONSE, 0x34, &payload[..100], 4096),
            1
        );
        assert_eq!(&w[0..8], &[0x04, 0x01, 0x00, 108, 0x00, 0x34, 1, 0]);
        // an empty message is one bare header
        let mut e = Vec::new();
        assert_eq!(push_message(&mut e, TYPE_RESPONSE, 0, &[], 4096), 1);
        assert_eq!(e, [0x04, 0x01, 0x00, 0x08, 0, 0, 1, 0]);
    }

    #[test]
    fn prelogin_option_table_offsets() {
        let p = Prelogin {
            version: [18, 0, 0x07, 0xd0, 0, 0],
            encryption: ENCRYPT_ON,
            instopt: &[0],
            thread_id: Some(0x0000_1a2b),
            mars: 0,
            trace_id: None,
        };
        let v = prelogin_payload(&p);
        // 5 options * 5 bytes + terminator = 26; data 6 + 1 + 1 + 4 + 1 = 13
        assert_eq!(v.len(), 39);
        assert_eq!(&v[0..5], &[PL_VERSION, 0, 26, 0, 6]);
        assert_eq!(&v[5..10], &[PL_ENCRYPTION, 0, 32, 0, 1]);
        assert_eq!(&v[10..15], &[PL_INSTOPT, 0, 33, 0, 1]);
        assert_eq!(&v[15..20], &[PL_THREADID, 0, 34, 0, 4]);
        assert_eq!(&v[20..25], &[PL_MARS, 0, 38, 0, 1]);
        assert_eq!(v[25], PL_TERMINATOR);
        assert_eq!(&v[26..32], &[18, 0, 0x07, 0xd0, 0, 0]);
        assert_eq!(v[32], ENCRYPT_ON);
        assert_eq!(&v[34..38], &[0, 0, 0x1a, 0x2b]);
    }

    #[test]
    fn prelogin_server_answer_and_traceid() {
        let server = Prelogin {
            version: [16, 0, 0x03, 0xe8, 0, 0],
            encryption: ENCRYPT_NOT_SUP,
            instopt: &[0],
            thread_id: None,
            mars: 0,
            trace_id: None,
        };
        let v = prelogin_payload(&server);
        assert_eq!(&v[15..20], &[PL_THREADID, 0, 34, 0, 0]);
        assert_eq!(&v[20..25], &[PL_MARS, 0, 34, 0, 1]);
        assert_eq!(v.len(), 35);
        assert_eq!(v[32], ENCRYPT_NOT_SUP);
        let client = Prelogin {
            trace_id: Some([0x5a; 36]),
            thread_id: Some(1),
            ..server
        };
        let v = prelogin_payload(&client);
        // 6 options: table 31 bytes; TRACEID data after MARS at 31 + 13 = 44
        assert_eq!(&v[25..30], &[PL_TRACEID, 0, 44, 0, 36]);
        assert_eq!(v[30], PL_TERMINATOR);
        assert_eq!(v.len(), 31 + 13 + 36);
        assert_eq!(v[44], 0x5a);
    }

    fn u16le(v: &[u8], at: usize) -> usize {
        usize::from(u16::from_le_bytes([v[at], v[at + 1]]))
    }

    #[test]
    fn login7_layout() {
        let l = Login7 {
            tds_version: TDS_7_4,
            packet_size: 4096,
            client_prog_ver: 0x0700_0000,
            client_pid: 4242,
            host_name: "HOST1",
            user_name: "usr",
            password: "pw",
            app_name: "app",
            server_name: "srv",
            library: "lib",
            language: "",
            database: "db",
            client_id: [1, 2, 3, 4, 5, 6],
        };
        let v = login7_payload(&l);
        assert_eq!(
            u32::from_le_bytes(v[0..4].try_into().unwrap()) as usize,
            v.len()
        );
        assert_eq!(&v[4..8], &[0x04, 0x00, 0x00, 0x74]);
        assert_eq!(u32::from_le_bytes(v[8..12].try_into().unwrap()), 4096);
        // HostName at the start of the variable part, 5 characters
        assert_eq!(u16le(&v, 36), 94);
        assert_eq!(u16le(&v, 38), 5);
        assert_eq!(
            &v[94..104],
            "HOST1"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<_>>()
                .as_slice()
        );
        // UserName follows
        assert_eq!(u16le(&v, 40), 104);
        assert_eq!(u16le(&v, 42), 3);
        // Password is obfuscated: 'p' = 0x70 -> nibble swap 0x07 ^ 0xA5 = 0xA2; 0x00 -> 0xA5
        let pw = u16le(&v, 44);
        assert_eq!(pw, 110);
        assert_eq!(&v[pw..pw + 4], &[0xa2, 0xa5, 0x77 ^ 0xa5, 0xa5]);
        assert_eq!(&v[72..78], &[1, 2, 3, 4, 5, 6]);
        // Database "db" is last of the strings
        let db = u16le(&v, 68);
        assert_eq!(u16le(&v, 70), 2);
        assert_eq!(db + 4, v.len());
    }

    #[test]
    fn loginack_done_error_tokens() {
        let mut v = Vec::new();
        push_loginack(&mut v, TDS_7_4, "SQL", [16, 0, 0x03, 0xe8]);
        assert_eq!(v[0], TOKEN_LOGINACK);
        assert_eq!(u16le(&v, 1), v.len() - 3);
        assert_eq!(v[3], 1);
        assert_eq!(&v[4..8], &[0x74, 0x00, 0x00, 0x04]);
        assert_eq!(v[8], 3);
        assert_eq!(&v[v.len() - 4..], &[16, 0, 0x03, 0xe8]);

        let mut d = Vec::new();
        push_done(&mut d, DONE_ERROR, 0, 0);
        assert_eq!(d, [0xfd, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

        let mut e = Vec::new();
        push_error(
            &mut e,
            &Message {
                number: 18456,
                state: 1,
                class: 14,
                text: "x",
                server: "S",
                procedure: "",
                line: 1,
            },
        );
        assert_eq!(e[0], TOKEN_ERROR);
        assert_eq!(u16le(&e, 1), e.len() - 3);
        assert_eq!(u32::from_le_bytes(e[3..7].try_into().unwrap()), 18456);
        assert_eq!(e[7], 1);
        assert_eq!(e[8], 14);
        assert_eq!(u16le(&e, 9), 1);
    }

    #[test]
    fn sql_batch_has_all_headers() {
        let v = sql_batch_payload("select 1");
        assert_eq!(v.len(), 22 + 16);
        assert_eq!(&v[0..4], &[22, 0, 0, 0]);
        assert_eq!(&v[8..10], &[2, 0]);
        assert_eq!(&v[22..24], &[b's', 0]);
        let mut r = Vec::new();
        push_select_int_response(&mut r, 1);
        assert_eq!(r[0], TOKEN_COLMETADATA);
        assert_eq!(r[12], TOKEN_ROW);
        assert_eq!(&r[13..18], &[4, 1, 0, 0, 0]);
        assert_eq!(r[r.len() - 13], TOKEN_DONE);
    }
}
