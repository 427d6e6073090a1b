//! Conformance: every public capture in `../shared/captures/public/` gives the verdicts its
//! PROVENANCE.md row describes. The expectations below are written from that description, not from
//! tdswatch's output.

use std::path::PathBuf;
use tdswatch::capture::file::FileSource;
use tdswatch::capture::FrameSource;
use tdswatch::config::Config;
use tdswatch::output::RunSummary;
use tdswatch::pipeline::Pipeline;
use tdswatch::verdict::{Encryption, LoginResult, Mode, Outcome, Reason, Side, Stage, Verdict};

fn capture(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/public");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: the tests need ../shared beside the project (CI provides it)",
        path.display()
    );
    path
}

/// Runs the pipeline over one file, with extra server ports.
fn analyze(name: &str, extra_ports: &[u16]) -> (Vec<Verdict>, RunSummary) {
    let mut config = Config::default();
    config.ports.extend_from_slice(extra_ports);
    let mut source = FileSource::open(&capture(name)).expect("open");
    let mut pipeline = Pipeline::new(&config);
    let mut verdicts = Vec::new();
    while let Some(frame) = source.next_frame().expect("a readable capture") {
        pipeline.on_frame(&frame, &mut |v| verdicts.push(v));
    }
    pipeline.finish(&mut |v| verdicts.push(v));
    let mut summary = RunSummary::default();
    pipeline.add_to_summary(&mut summary);
    (verdicts, summary)
}

fn only(verdicts: &[Verdict]) -> &Verdict {
    assert_eq!(
        verdicts.len(),
        1,
        "exactly one connection expected: {verdicts:#?}"
    );
    &verdicts[0]
}

/// SQL Server 2022, login-only TLS 1.2 inside TDS, every frame captured twice.
fn check_sql2022(v: &Verdict) {
    assert_eq!(v.server.to_string(), "172.17.0.2:1433");
    assert_eq!(v.client.ip().to_string(), "10.128.0.3");
    assert_eq!(v.mode, Mode::Tds7);
    assert_eq!(v.encryption, Encryption::LoginOnly);
    assert_eq!(v.stage, Stage::Established);
    assert_eq!(v.outcome, Outcome::Established);
    assert_eq!(v.reason, None);
    assert_eq!(v.prelogin.client_encryption, Some("OFF"));
    assert_eq!(v.prelogin.server_encryption, Some("OFF"));
    assert!(
        v.prelogin
            .server_version
            .map(|v| v.to_string())
            .as_deref()
            .is_some_and(|s| s.starts_with("16.0.600")),
        "{:?}",
        v.prelogin
    );
    assert_eq!(v.tls.version.as_deref(), Some("TLSv1.2"));
    assert_eq!(
        v.tls.suite.as_deref(),
        Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    );
    assert_eq!(v.tls.kx, Some("ecdhe"));
    assert_eq!(v.tls.completed, Some(true));
    let cert = v
        .tls
        .certificate
        .as_ref()
        .expect("the certificate travels in clear with TLS 1.2");
    assert!(
        cert.subject.contains("SSL_Self_Signed_Fallback"),
        "{}",
        cert.subject
    );
    assert_eq!(v.login.result, Some(LoginResult::Ack));
    assert_eq!(v.login.tds_version.as_deref(), Some("7.4"));
    assert_eq!(v.close.first_fin, Some(Side::Client));
    assert_eq!(v.close.first_rst, None);
    assert!(!v.close.abnormal);
    assert!(v.tls.alerts.is_empty());
}

#[test]
fn sql_server_2022_login_is_one_connection_login_only_tls12() {
    let (verdicts, summary) = analyze("0x5CE-beats__mssql_login.pcap", &[]);
    check_sql2022(only(&verdicts));
    assert!(
        summary.duplicates >= 20,
        "every frame appears twice: {summary:?}"
    );
}

#[test]
fn sql_server_2022_login_and_select() {
    let (verdicts, _) = analyze("0x5CE-beats__mssql_login_and_select.pcap", &[]);
    check_sql2022(only(&verdicts));
}

