//! Capture files: pcap (micro- and nanosecond, either byte order) and pcapng (several sections and
//! interfaces, each with its own link type, timestamp resolution and offset), read in a stream with
//! bounded memory. Owns the file buffer, the record framing and the timestamp arithmetic; knows
//! nothing of what the frames hold.
//!
//! Headers, section and interface blocks are parsed with `pcap-parser`; the per-packet records
//! (pcap record header, Enhanced / Simple / obsolete Packet blocks) have fixed layouts and are read
//! here directly, so that a packet costs no allocation (the crate builds a `Vec` of options for every
//! Enhanced Packet Block that has any).

use super::{CaptureError, Frame, FrameSource, LinkType, Progress, Timestamp};
use pcap_parser::pcapng::{
    parse_interfacedescriptionblock_be, parse_interfacedescriptionblock_le,
    parse_sectionheaderblock, OptionCode,
};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

/// The buffer a file is read through at first.
const INITIAL_BUFFER: usize = 256 * 1024;
/// The largest single record (pcap record or pcapng block, headers included) the buffer grows to
/// hold. Real frames are at most 256 KiB (libpcap's largest snap length); a record beyond this is
/// taken as corruption rather than a reason to allocate more.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;
/// Interfaces described in one pcapng section. Each costs a few bytes; the bound only stops a
/// hostile file made of interface blocks from growing the table without end.
pub const MAX_INTERFACES: usize = 65_536;

const PCAP_MICRO_LE: [u8; 4] = [0xd4, 0xc3, 0xb2, 0xa1];
const PCAP_MICRO_BE: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];
const PCAP_NANO_LE: [u8; 4] = [0x4d, 0x3c, 0xb2, 0xa1];
const PCAP_NANO_BE: [u8; 4] = [0xa1, 0xb2, 0x3c, 0x4d];
/// Alexey Kuznetzov's patched libpcap: 8 more bytes per record header (ifindex, protocol, type).
const PCAP_MODIFIED_LE: [u8; 4] = [0x34, 0xcd, 0xb2, 0xa1];
const PCAP_MODIFIED_BE: [u8; 4] = [0xa1, 0xb2, 0xcd, 0x34];
const PCAP_HEADER_LEN: usize = 24;

const NG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const NG_BOM_LE: [u8; 4] = [0x4d, 0x3c, 0x2b, 0x1a];
const NG_BOM_BE: [u8; 4] = [0x1a, 0x2b, 0x3c, 0x4d];
const NG_IDB: u32 = 0x0000_0001;
const NG_OBSOLETE_PACKET: u32 = 0x0000_0002;
const NG_SPB: u32 = 0x0000_0003;
const NG_EPB: u32 = 0x0000_0006;

/// Reads a pcap or pcapng file.
pub struct FileSource {
    path: String,
    file: File,
    /// `buf[start..end]` holds bytes read from the file and not yet consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The file has returned end of file.
    eof: bool,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Length of the record whose frame was last returned: consumed at the next call, so the frame
    /// can borrow the buffer until then.
    pending: usize,
    total: Option<u64>,
    format: Format,
    /// Timestamp of the last frame returned.
    last_ts: Timestamp,
    /// An error or the end was reached: every later call returns `Ok(None)`.
    done: bool,
}

enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        record_header: usize,
        link: LinkType,
    },
    PcapNg(NgState),
}

struct NgState {
    /// Byte order of the current section.
    big_endian: bool,
    /// Interfaces of the current section, indexed by their id in it.
    interfaces: Vec<Interface>,
    /// Interfaces of the earlier sections: the frame's interface number is `base + id`, so that
    /// interfaces of different sections never share a number.
    base: u32,
}

#[derive(Clone, Copy)]
struct Interface {
    link: LinkType,
    /// `if_tsresol`: bit 7 clear = 10^-n seconds per unit, set = 2^-n.
    tsresol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    tsoffset: i64,
    snaplen: u32,
}

