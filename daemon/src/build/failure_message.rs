//! The text of a failed build as the user reads it: TensorRT's error said once.
//!
//! The builder reports `TensorRT: <what failed>: <TensorRT's last error>` followed by
//! `last TensorRT messages:` and the last warnings and errors TensorRT logged, which repeat that
//! error (the head may even hold it cut short). TensorRT-RTX on a host without a CUDA driver also
//! logs "CUDA driver version is insufficient" on its way out of every build, failed or not: next
//! to a real error it is noise. Both stay in the full build log.

/// The line that introduces TensorRT's last messages in a builder failure.
const TAIL_HEADER: &str = "last TensorRT messages:";

/// TensorRT-RTX's words when it finds no usable CUDA driver.
const NO_DRIVER: &str = "CUDA driver version is insufficient";

/// A head shorter than this is not matched as a cut-short copy of a tail line.
const MIN_PREFIX: usize = 20;

/// `message` with every repeated TensorRT line said once (the longest copy kept) and the
/// missing-driver line left out when another error explains the failure.
pub fn shape(message: &str) -> String {
    let (head, tail) = match message.split_once(&format!("\n{TAIL_HEADER}\n")) {
        Some((head, tail)) => (head.to_owned(), tail),
        None => (message.to_owned(), ""),
    };
    let mut head = head;
    let mut kept: Vec<&str> = Vec::new();
    for line in tail.lines() {
        let text = tail_text(line);
        if text.is_empty() || head.contains(text) || kept.iter().any(|k| tail_text(k) == text) {
            continue;
        }
        // The head holds TensorRT's error after the last "failed: ", possibly cut short.
        if let Some((_, said)) = head.rsplit_once("failed: ")
            && said.len() >= MIN_PREFIX
            && text.starts_with(said.trim_end_matches([',', ' ']))
        {
            head = format!("{}{text}", &head[..head.len() - said.len()]);
            continue;
        }
        kept.push(line);
    }
    let explained = head
        .lines()
        .chain(kept.iter().copied())
        .any(|l| !l.contains(NO_DRIVER));
    if explained {
        head = head
            .lines()
            .filter(|l| !l.contains(NO_DRIVER))
            .collect::<Vec<_>>()
            .join("\n");
        kept.retain(|l| !l.contains(NO_DRIVER));
    }
    if kept.is_empty() {
        return head;
    }
    format!("{head}\n{TAIL_HEADER}\n{}", kept.join("\n"))
}

/// Why a result has no layer JSON, as the user reads it: on a host without a usable CUDA
/// driver TensorRT's long "driver version is insufficient" error becomes what it means; any
/// other reason is TensorRT's text as it is.
pub fn layer_info_unavailable(error: &str) -> String {
    if error.contains(NO_DRIVER) {
        return format!(
            "the engine inspector needs a GPU this TensorRT can use, and this host has none \
             ({NO_DRIVER} for CUDA runtime version); the layer listing has the layers"
        );
    }
    error.to_string()
}

/// The build log's last lines as a failure shows them under `message`: lines whose text the
/// message already says left out, and the missing-driver line too when the message holds a
/// real error. The full log keeps everything.
pub fn shape_log_tail(message: &str, tail: Vec<String>) -> Vec<String> {
    let explained = message
        .lines()
        .any(|l| !l.trim().is_empty() && !l.contains(NO_DRIVER));
    tail.into_iter()
        .filter(|line| {
            let text = tail_text(line);
            let said = text.len() >= MIN_PREFIX && message.contains(text);
            let noise = explained && line.contains(NO_DRIVER);
            !said && !noise
        })
        .collect()
}

