//! Arbitrary bytes as an ONNX model file: the streaming readers the client and the daemon run
//! on every model (graph inputs, external-data locations, the model check before TensorRT)
//! return an error, never panic.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One scratch file per process, rewritten for each input.
fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("create a scratch directory"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let model = scratch().join("model.onnx");
    std::fs::write(&model, data).expect("write the model");
    let _ = onnx_graph::sanity::check_model(&model);
    let _ = onnx_graph::read_graph_inputs(&model);
    let _ = onnx_graph::external_data::read_external_data_locations(&model);
    let _ = onnx_graph::external_data::read_external_tensors(&model);
});
