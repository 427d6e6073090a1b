//! The pipeline: wires the stages together for one stream of frames (decode → conntrack → tds → tls
//! → handshake → verdict). It runs the same under `analyze` and under the live agent; threads,
//! servers and files stay outside.

use crate::capture::Frame;
use crate::config::Config;
use crate::verdict::Verdict;

pub struct Pipeline {}

impl Pipeline {
    pub fn new(config: &Config) -> Self {
        let _ = config;
        todo!()
    }
    pub fn on_frame(&mut self, frame: &Frame<'_>, out: &mut dyn FnMut(Verdict)) {
        let _ = (frame, out);
        todo!()
    }
    /// End of input: every connection still open gets its verdict (outcome `unknown`).
    pub fn finish(&mut self, out: &mut dyn FnMut(Verdict)) {
        let _ = out;
        todo!()
    }
    /// Adds this pipeline's counters (frames, segments, decode errors, duplicates, non-TDS flows …)
    /// to `summary`.
    pub fn add_to_summary(&self, summary: &mut crate::output::RunSummary) {
        let _ = summary;
        todo!()
    }
}
