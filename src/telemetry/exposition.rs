//! The exposition: one list of sections, each writing its own families.
//! A section whose values change only through its write methods keeps its
//! encoded text and encodes again only after a write moved its version
//! ([`Cached`]); a section changed on every request (tokens, HTTP) writes its
//! values on every scrape from cells whose series text is built once; the
//! process metrics are read from `/proc` at most once per
//! [`PROCESS_SAMPLE_PERIOD`] (reading `/proc/self/limits` alone cost more than
//! all the rest of a scrape).

use super::PROCESS_SAMPLE_PERIOD;
use super::catalogue::Family;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One part of the exposition.
pub(super) trait Section: Send + Sync {
    /// The families it writes, in order (a catalogue list; empty for the
    /// process metrics, which are the prometheus crate's).
    fn families(&self) -> &'static [Family];
    /// Appends its families (a family without series is left out).
    fn append_to(&self, out: &mut Vec<u8>);
}

/// The encoded text of a section and the version it was encoded at; every
/// write to the section calls [`Cached::bump`] after changing its values.
pub(super) struct Cached {
    version: AtomicU64,
    text: Mutex<Option<(u64, Vec<u8>)>>,
}

impl Cached {
    pub(super) fn new() -> Self {
        Cached {
            version: AtomicU64::new(0),
            text: Mutex::new(None),
        }
    }

    /// Says the section's values changed: the next scrape encodes it again.
    pub(super) fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Appends the text, encoding it again with `encode` if a write came
    /// since it was encoded.
    pub(super) fn append_to(&self, out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
        // Read the version before encoding: a write racing with the encoding
        // leaves the text marked older than it is, never newer.
        let version = self.version.load(Ordering::Acquire);
        let mut cached = lock(&self.text);
        match &*cached {
            Some((at, text)) if *at == version => out.extend_from_slice(text),
            _ => {
                let mut text = Vec::with_capacity(cached.as_ref().map_or(1024, |(_, t)| t.len()));
                encode(&mut text);
                out.extend_from_slice(&text);
                *cached = Some((version, text));
            }
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data written whole: a panic elsewhere
    // cannot leave them half-written in a way that matters.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The process metrics (CPU, memory, file descriptors, threads, start time),
/// sampled at most once per [`PROCESS_SAMPLE_PERIOD`].
pub(super) struct ProcessSection {
    #[cfg(target_os = "linux")]
    collector: prometheus::process_collector::ProcessCollector,
    #[cfg(target_os = "linux")]
    cached: Mutex<Option<(std::time::Instant, Vec<u8>)>>,
}

impl ProcessSection {
    pub(super) fn new() -> Self {
        ProcessSection {
            #[cfg(target_os = "linux")]
            collector: prometheus::process_collector::ProcessCollector::for_self(),
            #[cfg(target_os = "linux")]
            cached: Mutex::new(None),
        }
    }
}

impl Section for ProcessSection {
    fn families(&self) -> &'static [Family] {
        &[]
    }

    #[cfg(target_os = "linux")]
    fn append_to(&self, out: &mut Vec<u8>) {
        use prometheus::core::Collector;
        use prometheus::{Encoder, TextEncoder};
        let now = std::time::Instant::now();
        let mut cached = lock(&self.cached);
        match &*cached {
            Some((at, text)) if now.duration_since(*at) < PROCESS_SAMPLE_PERIOD => {
                out.extend_from_slice(text)
            }
            _ => {
                let mut text = Vec::with_capacity(1024);
                TextEncoder::new()
                    .encode(&self.collector.collect(), &mut text)
                    .expect("encoding into a Vec cannot fail");
                out.extend_from_slice(&text);
                *cached = Some((now, text));
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn append_to(&self, _out: &mut Vec<u8>) {}
}
