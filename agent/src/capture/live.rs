//! Live capture through libpcap (the `pcap` crate): one handle per interface, each a TPACKET_V3 ring
//! (libpcap's default on Linux with immediate mode off) with a large buffer and a kernel BPF filter
//! built from the configured ports, read non-blocking and polled together with a stop pipe. Owns the
//! interface set (every up interface by default, re-scanned every few seconds so veths that come and
//! go are picked up and released), the stable small number each interface name gets, and the
//! per-interface kernel counters. Knows nothing of IP, TCP or TDS beyond the filter text.

use super::{CaptureError, Frame, FrameSource, LinkType, Timestamp};
use pcap::{Active, Capture, Device, Precision};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the interface set is re-scanned (new veths opened, vanished ones dropped).
pub const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// How often the counters behind a [`StatsHandle`] are refreshed, frames or not.
pub const STATS_EVERY: Duration = Duration::from_secs(1);

/// libpcap read timeout: on TPACKET_V3 the kernel hands over a ring block at the latest this long
/// after its first frame, so it bounds how late a quiet interface's frames arrive.
const READ_TIMEOUT_MS: i32 = 100;

/// Frames read from one interface in a row before the others get their turn.
const BURST: u32 = 256;

/// How long an interface that failed to open is left alone before it is tried again (an interface
/// whose link type the filter cannot serve would otherwise get a fresh ring every scan).
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(30);

/// Interface names remembered (with their numbers) beyond the open ones, so a veth that flaps keeps
/// its number; past this, forgotten names are pruned.
const MAX_REMEMBERED_NAMES: usize = 4096;

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// Interfaces to capture on; `None` means every up interface, re-scanned as they come and go.
    pub interfaces: Option<Vec<String>>,
    /// TCP ports of the servers watched (the kernel filter passes only these).
    pub ports: Vec<u16>,
    /// Kernel ring buffer per interface, in bytes.
    pub buffer_bytes: usize,
    /// Bytes kept per frame.
    pub snaplen: i32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            interfaces: None,
            ports: vec![1433],
            buffer_bytes: 64 << 20,
            snaplen: 262_144,
        }
    }
}

/// The kernel's counters for one interface, accumulated over the handle's life (libpcap's 32-bit
/// counters are widened, so they do not wrap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    /// The number `Frame::interface` carries for this interface.
    pub interface: u32,
    /// Frames that passed the filter (`ps_recv`).
    pub received: u64,
    /// Frames dropped because the ring was full (`ps_drop`).
    pub kernel_dropped: u64,
    /// Frames dropped by the interface or its driver (`ps_ifdrop`).
    pub interface_dropped: u64,
}

/// Makes a [`LiveSource`]'s `next_frame` return `Ok(None)` promptly, from any thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<StopInner>);

#[derive(Debug)]
struct StopInner {
    stopped: AtomicBool,
    /// Written once on stop to wake the poll.
    wake: UnixStream,
}

impl StopHandle {
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        // Non-blocking: if the pipe is full a wake-up is already pending.
        let _ = (&self.0.wake).write(&[1]);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }
}

/// The latest per-interface counters, readable from any thread (a metrics server) while the capture
/// thread waits in `next_frame`. Refreshed at least every [`STATS_EVERY`].
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<Mutex<Vec<InterfaceStats>>>);

impl StatsHandle {
    pub fn get(&self) -> Vec<InterfaceStats> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, stats: Vec<InterfaceStats>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = stats;
    }
}

/// Counters as libpcap last reported them (32 bits, wrapping) and their widened totals.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    last: [u32; 3],
    total: [u64; 3],
}

impl Counters {
    fn update(&mut self, now: [u32; 3]) {
        for ((last, total), now) in self.last.iter_mut().zip(&mut self.total).zip(now) {
            *total = total.saturating_add(u64::from(now.wrapping_sub(*last)));
            *last = now;
        }
    }
}

struct Handle {
    name: String,
    number: u32,
    link: LinkType,
    cap: RefCell<Capture<Active>>,
    counters: RefCell<Counters>,
}

