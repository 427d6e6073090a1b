//! The `tdswatch` command line: parses the arguments ([`cli`]), runs `analyze` over capture files
//! (one fresh pipeline per file, one run summary) and writes the report, the JSON lines or the
//! Prometheus metrics. Owns the process concerns: progress bar, exit status, error lines, a closed
//! stdout. Knows nothing of the protocols: frames go into [`Pipeline`], verdicts come out.

mod cli;

use clap::Parser;
use cli::{AnalyzeArgs, Cli, Command, Format};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tdswatch::capture::file::FileSource;
use tdswatch::capture::{CaptureError, Frame, FrameSource};
use tdswatch::output::metrics::{Metrics, MetricsConfig};
use tdswatch::output::{json, report::Report, RunSummary};
use tdswatch::pipeline::Pipeline;
use tdswatch::settings::Settings;
use tdswatch::verdict::Verdict;

fn main() -> ExitCode {
    // Usage errors exit with status 2, --help and --version with 0 (clap).
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Analyze(args) => analyze(&args),
        Command::CheckConfig(args) => check_config(&args.file),
    }
}

/// `run`: the live agent until SIGTERM/SIGINT (status 0); a bad setting, a missing capability or a
/// port already taken is one line on stderr (status 1).
fn run(args: &cli::RunArgs) -> ExitCode {
    let settings = match args.flags.settings() {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(io::stderr(), "tdswatch: {e}");
            return ExitCode::FAILURE;
        }
    };
    match tdswatch::agent::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "tdswatch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config`: "FILE: OK" and the effective settings on stdout (status 0), or the mistake with
