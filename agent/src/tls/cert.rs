//! Certificate facts: parses one DER certificate with x509-parser and keeps what a validating
//! client would judge it by (names, signature algorithm and hash, key type and size, validity, SAN,
//! serverAuth EKU). Bounded output: names capped, SAN list capped. Never verifies anything.

use super::Certificate;
use std::sync::Arc;
use x509_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::der_parser::der::parse_der_integer;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{Oid, OID_X509_EXT_EXTENDED_KEY_USAGE};
use x509_parser::parse_x509_certificate;
use x509_parser::prelude::{FromDer, X509Name};
use x509_parser::public_key::RSAPublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AttributeTypeAndValue, SubjectPublicKeyInfo};

use super::hello::bit_length;

/// Subject and issuer strings are cut to this many characters.
pub const MAX_NAME_CHARS: usize = 256;
/// At most this many SAN DNS names are kept (the CN comes on top).
pub const MAX_SAN_NAMES: usize = 16;
/// Longest DNS name kept.
pub const MAX_DNS_NAME: usize = 255;

/// Certificates remembered per thread: a server shows the same certificate on every connection, and
/// parsing it costs more than the rest of the handshake.
const CACHE_ENTRIES: usize = 32;

/// DER bytes and their facts, least recently used first.
type Cache = Vec<(Box<[u8]>, Option<Arc<Certificate>>)>;

thread_local! {
    static CACHE: std::cell::RefCell<Cache> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The facts of one DER certificate (shared), or `None` when it does not parse.
pub fn certificate(der: &[u8]) -> Option<Arc<Certificate>> {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(i) = cache.iter().position(|(d, _)| **d == *der) {
            // Most recently used last.
            let hit = cache.remove(i);
            let facts = hit.1.clone();
            cache.push(hit);
            return facts;
        }
        let facts = parse(der).map(Arc::new);
        if cache.len() >= CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((der.into(), facts.clone()));
        facts
    })
}

fn parse(der: &[u8]) -> Option<Certificate> {
    let (_, cert) = parse_x509_certificate(der).ok()?;
    let tbs = &cert.tbs_certificate;

    let subject_full = rfc4514(&tbs.subject);
    let issuer_full = rfc4514(&tbs.issuer);
    let self_signed = tbs.subject.as_raw() == tbs.issuer.as_raw() || subject_full == issuer_full;

    let sig_oid = cert.signature_algorithm.algorithm.to_id_string();
    let (sig_name, mut signature_hash) = signature_algorithm(&sig_oid);
    if sig_oid == OID_RSASSA_PSS {
        signature_hash = cert
            .signature_algorithm
            .parameters
            .as_ref()
            .and_then(|p| RsaSsaPssParams::try_from(p).ok())
            .and_then(|p| hash_name(&p.hash_algorithm_oid().to_id_string()));
    }
    let (key_type, key_bits) = public_key(&tbs.subject_pki);

    let mut dns_names: Vec<String> = Vec::new();
    let mut server_auth_eku = None;
    let mut san_seen = false;
    for ext in tbs.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) if !san_seen => {
                san_seen = true;
                let names = san.general_names.iter().filter_map(|g| match g {
                    GeneralName::DNSName(n) => dns_name(n.as_bytes()),
                    _ => None,
                });
                dns_names.extend(names.take(MAX_SAN_NAMES));
            }
            ParsedExtension::ExtendedKeyUsage(eku) if server_auth_eku.is_none() => {
                server_auth_eku = Some(eku.server_auth || eku.any);
            }
            // An extendedKeyUsage that does not parse does not allow serverAuth either.
            _ if ext.oid == OID_X509_EXT_EXTENDED_KEY_USAGE && server_auth_eku.is_none() => {
                server_auth_eku = Some(false);
            }
            _ => {}
        }
    }
    let cn = tbs
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| decode_string(cn.attr_value()).and_then(|s| dns_name(s.as_bytes())));
    if let Some(cn) = cn {
        if !dns_names.contains(&cn) {
            dns_names.push(cn);
        }
    }

    Some(Certificate {
        subject: cap_chars(subject_full, MAX_NAME_CHARS),
        issuer: cap_chars(issuer_full, MAX_NAME_CHARS),
        signature_algorithm: sig_name.map_or(sig_oid, str::to_owned),
        signature_hash,
        key_type,
        key_bits,
        not_before: tbs.validity.not_before.timestamp(),
        not_after: tbs.validity.not_after.timestamp(),
        self_signed,
        dns_names,
        server_auth_eku,
    })
}

