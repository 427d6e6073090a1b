//! End-to-end tests of the libpcap live source: real TCP sockets in network namespaces these tests
//! create (joined by veths, removed again by a guard even when a test fails), captured by
//! `LiveSource` and fed through the real pipeline. They need root (CI runs as root): without it they
//! fail with a message saying so.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tdswatch::capture::live::{InterfaceStats, LiveConfig, LiveSource, Next, StopHandle};
use tdswatch::capture::{CaptureError, FrameSource, LinkType};
use tdswatch::config::Config;
use tdswatch::pipeline::{Pipeline, PipelineStats};
use tdswatch::verdict::{Outcome, Reason, Stage, Verdict};

/// Longest any step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the live capture tests need root (they create network namespaces and capture with \
         CAP_NET_RAW/CAP_NET_ADMIN): run them as root, as CI does"
    );
}

/// A name unique to this test run, short enough for an interface (15 bytes at most).
fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "tw{}x{}{tag}",
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces created by a test, deleted (with their veths) when dropped.
#[derive(Default)]
struct Namespaces(Vec<String>);

impl Namespaces {
    fn add(&mut self, tag: &str) -> String {
        let name = unique(tag);
        ip(&["netns", "add", &name]);
        self.0.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Joins `a` and `b` by a veth with addresses 10.`net`.0.1 (in `a`) and .2 (in `b`); returns the
/// interface names in `a` and `b`.
fn veth(a: &str, b: &str, net: u8) -> (String, String) {
    let (ia, ib) = (unique("a"), unique("b"));
    ip(&[
        "link", "add", &ia, "netns", a, "type", "veth", "peer", "name", &ib, "netns", b,
    ]);
    for (ns, ifname, host) in [(a, &ia, 1), (b, &ib, 2)] {
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("10.{net}.0.{host}/24"),
            "dev",
            ifname,
        ]);
        ip(&["-n", ns, "link", "set", ifname, "up"]);
    }
    (ia, ib)
}

/// Runs `f` on a new thread that has entered network namespace `ns` (sockets and capture handles
/// it opens live there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: the descriptor is a valid, open network namespace file for the whole call, and
        // CLONE_NEWNET moves only this thread into it.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Waits for a thread, failing the test if it panicked or outlives `limit`.
fn join<T>(handle: JoinHandle<T>, what: &str, limit: Duration) -> T {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} did not finish in {limit:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    handle.join().unwrap_or_else(|_| panic!("{what} panicked"))
}

/// What a capture thread saw.
struct Captured {
    verdicts: Vec<Verdict>,
    frames: u64,
    links: HashSet<LinkType>,
    interface_numbers: HashSet<u32>,
    pipeline: PipelineStats,
    stats: Vec<InterfaceStats>,
}

/// Opens a live source in `ns` and feeds everything it captures through the pipeline until stopped.
/// Returns once the source is open.
fn capture_in(ns: &str, cfg: LiveConfig) -> (StopHandle, JoinHandle<Captured>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = in_netns(ns, move || {
        let mut source = match LiveSource::open(&cfg) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                panic!("open: {e}");
            }
        };
        let _ = ready_tx.send(Ok(source.stop_handle()));
        let mut pipeline = Pipeline::new(&Config::default());
        let mut verdicts = Vec::new();
        let (mut frames, mut links, mut interface_numbers) = (0, HashSet::new(), HashSet::new());
        while let Some(frame) = source.next_frame().expect("next_frame") {
            frames += 1;
            links.insert(frame.link);
            interface_numbers.insert(frame.interface);
            pipeline.on_frame(&frame, &mut |v| verdicts.push(v));
        }
        pipeline.finish(&mut |v| verdicts.push(v));
        Captured {
            verdicts,
            frames,
            links,
            interface_numbers,
            pipeline: pipeline.stats().clone(),
            stats: source.stats(),
        }
    });
    let stop = ready_rx
        .recv_timeout(STEP)
        .expect("the capture thread did not start")
        .unwrap_or_else(|e| panic!("LiveSource::open: {e}"));
    (stop, handle)
}

