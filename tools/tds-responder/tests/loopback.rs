//! The responder driven over real loopback sockets by a real OpenSSL client that speaks TDS the way
//! drivers do: PRELOGIN, the TLS handshake wrapped in PRELOGIN packets (optionally sending its
//! second flight bare, as msodbc18/jTDS/FreeTDS do) or TLS first for strict, LOGIN7, a batch.

use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslMethod, SslStream, SslVerifyMode, SslVersion,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tds_responder::wire::{self, read_message, write_message};
use tds_responder::{Config, ConnLog, Encryption, Fault, Limits, LoginResult, Shared};
use tdsgen::tds;

struct Server {
    addr: SocketAddr,
    logs: Receiver<ConnLog>,
    thread: JoinHandle<u64>,
}

impl Server {
    fn start(config: Config, connections: u64) -> Server {
        let shared = Shared::new(config).expect("tls context");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, logs) = channel();
        let tx = Mutex::new(tx);
        let limits = Limits {
            max_seconds: 60,
            max_connections: Some(connections),
        };
        let thread = std::thread::spawn(move || {
            tds_responder::serve(
                listener,
                shared,
                limits,
                Arc::new(move |l: &ConnLog| {
                    if let Ok(t) = tx.lock() {
                        let _ = t.send(l.clone());
                    }
                }),
            )
            .expect("serve")
        });
        Server { addr, logs, thread }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Waits for the serving thread and returns the log records, by connection id.
    fn finish(self) -> Vec<ConnLog> {
        assert!(self.thread.join().is_ok());
        let mut v: Vec<ConnLog> = self.logs.try_iter().collect();
        v.sort_by_key(|l| l.id);
        v
    }
}

/// The client's side of TLS-in-PRELOGIN: flights go out as PRELOGIN messages (or bare after the
/// first flight when `raw_after_first`), incoming PRELOGIN packets are unwrapped.
#[derive(Debug)]
struct ClientWire {
    tcp: TcpStream,
    wrapping: bool,
    raw_after_first: bool,
    flights: u32,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// Sizes of the TDS packets the server's flights came in.
    server_packets: Vec<usize>,
}

impl ClientWire {
    fn new(tcp: TcpStream, wrapping: bool, raw_after_first: bool) -> ClientWire {
        ClientWire {
            tcp,
            wrapping,
            raw_after_first,
            flights: 0,
            out: Vec::new(),
            inbuf: Vec::new(),
            server_packets: Vec::new(),
        }
    }
}

impl Read for ClientWire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.wrapping {
            return self.tcp.read(buf);
        }
        if self.inbuf.is_empty() {
            let mut h = [0u8; 8];
            self.tcp.read_exact(&mut h)?;
            assert_eq!(
                h[0],
                wire::TYPE_PRELOGIN,
                "server flight not in a PRELOGIN packet"
            );
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            self.server_packets.push(len);
            self.inbuf.resize(len - 8, 0);
            self.tcp.read_exact(&mut self.inbuf)?;
        }
        let n = buf.len().min(self.inbuf.len());
        buf[..n].copy_from_slice(&self.inbuf[..n]);
        self.inbuf.drain(..n);
        Ok(n)
    }
}

impl Write for ClientWire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.wrapping {
            return self.tcp.write(buf);
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let flight = std::mem::take(&mut self.out);
        self.flights += 1;
        if self.raw_after_first && self.flights > 1 {
            self.tcp.write_all(&flight)
        } else {
            write_message(&mut self.tcp, wire::TYPE_PRELOGIN, &flight, 4096)
        }
    }
}

#[derive(Clone, Default)]
struct Client {
    min: Option<SslVersion>,
    max: Option<SslVersion>,
    ciphers: Option<&'static str>,
    alpn: bool,
}

impl Client {
    fn context(&self) -> SslContext {
        let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        b.set_security_level(0);
        b.set_min_proto_version(self.min).unwrap();
        b.set_max_proto_version(self.max).unwrap();
        b.set_cipher_list(self.ciphers.unwrap_or("ALL:@SECLEVEL=0"))
            .unwrap();
        if self.alpn {
            b.set_alpn_protos(b"\x07tds/8.0").unwrap();
        }
        b.build()
    }

