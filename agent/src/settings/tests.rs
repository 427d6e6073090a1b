//! Settings: every key, the defaults, the errors (with key, line and column), the parsers for
//! durations, sizes and networks, and the flags laid over the file.

use super::*;
use clap::Parser;

fn err(yaml: &str) -> SettingsError {
    match Settings::from_yaml(yaml) {
        Ok(s) => panic!("accepted {yaml:?}: {s:?}"),
        Err(e) => e,
    }
}

/// The error is at `line`:`column`, under `key`, and its message holds `needle`.
fn assert_err(yaml: &str, line: u64, column: u64, key: &str, needle: &str) {
    let e = err(yaml);
    assert_eq!(
        (e.line, e.column, e.key.as_deref()),
        (Some(line), Some(column), Some(key)),
        "{yaml:?} gave {e}"
    );
    assert!(e.message.contains(needle), "{yaml:?} gave {e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("line {line} column {column}: {key}: ")),
        "{shown}"
    );
}

#[test]
fn defaults() {
    let s = Settings::default();
    assert_eq!(s.web.listen_address.to_string(), "0.0.0.0:9433");
    assert_eq!(s.web.telemetry_path.0, "/metrics");
    assert_eq!(s.log.level, LogLevel::Info);
    assert_eq!(s.log.format, LogFormat::Logfmt);
    assert!(s.capture.interfaces.is_empty());
    assert_eq!(s.capture.ports, vec![Port(1433)]);
    assert_eq!(s.capture.buffer_bytes, ByteSize(64 * 1024 * 1024));
    assert_eq!(s.capture.snaplen, Snaplen(262_144));
    assert_eq!(s.metrics.max_servers, Count(64));
    assert!(s.metrics.client_subnets.is_empty());
    assert_eq!(s.event_log.path, None);
    assert!(!s.event_log.all_connections);
    // The limits are the pipeline's own defaults, field for field.
    let c = s.pipeline_config();
    let d = Config::default();
    assert_eq!(c.ports, d.ports);
    assert_eq!(format!("{:?}", c.limits), format!("{:?}", d.limits));
}

#[test]
fn empty_and_comment_only_documents_are_the_defaults() {
    for yaml in ["", "\n", "# nothing set\n"] {
        assert_eq!(
            Settings::from_yaml(yaml).expect(yaml),
            Settings::default(),
            "{yaml:?}"
        );
    }
}

#[test]
fn every_key_is_read() {
    let yaml = "\
web:
  listen_address: 127.0.0.1:19433
  telemetry_path: /tds/metrics
log:
  level: debug
  format: json
capture:
  interfaces: [eth0, veth1a2b]
  ports:
    - 1433
    - 14330
    - 1433
  buffer_bytes: 128MiB
  snaplen: 65535
limits:
  max_connections: 5000
  max_ooo_bytes_per_direction: 128KiB
  max_ooo_segments_per_direction: 32
  max_buffered_bytes_total: 1GiB
  max_tds_message: 32KiB
  max_tls_handshake_message: 96KiB
  handshake_idle_timeout: 45s
  established_idle_timeout: 1h30m
metrics:
  max_servers: 16
  client_subnets: [10.20.0.0/16, 'fd00::/8']
event_log:
  path: /var/log/tdswatch/events.jsonl
  all_connections: true
";
    let s = Settings::from_yaml(yaml).expect("valid");
    assert_eq!(s.web.listen_address.to_string(), "127.0.0.1:19433");
    assert_eq!(s.web.telemetry_path.0, "/tds/metrics");
    assert_eq!(s.log.level, LogLevel::Debug);
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(
        s.capture.interfaces,
        vec![Interface("eth0".into()), Interface("veth1a2b".into())]
    );
    assert_eq!(s.capture.buffer_bytes, ByteSize(128 * MIB));
    assert_eq!(s.capture.snaplen, Snaplen(65535));
    assert_eq!(s.metrics.max_servers, Count(16));
    assert_eq!(
        s.metrics
            .client_subnets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.20.0.0/16", "fd00::/8"]
    );
    assert_eq!(
        s.event_log.path,
        Some(EventLogTarget::File(
            "/var/log/tdswatch/events.jsonl".into()
        ))
    );
    assert!(s.event_log.all_connections);

    let c = s.pipeline_config();
    assert_eq!(c.ports, vec![1433, 14330], "each port once, in order");
    let l = c.limits;
    assert_eq!(l.max_connections, 5000);
    assert_eq!(l.max_ooo_bytes_per_direction, 128 * 1024);
    assert_eq!(l.max_ooo_segments_per_direction, 32);
    assert_eq!(l.max_buffered_bytes_total, 1024 * 1024 * 1024);
    assert_eq!(l.max_tds_message, 32 * 1024);
    assert_eq!(l.max_tls_handshake_message, 96 * 1024);
    assert_eq!(l.handshake_idle_timeout_ns, 45 * NS_PER_S);
    assert_eq!(l.established_idle_timeout_ns, 90 * NS_PER_M);

    let summary = s.summary();
    assert!(!summary.contains('\n'), "{summary}");
    for part in [
        "web 127.0.0.1:19433/tds/metrics",
        "log debug json",
        "capture on eth0,veth1a2b interfaces",
        "ports 1433,14330",
        "buffer 128MiB",
        "5000 connections",
        "1GiB buffered",
        "idle 45s handshake 1h30m established",
        "16 servers",
        "client subnets 10.20.0.0/16,fd00::/8",
        "event log /var/log/tdswatch/events.jsonl (all connections)",
    ] {
        assert!(summary.contains(part), "{part:?} not in {summary}");
    }
}