impl Handle {
    fn stats(&self) -> InterfaceStats {
        let mut counters = self.counters.borrow_mut();
        if let Ok(s) = self.cap.borrow_mut().stats() {
            counters.update([s.received, s.dropped, s.if_dropped]);
        }
        InterfaceStats {
            name: self.name.clone(),
            interface: self.number,
            received: counters.total[0],
            kernel_dropped: counters.total[1],
            interface_dropped: counters.total[2],
        }
    }
}

/// Where the frame last read lives until the next call.
#[derive(Debug, Default)]
struct Current {
    ts: Timestamp,
    link: Option<LinkType>,
    wire_len: u32,
    interface: u32,
    data: Vec<u8>,
}

/// Frames from libpcap on one or more interfaces.
pub struct LiveSource {
    cfg: LiveConfig,
    handles: Vec<Handle>,
    numbers: HashMap<String, u32>,
    next_number: u32,
    /// Handle read from last, and how many frames in a row.
    cursor: usize,
    burst: u32,
    next_rescan: Instant,
    shared_stats: StatsHandle,
    next_stats: Instant,
    /// Interfaces that failed to open during a scan, and when.
    failed: HashMap<String, Instant>,
    stop: StopHandle,
    woken: UnixStream,
    current: Current,
    pollfds: Vec<libc::pollfd>,
}

impl LiveSource {
    /// Opens a handle on each listed interface (all must open) or on every up interface.
    pub fn open(cfg: &LiveConfig) -> Result<Self, CaptureError> {
        if cfg.ports.is_empty() {
            return Err(live_error("capture", "no ports configured to capture"));
        }
        let (wake, woken) = UnixStream::pair().map_err(|e| CaptureError::Io {
            path: "stop pipe".into(),
            source: e,
        })?;
        for end in [&wake, &woken] {
            end.set_nonblocking(true).map_err(|e| CaptureError::Io {
                path: "stop pipe".into(),
                source: e,
            })?;
        }
        let mut source = LiveSource {
            cfg: cfg.clone(),
            handles: Vec::new(),
            numbers: HashMap::new(),
            next_number: 0,
            cursor: 0,
            burst: 0,
            next_rescan: Instant::now() + RESCAN_EVERY,
            shared_stats: StatsHandle::default(),
            next_stats: Instant::now(),
            failed: HashMap::new(),
            stop: StopHandle(Arc::new(StopInner {
                stopped: AtomicBool::new(false),
                wake,
            })),
            woken,
            current: Current::default(),
            pollfds: Vec::new(),
        };
        match &cfg.interfaces {
            Some(list) => {
                if list.is_empty() {
                    return Err(live_error("capture", "the interface list is empty"));
                }
                for name in list {
                    if !source.is_open(name) {
                        source.add(name)?;
                    }
                }
            }
            None => {
                for name in up_interfaces()? {
                    match source.add(&name) {
                        Ok(()) => {}
                        // Lacking the capability fails everywhere: say so now.
                        Err(e @ CaptureError::Permission { .. }) => return Err(e),
                        // It vanished between the listing and the open, or cannot be served:
                        // left alone for a while.
                        Err(_) => {
                            source.failed.insert(name, Instant::now());
                        }
                    }
                }
            }
        }
        source.publish_stats();
        Ok(source)
    }

    /// A handle that stops this source from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Kernel counters of every interface open now (read fresh, and published to the
    /// [`StatsHandle`]).
    pub fn stats(&self) -> Vec<InterfaceStats> {
        let stats: Vec<InterfaceStats> = self.handles.iter().map(Handle::stats).collect();
        self.shared_stats.set(stats.clone());
        stats
    }

    /// A handle other threads read the counters from while this source captures.
    pub fn stats_handle(&self) -> StatsHandle {
        self.shared_stats.clone()
    }

    fn publish_stats(&mut self) {
        self.next_stats = Instant::now() + STATS_EVERY;
        let _ = self.stats();
    }

    /// Names of the interfaces open now.
    pub fn interfaces(&self) -> Vec<String> {
        self.handles.iter().map(|h| h.name.clone()).collect()
    }

    fn is_open(&self, name: &str) -> bool {
        self.handles.iter().any(|h| h.name == name)
    }

