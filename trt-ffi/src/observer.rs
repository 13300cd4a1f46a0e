//! What a build tells its caller while it runs: TensorRT's log and its progress monitor.

/// Severity of a TensorRT log message (nvinfer1::ILogger::Severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// An internal error; TensorRT may be unusable afterwards.
    InternalError,
    /// An application error.
    Error,
    /// A warning.
    Warning,
    /// Informational output.
    Info,
    /// Verbose diagnostics.
    Verbose,
}

impl Severity {
    /// Maps TensorRT's integer severity; unknown values count as verbose so nothing is lost.
    pub(crate) fn from_raw(raw: i32) -> Severity {
        match raw {
            0 => Severity::InternalError,
            1 => Severity::Error,
            2 => Severity::Warning,
            3 => Severity::Info,
            _ => Severity::Verbose,
        }
    }

    /// True for errors and internal errors.
    pub fn is_error(self) -> bool {
        self <= Severity::Error
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::InternalError => "internal error",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
            Severity::Verbose => "verbose",
        })
    }
}

/// One message TensorRT logged during a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    /// How serious TensorRT considers it.
    pub severity: Severity,
    /// The text, as TensorRT wrote it.
    pub text: String,
}

impl std::fmt::Display for LogMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.severity, self.text)
    }
}

/// One event from TensorRT's progress monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressEvent<'a> {
    /// A phase began; `steps` is how many steps it will report.
    PhaseStart {
        /// Name of the phase.
        phase: &'a str,
        /// Enclosing phase, if nested.
        parent: Option<&'a str>,
        /// Number of steps the phase announces.
        steps: i32,
    },
    /// A step of a phase completed.
    Step {
        /// Name of the phase.
        phase: &'a str,
        /// Index of the completed step.
        step: i32,
    },
    /// A phase ended.
    PhaseFinish {
        /// Name of the phase.
        phase: &'a str,
    },
}

/// What the observer wants after a progress event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep building.
    Continue,
    /// Stop the build; it ends with `BuildError::Cancelled` and leaves no plan.
    Cancel,
}

/// Receives a build's log and progress.
///
/// `Send` because TensorRT may log from its own threads; the shim serialises the calls, so they
/// never overlap.
pub trait BuildObserver: Send {
    /// A TensorRT log message (also kept in `BuildOutput::log`).
    fn log(&mut self, message: &LogMessage) {
        let _ = message;
    }

    /// A progress event; answering `Cancel` to a step stops the build.
    fn progress(&mut self, event: &ProgressEvent<'_>) -> Control {
        let _ = event;
        Control::Continue
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct IgnoreProgress;

impl BuildObserver for IgnoreProgress {}
