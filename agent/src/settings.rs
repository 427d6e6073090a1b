//! The live agent's runtime configuration, beside the pipeline: the YAML file (`--config.file`), the
//! Prometheus-exporter-style flags laid over it, and the checks that turn a mistyped key or a bad value
//! into one error naming the key with its line and column. Owns [`Settings`] and its parts, the parsers
//! for durations (`120s`, `1h30m`) and sizes (`256MiB`), and the mapping onto the pipeline's
//! [`Config`](crate::config::Config). Every default lives here, the pipeline's limits excepted: those
//! come from [`Limits::default`](crate::config::Limits).
//!
//! Nothing here opens sockets or captures: the `run` command reads [`RunFlags::settings`] and does.

use crate::config::{Config, Limits};
use clap::{Args, ValueEnum};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The metrics port when none is configured. The Prometheus wiki's exporter range 9100–9999 is
/// full, so every port in it is someone's; 9433 echoes SQL Server's 1433 so that it is easy to
/// remember next to the database it watches.
pub const DEFAULT_LISTEN_PORT: u16 = 9433;

/// A configuration file larger than this is refused unread (a real one is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Everything the live agent can be told. Every key has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    #[serde(deserialize_with = "null_is_default")]
    pub web: Web,
    #[serde(deserialize_with = "null_is_default")]
    pub log: Log,
    #[serde(deserialize_with = "null_is_default")]
    pub capture: Capture,
    #[serde(deserialize_with = "null_is_default")]
    pub limits: LimitSettings,
    #[serde(deserialize_with = "null_is_default")]
    pub metrics: Metrics,
    #[serde(deserialize_with = "null_is_default")]
    pub event_log: EventLog,
}

/// A section left empty (`web:` with every key commented out) holds the defaults.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// At least one port: with none, nothing would be watched.
fn non_empty_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    let ports = Vec::<Port>::deserialize(d)?;
    if ports.is_empty() {
        return Err(de::Error::custom(
            "at least one port is needed (SQL Server's default is 1433)",
        ));
    }
    Ok(ports)
}

/// Where the metrics are served.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// `IP:PORT`; `:PORT` means every IPv4 address.
    pub listen_address: ListenAddress,
    /// The path of the metrics page.
    pub telemetry_path: TelemetryPath,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen_address: ListenAddress(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                DEFAULT_LISTEN_PORT,
            )),
            telemetry_path: TelemetryPath("/metrics".into()),
        }
    }
}

/// The agent's own log on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// Least severity written to the agent's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// How the agent's log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` pairs, as Prometheus and its exporters write them.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Logfmt => "logfmt",
            LogFormat::Json => "json",
        })
    }
}

/// What is captured, and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capture {
    /// Interfaces to capture on; empty means every interface that is up (and those that come up).
    pub interfaces: Vec<Interface>,
    /// TCP ports SQL Server listens on (at least one).
    #[serde(deserialize_with = "non_empty_ports")]
    pub ports: Vec<Port>,
    /// Kernel ring buffer per interface.
    pub buffer_bytes: ByteSize,
    /// Bytes kept of each packet.
    pub snaplen: Snaplen,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            interfaces: Vec::new(),
            ports: vec![Port(1433)],
            // Room for about a second of handshake bursts at 2 000 handshakes/s with full packets.
            buffer_bytes: ByteSize(64 * MIB),
            // tcpdump's default: with GRO/TSO, loopback and veth packets reach 64 KiB and more, and
            // a cut packet would leave a hole in the handshake.
            snaplen: Snaplen(262_144),
        }
    }
}

/// The pipeline's limits ([`Limits`]) in human units.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    pub max_connections: Count,
    pub max_ooo_bytes_per_direction: ByteSize,
    pub max_ooo_segments_per_direction: Count,
    pub max_buffered_bytes_total: ByteSize,
    pub max_tds_message: ByteSize,
    pub max_tls_handshake_message: ByteSize,
    pub handshake_idle_timeout: HumanDuration,
    pub established_idle_timeout: HumanDuration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let l = Limits::default();
        LimitSettings {
            max_connections: Count(l.max_connections as u64),
            max_ooo_bytes_per_direction: ByteSize(l.max_ooo_bytes_per_direction as u64),
            max_ooo_segments_per_direction: Count(l.max_ooo_segments_per_direction as u64),
            max_buffered_bytes_total: ByteSize(l.max_buffered_bytes_total as u64),
            max_tds_message: ByteSize(l.max_tds_message as u64),
            max_tls_handshake_message: ByteSize(l.max_tls_handshake_message as u64),
            handshake_idle_timeout: HumanDuration(l.handshake_idle_timeout_ns),
            established_idle_timeout: HumanDuration(l.established_idle_timeout_ns),
        }
    }
}