/// Where a frame lies in the buffer and what it says about itself; owned, so that the buffer can
/// be borrowed only once it is known.
struct Record {
    data_start: usize,
    data_len: usize,
    record_len: usize,
    ts: Timestamp,
    link: LinkType,
    wire_len: u32,
    interface: u32,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| CaptureError::Io {
            path: name.clone(),
            source,
        })?;
        let total = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut source = FileSource {
            path: name,
            file,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            pending: 0,
            total,
            last_ts: Timestamp(0),
            format: Format::Pcap {
                big_endian: false,
                nanos: false,
                record_header: 16,
                link: LinkType::Ethernet,
            },
            done: false,
        };
        source.format = source.read_file_header()?;
        Ok(source)
    }

    /// Recognises the format from its magic number; for pcap, reads the file header.
    fn read_file_header(&mut self) -> Result<Format, CaptureError> {
        self.ensure(4)?;
        let magic = match self.available().first_chunk::<4>() {
            Some(m) => *m,
            None => {
                return Err(CaptureError::UnknownFormat {
                    path: self.path.clone(),
                })
            }
        };
        let (big_endian, nanos, record_header) = match magic {
            NG_SHB => return self.open_pcapng(),
            PCAP_MICRO_LE => (false, false, 16),
            PCAP_MICRO_BE => (true, false, 16),
            PCAP_NANO_LE => (false, true, 16),
            PCAP_NANO_BE => (true, true, 16),
            PCAP_MODIFIED_LE => (false, false, 24),
            PCAP_MODIFIED_BE => (true, false, 24),
            _ => {
                return Err(CaptureError::UnknownFormat {
                    path: self.path.clone(),
                })
            }
        };
        if !self.ensure(PCAP_HEADER_LEN)? {
            return Err(self.truncated());
        }
        let network = match pcap_parser::parse_pcap_header(self.available()) {
            // The crate reads the header in the byte order of its magic.
            Ok((_, header)) => header.network.0 as u32,
            // The crate knows no big-endian modified format: the link type is the last field.
            Err(_) => match chunk::<4>(self.available(), 20) {
                Some(b) if big_endian => u32::from_be_bytes(*b),
                Some(b) => u32::from_le_bytes(*b),
                None => return Err(self.truncated()),
            },
        };
        self.consume(PCAP_HEADER_LEN);
        // The upper bits carry the FCS length and reserved flags (LT_LINKTYPE in libpcap).
        let link = LinkType::from_linktype(network & 0x03ff_ffff);
        Ok(Format::Pcap {
            big_endian,
            nanos,
            record_header,
            link,
        })
    }

    /// A pcapng file: the first block must be a Section Header with a valid byte-order magic. The
    /// block itself is read by the block loop like any later section header.
    fn open_pcapng(&mut self) -> Result<Format, CaptureError> {
        if !self.ensure(12)? {
            return Err(self.truncated());
        }
        let big_endian = match chunk::<4>(self.available(), 8).copied() {
            Some(NG_BOM_LE) => false,
            Some(NG_BOM_BE) => true,
            _ => {
                return Err(CaptureError::UnknownFormat {
                    path: self.path.clone(),
                })
            }
        };
        Ok(Format::PcapNg(NgState {
            big_endian,
            interfaces: Vec::new(),
            base: 0,
        }))
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn truncated(&self) -> CaptureError {
        CaptureError::Truncated {
            path: self.path.clone(),
            offset: self.offset,
        }
    }

    fn corrupt(&self, detail: String) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            detail,
        }
    }

    /// Makes at least `n` unconsumed bytes available (`n` ≤ [`MAX_RECORD`]), reading, compacting
    /// and growing the buffer as needed. `Ok(false)`: the file ends first.
    fn ensure(&mut self, n: usize) -> Result<bool, CaptureError> {
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            if self.start + n > self.buf.len() {
                // Move the partial record to the front; grow if even that is not enough.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if n > self.buf.len() {
                    let new_len = n
                        .max(self.buf.len().saturating_mul(2))
                        .min(MAX_RECORD.max(n));
                    self.buf.resize(new_len, 0);
                }
            }
            let space = match self.buf.get_mut(self.end..) {
                Some(s) if !s.is_empty() => s,
                _ => return Err(self.corrupt("internal: no buffer space".into())),
            };
            match self.file.read(space) {
                Ok(0) => self.eof = true,
                Ok(read) => self.end += read.min(space.len()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        path: format!(
                            "{} (at byte {})",
                            self.path,
                            self.offset + (self.end - self.start) as u64
                        ),
                        source,
                    })
                }
            }
        }
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                record_header,
                link,
            } => self.next_pcap_record(big_endian, nanos, record_header, link),
            Format::PcapNg(_) => self.next_pcapng_record(),
        }
    }

    fn next_pcap_record(
        &mut self,
        big_endian: bool,
        nanos: bool,
        header_len: usize,
        link: LinkType,
    ) -> Result<Option<Record>, CaptureError> {
        if !self.ensure(header_len)? {
            return if self.available().is_empty() {
                Ok(None)
            } else {
                Err(self.truncated())
            };
        }
        let h = match self.available().first_chunk::<16>() {
            Some(h) => *h,
            None => return Err(self.truncated()),
        };
        let word = |i: usize| read_u32(big_endian, chunk::<4>(&h, i));
        let (ts_sec, ts_frac, caplen, origlen) = (word(0), word(4), word(8), word(12));
        let record_len = match usize::try_from(caplen)
            .ok()
            .and_then(|c| c.checked_add(header_len))
        {
            Some(len) if len <= MAX_RECORD => len,
            _ => {
                return Err(self.corrupt(format!(
                    "record of {caplen} captured bytes (limit {MAX_RECORD})"
                )))
            }
        };
        if !self.ensure(record_len)? {
            return Err(self.truncated());
        }
        let frac_ns = if nanos {
            u64::from(ts_frac)
        } else {
            u64::from(ts_frac).saturating_mul(1000)
        };
        let ts = Timestamp(
            u64::from(ts_sec)
                .saturating_mul(1_000_000_000)
                .saturating_add(frac_ns),
        );
        Ok(Some(Record {
            data_start: self.start + header_len,
            data_len: record_len - header_len,
            record_len,
            ts,
            link,
            wire_len: origlen,
            interface: 0,
        }))
    }

    fn next_pcapng_record(&mut self) -> Result<Option<Record>, CaptureError> {
        loop {
            // 12 bytes: block type, length, and (for a section header) the byte-order magic; also
            // the smallest valid block.
            if !self.ensure(12)? {
                return if self.available().is_empty() {
                    Ok(None)
                } else {
                    Err(self.truncated())
                };
            }
            let head = match self.available().first_chunk::<12>() {
                Some(h) => *h,
                None => return Err(self.truncated()),
            };
            let Format::PcapNg(ng) = &self.format else {
                return Err(self.corrupt("internal: not pcapng".into()));
            };
            let raw_type = chunk::<4>(&head, 0).copied();
            let is_section = raw_type == Some(NG_SHB);
            let big_endian = if is_section {
                match chunk::<4>(&head, 8).copied() {
                    Some(NG_BOM_LE) => false,
                    Some(NG_BOM_BE) => true,
                    _ => {
                        return Err(
                            self.corrupt("section header with an invalid byte-order magic".into())
                        )
                    }
                }
            } else {
                ng.big_endian
            };
            let block_type = read_u32(big_endian, raw_type.as_ref());
            let block_len = read_u32(big_endian, chunk::<4>(&head, 4));
            let len = match usize::try_from(block_len) {
                Ok(len) if len >= 12 && len % 4 == 0 && len <= MAX_RECORD => len,
                _ => {
                    return Err(self.corrupt(format!(
                        "block of type {block_type:#x} with invalid length {block_len}"
                    )))
                }
            };
            if !self.ensure(len)? {
                return Err(self.truncated());
            }
            let block = self.available().get(..len).unwrap_or(&[]);
            let trailer = read_u32(big_endian, chunk::<4>(block, len - 4));
            if trailer != block_len {
                return Err(self.corrupt(format!(
                    "block length {block_len} does not match its trailer {trailer}"
                )));
            }
            if is_section {
                self.section_header(len, big_endian)?;
                continue;
            }
            match block_type {
                NG_IDB => self.interface_description(len, big_endian)?,
                NG_EPB | NG_OBSOLETE_PACKET | NG_SPB => {
                    return self.packet_block(block_type, len, big_endian).map(Some);
                }
                // Name resolution, statistics, secrets, custom and unknown blocks.
                _ => self.consume(len),
            }
        }
    }

    fn ng(&mut self) -> Result<&mut NgState, CaptureError> {
        match &mut self.format {
            Format::PcapNg(ng) => Ok(ng),
            Format::Pcap { .. } => Err(CaptureError::Corrupt {
                path: self.path.clone(),
                offset: self.offset,
                detail: "internal: not pcapng".into(),
            }),
        }
    }

    /// A new section: its byte order applies from here on, and its interfaces replace the last
    /// section's.
    fn section_header(&mut self, len: usize, big_endian: bool) -> Result<(), CaptureError> {
        let block = self.available().get(..len).unwrap_or(&[]);
        match parse_sectionheaderblock(block) {
            Ok((_, shb)) if shb.major_version == 1 => {}
            Ok((_, shb)) => {
                let detail = format!(
                    "unsupported pcapng version {}.{}",
                    shb.major_version, shb.minor_version
                );
                return Err(self.corrupt(detail));
            }
            Err(e) => return Err(self.corrupt(format!("section header: {}", parse_error(&e)))),
        }
        let ng = self.ng()?;
        let count = u32::try_from(ng.interfaces.len()).unwrap_or(u32::MAX);
        ng.base = ng.base.saturating_add(count);
        ng.interfaces.clear();
        ng.big_endian = big_endian;
        self.consume(len);
        Ok(())
    }

    fn interface_description(&mut self, len: usize, big_endian: bool) -> Result<(), CaptureError> {
        let block = self.available().get(..len).unwrap_or(&[]);
        let parsed = if big_endian {
            parse_interfacedescriptionblock_be(block)
        } else {
            parse_interfacedescriptionblock_le(block)
        };
        let interface = match parsed {
            Ok((_, idb)) => {
                // The crate reads if_tsoffset as little-endian whatever the section's byte order.
                let mut tsoffset = 0i64;
                for opt in &idb.options {
                    if opt.code == OptionCode::IfTsoffset {
                        if let Some(b) = opt.value().first_chunk::<8>() {
                            tsoffset = if big_endian {
                                i64::from_be_bytes(*b)
                            } else {
                                i64::from_le_bytes(*b)
                            };
                        }
                    }
                }
                Interface {
                    link: LinkType::from_linktype(idb.linktype.0 as u32 & 0xffff),
                    tsresol: idb.if_tsresol,
                    tsoffset,
                    snaplen: idb.snaplen,
                }
            }
            Err(e) => {
                return Err(self.corrupt(format!("interface description: {}", parse_error(&e))))
            }
        };
        let ng = self.ng()?;
        if ng.interfaces.len() >= MAX_INTERFACES {
            return Err(self.corrupt(format!(
                "more than {MAX_INTERFACES} interfaces in one section"
            )));
        }
        ng.interfaces.push(interface);
        self.consume(len);
        Ok(())
    }

    /// Enhanced (type 6), Simple (3) and obsolete Packet (2) blocks.
    fn packet_block(
        &mut self,
        block_type: u32,
        len: usize,
        big_endian: bool,
    ) -> Result<Record, CaptureError> {
        let block = self.available().get(..len).unwrap_or(&[]);
        let word = |i: usize| read_u32(big_endian, chunk::<4>(block, i));
        // (interface id, timestamp units, captured length, length on the wire, data offset)
        let (if_id, units, caplen, wire_len, data_offset) = match block_type {
            NG_SPB => {
                // No interface id or timestamp: interface 0, captured length bounded by the block
                // and by the interface's snap length.
                if len < 16 {
                    return Err(self.corrupt(format!("simple packet block of {len} bytes")));
                }
                let origlen = word(8);
                let room = u32::try_from(len - 16).unwrap_or(u32::MAX);
                (0, None, origlen.min(room), origlen, 12)
            }
            _ => {
                if len < 32 {
                    return Err(self.corrupt(format!("packet block of {len} bytes")));
                }
                let if_id = if block_type == NG_EPB {
                    word(8)
                } else {
                    // Obsolete Packet Block: 16-bit interface id, then a 16-bit drop count.
                    let b = chunk::<2>(block, 8).copied().unwrap_or_default();
                    u32::from(if big_endian {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_le_bytes(b)
                    })
                };
                let units = (u64::from(word(12)) << 32) | u64::from(word(16));
                (if_id, Some(units), word(20), word(24), 28)
            }
        };
        let Format::PcapNg(ng) = &self.format else {
            return Err(self.corrupt("internal: not pcapng".into()));
        };
        let Some(iface) = usize::try_from(if_id)
            .ok()
            .and_then(|i| ng.interfaces.get(i))
            .copied()
        else {
            return Err(self.corrupt(format!("packet for undeclared interface {if_id}")));
        };
        let base = ng.base;
        let caplen = if block_type == NG_SPB && iface.snaplen != 0 {
            caplen.min(iface.snaplen)
        } else {
            caplen
        };
        // Data plus the 4-byte trailer must fit in the block.
        let data_len = usize::try_from(caplen).unwrap_or(usize::MAX);
        if data_len
            .checked_add(data_offset + 4)
            .is_none_or(|end| end > len)
        {
            return Err(self.corrupt(format!(
                "captured length {caplen} beyond its {len}-byte block"
            )));
        }
        // A Simple Packet Block has no timestamp: it gets the previous packet's, so that time
        // never runs backwards for the stages that keep clocks.
        let ts = units.map_or(self.last_ts, |u| {
            ng_timestamp(u, iface.tsresol, iface.tsoffset)
        });
        Ok(Record {
            data_start: self.start + data_offset,
            data_len,
            record_len: len,
            ts,
            link: iface.link,
            wire_len,
            interface: base.saturating_add(if_id),
        })
    }
}

