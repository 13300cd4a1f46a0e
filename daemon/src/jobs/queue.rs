//! The build queue and resource slots: which queued build runs next, where.
//!
//! Pure bookkeeping, no processes, so the policy is tested on its own: highest priority first,
//! equal priorities in submission order, and a build that cannot get a slot does not hold up
//! later builds that can (a GPU build waiting for its GPU never blocks CPU builds).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Identifies an in-flight build inside the daemon (not persisted; jobs are).
pub type BuildId = u64;

/// A class of slots a build occupies while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// A CPU build slot (TensorRT-RTX builds ahead of time without a GPU).
    Cpu,
    /// A build slot on one GPU, by index (Enterprise builds time tactics there).
    Gpu(u32),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Cpu => f.write_str("cpu"),
            Resource::Gpu(index) => write!(f, "gpu:{index}"),
        }
    }
}

/// Order of the queue: priority (higher first), then arrival.
type Place = (Reverse<i32>, u64);

/// Queued builds and the slots they wait for.
#[derive(Debug, Default)]
pub struct BuildQueue {
    order: BTreeMap<Place, (BuildId, Resource)>,
    places: HashMap<BuildId, Place>,
    capacity: BTreeMap<Resource, u32>,
    in_use: HashMap<Resource, u32>,
    next_arrival: u64,
}

impl BuildQueue {
    /// A queue with `capacity` slots per resource.
    pub fn new(capacity: impl IntoIterator<Item = (Resource, u32)>) -> BuildQueue {
        BuildQueue {
            capacity: capacity.into_iter().collect(),
            ..BuildQueue::default()
        }
    }

    /// Appends a build behind everything of equal or higher priority.
    pub fn push(&mut self, build: BuildId, priority: i32, resource: Resource) {
        let place = (Reverse(priority), self.next_arrival);
        self.next_arrival += 1;
        self.order.insert(place, (build, resource));
        self.places.insert(build, place);
    }

    /// Moves a queued build up to `priority` if that is higher, keeping its arrival order.
    pub fn raise(&mut self, build: BuildId, priority: i32) {
        let Some(place) = self.places.get(&build).copied() else {
            return;
        };
        if priority <= place.0.0 {
            return;
        }
        let entry = self.order.remove(&place).expect("places and order agree");
        let new_place = (Reverse(priority), place.1);
        self.order.insert(new_place, entry);
        self.places.insert(build, new_place);
    }

    /// Takes a build out of the queue (cancelled). Returns whether it was queued.
    pub fn remove(&mut self, build: BuildId) -> bool {
        match self.places.remove(&build) {
            Some(place) => self.order.remove(&place).is_some(),
            None => false,
        }
    }

    /// 1-based position of a queued build.
    pub fn position(&self, build: BuildId) -> Option<u32> {
        let place = self.places.get(&build)?;
        Some(self.order.range(..place).count() as u32 + 1)
    }

    /// Queued builds in order.
    pub fn queued(&self) -> impl Iterator<Item = BuildId> + '_ {
        self.order.values().map(|(build, _)| *build)
    }

    /// Number of queued builds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether any slot of `resource` exists at all.
    pub fn serves(&self, resource: Resource) -> bool {
        self.capacity.get(&resource).is_some_and(|n| *n > 0)
    }

    /// The next build that has a free slot, taken off the queue with its slot reserved.
    pub fn pop_runnable(&mut self) -> Option<(BuildId, Resource)> {
        let (place, build, resource) =
            self.order.iter().find_map(|(place, (build, resource))| {
                let used = self.in_use.get(resource).copied().unwrap_or(0);
                let capacity = self.capacity.get(resource).copied().unwrap_or(0);
                (used < capacity).then_some((*place, *build, *resource))
            })?;
        self.order.remove(&place);
        self.places.remove(&build);
        *self.in_use.entry(resource).or_default() += 1;
        Some((build, resource))
    }

    /// Gives back the slot a finished build held.
    pub fn release(&mut self, resource: Resource) {
        if let Some(used) = self.in_use.get_mut(&resource) {
            *used = used.saturating_sub(1);
        }
    }

    /// Each resource with its capacity and slots in use.
    pub fn slots(&self) -> Vec<(Resource, u32, u32)> {
        self.capacity
            .iter()
            .map(|(resource, capacity)| {
                let used = self.in_use.get(resource).copied().unwrap_or(0);
                (*resource, *capacity, used)
            })
            .collect()
    }

    /// Builds running now.
    pub fn running(&self) -> u32 {
        self.in_use.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut BuildQueue) -> Vec<BuildId> {
        std::iter::from_fn(|| queue.pop_runnable().map(|(b, _)| b)).collect()
    }

    #[test]
    fn fifo_within_a_priority_and_higher_priority_first() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 10)]);
        queue.push(1, 0, Resource::Cpu);
        queue.push(2, 0, Resource::Cpu);
        queue.push(3, 5, Resource::Cpu);
        queue.push(4, 0, Resource::Cpu);
        assert_eq!(queue.position(3), Some(1));
        assert_eq!(queue.position(4), Some(4));
        assert_eq!(drain(&mut queue), vec![3, 1, 2, 4]);
    }

    #[test]
    fn slots_limit_concurrency_and_release_frees_them() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 2)]);
        for build in 1..=3 {
            queue.push(build, 0, Resource::Cpu);
        }
        assert_eq!(drain(&mut queue), vec![1, 2]);
        assert_eq!(queue.running(), 2);
        assert_eq!(queue.position(3), Some(1));
        queue.release(Resource::Cpu);
        assert_eq!(drain(&mut queue), vec![3]);
    }

    #[test]
    fn a_build_waiting_for_its_gpu_does_not_block_cpu_builds() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 1), (Resource::Gpu(0), 1)]);
        queue.push(1, 0, Resource::Gpu(0));
        queue.push(2, 0, Resource::Gpu(0));
        queue.push(3, 0, Resource::Cpu);
        assert_eq!(drain(&mut queue), vec![1, 3]);
        assert_eq!(queue.position(2), Some(1));
    }

    #[test]
    fn raise_moves_up_but_never_down() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 1)]);
        queue.push(1, 0, Resource::Cpu);
        queue.push(2, 1, Resource::Cpu);
        queue.push(3, 0, Resource::Cpu);
        queue.raise(3, 2);
        queue.raise(2, -5);
        assert_eq!(queue.queued().collect::<Vec<_>>(), vec![3, 2, 1]);
    }

    #[test]
    fn removed_builds_never_run() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 4)]);
        queue.push(1, 0, Resource::Cpu);
        queue.push(2, 0, Resource::Cpu);
        assert!(queue.remove(1));
        assert!(!queue.remove(1));
        assert_eq!(drain(&mut queue), vec![2]);
    }

    #[test]
    fn a_resource_without_slots_is_not_served() {
        let queue = BuildQueue::new([(Resource::Cpu, 1)]);
        assert!(queue.serves(Resource::Cpu));
        assert!(!queue.serves(Resource::Gpu(0)));
    }
}
