//! Hello and key-exchange messages: turns the body of one whole ClientHello, ServerHello or
//! ServerKeyExchange (already reassembled, without its 4-byte header) into the facts the stream
//! reports. Parsing is tls-parser's; this module only walks the extension block itself so that one
//! malformed extension costs its own content and not the extensions after it (JA4 needs them all).

use super::ja4::{ja4, Ja4Input};
use super::{is_grease, ClientHello, ServerHello};
use std::sync::Arc;
use tls_parser::{
    parse_dh_params, parse_ecdh_params, parse_tls_client_hello_extension,
    parse_tls_handshake_client_hello, parse_tls_handshake_msg_server_hello,
    parse_tls_server_hello_extension, ECParametersContent, TlsExtension, TlsMessageHandshake,
};

/// At most this many suites are kept in [`ClientHello::suites`] (real clients offer < 100); JA4 and
/// `dhe_offered` still see them all.
pub const MAX_SUITES: usize = 256;
/// At most this many groups are kept in [`ClientHello::groups`].
pub const MAX_GROUPS: usize = 64;
/// At most this many ALPN names are kept in [`ClientHello::alpn`].
pub const MAX_ALPN: usize = 16;
/// Longest SNI host name kept.
pub const MAX_SNI: usize = 255;

/// The random of a HelloRetryRequest (RFC 8446 §4.1.3): SHA-256 of "HelloRetryRequest".
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

const EXT_SERVER_NAME: u16 = 0;
const EXT_SUPPORTED_GROUPS: u16 = 10;
const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_KEY_SHARE: u16 = 51;

/// The signalling suites that are not suites (RFC 5746, RFC 7507).
const SCSV_RENEGOTIATION: u16 = 0x00ff;
const SCSV_FALLBACK: u16 = 0x5600;

/// Splits an extension block into (type, whole extension bytes including its 4-byte header). Stops
/// at the first extension whose length runs past the block.
fn extensions(mut block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let (&[t0, t1, l0, l1], _) = block.split_first_chunk::<4>()?;
        let whole_len = 4 + usize::from(u16::from_be_bytes([l0, l1]));
        let whole = block.get(..whole_len)?;
        block = block.get(whole_len..).unwrap_or_default();
        Some((u16::from_be_bytes([t0, t1]), whole))
    })
}

/// Printable ASCII without space, as host names and protocol names are.
fn printable(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// The IANA name of a suite, when tls-parser knows it.
fn iana_name(id: u16) -> Option<&'static str> {
    super::suite_info(id).map(|(name, _)| name)
}

/// ClientHello facts remembered per thread before the memo starts afresh.
const HELLO_MEMO_ENTRIES: usize = 1024;

#[derive(Default)]
struct HelloMemo {
    /// Scratch space for the look-up key.
    key: Vec<u8>,
    known: std::collections::HashMap<Box<[u8]>, Arc<ClientHello>, ahash::RandomState>,
}

thread_local! {
    static HELLO_MEMO: std::cell::RefCell<HelloMemo> = std::cell::RefCell::new(HelloMemo::default());
}

/// A ClientHello body → its facts, shared: the clients of one stack send the same offer on every
/// connection, so facts are remembered per thread, keyed by [`memo_key`].
pub fn client_hello_shared(body: &[u8]) -> Option<Arc<ClientHello>> {
    HELLO_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        let HelloMemo { key, known } = &mut *memo;
        key.clear();
        if memo_key(body, key).is_none() {
            return client_hello(body).map(Arc::new);
        }
        if let Some(facts) = known.get(key.as_slice()) {
            return Some(Arc::clone(facts));
        }
        let facts = Arc::new(client_hello(body)?);
        if known.len() >= HELLO_MEMO_ENTRIES {
            known.clear();
        }
        known.insert(key.as_slice().into(), Arc::clone(&facts));
        Some(facts)
    })
}

