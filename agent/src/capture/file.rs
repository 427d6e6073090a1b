//! Capture files: pcap (micro- and nanosecond, either byte order) and pcapng (several interfaces,
//! each with its own link type and timestamp resolution), read in a stream with bounded memory.

use super::{CaptureError, Frame, FrameSource, Progress};
use std::path::Path;

/// Reads a pcap or pcapng file.
pub struct FileSource {
    _private: (),
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let _ = path;
        todo!("capture::file")
    }
}

impl FrameSource for FileSource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        todo!("capture::file")
    }
    fn progress(&self) -> Progress {
        Progress::default()
    }
}
