//! Real TLS handshakes made by OpenSSL in memory: a client and a server `SslStream` joined by a
//! duplex pipe whose reads return `WouldBlock` when empty, driven in turn until both are done. Every
//! flight is recorded exactly as the stack wrote it. Also the key material (one RSA 2048 key, a
//! self-signed certificate signed with SHA-256 and one with SHA-1, ffdhe2048 parameters). Knows
//! nothing of TDS or TCP.

use crate::Side;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::dh::Dh;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Params, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{
    self, AlpnError, ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions,
    SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::error::Error;
use std::io::{self, Read, Write};
use std::rc::Rc;

pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// RFC 7919 ffdhe2048, as `openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048` prints it.
const FFDHE2048_PEM: &[u8] = b"-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// The common name SQL Server gives the certificate it makes for itself when none is configured.
pub const CERT_CN: &str = "SSL_Self_Signed_Fallback";
/// Fixed validity (2024-01-01 to 2054-01-01) so that certificates always have the same length.
const NOT_BEFORE: i64 = 1_704_067_200;
const NOT_AFTER: i64 = 2_651_356_800;

/// Key material shared by every template.
pub struct Materials {
    pub key: PKey<Private>,
    pub cert_sha256: X509,
    pub cert_sha1: X509,
    pub dh: Dh<Params>,
}

fn self_signed(key: &PKey<Private>, md: MessageDigest, serial: u32) -> Result<X509> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", CERT_CN)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(serial)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    let not_before = Asn1Time::from_unix(NOT_BEFORE)?;
    let not_after = Asn1Time::from_unix(NOT_AFTER)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.sign(key, md)?;
    Ok(b.build())
}

impl Materials {
    /// Generates the RSA 2048 key and both certificates (about 0.1 s).
    pub fn generate() -> Result<Materials> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let cert_sha256 = self_signed(&key, MessageDigest::sha256(), 0x1d5a_7e01)?;
        let cert_sha1 = self_signed(&key, MessageDigest::sha1(), 0x1d5a_7e02)?;
        let dh = Dh::params_from_pem(FFDHE2048_PEM)?;
        Ok(Materials {
            key,
            cert_sha256,
            cert_sha1,
            dh,
        })
    }
}

/// How both ends of one handshake are configured.
#[derive(Debug, Clone)]
pub struct Profile {
    pub client_min: Option<SslVersion>,
    pub client_max: Option<SslVersion>,
    pub server_min: Option<SslVersion>,
    pub server_max: Option<SslVersion>,
    /// OpenSSL cipher list of the server for TLS ≤ 1.2 (server preference is on).
    pub server_ciphers: &'static str,
    /// TLS 1.3 suites of the server.
    pub server_suites: &'static str,
    /// Client security level (0 lets an OpenSSL 3 client offer TLS 1.0).
    pub client_security_level: Option<u32>,
    /// ALPN the client offers, wire format (length-prefixed names).
    pub client_alpn: Option<&'static [u8]>,
    /// ALPN the server accepts, wire format.
    pub server_alpn: Option<&'static [u8]>,
    pub sni: Option<&'static str>,
    /// Serve the SHA-1-signed certificate instead of the SHA-256 one.
    pub sha1_cert: bool,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            client_min: Some(SslVersion::TLS1_2),
            client_max: None,
            server_min: Some(SslVersion::TLS1_2),
            server_max: Some(SslVersion::TLS1_2),
            server_ciphers: "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256",
            server_suites: "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
            client_security_level: None,
            client_alpn: None,
            server_alpn: None,
            sni: None,
            sha1_cert: false,
        }
    }
}

#[derive(Default)]
struct Queues {
    /// What each side wrote and the driver has not yet carried.
    out: [Vec<u8>; 2],
    /// What each side has been handed and has not read yet.
    inbox: [VecDeque<u8>; 2],
}

/// One end of the in-memory duplex pipe.
pub struct PipeEnd {
    q: Rc<RefCell<Queues>>,
    side: usize,
}

impl Read for PipeEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.q.borrow_mut();
        let inbox = &mut q.inbox[self.side];
        if inbox.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        inbox.read(buf)
    }
}

impl Write for PipeEnd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.q.borrow_mut().out[self.side].extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes one side wrote in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flight {
    pub from: Side,
    pub bytes: Vec<u8>,
}

/// How a handshake ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeEnd {
    Completed,
    /// The server gave up (its last flight, if any, is the alert it sent).
    ServerFailed(String),
    ClientFailed(String),
}