/// Everything of a ClientHello body that its facts depend on: the legacy version, the cipher suites,
/// the compression methods, and every extension's header, with the contents of the extensions that
/// are read (server_name, supported_groups, signature_algorithms, ALPN, supported_versions). Left
/// out: the random, the session id and the other extensions' contents (key shares, tickets,
/// padding), which differ on every connection. Two bodies with the same key have the same structure
/// byte for byte, so they parse alike. `None` when the body is too short for its own lengths.
fn memo_key(body: &[u8], key: &mut Vec<u8>) -> Option<()> {
    let version = body.get(..2)?;
    let sid_len = usize::from(*body.get(34)?);
    let rest = body.get(35 + sid_len..)?;
    let (suites_len, rest) = rest.split_first_chunk::<2>()?;
    let suites = rest.get(..usize::from(u16::from_be_bytes(*suites_len)))?;
    let rest = rest.get(suites.len()..)?;
    let comp_len = usize::from(*rest.first()?);
    let comp = rest.get(..1 + comp_len)?;
    let rest = rest.get(comp.len()..)?;
    key.extend_from_slice(version);
    key.extend_from_slice(suites_len);
    key.extend_from_slice(suites);
    key.extend_from_slice(comp);
    key.extend_from_slice(rest.get(..2).unwrap_or_default());
    let block = match rest.split_first_chunk::<2>() {
        Some((len, exts)) => exts.get(..usize::from(u16::from_be_bytes(*len)))?,
        None => &[],
    };
    // Anything after the extension block changes how the body parses: keep its length.
    let trailing = rest.len().saturating_sub(2 + block.len());
    key.extend_from_slice(&u32::try_from(trailing).unwrap_or(u32::MAX).to_be_bytes());
    let mut walked = 0;
    for (ty, whole) in extensions(block) {
        walked += whole.len();
        match ty {
            EXT_SERVER_NAME
            | EXT_SUPPORTED_GROUPS
            | EXT_SIGNATURE_ALGORITHMS
            | EXT_ALPN
            | EXT_SUPPORTED_VERSIONS => key.extend_from_slice(whole),
            _ => key.extend_from_slice(whole.get(..4)?),
        }
    }
    // A block whose last extension overruns it: not memoised (parsed each time).
    (walked == block.len()).then_some(())
}