    fn number_for(&mut self, name: &str) -> u32 {
        if let Some(&n) = self.numbers.get(name) {
            return n;
        }
        if self.numbers.len() >= MAX_REMEMBERED_NAMES {
            let open: Vec<&str> = self.handles.iter().map(|h| h.name.as_str()).collect();
            self.numbers.retain(|k, _| open.contains(&k.as_str()));
        }
        let n = self.next_number;
        self.next_number = self.next_number.wrapping_add(1);
        self.numbers.insert(name.to_string(), n);
        n
    }

    fn add(&mut self, name: &str) -> Result<(), CaptureError> {
        let cap = open_handle(name, &self.cfg)?;
        let link = LinkType::from_linktype(u32::try_from(cap.get_datalink().0).unwrap_or(u32::MAX));
        let number = self.number_for(name);
        self.handles.push(Handle {
            name: name.to_string(),
            number,
            link,
            cap: RefCell::new(cap),
            counters: RefCell::new(Counters::default()),
        });
        Ok(())
    }

    /// Opens handles for interfaces that appeared (or, for a fixed list, came back) and drops the
    /// ones that are gone or down.
    fn rescan(&mut self) {
        let now = Instant::now();
        self.next_rescan = now + RESCAN_EVERY;
        self.failed
            .retain(|_, at| now.saturating_duration_since(*at) < RETRY_FAILED_AFTER);
        let wanted: Vec<String> = match &self.cfg.interfaces {
            Some(list) => list.clone(),
            None => match up_interfaces() {
                Ok(up) => {
                    self.handles.retain(|h| up.contains(&h.name));
                    up
                }
                Err(_) => return,
            },
        };
        for name in wanted {
            if !self.is_open(&name) && !self.failed.contains_key(&name) {
                // A listed interface is retried every scan; a discovered one backs off.
                if self.add(&name).is_err() && self.cfg.interfaces.is_none() {
                    self.failed.insert(name, now);
                }
            }
        }
        self.cursor = 0;
        self.burst = 0;
    }

    /// Reads one frame from some handle into `current`; false when none has one ready.
    fn read_one(&mut self) -> bool {
        let n = self.handles.len();
        let mut failed = None;
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let Some(h) = self.handles.get(i) else {
                break;
            };
            let mut cap = h.cap.borrow_mut();
            match cap.next_packet() {
                Ok(p) => {
                    let cur = &mut self.current;
                    cur.data.clear();
                    cur.data.extend_from_slice(p.data);
                    // Nanosecond precision was asked for: tv_usec holds nanoseconds.
                    cur.ts = Timestamp::from_secs_nanos(
                        u64::try_from(p.header.ts.tv_sec).unwrap_or(0),
                        u32::try_from(p.header.ts.tv_usec).unwrap_or(0),
                    );
                    cur.wire_len = p.header.len;
                    cur.link = Some(h.link);
                    cur.interface = h.number;
                    if i == self.cursor {
                        self.burst += 1;
                    } else {
                        self.burst = 1;
                    }
                    self.cursor = if self.burst >= BURST {
                        self.burst = 0;
                        (i + 1) % n
                    } else {
                        i
                    };
                    return true;
                }
                Err(pcap::Error::TimeoutExpired) => {}
                // The interface went down or vanished: release it; the next scan reopens it if it
                // comes back.
                Err(_) => {
                    failed = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = failed {
            self.handles.remove(i);
            self.cursor = 0;
            self.burst = 0;
        }
        false
    }

    /// Waits until a handle may have frames, the stop pipe is written, or the next scan is due.
    fn wait(&mut self) -> Result<(), CaptureError> {
        let timeout = self
            .next_rescan
            .min(self.next_stats)
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(1000);
        let timeout = i32::try_from(timeout).unwrap_or(1000);
        let fds = &mut self.pollfds;
        fds.clear();
        fds.push(pollfd(self.woken.as_raw_fd()));
        for h in &self.handles {
            let fd = h.cap.borrow().as_raw_fd();
            fds.push(pollfd(fd));
        }
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
        // SAFETY: `fds` is a live, exclusively borrowed array of `nfds` initialised pollfd structs;
        // every descriptor in it stays open for the call (the handles and the pipe are owned by
        // `self`, which this call borrows mutably).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(CaptureError::Io {
                    path: "poll".into(),
                    source: e,
                });
            }
        }
        if self.pollfds.first().is_some_and(|f| f.revents != 0) {
            let mut buf = [0u8; 64];
            while matches!((&self.woken).read(&mut buf), Ok(n) if n > 0) {}
        }
        // An error or hang-up on a ring with nothing to read (the interface went down or
        // vanished): release it rather than spin; the next scan reopens it if it comes back.
        let dead: Vec<usize> = self
            .pollfds
            .iter()
            .skip(1)
            .enumerate()
            .filter(|(_, f)| {
                f.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
                    && f.revents & libc::POLLIN == 0
            })
            .map(|(i, _)| i)
            .collect();
        for &i in dead.iter().rev() {
            if i < self.handles.len() {
                self.handles.remove(i);
            }
        }
        if !dead.is_empty() {
            self.cursor = 0;
            self.burst = 0;
        }
        Ok(())
    }
}

