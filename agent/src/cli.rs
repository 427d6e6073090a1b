//! The command line's shape: subcommands, options and their help texts (clap derive). Owns what a
//! user may type and how it maps onto [`Config`]; knows nothing of captures, the pipeline or the
//! outputs. Only the binary uses it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tdswatch::config::Config;

/// Watches Microsoft SQL Server connections on the wire and says how each handshake went.
#[derive(Debug, Parser)]
#[command(
    name = "tdswatch",
    version,
    about = "Says how each Microsoft SQL Server connection's handshake went, from what is on the wire",
    long_about = "tdswatch watches Microsoft SQL Server (TDS) connections on the network and gives one \
verdict per connection: how far the handshake got (PRELOGIN, TLS, login), which encryption and TLS \
version were negotiated, and, when a connection failed, the most likely reason (no common TLS version, \
cipher suite mismatch, certificate rejected, DHE key exchange bug, login failed, …).\n\n\
It never decrypts anything and never shows passwords, user names or SQL text.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: capture SQL Server traffic on this host and serve Prometheus metrics.
    #[command(long_about = RUN_ABOUT)]
    Run(RunArgs),

    /// Read capture files (pcap, pcapng) and report on every SQL Server connection in them.
    #[command(long_about = ANALYZE_ABOUT, after_help = ANALYZE_AFTER_HELP)]
    Analyze(AnalyzeArgs),

    /// Check a configuration file: prints "FILE: OK" and the effective settings, or the mistake with
    /// its line and column.
    #[command(after_help = CHECK_CONFIG_AFTER_HELP)]
    CheckConfig(CheckConfigArgs),
}

const RUN_ABOUT: &str =
    "Captures SQL Server traffic on this host's interfaces (every up interface by \
default, picking up new ones as they appear), gives every connection its verdict, and serves the \
counts as Prometheus metrics on http://ADDRESS/metrics, with /-/healthy and /-/ready. Needs the \
CAP_NET_RAW capability (or root). SIGTERM or SIGINT stops it cleanly.

Example:
  sudo tdswatch run --web.listen-address=:9433
  curl -s localhost:9433/metrics | grep tds_connections_total";

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: tdswatch::settings::RunFlags,
}

const CHECK_CONFIG_AFTER_HELP: &str = "Example:
  tdswatch check-config /etc/tdswatch/tdswatch.yaml

Exit status: 0 when the file is valid; 1 when it cannot be read or holds a mistake (an unknown \
key, a bad value); 2 for a mistake on the command line.";

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The YAML configuration file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

const ANALYZE_ABOUT: &str =
    "Reads capture files taken with tcpdump, dumpcap or Wireshark (pcap or \
pcapng) and reports on every SQL Server connection in them: per server, how many connections were \
established or failed and why, the encryption, TLS versions and cipher suites in use, abnormal \
closes, then each failed connection with the evidence seen on the wire.

Several files are read one after the other and summed into one report (a connection split across \
two files is seen as two partial connections).";

const ANALYZE_AFTER_HELP: &str = "Examples:
  tdswatch analyze sql.pcapng
  tdswatch analyze --port 14330 node1.pcap node2.pcap
  tdswatch analyze --format json sql.pcap > connections.jsonl
  tdswatch analyze --format prometheus sql.pcap > sql.prom

A capture on the SQL Server host that is enough for tdswatch (add the ports of named instances):
  tcpdump -i any -w sql.pcap 'tcp port 1433'

Exit status: 0 when every file was read whole; 1 when a file could not be opened or was corrupt \
or cut short (the report still covers what could be read; the problems are listed on stderr); \
2 for a mistake on the command line.";

/// How `analyze` writes its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A report to read: per server, what failed and why, then the failed connections.
    Text,
    /// One JSON object per connection and line (JSON Lines), written as connections end.
    Json,
    /// Prometheus metrics (OpenMetrics text) over the whole run, as the live agent would export
    /// them after seeing the same packets.
    Prometheus,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files to read (pcap or pcapng).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Output: a report to read (text), one JSON object per connection (json), or the Prometheus
    /// metrics of the whole run (prometheus, OpenMetrics text).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
    pub format: Format,

    /// Also watch this TCP port for SQL Server (1433 is always watched); repeatable.
    ///
    /// Named and non-default instances listen on other ports: see the SQL Server error log
    /// ("Server is listening on …") or SQL Server Configuration Manager. Repeat the option or
    /// separate ports with commas: --port 14330 --port 50000, or --port 14330,50000.
    #[arg(
        long = "port",
        value_name = "PORT",
        value_delimiter = ',',
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub ports: Vec<u16>,

    /// Do not draw a progress bar (it is only ever drawn when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

