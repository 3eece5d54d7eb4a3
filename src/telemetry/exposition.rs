//! The exposition of [`super::MetricSet`]: the control loop's families
//! encoded again only after a touch, the others on every scrape, the process
//! metrics at most once per [`PROCESS_SAMPLE_PERIOD`].

use super::PROCESS_SAMPLE_PERIOD;
use super::text::encode_collected;
use prometheus::core::Collector;
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The encoded exposition and what it takes to keep it current.
pub(super) struct Exposition {
    /// Fixed families of the control loop (a handful of series each); with
    /// the growing ones of `MetricSet`, encoded again only when `generation`
    /// moved past the generation of `owned_text`.
    owned: Registry,
    generation: AtomicU64,
    owned_text: Mutex<Option<(u64, Vec<u8>)>>,
    /// Families changed elsewhere; encoded on every scrape.
    shared: Vec<Box<dyn Collector>>,
    process: ProcessSample,
    /// Length of the last exposition, to allocate the next one at once.
    last_len: AtomicUsize,
}

impl Exposition {
    pub(super) fn new(owned: Registry, shared: Vec<Box<dyn Collector>>) -> Self {
        Exposition {
            owned,
            generation: AtomicU64::new(0),
            owned_text: Mutex::new(None),
            shared,
            process: ProcessSample::new(),
            last_len: AtomicUsize::new(8 * 1024),
        }
    }

    pub(super) fn touch(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The whole exposition; `encode_owned` appends the control loop's
    /// families that live outside the registry.
    pub(super) fn render(&self, encode_owned: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.last_len.load(Ordering::Relaxed) + 256);
        {
            // Read the generation before encoding: a change racing with the
            // encoding leaves the text marked older than it is, never newer.
            let generation = self.generation.load(Ordering::Acquire);
            let mut cached = lock(&self.owned_text);
            match &*cached {
                Some((at, text)) if *at == generation => out.extend_from_slice(text),
                _ => {
                    let mut text = Vec::with_capacity(out.capacity());
                    encode(&self.owned.gather(), &mut text);
                    encode_owned(&mut text);
                    out.extend_from_slice(&text);
                    *cached = Some((generation, text));
                }
            }
        }
        for collector in &self.shared {
            encode_collected(&collector.collect(), &mut out);
        }
        self.process.append_to(&mut out);
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }
}

fn encode(families: &[prometheus::proto::MetricFamily], out: &mut Vec<u8>) {
    TextEncoder::new()
        .encode(families, out)
        .expect("encoding into a Vec cannot fail");
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data written whole: a panic elsewhere
    // cannot leave them half-written in a way that matters.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The process metrics (CPU, memory, file descriptors, threads, start time),
/// sampled at most once per [`PROCESS_SAMPLE_PERIOD`].
struct ProcessSample {
    #[cfg(target_os = "linux")]
    collector: prometheus::process_collector::ProcessCollector,
    #[cfg(target_os = "linux")]
    cached: Mutex<Option<(std::time::Instant, Vec<u8>)>>,
}

impl ProcessSample {
    fn new() -> Self {
        ProcessSample {
            #[cfg(target_os = "linux")]
            collector: prometheus::process_collector::ProcessCollector::for_self(),
            #[cfg(target_os = "linux")]
            cached: Mutex::new(None),
        }
    }

    #[cfg(target_os = "linux")]
    fn append_to(&self, out: &mut Vec<u8>) {
        let now = std::time::Instant::now();
        let mut cached = lock(&self.cached);
        match &*cached {
            Some((at, text)) if now.duration_since(*at) < PROCESS_SAMPLE_PERIOD => {
                out.extend_from_slice(text)
            }
            _ => {
                let mut text = Vec::with_capacity(1024);
                encode(&self.collector.collect(), &mut text);
                out.extend_from_slice(&text);
                *cached = Some((now, text));
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn append_to(&self, _out: &mut Vec<u8>) {}
}
