//! Checking each variant's `toolchain` against the toolchains a daemon has.
//!
//! This crate does not talk to daemons: the caller asks one (`GetCapabilities`) and passes what
//! it loaded to [`Manifest::check_toolchains`].

use std::collections::BTreeMap;
use std::ops::Range;

use crate::diagnostic::{Diagnostic, sort_and_dedup};
use crate::enums::Flavour;
use crate::model::Manifest;
use crate::toolchain::{ToolchainRequirement, Version};

/// A toolchain a daemon loaded: its flavour and full version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableToolchain {
    /// TensorRT-RTX or TensorRT Enterprise.
    pub flavour: Flavour,
    /// The full version, e.g. `1.7.1.116`.
    pub version: Version,
}

/// One unmet requirement: where it is written, as text, and the engines that use it.
type Unmet<'a> = (Range<usize>, &'a ToolchainRequirement, Vec<&'a str>);

impl Manifest {
    /// Checks that every variant's `toolchain` requirement is met by one of `available` (the
    /// toolchains the daemon at `daemon` loaded). Each unmet requirement is one error at its
    /// `toolchain` value, naming the engines that use it and listing what the daemon has, with a
    /// requirement it would accept. Empty when every variant can be built there.
    pub fn check_toolchains(
        &self,
        daemon: &str,
        available: &[AvailableToolchain],
    ) -> Vec<Diagnostic> {
        // One error per written value: `[defaults]` may give many engines the same requirement.
        let mut unmet: BTreeMap<(usize, usize), Unmet<'_>> = BTreeMap::new();
        for (variant, spans) in self.variants.iter().zip(&self.setting_spans) {
            let wanted = &variant.settings.toolchain;
            if available
                .iter()
                .any(|t| wanted.accepts(t.flavour, &t.version))
            {
                continue;
            }
            let span = spans.toolchain.clone();
            unmet
                .entry((span.start, span.end))
                .or_insert_with(|| (span, wanted, Vec::new()))
                .2
                .push(variant.name.as_str());
        }
        let mut out: Vec<Diagnostic> = unmet
            .into_values()
            .map(|(span, wanted, engines)| {
                let engines: Vec<String> = engines.iter().map(|e| format!("`{e}`")).collect();
                let which = if engines.len() == 1 {
                    format!("engine {}", engines[0])
                } else {
                    format!("engines {}", engines.join(", "))
                };
                self.source.error(
                    span,
                    format!(
                        "toolchain `{wanted}` (for {which}) is not one the daemon at {daemon} has"
                    ),
                    Some(toolchains_hint(available, wanted.flavour)),
                )
            })
            .collect();
        sort_and_dedup(&mut out);
        out
    }
}

/// What the daemon has, and the requirement to write for the closest one.
fn toolchains_hint(available: &[AvailableToolchain], wanted: Flavour) -> String {
    if available.is_empty() {
        return "the daemon loaded no toolchain (`trtfarm daemon status` says why); install \
                TensorRT-RTX or TensorRT where the daemon runs"
            .to_string();
    }
    let listed: Vec<String> = available
        .iter()
        .map(|t| format!("`{} {}`", t.flavour, t.version))
        .collect();
    // Prefer a toolchain of the flavour the manifest asks for.
    let best = available
        .iter()
        .find(|t| t.flavour == wanted)
        .unwrap_or(&available[0]);
    format!(
        "the daemon has {}; to build there, write toolchain = \"{}\"",
        listed.join(", "),
        ToolchainRequirement::selecting(best.flavour, &best.version)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        crate::parse(text, std::path::Path::new("engine.toml")).unwrap()
    }

    fn rtx(version: &str) -> AvailableToolchain {
        AvailableToolchain {
            flavour: Flavour::TensorRtRtx,
            version: version.parse().unwrap(),
        }
    }

    const HEAD: &str = "schema_version = 1\n[model]\npath = \"m.onnx\"\n";

    #[test]
    fn a_toolchain_the_daemon_lacks_is_an_error_at_its_value() {
        let m = manifest(&format!(
            "{HEAD}[defaults]\ntoolchain = \"tensorrt-rtx 1.6\"\n\
             compatibility.compute_capabilities = [\"8.9\"]\n\
             [[engine]]\nname = \"a\"\n[[engine]]\nname = \"b\"\n"
        ));
        let found = m.check_toolchains("unix:/d.sock", &[rtx("1.7.1.116")]);
        assert_eq!(
            found.len(),
            1,
            "one error for the one [defaults] value: {found:?}"
        );
        let text = m.errors(found).render_plain();
        assert!(text.contains("engine.toml:5:13"), "{text}");
        assert!(
            text.contains("toolchain `tensorrt-rtx 1.6` (for engines `a`, `b`) is not one the daemon at unix:/d.sock has"),
            "{text}"
        );
        assert!(
            text.contains("the daemon has `tensorrt-rtx 1.7.1.116`; to build there, write toolchain = \"tensorrt-rtx 1.7\""),
            "{text}"
        );
    }

    #[test]
    fn an_engine_override_is_reported_where_the_engine_writes_it() {
        let m = manifest(&format!(
            "{HEAD}[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n\
             compatibility.compute_capabilities = [\"8.9\"]\n\
             [[engine]]\nname = \"ok\"\n[[engine]]\nname = \"old\"\ntoolchain = \"tensorrt-rtx >=1.8\"\n"
        ));
        let found = m.check_toolchains("d", &[rtx("1.7.1.116")]);
        let text = m.errors(found).render_plain();
        assert!(text.contains("engine.toml:11:13"), "{text}");
        assert!(text.contains("(for engine `old`)"), "{text}");
        assert!(!text.contains("`ok`"), "{text}");
    }

    #[test]
    fn a_met_requirement_is_no_error_and_no_toolchain_says_so() {
        let m = manifest(&format!(
            "{HEAD}[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n\
             compatibility.compute_capabilities = [\"8.9\"]\n"
        ));
        assert!(m.check_toolchains("d", &[rtx("1.7.1.116")]).is_empty());
        let text = m.errors(m.check_toolchains("d", &[])).render_plain();
        assert!(text.contains("the daemon loaded no toolchain"), "{text}");
    }
}
