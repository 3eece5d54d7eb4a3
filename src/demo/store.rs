//! A model of the store's write coordinator: a bounded queue drained by
//! workers, announcing its level with the real store's watermark semantics.

use crate::level::Level;
use crate::store_queue::{Accounting, StoreQueue};

/// A level change the store announces, as its HTTP broadcaster would.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub level: Level,
    pub queue_size: u64,
    pub reason: Option<&'static str>,
}

/// The bounded queue (the closed-loop [`StoreQueue`], with its item
/// accounting) and the store's announcements.
#[derive(Debug, Clone)]
pub struct StoreModel {
    queue: StoreQueue,
    low: u64,
    high: u64,
    level: Level,
}

impl StoreModel {
    /// A queue of `capacity` with SOFT at `low` and HARD at `high` (items).
    pub fn new(capacity: u64, low: u64, high: u64) -> Self {
        StoreModel {
            queue: StoreQueue::new(capacity),
            low,
            high,
            level: Level::Ok,
        }
    }

    pub fn depth(&self) -> u64 {
        self.queue.depth()
    }

    pub fn capacity(&self) -> u64 {
        self.queue.capacity()
    }

    /// Items ever accepted into the queue.
    pub fn accepted(&self) -> u64 {
        self.queue.accepted()
    }

    /// Items the workers wrote out.
    pub fn written(&self) -> u64 {
        self.queue.written()
    }

    /// Where every item produced so far is.
    pub fn accounting(&self) -> Accounting {
        self.queue.accounting()
    }

    /// `items` arrive: as many as fit enter (returned), the rest wait with
    /// their producers and enter first as room frees up.
    pub fn put(&mut self, items: u64) -> (u64, Option<Announcement>) {
        let fit = self.queue.put(items);
        (fit, self.announce())
    }

    /// Workers write out up to `items`.
    pub fn drain(&mut self, items: u64) -> Option<Announcement> {
        self.queue.drain(items as f64);
        self.announce()
    }

    /// The store speaks only on transitions: SOFT once on passing `low`
    /// upwards, HARD at `high`, OK (`queue_recovered`) back at or below `low`.
    fn announce(&mut self) -> Option<Announcement> {
        let depth = self.queue.depth();
        let next = match self.level {
            _ if depth >= self.high => Level::Hard,
            Level::Ok if depth > self.low => Level::Soft,
            Level::Soft | Level::Hard if depth <= self.low => Level::Ok,
            current => current,
        };
        if next == self.level {
            return None;
        }
        self.level = next;
        Some(Announcement {
            level: next,
            queue_size: depth,
            reason: (next == Level::Ok).then_some("queue_recovered"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_only_transitions_with_the_store_semantics() {
        let mut store = StoreModel::new(10_000, 5000, 9000);
        assert_eq!(store.put(5000).1, None, "at low is not past low");
        let soft = store.put(1).1.expect("SOFT on passing low");
        assert_eq!((soft.level, soft.queue_size), (Level::Soft, 5001));
        assert_eq!(store.put(1000).1, None, "SOFT once");
        let hard = store.put(3000).1.expect("HARD at high");
        assert_eq!(hard.level, Level::Hard);
        assert_eq!(store.drain(1000), None, "no SOFT on the way down");
        let ok = store.drain(3001).expect("OK at low");
        assert_eq!((ok.level, ok.reason), (Level::Ok, Some("queue_recovered")));
    }

    #[test]
    fn a_full_queue_refuses_what_does_not_fit_and_loses_nothing() {
        let mut store = StoreModel::new(100, 50, 90);
        assert_eq!(store.put(150).0, 100);
        store.drain(30);
        assert_eq!(store.accepted(), store.written() + store.depth());
        assert_eq!(store.put(0).0, 30, "the held items enter first");
        assert!(store.accounting().balances());
        assert_eq!(store.accounting().held, 20);
    }
}
