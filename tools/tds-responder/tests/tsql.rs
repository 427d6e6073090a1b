//! A real external client against the responder: FreeTDS `tsql` (Debian `freetds-bin`, installed by
//! tests/run.sh) logs in login-only and with full encryption and gets `1` back from `SELECT 1`, on
//! loopback, captured by `tcpdump -i lo`; `tdswatch analyze --format json` then reads the capture
//! and must call both connections established with the right encryption. A third run meets a DHE
//! suite and a server RST after the ClientKeyExchange: `dhe_key_exchange_failure`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

/// A child process killed and reaped when dropped, also when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, what: &str) -> Reaped {
    match cmd.spawn() {
        Ok(c) => Reaped(c),
        Err(e) => panic!("cannot start {what} ({e}); tests/run.sh installs it"),
    }
}

/// Reads lines from `r` in a thread until one contains `needle`, within `limit`.
fn wait_for_line<R: std::io::Read + Send + 'static>(
    r: R,
    needle: &'static str,
    limit: Duration,
) -> String {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if line.contains(needle) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("no line with {needle:?} within {limit:?}"))
}

fn responder(args: &[&str]) -> (Reaped, u16, ChildStdout) {
    let mut child = spawn(
        Command::new(env!("CARGO_BIN_EXE_tds-responder"))
            .args(["--listen", "127.0.0.1:0", "--max-seconds", "60"])
            .args(["--max-connections", "1", "--io-timeout-ms", "5000"])
            .args(args)
            .stdout(Stdio::piped()),
        "tds-responder",
    );
    let mut out = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read the bound address");
    let port = first
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    (child, port, out.into_inner())
}

fn tsql(conf: &Path, server: &str) -> String {
    let mut child = spawn(
        Command::new("timeout")
            .args([
                "20",
                "tsql",
                "-S",
                server,
                "-U",
                "someone",
                "-P",
                "not-a-secret",
            ])
            .env("FREETDSCONF", conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "tsql",
    );
    if let Some(mut i) = child.0.stdin.take() {
        i.write_all(b"SELECT 1\ngo\nexit\n").expect("tsql stdin");
    }
    out_output(child)
}

/// Whether tsql printed a result row holding `1` (its prompts `1> 2> ` may lead the line).
fn printed_one(out: &str) -> bool {
    out.lines().any(|l| {
        let mut l = l.trim();
        while let Some((n, rest)) = l.split_once("> ") {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                break;
            }
            l = rest.trim();
        }
        l == "1"
    })
}

fn out_output(mut r: Reaped) -> String {
    let mut s = String::new();
    if let Some(mut o) = r.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut s);
    }
    let mut e = String::new();
    if let Some(mut o) = r.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut e);
    }
    let status = r.0.wait().expect("wait");
    format!("status={status}\n{s}\n{e}")
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