#[test]
fn a_partial_section_keeps_the_other_defaults() {
    let s = Settings::from_yaml("limits:\n  handshake_idle_timeout: 30s\n").expect("valid");
    assert_eq!(
        s.limits.handshake_idle_timeout,
        HumanDuration(30 * NS_PER_S)
    );
    let d = LimitSettings::default();
    assert_eq!(s.limits.max_connections, d.max_connections);
    assert_eq!(
        s.limits.established_idle_timeout,
        d.established_idle_timeout
    );
    assert_eq!(s.web, Web::default());
}

#[test]
fn small_values_parse_for_every_section() {
    let s = Settings::from_yaml(
        "web: {listen_address: ':9999'}\nlog: {level: error}\nevent_log: {path: '-'}\n",
    )
    .expect("valid");
    assert_eq!(s.web.listen_address.to_string(), "0.0.0.0:9999");
    assert_eq!(s.log.level, LogLevel::Error);
    assert_eq!(s.event_log.path, Some(EventLogTarget::Stderr));
    assert!(s
        .summary()
        .contains("event log stderr (failed and abnormal)"));
    let s = Settings::from_yaml("web:\n  listen_address: '[::1]:9433'\nlog:\n  level: warn\n")
        .expect("valid");
    assert_eq!(s.web.listen_address.to_string(), "[::1]:9433");
    assert_eq!(s.log.level, LogLevel::Warn);
    let s = Settings::from_yaml("event_log:\n  path: null\n").expect("valid");
    assert_eq!(s.event_log.path, None);
    let s = Settings::from_yaml("capture:\n  snaplen: 64KiB\n").expect("valid");
    assert_eq!(s.capture.snaplen, Snaplen(65536));
}

#[test]
fn unknown_key_at_the_top_level() {
    assert_err(
        "web:\n  listen_address: :9433\nlimit:\n  max_connections: 5\n",
        3,
        1,
        "limit",
        "unknown field `limit`",
    );
}

#[test]
fn unknown_key_nested() {
    assert_err(
        "limits:\n  max_connections: 5\n  handshake_timeout: 10s\n",
        3,
        3,
        "limits.handshake_timeout",
        "unknown field `handshake_timeout`",
    );
    // Deeper in the file, after comments and blank lines, and with a four-space indent.
    assert_err(
        "# tdswatch\n\nweb:\n    telemetry_path: /m\n\n# capture\ncapture:\n    ports: [1433]\n    # the NIC\n    iface: eth0\n",
        10,
        5,
        "capture.iface",
        "unknown field `iface`",
    );
}

