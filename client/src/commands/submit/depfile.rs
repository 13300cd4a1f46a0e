//! `submit --depfile`: the engines' dependencies in the Makefile syntax Ninja, Make and CMake's
//! `DEPFILE` read, so a build system re-runs `trtfarm submit` when a manifest, model,
//! external-data file or plugin changes, and only then.
//!
//! One rule per manifest: its engine files, then every file its builds read (the manifest
//! itself, the model, external data, plugins). The engines come in `--engine` order when the
//! command line names them, else in manifest order: Ninja checks the rule's first output
//! against the first output of its build edge, so a build file can always list them the same
//! way. Paths are written as the command line named
//! them (lexically cleaned of `./`), the convention of compilers' `-MD` files: relative to the
//! current directory when the manifest and `--out` were given relative, absolute when they were
//! given absolute. A build tool matches the rule's first output against the file it asked for
//! by that text, so name them in the build file the same way (the CMake module passes absolute
//! paths, which CMake rewrites for its generator).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;

use super::Prepared;
use super::outputs::destination;

/// The dependency file for the engines `selected` (manifest index, engine name) of `prepared`,
/// written where `submit` puts them (`out` is `--out`), in the order of `engines` (`--engine`)
/// where it names them. An error when a path cannot be spelled in Makefile syntax.
pub fn render(
    prepared: &[Prepared],
    selected: &[(usize, String)],
    engines: &[String],
    out: Option<&Path>,
) -> anyhow::Result<String> {
    let mut text = String::new();
    for (index, p) in prepared.iter().enumerate() {
        let mut variants: Vec<&String> = (selected.iter())
            .filter(|(i, _)| *i == index)
            .map(|(_, variant)| variant)
            .collect();
        // Stable: variants `engines` does not name keep manifest order, after those it does.
        variants.sort_by_key(|v| engines.iter().position(|e| e == *v).unwrap_or(usize::MAX));
        let mut outputs = Vec::new();
        for variant in variants {
            outputs.extend(destination(p, variant, out));
        }
        if outputs.is_empty() {
            continue;
        }
        let inputs = std::iter::once(&p.path).chain(p.local.iter().map(|input| &input.local));
        let mut targets = Vec::new();
        for file in &outputs {
            targets.push(escape(file)?);
        }
        // Continuation lines keep each path on a line of its own, for people reading it.
        let _ = write!(text, "{}:", targets.join(" \\\n  "));
        for input in inputs {
            let _ = write!(text, " \\\n  {}", escape(input)?);
        }
        text.push('\n');
    }
    Ok(text)
}

/// Writes `text` to `path` unless it already holds exactly that: through a temporary file
/// renamed into place, so a build tool never reads half a file. `true` when it wrote.
pub fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<bool> {
    let context = || format!("cannot write the dependency file {}", path.display());
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(false);
    }
    let Some(name) = path.file_name() else {
        anyhow::bail!(
            "--depfile {} names no file; name one, e.g. engines.d",
            path.display()
        );
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(context)?;
    }
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(context)?;
    Ok(true)
}

