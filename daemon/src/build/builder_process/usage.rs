//! What a builder process uses, read from `/proc` while it runs: CPU time and memory. The
//! scheduler sizes its defaults and admits builds by these numbers (a TensorRT-RTX build keeps
//! about one core busy; its memory grows with the model).

use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident memory now, bytes.
    pub rss: u64,
    /// Peak resident memory so far (`VmHWM`), bytes.
    pub peak_rss: u64,
}

/// What a whole builder run used, from its last reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time (readings are 100 ms apart: the last moments before exit are not counted).
    pub cpu: Duration,
    /// Peak resident memory, bytes.
    pub peak_rss: u64,
    /// Wall time from start to exit.
    pub wall: Duration,
}

impl Usage {
    /// Cores kept busy on average.
    pub fn cores(&self) -> f64 {
        if self.wall.is_zero() {
            0.0
        } else {
            self.cpu.as_secs_f64() / self.wall.as_secs_f64()
        }
    }
}

/// Reads process `pid`, or `None` once it is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse(&stat, &status, clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// A sample from the text of `/proc/<pid>/stat` and `/proc/<pid>/status`.
fn parse(stat: &str, status: &str, ticks_per_second: u64) -> Option<Sample> {
    // The command name is parenthesised and may hold spaces: fields count from its end.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    let kib = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some(Sample {
        cpu: Duration::from_millis(ticks * 1000 / ticks_per_second),
        rss: kib("VmRSS:")? * 1024,
        peak_rss: kib("VmHWM:")? * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_and_memory_from_proc_text() {
        let stat = "4242 (trtfarm-builder (x)) S 1 4242 4242 0 -1 4194560 9016 0 0 0 \
                    250 30 0 0 20 0 9 0 123 456 789";
        let status = "Name:\tbuilder\nVmHWM:\t  812000 kB\nVmRSS:\t  700000 kB\nThreads:\t9\n";
        let sample = parse(stat, status, 100).unwrap();
        assert_eq!(sample.cpu, Duration::from_millis(2800));
        assert_eq!(sample.rss, 700_000 * 1024);
        assert_eq!(sample.peak_rss, 812_000 * 1024);
        assert_eq!(parse("garbage", status, 100), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let sample = sample(std::process::id()).expect("our own /proc entry");
        assert!(
            sample.peak_rss >= sample.rss && sample.rss > 0,
            "{sample:?}"
        );
    }

    #[test]
    fn cores_are_cpu_time_over_wall_time() {
        let usage = Usage {
            cpu: Duration::from_secs(9),
            peak_rss: 0,
            wall: Duration::from_secs(10),
        };
        assert!((usage.cores() - 0.9).abs() < 1e-9);
    }
}