const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// Name and hash of a certificate signature algorithm.
fn signature_algorithm(oid: &str) -> (Option<&'static str>, Option<&'static str>) {
    let (name, hash) = match oid {
        "1.2.840.113549.1.1.4" => ("md5WithRSAEncryption", Some("md5")),
        "1.2.840.113549.1.1.5" => ("sha1WithRSAEncryption", Some("sha1")),
        // The old OIW OID for SHA-1 with RSA, still met on old Windows-issued certificates.
        "1.3.14.3.2.29" => ("sha1WithRSAEncryption", Some("sha1")),
        "1.2.840.113549.1.1.14" => ("sha224WithRSAEncryption", Some("sha224")),
        "1.2.840.113549.1.1.11" => ("sha256WithRSAEncryption", Some("sha256")),
        "1.2.840.113549.1.1.12" => ("sha384WithRSAEncryption", Some("sha384")),
        "1.2.840.113549.1.1.13" => ("sha512WithRSAEncryption", Some("sha512")),
        OID_RSASSA_PSS => ("rsassaPss", None),
        "1.2.840.10045.4.1" => ("ecdsa-with-SHA1", Some("sha1")),
        "1.2.840.10045.4.3.1" => ("ecdsa-with-SHA224", Some("sha224")),
        "1.2.840.10045.4.3.2" => ("ecdsa-with-SHA256", Some("sha256")),
        "1.2.840.10045.4.3.3" => ("ecdsa-with-SHA384", Some("sha384")),
        "1.2.840.10045.4.3.4" => ("ecdsa-with-SHA512", Some("sha512")),
        "1.2.840.10040.4.3" => ("dsa-with-sha1", Some("sha1")),
        "2.16.840.1.101.3.4.3.2" => ("dsa-with-sha256", Some("sha256")),
        "1.3.101.112" => ("ed25519", None),
        "1.3.101.113" => ("ed448", None),
        _ => return (None, None),
    };
    (Some(name), hash)
}

/// Name of a hash algorithm OID (as RSASSA-PSS parameters carry it).
fn hash_name(oid: &str) -> Option<&'static str> {
    match oid {
        "1.2.840.113549.2.5" => Some("md5"),
        "1.3.14.3.2.26" => Some("sha1"),
        "2.16.840.1.101.3.4.2.4" => Some("sha224"),
        "2.16.840.1.101.3.4.2.1" => Some("sha256"),
        "2.16.840.1.101.3.4.2.2" => Some("sha384"),
        "2.16.840.1.101.3.4.2.3" => Some("sha512"),
        _ => None,
    }
}

/// Size in bits of the named curves met on certificates.
fn curve_bits(oid: &str) -> Option<u32> {
    match oid {
        "1.2.840.10045.3.1.1" => Some(192),   // P-192
        "1.3.132.0.33" => Some(224),          // P-224
        "1.2.840.10045.3.1.7" => Some(256),   // P-256
        "1.3.132.0.34" => Some(384),          // P-384
        "1.3.132.0.35" => Some(521),          // P-521
        "1.3.132.0.10" => Some(256),          // secp256k1
        "1.3.36.3.3.2.8.1.1.7" => Some(256),  // brainpoolP256r1
        "1.3.36.3.3.2.8.1.1.11" => Some(384), // brainpoolP384r1
        "1.3.36.3.3.2.8.1.1.13" => Some(512), // brainpoolP512r1
        _ => None,
    }
}