/// Bytes that no TDS packet starts with (0xAB is no packet type), the rest pseudo-random.
fn non_tds_bytes(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9 ^ std::process::id();
    let mut out: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    if let Some(first) = out.first_mut() {
        *first = 0xAB;
    }
    out
}

#[test]
fn probe_gives_a_verdict_and_non_tds_bytes_give_none() {
    require_root();
    let mut ns = Namespaces::default();
    let (server_ns, client_ns) = (ns.add("s"), ns.add("c"));
    let (_server_if, client_if) = veth(&server_ns, &client_ns, 77);

    let (stop, capture) = capture_in(
        &client_ns,
        LiveConfig {
            interfaces: Some(vec![client_if.clone()]),
            ..LiveConfig::default()
        },
    );

    let (bound_tx, bound_rx) = mpsc::channel();
    let server = in_netns(&server_ns, move || {
        let listener = TcpListener::bind("10.77.0.1:1433").expect("bind 10.77.0.1:1433");
        let _ = bound_tx.send(());
        let mut received = Vec::new();
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(STEP)).expect("read timeout");
            let mut bytes = Vec::new();
            conn.read_to_end(&mut bytes)
                .expect("read until the client closes");
            received.push(bytes.len());
        }
        received
    });
    bound_rx
        .recv_timeout(STEP)
        .expect("the server did not bind");

    let payload = non_tds_bytes(300);
    let sent = payload.clone();
    let client = in_netns(&client_ns, move || {
        let server: SocketAddr = "10.77.0.1:1433".parse().expect("address");
        // A probe: connect and close without a byte.
        let probe = TcpStream::connect_timeout(&server, STEP).expect("connect (probe)");
        let probe_port = probe.local_addr().expect("local address").port();
        drop(probe);
        // Random bytes that are not TDS.
        let mut junk = TcpStream::connect_timeout(&server, STEP).expect("connect (junk)");
        let junk_port = junk.local_addr().expect("local address").port();
        junk.write_all(&sent).expect("send");
        junk.shutdown(Shutdown::Write).expect("shutdown");
        junk.set_read_timeout(Some(STEP)).expect("read timeout");
        let _ = junk.read_to_end(&mut Vec::new());
        (probe_port, junk_port)
    });
    let (probe_port, junk_port) = join(client, "the client", STEP);
    let received = join(server, "the server", STEP);
    assert_eq!(received, vec![0, payload.len()]);

    // TPACKET_V3 hands a block over within the 100 ms read timeout; give it ample margin.
    thread::sleep(Duration::from_millis(600));
    stop.stop();
    let got = join(capture, "the capture", STEP);

    assert!(got.frames >= 14, "only {} frames captured", got.frames);
    assert_eq!(got.links, HashSet::from([LinkType::Ethernet]));
    assert_eq!(got.interface_numbers.len(), 1);
    let verdicts: Vec<String> = got
        .verdicts
        .iter()
        .map(|v| format!("{} {:?} {:?}", v.client, v.stage, v.outcome))
        .collect();
    let probe: Vec<&Verdict> = got
        .verdicts
        .iter()
        .filter(|v| v.client.port() == probe_port)
        .collect();
    assert_eq!(probe.len(), 1, "verdicts: {verdicts:?}");
    let p = probe[0];
    assert_eq!(p.server, "10.77.0.1:1433".parse().expect("address"));
    assert_eq!(
        (p.stage, p.outcome, p.reason, p.probe),
        (
            Stage::Connected,
            Outcome::Failed,
            Some(Reason::Closed),
            true
        ),
        "{}",
        p.evidence
    );
    assert!(
        !got.verdicts.iter().any(|v| v.client.port() == junk_port),
        "the non-TDS connection got a verdict: {verdicts:?}"
    );
    assert_eq!(got.pipeline.non_tds_flows, 1);
    assert_eq!(got.stats.len(), 1);
    assert_eq!(got.stats[0].name, client_if);
    assert!(got.stats[0].received >= got.frames);
    assert_eq!(got.stats[0].kernel_dropped, 0);
}

