//! Decode: turns one captured frame into a view of its TCP segment (addresses, ports, flags, sequence
//! numbers, payload slice) without copying the payload. Owns link layers (Ethernet with 802.1Q/QinQ
//! tags, Linux SLL/SLL2, raw IP, BSD loopback), IPv4 and IPv6 (with extension headers) and the TCP
//! header. Knows nothing of connections or of what the payload means. Never trusts a length field.

use crate::capture::LinkType;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP header flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A decoded TCP segment, borrowing its payload from the frame.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (0 for IPv6): with seq/ack/flags it tells a duplicated frame from a
    /// retransmission.
    pub ip_id: u16,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// Payload bytes the IP header declares beyond what was captured (snap length, truncated file):
    /// the layer above must treat them as lost, never as present.
    pub missing: u32,
}

/// Why a frame yields no TCP segment. Counted per variant by the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported link type")]
    UnsupportedLink,
    #[error("truncated {0} header")]
    Truncated(Layer),
    #[error("malformed {0} header")]
    Malformed(Layer),
    #[error("not IP")]
    NotIp,
    #[error("not TCP")]
    NotTcp,
    /// A fragment of a TCP packet, first or not (IPv4 MF set or offset ≠ 0, an IPv6 fragment
    /// header other than an atomic one): its header or payload is partly in another frame and
    /// fragments are not reassembled, so it is skipped and counted. Non-TCP fragments are `NotTcp`
    /// when the protocol is known (IPv4).
    #[error("IP fragment")]
    Fragment,
}

/// A protocol layer, for error counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    Link,
    Ipv4,
    Ipv6,
    Tcp,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Link => "link",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Tcp => "TCP",
        })
    }
}

/// Ethertypes this module understands.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
/// 802.1Q VLAN tag, 802.1ad service tag (QinQ) and the older pre-standard QinQ tag.
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// IP protocol / IPv6 next-header numbers.
const PROTO_TCP: u8 = 6;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

/// IPv6 extension headers walked before giving up (a real packet has at most a handful; the bound
/// keeps a hostile chain of tiny headers from costing more than a few branches).
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Which IP parser the link layer hands the packet to.
#[derive(Clone, Copy)]
enum IpVersion {
    V4,
    V6,
}

/// Decodes a frame of the given link type down to its TCP segment.
///
/// Lengths declared by the IP header are trusted only within the captured bytes: bytes after the
/// declared end (Ethernet padding, trailers, FCS) never become payload, and a declared length beyond
/// the capture is reported in [`Segment::missing`]. A declared length of 0 (TCP segmentation or
/// BIG TCP offload seen on the sending host) means "the captured length". Checksums are never
/// verified: offload makes them wrong on the sending host. No allocation.
pub fn decode(link: LinkType, data: &[u8]) -> Result<Segment<'_>, DecodeError> {
    let (version, packet) = link_payload(link, data)?;
    match version {
        IpVersion::V4 => ipv4(packet),
        IpVersion::V6 => ipv6(packet),
    }
}

/// Strips the link layer: the IP version to parse and the bytes from the IP header on.
fn link_payload(link: LinkType, data: &[u8]) -> Result<(IpVersion, &[u8]), DecodeError> {
    const TRUNC: DecodeError = DecodeError::Truncated(Layer::Link);
    match link {
        LinkType::Ethernet => {
            let (hdr, rest) = data.split_first_chunk::<14>().ok_or(TRUNC)?;
            ethertype_payload(u16::from_be_bytes([hdr[12], hdr[13]]), rest)
        }
        LinkType::LinuxSll => {
            let (hdr, rest) = data.split_first_chunk::<16>().ok_or(TRUNC)?;
            ethertype_payload(u16::from_be_bytes([hdr[14], hdr[15]]), rest)
        }
        LinkType::LinuxSll2 => {
            let (hdr, rest) = data.split_first_chunk::<20>().ok_or(TRUNC)?;
            ethertype_payload(u16::from_be_bytes([hdr[0], hdr[1]]), rest)
        }
        LinkType::Raw => match data.first().map(|b| b >> 4) {
            None => Err(TRUNC),
            Some(4) => Ok((IpVersion::V4, data)),
            Some(6) => Ok((IpVersion::V6, data)),
            Some(_) => Err(DecodeError::NotIp),
        },
        LinkType::Ipv4 => Ok((IpVersion::V4, data)),
        LinkType::Ipv6 => Ok((IpVersion::V6, data)),
        LinkType::Null => {
            // Host byte order of the capturing machine, which the file does not record: a family
            // small enough to be real in one order is, in practice, never valid in the other.
            let (fam, rest) = data.split_first_chunk::<4>().ok_or(TRUNC)?;
            let version = bsd_family(u32::from_le_bytes(*fam))
                .or_else(|| bsd_family(u32::from_be_bytes(*fam)))
                .ok_or(DecodeError::NotIp)?;
            Ok((version, rest))
        }
        LinkType::Loop => {
            let (fam, rest) = data.split_first_chunk::<4>().ok_or(TRUNC)?;
            let version = bsd_family(u32::from_be_bytes(*fam)).ok_or(DecodeError::NotIp)?;
            Ok((version, rest))
        }
        LinkType::Unsupported(_) => Err(DecodeError::UnsupportedLink),
    }
}

/// BSD address families: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28 (FreeBSD)
/// or 30 (macOS).
fn bsd_family(family: u32) -> Option<IpVersion> {
    match family {
        2 => Some(IpVersion::V4),
        24 | 28 | 30 => Some(IpVersion::V6),
        _ => None,
    }
}