impl FrameSource for FileSource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        // The previous frame's borrow has ended: its record can go.
        let pending = std::mem::take(&mut self.pending);
        self.consume(pending);
        if self.done {
            return Ok(None);
        }
        let record = match self.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        let data_end = record.data_start.saturating_add(record.data_len);
        if data_end > self.end || record.data_start > data_end {
            self.done = true;
            return Err(self.corrupt("internal: record outside the buffer".into()));
        }
        self.pending = record.record_len;
        self.last_ts = record.ts;
        Ok(Some(Frame {
            ts: record.ts,
            link: record.link,
            data: self.buf.get(record.data_start..data_end).unwrap_or(&[]),
            wire_len: record.wire_len,
            interface: record.interface,
        }))
    }

    fn progress(&self) -> Progress {
        Progress {
            bytes_read: self.offset + self.pending as u64,
            bytes_total: self.total,
        }
    }
}

/// Converts a pcapng timestamp (`units` of the interface's resolution since the epoch, plus its
/// offset in seconds) to nanoseconds, saturating instead of overflowing.
fn ng_timestamp(units: u64, tsresol: u8, tsoffset: i64) -> Timestamp {
    let units = u128::from(units);
    let exponent = u32::from(tsresol & 0x7f);
    let ns: u128 = if tsresol & 0x80 == 0 {
        if exponent <= 9 {
            units * 10u128.pow(9 - exponent)
        } else {
            10u128
                .checked_pow(exponent - 9)
                .map_or(0, |div| units / div)
        }
    } else {
        // units / 2^e seconds; units · 10^9 < 2^94, so the product cannot overflow.
        (units * 1_000_000_000) >> exponent
    };
    let ns = i128::try_from(ns).unwrap_or(i128::MAX);
    let total = ns.saturating_add(i128::from(tsoffset) * 1_000_000_000);
    Timestamp(u64::try_from(total.max(0)).unwrap_or(u64::MAX))
}