#[test]
fn stop_ends_next_frame_promptly_and_counters_are_readable() {
    require_root();
    let mut ns = Namespaces::default();
    let n = ns.add("n");
    let (done_tx, done_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let worker = in_netns(&n, move || {
        let cfg = LiveConfig {
            interfaces: Some(vec!["lo".into()]),
            ..LiveConfig::default()
        };
        let mut source = LiveSource::open(&cfg).expect("open lo");
        // Traffic to the watched port on loopback, then nothing.
        let listener = TcpListener::bind("127.0.0.1:1433").expect("bind");
        let conn = TcpStream::connect_timeout(
            &"127.0.0.1:1433".parse().expect("address"),
            Duration::from_secs(2),
        )
        .expect("connect");
        drop(conn);
        drop(listener);
        let _ = ready_tx.send((source.stop_handle(), source.stats_handle()));
        let mut frames = 0u64;
        while source.next_frame().expect("next_frame").is_some() {
            frames += 1;
        }
        let _ = done_tx.send(Instant::now());
        (frames, source.stats())
    });
    let (stop, shared) = ready_rx
        .recv_timeout(STEP)
        .expect("the source did not open");
    // The counters reach other threads while the capture thread waits for frames.
    let deadline = Instant::now() + STEP;
    loop {
        let now = shared.get();
        if now.len() == 1 && now[0].received >= 3 {
            assert_eq!(now[0].name, "lo");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shared counters never showed the frames: {now:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    stop.stop();
    let returned = done_rx
        .recv_timeout(STEP)
        .expect("next_frame did not return after stop");
    let took = returned.saturating_duration_since(asked);
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    assert!(stop.is_stopped());
    let (frames, stats) = join(worker, "the capture", STEP);
    assert!(
        frames >= 3,
        "only {frames} frames from the loopback connection"
    );
    assert_eq!(stats.len(), 1);
    let lo = &stats[0];
    assert_eq!(lo.name, "lo");
    assert!(lo.received >= frames, "{lo:?}");
    assert_eq!((lo.kernel_dropped, lo.interface_dropped), (0, 0), "{lo:?}");
}

#[test]
fn interfaces_that_come_and_go_are_picked_up_and_released() {
    require_root();
    let mut ns = Namespaces::default();
    let (n, peer) = (ns.add("n"), ns.add("p"));

    // The capture thread reports the open interface set and how many interface numbers frames
    // came from, after every frame that changed either.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (set_tx, set_rx) = mpsc::channel::<(Vec<String>, usize)>();
    let capture = in_netns(&n, move || {
        let mut source = LiveSource::open(&LiveConfig::default()).expect("open every interface");
        let _ = ready_tx.send((source.stop_handle(), source.interfaces()));
        let mut last = source.interfaces();
        let mut numbers = HashSet::new();
        while let Some(frame) = source.next_frame().expect("next_frame") {
            let new_number = numbers.insert(frame.interface);
            let now = source.interfaces();
            if now != last || new_number {
                let _ = set_tx.send((now.clone(), numbers.len()));
                last = now;
            }
        }
        (numbers, source.stats())
    });
    let (stop, initial) = ready_rx
        .recv_timeout(STEP)
        .expect("the source did not open");
    assert_eq!(initial, vec!["lo".to_string()]);

    // Keep SYNs flowing on loopback and, once it exists, on the veth (nothing listens: RSTs).
    let running = Arc::new(AtomicBool::new(true));
    let keep = Arc::clone(&running);
    let traffic = in_netns(&n, move || {
        let targets: Vec<SocketAddr> = ["127.0.0.1:1433", "10.78.0.2:1433"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        while keep.load(Ordering::SeqCst) {
            for t in &targets {
                let _ = TcpStream::connect_timeout(t, Duration::from_millis(100));
            }
            thread::sleep(Duration::from_millis(50));
        }
    });

    let wait_for = |want: &dyn Fn(&[String], usize) -> bool, what: &str| {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match set_rx.recv_timeout(left) {
                Ok((set, numbers)) if want(&set, numbers) => return set,
                Ok(_) => {}
                Err(_) => panic!("{what} within {STEP:?}"),
            }
        }
    };

    let started = Instant::now();
    let (veth_n, _veth_peer) = veth(&n, &peer, 78);
    let name = veth_n.clone();
    wait_for(
        &|set, numbers| set.contains(&name) && numbers == 2,
        "the new veth was not picked up (open, with a frame from it)",
    );
    let picked_up = started.elapsed();
    assert!(
        picked_up < Duration::from_secs(5),
        "picked up after {picked_up:?}"
    );

    ip(&["-n", &n, "link", "del", &veth_n]);
    let name = veth_n.clone();
    let set = wait_for(
        &|set, _| !set.contains(&name),
        "the deleted veth was not released",
    );
    assert_eq!(set, vec!["lo".to_string()]);

    running.store(false, Ordering::SeqCst);
    join(traffic, "the traffic thread", STEP);
    stop.stop();
    let (numbers, stats) = join(capture, "the capture", STEP);
    assert_eq!(numbers.len(), 2, "frames came from {numbers:?}");
    let names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["lo"]);
}

/// Opening without the capture capabilities fails with an error naming them. The test runs itself
/// again in a child whose capability bounding set lacks CAP_NET_RAW and CAP_NET_ADMIN.
#[test]
fn missing_capability_is_named() {
    const CHILD: &str = "TDSWATCH_LIVE_PERMISSION_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let cfg = LiveConfig {
            interfaces: Some(vec!["lo".into()]),
            ..LiveConfig::default()
        };
        match LiveSource::open(&cfg) {
            Err(e @ CaptureError::Permission { .. }) => println!("CHILD-ERROR {e}"),
            Err(e) => panic!("expected a permission error, got: {e}"),
            Ok(_) => panic!("opened a capture without CAP_NET_RAW"),
        }
        return;
    }
    let stdout = rerun_under_setpriv("missing_capability_is_named", CHILD, "-net_raw,-net_admin");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-ERROR ").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("the child printed no error: {stdout}"));
    assert!(line.contains("CAP_NET_RAW"), "{line}");
    assert!(line.contains("lo"), "{line}");
}

/// CAP_NET_RAW alone is enough to capture: the test runs itself again in a child whose capability
/// sets lack CAP_NET_ADMIN (and every other capability but CAP_NET_RAW), and that child opens `lo`
/// and reads a frame. The deployment files (systemd unit, DaemonSet) grant CAP_NET_RAW only.
#[test]
fn net_raw_alone_is_enough() {
    const CHILD: &str = "TDSWATCH_LIVE_NET_RAW_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let cfg = LiveConfig {
            interfaces: Some(vec!["lo".into()]),
            ports: vec![PORT_NET_RAW],
            ..LiveConfig::default()
        };
        let mut source = match LiveSource::open(&cfg) {
            Ok(s) => s,
            Err(e) => panic!("CAP_NET_RAW alone could not open lo: {e}"),
        };
        let listener = std::net::TcpListener::bind(("127.0.0.1", PORT_NET_RAW)).expect("bind");
        let _client = std::net::TcpStream::connect(("127.0.0.1", PORT_NET_RAW)).expect("connect");
        let _accepted = listener.accept().expect("accept");
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if let Ok(Next::Frame(_)) = source.next_event(Duration::from_millis(100)) {
                println!("CHILD-CAPTURED");
                return;
            }
        }
        panic!("no frame captured with CAP_NET_RAW alone");
    }
    let stdout = rerun_under_setpriv("net_raw_alone_is_enough", CHILD, "-all,+net_raw");
    assert!(stdout.contains("CHILD-CAPTURED"), "{stdout}");
}

