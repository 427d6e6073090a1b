//! JA4 TLS client fingerprint (FoxIO, BSD-3-Clause; JA4 only: JA4S/JA4X carry another licence).
//!
//! Implements `technical_details/JA4.md` of github.com/FoxIO-LLC/ja4 for TLS over TCP: the `a` part
//! (`t`, version, SNI, cipher and extension counts, ALPN), `b` (truncated SHA-256 of the sorted
//! cipher list) and `c` (truncated SHA-256 of the sorted extension list, SNI and ALPN left out,
//! followed by the signature algorithms in their original order). GREASE values are ignored
//! everywhere; SCSVs are kept (the specification counts them). Knows nothing of records or streams.

use super::is_grease;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The parts of a ClientHello that JA4 reads, as they were on the wire (GREASE still in: it is
/// removed here).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ja4Input<'a> {
    /// Highest non-GREASE `supported_versions` entry, else the ClientHello's `legacy_version`.
    pub version: u16,
    /// Cipher suites in wire order, SCSVs included.
    pub suites: &'a [u16],
    /// Extension types in wire order.
    pub extensions: &'a [u16],
    /// `signature_algorithms` entries in wire order.
    pub signature_algorithms: &'a [u16],
    /// The first protocol name of the ALPN extension, as sent.
    pub first_alpn: Option<&'a [u8]>,
}

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
/// The value of a hashed part whose list is empty.
const EMPTY_HASH: &str = "000000000000";

/// The JA4 fingerprint ("t13d1516h2_8daaf6152771_e5627efa2ab1").
pub fn ja4(input: &Ja4Input<'_>) -> String {
    let mut suites: Vec<u16> = input
        .suites
        .iter()
        .copied()
        .filter(|&s| !is_grease(s))
        .collect();
    let mut exts: Vec<u16> = input
        .extensions
        .iter()
        .copied()
        .filter(|&e| !is_grease(e))
        .collect();
    let sigalgs: Vec<u16> = input
        .signature_algorithms
        .iter()
        .copied()
        .filter(|&s| !is_grease(s))
        .collect();

    let sni = if exts.contains(&EXT_SERVER_NAME) {
        'd'
    } else {
        'i'
    };
    let [alpn_first, alpn_last] = alpn_chars(input.first_alpn);
    let mut out = String::with_capacity(36);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "t{}{}{:02}{:02}{}{}_",
        version_code(input.version),
        sni,
        suites.len().min(99),
        exts.len().min(99),
        char::from(alpn_first),
        char::from(alpn_last),
    );

    suites.sort_unstable();
    out.push_str(&hash12(&suites, &[]));
    out.push('_');

    exts.retain(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN);
    exts.sort_unstable();
    out.push_str(&hash12(&exts, &sigalgs));
    out
}

/// The two-character version code.
fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        _ => "00",
    }
}

/// First and last character of the first ALPN value: the characters themselves when both are ASCII
/// alphanumeric, else the first and last hex digits of the value; "00" when there is none.
fn alpn_chars(first: Option<&[u8]>) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (Some(&a), Some(&z)) = (first.and_then(<[u8]>::first), first.and_then(<[u8]>::last)) else {
        return *b"00";
    };
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        [a, z]
    } else {
        [HEX[usize::from(a >> 4)], HEX[usize::from(z & 0x0f)]]
    }
}

/// First 12 hex digits of SHA-256 over `list` (4-digit lowercase hex, comma-separated), followed by
/// `_` and `tail` the same way when `tail` is not empty. An empty `list` gives "000000000000".
///
/// Clients of one stack send the same lists on every connection, so results are remembered per
/// thread, keyed by the lists themselves (never by a hash of them).
fn hash12(list: &[u16], tail: &[u16]) -> String {
    if list.is_empty() {
        return EMPTY_HASH.to_string();
    }
    MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        let Memo { key, known } = &mut *memo;
        key.clear();
        key.push(u16::try_from(list.len()).unwrap_or(u16::MAX));
        key.extend_from_slice(list);
        key.extend_from_slice(tail);
        if let Some(hex) = known.get(key.as_slice()) {
            return hex.clone();
        }
        let hex = compute_hash12(list, tail);
        if known.len() >= MEMO_ENTRIES {
            known.clear();
        }
        known.insert(key.as_slice().into(), hex.clone());
        hex
    })
}

/// Distinct lists remembered per thread before the memo starts afresh.
const MEMO_ENTRIES: usize = 4096;

#[derive(Default)]
struct Memo {
    /// Scratch space for the look-up key: the length of `list`, `list`, then `tail`.
    key: Vec<u16>,
    known: std::collections::HashMap<Box<[u16]>, String, ahash::RandomState>,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::default());
}

