//! The live agent: runtime beside the pipeline. A capture thread feeds live frames through the same
//! [`Pipeline`] `analyze` uses and hands every verdict to the metrics and the event log; a small
//! tokio HTTP server serves `/metrics`, `/-/healthy` and `/-/ready`; SIGTERM or SIGINT stops the
//! capture, flushes the open connections' verdicts and exits 0. Knows no protocol bytes.

use crate::capture::live::{LiveConfig, LiveSource, Next, StatsHandle};
use crate::capture::{CaptureError, Timestamp};
use crate::output::json;
use crate::output::metrics::{Metrics, MetricsConfig};
use crate::output::RunSummary;
use crate::pipeline::Pipeline;
use crate::settings::{EventLogTarget, LogFormat, LogLevel, Settings};
use crate::verdict::{Outcome, Verdict};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often, at most, idle connections are expired and counters published on a quiet host.
const TICK: Duration = Duration::from_secs(1);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Capture(#[from] CaptureError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("event log {path}: {source}")]
    EventLog {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(std::io::Error),
}

/// What the HTTP side shares with the capture side.
struct State {
    metrics: Metrics,
    /// The capture thread ended on its own (an error): the server stops too.
    capture_ended: tokio::sync::Notify,
    /// Capture is open and the first counters are published.
    ready: AtomicBool,
    stats: StatsHandle,
    telemetry_path: String,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(settings: &Settings) -> Result<(), AgentError> {
    init_logging(settings.log.level, settings.log.format);
    let config = settings.pipeline_config();
    let live = LiveConfig {
        interfaces: (!settings.capture.interfaces.is_empty()).then(|| {
            settings
                .capture
                .interfaces
                .iter()
                .map(|i| i.0.clone())
                .collect()
        }),
        ports: config.ports.clone(),
        buffer_bytes: usize::try_from(settings.capture.buffer_bytes.0).unwrap_or(usize::MAX),
        snaplen: i32::try_from(settings.capture.snaplen.0).unwrap_or(i32::MAX),
    };
    let mut source = LiveSource::open(&live)?;
    let events = open_event_log(settings)?;
    let state = Arc::new(State {
        metrics: Metrics::new(&MetricsConfig {
            max_servers: usize::try_from(settings.metrics.max_servers.0).unwrap_or(usize::MAX),
        }),
        capture_ended: tokio::sync::Notify::new(),
        ready: AtomicBool::new(false),
        stats: source.stats_handle(),
        telemetry_path: settings.web.telemetry_path.0.clone(),
    });
    let stop = source.stop_handle();
    let addr = settings.web.listen_address.0;
    tracing::info!(
        listen = %addr,
        path = %state.telemetry_path,
        ports = ?config.ports,
        interfaces = %live.interfaces.as_ref().map_or("all up".to_string(), |i| i.join(",")),
        "tdswatch started"
    );

    let capture = {
        let state = Arc::clone(&state);
        let all = settings.event_log.all_connections;
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                capture_loop(
                    &mut source,
                    Pipeline::with_open_counts(&config),
                    &state,
                    events,
                    all,
                )
            })
            .map_err(AgentError::Runtime)?
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    let served = runtime.block_on(serve(addr, Arc::clone(&state)));
    // Whatever ended the server (a signal, an error, the capture failing), the capture stops and
    // flushes.
    stop.stop();
    let captured = match capture.join() {
        Ok(result) => result,
        Err(_) => {
            tracing::error!("the capture thread panicked");
            Ok(())
        }
    };
    tracing::info!("tdswatch stopped");
    served.and(captured.map_err(AgentError::Capture))
}

/// The capture side: frames → pipeline → metrics and event log, and a tick on quiet hosts. A
/// capture error ends it (and, through `capture_ended`, the server: a supervisor restarts us).
fn capture_loop(
    source: &mut LiveSource,
    mut pipeline: Pipeline,
    state: &State,
    mut events: Option<Box<dyn Write + Send>>,
    all_connections: bool,
) -> Result<(), CaptureError> {
    let mut failure = None;
    let mut published = RunSummary::default();
    let mut last_tick = std::time::Instant::now();
    let mut sink = |v: Verdict| {
        state.metrics.observe(&v);
        if let Some(w) = events.as_mut() {
            let notable = v.outcome == Outcome::Failed || v.close.abnormal;
            if (all_connections || notable) && json::write_line(w.as_mut(), &v).is_err() {
                tracing::warn!("event log write failed; event log turned off");
                events = None;
            }
        }
    };
    state.ready.store(true, Ordering::Release);
    loop {
        match source.next_event(TICK) {
            Ok(Next::Frame(frame)) => pipeline.on_frame(&frame, &mut sink),
            Ok(Next::Idle) => {}
            Ok(Next::Stopped) => break,
            Err(e) => {
                tracing::error!(error = %e, "capture failed");
                failure = Some(e);
                break;
            }
        }
        if last_tick.elapsed() >= TICK {
            last_tick = std::time::Instant::now();
            pipeline.tick(wall_clock(), &mut sink);
            publish(&pipeline, &state.metrics, &mut published);
        }
    }
    state.ready.store(false, Ordering::Release);
    pipeline.finish(&mut sink);
    publish(&pipeline, &state.metrics, &mut published);
    if let Some(w) = events.as_mut() {
        let _ = w.flush();
    }
    state.capture_ended.notify_one();
    failure.map_or(Ok(()), Err)
}

/// Adds the pipeline's counters grown since the last call to the metrics, and sets the
/// open-connection gauge from the pipeline's counts (one pass over its (server, stage) pairs).
fn publish(pipeline: &Pipeline, metrics: &Metrics, published: &mut RunSummary) {
    let mut now = RunSummary::default();
    pipeline.add_to_summary(&mut now);
    metrics.observe_run(&now.since(published));
    *published = now;
    metrics.set_open(&pipeline.open_by_server_stage());
}

fn wall_clock() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_secs_nanos(d.as_secs(), d.subsec_nanos())
}