impl LimitSettings {
    /// The pipeline's limits. Values were checked to fit `usize` when parsed; a value that could
    /// not (only on a 32-bit host) saturates, which is as good as unlimited there.
    pub fn to_limits(&self) -> Limits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Limits {
            max_connections: size(self.max_connections.0),
            max_ooo_bytes_per_direction: size(self.max_ooo_bytes_per_direction.0),
            max_ooo_segments_per_direction: size(self.max_ooo_segments_per_direction.0),
            max_buffered_bytes_total: size(self.max_buffered_bytes_total.0),
            max_tds_message: size(self.max_tds_message.0),
            max_tls_handshake_message: size(self.max_tls_handshake_message.0),
            handshake_idle_timeout_ns: self.handshake_idle_timeout.0,
            established_idle_timeout_ns: self.established_idle_timeout.0,
        }
    }
}

/// Bounds on the metrics' label sets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Distinct `server` label values; connections to further servers count as `server="other"`.
    pub max_servers: Count,
    /// Client networks that get their own `client` label; empty (the default) means no client label.
    pub client_subnets: Vec<Cidr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            max_servers: Count(64),
            client_subnets: Vec::new(),
        }
    }
}

/// The event log: one JSON line per failed or abnormal connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventLog {
    /// Where the lines go; `None` (YAML `null`, the default) turns the event log off.
    pub path: Option<EventLogTarget>,
    /// Also log connections that went well.
    pub all_connections: bool,
}

/// Where event log lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventLogTarget {
    /// `-`: standard error.
    Stderr,
    File(PathBuf),
}

impl Settings {
    /// Parses a YAML document. Unknown keys, duplicate keys and bad values are errors that carry
    /// the line, the column and the key.
    pub fn from_yaml(text: &str) -> Result<Settings, SettingsError> {
        serde_saphyr::from_str::<Settings>(text).map_err(|e| SettingsError::from_yaml(text, &e))
    }

