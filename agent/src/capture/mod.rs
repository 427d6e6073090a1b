//! Capture sources: where frames come from. Owns the [`Frame`] handed down the pipeline (bytes, link
//! type, timestamp, interface) and the [`FrameSource`] trait that capture files, libpcap and (later) a
//! kernel-filtered eBPF source implement. Knows nothing of IP, TCP or TDS.

pub mod file;
pub mod live;

use std::fmt;

/// Nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_secs_nanos(secs: u64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(u64::from(nanos)),
        )
    }
    /// Nanoseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Link-layer framing of a frame (libpcap DLT / LINKTYPE values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1)
    Ethernet,
    /// LINKTYPE_NULL (0): BSD loopback, 4-byte address family in host byte order
    Null,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, 4-byte address family in network byte order
    Loop,
    /// LINKTYPE_RAW (101) and DLT_RAW (12/14): a bare IPv4 or IPv6 packet
    Raw,
    /// LINKTYPE_IPV4 (228)
    Ipv4,
    /// LINKTYPE_IPV6 (229)
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2
    LinuxSll2,
    /// Anything else: frames are counted and skipped.
    Unsupported(u32),
}

impl LinkType {
    pub fn from_linktype(value: u32) -> Self {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Unsupported(other),
        }
    }
}

/// One captured frame, borrowed from the source's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    /// The captured bytes (possibly fewer than `wire_len`).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub wire_len: u32,
    /// Interface index within the source (pcapng interface id, or the live interface's number).
    pub interface: u32,
}

/// Where in its input a source is, for progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub bytes_read: u64,
    pub bytes_total: Option<u64>,
}

/// Why a source stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file")]
    UnknownFormat { path: String },
    #[error("{path}: corrupt capture at byte {offset}: {detail}")]
    Corrupt {
        path: String,
        offset: u64,
        detail: String,
    },
    #[error("{path}: file ends in the middle of a record at byte {offset}")]
    Truncated { path: String, offset: u64 },
    #[error(
        "cannot capture on {interface}: permission denied (capturing needs the CAP_NET_RAW \
         capability, or root): {detail}"
    )]
    Permission { interface: String, detail: String },
}

/// A source of frames. Lending: a frame borrows the source until the next call.
pub trait FrameSource {
    /// The next frame, `Ok(None)` at the end of the input.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError>;
    /// How far the source is through its input.
    fn progress(&self) -> Progress {
        Progress::default()
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkType::Unsupported(v) => write!(f, "unsupported link type {v}"),
            other => write!(f, "{other:?}"),
        }
    }
}
