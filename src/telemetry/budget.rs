//! Two small sections: the rate tokens each provider granted and refused
//! (`rates`, counted on every acquire, so written on every scrape from the
//! counters the rate coordinator adds to), and this pod's share of the budget
//! (`pods`: replicas and budget mode, changed rarely, through methods).

use super::BudgetMode;
use super::catalogue::{self as family, Family};
use super::control::ProviderSeries;
use super::exposition::{Cached, Section};
use super::text::{self, header, sample_i64, sample_u64};
use prometheus::core::{Atomic, AtomicI64, AtomicU64};
use std::sync::Arc;

pub(super) struct RatesSection {
    /// The control section's providers, sorted by name.
    pub(super) providers: Arc<[ProviderSeries]>,
}

impl Section for RatesSection {
    fn families(&self) -> &'static [Family] {
        family::RATES
    }

    fn append_to(&self, out: &mut Vec<u8>) {
        if self.providers.is_empty() {
            return;
        }
        header(out, &family::TOKENS_GRANTED);
        for p in self.providers.iter() {
            let cells = p.cells();
            sample_u64(out, cells.granted_key(), cells.granted.get());
        }
        header(out, &family::REQUESTS_THROTTLED);
        for p in self.providers.iter() {
            let cells = p.cells();
            sample_u64(out, cells.throttled_key(), cells.throttled.get());
        }
    }
}

pub(super) struct PodsSection {
    cache: Cached,
    replicas: AtomicI64,
    /// Index into [`BudgetMode::ALL`].
    mode: AtomicU64,
}

impl PodsSection {
    pub(super) fn new() -> Self {
        PodsSection {
            cache: Cached::new(),
            replicas: AtomicI64::new(1),
            mode: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        self.cache.bump();
    }

    pub(super) fn set_replicas(&self, count: u32) {
        self.replicas.set(i64::from(count));
        self.touch();
    }

    #[cfg(test)]
    pub(super) fn replicas(&self) -> i64 {
        self.replicas.get()
    }

    pub(super) fn set_budget_mode(&self, mode: BudgetMode) {
        let index = BudgetMode::ALL.iter().position(|m| *m == mode);
        self.mode.set(index.unwrap_or(0) as u64);
        self.touch();
    }

    fn encode(&self, out: &mut Vec<u8>) {
        header(out, &family::REPLICAS);
        sample_i64(out, family::REPLICAS.name, self.replicas.get());
        header(out, &family::BUDGET_MODE);
        let current = self.mode.get();
        let mut modes: Vec<(usize, &str)> = BudgetMode::ALL
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.as_str()))
            .collect();
        modes.sort_unstable_by_key(|(_, name)| *name);
        for (index, name) in modes {
            let key = text::series_key(family::BUDGET_MODE.name, &[("mode", name)]);
            sample_u64(out, &key, u64::from(index as u64 == current));
        }
    }
}

impl Section for PodsSection {
    fn families(&self) -> &'static [Family] {
        family::PODS
    }

    fn append_to(&self, out: &mut Vec<u8>) {
        self.cache.append_to(out, |text| self.encode(text));
    }
}
