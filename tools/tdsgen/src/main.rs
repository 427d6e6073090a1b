//! The `tdsgen` command line: writes a synthetic SQL Server capture and its truth file.

use clap::Parser;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tdsgen::gen::{self, Config};
use tdsgen::scenario::Scenario;

/// Writes a pcap of SQL Server (TDS) connections with real OpenSSL handshakes, and one JSON line
/// per connection saying what verdict it should get.
#[derive(Parser, Debug)]
#[command(name = "tdsgen", version, about)]
struct Args {
    /// Number of connections.
    #[arg(long, default_value_t = 100_000)]
    connections: u64,
    /// Seed: the same seed gives the same connections, addresses, timings and sizes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output pcap file.
    #[arg(long, default_value = "tdsgen.pcap")]
    out: PathBuf,
    /// Truth file: JSON lines, one per connection, with the expected verdict.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Every connection completes a login-only handshake and LOGINACK and never closes.
    #[arg(long)]
    open: bool,
    /// Number of server addresses (10.20.x.y:1433).
    #[arg(long, default_value_t = 4)]
    servers: u32,
    /// Connections started per second of capture time.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Templates (separate real handshakes) per scenario.
    #[arg(long, default_value_t = 4)]
    templates: u32,
    /// Scenario weights, e.g. "refused=10,tcp_probe=0"; unnamed scenarios keep their default.
    /// Scenarios: login_only_tls12_ecdhe full_tls12_ecdhe full_tls12_dhe full_tls13 no_encryption
    /// tds8_strict dhe_failure no_common_tls_version login_failed tcp_probe refused.
    #[arg(long)]
    mix: Option<String>,
    /// Take the scenarios in turn instead of by weight (every scenario in a small file).
    #[arg(long)]
    cycle: bool,
}

fn parse_mix(spec: &str, weights: &mut [(Scenario, u32)]) -> Result<(), String> {
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, w) = item
            .split_once('=')
            .ok_or_else(|| format!("--mix: expected name=weight, got {item:?}"))?;
        let s = Scenario::from_name(name.trim())
            .ok_or_else(|| format!("--mix: unknown scenario {name:?}"))?;
        let w: u32 = w
            .trim()
            .parse()
            .map_err(|_| format!("--mix: bad weight in {item:?}"))?;
        for entry in weights.iter_mut().filter(|e| e.0 == s) {
            entry.1 = w;
        }
    }
    Ok(())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = Config {
        connections: args.connections,
        seed: args.seed,
        servers: args.servers,
        open: args.open,
        rate: args.rate,
        templates: args.templates,
        cycle: args.cycle,
        ..Config::default()
    };
    if let Some(spec) = &args.mix {
        parse_mix(spec, &mut cfg.weights)?;
    }
    let started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&args.out)?);
    let mut truth = match &args.truth {
        Some(p) => Some(BufWriter::with_capacity(1 << 16, File::create(p)?)),
        None => None,
    };
    let s = gen::generate(&cfg, &mut out, truth.as_mut())?;
    println!(
        "tdsgen: {} connections, {} packets, {} handshakes (ClientHellos), {} bytes -> {} in {:.1} s",
        s.connections,
        s.packets,
        s.handshakes,
        s.bytes,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tdsgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_overrides_named_weights_only() {
        let mut w: Vec<(Scenario, u32)> = Scenario::ALL
            .iter()
            .map(|&s| (s, s.default_weight()))
            .collect();
        parse_mix("refused=10, tcp_probe=0", &mut w).unwrap();
        assert!(w.contains(&(Scenario::Refused, 10)));
        assert!(w.contains(&(Scenario::TcpProbe, 0)));
        assert!(w.contains(&(Scenario::LoginOnlyTls12, 40)));
        assert!(parse_mix("nope=1", &mut w).is_err());
        assert!(parse_mix("refused", &mut w).is_err());
        assert!(parse_mix("refused=x", &mut w).is_err());
    }
}