/// Key type and size.
fn public_key(spki: &SubjectPublicKeyInfo<'_>) -> (String, Option<u32>) {
    let oid = spki.algorithm.algorithm.to_id_string();
    let key: &[u8] = &spki.subject_public_key.data;
    let (name, bits) = match oid.as_str() {
        // rsaEncryption, and RSASSA-PSS keys (same RSAPublicKey).
        "1.2.840.113549.1.1.1" | OID_RSASSA_PSS => {
            let bits = RSAPublicKey::from_der(key)
                .ok()
                .and_then(|(_, k)| bit_length(k.modulus));
            ("RSA", bits)
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            ("EC", curve.and_then(|c| curve_bits(&c.to_id_string())))
        }
        "1.2.840.10040.4.1" => {
            // Dss-Parms ::= SEQUENCE { p INTEGER, q INTEGER, g INTEGER }
            let p = spki
                .algorithm
                .parameters
                .as_ref()
                .filter(|a| a.tag() == Tag::Sequence)
                .and_then(|a| parse_der_integer(a.data).ok())
                .and_then(|(_, p)| p.as_slice().ok().and_then(bit_length));
            ("DSA", p)
        }
        "1.3.101.112" => ("Ed25519", Some(256)),
        "1.3.101.113" => ("Ed448", Some(448)),
        _ => return (oid, None),
    };
    (name.to_owned(), bits)
}

/// A DNS name (or CN) worth comparing with a host name: printable ASCII, at most 255 bytes.
fn dns_name(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.len() > MAX_DNS_NAME {
        return None;
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// Cuts `s` to at most `max` characters.
fn cap_chars(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
    }
    s
}

/// Work bound while formatting a name: past this many bytes the rest cannot show after the cap.
const NAME_WORK_BYTES: usize = MAX_NAME_CHARS * 4 + 16;

/// RFC 4514 string of a distinguished name: RDNs last to first, separated by `,`, multi-valued
/// RDNs joined by `+`, registered short names or the dotted OID, values escaped (§2.4; control
/// characters as `\XX` too), values that are not strings as `#` + hex of their DER encoding.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if out.len() > NAME_WORK_BYTES {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            push_attribute(&mut out, atv);
        }
    }
    out
}

fn attribute_type(oid: &Oid<'_>) -> Option<&'static str> {
    Some(match oid.to_id_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "2.5.4.5" => "serialNumber",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

fn push_attribute(out: &mut String, atv: &AttributeTypeAndValue<'_>) {
    match attribute_type(atv.attr_type()) {
        Some(short) => out.push_str(short),
        None => out.push_str(&atv.attr_type().to_id_string()),
    }
    out.push('=');
    let value = atv.attr_value();
    match decode_string(value) {
        Some(s) => push_escaped(out, &s),
        None => push_der_hex(out, value),
    }
}

/// The text of a directory string value, when it is one and decodes.
fn decode_string(value: &Any<'_>) -> Option<String> {
    if value.class() != Class::Universal {
        return None;
    }
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // T.61 in practice carries Latin-1.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .filter_map(|c| <[u8; 2]>::try_from(c).ok())
                .map(u16::from_be_bytes);
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .filter_map(|c| <[u8; 4]>::try_from(c).ok())
                .map(|u| char::from_u32(u32::from_be_bytes(u)))
                .collect()
        }
        _ => None,
    }
}

fn push_hex_byte(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// RFC 4514 §2.4 escaping, plus control characters as `\XX`.
fn push_escaped(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        if out.len() > NAME_WORK_BYTES {
            return;
        }
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '#' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    out.push('\\');
                    push_hex_byte(out, b);
                }
            }
            c => out.push(c),
        }
    }
}