fn compute_hash12(list: &[u16], tail: &[u16]) -> String {
    // Written out once, then hashed in one go (this runs for every ClientHello).
    let mut text = Vec::with_capacity((list.len() + tail.len()) * 5 + 1);
    push_hex_list(&mut text, list);
    if !tail.is_empty() {
        text.push(b'_');
        push_hex_list(&mut text, tail);
    }
    let sha = Sha256::new_with_prefix(&text);
    let digest = sha.finalize();
    let mut hex = String::with_capacity(12);
    for &b in digest.iter().take(6) {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `list` as 4-digit lowercase hex, comma-separated.
fn push_hex_list(text: &mut Vec<u8>, list: &[u16]) {
    for (i, &v) in list.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(&[
            HEX[usize::from(v >> 12)],
            HEX[usize::from((v >> 8) & 0xf)],
            HEX[usize::from((v >> 4) & 0xf)],
            HEX[usize::from(v & 0xf)],
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of technical_details/JA4.md (FoxIO-LLC/ja4): the raw inputs in wire order.
    const SPEC_SUITES: [u16; 15] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ];
    const SPEC_EXTS: [u16; 16] = [
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
        0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
    ];
    const SPEC_SIGALGS: [u16; 8] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];

    #[test]
    fn spec_example_is_reproduced() {
        let input = Ja4Input {
            version: 0x0304,
            suites: &SPEC_SUITES,
            extensions: &SPEC_EXTS,
            signature_algorithms: &SPEC_SIGALGS,
            first_alpn: Some(b"h2"),
        };
        assert_eq!(ja4(&input), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn spec_example_with_grease_everywhere_is_unchanged() {
        let mut suites = vec![0x0a0a];
        suites.extend_from_slice(&SPEC_SUITES);
        let mut exts = vec![0x3a3a];
        exts.extend_from_slice(&SPEC_EXTS);
        exts.push(0xfafa);
        let mut sigalgs = vec![0x1a1a];
        sigalgs.extend_from_slice(&SPEC_SIGALGS);
        let input = Ja4Input {
            version: 0x0304,
            suites: &suites,
            extensions: &exts,
            signature_algorithms: &sigalgs,
            first_alpn: Some(b"h2"),
        };
        assert_eq!(ja4(&input), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn spec_example_without_signature_algorithms() {
        // The specification: "0005,000a,…,4469,ff01 = 6d807ffa2a79" when no signature algorithms.
        let input = Ja4Input {
            version: 0x0304,
            suites: &SPEC_SUITES,
            extensions: &SPEC_EXTS,
            signature_algorithms: &[],
            first_alpn: Some(b"h2"),
        };
        assert_eq!(ja4(&input), "t13d1516h2_8daaf6152771_6d807ffa2a79");
    }

    #[test]
    fn empty_lists_give_zero_hashes_and_no_sni_no_alpn() {
        let input = Ja4Input {
            version: 0x0303,
            suites: &[0x2a2a],
            extensions: &[0x0010, 0x0000],
            signature_algorithms: &[],
            first_alpn: None,
        };
        // SNI present (d), 0 suites, 2 extensions, but nothing left to hash.
        assert_eq!(ja4(&input), "t12d000200_000000000000_000000000000");
        let input = Ja4Input {
            version: 0x0301,
            ..Default::default()
        };
        assert_eq!(ja4(&input), "t10i000000_000000000000_000000000000");
    }

    #[test]
    fn scsv_is_counted_and_hashed() {
        let with = Ja4Input {
            version: 0x0303,
            suites: &[0x002f, 0x00ff],
            ..Default::default()
        };
        let without = Ja4Input {
            version: 0x0303,
            suites: &[0x002f],
            ..Default::default()
        };
        let a = ja4(&with);
        let b = ja4(&without);
        assert!(a.starts_with("t12i0200"), "{a}");
        assert!(b.starts_with("t12i0100"), "{b}");
        assert_ne!(a[11..23], b[11..23]);
    }

    #[test]
    fn counts_are_capped_at_99() {
        let suites: Vec<u16> = (1..=150).collect();
        let exts: Vec<u16> = (0x0100..0x0100 + 120).collect();
        let input = Ja4Input {
            version: 0x0303,
            suites: &suites,
            extensions: &exts,
            ..Default::default()
        };
        assert!(ja4(&input).starts_with("t12i999900_"));
    }

    #[test]
    fn version_codes() {
        for (v, code) in [
            (0x0304, "13"),
            (0x0303, "12"),
            (0x0302, "11"),
            (0x0301, "10"),
            (0x0300, "s3"),
            (0x0002, "s2"),
            (0x7f1c, "00"),
            (0xfefd, "00"),
        ] {
            assert_eq!(version_code(v), code);
        }
    }

    #[test]
    fn alpn_rules_of_the_specification() {
        assert_eq!(&alpn_chars(None), b"00");
        assert_eq!(&alpn_chars(Some(b"")), b"00");
        assert_eq!(&alpn_chars(Some(b"h2")), b"h2");
        assert_eq!(&alpn_chars(Some(b"http/1.1")), b"h1");
        assert_eq!(&alpn_chars(Some(b"tds/8.0")), b"t0");
        // A single character is both first and last.
        assert_eq!(&alpn_chars(Some(b"x")), b"xx");
        // The specification's hex examples.
        assert_eq!(&alpn_chars(Some(&[0xab])), b"ab");
        assert_eq!(&alpn_chars(Some(&[0xab, 0xcd])), b"ad");
        assert_eq!(&alpn_chars(Some(&[0x30, 0xab])), b"3b");
        assert_eq!(&alpn_chars(Some(&[0x30, 0x31, 0xab, 0xcd])), b"3d");
        assert_eq!(&alpn_chars(Some(&[0x30, 0xab, 0xcd, 0x31])), b"01");
    }
}
