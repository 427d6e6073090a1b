//! The PRELOGIN option table ([MS-TDS] 2.2.6.5): a list of (token u8, offset u16 BE, length u16 BE)
//! entries ended by 0xFF, offsets relative to the start of the payload, then the option data. Every
//! entry is checked against the payload before any of it is read; a table that does not hold together
//! yields nothing.

use super::Prelogin;

const VERSION: u8 = 0x00;
const ENCRYPTION: u8 = 0x01;
const INSTOPT: u8 = 0x02;
const MARS: u8 = 0x04;
const TRACEID: u8 = 0x05;
const FEDAUTHREQUIRED: u8 = 0x06;
const NONCEOPT: u8 = 0x07;
const TERMINATOR: u8 = 0xFF;

const ENTRY_LEN: usize = 5;
/// INSTOPT longer than this is not kept (instance names are at most 16 characters in practice).
const MAX_INSTANCE_LEN: usize = 64;

/// Parses a whole PRELOGIN payload. `None` when the table is malformed: no terminator, an entry cut
/// short, or an option whose data lies outside the payload or inside the table itself.
///
/// VERSION is 6 bytes: major (u8), minor (u8), build (u16 BE), sub-build (u16). [MS-TDS] calls the
/// first four bytes UL_VERSION in network byte order; real servers agree (SQL Server 2019 sends
/// `0f 00 10 8c` = 15.0.4236). For the sub-build the spec gives no byte order and implementations
/// differ (tedious reads it big-endian, Wireshark little-endian); every capture at hand has 0 there.
/// It is read big-endian, like the build.
pub(super) fn parse(p: &[u8]) -> Option<Prelogin> {
    // First pass: find the end of the table, so option data can be checked against it.
    let mut pos = 0usize;
    loop {
        match p.get(pos) {
            None => return None,
            Some(&TERMINATOR) => break,
            Some(_) => {
                p.get(pos..pos.checked_add(ENTRY_LEN)?)?;
                pos += ENTRY_LEN;
            }
        }
    }
    let table_end = pos + 1;

    let mut out = Prelogin::default();
    let mut seen = 0u16; // options already taken (the first occurrence of each wins)
    for entry in p.get(..pos)?.chunks_exact(ENTRY_LEN) {
        let &[token, o0, o1, l0, l1] = entry else {
            return None;
        };
        let offset = usize::from(u16::from_be_bytes([o0, o1]));
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let data = p.get(offset..offset.checked_add(len)?)?;
        if len > 0 && offset < table_end {
            return None;
        }
        if token < 16 {
            let bit = 1u16 << token;
            if seen & bit != 0 {
                continue;
            }
            seen |= bit;
        }
        match token {
            VERSION => {
                if let &[major, minor, b0, b1, s0, s1, ..] = data {
                    out.version = Some((
                        major,
                        minor,
                        u16::from_be_bytes([b0, b1]),
                        u16::from_be_bytes([s0, s1]),
                    ));
                }
            }
            ENCRYPTION => out.encryption = data.first().copied(),
            INSTOPT => out.instance = instance_name(data),
            MARS => out.mars = data.first().copied(),
            // Servers echo TRACEID with no data: only data counts as a trace id.
            TRACEID => out.has_trace_id = len > 0,
            FEDAUTHREQUIRED => out.fedauth_required = data.first().copied(),
            NONCEOPT => out.has_nonce = len > 0,
            _ => {} // THREADID and unknown options: checked, not kept
        }
    }
    Some(out)
}

