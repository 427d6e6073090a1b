//! `tdswatch run`, the live agent, as an operator starts it: it captures on `lo`, serves metrics and
//! health on HTTP, logs the event of each connection, stops cleanly on SIGTERM, and says in one line
//! which capability it lacks. Needs root (CI runs as root); without it the test fails and says so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// Kills the agent if a test fails half-way.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn the_agent_serves_metrics_for_live_connections_and_stops_on_sigterm() {
    assert!(
        is_root(),
        "tdswatch run captures packets: run the tests as root (CI does)"
    );
    let sql_port = free_port();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let dir = std::env::temp_dir().join(format!("tdswatch-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("tdswatch.yaml");
    let events = dir.join("events.jsonl");
    std::fs::write(
        &config,
        format!(
            "capture:\n  interfaces: [lo]\n  ports: [{sql_port}]\nweb:\n  listen_address: {web}\n\
             event_log:\n  path: {}\n  all_connections: true\n",
            events.display()
        ),
    )
    .expect("config");
    let mut agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_tdswatch"))
            .args(["run", "--config.file"])
            .arg(&config)
            .args(["--log.format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tdswatch run"),
    );
    wait_for("/-/ready", || {
        http_get(web, "/-/ready").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(http_get(web, "/-/healthy").map(|(s, _)| s), Some(200));

    // A real server and two real clients on loopback: a TCP probe, and a client sending bytes
    // that are not TDS (which must not count as a SQL Server connection).
    let server = TcpListener::bind(("127.0.0.1", sql_port)).expect("listen");
    let accept = std::thread::spawn(move || {
        for _ in 0..2 {
            if let Ok((mut c, _)) = server.accept() {
                let mut buf = [0u8; 64];
                let _ = c.read(&mut buf);
            }
        }
    });
    drop(TcpStream::connect(("127.0.0.1", sql_port)).expect("probe"));
    let mut junk = TcpStream::connect(("127.0.0.1", sql_port)).expect("client");
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
    drop(junk);
    accept.join().expect("server thread");

    // Verdicts are counted as connections end; run counters are published every second.
    wait_for(
        "the probe's verdict and the non-TDS flow in /metrics",
        || {
            http_get(web, "/metrics").is_some_and(|(_, body)| {
                body.contains(&format!(
                    "tds_tcp_probes_total{{server=\"127.0.0.1:{sql_port}\"}} 1"
                )) && body.contains("tdswatch_non_tds_flows_total 1")
            })
        },
    );
    let (status, body) = http_get(web, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!(
            "tds_connections_total{{server=\"127.0.0.1:{sql_port}\",encryption=\"unknown\",outcome=\"failed\"}} 1"
        )),
        "{body}"
    );
    assert!(
        body.contains("tdswatch_capture_received_packets_total{interface=\"lo\"}"),
        "{body}"
    );
    assert!(
        body.contains("tdswatch_capture_kernel_dropped_packets_total{interface=\"lo\"} 0"),
        "{body}"
    );
    assert!(body.contains("tdswatch_non_tds_flows_total 1"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    // SIGTERM: stop, flush, exit 0.
    let pid = agent.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = agent.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tdswatch did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let mut log = String::new();
    if let Some(mut e) = agent.0.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert!(log.contains("SIGTERM"), "{log}");
    let events = std::fs::read_to_string(&events).expect("event log");
    let lines: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "one connection event (the probe): {events}");
    assert_eq!(lines[0]["stage"], "connected");
    assert_eq!(lines[0]["close"]["first_fin"], "client");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn without_the_capture_capability_one_line_says_which() {
    assert!(
        is_root(),
        "run the tests as root (CI does): the test drops the capabilities itself"
    );
    let out = Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-net_raw,-net_admin",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_tdswatch"))
        .args(["run", "--web.listen-address", "127.0.0.1:9"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("CAP_NET_RAW"), "{stderr}");
}
