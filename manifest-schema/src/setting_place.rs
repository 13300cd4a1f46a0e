//! Where an engine's setting is written, for a refusal that only a daemon can make (it lacks
//! the toolchain the engine asks for): the client points at the line the user should change.

use crate::model::Manifest;

/// Where one setting of one engine is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingPlace {
    /// `file:line:column` of the value.
    pub location: String,
    /// The source line behind a gutter with its number, and carets under the value (the form
    /// `trtfarm check` prints), one or more `\n`-ended lines.
    pub snippet: String,
}

impl Manifest {
    /// Where engine `variant` takes its setting `key` from (its `[[engine]]` or `[defaults]`).
    /// `None` for an unknown engine, for a setting the manifest does not write (a default
    /// applies), and for keys whose place is not recorded: only the settings a daemon refuses
    /// on its own knowledge are (`toolchain`, `compatibility.gpu`, `mps_percentage`,
    /// `build_timeout`, `timing_cache.policy`).
    pub fn setting_place(&self, variant: &str, key: &str) -> Option<SettingPlace> {
        let index = self.variants.iter().position(|v| v.name == variant)?;
        let spans = &self.setting_spans[index];
        let span = match key {
            "toolchain" => spans.toolchain.clone(),
            _ => spans.refusable.get(key)?.clone(),
        };
        if span.is_empty() {
            return None;
        }
        let at = self.source.error(span, "", None);
        Some(SettingPlace {
            location: format!("{}:{}:{}", at.file.display(), at.line, at.column),
            snippet: crate::render::snippet(self.source.text(), &at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
                            toolchain = \"tensorrt-rtx 1.6\"\n\
                            compatibility.compute_capabilities = [\"8.9\"]\n\
                            [[engine]]\nname = \"a\"\n\
                            [[engine]]\nname = \"b\"\ntoolchain = \"tensorrt-rtx 1.7\"\n";

    fn manifest() -> Manifest {
        crate::parse(MANIFEST, std::path::Path::new("dir/engine.toml")).unwrap()
    }

    #[test]
    fn an_engine_points_at_the_toolchain_it_takes_from_defaults_or_its_own_table() {
        let m = manifest();
        let a = m.setting_place("a", "toolchain").unwrap();
        assert_eq!(a.location, "dir/engine.toml:5:13");
        assert_eq!(
            a.snippet,
            "  |\n5 | toolchain = \"tensorrt-rtx 1.6\"\n  |             ^^^^^^^^^^^^^^^^^^\n"
        );
        let b = m.setting_place("b", "toolchain").unwrap();
        assert_eq!(b.location, "dir/engine.toml:11:13");
    }

    #[test]
    fn unknown_engines_and_unrecorded_keys_have_no_place() {
        let m = manifest();
        assert_eq!(m.setting_place("c", "toolchain"), None);
        assert_eq!(m.setting_place("a", "precision"), None);
        // Not written: the default applies, and there is no line to point at.
        assert_eq!(m.setting_place("a", "compatibility.gpu"), None);
    }

    #[test]
    fn an_enterprise_engine_points_at_its_gpu_and_mps_share() {
        let text = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
                    toolchain = \"tensorrt 11.4\"\nmps_percentage = 50\n\
                    [[engine]]\nname = \"h100\"\ncompatibility.gpu = \"H100\"\n";
        let m = crate::parse(text, std::path::Path::new("engine.toml")).unwrap();
        let gpu = m.setting_place("h100", "compatibility.gpu").unwrap();
        assert_eq!(gpu.location, "engine.toml:9:21");
        let mps = m.setting_place("h100", "mps_percentage").unwrap();
        assert_eq!(mps.location, "engine.toml:6:18");
    }
}