fn open_event_log(settings: &Settings) -> Result<Option<Box<dyn Write + Send>>, AgentError> {
    Ok(match &settings.event_log.path {
        None => None,
        Some(EventLogTarget::Stderr) => Some(Box::new(std::io::LineWriter::new(std::io::stderr()))),
        Some(EventLogTarget::File(path)) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| AgentError::EventLog {
                    path: path.display().to_string(),
                    source,
                })?;
            Some(Box::new(std::io::LineWriter::new(file)))
        }
    })
}

async fn serve(addr: std::net::SocketAddr, state: Arc<State>) -> Result<(), AgentError> {
    use axum::routing::get;
    let state_for_shutdown = Arc::clone(&state);
    let path = state.telemetry_path.clone();
    let app = axum::Router::new()
        .route(&path, get(metrics_page))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/", get(landing))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen { addr, source })?;
    tracing::info!(url = %format!("http://{addr}{path}"), "serving metrics");
    let ended = Arc::clone(&state_for_shutdown);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = ended.capture_ended.notified() => tracing::warn!("capture ended: stopping"),
            }
        })
        .await
        .map_err(AgentError::Runtime)
}

async fn metrics_page(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
) -> impl axum::response::IntoResponse {
    let mut body = state.metrics.encode();
    // Capture counters per interface, read from the capture thread's last publication.
    let stats = state.stats.get();
    if !stats.is_empty() {
        let eof = body.rfind("# EOF").unwrap_or(body.len());
        body.truncate(eof);
        body.push_str(&interface_families(&stats));
        body.push_str("# EOF\n");
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Kernel-side capture counters per interface (libpcap's received and dropped).
fn interface_families(stats: &[crate::capture::live::InterfaceStats]) -> String {
    let mut out = String::new();
    type Value = fn(&crate::capture::live::InterfaceStats) -> u64;
    let families: [(&str, &str, Value); 3] = [
        (
            "tdswatch_capture_received_packets",
            "Packets the kernel filter passed to tdswatch.",
            |s| s.received,
        ),
        (
            "tdswatch_capture_kernel_dropped_packets",
            "Packets dropped because tdswatch's buffer was full.",
            |s| s.kernel_dropped,
        ),
        (
            "tdswatch_capture_interface_dropped_packets",
            "Packets the interface dropped.",
            |s| s.interface_dropped,
        ),
    ];
    for (name, help, value) in families {
        out.push_str(&format!("# TYPE {name} counter\n# HELP {name} {help}\n"));
        for s in stats {
            let iface = s.name.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!(
                "{name}_total{{interface=\"{iface}\"}} {}\n",
                value(s)
            ));
        }
    }
    out
}

async fn ready(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
) -> (axum::http::StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (axum::http::StatusCode::OK, "Ready\n")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "Not ready\n")
    }
}

async fn landing(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
) -> axum::response::Html<String> {
    axum::response::Html(format!(
        "<html><head><title>tdswatch</title></head><body><h1>tdswatch</h1>\
         <p><a href=\"{0}\">{0}</a> · <a href=\"/-/healthy\">/-/healthy</a> · \
         <a href=\"/-/ready\">/-/ready</a></p></body></html>",
        state.telemetry_path
    ))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: stopping"),
        () = term => tracing::info!("SIGTERM: stopping"),
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let _ = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_max_level(filter)
            .with_writer(std::io::stderr)
            .try_init(),
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_span_path(false)
            .subscriber_builder()
            .with_max_level(filter)
            .with_writer(std::io::stderr)
            .try_init(),
    };
}