impl FrameSource for LiveSource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.advance(None)? {
            Ready::Frame => Ok(Some(self.current_frame())),
            Ready::Stopped | Ready::Idle => Ok(None),
        }
    }
}

/// What [`LiveSource::next_event`] found.
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// No frame for the idle period: the caller's timers can run.
    Idle,
    /// [`StopHandle::stop`] was called.
    Stopped,
}

/// Where [`LiveSource::advance`] stopped (the frame itself waits in `current`).
enum Ready {
    Frame,
    Idle,
    Stopped,
}

impl LiveSource {
    /// Like [`FrameSource::next_frame`], but comes back with [`Next::Idle`] when no frame arrived for
    /// about `idle` (at most one poll period more), so that a quiet host still gets its idle
    /// connections expired and its counters published.
    pub fn next_event(&mut self, idle: Duration) -> Result<Next<'_>, CaptureError> {
        Ok(match self.advance(Some(Instant::now() + idle))? {
            Ready::Frame => Next::Frame(self.current_frame()),
            Ready::Idle => Next::Idle,
            Ready::Stopped => Next::Stopped,
        })
    }

    /// Waits for the next frame (into `current`), the stop, or the deadline.
    fn advance(&mut self, deadline: Option<Instant>) -> Result<Ready, CaptureError> {
        loop {
            if self.stop.is_stopped() {
                return Ok(Ready::Stopped);
            }
            let now = Instant::now();
            if now >= self.next_rescan {
                self.rescan();
            }
            if now >= self.next_stats {
                self.publish_stats();
            }
            if self.read_one() {
                return Ok(Ready::Frame);
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Ready::Idle);
            }
            self.wait()?;
        }
    }

    fn current_frame(&self) -> Frame<'_> {
        let cur = &self.current;
        Frame {
            ts: cur.ts,
            link: cur.link.unwrap_or(LinkType::Unsupported(u32::MAX)),
            data: &cur.data,
            wire_len: cur.wire_len,
            interface: cur.interface,
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// The kernel filter: TCP to or from any of the ports, plain or inside one VLAN tag. The VLAN part
/// comes last because `vlan` shifts the offsets of everything after it.
pub fn bpf_filter(ports: &[u16], vlan: bool) -> String {
    let tcp = ports
        .iter()
        .map(|p| format!("tcp port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    if vlan {
        format!("({tcp}) or (vlan and ({tcp}))")
    } else {
        tcp
    }
}

/// Whether a libpcap open error means the process lacks the capture capability.
pub fn is_permission_error(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("not permitted") || d.contains("permission") || d.contains("cap_net_raw")
}

fn live_error(what: &str, detail: impl Into<String>) -> CaptureError {
    CaptureError::Io {
        path: what.to_string(),
        source: io::Error::other(detail.into()),
    }
}

fn open_error(interface: &str, e: &pcap::Error) -> CaptureError {
    let detail = e.to_string();
    if is_permission_error(&detail) {
        CaptureError::Permission {
            interface: interface.to_string(),
            detail,
        }
    } else {
        live_error(&format!("interface {interface}"), detail)
    }
}

fn open_handle(name: &str, cfg: &LiveConfig) -> Result<Capture<Active>, CaptureError> {
    let err = |e: pcap::Error| open_error(name, &e);
    let cap = Capture::from_device(name)
        .map_err(err)?
        .promisc(false)
        .immediate_mode(false)
        .timeout(READ_TIMEOUT_MS)
        .buffer_size(i32::try_from(cfg.buffer_bytes).unwrap_or(i32::MAX))
        .snaplen(cfg.snaplen)
        .precision(Precision::Nano)
        .open()
        .map_err(err)?
        .setnonblock()
        .map_err(err)?;
    let mut cap = cap;
    let vlan = cap.get_datalink() == pcap::Linktype::ETHERNET;
    cap.filter(&bpf_filter(&cfg.ports, vlan), true)
        .map_err(err)?;
    Ok(cap)
}

/// Names of the network interfaces that are up (libpcap's pseudo-devices such as `any`, `nflog`
/// or USB monitors are left out).
fn up_interfaces() -> Result<Vec<String>, CaptureError> {
    let devices = Device::list().map_err(|e| live_error("interface list", e.to_string()))?;
    Ok(devices
        .into_iter()
        .filter(|d| d.name != "any" && d.flags.is_up() && !is_pseudo_device(&d.name))
        .map(|d| d.name)
        .collect())
}

fn is_pseudo_device(name: &str) -> bool {
    [
        "nflog",
        "nfqueue",
        "usbmon",
        "bluetooth",
        "dbus-",
        "dag",
        "snf",
        "rpcap",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_covers_every_port_plain_and_tagged() {
        assert_eq!(bpf_filter(&[1433], false), "tcp port 1433");
        assert_eq!(
            bpf_filter(&[1433, 14330], true),
            "(tcp port 1433 or tcp port 14330) or (vlan and (tcp port 1433 or tcp port 14330))"
        );
    }

    #[test]
    fn filters_compile_for_ethernet_and_raw_links() {
        for (link, vlan) in [
            (pcap::Linktype::ETHERNET, true),
            (pcap::Linktype(12), false),
        ] {
            let dead = Capture::dead(link).expect("dead handle");
            dead.compile(&bpf_filter(&[1433, 2000], vlan), true)
                .expect("filter compiles");
        }
    }

    /// Ethernet, optionally one 802.1Q tag, IPv4, TCP from port 50000 to `port` (no checksums: the
    /// filter does not look at them).
    fn tcp_frame(vlan: bool, port: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
        f.extend_from_slice(&50000u16.to_be_bytes());
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    #[test]
    fn filter_passes_the_ports_plain_and_vlan_tagged_and_nothing_else() {
        let dead = Capture::dead(pcap::Linktype::ETHERNET).expect("dead handle");
        let prog = dead
            .compile(&bpf_filter(&[1433, 14330], true), true)
            .expect("filter compiles");
        for vlan in [false, true] {
            assert!(prog.filter(&tcp_frame(vlan, 1433)), "vlan {vlan}");
            assert!(prog.filter(&tcp_frame(vlan, 14330)), "vlan {vlan}");
            assert!(!prog.filter(&tcp_frame(vlan, 80)), "vlan {vlan}");
        }
    }

    #[test]
    fn a_source_can_move_to_a_capture_thread() {
        fn send<T: Send>() {}
        send::<LiveSource>();
        send::<StopHandle>();
        send::<StatsHandle>();
        fn sync<T: Sync>() {}
        sync::<StatsHandle>();
    }

    #[test]
    fn permission_errors_are_recognised() {
        assert!(is_permission_error(
            "libpcap error: socket: Operation not permitted"
        ));
        assert!(is_permission_error(
            "Attempt to create packet socket failed - CAP_NET_RAW may be required"
        ));
        assert!(!is_permission_error("No such device exists"));
    }

    #[test]
    fn counters_widen_across_a_wrap() {
        let mut c = Counters::default();
        c.update([u32::MAX - 1, 0, 0]);
        c.update([3, 1, 0]);
        assert_eq!(c.total, [u64::from(u32::MAX) + 4, 1, 0]);
    }

    #[test]
    fn no_ports_is_an_error() {
        let cfg = LiveConfig {
            ports: Vec::new(),
            ..LiveConfig::default()
        };
        assert!(LiveSource::open(&cfg).is_err());
    }
}
