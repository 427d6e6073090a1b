//! End to end on generated traffic: tdsgen writes SQL Server connections with real OpenSSL
//! handshakes for every scenario, and the verdict each should get (from what the scenario is, not
//! from tdswatch). Every expected field of every connection must match.

use std::collections::HashMap;
use tdswatch::capture::file::FileSource;
use tdswatch::capture::FrameSource;
use tdswatch::config::Config;
use tdswatch::pipeline::Pipeline;
use tdswatch::verdict::Verdict;

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tdswatch-{}-{name}", std::process::id()))
}

/// Generates a capture and its truth, analyses it, and checks every truth field.
fn check(cfg: tdsgen::gen::Config, name: &str) -> usize {
    let pcap = temp(&format!("{name}.pcap"));
    let mut truth = Vec::new();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&pcap).expect("temp file"));
        tdsgen::gen::generate(&cfg, &mut out, Some(&mut truth)).expect("generate");
    }
    let mut verdicts: HashMap<String, Verdict> = HashMap::new();
    let mut source = FileSource::open(&pcap).expect("open");
    let mut pipeline = Pipeline::new(&Config::default());
    let mut put = |v: Verdict| {
        let key = format!("{} {}", v.client, v.server);
        assert!(
            verdicts.insert(key.clone(), v).is_none(),
            "two verdicts for {key}"
        );
    };
    while let Some(frame) = source.next_frame().expect("readable") {
        pipeline.on_frame(&frame, &mut put);
    }
    pipeline.finish(&mut put);
    std::fs::remove_file(&pcap).ok();

    let lines: Vec<serde_json::Value> = String::from_utf8(truth)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("truth line"))
        .collect();
    assert_eq!(lines.len() as u64, cfg.connections);
    assert_eq!(verdicts.len(), lines.len(), "one verdict per connection");
    let mut mismatches = Vec::new();
    for t in &lines {
        let key = format!(
            "{} {}",
            t["client"].as_str().unwrap(),
            t["server"].as_str().unwrap()
        );
        let v = verdicts
            .get(&key)
            .unwrap_or_else(|| panic!("no verdict for {key}"));
        let j = serde_json::to_value(v).expect("json");
        let alpn_ok = match t["alpn"].as_str() {
            Some(a) => j["tls"]["alpn"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == a)),
            None => true,
        };
        let fields = [
            ("mode", &j["mode"], &t["mode"]),
            ("encryption", &j["encryption"], &t["encryption"]),
            ("stage", &j["stage"], &t["stage"]),
            ("outcome", &j["outcome"], &t["outcome"]),
            ("reason", &j["reason"], &t["reason"]),
            ("tls.version", &j["tls"]["version"], &t["tls_version"]),
            ("tls.suite", &j["tls"]["suite"], &t["suite"]),
            ("tls.kx", &j["tls"]["kx"], &t["kx"]),
            ("close.first_fin", &j["close"]["first_fin"], &t["first_fin"]),
            ("close.first_rst", &j["close"]["first_rst"], &t["first_rst"]),
            ("login.result", &j["login"]["result"], &t["login"]),
            (
                "login.error_number",
                &j["login"]["error_number"],
                &t["error_number"],
            ),
        ];
        for (field, got, want) in fields {
            if got != want {
                mismatches.push(format!(
                    "{} {key}: {field} = {got}, expected {want} ({})",
                    t["scenario"], v.evidence
                ));
            }
        }
        if !t["client_max_version"].is_null()
            && j["tls"]["client_max_version"] != t["client_max_version"]
        {
            mismatches.push(format!("{} {key}: client_max_version", t["scenario"]));
        }
        if !alpn_ok {
            mismatches.push(format!(
                "{} {key}: alpn {} not offered",
                t["scenario"], t["alpn"]
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    lines.len()
}

#[test]
fn every_scenario_in_turn() {
    let cfg = tdsgen::gen::Config {
        connections: 110,
        cycle: true,
        seed: 11,
        ..Default::default()
    };
    assert_eq!(check(cfg, "cycle"), 110);
}

#[test]
fn a_weighted_mix_of_two_thousand_connections() {
    let cfg = tdsgen::gen::Config {
        connections: 2000,
        seed: 5,
        ..Default::default()
    };
    assert_eq!(check(cfg, "mix"), 2000);
}

#[test]
fn open_connections_are_unknown_at_the_end() {
    let cfg = tdsgen::gen::Config {
        connections: 300,
        open: true,
        seed: 3,
        ..Default::default()
    };
    assert_eq!(check(cfg, "open"), 300);
}
