//! The `tdswatch analyze` command as users run it: its outputs, its exit status on bad files, and
//! that no secret from the wire ever reaches them.

use std::path::PathBuf;
use std::process::{Command, Output};

fn public(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/captures/public")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing (../shared must sit beside the project)",
        path.display()
    );
    path
}

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples/mixed.pcap")
}

fn analyze(args: &[&str], files: &[&PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tdswatch"))
        .arg("analyze")
        .args(args)
        .args(files)
        .output()
        .expect("run tdswatch")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn json_lines_one_per_connection_with_the_documented_keys() {
    let out = analyze(
        &["--format", "json"],
        &[&public("0x5CE-beats__mssql_login.pcap")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "client",
            "close",
            "durations_ms",
            "encryption",
            "first_seen",
            "last_seen",
            "login",
            "mode",
            "outcome",
            "prelogin",
            "reason",
            "server",
            "stage",
            "tls"
        ]
    );
    assert_eq!(v["server"], "172.17.0.2:1433");
    assert_eq!(v["encryption"], "login_only");
    assert_eq!(v["outcome"], "established");
    assert_eq!(v["tls"]["version"], "TLSv1.2");
    assert_eq!(v["tls"]["suite"], "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(v["close"]["first_fin"], "client");
    assert!(
        v["tls"]["ja4"]
            .as_str()
            .is_some_and(|j| j.starts_with("t12d")),
        "{}",
        v["tls"]["ja4"]
    );
    assert!(v["first_seen"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.contains('T')));
}

#[test]
fn the_report_names_failures_with_their_evidence() {
    let out = analyze(&["--no-progress"], &[&sample()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "dhe_key_exchange_failure",
        "no_common_tls_version",
        "login_failed",
        "refused",
        "after the client's Finished instead of its ChangeCipherSpec",
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        "TCP probes",
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }
}

#[test]
fn a_truncated_file_reports_what_was_read_then_fails_with_one_line() {
    let whole = std::fs::read(public("arkime__tds7.pcap")).expect("read");
    let cut = std::env::temp_dir().join(format!("tdswatch-cut-{}.pcap", std::process::id()));
    // Cut in the middle of the last record.
    std::fs::write(&cut, &whole[..whole.len() - 20]).expect("write");
    let out = analyze(&["--format", "json"], &[&cut]);
    std::fs::remove_file(&cut).ok();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "the connection read so far is reported: {stdout}"
    );
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("tdswatch: ") && lines[0].contains("ends in the middle of a record"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_and_a_file_that_is_no_capture_fail() {
    let junk = std::env::temp_dir().join(format!("tdswatch-junk-{}.pcap", std::process::id()));
    std::fs::write(&junk, b"this is not a capture file at all").expect("write");
    let missing = PathBuf::from("/nonexistent/capture.pcap");
    let out = analyze(&[], &[&junk, &missing]);
    std::fs::remove_file(&junk).ok();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.contains("not a pcap or pcapng file"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_tdswatch"))
        .args(["analyze", "--format", "xml", "x.pcap"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// tdspsql's capture carries a clear-text password ("xyzzy") and user ("tdspsql") in a TDS 4.2
/// login; the NTLM capture names a user ("mona"); SQL Server 2000's LOGIN7 is in clear ("testuser").
/// None may reach any output.
#[test]
fn no_user_name_or_password_in_any_output() {
    for format in ["text", "json"] {
        let out = analyze(
            &["--format", format, "--port", "3106"],
            &[
                &public("tdspsql__tds.pcap"),
                &public("arkime__ntlm_synthetic.pcap"),
                &public("arkime__tds7.pcap"),
                &public("0x5CE-beats__mssql_login.pcap"),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr)).to_lowercase();
        for secret in ["xyzzy", "tdspsql", "mona", "tdsdom", "testuser"] {
            assert!(!all.contains(secret), "{format} output contains {secret:?}");
        }
    }
}
