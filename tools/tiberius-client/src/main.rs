//! One tiberius (Rust TDS driver, native-tls = the system OpenSSL) login against the test
//! responder, for `tests/e2e/prometheus.sh`.
//!
//! Usage: `tiberius-client HOST PORT MODE EXPECT [CA_FILE]`
//!
//! - MODE: `none` (PRELOGIN ENCRYPT_NOT_SUP, no TLS), `login_only` (ENCRYPT_OFF: TLS for LOGIN7
//!   only), `full` (ENCRYPT_REQ: TLS throughout).
//! - EXPECT: `ok` (the login succeeds and `SELECT 1` returns 1) or `fail`.
//! - CA_FILE (`.pem`): the server certificate is validated against this CA (and the host);
//!   without it, the certificate is trusted as it is.
//!
//! Prints `MODE: ok` or `MODE: fail (<error class>)` and exits 0 when that is what was expected,
//! 1 when not, 2 on a usage error. Never prints the credentials, the SQL text or the server's
//! messages (only an error class and, for a server error, its number).

use std::process::ExitCode;
use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

const USAGE: &str = "usage: tiberius-client HOST PORT none|login_only|full ok|fail [CA_FILE]";

/// The whole attempt (connect, TLS, login, query) is bounded.
const DEADLINE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (host, port, mode, expect, ca) = match args.as_slice() {
        [h, p, m, e] => (h, p, m, e, None),
        [h, p, m, e, ca] => (h, p, m, e, Some(ca.clone())),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("bad port {port:?}\n{USAGE}");
        return ExitCode::from(2);
    };
    let encryption = match mode.as_str() {
        "none" => EncryptionLevel::NotSupported,
        "login_only" => EncryptionLevel::Off,
        "full" => EncryptionLevel::Required,
        _ => {
            eprintln!("unknown mode {mode:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if expect != "ok" && expect != "fail" {
        eprintln!("unknown expectation {expect:?}\n{USAGE}");
        return ExitCode::from(2);
    }

    let mut config = Config::new();
    config.host(host);
    config.port(port);
    config.application_name("tdswatch-e2e");
    config.authentication(AuthMethod::sql_server("e2e_user", "e2e-not-a-secret"));
    config.encryption(encryption);
    match ca {
        Some(ca) => config.trust_cert_ca(ca),
        None => config.trust_cert(),
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // The timer must be made inside the runtime.
    let attempt = async { tokio::time::timeout(DEADLINE, login(config)).await };
    let got = match runtime.block_on(attempt) {
        Ok(Ok(1)) => "ok".to_string(),
        Ok(Ok(v)) => format!("unexpected value {v}"),
        Ok(Err(class)) => format!("fail ({class})"),
        Err(_) => "fail (timeout)".to_string(),
    };
    println!("{mode}: {got}");
    let matched = if expect == "ok" {
        got == "ok"
    } else {
        got.starts_with("fail")
    };
    if matched {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Connects, logs in, runs `SELECT 1` and returns its value; errors are reduced to a class.
async fn login(config: Config) -> Result<i32, String> {
    let tcp = TcpStream::connect(config.get_addr())
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("nodelay: {:?}", e.kind()))?;
    let mut client = Client::connect(config, tcp.compat_write())
        .await
        .map_err(|e| class(&e))?;
    let row = client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| class(&e))?
        .into_row()
        .await
        .map_err(|e| class(&e))?;
    let value = row
        .and_then(|r| r.get::<i32, _>(0))
        .ok_or_else(|| "no row".to_string())?;
    // A clean close: the client's FIN first, as a real application does.
    client.close().await.map_err(|e| class(&e))?;
    Ok(value)
}

/// The error's class, never its text (a server message may name the user).
fn class(e: &tiberius::error::Error) -> String {
    use tiberius::error::Error;
    match e {
        Error::Io { kind, .. } => format!("io {kind:?}"),
        Error::Server(token) => format!("server error {}", token.code()),
        Error::Tls(_) => "tls".to_string(),
        Error::Protocol(_) => "protocol".to_string(),
        Error::Routing { .. } => "routing".to_string(),
        _ => "other".to_string(),
    }
}
