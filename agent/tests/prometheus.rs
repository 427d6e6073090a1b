//! `tdswatch analyze --format prometheus`, end to end: the binary over `samples/mixed.pcap` and the
//! public captures in `../shared/captures/public/`. Checks exact sample lines, that every counter
//! family agrees with the JSON verdicts of the same file (both come from the verdicts), and that the
//! output passes `promtool check metrics` (Debian package `prometheus`; `tests/run.sh` installs it).
//!
//! promtool reads the Prometheus text format, not OpenMetrics: [`to_prometheus_text`] converts by
//! renaming counter families in `# HELP`/`# TYPE` to their `_total` sample name and dropping
//! `# UNIT` and `# EOF`; sample lines are left exactly as they are.
//!
//! The public captures are read from `../shared` beside the project, or from `$TDSWATCH_SHARED`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `../shared/captures/public` beside the project, or `$TDSWATCH_SHARED/captures/public` (for a
/// git worktree that lives elsewhere).
fn public(name: &str) -> PathBuf {
    let shared = match std::env::var_os("TDSWATCH_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let path = shared.join("captures/public").join(name);
    assert!(
        path.exists(),
        "{} is missing: the tests need ../shared beside the project (CI provides it)",
        path.display()
    );
    path
}

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../samples")
        .join(name)
}

/// Runs `tdswatch analyze` and gives its stdout; the run must succeed.
fn analyze(format: &str, files: &[PathBuf], ports: &[u16]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tdswatch"));
    cmd.args(["analyze", "--no-progress", "--format", format]);
    for p in ports {
        cmd.arg(format!("--port={p}"));
    }
    cmd.args(files);
    let out = cmd.output().expect("run tdswatch");
    assert!(
        out.status.success(),
        "tdswatch {format} {files:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The sample lines: series (name and labels, as written) to value.
fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().expect("a number");
            (key.to_owned(), value)
        })
        .collect()
}

