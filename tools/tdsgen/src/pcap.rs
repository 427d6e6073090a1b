//! Classic pcap output (LINKTYPE_ETHERNET, microsecond timestamps) and the Ethernet/IPv4/TCP frame
//! encoder, with correct IPv4 and TCP checksums. Knows nothing of TDS or TLS: it writes the bytes and
//! header fields it is given.

use std::io::{self, Write};
use std::net::Ipv4Addr;

pub const LINKTYPE_ETHERNET: u32 = 1;
pub const SNAPLEN: u32 = 65_535;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// Bytes of Ethernet + IPv4 (no options) headers.
pub const ETH_IP_LEN: usize = 14 + 20;
/// TCP options on SYN and SYN-ACK: MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted.
pub const SYN_OPTIONS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2];

/// One end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl Endpoint {
    /// A locally administered MAC derived from the IPv4 address.
    pub fn new(ip: Ipv4Addr, port: u16) -> Endpoint {
        let o = ip.octets();
        Endpoint {
            mac: [0x02, 0x00, o[0], o[1], o[2], o[3]],
            ip,
            port,
        }
    }
}

/// The TCP and IP header fields of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Carry [`SYN_OPTIONS`] (SYN and SYN-ACK).
    pub syn_options: bool,
    pub ip_id: u16,
    pub ttl: u8,
}

