//! JSON lines: one object per connection, the verdict record with exactly the documented keys.

use crate::verdict::Verdict;
use std::io::{self, Write};

/// Writes `v` as one JSON line.
pub fn write_line(w: &mut dyn Write, v: &Verdict) -> io::Result<()> {
    serde_json::to_writer(&mut *w, v).map_err(io::Error::other)?;
    w.write_all(b"\n")
}
