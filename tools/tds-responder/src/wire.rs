//! The byte level of one connection: TDS message framing, the stream OpenSSL runs its handshake
//! over (TLS records wrapped in PRELOGIN packets, or raw records, decided per read unit), a watcher
//! that follows the clear-text handshake to fire faults at the right moment, and RST by `SO_LINGER`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub const TYPE_SQL_BATCH: u8 = 0x01;
pub const TYPE_RPC: u8 = 0x03;
pub const TYPE_RESPONSE: u8 = 0x04;
pub const TYPE_ATTENTION: u8 = 0x06;
pub const TYPE_LOGIN7: u8 = 0x10;
pub const TYPE_PRELOGIN: u8 = 0x12;

/// Largest TDS message the responder accepts (LOGIN7 and batches are far smaller).
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest TLS record body (2^14 plus the expansion TLS allows).
const MAX_RECORD: usize = 16_384 + 2_048;

/// Reads one TDS message (packets until end-of-message). `Ok(None)` on a clean EOF before it.
pub fn read_message<R: Read + ?Sized>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut payload = Vec::new();
    let mut first_type = None;
    loop {
        let mut h = [0u8; 8];
        let mut got = 0;
        while got < h.len() {
            let n = r.read(&mut h[got..])?;
            if n == 0 {
                if got == 0 && first_type.is_none() {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < 8 || payload.len() + len > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad TDS packet length",
            ));
        }
        let start = payload.len();
        payload.resize(start + len - 8, 0);
        r.read_exact(&mut payload[start..])?;
        first_type.get_or_insert(h[0]);
        if h[1] & 0x01 != 0 {
            return Ok(first_type.map(|t| (t, payload)));
        }
    }
}

/// Writes `payload` as one TDS message split into packets of at most `packet_size` bytes.
pub fn write_message<W: Write + ?Sized>(
    w: &mut W,
    ty: u8,
    payload: &[u8],
    packet_size: usize,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    tdsgen::tds::push_message(&mut out, ty, 0, payload, packet_size);
    w.write_all(&out)?;
    w.flush()
}

/// Makes the next close of this socket send RST instead of FIN.
pub fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is an open socket owned by `s` for the whole call, and the pointer and
    // length describe a live, correctly sized `linger` value that setsockopt only reads.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends FIN, then reads and discards until the peer closes or `limit` passes, so that the final
/// close does not turn into a RST because of unread data.
pub fn fin_and_drain(s: &TcpStream, limit: Duration) {
    let _ = s.shutdown(Shutdown::Write);
    drain(s, limit);
}

/// Reads and discards until EOF, an error, or `limit`.
pub fn drain(mut s: &TcpStream, limit: Duration) {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// TLS ≤ 1.2 suites with an ephemeral finite-field Diffie-Hellman key exchange (IANA ids).
pub fn is_dhe_suite(id: u16) -> bool {
    matches!(
        id,
        0x0011..=0x0016
            | 0x0032
            | 0x0033
            | 0x0038
            | 0x0039
            | 0x0040
            | 0x0044
            | 0x0045
            | 0x0067
            | 0x006a
            | 0x006b
            | 0x0087
            | 0x0088
            | 0x0099
            | 0x009a
            | 0x009e
            | 0x009f
            | 0x00a2
            | 0x00a3
            | 0x00bd
            | 0x00be
            | 0x00c3
            | 0x00c4
            | 0xc042..=0xc045
            | 0xc052
            | 0xc053
            | 0xc056
            | 0xc057
            | 0xc07c
            | 0xc07d
            | 0xc080
            | 0xc081
            | 0xc09e
            | 0xc09f
            | 0xc0a2
            | 0xc0a3
            | 0xccaa
    )
}

/// What the peer has shown of its handshake so far, read from the clear-text records.
#[derive(Debug, Default)]
pub struct Watch {
    partial: Vec<u8>,
    handshake: Vec<u8>,
    ccs: bool,
    broken: bool,
    pub client_hello: bool,
    pub key_exchange: bool,
    pub finished: bool,
}

impl Watch {
    /// Feeds bytes of the peer's TLS record stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        self.partial.extend_from_slice(bytes);
        let mut at = 0;
        while self.partial.len() - at >= 5 {
            let ty = self.partial[at];
            let len = usize::from(u16::from_be_bytes([
                self.partial[at + 3],
                self.partial[at + 4],
            ]));
            if !(0x14..=0x17).contains(&ty) || len > MAX_RECORD {
                self.broken = true;
                self.partial = Vec::new();
                return;
            }
            if self.partial.len() - at < 5 + len {
                break;
            }
            let body = at + 5..at + 5 + len;
            match ty {
                0x14 => self.ccs = true,
                0x16 if self.ccs => self.finished = true,
                0x16 => {
                    let (h, p) = (&mut self.handshake, &self.partial[body]);
                    h.extend_from_slice(p);
                    self.parse_handshake();
                }
                _ => {}
            }
            at += 5 + len;
        }
        self.partial.drain(..at);
    }

    fn parse_handshake(&mut self) {
        let mut at = 0;
        while self.handshake.len() - at >= 4 {
            let h = &self.handshake[at..];
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            if len > 1 << 16 {
                self.broken = true;
                return;
            }
            if h.len() < 4 + len {
                break;
            }
            match h[0] {
                1 => self.client_hello = true,
                16 => self.key_exchange = true,
                _ => {}
            }
            at += 4 + len;
        }
        self.handshake.drain(..at);
    }
}

