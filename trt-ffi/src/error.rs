//! Errors of loading a toolchain and of building an engine.

use std::path::PathBuf;

use crate::calls::Unsupported;
use crate::observer::LogMessage;
use crate::toolchain::Flavour;

/// A toolchain could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No directory held the library.
    #[error(
        "{}: none of [{}] found in any of these directories:\n{}\n({})",
        .flavour.product_name(),
        .libraries.join(", "),
        .searched.iter().map(|d| format!("  {}", d.display())).collect::<Vec<_>>().join("\n"),
        crate::toolchain::install_hint(*.flavour)
    )]
    NotFound {
        /// Flavour being loaded.
        flavour: Flavour,
        /// File names looked for.
        libraries: Vec<String>,
        /// Directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// The library exists but TensorRT or the shim refused to load it.
    #[error("{}: cannot load {}: {message}", .flavour.product_name(), .path.display())]
    Open {
        /// Flavour being loaded.
        flavour: Flavour,
        /// The library file.
        path: PathBuf,
        /// dlopen's or the shim's explanation.
        message: String,
    },
    /// The embedded shim could not be written to the cache or loaded.
    #[error("trtfarm shim for {}: {message}", .flavour.product_name())]
    Shim {
        /// Flavour being loaded.
        flavour: Flavour,
        /// What went wrong.
        message: String,
    },
}

/// One error reported by TensorRT's ONNX parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParserError {
    /// Name of the failing node ("" when the error is not about a node).
    pub node_name: String,
    /// Index of the node in the graph (-1 when unknown).
    pub node_index: i32,
    /// Operator type of the node.
    pub op: String,
    /// The parser's description.
    pub message: String,
    /// nvonnxparser::ErrorCode value.
    pub code: i32,
}

impl std::fmt::Display for ParserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node_index >= 0 || !self.node_name.is_empty() {
            write!(
                f,
                "node {} '{}' ({}): ",
                self.node_index, self.node_name, self.op
            )?;
        }
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// An engine build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The ONNX parser rejected the model.
    #[error("the ONNX parser rejected the model:\n{}", .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Parse {
        /// Every error the parser recorded.
        errors: Vec<ParserError>,
    },
    /// TensorRT refused the configuration or failed to build.
    #[error("TensorRT: {message}{}", tail_suffix(.log_tail))]
    Builder {
        /// What failed, with TensorRT's last error message.
        message: String,
        /// The last warnings and errors TensorRT logged.
        log_tail: Vec<LogMessage>,
    },
    /// The loaded flavour does not support an option.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// The configuration is malformed before TensorRT sees it (e.g. ranks of min/opt/max differ).
    #[error("invalid build configuration: {0}")]
    InvalidConfig(String),
    /// The progress observer cancelled the build; no plan was written.
    #[error("the build was cancelled")]
    Cancelled,
    /// Reading the model or writing the plan failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The toolchain could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
}

fn tail_suffix(tail: &[LogMessage]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = tail.iter().map(|m| format!("  {m}")).collect();
    format!("\nlast TensorRT messages:\n{}", lines.join("\n"))
}
