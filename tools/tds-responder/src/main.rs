//! Command line of the responder: settings from a JSON scenario file and/or flags, then serve.

use clap::Parser;
use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use tds_responder::{CertHash, Config, Encryption, Fault, Limits, LoginResult, Shared};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A TDS (SQL Server) test responder with fault injection"
)]
struct Args {
    /// Address to listen on (port 0 picks one; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:1433")]
    listen: String,
    /// JSON scenario file; flags given on the command line override its fields.
    #[arg(long)]
    scenario_file: Option<String>,
    /// Label printed on every log line.
    #[arg(long)]
    scenario: Option<String>,
    #[arg(long, value_enum)]
    encryption: Option<Encryption>,
    /// TDS 8.0 strict: TLS first, ALPN tds/8.0.
    #[arg(long)]
    strict: bool,
    /// Lowest TLS version: 1.0, 1.1, 1.2, 1.3.
    #[arg(long)]
    tls_min: Option<String>,
    /// Highest TLS version.
    #[arg(long)]
    tls_max: Option<String>,
    /// OpenSSL cipher list for TLS <= 1.2.
    #[arg(long)]
    ciphers: Option<String>,
    /// TLS 1.3 suites.
    #[arg(long)]
    tls13_suites: Option<String>,
    /// PEM DH parameters (default: RFC 7919 ffdhe2048).
    #[arg(long)]
    dh_params: Option<String>,
    /// PEM certificate (with --key); default: a self-signed RSA 2048 certificate made at start.
    #[arg(long)]
    cert: Option<String>,
    #[arg(long)]
    key: Option<String>,
    /// Signature hash of the generated certificate.
    #[arg(long, value_enum)]
    cert_hash: Option<CertHash>,
    /// Largest TDS packet the responder sends (512 splits its TLS flights).
    #[arg(long)]
    packet_size: Option<usize>,
    #[arg(long, value_enum)]
    login: Option<LoginResult>,
    /// none, rst_after_client_key_exchange, fin_after_client_hello, fin_after_server_hello,
    /// fin_after_client_key_exchange, rst_after_login7, idle_close_first=MS, dhe_reset_fraction=F.
    #[arg(long, value_parser = Fault::parse)]
    fault: Option<Fault>,
    #[arg(long)]
    seed: Option<u64>,
    /// Per-connection read timeout in milliseconds.
    #[arg(long)]
    io_timeout_ms: Option<u64>,
    /// Stop accepting after this many seconds.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// Stop accepting after this many connections.
    #[arg(long)]
    max_connections: Option<u64>,
}

fn config(a: &Args) -> Result<Config, Box<dyn std::error::Error>> {
    let mut c: Config = match &a.scenario_file {
        Some(p) => serde_json::from_slice(&std::fs::read(p)?)?,
        None => Config::default(),
    };
    macro_rules! take {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v; } )* };
    }
    take!(
        scenario,
        encryption,
        tls_min,
        tls_max,
        cert_hash,
        packet_size,
        login,
        fault,
        seed,
        io_timeout_ms
    );
    macro_rules! take_opt {
        ($($f:ident),*) => { $( if a.$f.is_some() { c.$f = a.$f.clone(); } )* };
    }
    take_opt!(ciphers, tls13_suites, dh_params, cert, key);
    c.strict |= a.strict;
    Ok(c)
}

fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let shared = Shared::new(config(&a)?).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(&a.listen)?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let limits = Limits {
        max_seconds: a.max_seconds,
        max_connections: a.max_connections,
    };
    let n = tds_responder::serve(
        listener,
        shared,
        limits,
        Arc::new(|l| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{l}");
            let _ = out.flush();
        }),
    )?;
    println!("served {n} connections");
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tds-responder: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_scenario_file() {
        let dir = std::env::temp_dir().join(format!("tds-responder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.json");
        std::fs::write(
            &file,
            r#"{"scenario":"file","encryption":"req","tls_max":"1.2","fault":"rst_after_login7"}"#,
        )
        .unwrap();
        let a = Args::parse_from([
            "tds-responder",
            "--scenario-file",
            file.to_str().unwrap(),
            "--encryption",
            "not_sup",
            "--fault",
            "dhe_reset_fraction=0.25",
            "--strict",
        ]);
        let c = config(&a).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.scenario, "file");
        assert_eq!(c.encryption, Encryption::NotSup);
        assert_eq!(c.tls_max, "1.2");
        assert_eq!(c.fault, Fault::DheResetFraction(0.25));
        assert!(c.strict);
        assert!(Args::try_parse_from(["tds-responder", "--fault", "nope"]).is_err());
    }
}