/// `#` + hex of the value's DER encoding (identifier, definite length, content).
fn push_der_hex(out: &mut String, value: &Any<'_>) {
    out.push('#');
    let class_bits: u8 = match value.class() {
        Class::Universal => 0x00,
        Class::Application => 0x40,
        Class::ContextSpecific => 0x80,
        Class::Private => 0xc0,
    };
    let constructed: u8 = if value.header.is_constructed() {
        0x20
    } else {
        0
    };
    let tag = value.tag().0;
    let mut header: Vec<u8> = Vec::with_capacity(12);
    if tag < 31 {
        header.push(class_bits | constructed | tag as u8);
    } else {
        header.push(class_bits | constructed | 0x1f);
        let mut groups = Vec::with_capacity(5);
        let mut t = tag;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        let n = groups.len();
        for (k, g) in groups.iter().rev().enumerate() {
            header.push(if k + 1 < n { g | 0x80 } else { *g });
        }
    }
    let len = value.data.len();
    if len < 0x80 {
        header.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        let digits = be.get(skip..).unwrap_or_default();
        header.push(0x80 | digits.len() as u8);
        header.extend_from_slice(digits);
    }
    for &b in header.iter().chain(value.data.iter()) {
        if out.len() > NAME_WORK_BYTES {
            return;
        }
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A minimal DER writer for building certificates in tests (x509-parser does not check
    /// signatures, so any bytes do as a signature).
    pub mod der {
        pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            let len = content.len();
            if len < 0x80 {
                v.push(len as u8);
            } else if len < 0x100 {
                v.extend_from_slice(&[0x81, len as u8]);
            } else {
                v.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
            }
            v.extend_from_slice(content);
            v
        }
        pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
            tlv(0x30, &parts.concat())
        }
        pub fn set(parts: &[Vec<u8>]) -> Vec<u8> {
            tlv(0x31, &parts.concat())
        }
        pub fn oid(dotted: &str) -> Vec<u8> {
            let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
            let mut content = vec![(arcs[0] * 40 + arcs[1]) as u8];
            for &arc in &arcs[2..] {
                let mut groups = vec![(arc & 0x7f) as u8];
                let mut a = arc >> 7;
                while a > 0 {
                    groups.push((a & 0x7f) as u8 | 0x80);
                    a >>= 7;
                }
                groups.reverse();
                content.extend_from_slice(&groups);
            }
            tlv(0x06, &content)
        }
        pub fn int(be: &[u8]) -> Vec<u8> {
            tlv(0x02, be)
        }
        pub fn null() -> Vec<u8> {
            vec![0x05, 0x00]
        }
        pub fn bits(content: &[u8]) -> Vec<u8> {
            let mut c = vec![0u8];
            c.extend_from_slice(content);
            tlv(0x03, &c)
        }
        pub fn octets(content: &[u8]) -> Vec<u8> {
            tlv(0x04, content)
        }
        pub fn utf8(s: &str) -> Vec<u8> {
            tlv(0x0c, s.as_bytes())
        }
        pub fn printable(s: &str) -> Vec<u8> {
            tlv(0x13, s.as_bytes())
        }
        pub fn bmp(s: &str) -> Vec<u8> {
            let units: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
            tlv(0x1e, &units)
        }
        pub fn utc(s: &str) -> Vec<u8> {
            tlv(0x17, s.as_bytes())
        }
        pub fn gen_time(s: &str) -> Vec<u8> {
            tlv(0x18, s.as_bytes())
        }
        pub fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
            tlv(0xa0 | n, content)
        }
        /// One attribute per RDN, in the order given (first = most significant).
        pub fn name(attrs: &[(&str, Vec<u8>)]) -> Vec<u8> {
            let rdns: Vec<Vec<u8>> = attrs
                .iter()
                .map(|(o, v)| set(&[seq(&[oid(o), v.clone()])]))
                .collect();
            seq(&rdns)
        }
        pub fn algid(o: &str, params: Option<Vec<u8>>) -> Vec<u8> {
            match params {
                Some(p) => seq(&[oid(o), p]),
                None => seq(&[oid(o)]),
            }
        }
        pub fn ext(o: &str, value: Vec<u8>) -> Vec<u8> {
            seq(&[oid(o), octets(&value)])
        }
        pub fn rsa_spki(modulus: &[u8]) -> Vec<u8> {
            let key = seq(&[int(modulus), int(&[1, 0, 1])]);
            seq(&[algid("1.2.840.113549.1.1.1", Some(null())), bits(&key)])
        }
        pub struct Spec {
            pub sig: Vec<u8>,
            pub issuer: Vec<u8>,
            pub subject: Vec<u8>,
            pub not_before: Vec<u8>,
            pub not_after: Vec<u8>,
            pub spki: Vec<u8>,
            pub extensions: Vec<Vec<u8>>,
        }
        impl Default for Spec {
            fn default() -> Self {
                let n = name(&[("2.5.4.3", utf8("host"))]);
                Spec {
                    sig: algid("1.2.840.113549.1.1.11", Some(null())),
                    issuer: n.clone(),
                    subject: n,
                    not_before: utc("240101000000Z"),
                    not_after: gen_time("20340101000000Z"),
                    spki: rsa_spki(&[&[0u8][..], &[0xc5; 256][..]].concat()),
                    extensions: Vec::new(),
                }
            }
        }
        pub fn cert(s: &Spec) -> Vec<u8> {
            let mut tbs = vec![
                explicit(0, &int(&[2])),
                int(&[0x01, 0x23]),
                s.sig.clone(),
                s.issuer.clone(),
                seq(&[s.not_before.clone(), s.not_after.clone()]),
                s.subject.clone(),
                s.spki.clone(),
            ];
            if !s.extensions.is_empty() {
                tbs.push(explicit(3, &seq(&s.extensions)));
            }
            seq(&[seq(&tbs), s.sig.clone(), bits(&[0x5a; 16])])
        }
    }

    use der::*;

    const CN: &str = "2.5.4.3";
    const O: &str = "2.5.4.10";
    const C: &str = "2.5.4.6";
    const SAN: &str = "2.5.29.17";
    const EKU: &str = "2.5.29.37";
    const SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
    const CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";

    fn san(dns: &[&str]) -> Vec<u8> {
        let names: Vec<Vec<u8>> = dns.iter().map(|d| tlv(0x82, d.as_bytes())).collect();
        ext(SAN, seq(&names))
    }

    #[test]
    fn default_spec_parses_as_rsa_2048_sha256() {
        let c = certificate(&cert(&Spec::default())).unwrap();
        assert_eq!(c.subject, "CN=host");
        assert_eq!(c.issuer, "CN=host");
        assert!(c.self_signed);
        assert_eq!(c.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(c.signature_hash, Some("sha256"));
        assert_eq!(c.key_type, "RSA");
        assert_eq!(c.key_bits, Some(2048));
        assert_eq!(c.not_before, 1_704_067_200); // 2024-01-01T00:00:00Z
        assert_eq!(c.not_after, 2_019_686_400); // 2034-01-01T00:00:00Z
        assert_eq!(c.dns_names, vec!["host".to_string()]);
        assert_eq!(c.server_auth_eku, None);
    }

    #[test]
    fn ec_p384_with_san_eku_and_rfc4514_names() {
        let spec = Spec {
            sig: algid("1.2.840.10045.4.3.3", None),
            subject: name(&[
                (C, printable("US")),
                (O, utf8("Acme, Inc.")),
                (CN, utf8("db.example.com")),
            ]),
            issuer: name(&[(C, printable("US")), (CN, utf8("Acme CA"))]),
            spki: seq(&[
                algid("1.2.840.10045.2.1", Some(oid("1.3.132.0.34"))),
                bits(&[&[4u8][..], &[7u8; 96][..]].concat()),
            ]),
            extensions: vec![
                san(&["db.example.com", "*.example.com", "bad name", ""]),
                ext(EKU, seq(&[oid(CLIENT_AUTH), oid(SERVER_AUTH)])),
            ],
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(c.subject, "CN=db.example.com,O=Acme\\, Inc.,C=US");
        assert_eq!(c.issuer, "CN=Acme CA,C=US");
        assert!(!c.self_signed);
        assert_eq!(c.signature_algorithm, "ecdsa-with-SHA384");
        assert_eq!(c.signature_hash, Some("sha384"));
        assert_eq!(c.key_type, "EC");
        assert_eq!(c.key_bits, Some(384));
        // The CN is already among the SAN names: not repeated. Bad names are dropped.
        assert_eq!(
            c.dns_names,
            vec!["db.example.com".to_string(), "*.example.com".to_string()]
        );
        assert_eq!(c.server_auth_eku, Some(true));
    }

    #[test]
    fn rsassa_pss_hash_from_parameters_and_odd_modulus_size() {
        // RSASSA-PSS-params { hashAlgorithm [0] sha384 }
        let params = seq(&[explicit(0, &algid("2.16.840.1.101.3.4.2.2", Some(null())))]);
        // A minimal DER INTEGER: no leading zero byte since the top bit is clear.
        let mut modulus = vec![0x7fu8];
        modulus.extend_from_slice(&[0xff; 255]);
        let spec = Spec {
            sig: algid("1.2.840.113549.1.1.10", Some(params)),
            spki: rsa_spki(&modulus),
            extensions: vec![ext(EKU, seq(&[oid(CLIENT_AUTH)]))],
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(c.signature_algorithm, "rsassaPss");
        assert_eq!(c.signature_hash, Some("sha384"));
        assert_eq!(c.key_bits, Some(2047));
        assert_eq!(c.server_auth_eku, Some(false));

        // Absent hashAlgorithm: the RFC 4055 default, SHA-1.
        let spec = Spec {
            sig: algid("1.2.840.113549.1.1.10", Some(seq(&[]))),
            ..Spec::default()
        };
        assert_eq!(
            certificate(&cert(&spec)).unwrap().signature_hash,
            Some("sha1")
        );
        // No parameters at all: unknown.
        let spec = Spec {
            sig: algid("1.2.840.113549.1.1.10", None),
            ..Spec::default()
        };
        assert_eq!(certificate(&cert(&spec)).unwrap().signature_hash, None);
    }

    #[test]
    fn md5_with_dsa_key_and_any_eku() {
        let mut p = vec![0u8];
        p.extend_from_slice(&[0xd1; 128]);
        let spec = Spec {
            sig: algid("1.2.840.113549.1.1.4", Some(null())),
            spki: seq(&[
                seq(&[
                    oid("1.2.840.10040.4.1"),
                    seq(&[int(&p), int(&[0x55; 20]), int(&[2])]),
                ]),
                bits(&int(&[0x33; 128])),
            ]),
            extensions: vec![ext(EKU, seq(&[oid("2.5.29.37.0")]))],
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(c.signature_algorithm, "md5WithRSAEncryption");
        assert_eq!(c.signature_hash, Some("md5"));
        assert_eq!(c.key_type, "DSA");
        assert_eq!(c.key_bits, Some(1024));
        assert_eq!(c.server_auth_eku, Some(true));
    }

    #[test]
    fn ed25519_and_unknown_algorithms() {
        let spec = Spec {
            sig: algid("1.3.101.112", None),
            spki: seq(&[algid("1.3.101.112", None), bits(&[9; 32])]),
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(
            (c.signature_algorithm.as_str(), c.signature_hash),
            ("ed25519", None)
        );
        assert_eq!((c.key_type.as_str(), c.key_bits), ("Ed25519", Some(256)));

        let spec = Spec {
            sig: algid("1.2.3.4.5", None),
            spki: seq(&[algid("1.2.3.4.6", None), bits(&[9; 8])]),
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(
            (c.signature_algorithm.as_str(), c.signature_hash),
            ("1.2.3.4.5", None)
        );
        assert_eq!((c.key_type.as_str(), c.key_bits), ("1.2.3.4.6", None));
    }

    #[test]
    fn signature_algorithm_table() {
        for (oid, name, hash) in [
            (
                "1.2.840.113549.1.1.5",
                "sha1WithRSAEncryption",
                Some("sha1"),
            ),
            ("1.3.14.3.2.29", "sha1WithRSAEncryption", Some("sha1")),
            (
                "1.2.840.113549.1.1.14",
                "sha224WithRSAEncryption",
                Some("sha224"),
            ),
            (
                "1.2.840.113549.1.1.12",
                "sha384WithRSAEncryption",
                Some("sha384"),
            ),
            (
                "1.2.840.113549.1.1.13",
                "sha512WithRSAEncryption",
                Some("sha512"),
            ),
            ("1.2.840.10045.4.1", "ecdsa-with-SHA1", Some("sha1")),
            ("1.2.840.10045.4.3.1", "ecdsa-with-SHA224", Some("sha224")),
            ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256", Some("sha256")),
            ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512", Some("sha512")),
            ("1.2.840.10040.4.3", "dsa-with-sha1", Some("sha1")),
            ("2.16.840.1.101.3.4.3.2", "dsa-with-sha256", Some("sha256")),
            ("1.3.101.113", "ed448", None),
        ] {
            assert_eq!(signature_algorithm(oid), (Some(name), hash), "{oid}");
        }
        assert_eq!(signature_algorithm("1.2.840.113549.1.1.2"), (None, None));
    }

    #[test]
    fn rfc4514_escaping_and_value_forms() {
        let spec = Spec {
            subject: name(&[
                ("2.5.4.11", utf8(" #lead")),
                (O, utf8("#x;y<z>\"q\" a+b\\c ")),
                ("1.2.3.4", int(&[0x2a])),
                (CN, bmp("Zürich")),
                ("2.5.4.8", utf8("tab\there")),
            ]),
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(
            c.subject,
            "ST=tab\\09here,CN=Zürich,1.2.3.4=#02012a,O=\\#x\\;y\\<z\\>\\\"q\\\" a\\+b\\\\c\\ ,OU=\\ #lead"
        );
        // A CN that is not printable ASCII is not a DNS name.
        assert!(c.dns_names.is_empty());
    }

    #[test]
    fn multi_valued_rdn_joined_with_plus() {
        let rdn = set(&[
            seq(&[oid("2.5.4.11"), utf8("ops")]),
            seq(&[oid(CN), utf8("sql1")]),
        ]);
        let spec = Spec {
            subject: seq(&[set(&[seq(&[oid(C), printable("FR")])]), rdn]),
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(c.subject, "OU=ops+CN=sql1,C=FR");
        assert_eq!(c.dns_names, vec!["sql1".to_string()]);
    }

    #[test]
    fn long_names_are_capped_and_san_list_bounded() {
        let long = "a".repeat(300);
        let many: Vec<String> = (0..40).map(|i| format!("h{i}.example")).collect();
        let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let spec = Spec {
            subject: name(&[(CN, utf8(&long))]),
            extensions: vec![san(&many_refs)],
            ..Spec::default()
        };
        let c = certificate(&cert(&spec)).unwrap();
        assert_eq!(c.subject.chars().count(), MAX_NAME_CHARS);
        assert!(c.subject.starts_with("CN=aaa"));
        // 16 SAN names, and the 300-byte CN is too long to be a DNS name.
        assert_eq!(c.dns_names.len(), MAX_SAN_NAMES);
        assert_eq!(c.dns_names[15], "h15.example");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(certificate(&[]), None);
        assert_eq!(certificate(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
        let mut good = cert(&Spec::default());
        good.truncate(good.len() - 10);
        assert_eq!(certificate(&good), None);
    }
}