    fn handshake<S: Read + Write>(&self, s: S) -> Result<SslStream<S>, HandshakeError<S>> {
        let mut ssl = Ssl::new(&self.context()).unwrap();
        ssl.set_connect_state();
        ssl.connect(s)
    }
}

fn prelogin(encryption: u8) -> Vec<u8> {
    tds::prelogin_payload(&tds::Prelogin {
        version: [11, 0, 0, 0, 0, 0],
        encryption,
        instopt: &[0],
        thread_id: Some(42),
        mars: 0,
        trace_id: None,
    })
}

fn login7() -> Vec<u8> {
    tds::login7_payload(&tds::Login7 {
        tds_version: tds::TDS_7_4,
        packet_size: 4096,
        client_prog_ver: 7,
        client_pid: 1234,
        host_name: "testhost",
        user_name: "someone",
        password: "not-a-secret",
        app_name: "loopback-test",
        server_name: "127.0.0.1",
        library: "openssl-test",
        language: "",
        database: "",
        client_id: [1, 2, 3, 4, 5, 6],
    })
}

/// The login answer's first interesting token: LOGINACK, or ERROR with number and state.
#[derive(Debug, PartialEq)]
enum Answer {
    Ack,
    Error(u32, u8),
    Nothing,
}

fn login_answer(p: &[u8]) -> Answer {
    let mut at = 0;
    while at < p.len() {
        match p[at] {
            0xfd => at += 13,
            0xad => return Answer::Ack,
            0xaa => {
                let n = u32::from_le_bytes([p[at + 3], p[at + 4], p[at + 5], p[at + 6]]);
                return Answer::Error(n, p[at + 7]);
            }
            _ => at += 3 + usize::from(u16::from_le_bytes([p[at + 1], p[at + 2]])),
        }
    }
    Answer::Nothing
}

/// LOGIN7 over `s`, and its answer read from `answer_on` (login-only: the bare socket) or `s`.
fn login(s: &mut (impl Read + Write), answer_on: Option<&mut TcpStream>) -> Answer {
    write_message(s, wire::TYPE_LOGIN7, &login7(), 4096).unwrap();
    let (ty, body) = match answer_on {
        Some(tcp) => read_message(tcp).unwrap().unwrap(),
        None => read_message(s).unwrap().unwrap(),
    };
    assert_eq!(ty, wire::TYPE_RESPONSE);
    login_answer(&body)
}

fn select_one(s: &mut (impl Read + Write)) -> bool {
    write_message(
        s,
        wire::TYPE_SQL_BATCH,
        &tds::sql_batch_payload("SELECT 1"),
        4096,
    )
    .unwrap();
    let (ty, body) = read_message(s).unwrap().unwrap();
    ty == wire::TYPE_RESPONSE && body.windows(6).any(|w| w == [0xd1, 4, 1, 0, 0, 0])
}

/// PRELOGIN exchange; returns the server's ENCRYPTION answer.
fn exchange_prelogin(tcp: &mut TcpStream, encryption: u8) -> u8 {
    write_message(tcp, wire::TYPE_PRELOGIN, &prelogin(encryption), 4096).unwrap();
    let (ty, body) = read_message(tcp).unwrap().unwrap();
    assert_eq!(ty, wire::TYPE_RESPONSE);
    tds_responder::conn::prelogin_encryption(&body).unwrap()
}

#[test]
fn login_only_off_off_answers_in_clear() {
    let srv = Server::start(Config::default(), 1);
    let mut tcp = srv.connect();
    assert_eq!(exchange_prelogin(&mut tcp, 0), 0);
    let c = Client::default();
    let mut tls = c
        .handshake(ClientWire::new(tcp.try_clone().unwrap(), true, false))
        .unwrap();
    tls.get_mut().wrapping = false;
    // LOGIN7 inside TLS, the answer and the batch in clear text.
    let a = login(&mut tls, Some(&mut tcp));
    assert_eq!(a, Answer::Ack);
    assert!(select_one(&mut tcp));
    drop(tls);
    drop(tcp);
    let log = srv.finish();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].encryption, "login_only");
    assert_eq!(log[0].login, "ack");
    assert_eq!(log[0].batches, 1);
    assert_eq!(log[0].end, "client closed");
    let line = log[0].to_string();
    for secret in ["someone", "not-a-secret", "SELECT"] {
        assert!(!line.contains(secret), "{line}");
    }
}

