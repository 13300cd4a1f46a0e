//! Checking the `autocast` table: operator names, contradictions, and which engines it applies
//! to (only those whose precision is converted by autocast: fp16 and bf16).

use std::collections::BTreeMap;
use std::ops::Range;

use crate::enums::Precision;
use crate::model::Autocast;
use crate::raw::{Located, OpTypeText, RawAutocast};
use crate::validate::Checker;

/// The operator sets of `raw`, every name checked. Reports bad names and types listed both to
/// keep and to convert; the result leaves out what was reported.
pub(crate) fn autocast(ck: &mut Checker<'_>, raw: Option<&RawAutocast>) -> Autocast {
    let Some(raw) = raw else {
        return Autocast::default();
    };
    let keep = op_types(ck, raw.keep_fp32.as_ref(), "keep_fp32");
    let mut convert = op_types(ck, raw.convert.as_ref(), "convert");
    convert.retain(|op, span| {
        let Some(kept_at) = keep.get(op) else {
            return true;
        };
        let line = ck.line_of(kept_at.start);
        ck.error(
            span.clone(),
            format!("operator `{op}` is in both `autocast.keep_fp32` and `autocast.convert`"),
            Some(format!(
                "an operator is either kept in float32 or converted: remove it from one list \
                 (`keep_fp32` lists it on line {line})"
            )),
        );
        false
    });
    Autocast {
        keep_fp32: keep.into_keys().collect(),
        convert: convert.into_keys().collect(),
        keep_fp32_io: raw.keep_fp32_io.as_ref().is_some_and(|v| *v.get()),
    }
}

/// The valid names of one list, each with where it was first written.
fn op_types(
    ck: &mut Checker<'_>,
    list: Option<&Located<Vec<Located<OpTypeText>>>>,
    key: &str,
) -> BTreeMap<String, Range<usize>> {
    let mut names = BTreeMap::new();
    for item in list.map(|l| l.get().as_slice()).unwrap_or_default() {
        let name = item.get();
        if is_op_type(name) {
            names.entry(name.clone()).or_insert_with(|| item.span());
            continue;
        }
        let (message, hint) = if name.trim().is_empty() {
            (
                format!("`autocast.{key}` has an empty operator type"),
                "list ONNX operator types such as \"Softmax\" or \"ReduceMean\"".to_string(),
            )
        } else if name.contains(['.', ':']) {
            (
                format!("`{name}` is not an ONNX operator type"),
                "write the operator type without its domain: autocast matches the node's op_type, \
                 e.g. \"Gelu\""
                    .to_string(),
            )
        } else {
            (
                format!("`{name}` is not an ONNX operator type"),
                "operator types are identifiers such as \"Softmax\" or \"ReduceMean\" (letters, \
                 digits and `_`, as in the node's op_type)"
                    .to_string(),
            )
        };
        ck.error(item.span(), message, Some(hint));
    }
    names
}

/// An identifier, as ONNX operator types are: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_op_type(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where the first value written in `raw` is, if any key is written.
fn first_value(raw: &RawAutocast) -> Option<Range<usize>> {
    [
        raw.keep_fp32.as_ref().map(Located::span),
        raw.convert.as_ref().map(Located::span),
        raw.keep_fp32_io.as_ref().map(Located::span),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|span| span.start)
}

/// An `[[engine]]`'s own `autocast` settings need the engine to be autocast: written for
/// another precision they would silently do nothing.
pub(crate) fn check_engine_applies(
    ck: &mut Checker<'_>,
    engine: &str,
    own: Option<&RawAutocast>,
    precision: Precision,
) {
    let Some(span) = own.and_then(first_value) else {
        return;
    };
    if precision.is_autocast() {
        return;
    }
    let what = if matches!(precision, Precision::Fp32 | Precision::Tf32) {
        "builds the model as it is"
    } else {
        "builds from the model's Q/DQ nodes"
    };
    ck.error(
        span,
        format!("`autocast` does not apply to precision `{precision}`"),
        Some(format!(
            "autocast is how precision = \"fp16\" and \"bf16\" convert the model; engine \
             `{engine}` has precision `{precision}`, which {what}: remove its `autocast` \
             settings or change `precision`"
        )),
    );
}

/// `[defaults.autocast]` configures the engines that are autocast; with none, it does nothing,
/// which is a mistake worth reporting.
pub(crate) fn check_defaults_used(
    ck: &mut Checker<'_>,
    defaults: Option<&RawAutocast>,
    any_engine_autocast: bool,
) {
    let Some(span) = defaults.and_then(first_value) else {
        return;
    };
    if !any_engine_autocast {
        ck.error(
            span,
            "`[defaults.autocast]` applies to no engine: none has precision `fp16` or `bf16`",
            Some(
                "autocast settings only configure the fp16/bf16 model conversion: remove them, \
                 or set precision = \"fp16\" or \"bf16\""
                    .to_string(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::is_op_type;

    #[test]
    fn op_types_are_identifiers() {
        for good in ["Softmax", "ReduceMean", "_Custom", "MyPlugin_TRT", "Gelu2"] {
            assert!(is_op_type(good), "{good}");
        }
        for bad in [
            "",
            " ",
            "Soft max",
            "com.microsoft.Gelu",
            "2Conv",
            "Softmax ",
            "Ré",
        ] {
            assert!(!is_op_type(bad), "{bad}");
        }
    }
}