/// `path` cleaned of `.` components and escaped as GCC escapes a dependency: a space or tab
/// gets a backslash (and the backslashes before it are doubled), `$` is `$$`, `#` is `\#`.
/// Ninja's, Make's and CMake's readers undo exactly that.
fn escape(path: &Path) -> anyhow::Result<String> {
    let cleaned: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let cleaned = if cleaned.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        cleaned
    };
    let unrepresentable = |why: &str| {
        anyhow::anyhow!(
            "--depfile cannot name {path:?}: {why}; rename it (a dependency file is line-based \
             Makefile syntax)"
        )
    };
    let text = cleaned
        .to_str()
        .ok_or_else(|| unrepresentable("it is not valid UTF-8"))?;
    if text.contains(['\n', '\r']) {
        return Err(unrepresentable("it contains a line break"));
    }
    if text.ends_with('\\') {
        // `\` then the separating space would read as an escaped space.
        return Err(unrepresentable("it ends with a backslash"));
    }
    let mut escaped = String::with_capacity(text.len());
    let mut backslashes = 0;
    for c in text.chars() {
        match c {
            ' ' | '\t' => {
                escaped.extend(std::iter::repeat_n('\\', backslashes + 1));
                escaped.push(c);
            }
            '$' => escaped.push_str("$$"),
            '#' => escaped.push_str("\\#"),
            _ => escaped.push(c),
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
    }
    Ok(escaped)
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt as _;

    use trtfarm::inputs::LocalInput;
    use trtfarm_proto::v1::InputRole;

    use super::*;

    /// A manifest at `path` (as found) with engines `fp32` (output `build/m.engine`) and `bare`
    /// (none), its model and the given extra inputs.
    fn prepared(path: &str, extra: &[(&str, InputRole)]) -> Prepared {
        let text = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.9\"]\n[[engine]]\nname = \"fp32\"\noutput = \"build/m.engine\"\n[[engine]]\nname = \"bare\"\n";
        let manifest = manifest_schema::parse(text, Path::new(path)).unwrap();
        let dir = Path::new(path).parent().unwrap();
        let mut local = vec![LocalInput {
            path: "m.onnx".into(),
            local: dir.join("m.onnx"),
            role: InputRole::Model,
        }];
        for (name, role) in extra {
            local.push(LocalInput {
                path: name.to_string(),
                local: dir.join(name),
                role: *role,
            });
        }
        Prepared {
            path: PathBuf::from(path),
            label: path.trim_start_matches("./").to_string(),
            manifest,
            local,
            inputs: Vec::new(),
        }
    }

    fn engines(names: &[(usize, &str)]) -> Vec<(usize, String)> {
        names.iter().map(|(i, n)| (*i, n.to_string())).collect()
    }

    #[test]
    fn each_engine_depends_on_the_manifest_model_external_data_and_plugins() {
        let p = prepared(
            "./models/cnn/engine.toml",
            &[
                ("m.onnx.data", InputRole::ExternalData),
                ("plugins/libroi.so", InputRole::Plugin),
            ],
        );
        let text = render(&[p], &engines(&[(0, "fp32")]), &[], None).unwrap();
        assert_eq!(
            text,
            "models/cnn/build/m.engine: \\\n  models/cnn/engine.toml \\\n  models/cnn/m.onnx \\\n  \
             models/cnn/m.onnx.data \\\n  models/cnn/plugins/libroi.so\n"
        );
    }

    #[test]
    fn one_rule_per_manifest_naming_only_the_selected_engines_where_out_puts_them() {
        let a = prepared("/src/a/engine.toml", &[]);
        let b = prepared("/src/b/engine.toml", &[]);
        let c = prepared("/src/c/engine.toml", &[]);
        let text = render(
            &[a, b, c],
            &engines(&[(0, "fp32"), (0, "bare"), (1, "bare")]),
            &[],
            Some(Path::new("/build/engines")),
        )
        .unwrap();
        // With --out, a manifest outside the current directory keeps its path under DIR.
        assert_eq!(
            text,
            "/build/engines/src/a/fp32.engine \\\n  /build/engines/src/a/bare.engine: \\\n  \
             /src/a/engine.toml \\\n  /src/a/m.onnx\n\
             /build/engines/src/b/bare.engine: \\\n  /src/b/engine.toml \\\n  /src/b/m.onnx\n"
        );
    }

    #[test]
    fn engines_named_on_the_command_line_come_in_that_order() {
        let p = prepared("m/engine.toml", &[]);
        let selected = engines(&[(0, "fp32"), (0, "bare")]);
        let named = ["bare".to_string(), "fp32".to_string()];
        let text = render(&[p], &selected, &named, Some(Path::new("out"))).unwrap();
        assert!(
            text.starts_with("out/m/bare.engine \\\n  out/m/fp32.engine:"),
            "{text}"
        );
    }

    #[test]
    fn an_engine_without_an_output_names_its_default_file() {
        let p = prepared("models/engine.toml", &[]);
        let text = render(&[p], &engines(&[(0, "bare")]), &[], None).unwrap();
        assert!(text.starts_with("models/build/bare.engine:"), "{text}");
    }

    #[test]
    fn spaces_dollars_and_hashes_are_escaped_as_gcc_does() {
        let escaped = |path: &str| escape(Path::new(path)).unwrap();
        assert_eq!(escaped("my models/m.onnx"), "my\\ models/m.onnx");
        assert_eq!(escaped("a\tb"), "a\\\tb");
        assert_eq!(escaped("cost$1/m.onnx"), "cost$$1/m.onnx");
        assert_eq!(escaped("run#2/m.onnx"), "run\\#2/m.onnx");
        // Backslashes before a space are doubled, so the reader gets them back with the space.
        assert_eq!(escaped("a\\ b"), "a\\\\\\ b");
        // Backslashes elsewhere are taken literally by every reader.
        assert_eq!(escaped("a\\b"), "a\\b");
        assert_eq!(escaped("./x/./y"), "x/y");
    }

    #[test]
    fn paths_the_syntax_cannot_spell_are_refused() {
        for (path, why) in [("a\nb", "line break"), ("a\\", "backslash")] {
            let message = escape(Path::new(path)).unwrap_err().to_string();
            assert!(message.contains(why), "{path:?}: {message}");
        }
        let not_utf8 = std::ffi::OsStr::from_bytes(b"m\xff.onnx");
        let message = escape(Path::new(not_utf8)).unwrap_err().to_string();
        assert!(message.contains("UTF-8"), "{message}");
    }

    #[test]
    fn a_depfile_is_replaced_atomically_and_only_when_its_text_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deps/engines.d");
        assert!(write_if_changed(&path, "a: b\n").unwrap());
        let first = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!write_if_changed(&path, "a: b\n").unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), first);
        assert!(write_if_changed(&path, "a: c\n").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: c\n");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("engines.d")],
            "no temporary left"
        );
    }
}
