//! `tdswatch check-config` as users run it: the shipped example passes, documents every key and
//! holds the defaults; a broken file fails with status 1 and the mistake's line and column.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tdswatch::settings::Settings;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/tdswatch.example.yaml")
}

fn check_config(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tdswatch"))
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run tdswatch")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every key the settings have, as dotted paths.
const ALL_KEYS: &[&str] = &[
    "web",
    "web.listen_address",
    "web.telemetry_path",
    "log",
    "log.level",
    "log.format",
    "capture",
    "capture.interfaces",
    "capture.ports",
    "capture.buffer_bytes",
    "capture.snaplen",
    "limits",
    "limits.max_connections",
    "limits.max_ooo_bytes_per_direction",
    "limits.max_ooo_segments_per_direction",
    "limits.max_buffered_bytes_total",
    "limits.max_tds_message",
    "limits.max_tls_handshake_message",
    "limits.handshake_idle_timeout",
    "limits.established_idle_timeout",
    "metrics",
    "metrics.max_servers",
    "metrics.client_subnets",
    "event_log",
    "event_log.path",
    "event_log.all_connections",
];

/// A temporary directory removed when dropped (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tdswatch-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_example_passes_with_a_one_line_summary() {
    let file = example();
    let out = check_config(&file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], format!("{}: OK", file.display()));
    assert!(
        lines[1].starts_with(
            "web 0.0.0.0:9433/metrics; log info logfmt; capture on all up interfaces, ports 1433,"
        ),
        "{}",
        lines[1]
    );
}

#[test]
fn the_example_holds_the_defaults() {
    let settings = Settings::load(&example()).expect("valid");
    assert_eq!(settings, Settings::default());
}

#[test]
fn the_example_documents_every_key() {
    let yaml = std::fs::read_to_string(example()).expect("read example");
    let lines: Vec<&str> = yaml.lines().collect();
    let mut seen: Vec<String> = Vec::new();
    let mut parents: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            panic!("line {}: not a key: {line}", i + 1)
        };
        let indent = line.len() - trimmed.len();
        parents.retain(|(d, _)| *d < indent);
        let path = parents
            .iter()
            .map(|(_, k)| k.as_str())
            .chain([key])
            .collect::<Vec<_>>()
            .join(".");
        // The line above the key is its comment.
        let above = i
            .checked_sub(1)
            .and_then(|j| lines.get(j))
            .map(|l| l.trim_start())
            .unwrap_or("");
        assert!(
            above.starts_with('#') && above.len() > 2,
            "{path} (line {}) has no comment above it",
            i + 1
        );
        parents.push((indent, key.to_string()));
        seen.push(path);
    }
    assert_eq!(seen, ALL_KEYS, "the example's keys, in order");
}

#[test]
fn every_key_of_the_example_is_known_to_the_parser() {
    // Each section refuses a key it does not have and names the keys it has: those must be exactly
    // the example's, so a key added to the settings but not to the example fails here.
    for section in ["web", "log", "capture", "limits", "metrics", "event_log"] {
        let e =
            Settings::from_yaml(&format!("{section}:\n  no_such_key: 1\n")).expect_err("unknown");
        let (_, expected) = e
            .message
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("{e}"));
        let mut known: Vec<String> = expected
            .split(", ")
            .map(|k| format!("{section}.{}", k.trim_matches('`')))
            .collect();
        known.sort();
        let mut documented: Vec<String> = ALL_KEYS
            .iter()
            .filter(|k| k.starts_with(&format!("{section}.")))
            .map(|k| k.to_string())
            .collect();
        documented.sort();
        assert_eq!(known, documented, "{section}");
    }
}

#[test]
fn a_broken_file_fails_with_line_and_column() {
    let dir = TempDir::new("check-config");
    let cases = [
        (
            "unknown.yaml",
            "web:\n  listen_address: :9433\ncapture:\n  ports: [1433]\n  interface: eth0\n",
            ":5:3: capture.interface: unknown field `interface`",
        ),
        (
            "duration.yaml",
            "# limits\nlimits:\n  handshake_idle_timeout: 12 parsecs\n",
            ":3:27: limits.handshake_idle_timeout: \"12 parsecs\" is not a duration: unknown unit \"parsecs\"",
        ),
        (
            "port.yaml",
            "capture:\n  ports:\n    - 1433\n    - 70000\n",
            ":4:7: capture.ports: a TCP port is 1 to 65535, got 70000",
        ),
        (
            "syntax.yaml",
            "log:\n  level: [info\n",
            ":",
        ),
    ];
    for (name, body, needle) in cases {
        let file = dir.0.join(name);
        std::fs::write(&file, body).expect("write");
        let out = check_config(&file);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty(), "{name}: {}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        let prefix = format!("tdswatch: {}", file.display());
        assert!(stderr.starts_with(&prefix), "{name}: {stderr}");
        let rest = &stderr[prefix.len()..];
        assert!(rest.starts_with(needle), "{name}: {stderr}");
        // line:column right after the file name.
        let mut parts = rest.trim_start_matches(':').splitn(3, ':');
        let line = parts.next().unwrap_or("");
        let column = parts.next().unwrap_or("");
        assert!(
            line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok(),
            "{name}: no line:column in {stderr}"
        );
    }
}

#[test]
fn a_missing_file_fails_and_usage_errors_exit_2() {
    let dir = TempDir::new("check-config-missing");
    let file = dir.0.join("absent.yaml");
    let out = check_config(&file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(&format!("tdswatch: {}: cannot open: ", file.display())),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tdswatch"))
        .arg("check-config")
        .output()
        .expect("run tdswatch");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