/// Follows a stack of VLAN tags (any number of 802.1Q / 802.1ad / 0x9100 tags, each 4 bytes) to the
/// IP packet.
fn ethertype_payload(
    mut ethertype: u16,
    mut rest: &[u8],
) -> Result<(IpVersion, &[u8]), DecodeError> {
    loop {
        match ethertype {
            ETHERTYPE_IPV4 => return Ok((IpVersion::V4, rest)),
            ETHERTYPE_IPV6 => return Ok((IpVersion::V6, rest)),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                // Tag: TCI (2 bytes), then the inner ethertype. Each pass consumes 4 bytes, so the
                // loop is bounded by the frame length.
                let (tag, inner) = rest
                    .split_first_chunk::<4>()
                    .ok_or(DecodeError::Truncated(Layer::Link))?;
                ethertype = u16::from_be_bytes([tag[2], tag[3]]);
                rest = inner;
            }
            _ => return Err(DecodeError::NotIp),
        }
    }
}

/// The error for a header that does not fit: `Truncated` when the capture stopped short of the
/// declared packet (snap length, TSO length 0), `Malformed` when the declared packet itself is too
/// short for it.
fn short(capture_short: bool, layer: Layer) -> DecodeError {
    if capture_short {
        DecodeError::Truncated(layer)
    } else {
        DecodeError::Malformed(layer)
    }
}

/// Splits `data` at the declared length `declared` (0 = unknown, use what was captured): the packet,
/// how many declared bytes were not captured, and whether the capture stops inside the packet.
fn clip(data: &[u8], declared: usize) -> (&[u8], u32, bool) {
    if declared == 0 {
        return (data, 0, true);
    }
    match data.split_at_checked(declared) {
        Some((packet, _trailer)) => (packet, 0, false),
        None => {
            let missing = u32::try_from(declared - data.len()).unwrap_or(u32::MAX);
            (data, missing, true)
        }
    }
}

fn ipv4(data: &[u8]) -> Result<Segment<'_>, DecodeError> {
    let h = data
        .first_chunk::<20>()
        .ok_or(DecodeError::Truncated(Layer::Ipv4))?;
    if h[0] >> 4 != 4 {
        return Err(DecodeError::Malformed(Layer::Ipv4));
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || (total_len != 0 && total_len < ihl) {
        return Err(DecodeError::Malformed(Layer::Ipv4));
    }
    if h[9] != PROTO_TCP {
        return Err(DecodeError::NotTcp);
    }
    // MF set or a fragment offset: the TCP header or part of the payload is in another frame.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Err(DecodeError::Fragment);
    }
    let (packet, missing, capture_short) = clip(data, total_len);
    let tcp_bytes = packet
        .get(ihl..)
        .ok_or(DecodeError::Truncated(Layer::Ipv4))?;
    let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    let ip_id = u16::from_be_bytes([h[4], h[5]]);
    tcp(tcp_bytes, src, dst, h[8], ip_id, missing, capture_short)
}

fn ipv6(data: &[u8]) -> Result<Segment<'_>, DecodeError> {
    let (h, body) = data
        .split_first_chunk::<40>()
        .ok_or(DecodeError::Truncated(Layer::Ipv6))?;
    if h[0] >> 4 != 6 {
        return Err(DecodeError::Malformed(Layer::Ipv6));
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // Payload length 0: a jumbogram (hop-by-hop jumbo option) or a BIG TCP / TSO super-packet seen
    // on the sending host; either way the captured bytes are all there is to go on.
    let (mut rest, missing, capture_short) = clip(body, payload_len);
    let mut next = h[6];
    let mut ext_headers = 0usize;
    while next != PROTO_TCP {
        if !matches!(
            next,
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AH | IPV6_DEST_OPTS
        ) {
            // ESP, no-next-header (59), UDP, ICMPv6, mobility, …
            return Err(DecodeError::NotTcp);
        }
        if ext_headers == MAX_IPV6_EXT_HEADERS {
            return Err(DecodeError::Malformed(Layer::Ipv6));
        }
        ext_headers += 1;
        // Every extension header is at least 8 bytes long.
        let ext = rest
            .first_chunk::<8>()
            .ok_or(short(capture_short, Layer::Ipv6))?;
        let len = match next {
            IPV6_FRAGMENT => {
                // Offset (13 bits), 2 reserved bits, M. Only an atomic fragment (offset 0, M = 0,
                // RFC 6946) carries a whole packet.
                if u16::from_be_bytes([ext[2], ext[3]]) & 0xfff9 != 0 {
                    return Err(DecodeError::Fragment);
                }
                8
            }
            IPV6_AH => (usize::from(ext[1]) + 2) * 4,
            _ => (usize::from(ext[1]) + 1) * 8,
        };
        next = ext[0];
        rest = rest.get(len..).ok_or(short(capture_short, Layer::Ipv6))?;
    }
    let src = IpAddr::V6(Ipv6Addr::from(
        *chunk::<16>(h, 8).ok_or(DecodeError::Malformed(Layer::Ipv6))?,
    ));
    let dst = IpAddr::V6(Ipv6Addr::from(
        *chunk::<16>(h, 24).ok_or(DecodeError::Malformed(Layer::Ipv6))?,
    ));
    tcp(rest, src, dst, h[7], 0, missing, capture_short)
}

