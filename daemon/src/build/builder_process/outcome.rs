//! How a builder run ended, decided from its exit status and its last protocol message.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::output::BuilderResult;
use trtfarm_build_protocol::BuilderDone;

/// How a builder run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum BuilderOutcome {
    /// The builder reported `Done` and exited 0: the outputs are in `<scratch>/out`.
    Succeeded(Box<BuilderDone>),
    /// The builder reported `Failed` and exited 1: the manifest, the model or this host's
    /// toolchain set-up is at fault, so the same task here fails the same way again.
    BuildFailed {
        /// The builder's explanation (manifest diagnostics or TensorRT's message).
        message: String,
    },
    /// The builder died or exited without a consistent result (signal, panic, OOM, ...).
    Crashed {
        /// What happened, e.g. "killed by signal 11 (SIGSEGV)".
        description: String,
    },
    /// The deadline passed; the builder's process group was killed.
    DeadlineExceeded,
    /// The build was cancelled; the builder's process group was killed.
    Cancelled,
}

/// Everything the daemon learns from one builder run.
#[derive(Debug, Clone, PartialEq)]
pub struct BuilderReport {
    /// How it ended.
    pub outcome: BuilderOutcome,
    /// The last log lines ("severity: text"), oldest first, for error reports.
    pub log_tail: Vec<String>,
    /// The builder's process id (also its process group id).
    pub pid: u32,
    /// What it used.
    pub usage: super::usage::Usage,
}

/// Decides the outcome of a builder that exited by itself with `status`, having last reported
/// `result`; `memory_limit` is the address-space limit it ran under.
pub(crate) fn classify(
    status: ExitStatus,
    result: Option<BuilderResult>,
    memory_limit: Option<u64>,
) -> BuilderOutcome {
    match (status.code(), result) {
        (Some(0), Some(BuilderResult::Done(done))) => BuilderOutcome::Succeeded(done),
        (Some(1), Some(BuilderResult::Failed(message))) => BuilderOutcome::BuildFailed { message },
        (code, result) => {
            let (how, cause) = match (code, status.signal()) {
                (Some(code), _) => (format!("exited with status {code}"), None),
                (None, Some(signal)) => signal_description(signal, memory_limit),
                (None, None) => (
                    format!("ended with wait status {}", status.into_raw()),
                    None,
                ),
            };
            // A result that contradicts the exit is kept in the description: after a failure
            // it is the most useful thing to show, after a success it explains the confusion.
            let mut description = match result {
                None => format!("{how} without a result"),
                Some(BuilderResult::Done(done)) => format!(
                    "{how} after reporting success (plan blake3:{})",
                    done.plan_blake3
                ),
                Some(BuilderResult::Failed(message)) => {
                    format!("{how} after reporting a failure: {message}")
                }
            };
            if let Some(cause) = cause {
                description.push_str(&format!(" ({cause})"));
            }
            BuilderOutcome::Crashed { description }
        }
    }
}

/// "killed by signal 9 (SIGKILL)" and the likely cause, where one is known.
fn signal_description(signal: i32, memory_limit: Option<u64>) -> (String, Option<String>) {
    let how = match signal_name(signal) {
        Some(name) => format!("killed by signal {signal} ({name})"),
        None => format!("killed by signal {signal}"),
    };
    let limit = memory_limit.map(|bytes| format!("{:.1} GiB", bytes as f64 / GIB));
    let cause = match (signal, limit) {
        (libc::SIGKILL, Some(limit)) => Some(format!(
            "out of memory? the kernel's OOM killer sends SIGKILL; the builder's address-space \
             limit is {limit}"
        )),
        (libc::SIGKILL, None) => {
            Some("out of memory? the kernel's OOM killer sends SIGKILL".to_owned())
        }
        (libc::SIGABRT, Some(limit)) => Some(format!(
            "an allocation failing under the address-space limit of {limit} aborts this way"
        )),
        (libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE, _) => {
            Some("a crash inside the builder or TensorRT".to_owned())
        }
        _ => None,
    };
    (how, cause)
}

const GIB: f64 = (1u64 << 30) as f64;

