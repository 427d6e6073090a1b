//! The responder's settings: what one scenario is (encryption answer, strict, TLS bounds, suites,
//! DH parameters, certificate, packet size, login result, fault), read from a JSON scenario file
//! and/or command-line flags, and the TLS server context built from them.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::dh::Dh;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{AlpnError, SslContext, SslMethod, SslOptions, SslVersion};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use serde::Deserialize;
use std::error::Error;
use std::fmt;

pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// RFC 7919 ffdhe2048, as `openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048` prints it.
pub const FFDHE2048_PEM: &[u8] = b"-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// The common name SQL Server gives the certificate it makes for itself.
pub const CERT_CN: &str = "SSL_Self_Signed_Fallback";

/// The PRELOGIN ENCRYPTION value the responder answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    Off,
    On,
    #[value(alias = "not_sup")]
    NotSup,
    Req,
}

impl Encryption {
    pub fn byte(self) -> u8 {
        match self {
            Encryption::Off => 0,
            Encryption::On => 1,
            Encryption::NotSup => 2,
            Encryption::Req => 3,
        }
    }
}

/// What the server answers to LOGIN7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LoginResult {
    Ack,
    Error,
}

/// The signature hash of the generated self-signed certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CertHash {
    Sha1,
    Sha256,
    Sha512,
}

/// An injected fault. `IdleCloseFirst` and `DheResetFraction` carry their parameter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    None,
    RstAfterClientKeyExchange,
    FinAfterClientHello,
    FinAfterServerHello,
    FinAfterClientKeyExchange,
    RstAfterLogin7,
    /// Server FIN after this many milliseconds without a client request (after login).
    IdleCloseFirst(u64),
    /// RST after the client's Finished on this fraction of TLS ≤ 1.2 DHE handshakes.
    DheResetFraction(f64),
}

impl Fault {
    /// Parses the command-line form: a name, `idle_close_first=MS` or `dhe_reset_fraction=F`.
    pub fn parse(s: &str) -> std::result::Result<Fault, String> {
        let (name, arg) = match s.split_once('=') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let simple = |f: Fault| match arg {
            None => Ok(f),
            Some(_) => Err(format!("fault {name} takes no value")),
        };
        match name {
            "none" => simple(Fault::None),
            "rst_after_client_key_exchange" => simple(Fault::RstAfterClientKeyExchange),
            "fin_after_client_hello" => simple(Fault::FinAfterClientHello),
            "fin_after_server_hello" => simple(Fault::FinAfterServerHello),
            "fin_after_client_key_exchange" => simple(Fault::FinAfterClientKeyExchange),
            "rst_after_login7" => simple(Fault::RstAfterLogin7),
            "idle_close_first" => arg
                .unwrap_or("1000")
                .parse::<u64>()
                .map(Fault::IdleCloseFirst)
                .map_err(|e| format!("idle_close_first: {e}")),
            "dhe_reset_fraction" => {
                let f = arg
                    .ok_or("dhe_reset_fraction needs =F")?
                    .parse::<f64>()
                    .map_err(|e| format!("dhe_reset_fraction: {e}"))?;
                if (0.0..=1.0).contains(&f) {
                    Ok(Fault::DheResetFraction(f))
                } else {
                    Err("dhe_reset_fraction must be within 0..=1".into())
                }
            }
            _ => Err(format!("unknown fault {s:?}")),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => f.write_str("none"),
            Fault::RstAfterClientKeyExchange => f.write_str("rst_after_client_key_exchange"),
            Fault::FinAfterClientHello => f.write_str("fin_after_client_hello"),
            Fault::FinAfterServerHello => f.write_str("fin_after_server_hello"),
            Fault::FinAfterClientKeyExchange => f.write_str("fin_after_client_key_exchange"),
            Fault::RstAfterLogin7 => f.write_str("rst_after_login7"),
            Fault::IdleCloseFirst(ms) => write!(f, "idle_close_first={ms}"),
            Fault::DheResetFraction(x) => write!(f, "dhe_reset_fraction={x}"),
        }
    }
}

/// One scenario. Every field has a default, so a scenario file names only what differs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Free-form label printed on every log line.
    pub scenario: String,
    pub encryption: Encryption,
    /// TDS 8.0: TLS first on the bare connection, ALPN `tds/8.0`.
    pub strict: bool,
    /// `1.0`, `1.1`, `1.2` or `1.3`.
    pub tls_min: String,
    pub tls_max: String,
    /// OpenSSL cipher list for TLS ≤ 1.2 (security level 0 is set so that old suites work).
    pub ciphers: Option<String>,
    /// TLS 1.3 suites (`TLS_AES_128_GCM_SHA256:…`).
    pub tls13_suites: Option<String>,
    /// PEM DH parameters file; ffdhe2048 when absent.
    pub dh_params: Option<String>,
    /// PEM certificate and key files; a self-signed RSA 2048 certificate is generated when absent.
    pub cert: Option<String>,
    pub key: Option<String>,
    pub cert_hash: CertHash,
    /// Largest TDS packet (header included) the responder sends; its flights are split to fit.
    pub packet_size: usize,
    pub login: LoginResult,
    #[serde(deserialize_with = "de_fault")]
    pub fault: Fault,
    /// Seed for the fraction faults.
    pub seed: u64,
    /// Read timeout per connection, milliseconds.
    pub io_timeout_ms: u64,
}

