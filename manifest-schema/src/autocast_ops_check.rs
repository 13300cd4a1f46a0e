//! Checking the operator lists of `autocast` against the model's operators: a type the model
//! does not have keeps (or converts) nothing, silently: autocast matches `op_type` exactly, so
//! `"Convtranspose"` misses every `ConvTranspose`.
//!
//! This crate does not read ONNX: the caller reads the model's nodes and passes them to
//! [`Manifest::check_autocast_ops`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use crate::diagnostic::{Diagnostic, sort_and_dedup};
use crate::model::Manifest;
use crate::suggest::{did_you_mean, quoted_list};

/// One node of the model (subgraphs included): its name and operator type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelNode {
    /// The node's name (else its first output's).
    pub name: String,
    /// Its operator type, e.g. `ConvTranspose`.
    pub op_type: String,
}

/// Operator types listed in full in a hint; beyond this, "and N more".
const LISTED_TYPES: usize = 20;

impl Manifest {
    /// Whether some engine lists operator types in `autocast.keep_fp32` or `autocast.convert`,
    /// the lists [`Manifest::check_autocast_ops`] checks.
    pub fn lists_autocast_ops(&self) -> bool {
        self.setting_spans
            .iter()
            .any(|s| !s.keep_fp32.is_empty() || !s.convert.is_empty())
    }

    /// Checks every `autocast.keep_fp32` and `autocast.convert` entry against the operator
    /// types of `nodes` (the model's). An entry the model has no node of is an error at the
    /// entry, suggesting the type it most likely means (same letters in another case first,
    /// then a close spelling), or the node's type when the entry is a node's name. Entries
    /// shared by several engines are reported once.
    pub fn check_autocast_ops(&self, nodes: &[ModelNode]) -> Vec<Diagnostic> {
        let types: BTreeSet<&str> = nodes.iter().map(|n| n.op_type.as_str()).collect();
        let types: Vec<&str> = types.into_iter().collect();
        let by_name: BTreeMap<&str, &str> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.op_type.as_str()))
            .collect();
        let mut out = Vec::new();
        for spans in &self.setting_spans {
            let lists = [
                ("keep_fp32", "keep nothing in fp32", &spans.keep_fp32),
                ("convert", "convert nothing", &spans.convert),
            ];
            for (key, effect, entries) in lists {
                out.extend(self.unknown_ops(key, effect, entries, &types, &by_name));
            }
        }
        sort_and_dedup(&mut out);
        out
    }

    /// The errors for the entries of `autocast.<key>` that are no operator type of the model.
    fn unknown_ops(
        &self,
        key: &str,
        effect: &str,
        entries: &BTreeMap<String, Range<usize>>,
        types: &[&str],
        by_name: &BTreeMap<&str, &str>,
    ) -> Vec<Diagnostic> {
        entries
            .iter()
            .filter(|(entry, _)| !types.contains(&entry.as_str()))
            .map(|(entry, span)| {
                self.source.error(
                    span.clone(),
                    format!(
                        "`autocast.{key}` lists `{entry}`, but model `{}` has no operator of \
                         that type, so it would {effect}",
                        self.model.path
                    ),
                    Some(unknown_op_hint(key, entry, types, by_name)),
                )
            })
            .collect()
    }
}

/// "did you mean `best`?", saying that case matters.
fn did_you_mean_hint(best: &str) -> String {
    format!("did you mean `{best}`? operator types match exactly, case included: write \"{best}\"")
}