/// INSTOPT: a NUL-terminated name; kept only if printable ASCII and at most 64 characters.
fn instance_name(data: &[u8]) -> Option<String> {
    let nul = data.iter().position(|&b| b == 0)?;
    let name = data.get(..nul)?;
    if name.len() > MAX_INSTANCE_LEN || !name.iter().all(|b| (0x20..=0x7E).contains(b)) {
        return None;
    }
    Some(name.iter().map(|&b| char::from(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::tests::prelogin_payload as payload;

    #[test]
    fn client_options() {
        let p = payload(&[
            (VERSION, &[0x11, 0x0A, 0x00, 0x01, 0x00, 0x00]),
            (ENCRYPTION, &[0x01]),
            (INSTOPT, b"MSSQLServer\0"),
            (0x03, &[1, 2, 3, 4]),
            (MARS, &[0x01]),
            (TRACEID, &[0xAB; 36]),
        ]);
        let got = parse(&p).expect("valid table");
        assert_eq!(got.version, Some((17, 10, 1, 0)));
        assert_eq!(got.encryption, Some(1));
        assert_eq!(got.instance.as_deref(), Some("MSSQLServer"));
        assert_eq!(got.mars, Some(1));
        assert!(got.has_trace_id);
        assert!(!got.has_nonce);
        assert_eq!(got.fedauth_required, None);
    }

    #[test]
    fn real_server_response() {
        // SQL Server 2019 (15.0.4236), from the 0x5CE-beats capture.
        let p = [
            0x00, 0x00, 0x1f, 0x00, 0x06, 0x01, 0x00, 0x25, 0x00, 0x01, 0x02, 0x00, 0x26, 0x00,
            0x01, 0x03, 0x00, 0x27, 0x00, 0x00, 0x04, 0x00, 0x27, 0x00, 0x01, 0x05, 0x00, 0x28,
            0x00, 0x00, 0xff, 0x0f, 0x00, 0x10, 0x8c, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let got = parse(&p).expect("valid table");
        assert_eq!(got.version, Some((15, 0, 4236, 0)));
        assert_eq!(got.encryption, Some(0));
        assert_eq!(got.instance.as_deref(), Some(""));
        assert_eq!(got.mars, Some(0));
        assert!(!got.has_trace_id, "TRACEID echoed with length 0");
    }

    #[test]
    fn fedauth_nonce_and_first_wins() {
        let p = payload(&[
            (ENCRYPTION, &[0x03]),
            (ENCRYPTION, &[0x00]),
            (FEDAUTHREQUIRED, &[0x01]),
            (NONCEOPT, &[0x55; 32]),
            (0x42, &[9, 9]),
        ]);
        let got = parse(&p).expect("valid table");
        assert_eq!(got.encryption, Some(3));
        assert_eq!(got.fedauth_required, Some(1));
        assert!(got.has_nonce);
        assert_eq!(got.version, None);
    }

    #[test]
    fn bad_fields_are_none() {
        let long = [b'a'; 65];
        let mut long_nul = long.to_vec();
        long_nul.push(0);
        for (inst, want) in [
            (&b"SQL\x01X\0"[..], None),
            (&b"NOTERMINATOR"[..], None),
            (&long_nul[..], None),
            (&b"OK\0junk\xff"[..], Some("OK")),
        ] {
            let p = payload(&[(VERSION, &[1, 2, 3]), (INSTOPT, inst), (ENCRYPTION, &[])]);
            let got = parse(&p).expect("valid table");
            assert_eq!(got.instance.as_deref(), want);
            assert_eq!(got.version, None, "short VERSION");
            assert_eq!(got.encryption, None, "empty ENCRYPTION");
        }
    }

    #[test]
    fn malformed_tables() {
        let good = payload(&[(VERSION, &[1, 2, 3, 4, 5, 6]), (ENCRYPTION, &[2])]);
        assert!(parse(&good).is_some());
        // No terminator, entry cut short.
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x00, 0x00, 0x06]), None);
        assert_eq!(parse(&[0x00, 0x00, 0x06, 0x00, 0x01]), None);
        // Every truncation of a good table is malformed (its data is cut off).
        for n in 0..good.len() {
            assert_eq!(parse(&good[..n]), None, "truncated to {n}");
        }
        // Data past the end of the payload.
        let mut bad = good.clone();
        bad[2] = 0xF0;
        assert_eq!(parse(&bad), None);
        // Data overlapping the table.
        let mut bad = good.clone();
        bad[2] = 0x01;
        assert_eq!(parse(&bad), None);
        // Offsets at the maximum: no overflow.
        assert_eq!(parse(&[0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        // An empty table is a valid, empty PRELOGIN.
        assert_eq!(parse(&[0xFF]), Some(Prelogin::default()));
    }
}
