//! TCP for one connection: turns a template's script (connect, application writes, close, reset)
//! into packets with correct sequence and acknowledgement numbers, segments of at most [`MSS`] bytes,
//! receiver ACKs interleaved (every second segment and at the end of each flight) and timestamps.
//! Knows nothing of what the payload bytes mean.

use crate::pcap::{ACK, FIN, PSH, RST, SYN};
use crate::rng::Rng;
use crate::Side;

/// Largest payload of one segment (Ethernet MTU 1500 − 40).
pub const MSS: usize = 1460;

/// A time range in microseconds, drawn uniformly.
pub type Delay = (u32, u32);

/// One step of a connection's life, as the two applications and stacks play it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// SYN, SYN-ACK, ACK.
    Connect,
    /// SYN answered by RST-ACK (nothing listens).
    Refused,
    /// `from` writes each range of the template's data (one `send()` each, segmented at the MSS)
    /// after thinking for `think`. With `ack`, the receiver ACKs the end of the flight.
    Send {
        from: Side,
        writes: Vec<(u32, u32)>,
        think: Delay,
        ack: bool,
    },
    /// `first` sends FIN, the other ACKs, sends its own FIN, `first` ACKs.
    Close { first: Side, delay: Delay },
    /// `from` aborts with RST-ACK.
    Reset { from: Side, delay: Delay },
}

/// One packet of a connection; `off`/`len` index the template's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pkt {
    pub ts: u64,
    pub from: Side,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub off: u32,
    pub len: u32,
}

const HANDSHAKE_RTT: Delay = (80, 600);
const ACK_DELAY: Delay = (15, 120);
const SEGMENT_GAP: Delay = (2, 15);

struct Conn<'a> {
    ts: u64,
    next: [u32; 2],
    rng: &'a mut Rng,
    out: &'a mut Vec<Pkt>,
}

impl Conn<'_> {
    fn wait(&mut self, d: Delay) {
        self.ts += self.rng.range(u64::from(d.0), u64::from(d.1));
    }

    fn emit(&mut self, from: Side, flags: u8, off: u32, len: u32) {
        let ack = if flags & ACK != 0 {
            self.next[from.other().index()]
        } else {
            0
        };
        let seq = self.next[from.index()];
        self.out.push(Pkt {
            ts: self.ts,
            from,
            flags,
            seq,
            ack,
            off,
            len,
        });
        let mut used = len;
        if flags & (SYN | FIN) != 0 {
            used += 1;
        }
        self.next[from.index()] = seq.wrapping_add(used);
    }
}

