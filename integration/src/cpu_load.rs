//! Other work keeping every CPU busy while builds run: TensorRT-RTX's plans have varied under
//! CPU load when they did not on an idle machine, so the determinism tests build under it too.

use std::process::{Child, Command, Stdio};

/// `count` busy-looping shell processes. Killed (SIGKILL) and reaped when dropped.
pub struct CpuLoad {
    children: Vec<Child>,
}

impl CpuLoad {
    /// One busy loop per online CPU (what `nproc` prints).
    pub fn all_cpus() -> CpuLoad {
        CpuLoad::start(online_cpus())
    }

    /// `count` busy loops (`sh -c 'while :; do :; done'`), started before this returns.
    pub fn start(count: usize) -> CpuLoad {
        let children = (0..count)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start a busy-loop process")
            })
            .collect();
        CpuLoad { children }
    }

    /// How many busy loops run.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether no busy loop runs (`start(0)`).
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        // Each child is killed by its own pid: only processes this value started.
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The number of online CPUs, as `nproc` counts them (at least 1).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_loops_run_until_dropped() {
        let load = CpuLoad::start(2);
        let pids: Vec<u32> = load.children.iter().map(Child::id).collect();
        assert_eq!(load.len(), 2);
        for pid in &pids {
            assert!(
                std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "busy loop {pid} is not running"
            );
        }
        drop(load);
        for pid in &pids {
            // Reaped by the drop, so the pid is gone (or, rarely, reused by an unrelated
            // process that is then not our shell).
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(
                !cmdline.windows(5).any(|w| w == b"while"),
                "busy loop {pid} survived the drop"
            );
        }
    }
}