#[test]
fn tsql_logs_in_login_only_and_full_and_tdswatch_agrees() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tsql-responder");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");

    // FreeTDS keys full encryption on the server's answer: ON for full, OFF for login-only.
    // FreeTDS's TLS 1.3 inside TDS 7.x is broken (real-clients.md): cap the server at TLS 1.2.
    let (lo, lo_port, lo_out) = responder(&[
        "--scenario",
        "tsql_login_only",
        "--encryption",
        "off",
        "--tls-max",
        "1.2",
    ]);
    let (full, full_port, full_out) = responder(&[
        "--scenario",
        "tsql_full",
        "--encryption",
        "on",
        "--tls-max",
        "1.2",
    ]);
    // The DHE bug's shape: a DHE suite, and a server RST right after the ClientKeyExchange.
    let (dhe, dhe_port, dhe_out) = responder(&[
        "--scenario",
        "tsql_dhe_rst",
        "--encryption",
        "on",
        "--tls-max",
        "1.2",
        "--ciphers",
        "DHE-RSA-AES256-GCM-SHA384",
        "--fault",
        "rst_after_client_key_exchange",
    ]);
    let conf = dir.join("freetds.conf");
    std::fs::write(
        &conf,
        format!(
            "[lo]\n\thost = 127.0.0.1\n\tport = {lo_port}\n\ttds version = 7.4\n\tencryption = request\n\
             [full]\n\thost = 127.0.0.1\n\tport = {full_port}\n\ttds version = 7.4\n\tencryption = require\n\
             [dhe]\n\thost = 127.0.0.1\n\tport = {dhe_port}\n\ttds version = 7.4\n\tencryption = require\n"
        ),
    )
    .expect("freetds.conf");

    let pcap = dir.join("tsql.pcap");
    let dump_err = dir.join("tcpdump.err");
    let mut dump = spawn(
        Command::new("timeout")
            .args([
                "60",
                "tcpdump",
                "-i",
                "lo",
                "--immediate-mode",
                "-U",
                "-n",
                "-s",
                "0",
            ])
            .arg("-w")
            .arg(&pcap)
            .arg(format!(
                "tcp port {lo_port} or tcp port {full_port} or tcp port {dhe_port}"
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&dump_err).expect("tcpdump.err")),
        "tcpdump",
    );
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&dump_err).is_ok_and(|s| s.contains("listening on")) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "tcpdump did not start"
        );
        assert!(dump.0.try_wait().ok().flatten().is_none(), "tcpdump exited");
        std::thread::sleep(Duration::from_millis(50));
    }

    let a = tsql(&conf, "lo");
    let b = tsql(&conf, "full");
    let c = tsql(&conf, "dhe");
    assert!(!c.starts_with("status=exit status: 0"), "{c}");
    for out in [&a, &b] {
        assert!(out.starts_with("status=exit status: 0"), "{out}");
        assert!(printed_one(out), "{out}");
        assert!(out.contains("(1 row affected)"), "{out}");
    }
    let log_lo = wait_for_line(lo_out, "conn=1", Duration::from_secs(10));
    let log_full = wait_for_line(full_out, "conn=1", Duration::from_secs(10));
    let log_dhe = wait_for_line(dhe_out, "conn=1", Duration::from_secs(10));
    assert!(
        log_dhe.contains("fired=rst") && log_dhe.contains("suite=0x009f"),
        "{log_dhe}"
    );
    assert!(
        log_lo.contains("encryption=login_only") && log_lo.contains("batches=1"),
        "{log_lo}"
    );
    assert!(
        log_full.contains("encryption=full") && log_full.contains("batches=1"),
        "{log_full}"
    );
    for l in [&log_lo, &log_full] {
        assert!(!l.contains("someone") && !l.contains("not-a-secret"), "{l}");
    }
    drop((lo, full, dhe));

    // Let the last segments reach the capture, then stop tcpdump (only the one this test started).
    std::thread::sleep(Duration::from_millis(500));
    let pid = dump.0.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let _ = dump.0.wait();
    eprintln!("{}", std::fs::read_to_string(&dump_err).unwrap_or_default());

    let built = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "tdswatch", "--bin", "tdswatch"])
        .status()
        .expect("cargo build tdswatch");
    assert!(built.success());
    let out = Command::new(target_dir().join("debug").join("tdswatch"))
        .args(["analyze", "--format", "json", "--no-progress"])
        .args([
            "--port",
            &lo_port.to_string(),
            "--port",
            &full_port.to_string(),
            "--port",
            &dhe_port.to_string(),
        ])
        .arg(&pcap)
        .output()
        .expect("tdswatch analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    let verdict = |port: u16| {
        verdicts
            .iter()
            .find(|v| {
                v["server"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(&format!(":{port}")))
            })
            .unwrap_or_else(|| panic!("no verdict for port {port}: {verdicts:?}"))
    };
    for (port, encryption) in [(lo_port, "login_only"), (full_port, "full")] {
        let v = verdict(port);
        assert_eq!(v["outcome"], "established", "{v}");
        assert_eq!(v["stage"], "established", "{v}");
        assert_eq!(v["encryption"], encryption, "{v}");
        assert_eq!(v["mode"], "tds7", "{v}");
        assert_eq!(v["tls"]["version"], "TLSv1.2", "{v}");
        assert_eq!(v["close"]["first_fin"], "client", "{v}");
        assert_eq!(v["close"]["abnormal"], false, "{v}");
    }
    let lo_v = verdicts
        .iter()
        .find(|v| v["encryption"] == "login_only")
        .expect("login-only verdict");
    assert_eq!(lo_v["login"]["result"], "ack", "{lo_v}");
    let v = verdict(dhe_port);
    assert_eq!(v["outcome"], "failed", "{v}");
    assert_eq!(v["reason"], "dhe_key_exchange_failure", "{v}");
    assert_eq!(v["stage"], "tls_handshake", "{v}");
    assert_eq!(
        v["tls"]["suite"], "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        "{v}"
    );
    assert_eq!(v["close"]["first_rst"], "server", "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