/// Encodes one Ethernet/IPv4/TCP frame into `out` (cleared first). Payloads above 65 495 bytes do
/// not fit an IPv4 packet: the caller segments at the MSS long before that; such a payload is cut.
pub fn build_frame(
    out: &mut Vec<u8>,
    src: &Endpoint,
    dst: &Endpoint,
    seg: &Segment,
    payload: &[u8],
) {
    let tcp_hdr = if seg.syn_options {
        20 + SYN_OPTIONS.len()
    } else {
        20
    };
    let max_payload = usize::from(u16::MAX) - 20 - tcp_hdr;
    let payload = payload
        .get(..max_payload.min(payload.len()))
        .unwrap_or(payload);
    out.clear();
    // Ethernet II
    out.extend_from_slice(&dst.mac);
    out.extend_from_slice(&src.mac);
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4
    let ip_start = out.len();
    let total_len = (20 + tcp_hdr + payload.len()) as u16;
    out.push(0x45);
    out.push(0);
    out.extend_from_slice(&total_len.to_be_bytes());
    out.extend_from_slice(&seg.ip_id.to_be_bytes());
    out.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
    out.push(seg.ttl);
    out.push(6);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&src.ip.octets());
    out.extend_from_slice(&dst.ip.octets());
    let ip_sum = checksum_fold(sum_be16(&out[ip_start..ip_start + 20], 0));
    out[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
    // TCP
    let tcp_start = out.len();
    out.extend_from_slice(&src.port.to_be_bytes());
    out.extend_from_slice(&dst.port.to_be_bytes());
    out.extend_from_slice(&seg.seq.to_be_bytes());
    out.extend_from_slice(&seg.ack.to_be_bytes());
    out.push(((tcp_hdr / 4) as u8) << 4);
    out.push(seg.flags);
    out.extend_from_slice(&seg.window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    if seg.syn_options {
        out.extend_from_slice(&SYN_OPTIONS);
    }
    out.extend_from_slice(payload);
    let tcp_len = (tcp_hdr + payload.len()) as u32;
    let mut pseudo = 0u64;
    pseudo = sum_be16(&src.ip.octets(), pseudo);
    pseudo = sum_be16(&dst.ip.octets(), pseudo);
    pseudo += 6 + u64::from(tcp_len);
    let tcp_sum = checksum_fold(sum_be16(&out[tcp_start..], pseudo));
    out[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());
}

/// Adds `data` as big-endian 16-bit words (odd tail padded with zero) to `acc`.
pub fn sum_be16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_be_bytes(w);
        acc += (v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// One's-complement fold and invert: the Internet checksum of the words summed into `acc`.
pub fn checksum_fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Streams a classic pcap file.
pub struct PcapWriter<W: Write> {
    out: W,
    pub packets: u64,
    pub bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header: magic `a1b2c3d4` (microseconds), version 2.4, Ethernet.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            packets: 0,
            bytes: 24,
        })
    }

    /// Writes one record with the timestamp `ts_us` (microseconds since the Unix epoch).
    pub fn write_packet(&mut self, ts_us: u64, frame: &[u8]) -> io::Result<()> {
        let len = frame.len().min(SNAPLEN as usize) as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out
            .write_all(frame.get(..len as usize).unwrap_or(frame))?;
        self.packets += 1;
        self.bytes += 16 + u64::from(len);
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: u8, port: u16) -> Endpoint {
        Endpoint::new(Ipv4Addr::new(10, 0, 0, a), port)
    }

    #[test]
    fn global_header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet(1_700_000_000_123_456, &[0xaa; 60]).unwrap();
        let v = w.into_inner();
        assert_eq!(&v[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&v[4..8], &[2, 0, 4, 0]);
        assert_eq!(&v[16..24], &[0xff, 0xff, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            u32::from_le_bytes(v[24..28].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(u32::from_le_bytes(v[28..32].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_le_bytes(v[32..36].try_into().unwrap()), 60);
        assert_eq!(u32::from_le_bytes(v[36..40].try_into().unwrap()), 60);
        assert_eq!(v.len(), 24 + 16 + 60);
    }

    #[test]
    fn frame_fields_and_checksums_verify() {
        let (c, s) = (ep(1, 50000), ep(2, 1433));
        let seg = Segment {
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
            flags: PSH | ACK,
            window: 1026,
            syn_options: false,
            ip_id: 0x1234,
            ttl: 128,
        };
        let mut f = Vec::new();
        build_frame(&mut f, &c, &s, &seg, b"hello");
        assert_eq!(f.len(), 14 + 20 + 20 + 5);
        assert_eq!(&f[0..6], &s.mac);
        assert_eq!(&f[6..12], &c.mac);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 45); // IPv4 total length
        assert_eq!(f[22], 128);
        assert_eq!(f[23], 6);
        assert_eq!(&f[26..30], &[10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 50000);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 1433);
        assert_eq!(
            u32::from_be_bytes(f[38..42].try_into().unwrap()),
            0x0102_0304
        );
        assert_eq!(
            u32::from_be_bytes(f[42..46].try_into().unwrap()),
            0x0a0b_0c0d
        );
        assert_eq!(f[46], 0x50);
        assert_eq!(f[47], PSH | ACK);
        assert_eq!(&f[54..], b"hello");
        // A correct IPv4 header sums to 0xffff, which folds to a zero checksum.
        assert_eq!(checksum_fold(sum_be16(&f[14..34], 0)), 0);
        // Same for TCP with its pseudo-header.
        let mut acc = sum_be16(&f[26..34], 0);
        acc += 6 + (f.len() - 34) as u64;
        assert_eq!(checksum_fold(sum_be16(&f[34..], acc)), 0);
    }

    #[test]
    fn syn_options_lengthen_the_header() {
        let seg = Segment {
            seq: 1,
            ack: 0,
            flags: SYN,
            window: 64240,
            syn_options: true,
            ip_id: 1,
            ttl: 64,
        };
        let mut f = Vec::new();
        build_frame(&mut f, &ep(1, 1), &ep(2, 2), &seg, &[]);
        assert_eq!(f.len(), 14 + 20 + 32);
        assert_eq!(f[46], 0x80);
        assert_eq!(&f[54..66], &SYN_OPTIONS);
    }

    #[test]
    fn checksum_known_vector() {
        // RFC 1071 example words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0x2ddf0, folded 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum_be16(&d, 0), 0x2ddf0);
        assert_eq!(checksum_fold(sum_be16(&d, 0)), !0xddf2);
        // odd length pads with zero
        assert_eq!(sum_be16(&[0x12, 0x34, 0x56], 0), 0x1234 + 0x5600);
    }
}
