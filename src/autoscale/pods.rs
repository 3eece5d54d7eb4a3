//! Model of the Deployment's pods: asked-for replicas become ready after a start-up
//! delay; removed pods vanish at once, not-yet-ready and newest first.

use super::hpa::ReplicaCounts;
use std::time::Duration;

/// Time from "pod asked for" to "pod ready" when nothing else is said.
pub const DEFAULT_STARTUP_DELAY: Duration = Duration::from_secs(10);

/// The pods of the scale target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pods {
    startup_delay: Duration,
    /// When each pod is (or was) ready, ascending.
    ready_at: Vec<Duration>,
}

impl Pods {
    /// `initial` pods, all ready from time zero.
    pub fn new(initial: u32, startup_delay: Duration) -> Self {
        Pods {
            startup_delay,
            ready_at: vec![Duration::ZERO; initial as usize],
        }
    }

    /// Set the replica count at `now`. New pods are ready `startup_delay` later; when
    /// scaling in, the ReplicaSet deletes not-ready pods first, then the most recently
    /// ready (kube's `ActivePodsWithRanks`), so the latest `ready_at` go first.
    pub fn scale_to(&mut self, now: Duration, replicas: u32) {
        let replicas = replicas as usize;
        if replicas > self.ready_at.len() {
            let ready = now + self.startup_delay;
            self.ready_at.resize(replicas, ready);
        } else {
            self.ready_at.truncate(replicas);
        }
    }

    /// Pods that exist (`spec.replicas` = `status.replicas` here: pods are created at once).
    pub fn total(&self) -> u32 {
        u32::try_from(self.ready_at.len()).unwrap_or(u32::MAX)
    }

    /// Pods ready at `now`.
    pub fn ready(&self, now: Duration) -> u32 {
        let ready = self.ready_at.partition_point(|&at| at <= now);
        u32::try_from(ready).unwrap_or(u32::MAX)
    }

    /// What the HPA reads from the scale target at `now`.
    pub fn counts(&self, now: Duration) -> ReplicaCounts {
        ReplicaCounts {
            spec: self.total(),
            status: self.total(),
            ready: self.ready(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn new_pods_become_ready_after_the_delay() {
        let mut pods = Pods::new(1, DEFAULT_STARTUP_DELAY);
        pods.scale_to(secs(100), 4);
        assert_eq!(pods.total(), 4);
        assert_eq!(pods.ready(secs(109)), 1);
        assert_eq!(pods.ready(secs(110)), 4);
        assert_eq!(
            pods.counts(secs(105)),
            ReplicaCounts {
                spec: 4,
                status: 4,
                ready: 1
            }
        );
    }

    #[test]
    fn scale_in_removes_starting_pods_first_and_at_once() {
        let mut pods = Pods::new(2, secs(30));
        pods.scale_to(secs(0), 5);
        pods.scale_to(secs(10), 3);
        assert_eq!((pods.total(), pods.ready(secs(10))), (3, 2));
        pods.scale_to(secs(40), 1);
        assert_eq!((pods.total(), pods.ready(secs(40))), (1, 1));
        pods.scale_to(secs(40), 0);
        assert_eq!(pods.ready(secs(40)), 0);
    }
}
