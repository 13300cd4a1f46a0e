//! The daemon side: starting a builder process in its scratch directory, streaming what it says,
//! enforcing the deadline and cancellation, and reporting how it ended.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::BufReader;
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use super::outcome::{BuilderOutcome, BuilderReport, classify};
use super::output::{BuilderEvent, Collected, lock, read_stderr, read_stdout};
use super::usage::{self, Usage};

/// The only environment a builder sees besides [`BuilderCommand::extra_env`]: plans depend on the
/// process layout, so nothing of the daemon's own environment may leak in.
///
/// `MIMALLOC_ARENA_RESERVE`: the builder's allocator reserves its memory in arenas of this size.
/// mimalloc places an arena of up to 1 GiB at a random address (a security measure), and
/// TensorRT-RTX's plans follow the heap's addresses: measured on a real recogniser at fp16, 3
/// plans in 6 builds with the default, 1 in 26 with a 4 GiB arena, which the kernel places
/// (deterministically, with address-space randomisation off). The reservation is address space,
/// not memory.
pub const BASE_ENV: [(&str, &str); 3] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("LC_ALL", "C"),
    ("MIMALLOC_ARENA_RESERVE", "4GiB"),
];

/// The builder's stack limit (RLIMIT_STACK soft limit), in bytes. Fixed because the kernel
/// places the mmap area below a gap the size of this limit, and glibc sizes thread stacks by it:
/// measured, a daemon started under `ulimit -s 262144` or `unlimited` gave other
/// plan bytes than one under the usual 8 MiB.
pub const BUILDER_STACK_LIMIT: u64 = 8 << 20;

/// The builder's only argument: build the task in the working directory.
pub const BUILD_ARG: &str = "build";

/// How long the daemon waits for a finished builder's pipes to close before giving up on the
/// rest of its output (a process that left the group could hold them open forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How to start one builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderCommand {
    /// The `trtfarm-builder` binary; it runs as `[program, "build"]`. Its path is part of the
    /// process layout, so it must not vary between builds that should give identical plans (the
    /// daemon runs the copy in its `BuildRoot`, whose path has the same length on every daemon).
    pub program: PathBuf,
    /// The prepared scratch directory (`task.json`, `inputs/`, empty `out/`), the builder's cwd.
    /// Its path length reaches the plan; the daemon uses a `BuildRoot` slot, of fixed length.
    pub scratch: PathBuf,
    /// Address-space limit (RLIMIT_AS) in bytes; None: unlimited. Unsuitable for CUDA builds,
    /// which reserve far more address space than they use.
    pub memory_limit: Option<u64>,
    /// Wall-clock time the builder may run before its process group is killed.
    pub deadline: Duration,
    /// Variables added to [`BASE_ENV`] (e.g. `CUDA_VISIBLE_DEVICES`); they override it on a
    /// name clash. Their values must be fixed per build action for reproducible plans.
    pub extra_env: Vec<(String, String)>,
}

/// Starts builder processes; a trait so the scheduler can be tested without processes.
pub trait BuilderLauncher: Send + Sync {
    /// Runs one builder to its end, sending its events to `events` (the first is
    /// [`BuilderEvent::Spawned`]); setting `cancel` to true kills it.
    fn launch(
        &self,
        command: BuilderCommand,
        events: UnboundedSender<BuilderEvent>,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'static, io::Result<BuilderReport>>;
}

/// The real launcher: one `trtfarmd builder` process per build, via [`run_builder`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessLauncher;

impl BuilderLauncher for ProcessLauncher {
    fn launch(
        &self,
        command: BuilderCommand,
        events: UnboundedSender<BuilderEvent>,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'static, io::Result<BuilderReport>> {
        Box::pin(async move { run_builder(&command, events, cancel).await })
    }
}

/// How often a running builder's CPU time and memory are read.
const USAGE_INTERVAL: Duration = Duration::from_millis(100);

/// Why the wait for a builder ended.
#[derive(Clone, Copy)]
enum Ending {
    Exited(std::process::ExitStatus),
    Deadline,
    Cancelled,
}

/// Runs one builder: spawns it, forwards its log and progress to `events` while it runs, and
/// kills its whole process group when `deadline` passes or `cancel` becomes true. An `Err`
/// means the builder could not be started (or waited for); every way a started builder can end
/// is a [`BuilderOutcome`].
///
/// Call it from a long-lived thread such as a tokio runtime worker thread: the builder's
/// parent-death signal follows the thread that spawned it, not the daemon process.
pub async fn run_builder(
    command: &BuilderCommand,
    events: UnboundedSender<BuilderEvent>,
    mut cancel: watch::Receiver<bool>,
) -> io::Result<BuilderReport> {
    let mut child = spawn(command)?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the builder vanished right after it was started"))?;
    let _ = events.send(BuilderEvent::Spawned { pid });

    let collected = Mutex::new(Collected::default());
    let stdout = child.stdout.take().map(BufReader::new);
    let stderr = child.stderr.take().map(BufReader::new);
    let output = async {
        let stdout = async {
            if let Some(stdout) = stdout {
                read_stdout(stdout, &events, &collected).await;
            }
        };
        let stderr = async {
            if let Some(stderr) = stderr {
                read_stderr(stderr, &events, &collected).await;
            }
        };
        tokio::join!(stdout, stderr);
    };
    tokio::pin!(output);
    let deadline = tokio::time::sleep(command.deadline);
    tokio::pin!(deadline);

    let mut output_done = false;
    let started = std::time::Instant::now();
    let mut usage = Usage::default();
    let mut readings = tokio::time::interval(USAGE_INTERVAL);
    let ending = loop {
        tokio::select! {
            // Keep reading while waiting, or a chatty builder blocks on a full pipe.
            () = &mut output, if !output_done => output_done = true,
            _ = readings.tick() => {
                if let Some(sample) = usage::sample(pid) {
                    usage.cpu = sample.cpu;
                    usage.peak_rss = usage.peak_rss.max(sample.peak_rss);
                }
            }
            status = child.wait() => match status {
                Ok(status) => break Ending::Exited(status),
                Err(error) => {
                    // Not knowing whether it still runs, make sure it does not.
                    kill_group(pid);
                    return Err(error);
                }
            },
            () = &mut deadline => break Ending::Deadline,
            () = cancelled(&mut cancel) => break Ending::Cancelled,
        }
    };
    match ending {
        // The group is gone unless the builder left helpers behind; they would outlive the build
        // and hold the pipes open. (The leader is reaped already, but a group id stays taken
        // while any member lives, so this cannot hit an unrelated group.)
        Ending::Exited(_) => kill_group(pid),
        Ending::Deadline | Ending::Cancelled => {
            // Kill before reaping, so TensorRT's helpers die with the builder.
            kill_group(pid);
            child.wait().await?;
        }
    }
    if !output_done {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut output).await;
    }
    usage.wall = started.elapsed();
    let collected = std::mem::take(&mut *lock(&collected));
    let outcome = match ending {
        Ending::Exited(status) => classify(status, collected.result, command.memory_limit),
        Ending::Deadline => BuilderOutcome::DeadlineExceeded,
        Ending::Cancelled => BuilderOutcome::Cancelled,
    };
    Ok(BuilderReport {
        outcome,
        log_tail: collected.tail.into(),
        pid,
        usage,
    })
}