/// Plays `steps` from `start` (µs) with initial sequence numbers `isn` (client, server), appending
/// the packets to `out` in time order.
pub fn play(steps: &[Step], start: u64, isn: [u32; 2], rng: &mut Rng, out: &mut Vec<Pkt>) {
    let mut c = Conn {
        ts: start,
        next: isn,
        rng,
        out,
    };
    for step in steps {
        match step {
            Step::Connect => {
                c.emit(Side::Client, SYN, 0, 0);
                c.wait(HANDSHAKE_RTT);
                c.emit(Side::Server, SYN | ACK, 0, 0);
                c.wait(ACK_DELAY);
                c.emit(Side::Client, ACK, 0, 0);
            }
            Step::Refused => {
                c.emit(Side::Client, SYN, 0, 0);
                c.wait(HANDSHAKE_RTT);
                // RFC 793: a RST answering a SYN has seq 0 and acknowledges the SYN.
                let ack = c.next[Side::Client.index()];
                c.out.push(Pkt {
                    ts: c.ts,
                    from: Side::Server,
                    flags: RST | ACK,
                    seq: 0,
                    ack,
                    off: 0,
                    len: 0,
                });
            }
            Step::Send {
                from,
                writes,
                think,
                ack,
            } => {
                c.wait(*think);
                let mut unacked = 0;
                let mut first = true;
                for &(off, len) in writes {
                    let mut done = 0u32;
                    while done < len {
                        let n = (len - done).min(MSS as u32);
                        if !first {
                            c.wait(SEGMENT_GAP);
                        }
                        first = false;
                        let last = done + n == len;
                        c.emit(*from, if last { ACK | PSH } else { ACK }, off + done, n);
                        done += n;
                        unacked += 1;
                        if unacked == 2 {
                            c.wait(ACK_DELAY);
                            c.emit(from.other(), ACK, 0, 0);
                            unacked = 0;
                        }
                    }
                }
                if *ack && unacked > 0 {
                    c.wait(ACK_DELAY);
                    c.emit(from.other(), ACK, 0, 0);
                }
            }
            Step::Close { first, delay } => {
                c.wait(*delay);
                c.emit(*first, FIN | ACK, 0, 0);
                c.wait(ACK_DELAY);
                c.emit(first.other(), ACK, 0, 0);
                c.wait((10, 400));
                c.emit(first.other(), FIN | ACK, 0, 0);
                c.wait(ACK_DELAY);
                c.emit(*first, ACK, 0, 0);
            }
            Step::Reset { from, delay } => {
                c.wait(*delay);
                c.emit(*from, RST | ACK, 0, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[Step]) -> Vec<Pkt> {
        let mut out = Vec::new();
        play(steps, 1_000, [1000, 5000], &mut Rng::new(3), &mut out);
        out
    }

    #[test]
    fn connect_numbers() {
        let p = run(&[Step::Connect]);
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[0].from, p[0].flags, p[0].seq, p[0].ack),
            (Side::Client, SYN, 1000, 0)
        );
        assert_eq!(
            (p[1].from, p[1].flags, p[1].seq, p[1].ack),
            (Side::Server, SYN | ACK, 5000, 1001)
        );
        assert_eq!(
            (p[2].from, p[2].flags, p[2].seq, p[2].ack),
            (Side::Client, ACK, 1001, 5001)
        );
        assert!(p[0].ts < p[1].ts && p[1].ts < p[2].ts);
    }

    #[test]
    fn flights_segment_and_ack() {
        let p = run(&[
            Step::Connect,
            Step::Send {
                from: Side::Client,
                writes: vec![(0, 47)],
                think: (10, 20),
                ack: true,
            },
            Step::Send {
                from: Side::Server,
                writes: vec![(47, 3000)],
                think: (10, 20),
                ack: true,
            },
        ]);
        // 3 + (1 data + 1 ack) + (3 segments, ack after 2nd, ack at end)
        assert_eq!(p.len(), 3 + 2 + 5);
        assert_eq!(
            (p[3].from, p[3].flags, p[3].seq, p[3].ack, p[3].len),
            (Side::Client, ACK | PSH, 1001, 5001, 47)
        );
        assert_eq!(
            (p[4].from, p[4].flags, p[4].seq, p[4].ack, p[4].len),
            (Side::Server, ACK, 5001, 1048, 0)
        );
        assert_eq!(
            (p[5].from, p[5].seq, p[5].len, p[5].off, p[5].flags),
            (Side::Server, 5001, 1460, 47, ACK)
        );
        assert_eq!(
            (p[6].from, p[6].seq, p[6].len, p[6].off),
            (Side::Server, 6461, 1460, 1507)
        );
        assert_eq!((p[7].from, p[7].flags, p[7].ack), (Side::Client, ACK, 7921));
        assert_eq!(
            (p[8].from, p[8].seq, p[8].len, p[8].flags),
            (Side::Server, 7921, 80, ACK | PSH)
        );
        assert_eq!(
            (p[9].from, p[9].flags, p[9].seq, p[9].ack),
            (Side::Client, ACK, 1048, 8001)
        );
        assert!(p.windows(2).all(|w| w[0].ts <= w[1].ts));
    }

    #[test]
    fn several_writes_each_end_with_psh() {
        let p = run(&[Step::Send {
            from: Side::Client,
            writes: vec![(0, 8), (8, 100)],
            think: (0, 0),
            ack: true,
        }]);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].len, p[0].flags), (8, ACK | PSH));
        assert_eq!((p[1].off, p[1].len, p[1].seq), (8, 100, 1008));
        assert_eq!((p[2].from, p[2].ack), (Side::Server, 1108));
    }

    #[test]
    fn close_and_reset_and_refused() {
        let p = run(&[
            Step::Connect,
            Step::Close {
                first: Side::Server,
                delay: (1, 1),
            },
        ]);
        let close: Vec<_> = p[3..]
            .iter()
            .map(|x| (x.from, x.flags, x.seq, x.ack))
            .collect();
        assert_eq!(
            close,
            [
                (Side::Server, FIN | ACK, 5001, 1001),
                (Side::Client, ACK, 1001, 5002),
                (Side::Client, FIN | ACK, 1001, 5002),
                (Side::Server, ACK, 5002, 1002),
            ]
        );
        let p = run(&[
            Step::Connect,
            Step::Reset {
                from: Side::Server,
                delay: (5, 5),
            },
        ]);
        assert_eq!(
            (p[3].from, p[3].flags, p[3].seq, p[3].ack),
            (Side::Server, RST | ACK, 5001, 1001)
        );
        let p = run(&[Step::Refused]);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[1].from, p[1].flags, p[1].seq, p[1].ack),
            (Side::Server, RST | ACK, 0, 1001)
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut out = Vec::new();
        play(
            &[
                Step::Connect,
                Step::Send {
                    from: Side::Client,
                    writes: vec![(0, 10)],
                    think: (0, 0),
                    ack: true,
                },
            ],
            0,
            [u32::MAX - 3, 7],
            &mut Rng::new(1),
            &mut out,
        );
        assert_eq!(out[3].seq, u32::MAX - 2);
        assert_eq!(out[4].ack, 7);
    }
}