/// A client and a server joined by the pipe.
pub struct Pair {
    q: Rc<RefCell<Queues>>,
    client: SslStream<PipeEnd>,
    server: SslStream<PipeEnd>,
}

fn server_context(m: &Materials, p: &Profile) -> Result<SslContext> {
    let mut b = SslContextBuilder::new(SslMethod::tls_server())?;
    if p.sha1_cert {
        b.set_security_level(0);
        b.set_certificate(&m.cert_sha1)?;
    } else {
        b.set_certificate(&m.cert_sha256)?;
    }
    b.set_private_key(&m.key)?;
    b.check_private_key()?;
    b.set_min_proto_version(p.server_min)?;
    b.set_max_proto_version(p.server_max)?;
    b.set_cipher_list(p.server_ciphers)?;
    b.set_ciphersuites(p.server_suites)?;
    b.set_tmp_dh(&m.dh)?;
    b.set_num_tickets(0)?;
    b.set_options(SslOptions::NO_TICKET | SslOptions::CIPHER_SERVER_PREFERENCE);
    if let Some(accepted) = p.server_alpn {
        b.set_alpn_select_callback(move |_, offered| {
            ssl::select_next_proto(accepted, offered).ok_or(AlpnError::ALERT_FATAL)
        });
    }
    Ok(b.build())
}

fn client_context(p: &Profile) -> Result<SslContext> {
    let mut b = SslContextBuilder::new(SslMethod::tls_client())?;
    b.set_verify(SslVerifyMode::NONE);
    if let Some(level) = p.client_security_level {
        b.set_security_level(level);
        if level == 0 {
            b.set_cipher_list("DEFAULT:@SECLEVEL=0")?;
        }
    }
    b.set_min_proto_version(p.client_min)?;
    b.set_max_proto_version(p.client_max)?;
    if let Some(alpn) = p.client_alpn {
        b.set_alpn_protos(alpn)?;
    }
    Ok(b.build())
}

fn want_read(e: &ssl::Error) -> bool {
    e.code() == ErrorCode::WANT_READ
}

impl Pair {
    pub fn new(m: &Materials, p: &Profile) -> Result<Pair> {
        let q = Rc::new(RefCell::new(Queues::default()));
        let cctx = client_context(p)?;
        let sctx = server_context(m, p)?;
        let mut cs = Ssl::new(&cctx)?;
        if let Some(sni) = p.sni {
            cs.set_hostname(sni)?;
        }
        cs.set_connect_state();
        let mut ss = Ssl::new(&sctx)?;
        ss.set_accept_state();
        let client = SslStream::new(
            cs,
            PipeEnd {
                q: Rc::clone(&q),
                side: Side::Client.index(),
            },
        )?;
        let server = SslStream::new(
            ss,
            PipeEnd {
                q: Rc::clone(&q),
                side: Side::Server.index(),
            },
        )?;
        Ok(Pair { q, client, server })
    }

    /// Takes what `side` wrote since the last call and hands it to the other side.
    fn carry(&mut self, side: Side) -> Vec<u8> {
        let mut q = self.q.borrow_mut();
        let bytes = std::mem::take(&mut q.out[side.index()]);
        q.inbox[side.other().index()].extend(bytes.iter().copied());
        bytes
    }

    /// Drives both ends until both are done or one fails; returns every flight in order.
    pub fn handshake(&mut self) -> Result<(Vec<Flight>, HandshakeEnd)> {
        let mut flights = Vec::new();
        let (mut c_done, mut s_done) = (false, false);
        for _ in 0..16 {
            if !c_done {
                match self.client.do_handshake() {
                    Ok(()) => c_done = true,
                    Err(e) if want_read(&e) => {}
                    Err(e) => {
                        push_flight(&mut flights, Side::Client, self.carry(Side::Client));
                        return Ok((flights, HandshakeEnd::ClientFailed(e.to_string())));
                    }
                }
            }
            push_flight(&mut flights, Side::Client, self.carry(Side::Client));
            if !s_done {
                match self.server.do_handshake() {
                    Ok(()) => s_done = true,
                    Err(e) if want_read(&e) => {}
                    Err(e) => {
                        push_flight(&mut flights, Side::Server, self.carry(Side::Server));
                        return Ok((flights, HandshakeEnd::ServerFailed(e.to_string())));
                    }
                }
            }
            push_flight(&mut flights, Side::Server, self.carry(Side::Server));
            if c_done && s_done {
                return Ok((flights, HandshakeEnd::Completed));
            }
        }
        Err("TLS handshake did not converge".into())
    }