/// The cipher suite of a ServerHello at the start of a flight of TLS records, if it is one.
pub fn server_hello_suite(flight: &[u8]) -> Option<u16> {
    // record header (5), handshake header (4), version (2), random (32), session id
    if flight.len() < 5 + 4 + 2 + 32 + 1 || flight[0] != 0x16 || flight[5] != 2 {
        return None;
    }
    let sid = usize::from(flight[5 + 4 + 2 + 32]);
    let at = 5 + 4 + 2 + 32 + 1 + sid;
    let b = flight.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// A fault the stream fires on its own, in the middle of OpenSSL's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Triggers {
    pub fin_after_client_hello: bool,
    pub fin_after_server_hello: bool,
    pub fin_after_key_exchange: bool,
    pub rst_after_key_exchange: bool,
    /// RST after the client's Finished when the chosen suite is DHE.
    pub rst_after_dhe_finished: bool,
}

/// How the stream ended the connection, when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    Fin,
    Rst,
}

/// The stream OpenSSL reads and writes. Incoming, when `unwrap` is set, each unit is either a TDS
/// packet (its payload is passed on) or a bare TLS record (passed on whole): the first byte tells,
/// since TLS content types are 0x14–0x17 and no TDS packet type is. Outgoing, when `wrap` is set,
/// whatever OpenSSL writes before a flush (one flight) leaves as one PRELOGIN message split into
/// packets of `packet_size`.
#[derive(Debug)]
pub struct Wire {
    pub tcp: TcpStream,
    pub unwrap: bool,
    pub wrap: bool,
    pub packet_size: usize,
    pub watching: bool,
    pub watch: Watch,
    pub triggers: Triggers,
    pub fired: Option<Fired>,
    /// The suite of the ServerHello this side sent.
    pub suite: Option<u16>,
    /// Bare TLS records received while unwrapping (the msodbc18/jTDS/FreeTDS quirk).
    pub raw_records: u32,
    /// Wrapped TDS packets received.
    pub wrapped_packets: u32,
    out: Vec<u8>,
    unit: Vec<u8>,
    unit_pos: usize,
}

impl Wire {
    pub fn new(tcp: TcpStream, unwrap: bool, wrap: bool, packet_size: usize) -> Wire {
        Wire {
            tcp,
            unwrap,
            wrap,
            packet_size,
            watching: true,
            watch: Watch::default(),
            triggers: Triggers::default(),
            fired: None,
            suite: None,
            raw_records: 0,
            wrapped_packets: 0,
            out: Vec::new(),
            unit: Vec::new(),
            unit_pos: 0,
        }
    }

    /// Stops wrapping, unwrapping and watching: the handshake is over.
    pub fn bare(&mut self) {
        self.unwrap = false;
        self.wrap = false;
        self.watching = false;
    }

    fn fire(&mut self, f: Fired) -> io::Error {
        self.fired = Some(f);
        match f {
            Fired::Fin => {
                let _ = self.tcp.shutdown(Shutdown::Write);
            }
            Fired::Rst => {
                let _ = set_linger_zero(&self.tcp);
            }
        }
        io::Error::other("fault injected")
    }

    fn read_full(&mut self, at: usize, n: usize) -> io::Result<()> {
        self.unit.resize(at + n, 0);
        self.tcp.read_exact(&mut self.unit[at..at + n])
    }