/// Runs the test `name` again (with `child_env` set) in a fresh network namespace under
/// `setpriv`, its bounding and inheritable capability sets changed by `caps` (setpriv's syntax),
/// and returns what it printed; panics when it failed.
fn rerun_under_setpriv(name: &str, child_env: &str, caps: &str) -> String {
    require_root();
    let mut ns = Namespaces::default();
    let n = ns.add("cap");
    let exe = std::env::current_exe().expect("test binary");
    let exe = exe.to_str().expect("test binary path is UTF-8");
    let (bounding, inheritable) = (
        format!("--bounding-set={caps}"),
        format!("--inh-caps={caps}"),
    );
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &n,
            "setpriv",
            &bounding,
            &inheritable,
            exe,
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(child_env, "1")
        .output()
        .expect("run the child under setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The port of [`net_raw_alone_is_enough`]'s connection (in its own namespace).
const PORT_NET_RAW: u16 = 1433;

/// A listed interface that vanishes does not end the capture; when it comes back it is reopened
/// under the same number.
#[test]
fn a_listed_interface_that_returns_is_reopened_with_its_number() {
    require_root();
    let mut ns = Namespaces::default();
    let (n, peer) = (ns.add("n"), ns.add("p"));
    let (veth_n, veth_peer) = veth(&n, &peer, 80);

    let (ready_tx, ready_rx) = mpsc::channel();
    let (frame_tx, frame_rx) = mpsc::channel::<u32>();
    let listed = veth_n.clone();
    let capture = in_netns(&n, move || {
        let cfg = LiveConfig {
            interfaces: Some(vec![listed]),
            ..LiveConfig::default()
        };
        let mut source = LiveSource::open(&cfg).expect("open the listed veth");
        let _ = ready_tx.send(source.stop_handle());
        let mut frames = 0u64;
        while let Some(frame) = source.next_frame().expect("next_frame") {
            frames += 1;
            let _ = frame_tx.send(frame.interface);
        }
        frames
    });
    let stop = ready_rx
        .recv_timeout(STEP)
        .expect("the source did not open");

    // SYNs to the peer (nothing listens there: RSTs come back), while the veth exists.
    let running = Arc::new(AtomicBool::new(true));
    let keep = Arc::clone(&running);
    let traffic = in_netns(&n, move || {
        let target: SocketAddr = "10.80.0.2:1433".parse().expect("address");
        while keep.load(Ordering::SeqCst) {
            let _ = TcpStream::connect_timeout(&target, Duration::from_millis(100));
            thread::sleep(Duration::from_millis(50));
        }
    });

    let first = frame_rx
        .recv_timeout(STEP)
        .expect("no frame from the listed veth");
    ip(&["-n", &n, "link", "del", &veth_n]);
    // Past a rescan: the vanished interface must not have ended the capture.
    thread::sleep(Duration::from_millis(2500));
    assert!(
        !capture.is_finished(),
        "the capture ended when its interface vanished"
    );
    while frame_rx.try_recv().is_ok() {}

    ip(&[
        "link", "add", &veth_n, "netns", &n, "type", "veth", "peer", "name", &veth_peer, "netns",
        &peer,
    ]);
    for (ns_name, ifname, host) in [(&n, &veth_n, 1), (&peer, &veth_peer, 2)] {
        ip(&[
            "-n",
            ns_name,
            "addr",
            "add",
            &format!("10.80.0.{host}/24"),
            "dev",
            ifname,
        ]);
        ip(&["-n", ns_name, "link", "set", ifname, "up"]);
    }
    let again = frame_rx
        .recv_timeout(STEP)
        .expect("no frame after the listed veth came back");
    assert_eq!(again, first, "the interface number changed");

    running.store(false, Ordering::SeqCst);
    join(traffic, "the traffic thread", STEP);
    stop.stop();
    let frames = join(capture, "the capture", STEP);
    assert!(frames >= 4, "only {frames} frames");
}
