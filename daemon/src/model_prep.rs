//! The model as TensorRT will see it: checked, and for fp16/bf16 converted, before a build.
//!
//! Strongly typed TensorRT takes precision from the model's types, not from builder flags, so
//! `precision = "fp16"` means converting the model (`onnx_graph::autocast`) and `int8`/`fp8`/
//! `fp4` mean a model that already carries Q/DQ nodes of that type. Shared by the build worker
//! and `trtfarmd build`, so both build exactly the same model for a variant.

use std::path::{Path, PathBuf};

use manifest_schema::Variant;

use crate::variant_config::{ModelPrecision, autocast_options, model_precision};

/// Checks the model at `model` and prepares it for `variant`'s precision; returns the file to
/// build: `model` itself, or `converted` after an fp16/bf16 conversion (written there, with its
/// weights beside it as `<converted>.data` when they exceed the inline limit). `log` receives
/// what was done, as (severity, text), for the build log.
pub fn prepare_model(
    variant: &Variant,
    model: &Path,
    converted: &Path,
    log: &mut dyn FnMut(&str, String),
) -> Result<PathBuf, String> {
    // What TensorRT's parser would take quietly or misread (bytes that are no model, a graph
    // without outputs, dimensions past 32 bits, external data outside the model's directory or
    // past the end of its file) is refused here, in the model's own terms.
    if let Err(e) = onnx_graph::sanity::check_model(model) {
        let message = format!("the model failed trtfarm's check before parsing: {e}");
        log("error", message.clone());
        return Err(message);
    }
    match model_precision(variant) {
        ModelPrecision::AsIs => Ok(model.to_path_buf()),
        ModelPrecision::Autocast(target) => {
            let options = autocast_options(target, &variant.settings.autocast);
            let report = onnx_graph::autocast::autocast_file(model, converted, &options)
                .map_err(|e| format!("cannot convert the model to {}: {e}", target.name()))?;
            log(
                "info",
                format!(
                    "trtfarm autocast to {}: {} weights and {} nodes converted, {} numerically \
                     sensitive nodes kept in fp32, {} casts inserted",
                    target.name(),
                    report.converted_initializers,
                    report.converted_nodes,
                    report.kept_fp32_nodes.len(),
                    report.inserted_casts
                ),
            );
            for warning in &report.clamped {
                log("warning", format!("trtfarm autocast: {warning}"));
            }
            Ok(converted.to_path_buf())
        }
        ModelPrecision::ExplicitQuantization(precision) => {
            let summary = onnx_graph::quantization::quantization_summary(model)
                .map_err(|e| format!("cannot read the model: {e}"))?;
            onnx_graph::quantization::require_explicit_quantization(&summary, precision)?;
            Ok(model.to_path_buf())
        }
    }
}
