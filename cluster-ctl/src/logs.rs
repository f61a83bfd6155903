//! Logs: the default subscriber of `#[cluster_thread::main]` programs (info
//! to stderr, `RUST_LOG` overrides, its level changeable live), and the
//! ring of recent lines per slot behind `cluster-thread logs`, fed by the
//! same `tracing` layer: each line as written to stderr, filed under the
//! slot of the `worker{id, slot}` span it was logged in (or the primary's).

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

use crate::protocol::LogLine;
use crate::Error;

/// The ring's byte cap per slot unless [`set_ring_cap`] says otherwise: 1 MiB.
pub const DEFAULT_RING_BYTES: usize = 1 << 20;

/// What a line costs the ring beyond its text (its bookkeeping).
const LINE_OVERHEAD: usize = std::mem::size_of::<LogLine>();

/// The process's log ring: one bounded ring per slot, and the primary's.
#[derive(Debug)]
pub struct Logs {
    rings: Mutex<BTreeMap<Option<usize>, Ring>>,
    next: AtomicU64,
    cap: AtomicUsize,
    /// Woken at each new line, for `logs -f`.
    pub(crate) new_line: Notify,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

/// The process's log ring (one per process: the `tracing` subscriber is too).
pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| Logs::new(DEFAULT_RING_BYTES))
}

/// Sets the byte cap of each slot's ring (and the primary's), from now on.
pub fn set_ring_cap(bytes: usize) {
    logs().cap.store(bytes.max(256), Ordering::Relaxed);
}

impl Logs {
    pub(crate) fn new(cap: usize) -> Logs {
        Logs {
            rings: Mutex::default(),
            next: AtomicU64::new(1),
            cap: AtomicUsize::new(cap),
            new_line: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Option<usize>, Ring>> {
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a line to `slot`'s ring (the primary's for `None`), dropping
    /// its oldest lines past the cap.
    pub fn push(&self, slot: Option<usize>, text: &str) {
        let cap = self.cap.load(Ordering::Relaxed);
        let mut text = text.trim_end_matches('\n');
        let room = cap.saturating_sub(LINE_OVERHEAD);
        if text.len() > room {
            let mut end = room;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text = &text[..end];
        }
        {
            let mut rings = self.lock();
            let ring = rings.entry(slot).or_default();
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            ring.bytes += text.len() + LINE_OVERHEAD;
            ring.lines.push_back(LogLine {
                seq,
                slot,
                line: text.to_owned(),
            });
            while ring.bytes > cap {
                match ring.lines.pop_front() {
                    Some(old) => ring.bytes -= old.line.len() + LINE_OVERHEAD,
                    None => break,
                }
            }
        }
        self.new_line.notify_waiters();
    }

    /// The last `n` lines after `after` (a `seq`), of one slot or (`None`)
    /// of every ring, in order.
    pub fn lines(&self, slot: Option<usize>, after: u64, n: usize) -> Vec<LogLine> {
        let rings = self.lock();
        let mut out: Vec<LogLine> = match slot {
            Some(slot) => rings
                .get(&Some(slot))
                .into_iter()
                .flat_map(|r| r.lines.iter().rev().take_while(|l| l.seq > after).take(n))
                .cloned()
                .collect(),
            None => rings
                .values()
                .flat_map(|r| r.lines.iter().rev().take_while(|l| l.seq > after).take(n))
                .cloned()
                .collect(),
        };
        out.sort_unstable_by_key(|l| l.seq);
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
        out
    }

    /// The bytes each ring holds now (its lines and their bookkeeping).
    pub fn ring_bytes(&self) -> BTreeMap<Option<usize>, usize> {
        self.lock().iter().map(|(k, r)| (*k, r.bytes)).collect()
    }

    /// The `seq` of the newest line so far (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.next.load(Ordering::Relaxed) - 1
    }
}

thread_local! {
    /// The slot of the event being written on this thread: set by
    /// [`SlotTag`] just before the fmt layer writes it.
    static EVENT_SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The slot of a `worker{id, slot}` span of cluster_core.
struct WorkerSlot(usize);

/// Notes, for each event, the slot of the worker span it is in.
struct SlotTag;

struct SlotVisitor(Option<usize>);

impl Visit for SlotVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "slot" {
            self.0 = usize::try_from(value).ok();
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "slot" {
            self.0 = usize::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S> Layer<S> for SlotTag
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if meta.name() != "worker" || !meta.target().starts_with("cluster_core") {
            return;
        }
        let mut visitor = SlotVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(slot), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(WorkerSlot(slot));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let slot = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<WorkerSlot>().map(|s| s.0))
        });
        EVENT_SLOT.with(|s| s.set(slot));
    }
}

