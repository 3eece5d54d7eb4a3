//! The store's write queue as a closed loop: a bounded queue filled by what the
//! providers' rate tokens fetch (plus other writers) and drained by the pods'
//! write throughput. Shared by `mdp demo` and `mdp simulate`; pure, no clock.
//!
//! Items are never lost: what does not fit waits with its producer ("held")
//! and enters as soon as there is room, so at every moment
//! `produced == written + queued + held`.

use std::fmt;

/// Where every produced item is: nothing may be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    /// Items fetched by provider workers plus those of other writers.
    pub produced: u64,
    pub written: u64,
    pub queued: u64,
    /// Fetched but still held by producers because the queue was full.
    pub held: u64,
}

impl Accounting {
    pub fn balances(&self) -> bool {
        self.produced == self.written + self.queued + self.held
    }
}

impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.balances() {
            "balanced, nothing lost"
        } else {
            "DOES NOT BALANCE"
        };
        write!(
            f,
            "items: produced {} = written {} + queued {} + held by producers {} ({verdict})",
            self.produced, self.written, self.queued, self.held
        )
    }
}

/// A bounded queue with its producers' backlog and the item accounting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoreQueue {
    capacity: u64,
    depth: u64,
    peak: u64,
    produced: u64,
    accepted: u64,
    written: u64,
    held: u64,
    /// Fractions of an item carried between steps (inflow, drain).
    carry_in: f64,
    carry_out: f64,
}

impl StoreQueue {
    pub(crate) fn new(capacity: u64) -> Self {
        StoreQueue {
            capacity,
            depth: 0,
            peak: 0,
            produced: 0,
            accepted: 0,
            written: 0,
            held: 0,
            carry_in: 0.0,
            carry_out: 0.0,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn depth(&self) -> u64 {
        self.depth
    }

    /// The deepest the queue has been.
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// Items ever accepted into the queue.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Items the workers wrote out.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Items waiting with their producers for room.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Producers fetched `items` (whole items; fractions carry over): they
    /// wait with the producers until [`StoreQueue::admit`] finds them room.
    pub(crate) fn produce(&mut self, items: f64) -> u64 {
        let total = self.carry_in + items.max(0.0);
        let whole = total.floor();
        self.carry_in = total - whole;
        let whole = whole as u64;
        self.produced += whole;
        self.held += whole;
        whole
    }

    /// Moves as many held items into the queue as fit; returns how many.
    pub(crate) fn admit(&mut self) -> u64 {
        let fit = self.held.min(self.capacity - self.depth);
        self.held -= fit;
        self.depth += fit;
        self.accepted += fit;
        self.peak = self.peak.max(self.depth);
        fit
    }

    /// Puts `items` straight in as far as they fit; the rest are held.
    pub(crate) fn put(&mut self, items: u64) -> u64 {
        self.produced += items;
        self.held += items;
        self.admit()
    }

    /// Workers write out up to `items` (fractions carry over); returns how many.
    pub(crate) fn drain(&mut self, items: f64) -> u64 {
        let total = self.carry_out + items.max(0.0);
        let whole = total.floor();
        // Throughput not used for want of items is not banked.
        let taken = (whole as u64).min(self.depth);
        self.carry_out = if taken < whole as u64 {
            0.0
        } else {
            total - whole
        };
        self.depth -= taken;
        self.written += taken;
        taken
    }

    pub(crate) fn accounting(&self) -> Accounting {
        Accounting {
            produced: self.produced,
            written: self.written,
            queued: self.depth,
            held: self.held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_queue_holds_what_does_not_fit() {
        let mut queue = StoreQueue::new(100);
        assert_eq!(queue.put(150), 100);
        assert_eq!(queue.held(), 50);
        assert_eq!(queue.drain(30.0), 30);
        assert_eq!(queue.admit(), 30);
        assert_eq!(queue.peak(), 100);
        assert!(queue.accounting().balances());
    }

    #[test]
    fn fractions_carry_over() {
        let mut queue = StoreQueue::new(1000);
        let fetched: u64 = (0..10).map(|_| queue.produce(0.25)).sum();
        assert_eq!(fetched, 2);
        queue.admit();
        assert_eq!(queue.drain(0.5) + queue.drain(0.5), 1);
    }

    proptest! {
        #[test]
        fn nothing_is_ever_lost(
            steps in proptest::collection::vec((0.0f64..500.0, 0.0f64..500.0), 1..200),
        ) {
            let mut queue = StoreQueue::new(1000);
            for (inflow, drain) in steps {
                queue.produce(inflow);
                queue.admit();
                queue.drain(drain);
                prop_assert!(queue.depth() <= queue.capacity());
                prop_assert!(queue.accounting().balances(), "{}", queue.accounting());
            }
        }
    }
}