/// A ClientHello body → its facts, or `None` when it does not parse.
pub fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let (_, ch) = parse_tls_handshake_client_hello(body).ok()?;
    let legacy_version = ch.version.0;
    let raw_suites: Vec<u16> = ch.ciphers.iter().map(|c| c.0).collect();

    let mut ext_types: Vec<u16> = Vec::new();
    let mut sigalgs: Vec<u16> = Vec::new();
    let mut versions: Option<Vec<u16>> = None;
    let mut first_alpn: Option<&[u8]> = None;
    let mut alpn: Vec<String> = Vec::new();
    let mut groups: Option<Vec<u16>> = None;
    let mut sni: Option<Option<String>> = None;
    let mut alpn_seen = false;
    let mut sigalgs_seen = false;

    for (ty, whole) in extensions(ch.ext.unwrap_or_default()) {
        ext_types.push(ty);
        let wanted = match ty {
            EXT_SERVER_NAME => sni.is_none(),
            EXT_SUPPORTED_GROUPS => groups.is_none(),
            EXT_SIGNATURE_ALGORITHMS => !sigalgs_seen,
            EXT_ALPN => !alpn_seen,
            // A ClientHello's list has odd length (1 + 2n); tls-parser reads a 2-byte one as a
            // ServerHello's single version, which would invent a version.
            EXT_SUPPORTED_VERSIONS => versions.is_none() && whole.len() != 6,
            _ => false,
        };
        if !wanted {
            continue;
        }
        let Ok((_, ext)) = parse_tls_client_hello_extension(whole) else {
            continue;
        };
        match ext {
            TlsExtension::SNI(names) => {
                let host = names.iter().find(|(t, _)| t.0 == 0).map(|&(_, name)| name);
                sni = Some(host.filter(|h| h.len() <= MAX_SNI).and_then(printable));
            }
            TlsExtension::EllipticCurves(list) => {
                groups = Some(
                    list.iter()
                        .map(|g| g.0)
                        .filter(|&g| !is_grease(g))
                        .take(MAX_GROUPS)
                        .collect(),
                );
            }
            TlsExtension::SignatureAlgorithms(list) => {
                sigalgs_seen = true;
                sigalgs = list;
            }
            TlsExtension::ALPN(names) => {
                alpn_seen = true;
                first_alpn = names.first().copied();
                alpn = names
                    .iter()
                    .filter_map(|n| printable(n))
                    .take(MAX_ALPN)
                    .collect();
            }
            TlsExtension::SupportedVersions(list) => {
                versions = Some(
                    list.iter()
                        .map(|v| v.0)
                        .filter(|&v| !is_grease(v))
                        .collect(),
                );
            }
            _ => {}
        }
    }

    let versions = versions.unwrap_or_default();
    let max_version = versions.iter().copied().max().unwrap_or(legacy_version);
    let min_version = versions.iter().copied().min().unwrap_or(legacy_version);

    let dhe_offered = raw_suites
        .iter()
        .any(|&s| super::kx_of_suite(s) == super::KeyExchange::Dhe);
    let suites = raw_suites
        .iter()
        .copied()
        .filter(|&s| !is_grease(s) && s != SCSV_RENEGOTIATION && s != SCSV_FALLBACK)
        .take(MAX_SUITES)
        .collect();
    let fingerprint = ja4(&Ja4Input {
        version: max_version,
        suites: &raw_suites,
        extensions: &ext_types,
        signature_algorithms: &sigalgs,
        first_alpn,
    });

    Some(ClientHello {
        legacy_version,
        max_version,
        min_version,
        suites,
        dhe_offered,
        sni: sni.flatten(),
        alpn,
        groups: groups.unwrap_or_default(),
        ja4: fingerprint,
    })
}

/// A ServerHello body → its facts, or `None` when it does not parse.
pub fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let (legacy_version, random, suite, ext) = match parse_tls_handshake_msg_server_hello(body) {
        Ok((_, TlsMessageHandshake::ServerHello(sh))) => {
            (sh.version.0, sh.random, sh.cipher.0, sh.ext)
        }
        Ok((_, TlsMessageHandshake::ServerHelloV13Draft18(sh))) => {
            (sh.version.0, sh.random, sh.cipher.0, sh.ext)
        }
        _ => return None,
    };
    let mut selected: Option<u16> = None;
    let mut key_share_group: Option<u16> = None;
    for (ty, whole) in extensions(ext.unwrap_or_default()) {
        match ty {
            EXT_SUPPORTED_VERSIONS if selected.is_none() => {
                if let Ok((_, TlsExtension::SupportedVersions(list))) =
                    parse_tls_server_hello_extension(whole)
                {
                    // A ServerHello selects exactly one version.
                    if let [v] = list.as_slice() {
                        selected = Some(v.0);
                    }
                }
            }
            EXT_KEY_SHARE if key_share_group.is_none() => {
                // ServerHello: group + key; HelloRetryRequest: the selected group alone.
                if let Ok((_, TlsExtension::KeyShare(&[g0, g1, ..]))) =
                    parse_tls_server_hello_extension(whole)
                {
                    key_share_group = Some(u16::from_be_bytes([g0, g1]));
                }
            }
            _ => {}
        }
    }
    Some(ServerHello {
        version: selected.unwrap_or(legacy_version),
        suite,
        hello_retry: random == HRR_RANDOM,
        key_share_group,
    })
}

/// What a ServerKeyExchange carries, by the key exchange of the negotiated suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkeKind {
    /// ServerDHParams (DHE, DH_anon).
    Dh,
    /// ServerECDHParams (ECDHE, ECDH_anon).
    Ecdh,
    /// RSA export, PSK variants, SRP, unknown: not read.
    Other,
}