    /// Reads and parses a configuration file; errors name the file.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = read_bounded(path).map_err(|message| SettingsError {
            file: Some(path.to_path_buf()),
            line: None,
            column: None,
            key: None,
            message,
        })?;
        Settings::from_yaml(&text).map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })
    }

    /// What the pipeline needs: the ports (each once, in the order given) and the limits.
    pub fn pipeline_config(&self) -> Config {
        let mut seen = vec![false; usize::from(u16::MAX) + 1];
        let mut ports = Vec::with_capacity(self.capture.ports.len());
        for p in &self.capture.ports {
            if let Some(s) = seen.get_mut(usize::from(p.0)) {
                if !*s {
                    *s = true;
                    ports.push(p.0);
                }
            }
        }
        Config {
            ports,
            limits: self.limits.to_limits(),
        }
    }

    /// The effective settings on one line, for `check-config` and the agent's start-up log.
    pub fn summary(&self) -> String {
        let list = |items: Vec<String>| items.join(",");
        let interfaces = if self.capture.interfaces.is_empty() {
            "all up".to_string()
        } else {
            list(
                self.capture
                    .interfaces
                    .iter()
                    .map(|i| i.0.clone())
                    .collect(),
            )
        };
        let subnets = if self.metrics.client_subnets.is_empty() {
            "off".to_string()
        } else {
            list(
                self.metrics
                    .client_subnets
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            )
        };
        let event_log = match &self.event_log.path {
            None => "off".to_string(),
            Some(target) => format!(
                "{} ({})",
                target,
                if self.event_log.all_connections {
                    "all connections"
                } else {
                    "failed and abnormal"
                }
            ),
        };
        let l = &self.limits;
        format!(
            "web {}{}; log {} {}; capture on {} interfaces, ports {}, buffer {}, snaplen {}; \
             limits {} connections, {} buffered, {}/{} out of order per direction, messages {} TDS \
             {} TLS, idle {} handshake {} established; metrics {} servers, client subnets {}; \
             event log {}",
            self.web.listen_address,
            self.web.telemetry_path.0,
            self.log.level,
            self.log.format,
            interfaces,
            list(
                self.pipeline_config()
                    .ports
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            ),
            self.capture.buffer_bytes,
            self.capture.snaplen.0,
            l.max_connections.0,
            l.max_buffered_bytes_total,
            l.max_ooo_bytes_per_direction,
            l.max_ooo_segments_per_direction.0,
            l.max_tds_message,
            l.max_tls_handshake_message,
            l.handshake_idle_timeout,
            l.established_idle_timeout,
            self.metrics.max_servers.0,
            subnets,
            event_log,
        )
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {}: not a configuration file",
            ByteSize(MAX_FILE_BYTES)
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A configuration that cannot be used: where (file, line, column, key) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub file: Option<PathBuf>,
    /// 1-based, when the mistake is inside the document.
    pub line: Option<u64>,
    /// 1-based, counted in characters.
    pub column: Option<u64>,
    /// The dotted key the mistake is under (`limits.handshake_idle_timeout`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line, self.column) {
            (Some(file), Some(l), Some(c)) => write!(f, "{}:{l}:{c}: ", file.display())?,
            (Some(file), _, _) => write!(f, "{}: ", file.display())?,
            (None, Some(l), Some(c)) => write!(f, "line {l} column {c}: ")?,
            (None, _, _) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SettingsError {}

impl SettingsError {
    fn from_yaml(text: &str, e: &serde_saphyr::Error) -> SettingsError {
        let location = e.location();
        let (line, column) = match location {
            Some(l) if l.line() > 0 => (Some(l.line()), Some(l.column())),
            _ => (None, None),
        };
        let key = match (line, column) {
            (Some(l), Some(c)) => key_path(text, l, c),
            _ => None,
        };
        SettingsError {
            file: None,
            line,
            column,
            key,
            message: bare_message(&e.without_snippet().to_string()),
        }
    }
}

/// The parser's message without its `error: line L column C: ` prefix and without any snippet.
fn bare_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("").trim();
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    let rest = match rest.strip_prefix("line ") {
        Some(after) => match after.split_once(": ") {
            Some((loc, msg)) if loc.contains(" column ") => msg,
            _ => rest,
        },
        None => rest,
    };
    // The position is given apart; drop the copy the parser appends.
    let rest = match rest.rsplit_once(" at line ") {
        Some((msg, loc)) if loc.contains(", column ") => msg,
        _ => rest,
    };
    if rest.is_empty() {
        "invalid YAML".to_string()
    } else {
        rest.to_string()
    }
}

/// The key on a line of block YAML: its indentation and name (`  - ports: [1]` gives (4, "ports")).
fn key_on(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    let mut indent = line.len() - trimmed.len();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mut rest = trimmed;
    while let Some(r) = rest.strip_prefix("- ") {
        let r2 = r.trim_start_matches(' ');
        indent += rest.len() - r2.len();
        rest = r2;
    }
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let after = &rest[end..];
    if after == ":"
        || after.starts_with(": ")
        || after.starts_with(":\t")
        || after.starts_with(":#")
    {
        Some((indent, &rest[..end]))
    } else {
        None
    }
}

/// The dotted path of the key an error at (`line`, `column`) belongs to, read from the document's
/// indentation. Configuration files are block YAML; for anything else the answer may be `None`.
fn key_path(text: &str, line: u64, column: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = usize::try_from(line).ok()?.checked_sub(1)?;
    let here = lines.get(at)?;
    let col = usize::try_from(column).ok()?.saturating_sub(1);
    // The leaf: the key on the error's line if it starts at or before the error, else (a list item
    // or a continued value) the nearest key above that is not indented deeper than the line.
    let (mut indent, mut idx, leaf) = match key_on(here) {
        Some((i, k)) if here.chars().take_while(|c| *c == ' ' || *c == '-').count() <= col => {
            (i, at, k)
        }
        _ => {
            let own = here.len() - here.trim_start_matches(' ').len();
            let (i, k, j) = (0..at).rev().find_map(|j| {
                let (i, k) = key_on(lines.get(j)?)?;
                (i <= own).then_some((i, k, j))
            })?;
            (i, j, k)
        }
    };
    let mut path = vec![leaf];
    while indent > 0 {
        let (i, k, j) = (0..idx).rev().find_map(|j| {
            let (i, k) = key_on(lines.get(j)?)?;
            (i < indent).then_some((i, k, j))
        })?;
        path.push(k);
        indent = i;
        idx = j;
    }
    path.reverse();
    Some(path.join("."))
}

// ---------------------------------------------------------------------------------------------
// Values

/// A scalar as YAML gave it, before a value type checks it.
enum Raw {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
}