fn full_run(version: SslVersion, packet_size: usize, raw_after_first: bool) -> ConnLog {
    let srv = Server::start(
        Config {
            encryption: Encryption::On,
            packet_size,
            ..Config::default()
        },
        1,
    );
    let mut tcp = srv.connect();
    assert_eq!(exchange_prelogin(&mut tcp, 0), 1);
    let c = Client {
        min: Some(version),
        max: Some(version),
        ..Client::default()
    };
    let mut tls = c
        .handshake(ClientWire::new(tcp, true, raw_after_first))
        .unwrap();
    let w = tls.get_mut();
    assert!(w.server_packets.iter().all(|&n| n <= packet_size));
    if packet_size <= 512 {
        assert!(w.server_packets.len() >= 3, "{:?}", w.server_packets);
    }
    w.wrapping = false;
    let a = login(&mut tls, None);
    assert_eq!(a, Answer::Ack);
    assert!(select_one(&mut tls));
    drop(tls);
    let mut log = srv.finish();
    log.pop().unwrap()
}

#[test]
fn full_encryption_tls12_split_flights_and_bare_second_flight() {
    let l = full_run(SslVersion::TLS1_2, 512, true);
    assert_eq!(l.encryption, "full");
    assert_eq!(l.tls_version.as_deref(), Some("TLSv1.2"));
    assert!(l.raw_records >= 2, "{l}"); // ClientKeyExchange, ChangeCipherSpec, Finished
    assert_eq!(l.wrapped_packets, 1, "{l}");
    assert_eq!(l.batches, 1);
}

#[test]
fn full_encryption_tls13_wrapped() {
    let l = full_run(SslVersion::TLS1_3, 4096, false);
    assert_eq!(l.encryption, "full");
    assert_eq!(l.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(l.raw_records, 0, "{l}");
    assert!(l.wrapped_packets >= 2, "{l}");
}

#[test]
fn not_sup_logs_in_without_tls() {
    let srv = Server::start(
        Config {
            encryption: Encryption::NotSup,
            ..Config::default()
        },
        1,
    );
    let mut tcp = srv.connect();
    assert_eq!(exchange_prelogin(&mut tcp, 0), 2);
    let a = login(&mut tcp, None);
    assert_eq!(a, Answer::Ack);
    assert!(select_one(&mut tcp));
    drop(tcp);
    let l = srv.finish().pop().unwrap();
    assert_eq!(l.encryption, "none");
    assert_eq!(l.tls_version, None);
}

#[test]
fn strict_tls13_with_alpn() {
    let srv = Server::start(
        Config {
            strict: true,
            tls_min: "1.3".into(),
            ..Config::default()
        },
        1,
    );
    let tcp = srv.connect();
    let c = Client {
        alpn: true,
        ..Client::default()
    };
    let mut tls = c.handshake(tcp).unwrap();
    assert_eq!(tls.ssl().version_str(), "TLSv1.3");
    assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"tds/8.0"[..]));
    write_message(&mut tls, wire::TYPE_PRELOGIN, &prelogin(0), 4096).unwrap();
    let (ty, _) = read_message(&mut tls).unwrap().unwrap();
    assert_eq!(ty, wire::TYPE_RESPONSE);
    let a = login(&mut tls, None);
    assert_eq!(a, Answer::Ack);
    assert!(select_one(&mut tls));
    drop(tls);
    let l = srv.finish().pop().unwrap();
    assert_eq!(l.mode, "tds8_strict");
    assert_eq!(l.encryption, "strict");
    assert_eq!(l.alpn.as_deref(), Some("tds/8.0"));
}

#[test]
fn strict_server_closes_on_prelogin_and_tds7_server_on_client_hello() {
    let srv = Server::start(
        Config {
            strict: true,
            ..Config::default()
        },
        1,
    );
    let mut tcp = srv.connect();
    write_message(&mut tcp, wire::TYPE_PRELOGIN, &prelogin(0), 4096).unwrap();
    assert!(read_message(&mut tcp).unwrap().is_none(), "expected FIN");
    assert!(srv.finish()[0].end.starts_with("strict mismatch"));

    let srv = Server::start(Config::default(), 1);
    let c = Client {
        alpn: true,
        ..Client::default()
    };
    assert!(c.handshake(srv.connect()).is_err());
    assert!(srv.finish()[0].end.starts_with("strict mismatch"));
}