/// Where the fmt layer writes: the ring, and stderr if asked.
#[derive(Clone, Copy)]
struct RingWriter {
    stderr: bool,
}

impl Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stderr {
            let _ = std::io::stderr().write_all(buf);
        }
        let slot = EVENT_SLOT.with(Cell::get);
        logs().push(slot, &String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> fmt::MakeWriter<'a> for RingWriter {
    type Writer = RingWriter;

    fn make_writer(&'a self) -> RingWriter {
        *self
    }
}

/// The layer that feeds the log ring, for a program that sets up its own
/// subscriber: `tracing_subscriber::registry().with(cluster_ctl::log_layer()).with(...)`.
/// Lines are formatted as `tracing_subscriber::fmt`'s default (without
/// the target), and not written anywhere else.
pub fn log_layer<S>() -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ring_layer(false)
}

fn ring_layer<S>(stderr: bool) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    SlotTag.and_then(
        fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_writer(RingWriter { stderr }),
    )
}

/// The live level of the default subscriber.
struct Level {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

static LEVEL: OnceLock<Level> = OnceLock::new();

/// Installs the default subscriber unless the program set one: lines at
/// `level` (`info` if `None`; `RUST_LOG` overrides it) to stderr and to the
/// log ring. Returns false if a subscriber was there already (it is kept,
/// and the ring stays empty). `level = "off"` installs nothing.
pub fn install_default_logs(level: Option<&str>) -> Result<bool, Error> {
    let level = level.unwrap_or("info");
    if level.trim() == "off" || tracing::dispatcher::has_been_set() {
        return Ok(false);
    }
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (directives, filter) = match from_env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (from_env.clone().unwrap_or_default(), filter),
        _ => (level.to_owned(), parse_filter(level)?),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(ring_layer(true))
        .try_init()
        .is_ok();
    if installed {
        let _ = LEVEL.set(Level {
            handle,
            current: Mutex::new(directives),
        });
        if let Some(bad) = from_env.filter(|v| EnvFilter::try_new(v).is_err()) {
            tracing::warn!(RUST_LOG = %bad, "RUST_LOG is not a valid filter; logging at {level}");
        }
    }
    Ok(installed)
}

fn parse_filter(value: &str) -> Result<EnvFilter, Error> {
    EnvFilter::try_new(value.trim()).map_err(|e| Error::LogFilter {
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

/// The default subscriber's filter now (`RUST_LOG`'s syntax).
pub fn log_level() -> Result<String, Error> {
    let level = LEVEL.get().ok_or(Error::NotOurLogs(
        "its level is not known here; set RUST_LOG instead",
    ))?;
    Ok(level
        .current
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone())
}

/// Changes the default subscriber's filter (`info`, `debug`,
/// `info,cluster_http=debug`): lines to stderr and to the ring alike.
pub fn set_log_level(value: &str) -> Result<(), Error> {
    let level = LEVEL.get().ok_or(Error::NotOurLogs(
        "its level cannot be changed here; set RUST_LOG instead",
    ))?;
    let filter = parse_filter(value)?;
    level.handle.reload(filter).map_err(|e| Error::LogFilter {
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    *level.current.lock().unwrap_or_else(PoisonError::into_inner) = value.trim().to_owned();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_stays_within_its_cap() {
        let logs = Logs::new(64 * 1024);
        for i in 0..100_000 {
            logs.push(Some(i % 2), &format!("line {i} of slot {}\n", i % 2));
        }
        for (slot, bytes) in logs.ring_bytes() {
            assert!(bytes <= 64 * 1024, "{slot:?}: {bytes}");
            assert!(bytes > 60 * 1024, "{slot:?}: {bytes}: the ring is used");
        }
        let last = logs.lines(Some(1), 0, 2);
        assert_eq!(
            last.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["line 99997 of slot 1", "line 99999 of slot 1"]
        );
        let all = logs.lines(None, 0, 3);
        assert_eq!(all[2].line, "line 99999 of slot 1");
        assert_eq!(all[1].line, "line 99998 of slot 0");
        let after = logs.lines(None, all[1].seq, 10);
        assert_eq!(after.len(), 1);
    }

    #[test]
    fn a_line_longer_than_the_cap_is_cut() {
        let logs = Logs::new(1024);
        logs.push(None, &"é".repeat(4096));
        let bytes = logs.ring_bytes()[&None];
        assert!(bytes <= 1024, "{bytes}");
        assert_eq!(logs.lines(None, 0, 1).len(), 1);
    }
}