#[test]
fn duplicate_keys_are_errors() {
    let e = err("log:\n  level: info\n  level: debug\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.to_lowercase().contains("duplicate"), "{e}");
}

#[test]
fn bad_values_name_the_key_with_line_and_column() {
    assert_err(
        "limits:\n  handshake_idle_timeout: 12 parsecs\n",
        2,
        27,
        "limits.handshake_idle_timeout",
        "unknown unit \"parsecs\"",
    );
    assert_err(
        "limits:\n  max_buffered_bytes_total: -5MiB\n",
        2,
        29,
        "limits.max_buffered_bytes_total",
        "cannot be negative",
    );
    assert_err(
        "limits:\n  max_tds_message: -4096\n",
        2,
        20,
        "limits.max_tds_message",
        "cannot be negative",
    );
    assert_err(
        "limits:\n  max_connections: -1\n",
        2,
        20,
        "limits.max_connections",
        "at least 1",
    );
    assert_err(
        "limits:\n  max_ooo_segments_per_direction: 0\n",
        2,
        35,
        "limits.max_ooo_segments_per_direction",
        "at least 1",
    );
    assert_err(
        "limits:\n  established_idle_timeout: 7200\n",
        2,
        29,
        "limits.established_idle_timeout",
        "no unit",
    );
    assert_err(
        "capture:\n  buffer_bytes: 0\n",
        2,
        17,
        "capture.buffer_bytes",
        "at least 1 byte",
    );
    assert_err(
        "capture:\n  snaplen: 96\n",
        2,
        12,
        "capture.snaplen",
        "1514 to 262144",
    );
    assert_err(
        "capture:\n  interfaces: [eth0, 'a/b']\n",
        2,
        22,
        "capture.interfaces",
        "not an interface name",
    );
    assert_err("log:\n  level: verbose\n", 2, 10, "log.level", "verbose");
    assert_err("log:\n  format: text\n", 2, 11, "log.format", "text");
    assert_err(
        "web:\n  listen_address: localhost:9433\n",
        2,
        19,
        "web.listen_address",
        "not a listen address",
    );
    assert_err(
        "web:\n  listen_address: 0.0.0.0:0\n",
        2,
        19,
        "web.listen_address",
        "1 to 65535",
    );
    assert_err(
        "web:\n  telemetry_path: metrics\n",
        2,
        19,
        "web.telemetry_path",
        "must start with /",
    );
    assert_err(
        "web:\n  telemetry_path: /-/healthy\n",
        2,
        19,
        "web.telemetry_path",
        "is taken",
    );
    assert_err(
        "metrics:\n  max_servers: lots\n",
        2,
        16,
        "metrics.max_servers",
        "whole number",
    );
    assert_err(
        "event_log:\n  all_connections: maybe\n",
        2,
        20,
        "event_log.all_connections",
        "",
    );
    assert_err(
        "event_log:\n  path: ''\n",
        2,
        9,
        "event_log.path",
        "\"-\" for standard error",
    );
    // A section that is not a mapping.
    assert_err("web: 3\n", 1, 6, "web", "");
}

#[test]
fn ports_out_of_range_are_refused() {
    for (yaml, line, column, needle) in [
        ("capture:\n  ports: [1433, 0]\n", 2, 17, "got 0"),
        ("capture:\n  ports: [70000]\n", 2, 11, "got 70000"),
        ("capture:\n  ports:\n    - 1433\n    - -1\n", 4, 7, "got -1"),
        (
            "capture:\n  ports:\n  - 99999999999\n",
            3,
            5,
            "got 99999999999",
        ),
        ("capture:\n  ports: [sql]\n", 2, 11, "expected a TCP port"),
    ] {
        assert_err(yaml, line, column, "capture.ports", needle);
    }
}

#[test]
fn bad_networks_are_refused() {
    for (yaml, needle) in [
        (
            "metrics:\n  client_subnets: [10.0.0.0/33]\n",
            "prefix length must be 0 to 32",
        ),
        ("metrics:\n  client_subnets: ['fd00::/129']\n", "0 to 128"),
        (
            "metrics:\n  client_subnets: [10.0.0.1/8]\n",
            "did you mean 10.0.0.0/8",
        ),
        ("metrics:\n  client_subnets: [10.0.0.0]\n", "ADDRESS/PREFIX"),
        (
            "metrics:\n  client_subnets: [300.1.1.0/24]\n",
            "not a network",
        ),
        (
            "metrics:\n  client_subnets: [10.0.0.0/x]\n",
            "prefix length",
        ),
    ] {
        assert_err(yaml, 2, 20, "metrics.client_subnets", needle);
    }
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let e = err("capture:\n  ports: [1433\n");
    assert!(e.line.is_some() && e.column.is_some(), "{e}");
    let e = err("web:\n  listen_address: \"unterminated\n");
    assert!(e.line.is_some(), "{e}");
    let e = err("- a\n- b\n");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn hostile_documents_are_errors_not_panics() {
    let deep = "[".repeat(100_000);
    assert!(Settings::from_yaml(&deep).is_err());
    let many = format!("capture:\n  ports: [{}]\n", vec!["1433"; 100_000].join(","));
    // Accepted or refused, but answered.
    let _ = Settings::from_yaml(&many);
    // An alias bomb under a real key: refused (a port list holds no lists), and at once.
    let mut bomb =
        String::from("capture:\n  ports: [&a0 [1433,1433,1433,1433,1433,1433,1433,1433]");
    for i in 1..12 {
        bomb.push_str(&format!(
            ", &a{i} [{}]",
            vec![format!("*a{}", i - 1); 8].join(",")
        ));
    }
    bomb.push_str("]\n");
    let start = std::time::Instant::now();
    let e = Settings::from_yaml(&bomb).expect_err("bomb");
    assert_eq!(e.key.as_deref(), Some("capture.ports"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    for s in ["\u{0}", ":", "{", "? ", "!!binary x", "web: !!str\n  x"] {
        let _ = Settings::from_yaml(s);
    }
}

#[test]
fn durations() {
    for (text, ns) in [
        ("120s", 120 * NS_PER_S),
        ("2h", 2 * NS_PER_H),
        ("1h30m", 90 * NS_PER_M),
        ("500ms", 500 * NS_PER_MS),
        ("1s500ms", 1500 * NS_PER_MS),
        ("1d", 24 * NS_PER_H),
        (
            "1d2h3m4s5ms",
            NS_PER_D + 2 * NS_PER_H + 3 * NS_PER_M + 4 * NS_PER_S + 5 * NS_PER_MS,
        ),
        (" 15s ", 15 * NS_PER_S),
        ("90m", 90 * NS_PER_M),
    ] {
        assert_eq!(parse_duration(text), Ok(ns), "{text:?}");
    }
    for (text, needle) in [
        ("", "got nothing"),
        ("12 parsecs", "unknown unit \"parsecs\""),
        ("12", "has no unit"),
        ("-5s", "cannot be negative"),
        ("1.5h", "unknown unit \".\""),
        ("s", "expected a number"),
        ("0s", "at least 1ms"),
        ("30m1h", "largest to the smallest"),
        ("1s1s", "largest to the smallest"),
        ("5us", "unknown unit \"us\""),
        ("99999999999999999999s", "too long"),
        ("213504d", "too long"),
    ] {
        match parse_duration(text) {
            Ok(v) => panic!("{text:?} gave {v}"),
            Err(e) => assert!(e.contains(needle), "{text:?}: {e}"),
        }
    }
}

#[test]
fn durations_print_in_the_form_they_are_read() {
    for ns in [
        NS_PER_MS,
        1500 * NS_PER_MS,
        120 * NS_PER_S,
        2 * NS_PER_H,
        90 * NS_PER_M,
        NS_PER_D + NS_PER_S,
    ] {
        let text = HumanDuration(ns).to_string();
        assert_eq!(parse_duration(&text), Ok(ns), "{text}");
    }
    assert_eq!(HumanDuration(120 * NS_PER_S).to_string(), "2m");
    assert_eq!(HumanDuration(90 * NS_PER_M).to_string(), "1h30m");
}

#[test]
fn sizes() {
    for (text, n) in [
        ("1", 1),
        ("100B", 100),
        ("256KiB", 256 * KIB),
        ("256 KiB", 256 * KIB),
        ("64MiB", 64 * MIB),
        ("64M", 64 * MIB),
        ("1GiB", GIB),
        ("2TiB", 2 * TIB),
        ("1kB", 1000),
        ("1KB", 1000),
        ("5MB", 5_000_000),
        ("2GB", 2_000_000_000),
        ("1TB", 1_000_000_000_000),
    ] {
        assert_eq!(parse_size(text), Ok(n), "{text:?}");
    }
    for (text, needle) in [
        ("", "got nothing"),
        ("-5MiB", "cannot be negative"),
        ("12 parsecs", "unknown unit \"parsecs\""),
        ("1.5GiB", "whole number of a smaller unit"),
        ("MiB", "expected a whole number"),
        ("5mib", "unknown unit"),
        ("99999999999TiB", "too large"),
        ("99999999999999999999", "too large"),
    ] {
        match parse_size(text) {
            Ok(v) => panic!("{text:?} gave {v}"),
            Err(e) => assert!(e.contains(needle), "{text:?}: {e}"),
        }
    }
    assert_eq!(ByteSize(256 * MIB).to_string(), "256MiB");
    assert_eq!(ByteSize(1536 * KIB).to_string(), "1536KiB");
    assert_eq!(ByteSize(1000).to_string(), "1000B");
    for n in [1, 1000, KIB, 3 * MIB, 5 * GIB, TIB, 12345] {
        assert_eq!(parse_size(&ByteSize(n).to_string()), Ok(n));
    }
}

#[test]
fn plain_integers_are_bytes_for_sizes() {
    let s = Settings::from_yaml("limits:\n  max_tds_message: 65536\n").expect("valid");
    assert_eq!(s.limits.max_tds_message, ByteSize(65536));
}

#[test]
fn networks() {
    let n: Cidr = "10.20.0.0/16".parse().expect("cidr");
    assert!(n.contains("10.20.255.1".parse().expect("ip")));
    assert!(!n.contains("10.21.0.1".parse().expect("ip")));
    assert!(!n.contains("::1".parse().expect("ip")));
    let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
    assert!(all.contains("192.0.2.1".parse().expect("ip")));
    let host: Cidr = "192.0.2.7/32".parse().expect("cidr");
    assert!(host.contains("192.0.2.7".parse().expect("ip")));
    assert!(!host.contains("192.0.2.8".parse().expect("ip")));
    let v6: Cidr = "fd00::/8".parse().expect("cidr");
    assert!(v6.contains("fd12::1".parse().expect("ip")));
    assert!(!v6.contains("fe80::1".parse().expect("ip")));
    assert!("::/0".parse::<Cidr>().is_ok());
    assert!("2001:db8::1/64"
        .parse::<Cidr>()
        .expect_err("host bits")
        .contains("did you mean 2001:db8::/64"));
}

#[test]
fn key_paths_from_indentation() {
    let text = "a:\n  b:\n    - c: 1\n      d: 2\n  e: [1, 2]\n  f:\n  - 3\nz: 1\n";
    assert_eq!(key_path(text, 1, 1).as_deref(), Some("a"));
    assert_eq!(key_path(text, 3, 12).as_deref(), Some("a.b.c"));
    assert_eq!(key_path(text, 4, 10).as_deref(), Some("a.b.d"));
    assert_eq!(key_path(text, 5, 10).as_deref(), Some("a.e"));
    assert_eq!(key_path(text, 7, 5).as_deref(), Some("a.f"));
    assert_eq!(key_path(text, 8, 4).as_deref(), Some("z"));
    assert_eq!(key_path(text, 99, 1), None);
    assert_eq!(key_path(text, 0, 1), None);
    assert_eq!(key_path("- 1\n", 1, 3), None);
}

#[test]
fn errors_read_from_a_file_name_it() {
    let dir = std::env::temp_dir().join(format!("tdswatch-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "limits:\n  max_connections: -3\n").expect("write");
    let e = Settings::load(&path).expect_err("bad");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:20: limits.max_connections: must be at least 1, got -3",
            path.display()
        )
    );
    let missing = dir.join("missing.yaml");
    let e = Settings::load(&missing).expect_err("missing");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot open: ", missing.display())),
        "{e}"
    );
    let big = dir.join("big.yaml");
    std::fs::write(&big, "#".repeat(MAX_FILE_BYTES as usize + 1)).expect("write");
    let e = Settings::load(&big).expect_err("too big");
    assert!(e.message.contains("larger than 1MiB"), "{e}");
    let binary = dir.join("binary.yaml");
    std::fs::write(&binary, b"web:\n  \xff\n").expect("write");
    let e = Settings::load(&binary).expect_err("not UTF-8");
    assert!(e.message.contains("not UTF-8"), "{e}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A command as the future `run` will have it.
#[derive(Debug, Parser)]
struct Run {
    #[command(flatten)]
    flags: RunFlags,
}

fn flags(args: &[&str]) -> RunFlags {
    let mut all = vec!["tdswatch"];
    all.extend_from_slice(args);
    Run::try_parse_from(all).expect("parses").flags
}

#[test]
fn flags_parse_in_exporter_style() {
    let f = flags(&[
        "--web.listen-address=:9500",
        "--web.telemetry-path",
        "/m",
        "--log.level",
        "debug",
        "--log.format=json",
        "--config.file",
        "/etc/tdswatch.yaml",
    ]);
    assert_eq!(
        f.web_listen_address.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:9500")
    );
    assert_eq!(f.web_telemetry_path, Some(TelemetryPath("/m".into())));
    assert_eq!(f.log_level, Some(LogLevel::Debug));
    assert_eq!(f.log_format, Some(LogFormat::Json));
    assert_eq!(f.config_file, Some(PathBuf::from("/etc/tdswatch.yaml")));
    assert_eq!(flags(&[]), RunFlags::default());
    for bad in [
        &["--web.listen-address", "nowhere"][..],
        &["--web.listen-address", ":0"][..],
        &["--log.level", "loud"][..],
        &["--log.format", "xml"][..],
        &["--web.telemetry-path", "metrics"][..],
    ] {
        let mut all = vec!["tdswatch"];
        all.extend_from_slice(bad);
        let e = Run::try_parse_from(all).expect_err("refused");
        assert_eq!(e.exit_code(), 2, "{bad:?}");
    }
    use clap::CommandFactory;
    Run::command().debug_assert();
}

#[test]
fn flags_win_over_the_file() {
    let dir = std::env::temp_dir().join(format!("tdswatch-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("t.yaml");
    std::fs::write(
        &path,
        "web:\n  listen_address: 127.0.0.1:1000\n  telemetry_path: /file\nlog:\n  level: warn\n  format: json\ncapture:\n  ports: [14330]\n",
    )
    .expect("write");
    let file = path.to_str().expect("UTF-8 path");

    // The file alone.
    let s = flags(&["--config.file", file]).settings().expect("valid");
    assert_eq!(s.web.listen_address.to_string(), "127.0.0.1:1000");
    assert_eq!(s.log.level, LogLevel::Warn);
    assert_eq!(s.log.format, LogFormat::Json);

    // Flags given win; the others keep the file's values.
    let s = flags(&[
        "--config.file",
        file,
        "--log.level",
        "debug",
        "--web.listen-address",
        ":2000",
    ])
    .settings()
    .expect("valid");
    assert_eq!(s.web.listen_address.to_string(), "0.0.0.0:2000");
    assert_eq!(s.web.telemetry_path.0, "/file");
    assert_eq!(s.log.level, LogLevel::Debug);
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.pipeline_config().ports, vec![14330]);

    // Without a file, flags over the defaults.
    let s = flags(&["--log.format", "json", "--web.telemetry-path", "/x"])
        .settings()
        .expect("defaults");
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.web.telemetry_path.0, "/x");
    assert_eq!(s.web.listen_address, Web::default().listen_address);

    // A bad file is an error even with flags.
    std::fs::write(&path, "log:\n  levle: debug\n").expect("write");
    let e = flags(&["--config.file", file, "--log.level", "debug"])
        .settings()
        .expect_err("bad file");
    assert_eq!(e.key.as_deref(), Some("log.levle"));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn an_empty_section_holds_the_defaults() {
    for yaml in [
        "web:\n",
        "web:\n  # listen_address: :9433\nlog:\n  level: debug\n",
        "web: ~\ncapture: null\nlimits: {}\nmetrics:\nevent_log:\n",
    ] {
        let s = Settings::from_yaml(yaml).expect(yaml);
        assert_eq!(s.web, Web::default(), "{yaml:?}");
        assert_eq!(s.capture, Capture::default(), "{yaml:?}");
    }
}

#[test]
fn at_least_one_port() {
    let e = err("capture:\n  ports: []\n");
    assert_eq!(e.key.as_deref(), Some("capture.ports"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("at least one port"), "{e}");
    // A list left empty is no list.
    let e = err("capture:\n  ports:\n");
    assert_eq!(e.key.as_deref(), Some("capture.ports"), "{e}");
}

#[test]
fn every_port_once_even_when_all_are_listed() {
    let all: Vec<String> = (1..=65535u32)
        .chain(1..=65535)
        .map(|p| p.to_string())
        .collect();
    let yaml = format!("capture:\n  ports: [{}]\n", all.join(","));
    let start = std::time::Instant::now();
    let s = Settings::from_yaml(&yaml).expect("valid");
    let ports = s.pipeline_config().ports;
    assert_eq!(ports.len(), 65535);
    assert_eq!(ports.first(), Some(&1));
    assert_eq!(ports.last(), Some(&65535));
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}