fn failing_handshake(config: Config, client: Client) -> (String, Option<io::ErrorKind>, ConnLog) {
    let srv = Server::start(config, 1);
    let mut tcp = srv.connect();
    exchange_prelogin(&mut tcp, 0);
    let err = match client.handshake(ClientWire::new(tcp, true, false)) {
        Ok(_) => panic!("handshake should fail"),
        Err(HandshakeError::Failure(m)) => m.into_error(),
        Err(e) => panic!("unexpected {e:?}"),
    };
    let kind = err.io_error().map(io::Error::kind);
    let text = format!("{err} {:?}", err.ssl_error());
    (text, kind, srv.finish().pop().unwrap())
}

#[test]
fn tls10_client_against_tls12_only_server_gets_protocol_version_alert() {
    let (text, _, log) = failing_handshake(
        Config {
            encryption: Encryption::On,
            tls_min: "1.2".into(),
            ..Config::default()
        },
        Client {
            min: Some(SslVersion::TLS1),
            max: Some(SslVersion::TLS1),
            ..Client::default()
        },
    );
    assert!(text.contains("protocol version"), "{text}");
    assert!(log.end.starts_with("handshake failed"), "{log}");
    assert!(log.end.contains("unsupported protocol"), "{log}");
    assert_eq!(log.fired, None);
}

#[test]
fn dhe_suite_with_rst_after_client_key_exchange_resets() {
    let (text, kind, log) = failing_handshake(
        Config {
            encryption: Encryption::On,
            tls_max: "1.2".into(),
            ciphers: Some("DHE-RSA-AES128-GCM-SHA256".into()),
            fault: Fault::RstAfterClientKeyExchange,
            ..Config::default()
        },
        Client::default(),
    );
    assert_eq!(kind, Some(io::ErrorKind::ConnectionReset), "{text}");
    assert_eq!(log.fired, Some("rst"));
    assert_eq!(log.tls_version.as_deref(), Some("TLSv1.2"), "{log}");
    // TLS_DHE_RSA_WITH_AES_128_GCM_SHA256 by IANA id: OpenSSL names it only once established.
    assert_eq!(log.suite.as_deref(), Some("0x009e"), "{log}");
}

#[test]
fn fin_faults_close_the_handshake() {
    for fault in [
        Fault::FinAfterClientHello,
        Fault::FinAfterServerHello,
        Fault::FinAfterClientKeyExchange,
    ] {
        let (text, kind, log) = failing_handshake(
            Config {
                encryption: Encryption::On,
                tls_max: "1.2".into(),
                fault,
                ..Config::default()
            },
            Client::default(),
        );
        assert_ne!(
            kind,
            Some(io::ErrorKind::ConnectionReset),
            "{fault}: {text}"
        );
        assert_eq!(log.fired, Some("fin"), "{fault}: {log}");
        // No ServerHello was sent after a bare ClientHello: nothing negotiated to report.
        let negotiated = fault != Fault::FinAfterClientHello;
        assert_eq!(log.suite.is_some(), negotiated, "{fault}: {log}");
    }
}

#[test]
fn login_error_18456_state_1() {
    let srv = Server::start(
        Config {
            encryption: Encryption::NotSup,
            login: LoginResult::Error,
            ..Config::default()
        },
        1,
    );
    let mut tcp = srv.connect();
    exchange_prelogin(&mut tcp, 0);
    let a = login(&mut tcp, None);
    assert_eq!(a, Answer::Error(18456, 1));
    drop(tcp);
    assert_eq!(srv.finish()[0].login, "error_18456");
}

