//! The builder's side of the protocol: TensorRT's log and progress as JSON lines on stdout.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

use trt_ffi::{BuildObserver, Control, LogMessage, ProgressEvent};
use trtfarm_build_protocol::{BuilderMessage, Progress, ProgressKind};

/// Takes fd 1 for the protocol and points fd 1 at stderr, so that anything a library prints on
/// stdout lands in the daemon's log instead of corrupting the JSON stream.
pub(crate) fn protocol_stdout() -> File {
    // SAFETY: plain fd calls on the process's own standard descriptors; on failure we keep
    // writing to fd 1 directly, which still works, only without the protection.
    unsafe {
        let protocol = libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3);
        if protocol < 0 {
            return File::from_raw_fd(libc::STDOUT_FILENO);
        }
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
        File::from_raw_fd(protocol)
    }
}

/// Streams TensorRT's log (Info and above) and progress to the daemon, one flushed line each.
pub(crate) struct Reporter {
    out: File,
    /// Steps each running phase announced, so step events can carry the total. (A BTreeMap:
    /// nothing in a build process may depend on a random seed.)
    steps: BTreeMap<String, i32>,
    /// Set once a write failed: nobody is listening, so the build is cancelled.
    broken: bool,
}

impl Reporter {
    pub(crate) fn new(out: File) -> Reporter {
        Reporter {
            out,
            steps: BTreeMap::new(),
            broken: false,
        }
    }

    /// Writes one message line; false if the daemon can no longer be reached.
    pub(crate) fn send(&mut self, message: &BuilderMessage) -> bool {
        if self.broken {
            return false;
        }
        let mut line = trtfarm_build_protocol::encode(message);
        line.push('\n');
        // One write per line (the File is unbuffered), so lines from TensorRT's threads never
        // interleave.
        if self.out.write_all(line.as_bytes()).is_err() {
            self.broken = true;
        }
        !self.broken
    }

    /// Sends one line of trtfarm's own for the build log.
    pub(crate) fn log(&mut self, severity: &str, text: String) {
        self.send(&BuilderMessage::Log {
            severity: severity.into(),
            text,
        });
    }
}

impl BuildObserver for Reporter {
    fn log(&mut self, message: &LogMessage) {
        // Verbose output is huge and only useful when debugging TensorRT itself.
        if message.severity <= trt_ffi::Severity::Info {
            self.send(&BuilderMessage::Log {
                severity: message.severity.to_string(),
                text: message.text.clone(),
            });
        }
    }

    fn progress(&mut self, event: &ProgressEvent<'_>) -> Control {
        let message = match *event {
            ProgressEvent::PhaseStart {
                phase,
                parent,
                steps,
            } => {
                self.steps.insert(phase.to_owned(), steps);
                Progress {
                    kind: ProgressKind::PhaseStart,
                    phase: phase.to_owned(),
                    parent: parent.map(str::to_owned),
                    step: 0,
                    steps,
                }
            }
            ProgressEvent::Step { phase, step } => Progress {
                kind: ProgressKind::Step,
                phase: phase.to_owned(),
                parent: None,
                step,
                steps: self.steps.get(phase).copied().unwrap_or(0),
            },
            ProgressEvent::PhaseFinish { phase } => {
                let steps = self.steps.remove(phase).unwrap_or(0);
                Progress {
                    kind: ProgressKind::PhaseFinish,
                    phase: phase.to_owned(),
                    parent: None,
                    step: steps,
                    steps,
                }
            }
        };
        if self.send(&BuilderMessage::Progress(message)) {
            Control::Continue
        } else {
            Control::Cancel
        }
    }
}