impl Raw {
    fn describe(&self) -> String {
        match self {
            Raw::Int(n) => format!("the number {n}"),
            Raw::Float(x) => format!("the number {x}"),
            Raw::Str(s) => format!("{s:?}"),
            Raw::Bool(b) => format!("{b}"),
            Raw::Null => "nothing (null)".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
                Ok(Raw::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
        }
        d.deserialize_any(V)
    }
}

/// Implements `Deserialize` through `Raw` and the type's `from_raw`, so the parser's error carries
/// the position of the value.
macro_rules! from_raw {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = Raw::deserialize(d)?;
                <$t>::from_raw(raw).map_err(de::Error::custom)
            }
        }
    };
}

/// A whole number of at least 1 (a count of connections, segments, servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64);

impl Count {
    fn from_raw(raw: Raw) -> Result<Count, String> {
        match raw {
            Raw::Int(n) if n >= 1 && n <= i128::from(usize::MAX as u64) => Ok(Count(n as u64)),
            Raw::Int(n) if n < 1 => Err(format!("must be at least 1, got {n}")),
            other => Err(format!(
                "expected a whole number of at least 1, got {}",
                other.describe()
            )),
        }
    }
}
from_raw!(Count);

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl Port {
    fn from_raw(raw: Raw) -> Result<Port, String> {
        match raw {
            Raw::Int(n) => match u16::try_from(n) {
                Ok(p) if p > 0 => Ok(Port(p)),
                _ => Err(format!("a TCP port is 1 to 65535, got {n}")),
            },
            other => Err(format!(
                "expected a TCP port (1 to 65535), got {}",
                other.describe()
            )),
        }
    }
}
from_raw!(Port);

/// Bytes kept of each captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snaplen(pub u32);

impl Snaplen {
    /// Less than a full Ethernet frame would cut handshake packets.
    pub const MIN: u32 = 1514;
    /// libpcap's own ceiling.
    pub const MAX: u32 = 262_144;