    /// Loads the next unit; `false` on EOF.
    fn load_unit(&mut self) -> io::Result<bool> {
        self.unit.clear();
        self.unit_pos = 0;
        if !self.unwrap {
            self.unit.resize(16_384, 0);
            let n = self.tcp.read(&mut self.unit)?;
            self.unit.truncate(n);
            return Ok(n > 0);
        }
        let mut first = [0u8; 1];
        if self.tcp.read(&mut first)? == 0 {
            return Ok(false);
        }
        self.unit.push(first[0]);
        if (0x14..=0x17).contains(&first[0]) {
            self.read_full(1, 4)?;
            let len = usize::from(u16::from_be_bytes([self.unit[3], self.unit[4]]));
            if len > MAX_RECORD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS record too long",
                ));
            }
            self.read_full(5, len)?;
            self.raw_records += 1;
        } else {
            self.read_full(1, 7)?;
            let len = usize::from(u16::from_be_bytes([self.unit[2], self.unit[3]]));
            if len < 8 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad TDS packet length",
                ));
            }
            self.read_full(8, len - 8)?;
            self.unit_pos = 8;
            self.wrapped_packets += 1;
        }
        Ok(true)
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fired.is_some() {
            return Err(io::Error::other("connection closed by fault"));
        }
        if self.unit_pos >= self.unit.len() {
            if !self.load_unit()? {
                return Ok(0);
            }
            if self.watching {
                self.watch.feed(&self.unit[self.unit_pos..]);
                let (w, t) = (&self.watch, self.triggers);
                let dhe = self.suite.is_some_and(is_dhe_suite);
                if t.fin_after_client_hello && w.client_hello
                    || t.fin_after_key_exchange && w.key_exchange
                {
                    return Err(self.fire(Fired::Fin));
                }
                if t.rst_after_key_exchange && w.key_exchange
                    || t.rst_after_dhe_finished && dhe && w.finished
                {
                    return Err(self.fire(Fired::Rst));
                }
            }
        }
        let n = buf.len().min(self.unit.len() - self.unit_pos);
        buf[..n].copy_from_slice(&self.unit[self.unit_pos..self.unit_pos + n]);
        self.unit_pos += n;
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.fired.is_some() {
            return Err(io::Error::other("connection closed by fault"));
        }
        if self.wrap || self.watching {
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        } else {
            self.tcp.write(buf)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return self.tcp.flush();
        }
        let flight = std::mem::take(&mut self.out);
        let first_suite = self.suite.is_none();
        if self.watching && first_suite {
            self.suite = server_hello_suite(&flight);
        }
        if self.wrap {
            write_message(&mut self.tcp, TYPE_PRELOGIN, &flight, self.packet_size)?;
        } else {
            self.tcp.write_all(&flight)?;
            self.tcp.flush()?;
        }
        if self.watching
            && first_suite
            && self.suite.is_some()
            && self.triggers.fin_after_server_hello
        {
            return Err(self.fire(Fired::Fin));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, 3, 3];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn watch_follows_split_records_and_messages() {
        let mut w = Watch::default();
        let mut hs = vec![16, 0, 0, 3, 1, 2, 3]; // ClientKeyExchange
        hs.extend_from_slice(&[1, 0, 0, 0]); // an empty "ClientHello" after it
        let mut stream = record(0x16, &hs[..5]);
        stream.extend(record(0x16, &hs[5..]));
        stream.extend(record(0x14, &[1]));
        stream.extend(record(0x16, &[0; 40]));
        for b in stream.chunks(3) {
            w.feed(b);
        }
        assert!(w.key_exchange && w.client_hello && w.finished);
    }

    #[test]
    fn watch_gives_up_on_garbage_without_growing() {
        let mut w = Watch::default();
        w.feed(&[0x12, 1, 0, 0x30, 0, 0, 1, 0]);
        w.feed(&[0x16; 100_000]);
        assert!(!w.client_hello && w.partial.is_empty());
    }

    #[test]
    fn server_hello_suite_reads_past_the_session_id() {
        let mut f = vec![0x16, 3, 3, 0, 80, 2, 0, 0, 70, 3, 3];
        f.extend_from_slice(&[7; 32]);
        f.push(2);
        f.extend_from_slice(&[9, 9, 0x00, 0x9e, 0]);
        assert_eq!(server_hello_suite(&f), Some(0x009e));
        assert!(is_dhe_suite(0x009e) && !is_dhe_suite(0xc02f));
        assert_eq!(server_hello_suite(&f[..40]), None);
    }

    #[test]
    fn message_round_trip_across_small_packets() {
        let payload: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let mut v = Vec::new();
        write_message(&mut v, TYPE_LOGIN7, &payload, 512).unwrap();
        assert_eq!(v.len(), payload.len() + 8 * 4);
        let got = read_message(&mut &v[..]).unwrap().unwrap();
        assert_eq!(got, (TYPE_LOGIN7, payload));
        assert!(read_message(&mut &[][..]).unwrap().is_none());
        assert!(read_message(&mut &[0x10, 1, 0, 2, 0, 0, 0, 0][..]).is_err());
    }
}