/// A line's text without its indent and severity: `[error] text` (the builder's report) or
/// `error: text` (the build log).
fn tail_text(line: &str) -> &str {
    let line = line.trim_start();
    if let Some((severity, text)) = line.strip_prefix('[').and_then(|r| r.split_once("] "))
        && !severity.contains(' ')
    {
        return text;
    }
    for severity in ["error: ", "warning: ", "info: ", "verbose: ", "worker: "] {
        if let Some(text) = line.strip_prefix(severity) {
            return text;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the builder reported for a bf16 PP-OCRv4 detector (TensorRT-RTX 1.7, no GPU),
    /// shortened: the head cuts Myelin's text short, the tail repeats it whole and adds the
    /// missing-driver line.
    const MYELIN: &str = "TensorRT: buildSerializedNetworkToStream failed: IBuilder::buildSerializedNetworkToStream: Error Code 1: Myelin ([type.cpp:186: infer_type] Could not infer output types for operation: 12950: deconv: p2o.ConvTranspose.1-(bf16[1,24]), p2o.ConvTranspose.0 filterWeightsBFloat16<entry>,
last TensorRT messages:
  [error] IBuilder::buildSerializedNetworkToStream: Error Code 1: Myelin ([type.cpp:186: infer_type] Could not infer output types for operation: 12950: deconv: p2o.ConvTranspose.1-(bf16[1,24]), p2o.ConvTranspose.0 filterWeightsBFloat16<entry>, __mye12951p)
  [error] [checkMacros.cpp::catchCudaError::250] Error Code 1: Cuda Runtime (In catchCudaError at /_src/common/dispatch/checkMacros.cpp:250 (cudaError 35: CUDA driver version is insufficient for CUDA runtime version))";

    #[test]
    fn a_repeated_error_is_said_once_in_full_without_the_driver_line() {
        let shaped = shape(MYELIN);
        assert_eq!(
            shaped.matches("Could not infer output types").count(),
            1,
            "{shaped}"
        );
        assert!(
            shaped.ends_with("<entry>, __mye12951p)"),
            "the whole text: {shaped}"
        );
        assert!(!shaped.contains("CUDA driver"), "{shaped}");
        assert!(!shaped.contains(TAIL_HEADER), "{shaped}");
        assert!(shaped.starts_with("TensorRT: buildSerializedNetworkToStream failed: "));
    }

    #[test]
    fn other_messages_stay_once_each_and_the_driver_line_stays_when_it_is_all_there_is() {
        let message = "TensorRT: build failed: out of memory\nlast TensorRT messages:\n  \
                       [warning] tactic 7 skipped\n  [warning] tactic 7 skipped\n  [error] out of memory";
        assert_eq!(
            shape(message),
            "TensorRT: build failed: out of memory\nlast TensorRT messages:\n  [warning] tactic 7 skipped"
        );
        let alone = "TensorRT: createInferBuilder failed: cudaError 35: CUDA driver version is \
                     insufficient for CUDA runtime version";
        assert_eq!(shape(alone), alone);
        assert_eq!(
            shape("the ONNX parser rejected the model"),
            "the ONNX parser rejected the model"
        );
    }

    #[test]
    fn the_log_tail_leaves_out_what_the_message_says() {
        let message = shape(MYELIN);
        let tail: Vec<String> = MYELIN
            .lines()
            .skip(2)
            .map(|l| l.trim().to_string())
            .chain(["[info] serialized 0 bytes".to_string()])
            .collect();
        // The build log's own form says the same.
        let logged: Vec<String> = tail
            .iter()
            .map(|l| l.replacen("[error] ", "error: ", 1))
            .collect();
        assert_eq!(
            shape_log_tail(&message, logged),
            vec!["[info] serialized 0 bytes".to_string()]
        );
        assert_eq!(
            shape_log_tail(&message, tail),
            vec!["[info] serialized 0 bytes".to_string()]
        );
    }

    #[test]
    fn no_usable_driver_reads_as_what_it_means_for_layer_info() {
        let tensorrt = "deserializeCudaEngine failed: IRuntime::deserializeCudaEngine: Error Code 1: \
                        Cuda Runtime (In ScopedCudaStream at /_src/common/dispatch/cudaResources.cpp:25 \
                        (cudaError 35: CUDA driver version is insufficient for CUDA runtime version))";
        let said = layer_info_unavailable(tensorrt);
        assert!(
            said.starts_with("the engine inspector needs a GPU"),
            "{said}"
        );
        assert!(!said.contains("ScopedCudaStream"), "{said}");
        assert_eq!(layer_info_unavailable("out of memory"), "out of memory");
    }
}
