//! The `analyze` report: what a DBA reads in one screen. Per server: connections, established,
//! failed by reason, abnormal closes by stage and side, TLS versions, suites, DHE share; then each
//! failed connection with its evidence.

use super::RunSummary;
use crate::verdict::Verdict;
use std::io::{self, Write};

/// Accumulates verdicts for the report. Keeps per-server aggregates and the failed connections
/// (bounded), not every verdict.
#[derive(Default)]
pub struct Report {}

impl Report {
    pub fn new() -> Self {
        Report {}
    }
    pub fn add(&mut self, v: &Verdict) {
        let _ = v;
        todo!("report")
    }
    pub fn render(&self, w: &mut dyn Write, summary: &RunSummary) -> io::Result<()> {
        let _ = (w, summary);
        todo!("report")
    }
}