fn ske_kind(suite: u16) -> SkeKind {
    let Some(name) = iana_name(suite) else {
        return SkeKind::Other;
    };
    if name.contains("_PSK_") {
        // (EC)DHE_PSK: a PSK identity hint precedes the parameters.
        SkeKind::Other
    } else if name.starts_with("TLS_DHE_") || name.starts_with("TLS_DH_anon_") {
        SkeKind::Dh
    } else if name.starts_with("TLS_ECDHE_") || name.starts_with("TLS_ECDH_anon_") {
        SkeKind::Ecdh
    } else {
        SkeKind::Other
    }
}

/// Number of significant bits of a big-endian unsigned integer (leading zero bytes and bits
/// ignored); `None` when it is zero.
pub fn bit_length(be: &[u8]) -> Option<u32> {
    let start = be.iter().position(|&b| b != 0)?;
    let digits = be.get(start..)?;
    let first = *digits.first()?;
    let whole_bytes = u32::try_from(digits.len() - 1).ok()?;
    whole_bytes
        .checked_mul(8)?
        .checked_add(8 - first.leading_zeros())
}

/// A ServerKeyExchange body → (`dh_bits`, `curve`), knowing the suite the server chose. `Err` when
/// the parameters the suite implies do not parse.
pub fn server_key_exchange(
    body: &[u8],
    suite: Option<u16>,
) -> Result<(Option<u32>, Option<u16>), ()> {
    match suite.map_or(SkeKind::Other, ske_kind) {
        SkeKind::Dh => {
            let (_, params) = parse_dh_params(body).map_err(|_| ())?;
            Ok((bit_length(params.dh_p), None))
        }
        SkeKind::Ecdh => {
            let (_, params) = parse_ecdh_params(body).map_err(|_| ())?;
            match params.curve_params.params_content {
                ECParametersContent::NamedGroup(g) => Ok((None, Some(g.0))),
                _ => Ok((None, None)),
            }
        }
        SkeKind::Other => Ok((None, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_strips_leading_zeros() {
        assert_eq!(bit_length(&[]), None);
        assert_eq!(bit_length(&[0, 0]), None);
        assert_eq!(bit_length(&[1]), Some(1));
        assert_eq!(bit_length(&[0x80]), Some(8));
        assert_eq!(bit_length(&[0, 0x80, 0]), Some(16));
        assert_eq!(bit_length(&[0, 0, 0x7f, 0xff]), Some(15));
        let mut p = vec![0u8; 257];
        p[1] = 0xff;
        assert_eq!(bit_length(&p), Some(2048));
    }

    #[test]
    fn ske_kind_by_suite_name() {
        assert_eq!(ske_kind(0x0033), SkeKind::Dh); // TLS_DHE_RSA_WITH_AES_128_CBC_SHA
        assert_eq!(ske_kind(0x0034), SkeKind::Dh); // TLS_DH_anon_WITH_AES_128_CBC_SHA
        assert_eq!(ske_kind(0xc02f), SkeKind::Ecdh); // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        assert_eq!(ske_kind(0xc018), SkeKind::Ecdh); // TLS_ECDH_anon_WITH_AES_128_CBC_SHA
        assert_eq!(ske_kind(0x0090), SkeKind::Other); // TLS_DHE_PSK_WITH_AES_128_CBC_SHA
        assert_eq!(ske_kind(0xc035), SkeKind::Other); // TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA
        assert_eq!(ske_kind(0x002f), SkeKind::Other); // TLS_RSA_WITH_AES_128_CBC_SHA
        assert_eq!(ske_kind(0x1301), SkeKind::Other);
        assert_eq!(ske_kind(0xeeee), SkeKind::Other);
    }

    #[test]
    fn extension_walk_stops_at_an_overrun() {
        let block = [
            0x00, 0x17, 0x00, 0x00, 0xff, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0d, 0x00, 0x09, 0x01,
        ];
        let got: Vec<(u16, usize)> = extensions(&block).map(|(t, w)| (t, w.len())).collect();
        assert_eq!(got, vec![(0x0017, 4), (0xff01, 5)]);
    }
}