/// OpenMetrics text to the Prometheus text format (see the module comment).
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `promtool check metrics` on the converted text; a missing promtool is a failure.
fn promtool_check(openmetrics: &str) {
    assert!(
        openmetrics.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF"
    );
    let text = to_prometheus_text(openmetrics);
    assert_eq!(
        series(&text),
        series(openmetrics),
        "the conversion changed samples"
    );
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool cannot be run ({e}): install the Debian package `prometheus` (tests/run.sh does)"
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused the output:\n{}{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn has(series: &BTreeMap<String, f64>, key: &str, value: f64) {
    assert_eq!(
        series.get(key),
        Some(&value),
        "{key}: in\n{}",
        series
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// What the counter families must hold, counted here from the JSON verdicts of the same run.
fn expected_from_json(jsonl: &str) -> BTreeMap<String, f64> {
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    let mut add = |key: String| *want.entry(key).or_default() += 1.0;
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let server = s(&v, &["server"]).expect("server");
        let outcome = s(&v, &["outcome"]).expect("outcome");
        let stage = s(&v, &["stage"]).expect("stage");
        let encryption = s(&v, &["encryption"]).expect("encryption");
        add(format!(
            r#"tds_connections_total{{server="{server}",encryption="{encryption}",outcome="{outcome}"}}"#
        ));
        if outcome == "failed" {
            // Probes and other failures together: `merge_probes` folds the probes in likewise.
            let reason = s(&v, &["reason"]).unwrap_or("unknown");
            add(format!(
                r#"tds_handshake_failures_total{{server="{server}",stage="{stage}",reason="{reason}"}}"#
            ));
        }
        let close = &v["close"];
        if close["abnormal"].as_bool() == Some(true) {
            let (side, kind) = match (s(close, &["first_rst"]), s(close, &["first_fin"])) {
                (Some(side), _) => (side, "rst"),
                (None, Some(side)) => (side, "fin"),
                (None, None) => panic!("abnormal without FIN or RST: {line}"),
            };
            let at = s(close, &["stage"]).unwrap_or(stage);
            add(format!(
                r#"tds_abnormal_closes_total{{server="{server}",stage="{at}",side="{side}",kind="{kind}"}}"#
            ));
        }
        let (client, srv) = (
            s(&v, &["prelogin", "client_encryption"]),
            s(&v, &["prelogin", "server_encryption"]),
        );
        if client.is_some() || srv.is_some() {
            add(format!(
                r#"tds_prelogin_encryption_total{{server="{server}",client="{}",server_setting="{}"}}"#,
                client.unwrap_or("none"),
                srv.unwrap_or("none")
            ));
        }
        if let Some(result) = s(&v, &["login", "result"]) {
            let error = v["login"]["error_number"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_default();
            add(format!(
                r#"tds_login_results_total{{server="{server}",result="{result}",error="{error}"}}"#
            ));
        }
        let tls = &v["tls"];
        if let Some(max) = s(tls, &["client_max_version"]) {
            let dhe = match tls["dhe_offered"].as_bool() {
                Some(b) => b.to_string(),
                None => "unknown".into(),
            };
            add(format!(
                r#"tds_tls_client_hellos_total{{server="{server}",max_version="{max}",dhe_offered="{dhe}"}}"#
            ));
            if let Some(version) = s(tls, &["version"]) {
                let result = if tls["completed"].as_bool() == Some(true) {
                    Some("completed")
                } else if outcome == "failed" {
                    Some("failed")
                } else {
                    None
                };
                if let Some(result) = result {
                    add(format!(
                        r#"tds_tls_handshakes_total{{server="{server}",version="{version}",suite="{}",kx="{}",result="{result}"}}"#,
                        s(tls, &["suite"]).unwrap_or("unknown"),
                        s(tls, &["kx"]).unwrap_or("unknown")
                    ));
                }
            }
        }
        for alert in tls["alerts"].as_array().expect("alerts") {
            add(format!(
                r#"tds_tls_alerts_total{{server="{server}",side="{}",description="{}"}}"#,
                s(alert, &["from"]).expect("from"),
                s(alert, &["description"]).unwrap_or("encrypted")
            ));
        }
    }
    want
}

/// The `tds_*_total` counter series, with `tds_tcp_probes_total{server}` folded into the handshake
/// failures as stage `connected`, reason `closed` (what a probe's JSON verdict says).
fn counters_with_probes_merged(series: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut got = BTreeMap::new();
    for (key, value) in series {
        if let Some(rest) = key.strip_prefix("tds_tcp_probes_total{") {
            let server = rest.strip_suffix('}').expect("labels");
            *got.entry(format!(
                r#"tds_handshake_failures_total{{{server},stage="connected",reason="closed"}}"#
            ))
            .or_default() += value;
        } else if key.starts_with("tds_")
            && key.split('{').next().is_some_and(|n| n.ends_with("_total"))
        {
            *got.entry(key.clone()).or_default() += value;
        }
    }
    got
}

/// Prometheus and JSON over the same files: every counter agrees, and promtool accepts the text.
fn agrees_with_json(files: &[PathBuf], ports: &[u16]) -> BTreeMap<String, f64> {
    let text = analyze("prometheus", files, ports);
    promtool_check(&text);
    let got = series(&text);
    let want = expected_from_json(&analyze("json", files, ports));
    assert_eq!(
        counters_with_probes_merged(&got),
        want,
        "the metrics disagree with the JSON verdicts of {files:?}"
    );
    got
}

#[test]
fn mixed_sample_agrees_with_json_and_passes_promtool() {
    let got = agrees_with_json(&[sample("mixed.pcap")], &[]);
    let connections: f64 = got
        .iter()
        .filter(|(k, _)| k.starts_with("tds_connections_total{"))
        .map(|(_, v)| v)
        .sum();
    let json_lines = analyze("json", &[sample("mixed.pcap")], &[])
        .lines()
        .count();
    assert_eq!(connections, json_lines as f64);
    // The established ones, and nothing else, are in the handshake duration histogram.
    let established: f64 = got
        .iter()
        .filter(|(k, _)| {
            k.starts_with("tds_connections_total{") && k.contains(r#"outcome="established""#)
        })
        .map(|(_, v)| v)
        .sum();
    let timed: f64 = got
        .iter()
        .filter(|(k, _)| k.starts_with("tds_handshake_duration_seconds_count{"))
        .map(|(_, v)| v)
        .sum();
    assert!(established > 0.0);
    assert_eq!(timed, established);
    has(&got, r#"tdswatch_build_info{version="0.1.0"}"#, 1.0);
}

#[test]
fn every_public_capture_agrees_with_json_and_passes_promtool() {
    for (name, ports) in [
        ("0x5CE-beats__mssql_15x_login_and_select.pcap", &[][..]),
        ("0x5CE-beats__mssql_login.pcap", &[]),
        ("0x5CE-beats__mssql_login_and_select.pcap", &[]),
        ("arkime__ntlm_synthetic.pcap", &[]),
        ("arkime__tds5.pcap", &[3106]),
        ("arkime__tds7.pcap", &[]),
        ("mrp__tds.pcap", &[]),
        ("nDPI__mssql_tds.pcap", &[]),
        ("nDPI__tls_alert.pcap", &[443]),
        ("tdspsql__tds.pcap", &[]),
        ("zeek__tls__dhe.pcap", &[443]),
    ] {
        agrees_with_json(&[public(name)], ports);
    }
}

#[test]
fn sql_server_2022_login() {
    let got = agrees_with_json(&[public("0x5CE-beats__mssql_login.pcap")], &[]);
    let srv = r#"server="172.17.0.2:1433""#;
    for (key, value) in [
        (
            format!(
                r#"tds_connections_total{{{srv},encryption="login_only",outcome="established"}}"#
            ),
            1.0,
        ),
        (
            format!(
                r#"tds_tls_handshakes_total{{{srv},version="TLSv1.2",suite="TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",kx="ecdhe",result="completed"}}"#
            ),
            1.0,
        ),
        (
            format!(
                r#"tds_tls_client_hellos_total{{{srv},max_version="TLSv1.2",dhe_offered="true"}}"#
            ),
            1.0,
        ),
        (
            format!(r#"tds_prelogin_encryption_total{{{srv},client="OFF",server_setting="OFF"}}"#),
            1.0,
        ),
        (
            format!(r#"tds_login_results_total{{{srv},result="ack",error=""}}"#),
            1.0,
        ),
        (
            format!(r#"tds_handshake_duration_seconds_count{{{srv},encryption="login_only"}}"#),
            1.0,
        ),
        (
            format!(r#"tds_stage_duration_seconds_count{{{srv},stage="prelogin"}}"#),
            1.0,
        ),
        (
            format!(r#"tds_stage_duration_seconds_count{{{srv},stage="tls_handshake"}}"#),
            1.0,
        ),
        (
            format!(r#"tds_stage_duration_seconds_count{{{srv},stage="login"}}"#),
            1.0,
        ),
        (
            format!(
                r#"tds_server_certificate_info{{{srv},subject="CN=SSL_Self_Signed_Fallback",issuer="CN=SSL_Self_Signed_Fallback",signature_algorithm="sha256WithRSAEncryption",key_bits="3072"}}"#
            ),
            1.0,
        ),
        // Every frame is in the capture twice.
        ("tdswatch_frames_total".to_owned(), 44.0),
        ("tdswatch_duplicate_segments_total".to_owned(), 20.0),
    ] {
        has(&got, &key, value);
    }
    for family in [
        "tds_handshake_failures_total",
        "tds_abnormal_closes_total",
        "tds_tls_alerts_total",
        "tds_tcp_probes_total",
    ] {
        assert!(
            !got.keys().any(|k| k.starts_with(family)),
            "{family}: {got:?}"
        );
    }
}

#[test]
fn dhe_and_alerts_on_plain_tls() {
    let got = agrees_with_json(&[public("zeek__tls__dhe.pcap")], &[443]);
    let srv = r#"server="162.219.2.166:443""#;
    has(
        &got,
        &format!(
            r#"tds_tls_handshakes_total{{{srv},version="TLSv1.2",suite="TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",kx="dhe",result="completed"}}"#
        ),
        1.0,
    );
    has(
        &got,
        &format!(r#"tds_abnormal_closes_total{{{srv},stage="login",side="server",kind="fin"}}"#),
        1.0,
    );
    has(
        &got,
        &format!(r#"tds_tls_alerts_total{{{srv},side="server",description="encrypted"}}"#),
        1.0,
    );
    has(
        &got,
        &format!(r#"tds_server_certificate_not_after_seconds{{{srv}}}"#),
        1_427_786_152.0,
    );

    let got = agrees_with_json(&[public("nDPI__tls_alert.pcap")], &[443]);
    let srv = r#"server="192.168.1.20:443""#;
    has(
        &got,
        &format!(
            r#"tds_handshake_failures_total{{{srv},stage="tls_handshake",reason="no_common_tls_version"}}"#
        ),
        1.0,
    );
    has(
        &got,
        &format!(r#"tds_tls_alerts_total{{{srv},side="server",description="protocol_version"}}"#),
        1.0,
    );
    has(
        &got,
        &format!(
            r#"tds_tls_client_hellos_total{{{srv},max_version="TLSv1.0",dhe_offered="true"}}"#
        ),
        1.0,
    );
    // No ServerHello: not a TLS handshake with a version to count.
    assert!(
        !got.keys()
            .any(|k| k.starts_with("tds_tls_handshakes_total")),
        "{got:?}"
    );
}

#[test]
fn several_files_are_summed() {
    let got = agrees_with_json(
        &[
            public("0x5CE-beats__mssql_login.pcap"),
            public("0x5CE-beats__mssql_login_and_select.pcap"),
        ],
        &[],
    );
    has(
        &got,
        r#"tds_connections_total{server="172.17.0.2:1433",encryption="login_only",outcome="established"}"#,
        2.0,
    );
    has(&got, "tdswatch_frames_total", 94.0);
}

#[test]
fn promtool_refuses_unconverted_openmetrics() {
    // The conversion is needed, and promtool is really checking: the raw OpenMetrics counters
    // have no help text under their sample names.
    let text = analyze("prometheus", &[public("arkime__tds7.pcap")], &[]);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool: install the Debian package `prometheus` (tests/run.sh does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(!out.status.success(), "promtool accepted raw OpenMetrics");
    promtool_check(&text);
}