    /// Encrypts `data` on `from`'s side, hands the records to the other side, which reads them;
    /// returns the records as they go on the wire and the plaintext the other side got.
    pub fn send(&mut self, from: Side, data: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let (tx, rx) = match from {
            Side::Client => (&mut self.client, &mut self.server),
            Side::Server => (&mut self.server, &mut self.client),
        };
        let mut written = 0;
        while written < data.len() {
            written += tx.ssl_write(data.get(written..).unwrap_or_default())?;
        }
        let wire = {
            let mut q = self.q.borrow_mut();
            let bytes = std::mem::take(&mut q.out[from.index()]);
            q.inbox[from.other().index()].extend(bytes.iter().copied());
            bytes
        };
        let mut plain = Vec::with_capacity(data.len());
        let mut buf = [0u8; 4096];
        loop {
            match rx.ssl_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => plain.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if want_read(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }
        // Anything the reader wrote in passing (TLS 1.3 key updates, tickets) would be lost here;
        // the server profiles send no tickets, so there is nothing.
        let stray = self.q.borrow().out[from.other().index()].len();
        if stray != 0 {
            return Err(format!("unexpected {stray} bytes from the reader").into());
        }
        Ok((wire, plain))
    }

    /// Negotiated version as OpenSSL names it ("TLSv1.2", "TLSv1.3").
    pub fn version(&self) -> &'static str {
        self.server.ssl().version_str()
    }

    /// Negotiated suite, IANA name.
    pub fn suite(&self) -> Option<&'static str> {
        self.server
            .ssl()
            .current_cipher()
            .and_then(|c| c.standard_name())
    }

    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.server
            .ssl()
            .selected_alpn_protocol()
            .map(<[u8]>::to_vec)
    }
}

fn push_flight(flights: &mut Vec<Flight>, from: Side, bytes: Vec<u8>) {
    if !bytes.is_empty() {
        flights.push(Flight { from, bytes });
    }
}

/// The clear handshake messages (type, body) in a flight of TLS records, up to the first
/// ChangeCipherSpec (after which handshake records are encrypted). Stops at anything malformed.
pub fn clear_handshake_messages(flight: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut hs = Vec::new();
    let mut rest = flight;
    while let (Some(&ct), Some(len)) = (rest.first(), rest.get(3..5)) {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let Some(body) = rest.get(5..5 + len) else {
            break;
        };
        match ct {
            22 => hs.extend_from_slice(body),
            20 => break,
            _ => {}
        }
        rest = rest.get(5 + len..).unwrap_or_default();
    }
    let mut msgs = Vec::new();
    let mut m = hs.as_slice();
    while let (Some(&ty), Some(l)) = (m.first(), m.get(1..4)) {
        let len = (usize::from(l[0]) << 16) | (usize::from(l[1]) << 8) | usize::from(l[2]);
        let Some(body) = m.get(4..4 + len) else { break };
        msgs.push((ty, body.to_vec()));
        m = m.get(4 + len..).unwrap_or_default();
    }
    msgs
}

