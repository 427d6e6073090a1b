//! The committed corpus: every capture in `tests/corpus/` (made by `tests/matrix/run.sh` with real
//! clients against `tds-responder`) must give the verdicts that `tests/matrix/expected.tsv` lists.
//! Those expectations are written by hand from what each scenario is, not from tdswatch's output.
//! Every capture must have an expectation and every expectation a capture.
//!
//! `expected.tsv`: a header line, then one row per connection (`conn` counts the capture's
//! connections in the order they started). `-` means "not checked", `none` means "absent" (JSON
//! null). The matrix runs the responder on port 14331, so the analysis adds that port.
//!
//! `TDSWATCH_CORPUS_DIR` names another directory to check instead of `tests/corpus/`: `tests/run.sh`
//! runs the whole matrix with today's clients into a temporary directory and checks it with the
//! same expectations. The test then prints `matrix: N passed, M failed` (captures whose every
//! checked field matches, and the others); over the committed corpus it prints `corpus: …`.
//!
//! `divergences.tsv` lists the fields where tdswatch disagrees with an expectation that is kept
//! (with the reason). Such a field must show exactly the listed value; a listed divergence that no
//! longer occurs fails the test too, so the list cannot go stale.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const PORT: &str = "14331";

/// The expected fields, in the order of the TSV columns after `capture` and `conn`, with the JSON
/// path each one is read from.
const FIELDS: [(&str, &[&str]); 8] = [
    ("outcome", &["outcome"]),
    ("reason", &["reason"]),
    ("encryption", &["encryption"]),
    ("mode", &["mode"]),
    ("tls_version", &["tls", "version"]),
    ("suite", &["tls", "suite"]),
    ("first_fin", &["close", "first_fin"]),
    ("first_rst", &["close", "first_rst"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// capture file name -> rows (conn number, expected values), from expected.tsv.
fn expectations() -> BTreeMap<String, Vec<(usize, Vec<String>)>> {
    let path = root().join("tests/matrix/expected.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let header: Vec<&str> = lines.next().expect("a header line").split('\t').collect();
    let mut want = vec!["capture", "conn"];
    want.extend(FIELDS.iter().map(|(name, _)| *name));
    assert_eq!(header, want, "expected.tsv header");
    let mut out: BTreeMap<String, Vec<(usize, Vec<String>)>> = BTreeMap::new();
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), want.len(), "expected.tsv row {line:?}");
        let conn: usize = cols[1]
            .parse()
            .unwrap_or_else(|_| panic!("conn in {line:?}"));
        out.entry(cols[0].to_string())
            .or_default()
            .push((conn, cols[2..].iter().map(|s| s.to_string()).collect()));
    }
    for (capture, rows) in &out {
        let conns: Vec<usize> = rows.iter().map(|(c, _)| *c).collect();
        let want: Vec<usize> = (1..=rows.len()).collect();
        assert_eq!(conns, want, "{capture}: conn must count 1, 2, … in order");
    }
    out
}

/// (capture, conn, field) -> the value tdswatch is known to give instead, from divergences.tsv.
fn divergences() -> BTreeMap<(String, usize, String), String> {
    let path = root().join("tests/matrix/divergences.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let header: Vec<&str> = lines.next().expect("a header line").split('\t').collect();
    assert_eq!(
        header,
        [
            "capture",
            "conn",
            "field",
            "tdswatch_says",
            "why the expectation stands"
        ],
        "divergences.tsv header"
    );
    let mut out = BTreeMap::new();
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "divergences.tsv row {line:?}");
        assert!(
            !cols[4].trim().is_empty(),
            "a divergence needs its reason: {line:?}"
        );
        let conn: usize = cols[1]
            .parse()
            .unwrap_or_else(|_| panic!("conn in {line:?}"));
        assert!(
            FIELDS.iter().any(|(name, _)| *name == cols[2]),
            "unknown field in {line:?}"
        );
        out.insert(
            (cols[0].to_string(), conn, cols[2].to_string()),
            cols[3].to_string(),
        );
    }
    out
}