/// Resolves once `cancel` is true; never, if its sender is gone without cancelling.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    loop {
        if *cancel.borrow_and_update() {
            return;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGKILLs the builder's process group (its pid: the builder is a session leader).
fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory effects. ESRCH (nothing left) is the normal case after an exit.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The exact environment of a builder: [`BASE_ENV`] plus `extra`, sorted by name.
pub fn builder_env(extra: &[(String, String)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BASE_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.extend(extra.iter().cloned());
    env
}

/// Starts the builder process with its fixed argv, environment and process setup.
fn spawn(command: &BuilderCommand) -> io::Result<Child> {
    let mut process = Command::new(&command.program);
    process
        .arg(BUILD_ARG)
        .env_clear()
        .envs(builder_env(&command.extra_env))
        .current_dir(&command.scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A safety net for a dropped future; the normal paths kill the whole group themselves.
        .kill_on_drop(true);
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    let memory_limit = command.memory_limit;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls through libc; it allocates nothing (io::Error from an errno does not).
    unsafe {
        process.pre_exec(move || prepare_child(parent, memory_limit));
    }
    process.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot start the builder {} in {}: {e} (the builder needs \
                 personality(ADDR_NO_RANDOMIZE), setsid, prctl(PR_SET_PDEATHSIG) and setrlimit; \
                 a seccomp profile may forbid personality)",
                command.program.display(),
                command.scratch.display()
            ),
        )
    })
}

/// The child's set-up between fork and exec. Runs in a forked copy of a multi-threaded
/// process: only raw system calls, no allocation, no locks.
fn prepare_child(parent: libc::pid_t, memory_limit: Option<u64>) -> io::Result<()> {
    // SAFETY: plain system calls on this process with valid arguments.
    unsafe {
        // Identical plans need identical addresses: no ASLR for the program exec'ed next.
        let persona = libc::personality(0xffff_ffff);
        if persona == -1 {
            return Err(io::Error::last_os_error());
        }
        let persona = persona as libc::c_ulong | libc::ADDR_NO_RANDOMIZE as libc::c_ulong;
        if libc::personality(persona) == -1 {
            return Err(io::Error::last_os_error());
        }
        // Own session and process group, so one kill reaches TensorRT's helpers too.
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        // A builder dies with the daemon instead of building for nobody.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) == -1
        {
            return Err(io::Error::last_os_error());
        }
        // The daemon may have died before the prctl took effect; then no signal will come.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(bytes) = memory_limit {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        // The same stack limit whatever the daemon inherited (at most the hard limit, which an
        // unprivileged process cannot raise).
        let mut stack = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_STACK, &mut stack) == -1 {
            return Err(io::Error::last_os_error());
        }
        stack.rlim_cur = (BUILDER_STACK_LIMIT as libc::rlim_t).min(stack.rlim_max);
        if libc::setrlimit(libc::RLIMIT_STACK, &stack) == -1 {
            return Err(io::Error::last_os_error());
        }
        // A crashing build must not write multi-GB core files into the scratch directory.
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::setrlimit(libc::RLIMIT_CORE, &no_core) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