/// Record content types in a flight, in order.
pub fn record_types(flight: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = flight;
    while let (Some(&ct), Some(len)) = (rest.first(), rest.get(3..5)) {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if rest.len() < 5 + len {
            break;
        }
        types.push(ct);
        rest = rest.get(5 + len..).unwrap_or_default();
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn materials() -> &'static Materials {
        static M: OnceLock<Materials> = OnceLock::new();
        M.get_or_init(|| Materials::generate().expect("materials"))
    }

    fn types(f: &Flight) -> Vec<u8> {
        clear_handshake_messages(&f.bytes)
            .iter()
            .map(|m| m.0)
            .collect()
    }

    #[test]
    fn certificates_are_self_signed_with_the_asked_hash() {
        let m = materials();
        assert_eq!(
            m.cert_sha256.signature_algorithm().object().nid(),
            openssl::nid::Nid::SHA256WITHRSAENCRYPTION
        );
        assert_eq!(
            m.cert_sha1.signature_algorithm().object().nid(),
            openssl::nid::Nid::SHA1WITHRSAENCRYPTION
        );
        assert_eq!(
            m.cert_sha256.to_der().unwrap().len(),
            m.cert_sha1.to_der().unwrap().len()
        );
        assert_eq!(m.dh.prime_p().num_bits(), 2048);
    }

    #[test]
    fn tls12_ecdhe_flights() {
        let mut pair = Pair::new(materials(), &Profile::default()).unwrap();
        let (flights, end) = pair.handshake().unwrap();
        assert_eq!(end, HandshakeEnd::Completed);
        assert_eq!(flights.len(), 4);
        assert_eq!(
            flights.iter().map(|f| f.from).collect::<Vec<_>>(),
            [Side::Client, Side::Server, Side::Client, Side::Server]
        );
        assert_eq!(types(&flights[0]), [1]);
        assert_eq!(types(&flights[1]), [2, 11, 12, 14]);
        assert_eq!(types(&flights[2]), [16]);
        assert_eq!(record_types(&flights[2].bytes), [22, 20, 22]);
        assert_eq!(record_types(&flights[3].bytes), [20, 22]);
        assert_eq!(pair.version(), "TLSv1.2");
        assert_eq!(pair.suite(), Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"));
        let (wire, plain) = pair.send(Side::Client, b"login7 bytes").unwrap();
        assert_eq!(plain, b"login7 bytes");
        assert_eq!(record_types(&wire), [23]);
        let (wire, plain) = pair.send(Side::Server, b"loginack").unwrap();
        assert_eq!(plain, b"loginack");
        assert_eq!(wire[0], 23);
    }

    #[test]
    fn tls12_dhe_uses_ffdhe2048() {
        let p = Profile {
            server_ciphers: "DHE-RSA-AES256-GCM-SHA384",
            ..Profile::default()
        };
        let mut pair = Pair::new(materials(), &p).unwrap();
        let (flights, end) = pair.handshake().unwrap();
        assert_eq!(end, HandshakeEnd::Completed);
        assert_eq!(pair.suite(), Some("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"));
        let ske = clear_handshake_messages(&flights[1].bytes)
            .into_iter()
            .find(|m| m.0 == 12)
            .unwrap()
            .1;
        // dh_p: 2-byte length then the 256-byte prime
        assert_eq!(&ske[0..2], &[1, 0]);
        assert_eq!(&ske[2..10], &[0xff; 8]);
    }

    #[test]
    fn tls13_and_alpn() {
        let p = Profile {
            client_min: Some(SslVersion::TLS1_3),
            server_min: Some(SslVersion::TLS1_3),
            server_max: Some(SslVersion::TLS1_3),
            client_alpn: Some(b"\x07tds/8.0"),
            server_alpn: Some(b"\x07tds/8.0"),
            sni: Some("db1.example.test"),
            ..Profile::default()
        };
        let mut pair = Pair::new(materials(), &p).unwrap();
        let (flights, end) = pair.handshake().unwrap();
        assert_eq!(end, HandshakeEnd::Completed);
        assert_eq!(flights.len(), 3);
        assert_eq!(types(&flights[1]), [2]);
        assert_eq!(record_types(&flights[2].bytes), [20, 23]);
        assert_eq!(pair.version(), "TLSv1.3");
        assert_eq!(pair.suite(), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(pair.alpn().as_deref(), Some(&b"tds/8.0"[..]));
        let (_, plain) = pair.send(Side::Client, b"prelogin").unwrap();
        assert_eq!(plain, b"prelogin");
    }

    #[test]
    fn tls10_client_gets_protocol_version_alert() {
        let p = Profile {
            client_min: Some(SslVersion::TLS1),
            client_max: Some(SslVersion::TLS1),
            client_security_level: Some(0),
            ..Profile::default()
        };
        let mut pair = Pair::new(materials(), &p).unwrap();
        let (flights, end) = pair.handshake().unwrap();
        assert!(matches!(end, HandshakeEnd::ServerFailed(_)), "{end:?}");
        assert_eq!(flights.len(), 2);
        let alert = &flights[1].bytes;
        assert_eq!(alert.len(), 7);
        assert_eq!(alert[0], 21);
        assert_eq!(&alert[5..7], &[2, 70]);
        // the ClientHello says TLS 1.0 and nothing higher
        let ch = clear_handshake_messages(&flights[0].bytes).remove(0);
        assert_eq!(ch.0, 1);
        assert_eq!(&ch.1[0..2], &[3, 1]);
    }

    #[test]
    fn parsers_stop_on_truncation() {
        assert!(clear_handshake_messages(&[22, 3, 3, 0, 10, 1]).is_empty());
        assert!(record_types(&[23, 3, 3]).is_empty());
        assert_eq!(record_types(&[23, 3, 3, 0, 1, 0, 21, 3]), [23]);
    }
}
