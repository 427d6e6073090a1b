//! Flows seen on two interfaces under other addresses (a pod veth and the host uplink, with SNAT)
//! are counted once: every connection of `samples/mixed.pcap` fed again, frame by frame, with the
//! client's IPv4 address rewritten, gives the same verdicts as the capture alone. The stated
//! exception: connections that never got a SYN-ACK (refused, unanswered) have only the client's
//! ISN to go by and are counted on each side.

use std::collections::BTreeMap;
use std::path::Path;
use tdswatch::capture::file::FileSource;
use tdswatch::capture::{Frame, FrameSource, LinkType};
use tdswatch::config::Config;
use tdswatch::output::RunSummary;
use tdswatch::pipeline::Pipeline;
use tdswatch::verdict::{Stage, Verdict};

const NAT_CLIENT: [u8; 4] = [192, 0, 2, 99];

/// Offset of the IPv4 header in an Ethernet (optionally 802.1Q) frame, if it carries IPv4.
fn ipv4_offset(data: &[u8]) -> Option<usize> {
    let mut off = 12;
    loop {
        let ethertype = u16::from_be_bytes([*data.get(off)?, *data.get(off + 1)?]);
        match ethertype {
            0x8100 | 0x88a8 => off += 4,
            0x0800 => return Some(off + 2),
            _ => return None,
        }
    }
}

/// The frame with its client address (the end not on port 1433) replaced by [`NAT_CLIENT`].
fn nat_copy(data: &[u8]) -> Option<Vec<u8>> {
    let ip = ipv4_offset(data)?;
    let ihl = usize::from(data.get(ip)? & 0x0f) * 4;
    let tcp = ip + ihl;
    let sport = u16::from_be_bytes([*data.get(tcp)?, *data.get(tcp + 1)?]);
    let mut copy = data.to_vec();
    // The client is the source unless the packet comes from the server's port.
    let client_at = if sport == 1433 { ip + 16 } else { ip + 12 };
    copy.get_mut(client_at..client_at + 4)?
        .copy_from_slice(&NAT_CLIENT);
    Some(copy)
}

type Verdicts = BTreeMap<(String, u16, u64), Vec<String>>;

/// Verdicts keyed by (server, client port, first-seen ns), as comparable strings (the client's
/// address is what the copy changes, so it is left out of the key and of the record).
fn run(twice: bool) -> (Verdicts, RunSummary) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/mixed.pcap");
    let mut source = FileSource::open(&path).expect("samples/mixed.pcap");
    let mut pipeline = Pipeline::new(&Config::default());
    let mut verdicts: Vec<Verdict> = Vec::new();
    while let Some(frame) = source.next_frame().expect("the sample reads") {
        assert_eq!(frame.link, LinkType::Ethernet, "the sample is Ethernet");
        let (ts, wire_len) = (frame.ts, frame.wire_len);
        let copy = if twice { nat_copy(frame.data) } else { None };
        pipeline.on_frame(&frame, &mut |v| verdicts.push(v));
        if let Some(copy) = copy {
            let nat = Frame {
                ts,
                link: LinkType::Ethernet,
                data: &copy,
                wire_len,
                interface: 1,
            };
            pipeline.on_frame(&nat, &mut |v| verdicts.push(v));
        }
    }
    pipeline.finish(&mut |v| verdicts.push(v));
    let mut summary = RunSummary::default();
    pipeline.add_to_summary(&mut summary);
    let mut by_key = Verdicts::new();
    for v in verdicts {
        let record = format!(
            "{:?} {:?} {:?} {:?} {:?} {:?}",
            v.stage, v.outcome, v.reason, v.encryption, v.mode, v.tls
        );
        by_key
            .entry((v.server.to_string(), v.client.port(), v.first_seen.0))
            .or_default()
            .push(format!("{}|{record}", v.stage == Stage::Syn));
    }
    (by_key, summary)
}

#[test]
fn every_connection_seen_twice_under_nat_is_counted_once() {
    let (alone, _) = run(false);
    let (twice, summary) = run(true);
    assert!(
        alone.len() > 30,
        "the sample has {} connections",
        alone.len()
    );
    let mut refused = 0;
    for (key, records) in &alone {
        assert_eq!(records.len(), 1, "{key:?}");
        let got = twice
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} lost its verdict"));
        if records[0].starts_with("true|") {
            // Never answered: no server ISN to pair on; each side keeps its verdict.
            refused += 1;
            assert_eq!(got, &vec![records[0].clone(); 2], "{key:?}");
        } else {
            assert_eq!(got, records, "{key:?}");
        }
    }
    assert_eq!(twice.len(), alone.len());
    assert_eq!(
        summary.duplicate_connections as usize,
        alone.len() - refused,
        "twins recognised"
    );
}