#[test]
fn sql_server_2019_capture_ends_with_the_connection_open() {
    let (verdicts, _) = analyze("0x5CE-beats__mssql_15x_login_and_select.pcap", &[]);
    let v = only(&verdicts);
    assert_eq!(v.mode, Mode::Tds7);
    assert_eq!(v.encryption, Encryption::LoginOnly);
    assert_eq!(v.stage, Stage::Established);
    assert_eq!(
        v.outcome,
        Outcome::Unknown,
        "open at the end of the capture"
    );
    assert!(v
        .prelogin
        .server_version
        .map(|v| v.to_string())
        .as_deref()
        .is_some_and(|s| s.starts_with("15.0.4236")));
    assert_eq!(v.tls.client_max_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(v.tls.version.as_deref(), Some("TLSv1.2"));
    assert_eq!(
        v.tls.suite.as_deref(),
        Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    );
    assert_eq!(v.login.result, Some(LoginResult::Ack));
    assert_eq!(v.login.tds_version.as_deref(), Some("7.4"));
    assert_eq!((v.close.first_fin, v.close.first_rst), (None, None));
}

#[test]
fn sql_server_2000_without_encryption() {
    let (verdicts, _) = analyze("arkime__tds7.pcap", &[]);
    let v = only(&verdicts);
    assert_eq!(v.mode, Mode::Tds7);
    assert_eq!(v.encryption, Encryption::None);
    assert_eq!(v.prelogin.client_encryption, Some("OFF"));
    assert_eq!(v.prelogin.server_encryption, Some("NOT_SUP"));
    assert_eq!(
        (v.outcome, v.stage),
        (Outcome::Established, Stage::Established)
    );
    assert_eq!(v.login.result, Some(LoginResult::Ack));
    assert_eq!(v.login.tds_version.as_deref(), Some("7.1"));
    assert_eq!(v.tls.version, None);
    assert_eq!(v.close.first_fin, Some(Side::Client));
    assert!(!v.close.abnormal);
}

#[test]
fn ntlm_over_ipv6_login7_first_no_loginack() {
    let (verdicts, _) = analyze("arkime__ntlm_synthetic.pcap", &[]);
    let v = only(&verdicts);
    assert!(v.server.is_ipv6());
    assert_eq!(v.server.port(), 1433);
    assert_eq!(v.mode, Mode::Tds7, "LOGIN7 first is TDS 7 without PRELOGIN");
    assert_eq!(v.encryption, Encryption::None);
    assert_eq!(v.stage, Stage::Login);
    assert_eq!(v.outcome, Outcome::Failed);
    assert_eq!(v.reason, Some(Reason::Closed));
    assert_eq!(v.close.first_fin, Some(Side::Client));
    assert!(!v.close.abnormal);
}

#[test]
fn sybase_tds5_is_not_a_sql_server_handshake() {
    let (verdicts, _) = analyze("arkime__tds5.pcap", &[]);
    assert!(verdicts.is_empty(), "port 3106 is not watched by default");
    let (verdicts, summary) = analyze("arkime__tds5.pcap", &[3106]);
    assert!(
        verdicts.is_empty(),
        "TDS 5 must not be reported: {verdicts:#?}"
    );
    assert_eq!(summary.non_tds_flows, 1);
}

#[test]
fn joined_mid_stream_connections_are_unknown() {
    let (verdicts, _) = analyze("nDPI__mssql_tds.pcap", &[]);
    assert_eq!(verdicts.len(), 12, "{verdicts:#?}");
    for v in &verdicts {
        assert_eq!(v.outcome, Outcome::Unknown, "{v:#?}");
        assert_eq!(v.mode, Mode::Unknown);
        assert_eq!(v.encryption, Encryption::Unknown);
        assert_eq!(v.reason, None);
        assert_eq!((v.close.first_fin, v.close.first_rst), (None, None));
    }
}

#[test]
fn random_payloads_on_1433_are_not_reported() {
    let (verdicts, summary) = analyze("mrp__tds.pcap", &[]);
    assert!(verdicts.is_empty(), "{verdicts:#?}");
    assert_eq!(summary.frames, 1000);
    assert_eq!(summary.non_tds_flows, 1);
}

#[test]
fn pre_tds7_login_is_not_reported() {
    let (verdicts, summary) = analyze("tdspsql__tds.pcap", &[]);
    assert!(verdicts.is_empty(), "{verdicts:#?}");
    assert_eq!(summary.non_tds_flows, 1);
}

#[test]
fn plain_tls_dhe_as_tls_first() {
    let (verdicts, _) = analyze("zeek__tls__dhe.pcap", &[443]);
    let v = only(&verdicts);
    assert_eq!(v.mode, Mode::Tds8Strict, "TLS first on the connection");
    assert_eq!(v.tls.version.as_deref(), Some("TLSv1.2"));
    assert_eq!(
        v.tls.suite.as_deref(),
        Some("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA")
    );
    assert_eq!(v.tls.kx, Some("dhe"));
    assert!(
        v.tls.dh_bits.is_some_and(|b| b >= 1024),
        "{:?}",
        v.tls.dh_bits
    );
    assert_eq!(v.tls.completed, Some(true));
    assert_eq!(v.close.first_fin, Some(Side::Server));
    assert!(v.close.abnormal, "server FIN first, then RSTs");
    assert!(v
        .tls
        .alerts
        .iter()
        .any(|a| a.from == Side::Server && a.description.is_none()));
    assert_eq!(v.outcome, Outcome::Failed);
}

#[test]
fn plain_tls_protocol_version_alert() {
    let (verdicts, _) = analyze("nDPI__tls_alert.pcap", &[443]);
    let failed: Vec<_> = verdicts
        .iter()
        .filter(|v| v.outcome == Outcome::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{verdicts:#?}");
    let v = failed[0];
    assert_eq!(v.reason, Some(Reason::NoCommonTlsVersion));
    assert_eq!(v.stage, Stage::TlsHandshake);
    assert_eq!(v.tls.alerts.len(), 1);
    assert_eq!(v.tls.alerts[0].from, Side::Server);
    assert_eq!(v.tls.alerts[0].level, Some("fatal"));
    assert_eq!(
        v.tls.alerts[0].description.as_deref(),
        Some("protocol_version")
    );
    assert_eq!(v.close.first_fin, Some(Side::Server));
    assert!(v.close.abnormal);
    // The other flow is a mid-stream fragment: unknown, never failed.
    assert!(verdicts
        .iter()
        .filter(|v| v.outcome != Outcome::Failed)
        .all(|v| v.outcome == Outcome::Unknown));
}

#[test]
fn every_public_capture_reads_to_the_end() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/public");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("../shared/captures/public") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8 name");
        if !name.ends_with(".pcap") && !name.ends_with(".pcapng") {
            continue;
        }
        // Every port that appears in these captures' TDS/TLS flows.
        let (_, summary) = analyze(&name, &[443, 3106]);
        assert!(summary.frames > 0, "{name}");
        seen += 1;
    }
    assert!(seen >= 11, "expected the 11 public captures, found {seen}");
}