#[test]
fn rst_after_login7_and_idle_close_first() {
    let srv = Server::start(
        Config {
            encryption: Encryption::NotSup,
            fault: Fault::RstAfterLogin7,
            ..Config::default()
        },
        1,
    );
    let mut tcp = srv.connect();
    exchange_prelogin(&mut tcp, 0);
    write_message(&mut tcp, wire::TYPE_LOGIN7, &login7(), 4096).unwrap();
    let e = read_message(&mut tcp).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    srv.finish();

    let srv = Server::start(
        Config {
            encryption: Encryption::NotSup,
            fault: Fault::IdleCloseFirst(200),
            ..Config::default()
        },
        1,
    );
    let mut tcp = srv.connect();
    exchange_prelogin(&mut tcp, 0);
    let a = login(&mut tcp, None);
    assert_eq!(a, Answer::Ack);
    let t = std::time::Instant::now();
    assert!(
        read_message(&mut tcp).unwrap().is_none(),
        "expected the server's FIN"
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
    drop(tcp);
    assert_eq!(srv.finish()[0].fired, Some("fin"));
}

#[test]
fn dhe_reset_fraction_resets_about_that_share_of_dhe_handshakes_only() {
    let n = 40;
    let run = |ciphers: &'static str| {
        let srv = Server::start(
            Config {
                encryption: Encryption::On,
                tls_max: "1.2".into(),
                ciphers: Some(ciphers.into()),
                fault: Fault::DheResetFraction(0.5),
                seed: 7,
                ..Config::default()
            },
            n,
        );
        let mut resets = 0;
        for _ in 0..n {
            let mut tcp = srv.connect();
            exchange_prelogin(&mut tcp, 0);
            match Client::default().handshake(ClientWire::new(tcp, true, false)) {
                Ok(mut tls) => {
                    tls.get_mut().wrapping = false;
                    assert_eq!(login(&mut tls, None), Answer::Ack);
                }
                Err(HandshakeError::Failure(m)) => {
                    let e = m.into_error();
                    assert_eq!(
                        e.io_error().map(io::Error::kind),
                        Some(io::ErrorKind::ConnectionReset)
                    );
                    resets += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        let logs = srv.finish();
        assert_eq!(
            logs.iter().filter(|l| l.fired == Some("rst")).count(),
            resets
        );
        resets
    };
    let dhe = run("DHE-RSA-AES256-GCM-SHA384");
    // Binomial(40, 0.5): 8..=32 holds with probability > 0.9999.
    assert!((8..=32).contains(&dhe), "{dhe} of {n}");
    assert_eq!(run("ECDHE-RSA-AES256-GCM-SHA384"), 0);
}

#[test]
fn hostile_input_ends_each_connection_with_a_log_line() {
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        vec![0x12, 0x01, 0x00, 0x04, 0, 0, 0, 0], // length below the header
        vec![0x12, 0x00, 0xff, 0xff, 0, 0, 1, 0, 1, 2], // truncated, never ends
        vec![0x10, 0x01, 0x00, 0x0a, 0, 0, 1, 0, 1, 2], // a 2-byte LOGIN7
        vec![0x12, 0x01, 0x00, 0x0d, 0, 0, 1, 0, 0x01, 0xff, 0xff, 0, 9], // option out of bounds
    ];
    // PRELOGIN asking for TLS, then a wrapped unit claiming a 64 KiB record and then garbage.
    let mut tls = Vec::new();
    write_message(&mut tls, wire::TYPE_PRELOGIN, &prelogin(1), 4096).unwrap();
    let mut junk = tls.clone();
    junk.extend_from_slice(&[0x16, 3, 1, 0xff, 0xff, 1, 2, 3]);
    inputs.push(junk);
    let mut junk = tls.clone();
    write_message(
        &mut junk,
        wire::TYPE_PRELOGIN,
        &[0x16, 3, 1, 0, 4, 1, 0, 0, 0],
        4096,
    )
    .unwrap();
    inputs.push(junk);
    let mut junk = tls;
    junk.extend((0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    inputs.push(junk);

    let srv = Server::start(
        Config {
            encryption: Encryption::On,
            io_timeout_ms: 500,
            ..Config::default()
        },
        inputs.len() as u64,
    );
    for input in &inputs {
        let mut tcp = srv.connect();
        let _ = tcp.write_all(input);
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
    }
    let logs = srv.finish();
    assert_eq!(
        logs.len(),
        inputs.len(),
        "a connection thread ended without its log line"
    );
    for l in &logs {
        assert_eq!(l.login, "-", "{l}");
    }
}