    fn from_raw(raw: Raw) -> Result<Snaplen, String> {
        let n = match raw {
            Raw::Int(n) => n,
            Raw::Str(s) => i128::from(parse_size(&s)?),
            other => {
                return Err(format!(
                    "expected a size in bytes, got {}",
                    other.describe()
                ))
            }
        };
        match u32::try_from(n) {
            Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(Snaplen(v)),
            _ => Err(format!(
                "must be {} to {} bytes (a cut packet leaves a hole in the handshake), got {n}",
                Self::MIN,
                Self::MAX
            )),
        }
    }
}
from_raw!(Snaplen);

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// A size in bytes, written as a number of bytes or with a unit: `256KiB`, `64MiB`, `1GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    fn from_raw(raw: Raw) -> Result<ByteSize, String> {
        let n = match raw {
            Raw::Int(n) if n < 0 => return Err(format!("a size cannot be negative, got {n}")),
            Raw::Int(n) => u64::try_from(n).map_err(|_| format!("size {n} is too large"))?,
            Raw::Str(s) => parse_size(&s)?,
            other => {
                return Err(format!(
                    "expected a size such as 64MiB, got {}",
                    other.describe()
                ))
            }
        };
        if n == 0 {
            return Err("a size must be at least 1 byte, got 0".into());
        }
        if usize::try_from(n).is_err() {
            return Err(format!("size {n} is too large for this machine"));
        }
        Ok(ByteSize(n))
    }
}
from_raw!(ByteSize);

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly: `256MiB`, `1536KiB`, `100B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n >= unit && n % unit == 0 {
                return write!(f, "{}{name}", n / unit);
            }
        }
        write!(f, "{n}B")
    }
}

/// Parses a size: a whole number of bytes, optionally followed (with or without a space) by a
/// unit: `B`, binary `KiB MiB GiB TiB` (also `K M G T`), or decimal `kB KB MB GB TB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("expected a size such as 64MiB, got nothing".into());
    }
    if t.starts_with('-') {
        return Err(format!("a size cannot be negative, got {t:?}"));
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "{t:?} is not a size: expected a whole number then a unit, such as 64MiB"
        ));
    }
    let unit = unit.trim_start();
    let multiplier = match unit {
        "" | "B" => 1,
        "K" | "KiB" => KIB,
        "M" | "MiB" => MIB,
        "G" | "GiB" => GIB,
        "T" | "TiB" => TIB,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u if u.starts_with('.') => {
            return Err(format!(
                "{t:?} is not a size: use a whole number of a smaller unit (1536MiB, not 1.5GiB)"
            ))
        }
        u => {
            return Err(format!(
            "{t:?} is not a size: unknown unit {u:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
        ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size {t:?} is too large"))
}

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;
const NS_PER_M: u64 = 60 * NS_PER_S;
const NS_PER_H: u64 = 60 * NS_PER_M;
const NS_PER_D: u64 = 24 * NS_PER_H;

/// A length of time in nanoseconds, written as Prometheus writes durations: `120s`, `2h`, `1h30m`,
/// `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub u64);

impl HumanDuration {
    fn from_raw(raw: Raw) -> Result<HumanDuration, String> {
        match raw {
            Raw::Str(s) => parse_duration(&s).map(HumanDuration),
            Raw::Int(n) => Err(format!(
                "{n} has no unit: write it as {n}s, {n}m, {n}h or {n}ms"
            )),
            other => Err(format!(
                "expected a duration such as 120s or 1h30m, got {}",
                other.describe()
            )),
        }
    }
}
from_raw!(HumanDuration);

impl fmt::Display for HumanDuration {
    /// The shortest exact form: `2h`, `1h30m`, `2m`, `1s500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = self.0;
        if n == 0 {
            return f.write_str("0s");
        }
        for (unit, name) in [
            (NS_PER_D, "d"),
            (NS_PER_H, "h"),
            (NS_PER_M, "m"),
            (NS_PER_S, "s"),
            (NS_PER_MS, "ms"),
        ] {
            if n >= unit {
                write!(f, "{}{name}", n / unit)?;
                n %= unit;
            }
        }
        if n > 0 {
            write!(f, "{n}ns")?;
        }
        Ok(())
    }
}

/// Parses a duration: one or more whole numbers each followed by a unit, largest first: `d`, `h`,
/// `m`, `s`, `ms` (`1h30m`, `90s`, `250ms`). The result is in nanoseconds and at least 1 ms.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("expected a duration such as 120s, got nothing".into());
    }
    if t.starts_with('-') {
        return Err(format!("a duration cannot be negative, got {t:?}"));
    }
    let mut rest = t;
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(format!(
                "{t:?} is not a duration: expected a number at {rest:?} (write 120s or 1h30m)"
            ));
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let ns = match unit {
            "d" => NS_PER_D,
            "h" => NS_PER_H,
            "m" => NS_PER_M,
            "s" => NS_PER_S,
            "ms" => NS_PER_MS,
            "" => {
                return Err(format!(
                    "{t:?} is not a duration: {digits} has no unit (use ms, s, m, h or d)"
                ))
            }
            u => {
                return Err(format!(
                    "{t:?} is not a duration: unknown unit {:?} (use ms, s, m, h or d)",
                    u.trim()
                ))
            }
        };
        if ns >= last_unit {
            return Err(format!(
                "{t:?} is not a duration: units must go from the largest to the smallest, each once"
            ));
        }
        last_unit = ns;
        let part = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(ns))
            .ok_or_else(|| format!("duration {t:?} is too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("duration {t:?} is too long"))?;
        rest = next;
    }
    if total < NS_PER_MS {
        return Err(format!("a duration must be at least 1ms, got {t:?}"));
    }
    Ok(total)
}

/// The address the metrics are served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddress(pub SocketAddr);

impl FromStr for ListenAddress {
    type Err = String;
    /// `IP:PORT` or `[IPv6]:PORT`; `:PORT` (the Go exporters' form) means every IPv4 address.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let addr = match t.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => t.to_string(),
        };
        let addr: SocketAddr = addr.parse().map_err(|_| {
            format!("{t:?} is not a listen address: write IP:PORT, such as 0.0.0.0:9433, [::]:9433 or :9433")
        })?;
        if addr.port() == 0 {
            return Err(format!(
                "{t:?}: the port must be 1 to 65535 (Prometheus needs to know it)"
            ));
        }
        Ok(ListenAddress(addr))
    }
}

impl ListenAddress {
    fn from_raw(raw: Raw) -> Result<ListenAddress, String> {
        match raw {
            Raw::Str(s) => s.parse(),
            other => Err(format!(
                "expected IP:PORT, such as 0.0.0.0:9433, got {}",
                other.describe()
            )),
        }
    }
}
from_raw!(ListenAddress);

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The HTTP path of the metrics page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryPath(pub String);

