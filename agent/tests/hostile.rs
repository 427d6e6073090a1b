//! Hostile input through the whole pipeline: real captures with their frames corrupted, cut,
//! duplicated, dropped and reordered. Nothing may panic, memory stays bounded, and a verdict is
//! never stated with confidence on bytes that were lost.

use std::path::{Path, PathBuf};
use tdswatch::capture::file::FileSource;
use tdswatch::capture::{Frame, FrameSource, LinkType, Timestamp};
use tdswatch::config::Config;
use tdswatch::pipeline::Pipeline;
use tdswatch::verdict::{Outcome, Verdict};

/// Small deterministic PRNG (xorshift64*), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Owned {
    ts: Timestamp,
    link: LinkType,
    data: Vec<u8>,
}

fn frames(path: &Path) -> Vec<Owned> {
    let mut source = FileSource::open(path).expect("open");
    let mut out = Vec::new();
    while let Ok(Some(f)) = source.next_frame() {
        out.push(Owned {
            ts: f.ts,
            link: f.link,
            data: f.data.to_vec(),
        });
    }
    out
}

fn inputs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let public = root.join("../../shared/captures/public");
    let mut files = vec![root.join("../samples/mixed.pcap")];
    for name in [
        "0x5CE-beats__mssql_login.pcap",
        "0x5CE-beats__mssql_15x_login_and_select.pcap",
        "arkime__tds7.pcap",
        "arkime__ntlm_synthetic.pcap",
        "nDPI__mssql_tds.pcap",
        "zeek__tls__dhe.pcap",
    ] {
        let p = public.join(name);
        assert!(
            p.exists(),
            "{} missing: ../shared must sit beside the project",
            p.display()
        );
        files.push(p);
    }
    files
}

fn run(config: &Config, frames: &[Owned]) -> Vec<Verdict> {
    let mut pipeline = Pipeline::new(config);
    let mut verdicts = Vec::new();
    for f in frames {
        let frame = Frame {
            ts: f.ts,
            link: f.link,
            data: &f.data,
            wire_len: f.data.len() as u32,
            interface: 0,
        };
        pipeline.on_frame(&frame, &mut |v| verdicts.push(v));
    }
    pipeline.finish(&mut |v| verdicts.push(v));
    verdicts
}

#[test]
fn corrupted_cut_duplicated_and_reordered_frames_never_panic() {
    let mut config = Config::default();
    config.ports.push(443);
    for path in inputs() {
        let clean = frames(&path);
        let baseline = run(&config, &clean).len();
        for seed in 1..=60u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut mutated: Vec<Owned> = Vec::with_capacity(clean.len() * 2);
            for f in &clean {
                let mut data = f.data.clone();
                match rng.below(10) {
                    // Flip bytes anywhere (headers and payload).
                    0 | 1 => {
                        for _ in 0..=rng.below(4) {
                            let i = rng.below(data.len());
                            if let Some(b) = data.get_mut(i) {
                                *b ^= 1 << rng.below(8);
                            }
                        }
                    }
                    // Cut the frame.
                    2 => data.truncate(rng.below(data.len() + 1)),
                    // Drop it.
                    3 => continue,
                    // Send it twice.
                    4 => mutated.push(Owned {
                        ts: f.ts,
                        link: f.link,
                        data: data.clone(),
                    }),
                    _ => {}
                }
                mutated.push(Owned {
                    ts: f.ts,
                    link: f.link,
                    data,
                });
            }
            // Swap some neighbours.
            for _ in 0..mutated.len() / 8 {
                let i = rng.below(mutated.len().saturating_sub(1));
                mutated.swap(i, i + 1);
            }
            let verdicts = run(&config, &mutated);
            // Corruption can split a flow in two (a flipped port), never into more pieces than
            // there are frames.
            assert!(
                verdicts.len() <= mutated.len(),
                "{}: seed {seed}: {} verdicts from {} frames (baseline {baseline})",
                path.display(),
                verdicts.len(),
                mutated.len()
            );
        }
    }
}

/// Frames dropped from the middle of a handshake: the connection may not be called established or
/// failed with a specific TLS or login reason unless what decided it was seen.
#[test]
fn a_lost_segment_in_the_handshake_makes_the_outcome_unknown() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/captures/public/0x5CE-beats__mssql_login.pcap");
    let clean = frames(&path);
    // Frames 17/18 (1-based) carry the server's ServerHello … ServerHelloDone flight, twice (the
    // capture holds every frame twice). Drop both copies.
    let without_flight: Vec<Owned> = clean
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 16 && *i != 17)
        .map(|(_, f)| f)
        .collect();
    let verdicts = run(&Config::default(), &without_flight);
    assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
    assert_eq!(verdicts[0].outcome, Outcome::Unknown, "{:#?}", verdicts[0]);
    assert_eq!(verdicts[0].reason, None);
}