/// The conventional name of a signal number.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn signalled(signal: i32) -> ExitStatus {
        ExitStatus::from_raw(signal)
    }

    /// A stamp of a library that does not exist: the outcome only passes it along.
    fn library(name: &str) -> trtfarm_build_protocol::stamp::LoadedLibrary {
        trtfarm_build_protocol::stamp::LoadedLibrary {
            path: std::path::PathBuf::from("/opt/trt/lib").join(name),
            stamp: trtfarm_build_protocol::stamp::FileStamp {
                device: 1,
                inode: 2,
                size: 3,
                mtime_ns: 4,
                ctime_ns: 5,
            },
        }
    }

    fn done() -> BuilderDone {
        BuilderDone {
            plan_size: 10,
            plan_blake3: "00ff".into(),
            toolchain_version: "1.7.1.116".into(),
            library: library("libtensorrt_rtx.so.1"),
            parser_library: library("libtensorrt_onnxparser_rtx.so.1"),
            layer_info: false,
            layer_info_error: None,
            timing_cache: false,
            layer_listing: false,
            layers_by_precision: Default::default(),
            gpu_context: None,
        }
    }

    fn crashed(outcome: BuilderOutcome) -> String {
        match outcome {
            BuilderOutcome::Crashed { description } => description,
            other => panic!("expected Crashed, got {other:?}"),
        }
    }

    #[test]
    fn done_and_exit_zero_succeed() {
        let outcome = classify(exited(0), Some(BuilderResult::Done(Box::new(done()))), None);
        assert_eq!(outcome, BuilderOutcome::Succeeded(Box::new(done())));
    }

    #[test]
    fn failed_and_exit_one_is_a_build_failure() {
        let outcome = classify(exited(1), Some(BuilderResult::Failed("bad".into())), None);
        assert_eq!(
            outcome,
            BuilderOutcome::BuildFailed {
                message: "bad".into()
            }
        );
    }

    #[test]
    fn an_exit_without_a_result_is_a_crash() {
        assert_eq!(
            crashed(classify(exited(3), None, None)),
            "exited with status 3 without a result"
        );
        assert_eq!(
            crashed(classify(exited(0), None, None)),
            "exited with status 0 without a result"
        );
        assert_eq!(
            crashed(classify(exited(101), None, None)),
            "exited with status 101 without a result"
        );
    }

    #[test]
    fn a_result_contradicting_the_exit_status_is_a_crash_that_keeps_the_result() {
        let text = crashed(classify(
            exited(1),
            Some(BuilderResult::Done(Box::new(done()))),
            None,
        ));
        assert_eq!(
            text,
            "exited with status 1 after reporting success (plan blake3:00ff)"
        );
        let text = crashed(classify(
            exited(0),
            Some(BuilderResult::Failed("parser".into())),
            None,
        ));
        assert_eq!(
            text,
            "exited with status 0 after reporting a failure: parser"
        );
    }

    #[test]
    fn signals_are_named_with_their_likely_cause() {
        let text = crashed(classify(signalled(libc::SIGSEGV), None, None));
        assert_eq!(
            text,
            "killed by signal 11 (SIGSEGV) without a result (a crash inside the builder or \
             TensorRT)"
        );
        let text = crashed(classify(signalled(libc::SIGABRT), None, None));
        assert_eq!(text, "killed by signal 6 (SIGABRT) without a result");
        let text = crashed(classify(signalled(libc::SIGABRT), None, Some(2 << 30)));
        assert!(text.contains("address-space limit of 2.0 GiB"), "{text}");
        let text = crashed(classify(signalled(64), None, None));
        assert_eq!(text, "killed by signal 64 without a result");
    }

    #[test]
    fn sigkill_mentions_memory_and_the_limit_when_one_was_set() {
        let without = crashed(classify(signalled(libc::SIGKILL), None, None));
        assert!(
            without.starts_with("killed by signal 9 (SIGKILL) without a result (out of memory?"),
            "{without}"
        );
        assert!(!without.contains("limit"), "{without}");
        let with = crashed(classify(signalled(libc::SIGKILL), None, Some(3 << 30)));
        assert!(with.contains("address-space limit is 3.0 GiB"), "{with}");
    }

    #[test]
    fn a_signal_after_a_result_is_a_crash_even_after_done() {
        let text = crashed(classify(
            signalled(libc::SIGSEGV),
            Some(BuilderResult::Done(Box::new(done()))),
            None,
        ));
        assert!(text.starts_with("killed by signal 11 (SIGSEGV)"), "{text}");
        assert!(
            text.contains("after reporting success (plan blake3:00ff)"),
            "{text}"
        );
    }
}