impl FromStr for TelemetryPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?}: the path must start with /"));
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(format!(
                "{s:?}: the path must not hold spaces, control characters, ? or #"
            ));
        }
        if s == "/" || s.starts_with("/-/") {
            return Err(format!(
                "{s:?} is taken: / is the index page and /-/ holds /-/healthy and /-/ready"
            ));
        }
        Ok(TelemetryPath(s.to_string()))
    }
}

impl TelemetryPath {
    fn from_raw(raw: Raw) -> Result<TelemetryPath, String> {
        match raw {
            Raw::Str(s) => s.parse(),
            other => Err(format!(
                "expected a path such as /metrics, got {}",
                other.describe()
            )),
        }
    }
}
from_raw!(TelemetryPath);

/// A network interface name as the kernel spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface(pub String);

impl Interface {
    fn from_raw(raw: Raw) -> Result<Interface, String> {
        let s = match raw {
            Raw::Str(s) => s,
            other => {
                return Err(format!(
                    "expected an interface name such as eth0, got {}",
                    other.describe()
                ))
            }
        };
        // IFNAMSIZ is 16 with the terminating NUL; the kernel refuses '/', ':' is an alias.
        if s.is_empty()
            || s.len() > 15
            || s == "."
            || s == ".."
            || s.chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{s:?} is not an interface name (1 to 15 characters, no '/' or spaces)"
            ));
        }
        Ok(Interface(s))
    }
}
from_raw!(Interface);

/// An IP network: `10.1.0.0/16`, `fd00::/8`. Host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// True when `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }

    fn from_raw(raw: Raw) -> Result<Cidr, String> {
        match raw {
            Raw::Str(s) => s.parse(),
            other => Err(format!(
                "expected a network such as 10.0.0.0/8, got {}",
                other.describe()
            )),
        }
    }
}
from_raw!(Cidr);

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || format!("{t:?} is not a network: write ADDRESS/PREFIX, such as 10.0.0.0/8");
        let (addr, prefix) = t.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => return Err(format!("{t:?}: the prefix length must be 0 to {max}")),
        };
        let network = Cidr { addr, prefix };
        let masked = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        if masked != addr {
            return Err(format!(
                "{t:?} has host bits set: did you mean {masked}/{prefix}?"
            ));
        }
        Ok(network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl EventLogTarget {
    fn from_raw(raw: Raw) -> Result<EventLogTarget, String> {
        match raw {
            Raw::Str(s) if s == "-" => Ok(EventLogTarget::Stderr),
            Raw::Str(s) if !s.trim().is_empty() => Ok(EventLogTarget::File(PathBuf::from(s))),
            other => Err(format!(
                "expected a file path, \"-\" for standard error, or null for no event log; got {}",
                other.describe()
            )),
        }
    }
}
from_raw!(EventLogTarget);

impl fmt::Display for EventLogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventLogTarget::Stderr => f.write_str("stderr"),
            EventLogTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Flags

/// The live agent's flags, Prometheus-exporter style. Each one given wins over the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct RunFlags {
    /// Read the settings from this YAML file (see deploy/tdswatch.example.yaml); without it, the
    /// defaults.
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Address to serve the metrics on, IP:PORT or :PORT [file: web.listen_address; default
    /// 0.0.0.0:9433].
    #[arg(long = "web.listen-address", value_name = "ADDRESS", value_parser = ListenAddress::from_str)]
    pub web_listen_address: Option<ListenAddress>,

    /// Path of the metrics page [file: web.telemetry_path; default /metrics].
    #[arg(long = "web.telemetry-path", value_name = "PATH", value_parser = TelemetryPath::from_str)]
    pub web_telemetry_path: Option<TelemetryPath>,

    /// Least severity logged [file: log.level; default info].
    #[arg(long = "log.level", value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,

    /// Log line format [file: log.format; default logfmt].
    #[arg(long = "log.format", value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

impl RunFlags {
    /// The effective settings: the file's (or the defaults), with the flags given laid over them.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut settings = match &self.config_file {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        self.apply(&mut settings);
        Ok(settings)
    }

    /// Lays the flags that were given over `settings`.
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(a) = self.web_listen_address {
            settings.web.listen_address = a;
        }
        if let Some(p) = &self.web_telemetry_path {
            settings.web.telemetry_path = p.clone();
        }
        if let Some(l) = self.log_level {
            settings.log.level = l;
        }
        if let Some(f) = self.log_format {
            settings.log.format = f;
        }
    }
}

#[cfg(test)]
mod tests;
