//! JSON lines: one object per connection, the verdict record with exactly the documented keys.

use crate::verdict::Verdict;
use std::io::{self, Write};

/// Writes `v` as one JSON line. An error of the writer comes back as it was (its kind intact, so
/// that a closed pipe can be told apart from a real failure).
pub fn write_line(w: &mut dyn Write, v: &Verdict) -> io::Result<()> {
    // `From<serde_json::Error> for io::Error` returns the writer's own error unchanged.
    serde_json::to_writer(&mut *w, v).map_err(io::Error::from)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;
    use crate::conntrack::Side;
    use crate::tls::Certificate;
    use crate::verdict::{
        AlertFact, CertificateFacts, CloseFacts, Durations, Encryption, LoginFacts, LoginResult,
        Mode, Outcome, PreloginFacts, Reason, Stage, TlsFacts,
    };
    use crate::verdict::{SuiteList, Version4};
    use serde_json::{json, Map, Value};

    /// A failed DHE handshake with every fact filled in.
    fn full() -> Verdict {
        Verdict {
            client: "10.0.0.9:51234".parse().expect("addr"),
            server: "10.0.0.5:1433".parse().expect("addr"),
            // 2024-05-01T10:00:00.123456789Z: the JSON keeps microseconds.
            first_seen: Timestamp(1_714_557_600_123_456_789),
            last_seen: Timestamp(1_714_557_601_000_000_000),
            mode: Mode::Tds7,
            encryption: Encryption::LoginOnly,
            stage: Stage::TlsHandshake,
            outcome: Outcome::Failed,
            reason: Some(Reason::DheKeyExchangeFailure),
            prelogin: PreloginFacts {
                client_version: Some(Version4(18, 2, 1, 0)),
                client_encryption: Some("OFF"),
                server_version: Some(Version4(16, 0, 1000, 6)),
                server_encryption: Some("OFF"),
                mars: Some(false),
                instance: Some("MSSQLSERVER".into()),
            },
            tls: TlsFacts {
                client_max_version: Some("TLSv1.2".into()),
                client_min_version: Some("TLSv1.0".into()),
                client_suites: Some(SuiteList(vec![0x009f, 0xc030])),
                dhe_offered: Some(true),
                sni: Some("sql01.example.com".into()),
                alpn: Some(vec!["tds/8.0".into()]),
                ja4: Some("t12d1909h2_d83cc789557e_7af1ed941c26".into()),
                version: Some("TLSv1.2".into()),
                suite: Some("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384".into()),
                kx: Some("dhe"),
                dh_bits: Some(2048),
                completed: Some(false),
                certificate: Some(CertificateFacts(std::sync::Arc::new(Certificate {
                    subject: "CN=sql01".into(),
                    issuer: "CN=Example CA".into(),
                    signature_algorithm: "sha256WithRSAEncryption".into(),
                    key_type: "RSA".into(),
                    key_bits: Some(2048),
                    not_before: 1_704_067_200, // 2024-01-01T00:00:00Z
                    not_after: 1_767_225_600,  // 2026-01-01T00:00:00Z
                    ..Default::default()
                }))),
                alerts: vec![
                    AlertFact {
                        from: Side::Server,
                        level: Some("fatal"),
                        description: Some("handshake_failure".into()),
                    },
                    AlertFact {
                        from: Side::Client,
                        level: None,
                        description: None,
                    },
                ],
            },
            login: LoginFacts {
                result: Some(LoginResult::Error),
                error_number: Some(18456),
                tds_version: Some("7.4".into()),
            },
            close: CloseFacts {
                first_fin: Some(Side::Client),
                first_rst: Some(Side::Server),
                stage: Some(Stage::TlsHandshake),
                abnormal: true,
            },
            durations_ms: Durations {
                prelogin: Some(1.5),
                tls_handshake: Some(2.25),
                login: None,
                total: Some(877.0),
            },
            evidence: "server RST 2 ms after the client's Finished".into(),
            probe: false,
        }
    }

    /// A probe-like verdict: IPv6, nothing seen but the TCP handshake.
    fn bare() -> Verdict {
        Verdict {
            client: "[fe80::1]:40000".parse().expect("addr"),
            server: "[2001:db8::5]:1433".parse().expect("addr"),
            first_seen: Timestamp(1_714_557_600_000_000_000),
            last_seen: Timestamp(1_714_557_600_000_500_000),
            mode: Mode::Unknown,
            encryption: Encryption::Unknown,
            stage: Stage::Connected,
            outcome: Outcome::Failed,
            reason: Some(Reason::Closed),
            prelogin: PreloginFacts::default(),
            tls: TlsFacts::default(),
            login: LoginFacts::default(),
            close: CloseFacts::default(),
            durations_ms: Durations::default(),
            evidence: "client closed before any TDS byte".into(),
            probe: true,
        }
    }

    fn line(v: &Verdict) -> (String, Value) {
        let mut buf = Vec::new();
        write_line(&mut buf, v).expect("write to a Vec");
        let text = String::from_utf8(buf).expect("UTF-8");
        let value = serde_json::from_str(text.trim_end_matches('\n')).expect("valid JSON");
        (text, value)
    }

    fn keys(v: &Value) -> Vec<&str> {
        let obj: &Map<String, Value> = v.as_object().expect("an object");
        let mut k: Vec<&str> = obj.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    fn sorted(mut k: Vec<&str>) -> Vec<&str> {
        k.sort_unstable();
        k
    }

    #[test]
    fn one_line_per_verdict() {
        let (text, _) = line(&full());
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches('\n').count(), 1);
        let mut buf = Vec::new();
        write_line(&mut buf, &full()).expect("write");
        write_line(&mut buf, &bare()).expect("write");
        assert_eq!(String::from_utf8(buf).expect("UTF-8").lines().count(), 2);
    }

    #[test]
    fn exact_key_set_at_every_level() {
        for v in [full(), bare()] {
            let (_, j) = line(&v);
            assert_eq!(
                keys(&j),
                sorted(vec![
                    "client",
                    "server",
                    "first_seen",
                    "last_seen",
                    "mode",
                    "encryption",
                    "stage",
                    "outcome",
                    "reason",
                    "prelogin",
                    "tls",
                    "login",
                    "close",
                    "durations_ms",
                ])
            );
            assert_eq!(
                keys(&j["prelogin"]),
                sorted(vec![
                    "client_version",
                    "client_encryption",
                    "server_version",
                    "server_encryption",
                    "mars",
                    "instance",
                ])
            );
            assert_eq!(
                keys(&j["tls"]),
                sorted(vec![
                    "client_max_version",
                    "client_min_version",
                    "client_suites",
                    "dhe_offered",
                    "sni",
                    "alpn",
                    "ja4",
                    "version",
                    "suite",
                    "kx",
                    "dh_bits",
                    "completed",
                    "certificate",
                    "alerts",
                ])
            );
            assert_eq!(
                keys(&j["login"]),
                sorted(vec!["result", "error_number", "tds_version"])
            );
            assert_eq!(
                keys(&j["close"]),
                sorted(vec!["first_fin", "first_rst", "stage", "abnormal"])
            );
            assert_eq!(
                keys(&j["durations_ms"]),
                sorted(vec!["prelogin", "tls_handshake", "login", "total"])
            );
        }
        let (_, j) = line(&full());
        assert_eq!(
            keys(&j["tls"]["certificate"]),
            sorted(vec![
                "subject",
                "issuer",
                "signature_algorithm",
                "key_type",
                "key_bits",
                "not_before",
                "not_after",
            ])
        );
        let alerts = j["tls"]["alerts"].as_array().expect("alerts array");
        assert_eq!(alerts.len(), 2);
        for a in alerts {
            assert_eq!(keys(a), sorted(vec!["from", "level", "description"]));
        }
    }

    #[test]
    fn nothing_private_or_internal_leaks() {
        for v in [full(), bare()] {
            let (text, _) = line(&v);
            assert!(!text.contains("evidence"), "{text}");
            assert!(!text.contains("probe"), "{text}");
            assert!(!text.contains(&*v.evidence), "{text}");
        }
    }

    #[test]
    fn values_of_a_full_verdict() {
        let (_, j) = line(&full());
        let expected = json!({
            "client": "10.0.0.9:51234",
            "server": "10.0.0.5:1433",
            "first_seen": "2024-05-01T10:00:00.123456Z",
            "last_seen": "2024-05-01T10:00:01.000000Z",
            "mode": "tds7",
            "encryption": "login_only",
            "stage": "tls_handshake",
            "outcome": "failed",
            "reason": "dhe_key_exchange_failure",
            "prelogin": {
                "client_version": "18.2.1.0",
                "client_encryption": "OFF",
                "server_version": "16.0.1000.6",
                "server_encryption": "OFF",
                "mars": false,
                "instance": "MSSQLSERVER"
            },
            "tls": {
                "client_max_version": "TLSv1.2",
                "client_min_version": "TLSv1.0",
                "client_suites": [
                    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
                    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
                ],
                "dhe_offered": true,
                "sni": "sql01.example.com",
                "alpn": ["tds/8.0"],
                "ja4": "t12d1909h2_d83cc789557e_7af1ed941c26",
                "version": "TLSv1.2",
                "suite": "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
                "kx": "dhe",
                "dh_bits": 2048,
                "completed": false,
                "certificate": {
                    "subject": "CN=sql01",
                    "issuer": "CN=Example CA",
                    "signature_algorithm": "sha256WithRSAEncryption",
                    "key_type": "RSA",
                    "key_bits": 2048,
                    "not_before": "2024-01-01T00:00:00Z",
                    "not_after": "2026-01-01T00:00:00Z"
                },
                "alerts": [
                    {"from": "server", "level": "fatal", "description": "handshake_failure"},
                    {"from": "client", "level": null, "description": null}
                ]
            },
            "login": {"result": "error", "error_number": 18456, "tds_version": "7.4"},
            "close": {
                "first_fin": "client",
                "first_rst": "server",
                "stage": "tls_handshake",
                "abnormal": true
            },
            "durations_ms": {"prelogin": 1.5, "tls_handshake": 2.25, "login": null, "total": 877.0}
        });
        assert_eq!(j, expected);
    }

    #[test]
    fn values_of_a_bare_verdict_are_nulls() {
        let (_, j) = line(&bare());
        assert_eq!(j["client"], "[fe80::1]:40000");
        assert_eq!(j["server"], "[2001:db8::5]:1433");
        assert_eq!(j["first_seen"], "2024-05-01T10:00:00.000000Z");
        assert_eq!(j["last_seen"], "2024-05-01T10:00:00.000500Z");
        assert_eq!(j["mode"], "unknown");
        assert_eq!(j["encryption"], "unknown");
        assert_eq!(j["stage"], "connected");
        assert_eq!(j["reason"], "closed");
        for (section, key) in [
            ("prelogin", "client_version"),
            ("prelogin", "client_encryption"),
            ("prelogin", "server_version"),
            ("prelogin", "server_encryption"),
            ("prelogin", "mars"),
            ("prelogin", "instance"),
            ("tls", "client_max_version"),
            ("tls", "client_min_version"),
            ("tls", "client_suites"),
            ("tls", "dhe_offered"),
            ("tls", "sni"),
            ("tls", "alpn"),
            ("tls", "ja4"),
            ("tls", "version"),
            ("tls", "suite"),
            ("tls", "kx"),
            ("tls", "dh_bits"),
            ("tls", "completed"),
            ("tls", "certificate"),
            ("login", "result"),
            ("login", "error_number"),
            ("login", "tds_version"),
            ("close", "first_fin"),
            ("close", "first_rst"),
            ("close", "stage"),
            ("durations_ms", "prelogin"),
            ("durations_ms", "tls_handshake"),
            ("durations_ms", "login"),
            ("durations_ms", "total"),
        ] {
            assert_eq!(j[section][key], Value::Null, "{section}.{key}");
        }
        assert_eq!(j["tls"]["alerts"], json!([]));
        assert_eq!(j["close"]["abnormal"], false);
        let mut established = bare();
        established.outcome = Outcome::Established;
        established.reason = None;
        assert_eq!(line(&established).1["reason"], Value::Null);
    }

    #[test]
    fn a_failing_writer_reports_the_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = write_line(&mut Closed, &full()).expect_err("must fail");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