fn de_fault<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Fault, D::Error> {
    let s = String::deserialize(d)?;
    Fault::parse(&s).map_err(serde::de::Error::custom)
}

impl Default for Config {
    fn default() -> Config {
        Config {
            scenario: "default".into(),
            encryption: Encryption::Off,
            strict: false,
            tls_min: "1.0".into(),
            tls_max: "1.3".into(),
            ciphers: None,
            tls13_suites: None,
            dh_params: None,
            cert: None,
            key: None,
            cert_hash: CertHash::Sha256,
            packet_size: 4096,
            login: LoginResult::Ack,
            fault: Fault::None,
            seed: 1,
            io_timeout_ms: 10_000,
        }
    }
}

pub fn parse_version(s: &str) -> Result<SslVersion> {
    Ok(match s {
        "1.0" | "tls1" | "tls1.0" => SslVersion::TLS1,
        "1.1" | "tls1.1" => SslVersion::TLS1_1,
        "1.2" | "tls1.2" => SslVersion::TLS1_2,
        "1.3" | "tls1.3" => SslVersion::TLS1_3,
        _ => return Err(format!("unknown TLS version {s:?} (1.0, 1.1, 1.2, 1.3)").into()),
    })
}

fn self_signed(key: &PKey<Private>, hash: CertHash) -> Result<X509> {
    let md = match hash {
        CertHash::Sha1 => MessageDigest::sha1(),
        CertHash::Sha256 => MessageDigest::sha256(),
        CertHash::Sha512 => MessageDigest::sha512(),
    };
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", CERT_CN)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    let (from, to) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(365)?);
    b.set_not_before(&from)?;
    b.set_not_after(&to)?;
    b.set_pubkey(key)?;
    b.sign(key, md)?;
    Ok(b.build())
}

/// The TLS server context for a scenario, and the certificate it presents.
pub struct Tls {
    pub context: SslContext,
    pub cert: X509,
}

impl Config {
    /// Builds the OpenSSL server context: version bounds, suites, DH parameters, certificate,
    /// no session tickets (SQL Server sends none, and a TLS 1.3 ticket written after the handshake
    /// would be wrapped in a PRELOGIN packet that clients no longer expect), ALPN `tds/8.0`
    /// selected in strict mode.
    pub fn tls(&self) -> Result<Tls> {
        let mut b = SslContext::builder(SslMethod::tls_server())?;
        b.set_security_level(0);
        b.set_min_proto_version(Some(parse_version(&self.tls_min)?))?;
        b.set_max_proto_version(Some(parse_version(&self.tls_max)?))?;
        b.set_cipher_list(self.ciphers.as_deref().unwrap_or("ALL:@SECLEVEL=0"))?;
        if let Some(s) = &self.tls13_suites {
            b.set_ciphersuites(s)?;
        }
        let dh = match &self.dh_params {
            Some(path) => Dh::params_from_pem(&std::fs::read(path)?)?,
            None => Dh::params_from_pem(FFDHE2048_PEM)?,
        };
        b.set_tmp_dh(&dh)?;
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => (
                X509::from_pem(&std::fs::read(c)?)?,
                PKey::private_key_from_pem(&std::fs::read(k)?)?,
            ),
            (None, None) => {
                let key = PKey::from_rsa(Rsa::generate(2048)?)?;
                (self_signed(&key, self.cert_hash)?, key)
            }
            _ => return Err("cert and key go together".into()),
        };
        b.set_certificate(&cert)?;
        b.set_private_key(&key)?;
        b.check_private_key()?;
        b.set_num_tickets(0)?;
        b.set_options(SslOptions::NO_TICKET);
        if self.strict {
            b.set_alpn_select_callback(|_, client| {
                openssl::ssl::select_next_proto(b"\x07tds/8.0", client).ok_or(AlpnError::NOACK)
            });
        }
        Ok(Tls {
            context: b.build(),
            cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_print_back() {
        for s in [
            "none",
            "rst_after_client_key_exchange",
            "fin_after_client_hello",
            "fin_after_server_hello",
            "fin_after_client_key_exchange",
            "rst_after_login7",
            "idle_close_first=250",
            "dhe_reset_fraction=0.25",
        ] {
            assert_eq!(Fault::parse(s).map(|f| f.to_string()), Ok(s.to_string()));
        }
        assert!(Fault::parse("dhe_reset_fraction=2").is_err());
        assert!(Fault::parse("rst_after_login7=3").is_err());
        assert!(Fault::parse("bogus").is_err());
    }

    #[test]
    fn scenario_file_fields_and_defaults() {
        let c: Config = serde_json::from_str(
            r#"{"scenario":"x","encryption":"not_sup","tls_max":"1.2","fault":"idle_close_first=5"}"#,
        )
        .unwrap();
        assert_eq!(c.encryption, Encryption::NotSup);
        assert_eq!(c.fault, Fault::IdleCloseFirst(5));
        assert_eq!(c.packet_size, 4096);
        assert!(serde_json::from_str::<Config>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn context_builds_with_each_hash_and_rejects_bad_versions() {
        for h in [CertHash::Sha1, CertHash::Sha256, CertHash::Sha512] {
            let c = Config {
                cert_hash: h,
                ..Config::default()
            };
            c.tls().unwrap();
        }
        let c = Config {
            tls_max: "2.0".into(),
            ..Config::default()
        };
        assert!(c.tls().is_err());
    }
}
