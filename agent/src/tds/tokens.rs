//! The token walk over a clear server response ([MS-TDS] 2.2.7), incremental: a token's fixed head
//! is gathered in a 16-byte array (from the chunk itself when it is all there), the rest of the token
//! is skipped by count, never buffered. So no message text (ERROR and INFO name the user) is ever
//! kept, and a lying length costs a counter, not memory. The walk reads the first `max_tds_message`
//! bytes of a message at most and stops at the first token it does not know or that does not hold
//! together.

use super::TdsEvent;

const RETURNSTATUS: u8 = 0x79;
const ORDER: u8 = 0xA9;
const ERROR: u8 = 0xAA;
const INFO: u8 = 0xAB;
const LOGINACK: u8 = 0xAD;
const FEATUREEXTACK: u8 = 0xAE;
const ENVCHANGE: u8 = 0xE3;
const SESSIONSTATE: u8 = 0xE4;
const FEDAUTHINFO: u8 = 0xEE;
const DONE: u8 = 0xFD;
const DONEPROC: u8 = 0xFE;
const DONEINPROC: u8 = 0xFF;

/// ENVCHANGE type 20: routing ([MS-TDS] 2.2.7.9).
const ENV_ROUTING: u8 = 20;
/// FEATUREEXTACK ends with this feature id.
const FEATURE_TERMINATOR: u8 = 0xFF;
/// From TDS 7.2 on, DONE's row count is 8 bytes (12 bytes after the token), before it 4 (8 bytes).
const TDS_7_2: u32 = 0x7209_0002;
const TDS_7_0: u32 = 0x7000_0000;
const DONE_LEN_72: u64 = 12;
const DONE_LEN_71: u64 = 8;

/// The most a token head needs to be looked at: DONE, its 12 bytes, and the next token's type.
const MAX_PEEK: usize = 14;
const ACC_LEN: usize = 16;