/// its line and column on stderr (status 1).
fn check_config(file: &Path) -> ExitCode {
    match Settings::load(file) {
        Ok(settings) => {
            let mut out = io::stdout().lock();
            match writeln!(out, "{}: OK\n{}", file.display(), settings.summary()) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    let _ = writeln!(io::stderr(), "tdswatch: standard output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            let _ = writeln!(io::stderr(), "tdswatch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Size of the stdout buffer for JSON lines.
const OUT_BUFFER: usize = 64 * 1024;
/// Frames between two looks at the clock for the progress bar (a power of two).
const PROGRESS_EVERY_FRAMES: u64 = 4096;
/// Least time between two progress bar updates.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

fn analyze(args: &AnalyzeArgs) -> ExitCode {
    let config = args.config();
    let stdout = io::stdout();
    // With JSON on a terminal the lines and the bar would share the screen: no bar then.
    let progress = !args.no_progress
        && io::stderr().is_terminal()
        && !(args.format == Format::Json && stdout.is_terminal());
    let out = BufWriter::with_capacity(OUT_BUFFER, stdout.lock());
    let mut sink = match args.format {
        Format::Json => Sink::Json { out, error: None },
        Format::Text => Sink::Text {
            out,
            report: Box::default(),
        },
        Format::Prometheus => Sink::Prometheus {
            out,
            metrics: Box::new(Metrics::new(&MetricsConfig::default())),
        },
    };
    let run = run_files(
        &args.files,
        |path: &Path| FileSource::open(path),
        || Pipeline::new(&config),
        &mut sink,
        progress,
    );
    let output_error = sink.finish(&run.summary);
    exit(&run.problems, output_error, &mut io::stderr().lock())
}

/// One line per problem on `stderr`, then the exit status: 1 if anything went wrong, else 0. A closed
/// stdout (`| head`) is not a problem.
fn exit(problems: &[Problem], output_error: Option<io::Error>, stderr: &mut dyn Write) -> ExitCode {
    let mut failed = false;
    for p in problems {
        // Nothing sensible to do if stderr itself is gone.
        let _ = writeln!(stderr, "tdswatch: {}: {}", p.file, p.reason);
        failed = true;
    }
    if let Some(e) = output_error {
        if e.kind() != io::ErrorKind::BrokenPipe {
            let _ = writeln!(stderr, "tdswatch: standard output: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A file that could not be read whole.
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    /// The file as given on the command line.
    file: String,
    reason: String,
}

impl Problem {
    fn new(file: &str, e: &CaptureError) -> Self {
        // The capture error names its path; the line names the file once, as the user typed it.
        let message = e.to_string();
        let reason = match message
            .strip_prefix(file)
            .and_then(|r| r.strip_prefix(": "))
        {
            Some(rest) => rest.to_string(),
            None => message,
        };
        Problem {
            file: file.to_string(),
            reason,
        }
    }
}

/// What the run over all files gives.
struct Run {
    summary: RunSummary,
    problems: Vec<Problem>,
}

/// Where verdicts go: written at once as JSON lines, or gathered into the report.
enum Sink<W: Write> {
    Json {
        out: W,
        /// The first write error; nothing more is written after it.
        error: Option<io::Error>,
    },
    Text {
        out: W,
        report: Box<Report>,
    },
    /// Every verdict observed, the families written once at the end.
    Prometheus {
        out: W,
        metrics: Box<Metrics>,
    },
}

impl<W: Write> Sink<W> {
    fn emit(&mut self, v: Verdict) {
        match self {
            Sink::Json { out, error } => {
                if error.is_none() {
                    if let Err(e) = json::write_line(out, &v) {
                        *error = Some(e);
                    }
                }
            }
            Sink::Text { report, .. } => report.add(&v),
            Sink::Prometheus { metrics, .. } => metrics.observe(&v),
        }
    }

    /// True once the output cannot take more (a closed pipe): reading on would be wasted.
    fn closed(&self) -> bool {
        matches!(self, Sink::Json { error: Some(_), .. })
    }

    /// Renders the report (text) and flushes; gives back the output's error if there was one.
    fn finish(self, summary: &RunSummary) -> Option<io::Error> {
        match self {
            Sink::Json { mut out, error } => match error {
                Some(e) => Some(e),
                None => out.flush().err(),
            },
            Sink::Text { mut out, report } => report.render(&mut out, summary).err(),
            Sink::Prometheus { mut out, metrics } => {
                metrics.observe_run(summary);
                out.write_all(metrics.encode().as_bytes())
                    .and_then(|()| out.flush())
                    .err()
            }
        }
    }
}

/// The stages as the driver sees them ([`Pipeline`] in the program, a stand-in in tests).
trait Stages {
    fn on_frame(&mut self, frame: &Frame<'_>, out: &mut dyn FnMut(Verdict));
    fn finish(&mut self, out: &mut dyn FnMut(Verdict));
    fn add_to_summary(&self, summary: &mut RunSummary);
}

impl Stages for Pipeline {
    fn on_frame(&mut self, frame: &Frame<'_>, out: &mut dyn FnMut(Verdict)) {
        Pipeline::on_frame(self, frame, out)
    }
    fn finish(&mut self, out: &mut dyn FnMut(Verdict)) {
        Pipeline::finish(self, out)
    }
    fn add_to_summary(&self, summary: &mut RunSummary) {
        Pipeline::add_to_summary(self, summary)
    }
}

/// Reads every file in turn through a fresh pipeline, sends the verdicts to `sink` and sums the
/// counters. A file that cannot be opened is skipped; one that breaks part-way keeps what was read
/// (its open connections still get their verdicts). Stops early only when the output is closed.
fn run_files<S, P, W>(
    files: &[PathBuf],
    mut open: impl FnMut(&Path) -> Result<S, CaptureError>,
    mut new_pipeline: impl FnMut() -> P,
    sink: &mut Sink<W>,
    progress: bool,
) -> Run
where
    S: FrameSource,
    P: Stages,
    W: Write,
{
    let mut run = Run {
        summary: RunSummary::default(),
        problems: Vec::new(),
    };
    for path in files {
        let name = path.display().to_string();
        let mut source = match open(path) {
            Ok(s) => s,
            Err(e) => {
                run.problems.push(Problem::new(&name, &e));
                continue;
            }
        };
        run.summary.files.push(name.clone());
        let mut pipeline = new_pipeline();
        let bar = if progress {
            Some(progress_bar(&name, &source))
        } else {
            None
        };
        let mut frames: u64 = 0;
        let mut last_update = Instant::now();
        loop {
            match source.next_frame() {
                // The closure is a pair of pointers on the stack: nothing allocated per frame.
                Ok(Some(frame)) => pipeline.on_frame(&frame, &mut |v| sink.emit(v)),
                Ok(None) => break,
                Err(e) => {
                    run.problems.push(Problem::new(&name, &e));
                    break;
                }
            }
            frames = frames.wrapping_add(1);
            if frames % PROGRESS_EVERY_FRAMES == 0 {
                if let Some(bar) = &bar {
                    let now = Instant::now();
                    if now.duration_since(last_update) >= PROGRESS_EVERY {
                        bar.set_position(source.progress().bytes_read);
                        last_update = now;
                    }
                }
            }
            if sink.closed() {
                break;
            }
        }
        if !sink.closed() {
            pipeline.finish(&mut |v| sink.emit(v));
        }
        pipeline.add_to_summary(&mut run.summary);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if sink.closed() {
            break;
        }
    }
    run
}

/// A bar over the file's bytes (a spinner when the size is unknown), drawn on stderr.
fn progress_bar(name: &str, source: &impl FrameSource) -> ProgressBar {
    let p = source.progress();
    let (bar, template) = match p.bytes_total {
        Some(total) => (
            ProgressBar::new(total),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar.set_position(p.bytes_read);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tdswatch::capture::{LinkType, Progress, Timestamp};
    use tdswatch::verdict::{
        CloseFacts, Durations, Encryption, LoginFacts, Mode, Outcome, PreloginFacts, Stage,
        TlsFacts,
    };

    /// A capture file stand-in: `frames` frames, then the end or an error.
    struct FakeSource {
        path: String,
        frames: u64,
        truncated: bool,
        read: u64,
        buf: [u8; 4],
    }

    impl FrameSource for FakeSource {
        fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
            if self.read == self.frames {
                return if self.truncated {
                    Err(CaptureError::Truncated {
                        path: self.path.clone(),
                        offset: 24 + self.read * 20,
                    })
                } else {
                    Ok(None)
                };
            }
            self.read += 1;
            self.buf = (self.read as u32).to_be_bytes();
            Ok(Some(Frame {
                ts: Timestamp(1_714_557_600_000_000_000 + self.read),
                link: LinkType::Raw,
                data: &self.buf,
                wire_len: 4,
                interface: 0,
            }))
        }
        fn progress(&self) -> Progress {
            Progress {
                bytes_read: self.read * 20,
                bytes_total: Some(self.frames * 20),
            }
        }
    }

    /// A pipeline stand-in: one verdict per frame, one more at the end, frames counted.
    #[derive(Default)]
    struct FakePipeline {
        frames: u64,
    }

    fn verdict(n: u64, outcome: Outcome) -> Verdict {
        Verdict {
            client: format!("10.0.0.9:{}", 40000 + n % 1000)
                .parse()
                .expect("addr"),
            server: "10.0.0.5:1433".parse().expect("addr"),
            first_seen: Timestamp(1_714_557_600_000_000_000 + n),
            last_seen: Timestamp(1_714_557_600_000_000_000 + n),
            mode: Mode::Tds7,
            encryption: Encryption::None,
            stage: Stage::Established,
            outcome,
            reason: None,
            prelogin: PreloginFacts::default(),
            tls: TlsFacts::default(),
            login: LoginFacts::default(),
            close: CloseFacts::default(),
            durations_ms: Durations::default(),
            evidence: "".into(),
            probe: false,
        }
    }

    impl Stages for FakePipeline {
        fn on_frame(&mut self, _: &Frame<'_>, out: &mut dyn FnMut(Verdict)) {
            self.frames += 1;
            out(verdict(self.frames, Outcome::Established));
        }
        fn finish(&mut self, out: &mut dyn FnMut(Verdict)) {
            out(verdict(0, Outcome::Unknown));
        }
        fn add_to_summary(&self, summary: &mut RunSummary) {
            summary.frames += self.frames;
        }
    }

    /// "name" → (frames, truncated); a name not in the map cannot be opened.
    fn opener(
        files: &[(&str, u64, bool)],
    ) -> impl FnMut(&Path) -> Result<FakeSource, CaptureError> {
        let files: HashMap<String, (u64, bool)> = files
            .iter()
            .map(|&(n, f, t)| (n.to_string(), (f, t)))
            .collect();
        move |path: &Path| {
            let name = path.display().to_string();
            match files.get(&name) {
                Some(&(frames, truncated)) => Ok(FakeSource {
                    path: name,
                    frames,
                    truncated,
                    read: 0,
                    buf: [0; 4],
                }),
                None => Err(CaptureError::Io {
                    path: name,
                    source: io::Error::from(io::ErrorKind::NotFound),
                }),
            }
        }
    }

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    /// A stdout whose reader went away after `room` bytes.
    struct ClosedAfter {
        room: usize,
        written: usize,
    }

    impl Write for ClosedAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written + buf.len() > self.room {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            self.written += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn json_sink<W: Write>(out: W) -> Sink<W> {
        Sink::Json { out, error: None }
    }

    #[test]
    fn json_lines_for_every_file_and_problems_in_order() {
        let files = paths(&["missing.pcap", "cut.pcap", "good.pcapng"]);
        let mut sink = json_sink(Vec::new());
        let run = run_files(
            &files,
            opener(&[("cut.pcap", 2, true), ("good.pcapng", 3, false)]),
            FakePipeline::default,
            &mut sink,
            false,
        );
        assert_eq!(
            run.summary.files,
            vec!["cut.pcap".to_string(), "good.pcapng".to_string()]
        );
        assert_eq!(run.summary.frames, 5);
        assert_eq!(
            run.problems,
            vec![
                Problem {
                    file: "missing.pcap".into(),
                    reason: io::Error::from(io::ErrorKind::NotFound).to_string()
                },
                Problem {
                    file: "cut.pcap".into(),
                    reason: "file ends in the middle of a record at byte 64".into()
                },
            ]
        );
        let Sink::Json { out, error } = sink else {
            panic!("json sink")
        };
        assert!(error.is_none());
        let text = String::from_utf8(out).expect("UTF-8");
        // 2 + 1 verdicts from the cut file (its open connections still end), 3 + 1 from the other.
        assert_eq!(text.lines().count(), 7);
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("\"outcome\":\"unknown\""))
                .count(),
            2
        );
    }

    #[test]
    fn closed_stdout_stops_reading_and_exits_quietly_with_success() {
        let files = paths(&["big.pcap", "second.pcap"]);
        let mut opened = Vec::new();
        let mut open = opener(&[("big.pcap", 1_000_000, false), ("second.pcap", 10, false)]);
        let mut sink = json_sink(ClosedAfter {
            room: 3000,
            written: 0,
        });
        let run = run_files(
            &files,
            |p: &Path| {
                opened.push(p.to_path_buf());
                open(p)
            },
            FakePipeline::default,
            &mut sink,
            false,
        );
        assert!(run.problems.is_empty());
        assert_eq!(opened, paths(&["big.pcap"]), "the second file is not read");
        // Stopped at the first line that did not fit, far from the million frames.
        assert!(run.summary.frames < 20, "{}", run.summary.frames);
        assert!(sink.closed());
        let error = sink.finish(&run.summary);
        assert_eq!(
            error.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::BrokenPipe)
        );
        let mut stderr = Vec::new();
        let code = exit(&run.problems, error, &mut stderr);
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(stderr.is_empty());
    }

    #[test]
    fn problems_go_to_stderr_after_the_report_with_status_1() {
        let files = paths(&["a.pcap", "nope.pcap"]);
        let mut sink = Sink::Text {
            out: Vec::new(),
            report: Box::default(),
        };
        let run = run_files(
            &files,
            opener(&[("a.pcap", 4, false)]),
            FakePipeline::default,
            &mut sink,
            false,
        );
        let Sink::Text { out, report } = sink else {
            panic!("text sink")
        };
        let mut text = out;
        report.render(&mut text, &run.summary).expect("render");
        let text = String::from_utf8(text).expect("UTF-8");
        assert!(
            text.starts_with("tdswatch analyze: 1 file, 4 frames, 5 connections\n"),
            "{text}"
        );
        let mut stderr = Vec::new();
        let code = exit(&run.problems, None, &mut stderr);
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(
            String::from_utf8(stderr).expect("UTF-8"),
            format!(
                "tdswatch: nope.pcap: {}\n",
                io::Error::from(io::ErrorKind::NotFound)
            )
        );
    }

    #[test]
    fn prometheus_counts_every_file_and_is_written_once_at_the_end() {
        let files = paths(&["a.pcap", "b.pcap"]);
        let mut out = Vec::new();
        let mut sink = Sink::Prometheus {
            out: &mut out,
            metrics: Box::new(Metrics::new(&MetricsConfig::default())),
        };
        let run = run_files(
            &files,
            opener(&[("a.pcap", 4, false), ("b.pcap", 2, true)]),
            FakePipeline::default,
            &mut sink,
            false,
        );
        assert_eq!(run.problems.len(), 1);
        assert!(sink.finish(&run.summary).is_none());
        let text = String::from_utf8(out).expect("UTF-8");
        let srv = r#"server="10.0.0.5:1433""#;
        for line in [
            format!(r#"tds_connections_total{{{srv},encryption="none",outcome="established"}} 6"#),
            format!(r#"tds_connections_total{{{srv},encryption="none",outcome="unknown"}} 2"#),
            "tdswatch_frames_total 6".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(text.lines().filter(|l| *l == "# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn prometheus_into_a_closed_stdout_gives_the_error() {
        let sink = Sink::Prometheus {
            out: ClosedAfter {
                room: 10,
                written: 0,
            },
            metrics: Box::new(Metrics::new(&MetricsConfig::default())),
        };
        let e = sink.finish(&RunSummary::default()).expect("an error");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_real_output_error_is_reported() {
        let mut stderr = Vec::new();
        let code = exit(
            &[],
            Some(io::Error::from(io::ErrorKind::StorageFull)),
            &mut stderr,
        );
        assert_eq!(code, ExitCode::FAILURE);
        let line = String::from_utf8(stderr).expect("UTF-8");
        assert!(line.starts_with("tdswatch: standard output: "), "{line}");
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn problem_names_the_file_once() {
        let e = CaptureError::Corrupt {
            path: "dir/x.pcap".into(),
            offset: 120,
            detail: "record length 4294967295 over the limit".into(),
        };
        assert_eq!(
            Problem::new("dir/x.pcap", &e),
            Problem {
                file: "dir/x.pcap".into(),
                reason: "corrupt capture at byte 120: record length 4294967295 over the limit"
                    .into()
            }
        );
        // A path spelled differently by the source is kept whole rather than lost.
        let e = CaptureError::UnknownFormat {
            path: "/abs/x.pcap".into(),
        };
        assert_eq!(
            Problem::new("x.pcap", &e).reason,
            "/abs/x.pcap: not a pcap or pcapng file"
        );
    }

    #[test]
    fn progress_bar_is_built_for_known_and_unknown_sizes() {
        // indicatif draws nothing when stderr is not a terminal (as under test); the state is kept.
        let src = FakeSource {
            path: "x".into(),
            frames: 10,
            truncated: false,
            read: 5,
            buf: [0; 4],
        };
        let bar = progress_bar("x.pcap", &src);
        assert_eq!(bar.length(), Some(200));
        assert_eq!(bar.position(), 100);
        bar.finish_and_clear();
    }
}