impl AnalyzeArgs {
    /// The pipeline's configuration: the defaults, with the extra ports added (each port once).
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        for &port in &self.ports {
            if !config.ports.contains(&port) {
                config.ports.push(port);
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn analyze(args: &[&str]) -> Result<AnalyzeArgs, clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        match cli.command {
            Command::Analyze(a) => Ok(a),
            other => panic!("not analyze: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = analyze(&["tdswatch", "analyze", "a.pcap"]).expect("parses");
        assert_eq!(a.files, vec![PathBuf::from("a.pcap")]);
        assert_eq!(a.format, Format::Text);
        assert!(a.ports.is_empty());
        assert!(!a.no_progress);
        assert_eq!(a.config().ports, vec![1433]);
    }

    #[test]
    fn all_options_and_several_files() {
        let a = analyze(&[
            "tdswatch",
            "analyze",
            "--format",
            "json",
            "--port",
            "14330",
            "--no-progress",
            "a.pcap",
            "--port=50000,1433",
            "b.pcapng",
        ])
        .expect("parses");
        assert_eq!(
            a.files,
            vec![PathBuf::from("a.pcap"), PathBuf::from("b.pcapng")]
        );
        assert_eq!(a.format, Format::Json);
        assert_eq!(a.ports, vec![14330, 50000, 1433]);
        assert!(a.no_progress);
        // 1433 stays first and is not repeated.
        assert_eq!(a.config().ports, vec![1433, 14330, 50000]);
    }

    #[test]
    fn prometheus_format() {
        let a = analyze(&["tdswatch", "analyze", "--format=prometheus", "a.pcap"]).expect("parses");
        assert_eq!(a.format, Format::Prometheus);
    }

    #[test]
    fn file_is_required() {
        let e = analyze(&["tdswatch", "analyze"]).expect_err("no file");
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["tdswatch", "analyze", "--format", "xml", "a.pcap"][..],
            &["tdswatch", "analyze", "--format", "openmetrics", "a.pcap"][..],
            &["tdswatch", "analyze", "--port", "70000", "a.pcap"][..],
            &["tdswatch", "analyze", "--port", "0", "a.pcap"][..],
            &["tdswatch", "analyze", "--port", "sql", "a.pcap"][..],
            &["tdswatch", "analyze", "--colour", "a.pcap"][..],
        ] {
            let e = analyze(args).expect_err("must be refused");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn a_subcommand_is_required() {
        let e = Cli::try_parse_from(["tdswatch"]).expect_err("no subcommand");
        assert_eq!(
            e.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["tdswatch", "scan", "a.pcap"]).expect_err("unknown");
        assert_eq!(e.kind(), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn help_is_not_an_error_exit() {
        let e = Cli::try_parse_from(["tdswatch", "analyze", "--help"]).expect_err("help");
        assert_eq!(e.kind(), ErrorKind::DisplayHelp);
        assert_eq!(e.exit_code(), 0);
        let text = e.to_string();
        assert!(text.contains("--port <PORT>"), "{text}");
        assert!(text.contains("Exit status"), "{text}");
    }

    #[test]
    fn run_takes_the_exporter_flags() {
        let cli = Cli::try_parse_from([
            "tdswatch",
            "run",
            "--web.listen-address=:9500",
            "--log.level=debug",
            "--log.format=json",
            "--config.file=/etc/tdswatch.yaml",
        ])
        .expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        assert_eq!(
            run.flags.config_file,
            Some(PathBuf::from("/etc/tdswatch.yaml"))
        );
        assert_eq!(run.flags.web_listen_address.map(|a| a.0.port()), Some(9500));
        assert!(Cli::try_parse_from(["tdswatch", "run", "--web.listen-address=nowhere"]).is_err());
    }

    #[test]
    fn check_config_takes_one_file() {
        let cli = Cli::try_parse_from(["tdswatch", "check-config", "t.yaml"]).expect("parses");
        match cli.command {
            Command::CheckConfig(a) => assert_eq!(a.file, PathBuf::from("t.yaml")),
            other => panic!("not check-config: {other:?}"),
        }
        for args in [
            &["tdswatch", "check-config"][..],
            &["tdswatch", "check-config", "a.yaml", "b.yaml"][..],
        ] {
            let e = Cli::try_parse_from(args).expect_err("refused");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
