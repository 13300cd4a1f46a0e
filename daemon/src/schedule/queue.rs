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

/// What a build can run on: any one of these resources (an Enterprise build may run on any GPU
/// of the model it targets; a TensorRT-RTX build needs a CPU slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand(Vec<Resource>);

impl Demand {
    /// A CPU build slot.
    pub fn cpu() -> Demand {
        Demand(vec![Resource::Cpu])
    }

    /// A slot on any of these GPUs.
    pub fn any_gpu(indices: impl IntoIterator<Item = u32>) -> Demand {
        Demand(indices.into_iter().map(Resource::Gpu).collect())
    }

    /// The resources that would do.
    pub fn candidates(&self) -> &[Resource] {
        &self.0
    }
}

/// Order of the queue: priority (higher first), then arrival.
type Place = (Reverse<i32>, u64);

/// Queued builds and the slots they wait for.
#[derive(Debug, Default)]
pub struct BuildQueue {
    order: BTreeMap<Place, (BuildId, Demand)>,
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
    pub fn push(&mut self, build: BuildId, priority: i32, demand: Demand) {
        let place = (Reverse(priority), self.next_arrival);
        self.next_arrival += 1;
        self.order.insert(place, (build, demand));
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

    /// Whether any slot that `demand` could use exists at all.
    pub fn serves(&self, demand: &Demand) -> bool {
        demand
            .candidates()
            .iter()
            .any(|resource| self.capacity.get(resource).is_some_and(|n| *n > 0))
    }

    /// The free resource of `demand` with the fewest builds running (spreads GPU builds over
    /// the GPUs that qualify), if any.
    fn free_slot(&self, demand: &Demand) -> Option<Resource> {
        demand
            .candidates()
            .iter()
            .filter_map(|resource| {
                let used = self.in_use.get(resource).copied().unwrap_or(0);
                let capacity = self.capacity.get(resource).copied().unwrap_or(0);
                (used < capacity).then_some((used, *resource))
            })
            .min()
            .map(|(_, resource)| resource)
    }

    /// Whether `resource` has a free slot.
    pub fn has_free(&self, resource: Resource) -> bool {
        let used = self.in_use.get(&resource).copied().unwrap_or(0);
        used < self.capacity.get(&resource).copied().unwrap_or(0)
    }

    /// Reserves a free slot of `demand` for a build that never waited in this queue (one
    /// claimed from a farm's shared queue).
    pub fn reserve(&mut self, demand: &Demand) -> Option<Resource> {
        let resource = self.free_slot(demand)?;
        *self.in_use.entry(resource).or_default() += 1;
        Some(resource)
    }

    /// The next build that has a free slot, and the slot, left in the queue.
    pub fn next_runnable(&self) -> Option<(BuildId, Resource)> {
        self.order.iter().find_map(|(_, (build, demand))| {
            self.free_slot(demand).map(|resource| (*build, resource))
        })
    }

    /// Takes `build` off the queue with `resource` reserved for it.
    pub fn start(&mut self, build: BuildId, resource: Resource) {
        if let Some(place) = self.places.remove(&build) {
            self.order.remove(&place);
        }
        *self.in_use.entry(resource).or_default() += 1;
    }

    /// The next build that has a free slot, taken off the queue with its slot reserved.
    pub fn pop_runnable(&mut self) -> Option<(BuildId, Resource)> {
        let (build, resource) = self.next_runnable()?;
        self.start(build, resource);
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
        queue.push(1, 0, Demand::cpu());
        queue.push(2, 0, Demand::cpu());
        queue.push(3, 5, Demand::cpu());
        queue.push(4, 0, Demand::cpu());
        assert_eq!(queue.position(3), Some(1));
        assert_eq!(queue.position(4), Some(4));
        assert_eq!(drain(&mut queue), vec![3, 1, 2, 4]);
    }

    #[test]
    fn slots_limit_concurrency_and_release_frees_them() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 2)]);
        for build in 1..=3 {
            queue.push(build, 0, Demand::cpu());
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
        queue.push(1, 0, Demand::any_gpu([0]));
        queue.push(2, 0, Demand::any_gpu([0]));
        queue.push(3, 0, Demand::cpu());
        assert_eq!(drain(&mut queue), vec![1, 3]);
        assert_eq!(queue.position(2), Some(1));
    }

    #[test]
    fn raise_moves_up_but_never_down() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 1)]);
        queue.push(1, 0, Demand::cpu());
        queue.push(2, 1, Demand::cpu());
        queue.push(3, 0, Demand::cpu());
        queue.raise(3, 2);
        queue.raise(2, -5);
        assert_eq!(queue.queued().collect::<Vec<_>>(), vec![3, 2, 1]);
    }

    #[test]
    fn removed_builds_never_run() {
        let mut queue = BuildQueue::new([(Resource::Cpu, 4)]);
        queue.push(1, 0, Demand::cpu());
        queue.push(2, 0, Demand::cpu());
        assert!(queue.remove(1));
        assert!(!queue.remove(1));
        assert_eq!(drain(&mut queue), vec![2]);
    }

    #[test]
    fn a_resource_without_slots_is_not_served() {
        let queue = BuildQueue::new([(Resource::Cpu, 1)]);
        assert!(queue.serves(&Demand::cpu()));
        assert!(!queue.serves(&Demand::any_gpu([0])));
        assert!(!queue.serves(&Demand::any_gpu([])));
    }

    #[test]
    fn a_gpu_build_takes_the_least_busy_gpu_that_qualifies() {
        let mut queue = BuildQueue::new([
            (Resource::Gpu(0), 2),
            (Resource::Gpu(1), 2),
            (Resource::Gpu(2), 2),
        ]);
        // GPUs 0 and 1 are the requested model; GPU 2 is another and never used.
        for build in 1..=5 {
            queue.push(build, 0, Demand::any_gpu([0, 1]));
        }
        let placed: Vec<(BuildId, Resource)> =
            std::iter::from_fn(|| queue.pop_runnable()).collect();
        assert_eq!(
            placed,
            vec![
                (1, Resource::Gpu(0)),
                (2, Resource::Gpu(1)),
                (3, Resource::Gpu(0)),
                (4, Resource::Gpu(1)),
            ]
        );
        assert_eq!(queue.position(5), Some(1));
        queue.release(Resource::Gpu(1));
        assert_eq!(queue.pop_runnable(), Some((5, Resource::Gpu(1))));
    }
}