/// The directory checked: `TDSWATCH_CORPUS_DIR` when set (and not empty), else `tests/corpus/`.
fn corpus_dir() -> (PathBuf, &'static str) {
    match std::env::var_os("TDSWATCH_CORPUS_DIR") {
        Some(d) if !d.is_empty() => (PathBuf::from(d), "matrix"),
        _ => (root().join("tests/corpus"), "corpus"),
    }
}

fn captures(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap"))
        .collect();
    names.sort();
    names
}

/// The verdicts for one capture, in the order their connections started.
fn analyze(file: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_tdswatch"))
        .args([
            "analyze",
            "--format",
            "json",
            "--no-progress",
            "--port",
            PORT,
        ])
        .arg(file)
        .output()
        .expect("run tdswatch analyze");
    assert!(
        out.status.success(),
        "tdswatch analyze {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut verdicts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON line {l:?}: {e}")))
        .collect();
    verdicts.sort_by(|a, b| {
        let key = |v: &Value| spelled(&v["first_seen"]);
        key(a).cmp(&key(b))
    });
    verdicts
}

/// A JSON value as the TSV spells it: strings bare, null as `none`.
fn spelled(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn every_capture_in_the_corpus_gives_its_expected_verdicts() {
    let expected = expectations();
    let (dir, label) = corpus_dir();
    let files = captures(&dir);
    assert!(
        files.len() >= 25,
        "the corpus should hold at least 25 captures, has {}",
        files.len()
    );
    let unexpected: Vec<&String> = files
        .iter()
        .filter(|f| !expected.contains_key(*f))
        .collect();
    assert!(
        unexpected.is_empty(),
        "captures with no expectation: {unexpected:?}"
    );
    let missing: Vec<&String> = expected.keys().filter(|k| !files.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "expectations with no capture: {missing:?}"
    );

    let known = divergences();
    let mut seen_divergences = Vec::new();
    let mut checked = 0usize;
    let mut matched = 0usize;
    let mut mismatches = Vec::new();
    let mut failed_captures = 0usize;
    for file in &files {
        let verdicts = analyze(&dir.join(file));
        let rows = &expected[file];
        let mismatches_before = mismatches.len();
        if verdicts.len() != rows.len() {
            failed_captures += 1;
            mismatches.push(format!(
                "{file}: {} connections, expected {}",
                verdicts.len(),
                rows.len()
            ));
            continue;
        }
        for ((conn, want), v) in rows.iter().zip(&verdicts) {
            for ((name, path), want) in FIELDS.iter().zip(want) {
                if want == "-" {
                    continue;
                }
                let got = path.iter().fold(v, |v, key| &v[*key]);
                checked += 1;
                let got_s = spelled(got);
                if got_s == *want {
                    matched += 1;
                    continue;
                }
                let key = (file.clone(), *conn, name.to_string());
                if known.get(&key) == Some(&got_s) {
                    seen_divergences.push(key);
                } else {
                    mismatches.push(format!(
                        "{file} conn {conn}: {name} is {}, expected {want} (stage {})",
                        spelled(got),
                        spelled(&v["stage"])
                    ));
                }
            }
        }
        if mismatches.len() > mismatches_before {
            failed_captures += 1;
        }
    }
    let stale: Vec<_> = known
        .keys()
        .filter(|k| !seen_divergences.contains(k))
        .collect();
    assert!(
        stale.is_empty(),
        "divergences.tsv rows that no longer occur (delete them): {stale:?}"
    );
    eprintln!(
        "{matched} of {checked} expected fields match over {} captures in {}; {} known divergences (divergences.tsv)",
        files.len(),
        dir.display(),
        seen_divergences.len()
    );
    eprintln!(
        "{label}: {} passed, {failed_captures} failed",
        files.len() - failed_captures
    );
    assert!(
        mismatches.is_empty(),
        "{} of the expected fields differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