fn tcp(
    data: &[u8],
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    ip_id: u16,
    missing: u32,
    capture_short: bool,
) -> Result<Segment<'_>, DecodeError> {
    let h = data
        .first_chunk::<20>()
        .ok_or(short(capture_short, Layer::Tcp))?;
    let data_offset = usize::from(h[12] >> 4) * 4;
    if data_offset < 20 {
        return Err(DecodeError::Malformed(Layer::Tcp));
    }
    let payload = data
        .get(data_offset..)
        .ok_or(short(capture_short, Layer::Tcp))?;
    Ok(Segment {
        src: SocketAddr::new(src, u16::from_be_bytes([h[0], h[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([h[2], h[3]])),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: TcpFlags(h[13]),
        window: u16::from_be_bytes([h[14], h[15]]),
        ttl,
        ip_id,
        payload,
        missing,
    })
}

/// `N` bytes of `data` from `at`, if there are that many.
#[inline]
fn chunk<const N: usize>(data: &[u8], at: usize) -> Option<&[u8; N]> {
    data.get(at..)?.first_chunk::<N>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT4: [u8; 4] = [10, 0, 0, 1];
    const SERVER4: [u8; 4] = [10, 0, 0, 2];
    const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const PAYLOAD: &[u8] = b"\x12\x01\x00\x2f\x00\x00\x01\x00prelogin";

    /// A TCP header (client 50000 → server 1433) with `options` (padded to 4 bytes) and `payload`.
    fn tcp_segment(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while opts.len() % 4 != 0 {
            opts.push(0); // end of option list / padding
        }
        let data_offset = (20 + opts.len()) / 4;
        let mut t = Vec::new();
        t.extend_from_slice(&50000u16.to_be_bytes());
        t.extend_from_slice(&1433u16.to_be_bytes());
        t.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        t.extend_from_slice(&0x5566_7788u32.to_be_bytes());
        t.push((data_offset as u8) << 4);
        t.push(flags);
        t.extend_from_slice(&8192u16.to_be_bytes());
        t.extend_from_slice(&[0xde, 0xad]); // checksum: deliberately wrong, never checked
        t.extend_from_slice(&[0, 0]); // urgent pointer
        t.extend_from_slice(&opts);
        t.extend_from_slice(payload);
        t
    }

    fn tcp_default() -> Vec<u8> {
        tcp_segment(TcpFlags::PSH | TcpFlags::ACK, &[], PAYLOAD)
    }

    /// An IPv4 packet around `body` with IP `options` (multiple of 4), protocol TCP.
    fn ipv4_packet(options: &[u8], body: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let ihl = (20 + options.len()) / 4;
        let total = 20 + options.len() + body.len();
        let mut p = vec![0x40 | ihl as u8, 0];
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&0xbeefu16.to_be_bytes()); // identification
        p.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
        p.push(64); // TTL
        p.push(PROTO_TCP);
        p.extend_from_slice(&[0xff, 0xff]); // header checksum: wrong on purpose
        p.extend_from_slice(&CLIENT4);
        p.extend_from_slice(&SERVER4);
        p.extend_from_slice(options);
        p.extend_from_slice(body);
        p
    }

    /// An IPv6 packet: `ext` is a list of (header type, header bytes) walked in order, then `body`
    /// with next header `last`.
    fn ipv6_packet(ext: &[(u8, Vec<u8>)], last: u8, body: &[u8]) -> Vec<u8> {
        let first = ext.first().map_or(last, |e| e.0);
        let mut chain = Vec::new();
        for (i, (_, bytes)) in ext.iter().enumerate() {
            let mut b = bytes.clone();
            b[0] = ext.get(i + 1).map_or(last, |e| e.0);
            chain.extend_from_slice(&b);
        }
        chain.extend_from_slice(body);
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(chain.len() as u16).to_be_bytes());
        p.push(first);
        p.push(57); // hop limit
        p.extend_from_slice(&CLIENT6);
        p.extend_from_slice(&SERVER6);
        p.extend_from_slice(&chain);
        p
    }

    /// An extension header of `len8` 8-byte units beyond the first (hop-by-hop, routing, dest opts).
    fn ext_generic(len8: u8) -> Vec<u8> {
        let mut h = vec![0u8; (usize::from(len8) + 1) * 8];
        h[1] = len8;
        h[2] = 1; // a PadN option, for shape
        h
    }

    fn ext_fragment(offset: u16, more: bool) -> Vec<u8> {
        let field = (offset << 3) | u16::from(more);
        let mut h = vec![0u8, 0];
        h.extend_from_slice(&field.to_be_bytes());
        h.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        h
    }

    fn ext_ah(payload_len: u8) -> Vec<u8> {
        let mut h = vec![0u8; (usize::from(payload_len) + 2) * 4];
        h[1] = payload_len;
        h
    }

    /// An Ethernet frame with VLAN `tags` (TPID per tag) around a packet of `ethertype`.
    fn ethernet(tags: &[u16], ethertype: u16, packet: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
        ];
        for (i, tpid) in tags.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes()); // TCI: VLAN id
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(packet);
        f
    }

    fn sll(arphrd: u16, protocol: u16, packet: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 4]; // packet type: outgoing
        f.extend_from_slice(&arphrd.to_be_bytes());
        f.extend_from_slice(&6u16.to_be_bytes()); // address length
        f.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
        f.extend_from_slice(&protocol.to_be_bytes());
        f.extend_from_slice(packet);
        f
    }

    fn sll2(protocol: u16, packet: &[u8]) -> Vec<u8> {
        let mut f = protocol.to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 0]); // reserved
        f.extend_from_slice(&3u32.to_be_bytes()); // interface index
        f.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
        f.push(0); // packet type
        f.push(6); // address length
        f.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
        f.extend_from_slice(packet);
        f
    }

    fn check_v4(seg: &Segment<'_>, payload: &[u8]) {
        assert_eq!(seg.src, SocketAddr::new(IpAddr::from(CLIENT4), 50000));
        assert_eq!(seg.dst, SocketAddr::new(IpAddr::from(SERVER4), 1433));
        assert_eq!(seg.seq, 0x1122_3344);
        assert_eq!(seg.ack, 0x5566_7788);
        assert_eq!(seg.window, 8192);
        assert_eq!(seg.ttl, 64);
        assert_eq!(seg.ip_id, 0xbeef);
        assert_eq!(seg.payload, payload);
        assert_eq!(seg.missing, 0);
    }

    fn check_v6(seg: &Segment<'_>, payload: &[u8]) {
        assert_eq!(seg.src, SocketAddr::new(IpAddr::from(CLIENT6), 50000));
        assert_eq!(seg.dst, SocketAddr::new(IpAddr::from(SERVER6), 1433));
        assert_eq!(seg.seq, 0x1122_3344);
        assert_eq!(seg.ack, 0x5566_7788);
        assert_eq!(seg.ttl, 57);
        assert_eq!(seg.ip_id, 0);
        assert_eq!(seg.payload, payload);
        assert_eq!(seg.missing, 0);
    }

    #[test]
    fn ethernet_ipv4_tcp_every_field() {
        let frame = ethernet(&[], ETHERTYPE_IPV4, &ipv4_packet(&[], &tcp_default()));
        let seg = decode(LinkType::Ethernet, &frame).unwrap();
        check_v4(&seg, PAYLOAD);
        assert_eq!(seg.flags, TcpFlags(TcpFlags::PSH | TcpFlags::ACK));
        assert!(seg.flags.ack() && !seg.flags.syn() && !seg.flags.fin() && !seg.flags.rst());
    }

    #[test]
    fn tcp_flags_are_read() {
        for flags in [
            TcpFlags::SYN,
            TcpFlags::SYN | TcpFlags::ACK,
            TcpFlags::FIN | TcpFlags::ACK,
            TcpFlags::RST,
        ] {
            let frame = ethernet(
                &[],
                ETHERTYPE_IPV4,
                &ipv4_packet(&[], &tcp_segment(flags, &[], &[])),
            );
            let seg = decode(LinkType::Ethernet, &frame).unwrap();
            assert_eq!(seg.flags.0, flags);
            assert_eq!(seg.flags.syn(), flags & TcpFlags::SYN != 0);
            assert_eq!(seg.flags.fin(), flags & TcpFlags::FIN != 0);
            assert_eq!(seg.flags.rst(), flags & TcpFlags::RST != 0);
        }
    }

    #[test]
    fn vlan_tags_single_double_triple() {
        let packet = ipv4_packet(&[], &tcp_default());
        for tags in [
            &[ETHERTYPE_VLAN][..],
            &[ETHERTYPE_QINQ, ETHERTYPE_VLAN],
            &[ETHERTYPE_QINQ_OLD, ETHERTYPE_VLAN],
            &[ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD, ETHERTYPE_VLAN],
        ] {
            let frame = ethernet(tags, ETHERTYPE_IPV4, &packet);
            check_v4(&decode(LinkType::Ethernet, &frame).unwrap(), PAYLOAD);
        }
        let frame = ethernet(
            &[ETHERTYPE_QINQ, ETHERTYPE_VLAN],
            ETHERTYPE_IPV6,
            &ipv6_packet(&[], PROTO_TCP, &tcp_default()),
        );
        check_v6(&decode(LinkType::Ethernet, &frame).unwrap(), PAYLOAD);
    }

    #[test]
    fn vlan_tag_cut_short_is_truncated_link() {
        // Outer ethertype says a tag follows, but only 2 of its 4 bytes are there.
        let frame = [&[0u8; 12][..], &[0x81, 0x00, 0x00, 0x64]].concat();
        assert_eq!(
            decode(LinkType::Ethernet, &frame).unwrap_err(),
            DecodeError::Truncated(Layer::Link)
        );
        let frame = [&[0u8; 12][..], &[0x88, 0xa8, 0x00, 0x64, 0x81]].concat();
        assert_eq!(
            decode(LinkType::Ethernet, &frame).unwrap_err(),
            DecodeError::Truncated(Layer::Link)
        );
    }

    #[test]
    fn non_ip_ethertypes() {
        let packet = ipv4_packet(&[], &tcp_default());
        for et in [0x0806u16, 0x8847, 0x88cc, 0x0050 /* 802.3 length */] {
            assert_eq!(
                decode(LinkType::Ethernet, &ethernet(&[], et, &packet)).unwrap_err(),
                DecodeError::NotIp
            );
        }
        assert_eq!(
            decode(
                LinkType::Ethernet,
                &ethernet(&[ETHERTYPE_VLAN], 0x0806, &packet)
            )
            .unwrap_err(),
            DecodeError::NotIp
        );
    }

    #[test]
    fn linux_sll_v1_and_v2() {
        let v4 = ipv4_packet(&[], &tcp_default());
        let v6 = ipv6_packet(&[], PROTO_TCP, &tcp_default());
        // ARPHRD_ETHER (1), ARPHRD_LOOPBACK (772), ARPHRD_NONE (0xfffe), ARPHRD_IPGRE (778):
        // only the protocol field matters.
        for arphrd in [1u16, 772, 0xfffe, 778] {
            check_v4(
                &decode(LinkType::LinuxSll, &sll(arphrd, ETHERTYPE_IPV4, &v4)).unwrap(),
                PAYLOAD,
            );
            check_v6(
                &decode(LinkType::LinuxSll, &sll(arphrd, ETHERTYPE_IPV6, &v6)).unwrap(),
                PAYLOAD,
            );
        }
        // A VLAN tag left in place after the cooked header.
        let mut tagged = vec![0x00, 0x64];
        tagged.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        tagged.extend_from_slice(&v4);
        check_v4(
            &decode(LinkType::LinuxSll, &sll(1, ETHERTYPE_VLAN, &tagged)).unwrap(),
            PAYLOAD,
        );
        assert_eq!(
            decode(LinkType::LinuxSll, &sll(1, 0x0806, &v4)).unwrap_err(),
            DecodeError::NotIp
        );

        check_v4(
            &decode(LinkType::LinuxSll2, &sll2(ETHERTYPE_IPV4, &v4)).unwrap(),
            PAYLOAD,
        );
        check_v6(
            &decode(LinkType::LinuxSll2, &sll2(ETHERTYPE_IPV6, &v6)).unwrap(),
            PAYLOAD,
        );
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2(0x0003, &v4)).unwrap_err(),
            DecodeError::NotIp
        );
        assert_eq!(
            decode(LinkType::LinuxSll2, &[0u8; 19]).unwrap_err(),
            DecodeError::Truncated(Layer::Link)
        );
        assert_eq!(
            decode(LinkType::LinuxSll, &[0u8; 15]).unwrap_err(),
            DecodeError::Truncated(Layer::Link)
        );
    }

    #[test]
    fn raw_ipv4_and_ipv6_link_types() {
        let v4 = ipv4_packet(&[], &tcp_default());
        let v6 = ipv6_packet(&[], PROTO_TCP, &tcp_default());
        check_v4(&decode(LinkType::Raw, &v4).unwrap(), PAYLOAD);
        check_v6(&decode(LinkType::Raw, &v6).unwrap(), PAYLOAD);
        check_v4(&decode(LinkType::Ipv4, &v4).unwrap(), PAYLOAD);
        check_v6(&decode(LinkType::Ipv6, &v6).unwrap(), PAYLOAD);
        assert_eq!(
            decode(LinkType::Raw, &[]).unwrap_err(),
            DecodeError::Truncated(Layer::Link)
        );
        assert_eq!(
            decode(LinkType::Raw, &[0x50; 40]).unwrap_err(),
            DecodeError::NotIp
        );
        // The link type says IPv4 but the packet says 6 (and the other way round).
        assert_eq!(
            decode(LinkType::Ipv4, &v6).unwrap_err(),
            DecodeError::Malformed(Layer::Ipv4)
        );
        assert_eq!(
            decode(LinkType::Ipv6, &v4).unwrap_err(),
            DecodeError::Malformed(Layer::Ipv6)
        );
    }

    #[test]
    fn bsd_null_both_byte_orders_and_loop() {
        let v4 = ipv4_packet(&[], &tcp_default());
        let v6 = ipv6_packet(&[], PROTO_TCP, &tcp_default());
        let with = |family: [u8; 4], p: &[u8]| [&family[..], p].concat();
        check_v4(
            &decode(LinkType::Null, &with(2u32.to_le_bytes(), &v4)).unwrap(),
            PAYLOAD,
        );
        check_v4(
            &decode(LinkType::Null, &with(2u32.to_be_bytes(), &v4)).unwrap(),
            PAYLOAD,
        );
        for af in [24u32, 28, 30] {
            check_v6(
                &decode(LinkType::Null, &with(af.to_le_bytes(), &v6)).unwrap(),
                PAYLOAD,
            );
            check_v6(
                &decode(LinkType::Null, &with(af.to_be_bytes(), &v6)).unwrap(),
                PAYLOAD,
            );
            check_v6(
                &decode(LinkType::Loop, &with(af.to_be_bytes(), &v6)).unwrap(),
                PAYLOAD,
            );
        }
        check_v4(
            &decode(LinkType::Loop, &with(2u32.to_be_bytes(), &v4)).unwrap(),
            PAYLOAD,
        );
        // LOOP is network byte order only.
        assert_eq!(
            decode(LinkType::Loop, &with(2u32.to_le_bytes(), &v4)).unwrap_err(),
            DecodeError::NotIp
        );
        // AF_APPLETALK (16), AF_UNSPEC (0).
        assert_eq!(
            decode(LinkType::Null, &with(16u32.to_le_bytes(), &v4)).unwrap_err(),
            DecodeError::NotIp
        );
        assert_eq!(
            decode(LinkType::Null, &with([0; 4], &v4)).unwrap_err(),
            DecodeError::NotIp
        );
        assert_eq!(
            decode(LinkType::Null, &[2, 0, 0]).unwrap_err(),
            DecodeError::Truncated(Layer::Link)
        );
        assert_eq!(
            decode(LinkType::Loop, &[]).unwrap_err(),
            DecodeError::Truncated(Layer::Link)
        );
    }

    #[test]
    fn unsupported_link_type() {
        let frame = ethernet(&[], ETHERTYPE_IPV4, &ipv4_packet(&[], &tcp_default()));
        assert_eq!(
            decode(LinkType::Unsupported(127), &frame).unwrap_err(),
            DecodeError::UnsupportedLink
        );
        assert_eq!(
            decode(LinkType::Unsupported(147), &[]).unwrap_err(),
            DecodeError::UnsupportedLink
        );
    }

    #[test]
    fn ipv4_options_are_skipped() {
        // Record-route-ish option padding to IHL 6 and the maximum IHL 15 (40 bytes of options).
        let four = [0x94, 0x04, 0x00, 0x00]; // router alert
        let forty = [1u8; 40]; // NOPs
        for opts in [&four[..], &forty[..]] {
            let frame = ethernet(&[], ETHERTYPE_IPV4, &ipv4_packet(opts, &tcp_default()));
            check_v4(&decode(LinkType::Ethernet, &frame).unwrap(), PAYLOAD);
        }
    }

    #[test]
    fn tcp_options_are_skipped() {
        // MSS, SACK permitted, timestamps, NOP, window scale: 20 bytes of options, data offset 10.
        let opts = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7,
        ];
        let frame = ethernet(
            &[],
            ETHERTYPE_IPV4,
            &ipv4_packet(&[], &tcp_segment(0x18, &opts, PAYLOAD)),
        );
        check_v4(&decode(LinkType::Ethernet, &frame).unwrap(), PAYLOAD);
        // Maximum data offset 15: 40 bytes of options.
        let frame = ethernet(
            &[],
            ETHERTYPE_IPV4,
            &ipv4_packet(&[], &tcp_segment(0x18, &[1; 40], b"x")),
        );
        check_v4(&decode(LinkType::Ethernet, &frame).unwrap(), b"x");
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // A bare ACK is 54 bytes; Ethernet pads it to 60.
        let mut frame = ethernet(
            &[],
            ETHERTYPE_IPV4,
            &ipv4_packet(&[], &tcp_segment(TcpFlags::ACK, &[], &[])),
        );
        assert_eq!(frame.len(), 54);
        frame.extend_from_slice(&[0xaa; 6]);
        let seg = decode(LinkType::Ethernet, &frame).unwrap();
        check_v4(&seg, &[]);
        // A frame with a 4-byte trailer (FCS) after a payload.
        let mut frame = ethernet(&[], ETHERTYPE_IPV4, &ipv4_packet(&[], &tcp_default()));
        frame.extend_from_slice(&[1, 2, 3, 4]);
        check_v4(&decode(LinkType::Ethernet, &frame).unwrap(), PAYLOAD);
        // Same for IPv6: its payload length bounds the packet.
        let mut frame = ethernet(
            &[],
            ETHERTYPE_IPV6,
            &ipv6_packet(&[], PROTO_TCP, &tcp_default()),
        );
        frame.extend_from_slice(&[1, 2, 3, 4]);
        check_v6(&decode(LinkType::Ethernet, &frame).unwrap(), PAYLOAD);
    }

    #[test]
    fn capture_shorter_than_ip_length_sets_missing() {
        let full = ethernet(&[], ETHERTYPE_IPV4, &ipv4_packet(&[], &tcp_default()));
        for cut in 1..=PAYLOAD.len() {
            let frame = full.get(..full.len() - cut).unwrap();
            let seg = decode(LinkType::Ethernet, frame).unwrap();
            assert_eq!(seg.payload, &PAYLOAD[..PAYLOAD.len() - cut]);
            assert_eq!(seg.missing, cut as u32);
            assert_eq!(seg.seq, 0x1122_3344);
        }
        // Cut inside the TCP header: the segment is unusable.
        let frame = full.get(..14 + 20 + 19).unwrap();
        assert_eq!(
            decode(LinkType::Ethernet, frame).unwrap_err(),
            DecodeError::Truncated(Layer::Tcp)
        );
        // IPv6 likewise.
        let full6 = ethernet(
            &[],
            ETHERTYPE_IPV6,
            &ipv6_packet(
                &[(IPV6_DEST_OPTS, ext_generic(0))],
                PROTO_TCP,
                &tcp_default(),
            ),
        );
        let frame = full6.get(..full6.len() - 5).unwrap();
        let seg = decode(LinkType::Ethernet, frame).unwrap();
        assert_eq!(seg.payload, &PAYLOAD[..PAYLOAD.len() - 5]);
        assert_eq!(seg.missing, 5);
        let frame = full6.get(..14 + 40 + 4).unwrap();
        assert_eq!(
            decode(LinkType::Ethernet, frame).unwrap_err(),
            DecodeError::Truncated(Layer::Ipv6)
        );
    }

    #[test]
    fn ipv4_total_length_zero_means_captured_length() {
        // TSO on the sending host: the stack hands a super-packet with total length 0 to the tap.
        let big = vec![0x42u8; 9000];
        let mut packet = ipv4_packet(&[], &tcp_segment(0x18, &[], &big));
        packet[2] = 0;
        packet[3] = 0;
        let frame = ethernet(&[], ETHERTYPE_IPV4, &packet);
        let seg = decode(LinkType::Ethernet, &frame).unwrap();
        check_v4(&seg, &big);
    }

    #[test]
    fn ipv6_payload_length_zero_means_captured_length() {
        // A jumbogram: hop-by-hop with the jumbo option (0xC2), payload length 0.
        let big = vec![0x17u8; 70000];
        let mut hbh = vec![0u8, 0, 0xc2, 4];
        hbh.extend_from_slice(&((8 + 20 + big.len()) as u32).to_be_bytes());
        let mut packet = ipv6_packet(
            &[(IPV6_HOP_BY_HOP, hbh)],
            PROTO_TCP,
            &tcp_segment(0x18, &[], &big),
        );
        packet[4] = 0;
        packet[5] = 0;
        check_v6(&decode(LinkType::Raw, &packet).unwrap(), &big);
        // BIG TCP as seen by a tap on newer kernels: length 0, no hop-by-hop header.
        let mut packet = ipv6_packet(&[], PROTO_TCP, &tcp_segment(0x18, &[], &big));
        packet[4] = 0;
        packet[5] = 0;
        check_v6(&decode(LinkType::Raw, &packet).unwrap(), &big);
    }

    #[test]
    fn ipv4_fragments() {
        let base = ipv4_packet(&[], &tcp_default());
        for (hi, lo) in [
            (0x20, 0x00), /* MF, first */
            (0x00, 0x10), /* last */
            (0x20, 0x01),
            (0x1f, 0xff),
            (0x60, 0x00), /* DF+MF */
        ] {
            let mut p = base.clone();
            p[6] = hi;
            p[7] = lo;
            assert_eq!(
                decode(LinkType::Raw, &p).unwrap_err(),
                DecodeError::Fragment,
                "{hi:02x}{lo:02x}"
            );
        }
        // DF alone and no flags at all are whole packets.
        for hi in [0x40, 0x00] {
            let mut p = base.clone();
            p[6] = hi;
            p[7] = 0;
            check_v4(&decode(LinkType::Raw, &p).unwrap(), PAYLOAD);
        }
    }

    #[test]
    fn ipv4_not_tcp_and_malformed() {
        let base = ipv4_packet(&[], &tcp_default());
        let mut udp = base.clone();
        udp[9] = 17;
        assert_eq!(
            decode(LinkType::Raw, &udp).unwrap_err(),
            DecodeError::NotTcp
        );
        for ihl in [0u8, 1, 4] {
            let mut p = base.clone();
            p[0] = 0x40 | ihl;
            assert_eq!(
                decode(LinkType::Raw, &p).unwrap_err(),
                DecodeError::Malformed(Layer::Ipv4)
            );
        }
        // Total length shorter than the header.
        let mut p = base.clone();
        p[2] = 0;
        p[3] = 19;
        assert_eq!(
            decode(LinkType::Raw, &p).unwrap_err(),
            DecodeError::Malformed(Layer::Ipv4)
        );
        // Total length leaves only 10 bytes for TCP although more were captured.
        let mut p = base.clone();
        p[2] = 0;
        p[3] = 30;
        assert_eq!(
            decode(LinkType::Raw, &p).unwrap_err(),
            DecodeError::Malformed(Layer::Tcp)
        );
        // IHL beyond the captured bytes.
        let mut p = base.get(..22).unwrap().to_vec();
        p[0] = 0x46;
        p[2] = 0;
        p[3] = 0;
        assert_eq!(
            decode(LinkType::Raw, &p).unwrap_err(),
            DecodeError::Truncated(Layer::Ipv4)
        );
        assert_eq!(
            decode(LinkType::Ipv4, &base[..19]).unwrap_err(),
            DecodeError::Truncated(Layer::Ipv4)
        );
        // Ethertype IPv4, version 6.
        let mut p = base.clone();
        p[0] = 0x65;
        assert_eq!(
            decode(LinkType::Ethernet, &ethernet(&[], ETHERTYPE_IPV4, &p)).unwrap_err(),
            DecodeError::Malformed(Layer::Ipv4)
        );
    }

    #[test]
    fn tcp_data_offset_checks() {
        for doff in [0u8, 1, 4] {
            let mut t = tcp_default();
            t[12] = doff << 4;
            let p = ipv4_packet(&[], &t);
            assert_eq!(
                decode(LinkType::Raw, &p).unwrap_err(),
                DecodeError::Malformed(Layer::Tcp)
            );
        }
        // Data offset 15 (60 bytes) in a segment of 20 + 8 bytes: beyond the declared packet.
        let mut t = tcp_segment(0x18, &[], b"12345678");
        t[12] = 0xf0;
        let p = ipv4_packet(&[], &t);
        assert_eq!(
            decode(LinkType::Raw, &p).unwrap_err(),
            DecodeError::Malformed(Layer::Tcp)
        );
        // Same, but the IP header declares more than was captured: the capture is what fell short.
        let mut p = p;
        p[2] = 0x01;
        assert_eq!(
            decode(LinkType::Raw, &p).unwrap_err(),
            DecodeError::Truncated(Layer::Tcp)
        );
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let chain = vec![
            (IPV6_HOP_BY_HOP, ext_generic(0)),
            (IPV6_DEST_OPTS, ext_generic(1)),
            (IPV6_ROUTING, ext_generic(2)),
            (IPV6_FRAGMENT, ext_fragment(0, false)), // atomic fragment
            (IPV6_AH, ext_ah(4)),
            (IPV6_DEST_OPTS, ext_generic(0)),
        ];
        let frame = ethernet(
            &[ETHERTYPE_VLAN],
            ETHERTYPE_IPV6,
            &ipv6_packet(&chain, PROTO_TCP, &tcp_default()),
        );
        check_v6(&decode(LinkType::Ethernet, &frame).unwrap(), PAYLOAD);
    }

    #[test]
    fn ipv6_extension_header_limit() {
        let eight: Vec<_> = (0..MAX_IPV6_EXT_HEADERS)
            .map(|_| (IPV6_DEST_OPTS, ext_generic(0)))
            .collect();
        check_v6(
            &decode(
                LinkType::Raw,
                &ipv6_packet(&eight, PROTO_TCP, &tcp_default()),
            )
            .unwrap(),
            PAYLOAD,
        );
        let nine: Vec<_> = (0..=MAX_IPV6_EXT_HEADERS)
            .map(|_| (IPV6_DEST_OPTS, ext_generic(0)))
            .collect();
        assert_eq!(
            decode(
                LinkType::Raw,
                &ipv6_packet(&nine, PROTO_TCP, &tcp_default())
            )
            .unwrap_err(),
            DecodeError::Malformed(Layer::Ipv6)
        );
    }

    #[test]
    fn ipv6_fragments_and_other_protocols() {
        for (offset, more) in [(0u16, true), (1, false), (185, true), (8191, false)] {
            let p = ipv6_packet(
                &[(IPV6_FRAGMENT, ext_fragment(offset, more))],
                PROTO_TCP,
                &tcp_default(),
            );
            assert_eq!(
                decode(LinkType::Raw, &p).unwrap_err(),
                DecodeError::Fragment,
                "{offset} {more}"
            );
        }
        // UDP, ICMPv6, no next header, ESP (opaque), behind a hop-by-hop header too.
        for last in [17u8, 58, 59, 50] {
            let p = ipv6_packet(&[], last, &tcp_default());
            assert_eq!(decode(LinkType::Raw, &p).unwrap_err(), DecodeError::NotTcp);
            let p = ipv6_packet(&[(IPV6_HOP_BY_HOP, ext_generic(0))], last, &tcp_default());
            assert_eq!(decode(LinkType::Raw, &p).unwrap_err(), DecodeError::NotTcp);
        }
        // An extension header that claims more than the declared payload.
        let mut p = ipv6_packet(&[(IPV6_ROUTING, ext_generic(0))], PROTO_TCP, &tcp_default());
        p[40 + 1] = 200;
        assert_eq!(
            decode(LinkType::Raw, &p).unwrap_err(),
            DecodeError::Malformed(Layer::Ipv6)
        );
        let mut p = ipv6_packet(&[], PROTO_TCP, &tcp_default());
        p[0] = 0x40;
        assert_eq!(
            decode(LinkType::Ipv6, &p).unwrap_err(),
            DecodeError::Malformed(Layer::Ipv6)
        );
        assert_eq!(
            decode(LinkType::Ipv6, &p[..39]).unwrap_err(),
            DecodeError::Truncated(Layer::Ipv6)
        );
    }

    /// One valid frame per link type (and IP variant), for the robustness loops.
    fn sample_frames() -> Vec<(LinkType, Vec<u8>)> {
        let v4 = ipv4_packet(
            &[0x94, 0x04, 0, 0],
            &tcp_segment(0x18, &[2, 4, 5, 0xb4], PAYLOAD),
        );
        let chain = vec![
            (IPV6_HOP_BY_HOP, ext_generic(0)),
            (IPV6_FRAGMENT, ext_fragment(0, false)),
            (IPV6_AH, ext_ah(1)),
        ];
        let v6 = ipv6_packet(&chain, PROTO_TCP, &tcp_default());
        vec![
            (LinkType::Ethernet, ethernet(&[], ETHERTYPE_IPV4, &v4)),
            (
                LinkType::Ethernet,
                ethernet(&[ETHERTYPE_QINQ, ETHERTYPE_VLAN], ETHERTYPE_IPV6, &v6),
            ),
            (LinkType::LinuxSll, sll(772, ETHERTYPE_IPV4, &v4)),
            (LinkType::LinuxSll2, sll2(ETHERTYPE_IPV6, &v6)),
            (LinkType::Raw, v4.clone()),
            (LinkType::Raw, v6.clone()),
            (LinkType::Ipv4, v4.clone()),
            (LinkType::Ipv6, v6.clone()),
            (LinkType::Null, [&2u32.to_le_bytes()[..], &v4].concat()),
            (LinkType::Null, [&30u32.to_be_bytes()[..], &v6].concat()),
            (LinkType::Loop, [&24u32.to_be_bytes()[..], &v6].concat()),
        ]
    }

    #[test]
    fn every_prefix_of_a_valid_frame_is_safe() {
        for (link, frame) in sample_frames() {
            let full = decode(link, &frame).unwrap_or_else(|e| panic!("{link:?}: {e}"));
            assert_eq!(full.payload.len(), PAYLOAD.len());
            assert_eq!(full.missing, 0);
            for len in 0..frame.len() {
                match decode(link, &frame[..len]) {
                    // Only a cut inside the payload still yields a segment, and then it says how
                    // much is missing.
                    Ok(seg) => {
                        assert_eq!(
                            seg.missing as usize + seg.payload.len(),
                            PAYLOAD.len(),
                            "{link:?} {len}"
                        );
                        assert!(seg.missing > 0);
                    }
                    Err(e) => assert!(
                        matches!(e, DecodeError::Truncated(_)),
                        "{link:?} prefix {len}: {e:?}"
                    ),
                }
            }
        }
    }

    /// The public captures, as in `capture::file`'s tests (CI layout first, then a worktree kept
    /// under a directory of worktrees). Missing captures fail the test.
    fn public_capture(name: &str) -> std::path::PathBuf {
        let candidates = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures/public/"),
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/captures/public/"
            ),
        ];
        let dir = candidates
            .iter()
            .map(std::path::PathBuf::from)
            .find(|d| d.is_dir());
        let dir = dir.unwrap_or_else(|| panic!("public captures not found at {}", candidates[0]));
        dir.join(name)
    }

    #[test]
    fn every_frame_of_the_public_captures_is_a_tcp_segment() {
        use crate::capture::file::FileSource;
        use crate::capture::FrameSource;
        // (file, frames, captured TCP payload bytes as tshark counts them, payload bytes the IP
        // lengths declare, frames whose IP length runs past the capture, frames on port 1433)
        let files = [
            (
                "0x5CE-beats__mssql_15x_login_and_select.pcap",
                31,
                3066,
                3066,
                0,
                31,
            ),
            ("0x5CE-beats__mssql_login.pcap", 44, 6456, 6456, 0, 44),
            (
                "0x5CE-beats__mssql_login_and_select.pcap",
                50,
                6920,
                6920,
                0,
                50,
            ),
            ("arkime__ntlm_synthetic.pcap", 218, 7781, 7781, 0, 12),
            ("arkime__tds5.pcap", 10, 908, 908, 0, 0),
            ("arkime__tds7.pcap", 13, 1000, 1000, 0, 13),
            // Every mrp frame declares 909 IP bytes (869 of payload); 161 were captured short.
            ("mrp__tds.pcap", 1000, 793_089, 869_000, 161, 1000),
            ("nDPI__mssql_tds.pcap", 38, 14142, 14142, 0, 38),
            ("nDPI__tls_alert.pcap", 18, 361, 361, 0, 0),
            ("tdspsql__tds.pcap", 9, 699, 699, 0, 9),
            ("zeek__tls__dhe.pcap", 24, 4953, 4953, 0, 0),
        ];
        for (name, frames, captured, declared, short, port_1433) in files {
            let mut source =
                FileSource::open(&public_capture(name)).unwrap_or_else(|e| panic!("{e}"));
            let (mut n, mut payload, mut missing, mut with_missing, mut on_1433) =
                (0usize, 0u64, 0u64, 0usize, 0usize);
            while let Some(frame) = source.next_frame().unwrap_or_else(|e| panic!("{e}")) {
                let seg = decode(frame.link, frame.data)
                    .unwrap_or_else(|e| panic!("{name} frame {}: {e}", n + 1));
                n += 1;
                payload += seg.payload.len() as u64;
                missing += u64::from(seg.missing);
                with_missing += usize::from(seg.missing > 0);
                on_1433 += usize::from(seg.src.port() == 1433 || seg.dst.port() == 1433);
                if name == "arkime__ntlm_synthetic.pcap" && on_1433 > 0 && seg.dst.port() == 1433 {
                    assert!(seg.dst.is_ipv6(), "{name}: the TDS stream is over IPv6");
                }
                if name == "arkime__tds5.pcap" {
                    assert!(
                        seg.src.port() == 3106 || seg.dst.port() == 3106,
                        "{name}: behind a VLAN tag"
                    );
                }
            }
            assert_eq!(n, frames, "{name}");
            assert_eq!(payload, captured, "{name}");
            assert_eq!(payload + missing, declared, "{name}");
            assert_eq!(with_missing, short, "{name}");
            assert_eq!(on_1433, port_1433, "{name}");
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        // Deterministic xorshift: flip every byte of every sample to several values, then throw
        // random frames at every link type.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut decoded = 0usize;
        for (link, frame) in sample_frames() {
            for i in 0..frame.len() {
                for v in [0u8, 0xff, 0x80, 0x0f, rand() as u8] {
                    let mut f = frame.clone();
                    f[i] = v;
                    if let Ok(seg) = decode(link, &f) {
                        decoded += 1;
                        assert!(seg.payload.len() <= f.len());
                    }
                }
            }
        }
        assert!(decoded > 0);
        let links = [
            LinkType::Ethernet,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::Raw,
            LinkType::Ipv4,
            LinkType::Ipv6,
            LinkType::Null,
            LinkType::Loop,
        ];
        let mut buf = [0u8; 128];
        for _ in 0..20_000 {
            let len = (rand() % 129) as usize;
            for b in buf.iter_mut() {
                *b = rand() as u8;
            }
            for link in links {
                if let Ok(seg) = decode(link, &buf[..len]) {
                    assert!(seg.payload.len() <= len);
                }
            }
        }
    }
}