/// Token types of [MS-TDS] 2.2.7, to tell whether a DONE's successor starts where a guess puts it.
fn is_token(b: u8) -> bool {
    matches!(
        b,
        0x78 | 0x79 | 0x81 | 0x88 | 0xA4 | 0xA5 | 0xA9..=0xAE | 0xD1..=0xD3 | 0xE3 | 0xE4 | 0xED | 0xEE | 0xFD..=0xFF
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At a token boundary.
    Tokens,
    /// Inside FEATUREEXTACK, at a feature boundary.
    FeatureExt,
    /// The walk is over for this message.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    LoginAck(u32),
    Error { number: u32, state: u8, class: u8 },
    Routing(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The head needs more bytes than the view holds.
    More,
    /// Unknown or inconsistent token: the walk ends.
    Stop,
    /// Consume `n` bytes of the view, then skip `skip` more, continue in `mode`.
    Took {
        n: usize,
        skip: u64,
        mode: Mode,
        found: Option<Found>,
    },
}

fn took(n: usize, skip: u64, found: Option<Found>) -> Step {
    Step::Took {
        n,
        skip,
        mode: Mode::Tokens,
        found,
    }
}

/// Walks the tokens of one response message at a time.
#[derive(Debug, Clone)]
pub(super) struct Walker {
    cap: usize,
    acc: [u8; ACC_LEN],
    acc_len: usize,
    skip: u64,
    mode: Mode,
    /// Bytes of this message fed to the walk (at most `cap`).
    fed: usize,
    /// The message went on past `cap`: its end is not where the walk stopped reading.
    truncated: bool,
    seen_loginack: bool,
    seen_error: bool,
    seen_routing: bool,
    /// What the token being skipped holds, told once the whole token is there (a token whose length
    /// runs past the end of the message tells nothing).
    pending: Option<Found>,
    /// The TDS version of the last LOGINACK, which settles DONE's size.
    version: Option<u32>,
}

impl Walker {
    pub(super) fn new(cap: usize) -> Self {
        Walker {
            cap,
            acc: [0; ACC_LEN],
            acc_len: 0,
            skip: 0,
            mode: Mode::Stopped,
            fed: 0,
            truncated: false,
            seen_loginack: false,
            seen_error: false,
            seen_routing: false,
            pending: None,
            version: None,
        }
    }

    /// A new message starts.
    pub(super) fn start(&mut self) {
        *self = Walker {
            version: self.version,
            ..Walker::new(self.cap)
        };
        self.mode = Mode::Tokens;
    }

    /// The message's next payload bytes.
    pub(super) fn feed(&mut self, data: &[u8], out: &mut dyn FnMut(TdsEvent<'_>)) {
        if self.mode == Mode::Stopped {
            return;
        }
        let room = self.cap.saturating_sub(self.fed);
        let data = if data.len() > room {
            self.truncated = true;
            data.get(..room).unwrap_or_default()
        } else {
            data
        };
        self.fed += data.len();
        self.run(data, false, out);
    }

    /// The message ended: what is held is all there is.
    pub(super) fn finish(&mut self, out: &mut dyn FnMut(TdsEvent<'_>)) {
        if self.mode != Mode::Stopped && !self.truncated && self.skip == 0 {
            self.run(&[], true, out);
        }
        self.mode = Mode::Stopped;
        self.acc_len = 0;
    }

    fn run(&mut self, mut data: &[u8], eom: bool, out: &mut dyn FnMut(TdsEvent<'_>)) {
        loop {
            if self.mode == Mode::Stopped {
                self.acc_len = 0;
                return;
            }
            if self.skip > 0 {
                if self.acc_len > 0 {
                    let k = self.skip.min(self.acc_len as u64) as usize;
                    self.consume_acc(k);
                    self.skip -= k as u64;
                } else {
                    let k = usize::try_from(self.skip)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    data = data.get(k..).unwrap_or_default();
                    self.skip -= k as u64;
                }
                if self.skip > 0 {
                    if self.acc_len == 0 && data.is_empty() {
                        return;
                    }
                    continue;
                }
                if let Some(f) = self.pending.take() {
                    self.emit(f, out);
                }
                continue;
            }
            let (step, from_acc) = if self.acc_len == 0 {
                if data.is_empty() {
                    return;
                }
                (self.step(data, eom), false)
            } else {
                let c = (ACC_LEN - self.acc_len).min(data.len());
                let (part, rest) = data.split_at(c);
                if let Some(dst) = self.acc.get_mut(self.acc_len..self.acc_len + c) {
                    dst.copy_from_slice(part);
                }
                self.acc_len += c;
                data = rest;
                let view = self.acc.get(..self.acc_len).unwrap_or_default();
                (self.step(view, eom && data.is_empty()), true)
            };
            match step {
                Step::More => {
                    if !from_acc && data.len() < ACC_LEN {
                        if let Some(dst) = self.acc.get_mut(..data.len()) {
                            dst.copy_from_slice(data);
                        }
                        self.acc_len = data.len();
                        data = &[];
                    }
                    if eom || !data.is_empty() {
                        // A token cut off by the end of the message (or, impossibly, a head longer
                        // than the array).
                        self.mode = Mode::Stopped;
                        self.acc_len = 0;
                    }
                    return;
                }
                Step::Stop => {
                    self.mode = Mode::Stopped;
                    self.acc_len = 0;
                    return;
                }
                Step::Took {
                    n,
                    skip,
                    mode,
                    found,
                } => {
                    match found {
                        Some(f) if skip == 0 => self.emit(f, out),
                        f => self.pending = f,
                    }
                    if from_acc {
                        self.consume_acc(n);
                    } else {
                        data = data.get(n..).unwrap_or_default();
                    }
                    self.skip = skip;
                    self.mode = mode;
                }
            }
        }
    }

    fn consume_acc(&mut self, n: usize) {
        let n = n.min(self.acc_len);
        self.acc.copy_within(n..self.acc_len, 0);
        self.acc_len -= n;
    }

    fn emit(&mut self, f: Found, out: &mut dyn FnMut(TdsEvent<'_>)) {
        match f {
            Found::LoginAck(v) => {
                if !std::mem::replace(&mut self.seen_loginack, true) {
                    self.version = Some(v);
                    out(TdsEvent::LoginAck { tds_version: v });
                }
            }
            Found::Error {
                number,
                state,
                class,
            } => {
                if !std::mem::replace(&mut self.seen_error, true) {
                    out(TdsEvent::Error {
                        number,
                        state,
                        class,
                    });
                }
            }
            Found::Routing(port) => {
                if !std::mem::replace(&mut self.seen_routing, true) {
                    out(TdsEvent::Routing { port });
                }
            }
        }
    }

    /// What to do with a view starting at a token (or feature) boundary. Only ever answers `More`
    /// when more bytes could change the answer, so the result does not depend on chunking.
    fn step(&self, v: &[u8], eom: bool) -> Step {
        match self.mode {
            Mode::Stopped => Step::Stop,
            Mode::FeatureExt => match v {
                [FEATURE_TERMINATOR, ..] => Step::Took {
                    n: 1,
                    skip: 0,
                    mode: Mode::Tokens,
                    found: None,
                },
                [_, a, b, c, d, ..] => Step::Took {
                    n: 5,
                    skip: u64::from(u32::from_le_bytes([*a, *b, *c, *d])),
                    mode: Mode::FeatureExt,
                    found: None,
                },
                _ => Step::More,
            },
            Mode::Tokens => self.token(v, eom),
        }
    }

    fn token(&self, v: &[u8], eom: bool) -> Step {
        let Some(&t) = v.first() else {
            return Step::More;
        };
        let len16 = |v: &[u8]| match v {
            [_, a, b, ..] => Some(u64::from(u16::from_le_bytes([*a, *b]))),
            _ => None,
        };
        match t {
            LOGINACK => {
                // Length, interface u8, TDS version u32 BE, program name B_VARCHAR (1 + 2 per
                // character), program version 4 bytes: the length must add up exactly.
                let &[_, l0, l1, _interface, v0, v1, v2, v3, name_chars, ..] = v else {
                    return Step::More;
                };
                let len = u64::from(u16::from_le_bytes([l0, l1]));
                if len != 1 + 4 + 1 + 2 * u64::from(name_chars) + 4 {
                    return Step::Stop;
                }
                took(
                    3,
                    len,
                    Some(Found::LoginAck(u32::from_be_bytes([v0, v1, v2, v3]))),
                )
            }
            ERROR => {
                // Length, number i32 LE, state, class, message US_VARCHAR (2 + 2 per character),
                // server and procedure B_VARCHAR (≥ 1 each), line number (≥ 2).
                let &[_, l0, l1, n0, n1, n2, n3, state, class, m0, m1, ..] = v else {
                    return Step::More;
                };
                let len = u64::from(u16::from_le_bytes([l0, l1]));
                let text = u64::from(u16::from_le_bytes([m0, m1]));
                if len < 4 + 1 + 1 + 2 + 2 * text + 1 + 1 + 2 {
                    return Step::Stop;
                }
                let number = u32::from_le_bytes([n0, n1, n2, n3]);
                took(
                    3,
                    len,
                    Some(Found::Error {
                        number,
                        state,
                        class,
                    }),
                )
            }
            INFO | ORDER => match len16(v) {
                Some(len) => took(3, len, None),
                None => Step::More,
            },
            ENVCHANGE => {
                let &[_, l0, l1, kind, ..] = v else {
                    return Step::More;
                };
                let len = u64::from(u16::from_le_bytes([l0, l1]));
                if len == 0 {
                    return Step::Stop;
                }
                if kind != ENV_ROUTING {
                    return took(3, len, None);
                }
                // Type, value length u16, value (protocol u8, port u16, server US_VARCHAR ≥ 2), old
                // value length u16 (0).
                let &[_, _, _, _, vl0, vl1, protocol, p0, p1, ..] = v else {
                    return if len < 6 { Step::Stop } else { Step::More };
                };
                let value_len = u64::from(u16::from_le_bytes([vl0, vl1]));
                if value_len < 5 || len < 1 + 2 + value_len {
                    return Step::Stop;
                }
                let found = (protocol == 0).then(|| Found::Routing(u16::from_le_bytes([p0, p1])));
                took(3, len, found)
            }
            FEATUREEXTACK => Step::Took {
                n: 1,
                skip: 0,
                mode: Mode::FeatureExt,
                found: None,
            },
            SESSIONSTATE | FEDAUTHINFO => match v {
                [_, a, b, c, d, ..] => {
                    took(5, u64::from(u32::from_le_bytes([*a, *b, *c, *d])), None)
                }
                _ => Step::More,
            },
            RETURNSTATUS => match v.len() {
                0..=4 => Step::More,
                _ => took(5, 0, None),
            },
            DONE | DONEPROC | DONEINPROC => match self.done_len(v, eom) {
                Some(len) => took(1, len, None),
                None if eom => Step::Stop,
                None => Step::More,
            },
            _ => Step::Stop,
        }
    }

    /// DONE's length after the token: from the LOGINACK version when one was seen, else whichever of
    /// 12 and 8 lands on a token or on the end of the message (12 when both or neither do).
    fn done_len(&self, v: &[u8], eom: bool) -> Option<u64> {
        if let Some(version) = self.version {
            return Some(if (TDS_7_0..TDS_7_2).contains(&version) {
                DONE_LEN_71
            } else {
                DONE_LEN_72
            });
        }
        if let Some(&after12) = v.get(MAX_PEEK - 1) {
            let after8 = v.get(1 + DONE_LEN_71 as usize).copied().unwrap_or(0);
            return Some(if !is_token(after12) && is_token(after8) {
                DONE_LEN_71
            } else {
                DONE_LEN_72
            });
        }
        if !eom {
            return None;
        }
        match v.len() {
            13 => Some(DONE_LEN_72),
            9..=12 => Some(DONE_LEN_71),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned copy of the events a walk emits.
    fn walk(cap: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut w = Walker::new(cap);
        w.start();
        let mut evs = Vec::new();
        for c in chunks {
            w.feed(c, &mut |e| evs.push(format!("{e:?}")));
        }
        w.finish(&mut |e| evs.push(format!("{e:?}")));
        evs
    }

    fn done(len: usize) -> Vec<u8> {
        let mut t = vec![DONE, 0x00, 0x00, 0xC1, 0x00];
        t.resize(1 + len, 0);
        t
    }

    #[test]
    fn done_sizes() {
        let err = crate::tds::tests::error_token(18456, 1, 14, "Login failed for user 'x'.");
        for n in [8usize, 12] {
            // DONE, DONE, then an ERROR: reached only if both DONE sizes were guessed right.
            let mut m = done(n);
            m.extend(done(n));
            m.extend(&err);
            let want = vec!["Error { number: 18456, state: 1, class: 14 }".to_string()];
            assert_eq!(walk(1 << 16, &[&m]), want, "DONE of {n}");
            let bytes: Vec<&[u8]> = m.chunks(1).collect();
            assert_eq!(
                walk(1 << 16, &bytes),
                want,
                "DONE of {n}, one byte at a time"
            );
            // A lone DONE at the end of the message, either size: no panic, no event.
            assert!(walk(1 << 16, &[&done(n)]).is_empty());
        }
    }

    #[test]
    fn feature_ext_ack_is_skipped() {
        let mut m = vec![
            FEATUREEXTACK,
            0x01,
            3,
            0,
            0,
            0,
            9,
            9,
            9,
            0x0A,
            1,
            0,
            0,
            0,
            1,
            FEATURE_TERMINATOR,
        ];
        m.extend(crate::tds::tests::error_token(4060, 1, 11, "db"));
        assert_eq!(
            walk(1 << 16, &[&m]),
            vec!["Error { number: 4060, state: 1, class: 11 }".to_string()]
        );
    }

    #[test]
    fn cap_stops_the_walk() {
        let mut m = vec![INFO, 0x10, 0x00];
        m.extend([0u8; 16]);
        m.extend(crate::tds::tests::error_token(18456, 1, 14, "x"));
        // The INFO takes 19 bytes, the ERROR 27: it counts only when all of it is within the cap.
        assert_eq!(walk(19, &[&m]), Vec::<String>::new());
        assert_eq!(walk(19 + 26, &[&m]), Vec::<String>::new());
        assert_eq!(
            walk(19 + 27, &[&m]),
            vec!["Error { number: 18456, state: 1, class: 14 }".to_string()]
        );
    }

    #[test]
    fn inconsistent_heads_stop() {
        // LOGINACK whose length does not add up; ERROR too short for its text; ENVCHANGE of 0 bytes.
        let cases: [&[u8]; 3] = [
            &[
                LOGINACK, 0x20, 0x00, 0x01, 0x74, 0x00, 0x00, 0x04, 0x01, 0x41, 0x00, 1, 2, 3, 4,
            ],
            &[
                ERROR, 0x0C, 0x00, 0x18, 0x48, 0, 0, 1, 14, 0x40, 0x00, 0, 0, 0, 0, 0,
            ],
            &[ENVCHANGE, 0x00, 0x00, 0xAA, 0x0C, 0x00],
        ];
        for m in cases {
            assert!(walk(1 << 16, &[m]).is_empty(), "{m:02x?}");
        }
    }
}