/// A short description of a `pcap-parser` error that never includes the input bytes.
fn parse_error(e: &pcap_parser::nom::Err<pcap_parser::PcapError<&[u8]>>) -> String {
    use pcap_parser::nom::Err;
    use pcap_parser::PcapError;
    match e {
        Err::Incomplete(_) => "shorter than its fields".into(),
        Err::Error(PcapError::NomError(_, kind)) | Err::Failure(PcapError::NomError(_, kind)) => {
            format!("invalid ({kind:?})")
        }
        Err::Error(PcapError::OwnedNomError(_, kind))
        | Err::Failure(PcapError::OwnedNomError(_, kind)) => {
            format!("invalid ({kind:?})")
        }
        Err::Error(other) | Err::Failure(other) => match other {
            PcapError::HeaderNotRecognized => "not recognised".into(),
            _ => "invalid".into(),
        },
    }
}

fn read_u32(big_endian: bool, bytes: Option<&[u8; 4]>) -> u32 {
    let b = bytes.copied().unwrap_or_default();
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// `N` bytes of `data` from `at`, if there are that many.
fn chunk<const N: usize>(data: &[u8], at: usize) -> Option<&[u8; N]> {
    data.get(at..)?.first_chunk::<N>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file under the temp dir with a unique name, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(bytes: &[u8]) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "tdswatch-capture-file-{}-{n}.cap",
                std::process::id()
            ));
            std::fs::write(&path, bytes).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// What a test expects of one frame.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        ts: u64,
        link: LinkType,
        interface: u32,
        wire_len: u32,
        data: Vec<u8>,
    }

    /// Reads the whole file: the frames, then the error that stopped it (if any). Checks that the
    /// source stays finished afterwards.
    fn read_all(bytes: &[u8]) -> (Vec<Seen>, Option<CaptureError>) {
        let file = TempFile::new(bytes);
        let mut source = FileSource::open(&file.0).unwrap();
        let mut frames = Vec::new();
        let error = loop {
            match source.next_frame() {
                Ok(Some(f)) => frames.push(Seen {
                    ts: f.ts.0,
                    link: f.link,
                    interface: f.interface,
                    wire_len: f.wire_len,
                    data: f.data.to_vec(),
                }),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        assert!(matches!(source.next_frame(), Ok(None)));
        if error.is_none() {
            let p = source.progress();
            assert_eq!(p.bytes_read, bytes.len() as u64);
            assert_eq!(p.bytes_total, Some(bytes.len() as u64));
        }
        (frames, error)
    }

    fn open_error(bytes: &[u8]) -> CaptureError {
        let file = TempFile::new(bytes);
        match FileSource::open(&file.0) {
            Ok(_) => panic!("opened"),
            Err(e) => e,
        }
    }

    fn frame_bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    // ---- pcap ----

    fn put32(out: &mut Vec<u8>, be: bool, v: u32) {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn put16(out: &mut Vec<u8>, be: bool, v: u16) {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn pcap_header(be: bool, nanos: bool, linktype: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put32(&mut out, be, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        put16(&mut out, be, 2);
        put16(&mut out, be, 4);
        put32(&mut out, be, 0); // thiszone
        put32(&mut out, be, 0); // sigfigs
        put32(&mut out, be, 262_144); // snaplen
        put32(&mut out, be, linktype);
        out
    }

    fn pcap_record(out: &mut Vec<u8>, be: bool, sec: u32, frac: u32, data: &[u8], wire_len: u32) {
        put32(out, be, sec);
        put32(out, be, frac);
        put32(out, be, data.len() as u32);
        put32(out, be, wire_len);
        out.extend_from_slice(data);
    }

    /// Three records: a full frame, a snapped one (wire length larger), an empty one.
    fn pcap_file(be: bool, nanos: bool, linktype: u32) -> (Vec<u8>, Vec<usize>) {
        let mut out = pcap_header(be, nanos, linktype);
        let mut starts = Vec::new();
        starts.push(out.len());
        pcap_record(
            &mut out,
            be,
            1_700_000_000,
            123_456,
            &frame_bytes(60, 1),
            60,
        );
        starts.push(out.len());
        pcap_record(
            &mut out,
            be,
            1_700_000_001,
            999_999,
            &frame_bytes(96, 2),
            1514,
        );
        starts.push(out.len());
        pcap_record(&mut out, be, 1_700_000_002, 0, &[], 0);
        (out, starts)
    }

    fn expect_pcap(nanos: bool, link: LinkType) -> Vec<Seen> {
        let unit = if nanos { 1 } else { 1000 };
        vec![
            Seen {
                ts: 1_700_000_000_000_000_000 + 123_456 * unit,
                link,
                interface: 0,
                wire_len: 60,
                data: frame_bytes(60, 1),
            },
            Seen {
                ts: 1_700_000_001_000_000_000 + 999_999 * unit,
                link,
                interface: 0,
                wire_len: 1514,
                data: frame_bytes(96, 2),
            },
            Seen {
                ts: 1_700_000_002_000_000_000,
                link,
                interface: 0,
                wire_len: 0,
                data: vec![],
            },
        ]
    }

    #[test]
    fn pcap_both_byte_orders_micro_and_nano() {
        for (be, nanos, linktype, link) in [
            (false, false, 1, LinkType::Ethernet),
            (true, false, 113, LinkType::LinuxSll),
            (false, true, 101, LinkType::Raw),
            (true, true, 276, LinkType::LinuxSll2),
        ] {
            let (bytes, _) = pcap_file(be, nanos, linktype);
            let (frames, error) = read_all(&bytes);
            assert!(error.is_none(), "{error:?}");
            assert_eq!(frames, expect_pcap(nanos, link), "be={be} nanos={nanos}");
        }
    }

    #[test]
    fn pcap_link_type_upper_bits_are_fcs_flags() {
        // FCS present (bit 26) with a 4-byte FCS length (bits 28–31) on Ethernet.
        let (bytes, _) = pcap_file(false, false, 1 | (1 << 26) | (2 << 28));
        let (frames, error) = read_all(&bytes);
        assert!(error.is_none());
        assert!(frames.iter().all(|f| f.link == LinkType::Ethernet));
        let (bytes, _) = pcap_file(false, false, 147);
        assert!(read_all(&bytes)
            .0
            .iter()
            .all(|f| f.link == LinkType::Unsupported(147)));
    }

    #[test]
    fn pcap_modified_format_has_24_byte_record_headers() {
        let mut out = Vec::new();
        put32(&mut out, false, 0xa1b2_cd34);
        out.extend_from_slice(&pcap_header(false, false, 1)[4..]);
        for (i, len) in [(0u32, 70usize), (1, 80)] {
            put32(&mut out, false, 10 + i);
            put32(&mut out, false, 5);
            put32(&mut out, false, len as u32);
            put32(&mut out, false, len as u32);
            out.extend_from_slice(&[0; 8]); // ifindex, protocol, pkt_type, pad
            out.extend_from_slice(&frame_bytes(len, i as u8));
        }
        let (frames, error) = read_all(&out);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].ts, 11_000_005_000);
        assert_eq!(frames[1].data, frame_bytes(80, 1));
    }

    #[test]
    fn pcap_cut_anywhere_gives_complete_frames_then_truncated() {
        let (bytes, starts) = pcap_file(false, false, 1);
        let expected = expect_pcap(false, LinkType::Ethernet);
        for cut in PCAP_HEADER_LEN..bytes.len() {
            let (frames, error) = read_all(&bytes[..cut]);
            // Records wholly before the cut come out; a cut exactly between records is a clean end.
            let whole = starts
                .iter()
                .skip(1)
                .chain(std::iter::once(&bytes.len()))
                .filter(|&&end| end <= cut)
                .count();
            assert_eq!(frames, expected[..whole], "cut at {cut}");
            if starts.contains(&cut) {
                assert!(error.is_none(), "cut at {cut}: {error:?}");
            } else {
                match error {
                    Some(CaptureError::Truncated { offset, .. }) => {
                        assert_eq!(offset, starts[whole] as u64, "cut at {cut}")
                    }
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
        }
        // A file cut inside its own header.
        for cut in 4..PCAP_HEADER_LEN {
            assert!(
                matches!(
                    open_error(&bytes[..cut]),
                    CaptureError::Truncated { offset: 0, .. }
                ),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn pcap_oversized_record_is_corrupt() {
        let (mut bytes, _) = pcap_file(true, false, 1);
        let bad_at = bytes.len() as u64;
        put32(&mut bytes, true, 1);
        put32(&mut bytes, true, 0);
        put32(&mut bytes, true, 0xffff_fff0); // captured length
        put32(&mut bytes, true, 0xffff_fff0);
        bytes.extend_from_slice(&[0; 100]);
        let (frames, error) = read_all(&bytes);
        assert_eq!(frames.len(), 3);
        match error {
            Some(CaptureError::Corrupt { offset, .. }) => assert_eq!(offset, bad_at),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_larger_than_the_initial_buffer_and_many_small_ones() {
        // Frames of many sizes, one of 1 MiB and one of 3 MiB: the buffer compacts and grows, and
        // every byte still comes out in place.
        let mut bytes = pcap_header(false, true, 1);
        let mut expected = Vec::new();
        let mut sizes: Vec<usize> = (0..3000).map(|i| (i * 7919) % 1600).collect();
        sizes.insert(1000, 1 << 20);
        sizes.insert(2000, 3 << 20);
        for (i, &n) in sizes.iter().enumerate() {
            let data = frame_bytes(n, i as u8);
            pcap_record(&mut bytes, false, i as u32, 7, &data, n as u32);
            expected.push(Seen {
                ts: i as u64 * 1_000_000_000 + 7,
                link: LinkType::Ethernet,
                interface: 0,
                wire_len: n as u32,
                data,
            });
        }
        let (frames, error) = read_all(&bytes);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(frames.len(), expected.len());
        for (i, (got, want)) in frames.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "frame {i}");
        }
    }

    #[test]
    fn not_a_capture() {
        assert!(matches!(
            open_error(b""),
            CaptureError::UnknownFormat { .. }
        ));
        assert!(matches!(
            open_error(b"\xd4\xc3"),
            CaptureError::UnknownFormat { .. }
        ));
        assert!(matches!(
            open_error(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
            CaptureError::UnknownFormat { .. }
        ));
        // The pcapng magic without a valid byte-order magic.
        let mut ng = NG_SHB.to_vec();
        ng.extend_from_slice(&[28, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0]);
        assert!(matches!(
            open_error(&ng),
            CaptureError::UnknownFormat { .. }
        ));
        let missing = std::env::temp_dir().join("tdswatch-capture-file-does-not-exist.pcap");
        assert!(matches!(
            FileSource::open(&missing),
            Err(CaptureError::Io { .. })
        ));
    }

    // ---- pcapng ----

    /// Writes pcapng blocks in one byte order.
    struct Ng {
        be: bool,
        out: Vec<u8>,
        /// Offset of every block written.
        starts: Vec<usize>,
    }

    impl Ng {
        fn new(be: bool) -> Self {
            let mut ng = Ng {
                be,
                out: Vec::new(),
                starts: Vec::new(),
            };
            ng.shb();
            ng
        }

        fn block(&mut self, block_type: u32, body: &[u8]) {
            let mut body = body.to_vec();
            while body.len() % 4 != 0 {
                body.push(0);
            }
            let len = 12 + body.len() as u32;
            self.starts.push(self.out.len());
            let be = self.be;
            put32(&mut self.out, be, block_type);
            put32(&mut self.out, be, len);
            self.out.extend_from_slice(&body);
            put32(&mut self.out, be, len);
        }

        fn option(&self, body: &mut Vec<u8>, code: u16, value: &[u8]) {
            put16(body, self.be, code);
            put16(body, self.be, value.len() as u16);
            body.extend_from_slice(value);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }

        fn shb(&mut self) {
            let mut body = Vec::new();
            put32(&mut body, self.be, 0x1a2b_3c4d);
            put16(&mut body, self.be, 1);
            put16(&mut body, self.be, 0);
            body.extend_from_slice(&[0xff; 8]); // section length: unknown
            self.option(&mut body, 4, b"tdswatch test"); // shb_userappl
            self.option(&mut body, 0, b"");
            self.block(0x0a0d_0d0a, &body);
        }

        fn idb(&mut self, linktype: u16, snaplen: u32, tsresol: Option<u8>, tsoffset: Option<i64>) {
            let mut body = Vec::new();
            put16(&mut body, self.be, linktype);
            put16(&mut body, self.be, 0);
            put32(&mut body, self.be, snaplen);
            self.option(&mut body, 2, b"eth0"); // if_name
            if let Some(r) = tsresol {
                self.option(&mut body, 9, &[r]);
            }
            if let Some(o) = tsoffset {
                let v = if self.be {
                    o.to_be_bytes()
                } else {
                    o.to_le_bytes()
                };
                self.option(&mut body, 14, &v);
            }
            self.option(&mut body, 0, b"");
            self.block(1, &body);
        }

        fn epb(&mut self, if_id: u32, units: u64, data: &[u8], wire_len: u32, with_options: bool) {
            let mut body = Vec::new();
            put32(&mut body, self.be, if_id);
            put32(&mut body, self.be, (units >> 32) as u32);
            put32(&mut body, self.be, units as u32);
            put32(&mut body, self.be, data.len() as u32);
            put32(&mut body, self.be, wire_len);
            body.extend_from_slice(data);
            while body.len() % 4 != 0 {
                body.push(0);
            }
            if with_options {
                let flags = if self.be {
                    1u32.to_be_bytes()
                } else {
                    1u32.to_le_bytes()
                };
                self.option(&mut body, 2, &flags); // epb_flags: inbound
                self.option(&mut body, 0, b"");
            }
            self.block(6, &body);
        }

        fn spb(&mut self, data: &[u8], wire_len: u32) {
            let mut body = Vec::new();
            put32(&mut body, self.be, wire_len);
            body.extend_from_slice(data);
            self.block(3, &body);
        }

        fn obsolete_pb(&mut self, if_id: u16, units: u64, data: &[u8], wire_len: u32) {
            let mut body = Vec::new();
            put16(&mut body, self.be, if_id);
            put16(&mut body, self.be, 0); // drops
            put32(&mut body, self.be, (units >> 32) as u32);
            put32(&mut body, self.be, units as u32);
            put32(&mut body, self.be, data.len() as u32);
            put32(&mut body, self.be, wire_len);
            body.extend_from_slice(data);
            self.block(2, &body);
        }

        fn other_blocks(&mut self) {
            // Name resolution (with an IPv4 record), interface statistics, decryption secrets,
            // custom, and a type nobody knows.
            let mut nrb = Vec::new();
            put16(&mut nrb, self.be, 1);
            put16(&mut nrb, self.be, 13);
            nrb.extend_from_slice(&[
                10, 0, 0, 2, b'd', b'b', b'.', b'l', b'o', b'c', b'a', b'l', 0,
            ]);
            while nrb.len() % 4 != 0 {
                nrb.push(0);
            }
            nrb.extend_from_slice(&[0; 4]);
            self.block(4, &nrb);
            let mut isb = Vec::new();
            put32(&mut isb, self.be, 0);
            put32(&mut isb, self.be, 0);
            put32(&mut isb, self.be, 0);
            self.block(5, &isb);
            self.block(10, &[0x54, 0x4c, 0x53, 0x4b, 0, 0, 0, 0]);
            self.block(0x0000_0bad, &[1, 2, 3, 4, 5, 6, 7, 8]);
            self.block(0x4000_1234, &[9; 12]);
        }
    }

    /// Two interfaces of different link types and resolutions, every packet block kind, and blocks
    /// to skip in between.
    fn pcapng_two_interfaces(be: bool) -> (Ng, Vec<Seen>) {
        let mut ng = Ng::new(be);
        let mut want = Vec::new();
        // Interface 0: Ethernet, default resolution (µs), snap length 64.
        ng.idb(1, 64, None, None);
        // Interface 1: raw IP, nanoseconds, clock offset of 1000 s.
        ng.idb(101, 0, Some(9), Some(1000));
        ng.other_blocks();
        let t = 1_700_000_000u64;
        ng.epb(0, t * 1_000_000 + 250_000, &frame_bytes(60, 1), 60, false);
        want.push(Seen {
            ts: t * 1_000_000_000 + 250_000_000,
            link: LinkType::Ethernet,
            interface: 0,
            wire_len: 60,
            data: frame_bytes(60, 1),
        });
        ng.epb(1, t * 1_000_000_000 + 7, &frame_bytes(41, 2), 41, true);
        want.push(Seen {
            ts: (t + 1000) * 1_000_000_000 + 7,
            link: LinkType::Raw,
            interface: 1,
            wire_len: 41,
            data: frame_bytes(41, 2),
        });
        ng.other_blocks();
        // Simple packet: interface 0, cut to its snap length 64, timestamp of the previous packet.
        ng.spb(&frame_bytes(80, 3), 80);
        want.push(Seen {
            ts: (t + 1000) * 1_000_000_000 + 7,
            link: LinkType::Ethernet,
            interface: 0,
            wire_len: 80,
            data: frame_bytes(64, 3),
        });
        // Simple packet shorter than the snap length, padded in the block.
        ng.spb(&frame_bytes(33, 4), 33);
        want.push(Seen {
            ts: (t + 1000) * 1_000_000_000 + 7,
            link: LinkType::Ethernet,
            interface: 0,
            wire_len: 33,
            data: frame_bytes(33, 4),
        });
        // Interface 2, declared after packets: SLL, 2^-20 s units, negative offset.
        ng.idb(113, 0, Some(0x80 | 20), Some(-100));
        ng.epb(2, (t << 20) + (1 << 19), &frame_bytes(70, 5), 1500, false);
        want.push(Seen {
            ts: (t - 100) * 1_000_000_000 + 500_000_000,
            link: LinkType::LinuxSll,
            interface: 2,
            wire_len: 1500,
            data: frame_bytes(70, 5),
        });
        ng.obsolete_pb(1, t * 1_000_000_000 + 9, &frame_bytes(55, 6), 55);
        want.push(Seen {
            ts: (t + 1000) * 1_000_000_000 + 9,
            link: LinkType::Raw,
            interface: 1,
            wire_len: 55,
            data: frame_bytes(55, 6),
        });
        (ng, want)
    }

    #[test]
    fn pcapng_interfaces_resolutions_and_block_kinds() {
        for be in [false, true] {
            let (ng, want) = pcapng_two_interfaces(be);
            let (frames, error) = read_all(&ng.out);
            assert!(error.is_none(), "be={be}: {error:?}");
            assert_eq!(frames, want, "be={be}");
        }
    }

    #[test]
    fn pcapng_several_sections() {
        // Section 1 (little-endian): interfaces 0 and 1. Section 2 (big-endian): its interface 0 is
        // a different interface, numbered after section 1's.
        let (mut first, mut want) = pcapng_two_interfaces(false);
        let mut second = Ng::new(true);
        second.idb(276, 0, Some(3), None); // SLL2, milliseconds
        second.epb(0, 1_700_000_000_123, &frame_bytes(50, 9), 50, false);
        first.out.extend_from_slice(&second.out);
        want.push(Seen {
            ts: 1_700_000_000_123_000_000,
            link: LinkType::LinuxSll2,
            interface: 3,
            wire_len: 50,
            data: frame_bytes(50, 9),
        });
        let (frames, error) = read_all(&first.out);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(frames, want);
    }

    #[test]
    fn pcapng_cut_anywhere_gives_complete_frames_then_truncated() {
        let (ng, want) = pcapng_two_interfaces(false);
        let bytes = &ng.out;
        let mut packet_ends = Vec::new(); // end offset of every packet block, in order
        for (i, &start) in ng.starts.iter().enumerate() {
            let end = ng.starts.get(i + 1).copied().unwrap_or(bytes.len());
            let block_type = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
            if matches!(block_type, 2 | 3 | 6) {
                packet_ends.push(end);
            }
        }
        assert_eq!(packet_ends.len(), want.len());
        let shb_len = ng.starts[1];
        for cut in 12..bytes.len() {
            let file = TempFile::new(&bytes[..cut]);
            let mut source = FileSource::open(&file.0).unwrap();
            let mut frames = 0;
            let error = loop {
                match source.next_frame() {
                    Ok(Some(f)) => {
                        assert_eq!(f.data, &want[frames].data[..], "cut {cut}");
                        frames += 1;
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            assert_eq!(
                frames,
                packet_ends.iter().filter(|&&e| e <= cut).count(),
                "cut {cut}"
            );
            let last_block_start = ng
                .starts
                .iter()
                .copied()
                .filter(|&s| s <= cut)
                .max()
                .unwrap();
            if ng.starts.contains(&cut) {
                assert!(error.is_none(), "cut {cut}: {error:?}");
            } else {
                match error {
                    Some(CaptureError::Truncated { offset, .. }) => {
                        assert_eq!(offset, last_block_start as u64)
                    }
                    other => panic!("cut {cut}: {other:?}"),
                }
            }
        }
        // Cut inside the first section header, before its byte-order magic is complete.
        for cut in 4..12 {
            assert!(matches!(
                open_error(&bytes[..cut]),
                CaptureError::Truncated { offset: 0, .. }
            ));
        }
        assert!(shb_len > 12);
    }

    /// The file of `pcapng_two_interfaces` with the block at `index` rewritten by `f`: the frames
    /// before it, then `Corrupt` at its offset.
    fn corrupt_block(index: usize, f: impl Fn(&mut [u8])) {
        let (ng, want) = pcapng_two_interfaces(false);
        let mut bytes = ng.out.clone();
        let start = ng.starts[index];
        let end = ng.starts.get(index + 1).copied().unwrap_or(bytes.len());
        f(&mut bytes[start..end]);
        let before = ng.starts[..index]
            .iter()
            .filter(|&&s| {
                matches!(
                    u32::from_le_bytes(ng.out[s..s + 4].try_into().unwrap()),
                    2 | 3 | 6
                )
            })
            .count();
        let (frames, error) = read_all(&bytes);
        assert_eq!(frames, want[..before], "block {index}");
        match error {
            Some(CaptureError::Corrupt { offset, detail, .. }) => {
                assert_eq!(offset, start as u64, "block {index}: {detail}");
            }
            other => panic!("block {index}: {other:?}"),
        }
    }

    #[test]
    fn pcapng_corrupt_blocks() {
        let (ng, _) = pcapng_two_interfaces(false);
        let epb_index = ng
            .starts
            .iter()
            .position(|&s| u32::from_le_bytes(ng.out[s..s + 4].try_into().unwrap()) == 6)
            .unwrap();
        let second_epb = epb_index + 1;
        let spb_index = ng.starts.iter().position(|&s| ng.out[s] == 3).unwrap();
        let set32 =
            |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        // Block length not a multiple of 4, too small, beyond the limit, trailer mismatch.
        corrupt_block(epb_index, |b| set32(b, 4, 0x4d));
        corrupt_block(epb_index, |b| set32(b, 4, 8));
        corrupt_block(epb_index, |b| set32(b, 4, 32 << 20));
        corrupt_block(epb_index, |b| {
            let n = b.len();
            set32(b, n - 4, 12)
        });
        // Packet for an interface that was never described.
        corrupt_block(second_epb, |b| set32(b, 8, 7));
        // Captured length beyond the block.
        corrupt_block(second_epb, |b| set32(b, 20, 4000));
        corrupt_block(second_epb, |b| set32(b, 20, u32::MAX));
        // A truncated interface description (length 16 < its 20-byte minimum).
        corrupt_block(1, |b| {
            set32(b, 4, 16);
            set32(b, 12, 16);
        });
        // A section header whose byte-order magic is broken, and one of version 2.
        let (mut two, _) = pcapng_two_interfaces(false);
        let second_shb = two.out.len();
        two.shb();
        let mut bad = two.out.clone();
        bad[second_shb + 8] = 0x99;
        match read_all(&bad) {
            (frames, Some(CaptureError::Corrupt { offset, .. })) => {
                assert_eq!(frames.len(), 6);
                assert_eq!(offset, second_shb as u64);
            }
            other => panic!("{other:?}"),
        }
        bad = two.out.clone();
        bad[second_shb + 12] = 2;
        assert!(matches!(read_all(&bad), (f, Some(CaptureError::Corrupt { .. })) if f.len() == 6));
        // A simple packet block with no room for its length field.
        corrupt_block(spb_index, |b| {
            set32(b, 4, 12);
            set32(b, 8, 12);
        });
    }

    #[test]
    fn pcapng_packet_before_any_interface_is_corrupt() {
        let mut ng = Ng::new(false);
        ng.epb(0, 1, &[1, 2, 3], 3, false);
        match read_all(&ng.out) {
            (frames, Some(CaptureError::Corrupt { offset, .. })) => {
                assert!(frames.is_empty());
                assert_eq!(offset, ng.starts[1] as u64);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_after_a_valid_start_never_panics() {
        // Deterministic xorshift bytes after a pcapng section header and after a pcap header: the
        // reader must end with frames, None or an error, never a panic or a runaway allocation.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (ng, _) = pcapng_two_interfaces(false);
        for round in 0..300 {
            let mut bytes = if round % 2 == 0 {
                ng.out[..ng.starts[3]].to_vec()
            } else {
                pcap_header(false, false, 1)
            };
            let n = (rand() % 600) as usize;
            for _ in 0..n {
                bytes.push(rand() as u8);
            }
            let _ = read_all(&bytes);
        }
        // Every single-byte corruption of a valid pcapng file.
        for i in 0..ng.out.len() {
            let mut bytes = ng.out.clone();
            bytes[i] ^= 0xa5;
            let file = TempFile::new(&bytes);
            if let Ok(mut source) = FileSource::open(&file.0) {
                while let Ok(Some(_)) = source.next_frame() {}
            }
        }
    }

    #[test]
    fn ng_timestamp_resolutions() {
        assert_eq!(ng_timestamp(1_500, 3, 0), Timestamp(1_500_000_000));
        assert_eq!(ng_timestamp(1_500, 6, 0), Timestamp(1_500_000));
        assert_eq!(ng_timestamp(1_500, 9, 0), Timestamp(1_500));
        assert_eq!(ng_timestamp(1_500, 0, 0), Timestamp(1_500_000_000_000));
        assert_eq!(ng_timestamp(1_500_000, 12, 0), Timestamp(1_500));
        assert_eq!(
            ng_timestamp(3 << 10, 0x80 | 10, 0),
            Timestamp(3_000_000_000)
        );
        assert_eq!(ng_timestamp(1, 0x80 | 1, 0), Timestamp(500_000_000));
        assert_eq!(
            ng_timestamp(5 << 32, 0x80 | 32, 2),
            Timestamp(7_000_000_000)
        );
        assert_eq!(ng_timestamp(10, 6, -1), Timestamp(0)); // before the epoch: clamped
        assert_eq!(ng_timestamp(u64::MAX, 0, i64::MAX), Timestamp(u64::MAX)); // saturates
        assert_eq!(ng_timestamp(u64::MAX, 0x7f, 0), Timestamp(0));
        assert_eq!(ng_timestamp(u64::MAX, 0xff, 0), Timestamp(0));
        assert_eq!(ng_timestamp(u64::MAX, 40, 0), Timestamp(0));
    }

    /// The public captures, read from the shared directory (never copied into the repository):
    /// `../shared` beside the project as CI lays it out, or one level further up for a git worktree
    /// kept under a directory of worktrees. Missing captures fail the test.
    pub(crate) fn public_capture(name: &str) -> PathBuf {
        let candidates = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures/public/"),
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/captures/public/"
            ),
        ];
        let dir = candidates.iter().map(PathBuf::from).find(|d| d.is_dir());
        let dir = dir.unwrap_or_else(|| panic!("public captures not found at {}", candidates[0]));
        dir.join(name)
    }

    /// Frame counts (from the brief), and first / last timestamps and captured bytes as tshark
    /// reports them.
    pub(crate) const PUBLIC_CAPTURES: [(&str, usize); 11] = [
        ("0x5CE-beats__mssql_15x_login_and_select.pcap", 31),
        ("0x5CE-beats__mssql_login.pcap", 44),
        ("0x5CE-beats__mssql_login_and_select.pcap", 50),
        ("arkime__ntlm_synthetic.pcap", 218),
        ("arkime__tds5.pcap", 10),
        ("arkime__tds7.pcap", 13),
        ("mrp__tds.pcap", 1000),
        ("nDPI__mssql_tds.pcap", 38),
        ("nDPI__tls_alert.pcap", 18),
        ("tdspsql__tds.pcap", 9),
        ("zeek__tls__dhe.pcap", 24),
    ];
    const PUBLIC_TIMES_AND_BYTES: [(u64, u64, u64); 11] = [
        (1_660_139_511_218_142_000, 1_660_139_515_778_552_000, 5128),
        (1_658_849_785_759_314_000, 1_658_849_791_484_639_000, 9480),
        (1_658_849_809_127_934_000, 1_658_849_824_659_220_000, 10352),
        (1_700_000_000_010_000_000, 1_700_000_007_864_000_000, 21233),
        (1_465_335_293_231_796_000, 1_465_335_293_242_587_000, 1514),
        (1_164_995_541_720_529_000, 1_164_995_541_734_782_000, 1736),
        (0, 999_000_000_000, 2_539_370),
        (1_240_877_917_888_015_000, 1_278_068_444_666_075_000, 16260),
        (1_628_259_176_203_392_000, 1_642_662_407_022_000_000, 1485),
        (1_441_537_433_180_917_000, 1_441_537_435_988_906_000, 1309),
        (1_398_558_136_187_348_000, 1_398_558_140_053_999_000, 6521),
    ];

    #[test]
    fn public_captures_read_completely() {
        // nDPI__tls_alert.pcap is in fact pcapng (one Ethernet interface, µs); the rest are pcap.
        for ((name, count), (first_ts, last_ts, bytes)) in
            PUBLIC_CAPTURES.into_iter().zip(PUBLIC_TIMES_AND_BYTES)
        {
            let path = public_capture(name);
            let mut source = FileSource::open(&path).unwrap_or_else(|e| panic!("{e}"));
            let mut seen = Vec::new();
            let mut captured = 0u64;
            while let Some(frame) = source.next_frame().unwrap_or_else(|e| panic!("{e}")) {
                seen.push(frame.ts.0);
                captured += frame.data.len() as u64;
                assert_eq!(frame.interface, 0, "{name}");
                assert_ne!(frame.link, LinkType::Unsupported(0), "{name}");
            }
            assert_eq!(seen.len(), count, "{name}");
            assert_eq!(seen.first().copied(), Some(first_ts), "{name}");
            assert_eq!(seen.last().copied(), Some(last_ts), "{name}");
            assert_eq!(captured, bytes, "{name}");
            let p = source.progress();
            assert_eq!(Some(p.bytes_read), p.bytes_total, "{name}");
            assert_eq!(p.bytes_total, Some(std::fs::metadata(&path).unwrap().len()));
        }
    }
}