/// The fix for an entry of `autocast.<key>` that is no operator type of the model.
fn unknown_op_hint(
    key: &str,
    entry: &str,
    types: &[&str],
    by_name: &BTreeMap<&str, &str>,
) -> String {
    if let Some(best) = types.iter().find(|t| t.eq_ignore_ascii_case(entry)) {
        return did_you_mean_hint(best);
    }
    if let Some(op_type) = by_name.get(entry) {
        return format!(
            "`{entry}` is a node's name; `{key}` takes operator types, and that node is a \
             `{op_type}`: write \"{op_type}\" (it applies to every `{op_type}`)"
        );
    }
    if let Some(best) = did_you_mean(entry, types) {
        return did_you_mean_hint(best);
    }
    let mut listed = quoted_list(&types[..types.len().min(LISTED_TYPES)]);
    if types.len() > LISTED_TYPES {
        listed.push_str(&format!(" and {} more", types.len() - LISTED_TYPES));
    }
    format!("the model's operator types are {listed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two engines that both list `entries` under `autocast.<key>`.
    fn manifest(key: &str, entries: &str) -> Manifest {
        let text = format!(
            "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
             toolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.9\"]\n\
             [[engine]]\nname = \"bf16\"\nprecision = \"bf16\"\nautocast.{key} = [{entries}]\n\
             [[engine]]\nname = \"fp16\"\nprecision = \"fp16\"\nautocast.{key} = [{entries}]\n"
        );
        crate::parse(&text, std::path::Path::new("engine.toml")).unwrap()
    }

    fn nodes() -> Vec<ModelNode> {
        [
            ("conv_1", "Conv"),
            ("p2o.ConvTranspose.0", "ConvTranspose"),
            ("head_act", "Sigmoid"),
            ("pool", "ReduceMean"),
        ]
        .iter()
        .map(|(name, op_type)| ModelNode {
            name: name.to_string(),
            op_type: op_type.to_string(),
        })
        .collect()
    }

    fn check(key: &str, entries: &str) -> String {
        let m = manifest(key, entries);
        assert!(m.lists_autocast_ops());
        let found = m.check_autocast_ops(&nodes());
        m.errors(found).render_plain()
    }

    #[test]
    fn types_the_model_has_pass() {
        let m = manifest("keep_fp32", "\"ConvTranspose\", \"Sigmoid\"");
        assert!(m.check_autocast_ops(&nodes()).is_empty());
        let m = manifest("convert", "\"ReduceMean\"");
        assert!(m.check_autocast_ops(&nodes()).is_empty());
    }

    #[test]
    fn a_manifest_without_operator_lists_has_nothing_to_check() {
        let text = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
                    toolchain = \"tensorrt-rtx 1.7\"\n\
                    compatibility.compute_capabilities = [\"8.9\"]\n";
        let m = crate::parse(text, std::path::Path::new("engine.toml")).unwrap();
        assert!(!m.lists_autocast_ops());
    }

    #[test]
    fn a_type_in_the_wrong_case_suggests_the_right_one_at_its_entry() {
        let text = check("keep_fp32", "\"Convtranspose\"");
        assert!(text.contains("engine.toml:10:23"), "{text}");
        assert!(
            text.contains(
                "`autocast.keep_fp32` lists `Convtranspose`, but model `m.onnx` has no operator \
                 of that type, so it would keep nothing in fp32"
            ),
            "{text}"
        );
        assert!(text.contains("did you mean `ConvTranspose`?"), "{text}");
        // Both engines write the entry: each place is reported.
        assert!(text.contains("engine.toml:14:23"), "{text}");
    }

    #[test]
    fn a_convert_entry_the_model_lacks_is_an_error_at_its_entry() {
        let text = check("convert", "\"Reducemean\"");
        assert!(text.contains("engine.toml:10:21"), "{text}");
        assert!(
            text.contains(
                "`autocast.convert` lists `Reducemean`, but model `m.onnx` has no operator of \
                 that type, so it would convert nothing"
            ),
            "{text}"
        );
        assert!(text.contains("did you mean `ReduceMean`?"), "{text}");
        let text = check("convert", "\"pool\"");
        assert!(
            text.contains("`convert` takes operator types")
                && text.contains("write \"ReduceMean\""),
            "{text}"
        );
    }

    #[test]
    fn a_misspelling_a_node_name_and_an_unknown_type_each_get_their_fix() {
        assert!(check("keep_fp32", "\"Sigmod\"").contains("did you mean `Sigmoid`?"));
        let text = check("keep_fp32", "\"head_act\"");
        assert!(
            text.contains("is a node's name") && text.contains("write \"Sigmoid\""),
            "{text}"
        );
        let text = check("keep_fp32", "\"Gelu\"");
        assert!(
            text.contains(
                "the model's operator types are `Conv`, `ConvTranspose`, `ReduceMean`, `Sigmoid`"
            ),
            "{text}"
        );
    }
}
