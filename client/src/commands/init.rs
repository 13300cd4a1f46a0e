//! `trtfarm init`: a first `engine.toml` for an ONNX model, one that `trtfarm check` accepts as
//! written. The model's inputs are read (never its weights); dynamic inputs get the profile
//! `check` suggests, its sizes marked as placeholders to set.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use manifest_schema::ModelInput;
use onnx_graph::GraphInput;

use crate::cli::InitArgs;
use crate::discover::MANIFEST_FILE_NAME;

/// The toolchain a new manifest builds with: TensorRT-RTX, which builds on the CPU for the GPUs
/// the manifest lists.
const TOOLCHAIN: &str = "tensorrt-rtx 1.7";

/// The GPUs a new manifest targets: Ampere (8.6) and Ada (8.9) consumer and workstation cards.
const COMPUTE_CAPABILITIES: [&str; 2] = ["8.6", "8.9"];

/// The engines a new manifest builds: (name, precision line or none for the default fp32, why).
const ENGINES: [(&str, Option<&str>, &str); 2] = [
    ("fp32", None, "The accuracy baseline."),
    (
        "fp16",
        Some("precision = \"fp16\""),
        "Half the memory traffic: the farm converts the model to fp16 before building (autocast),\n\
         # keeping numerically sensitive operators in float32.",
    ),
];

/// Build settings shown commented out in `[defaults]`, each at its default: (key, value, what
/// it is). A unit test uncomments them all and parses the result, so a renamed key fails it.
const COMMON_SETTINGS: [(&str, &str, &str); 9] = [
    (
        "precision",
        "\"fp32\"",
        "fp32, tf32, fp16, bf16, int8, fp8, fp4",
    ),
    ("optimization_level", "3", "builder optimization level, 0-5"),
    (
        "tiling_optimization_level",
        "\"none\"",
        "none, fast, moderate, full",
    ),
    (
        "build_timeout",
        "\"1h\"",
        "not part of the engine's identity",
    ),
    (
        "memory_pools.workspace",
        "\"2GiB\"",
        "default: the toolchain's; scratch memory layers may use",
    ),
    (
        "timing_cache.policy",
        "\"off\"",
        "off, record, locked (record and locked: TensorRT Enterprise only)",
    ),
    (
        "autocast.keep_fp32",
        "[]",
        "fp16/bf16: operator types kept in float32, e.g. [\"Sigmoid\"]",
    ),
    (
        "autocast.keep_fp32_io",
        "false",
        "fp16/bf16: float32 graph inputs and outputs stay float32",
    ),
    (
        "weights.refit",
        "\"none\"",
        "none, all, individual, identical",
    ),
];

/// The comment on each line of placeholder sizes.
const PLACEHOLDER_NOTE: &str = "placeholder sizes: set the sizes your application feeds";

/// Runs `trtfarm init`. Returns whether `trtfarm check` accepts what it wrote.
pub fn run(args: &InitArgs) -> anyhow::Result<bool> {
    let model = match &args.model {
        Some(model) => model.clone(),
        None => only_model_in(Path::new("."))?,
    };
    let metadata =
        std::fs::metadata(&model).with_context(|| format!("cannot read {}", model.display()))?;
    anyhow::ensure!(
        metadata.is_file(),
        "{} is not a file: give the ONNX model, `trtfarm init path/to/model.onnx`",
        model.display()
    );
    let manifest = manifest_path(&model, args.output.as_deref());
    let model_in_manifest = relative_model_path(&model, &manifest)?;
    if !args.force && manifest.exists() {
        anyhow::bail!(
            "{} already exists; not overwriting it (pass --force to replace it, or --output to \
             write the new manifest elsewhere)",
            manifest.display()
        );
    }
    let inputs = onnx_graph::read_graph_inputs(&model).with_context(|| {
        format!(
            "cannot read the inputs of {}: `trtfarm init` needs an ONNX model (a ModelProto file)",
            model.display()
        )
    })?;
    let text = render(&model_in_manifest, &inputs);
    write_manifest(&manifest, &text, args.force)?;

    let shown = manifest.display();
    println!("wrote {shown} for {}", model.display());
    for input in &inputs {
        println!("  input   {}", one_line(&input.to_string()));
    }
    let placeholders = text.lines().any(|l| l.ends_with(PLACEHOLDER_NOTE));
    let engines: Vec<&str> = ENGINES.iter().map(|(name, _, _)| *name).collect();
    println!("  engines {}", engines.join(", "));

    // What the user runs next gets run now, so a model no build could use is reported here.
    let cache = trtfarm::digest_cache::DigestCache::open_default();
    let checked = match trtfarm::inputs::load_checked(&manifest, &cache) {
        Ok(_) => true,
        Err(errors) => {
            eprint!("{}", errors.render_plain());
            eprintln!(
                "{shown} was written, but `trtfarm check` finds the problems above; fix them \
                 (or the model) before submitting"
            );
            false
        }
    };
    println!("next:");
    if placeholders {
        println!(
            "  set the profile's min, opt and max in {shown} (the lines marked placeholder) to \
             the shapes your application feeds"
        );
    }
    println!("  trtfarm check {shown}    validate it again after editing");
    println!("  trtfarm submit {shown}   build the engines, write engine.lock, fetch the engines");
    Ok(checked)
}

/// The only `*.onnx` file directly in `dir`.
fn only_model_in(dir: &Path) -> anyhow::Result<PathBuf> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut models = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let is_onnx = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        if is_onnx && path.is_file() {
            models.push(PathBuf::from(entry.file_name()));
        }
    }
    models.sort();
    match models.len() {
        0 => anyhow::bail!(
            "no .onnx model in {}: give its path, `trtfarm init path/to/model.onnx`",
            describe_dir(dir)
        ),
        1 => Ok(models.remove(0)),
        _ => {
            let names: Vec<String> = models.iter().map(|m| m.display().to_string()).collect();
            anyhow::bail!(
                "{} holds several models ({}): name the one to build, `trtfarm init {}`",
                describe_dir(dir),
                names.join(", "),
                names[0]
            )
        }
    }
}

/// "the current directory" for `.`, else the path.
fn describe_dir(dir: &Path) -> String {
    if dir == Path::new(".") {
        "the current directory".to_string()
    } else {
        dir.display().to_string()
    }
}

/// Where the manifest goes: `--output` (a directory gets `engine.toml` inside it), else
/// `engine.toml` beside the model.
fn manifest_path(model: &Path, output: Option<&Path>) -> PathBuf {
    match output {
        Some(dir) if dir.is_dir() => dir.join(MANIFEST_FILE_NAME),
        Some(file) => file.to_path_buf(),
        None => model
            .parent()
            .unwrap_or(Path::new(""))
            .join(MANIFEST_FILE_NAME),
    }
}

/// The model's path as `[model] path` writes it: relative to the manifest's directory, with
/// `/`, never leaving that directory (a manifest's paths stay inside it).
fn relative_model_path(model: &Path, manifest: &Path) -> anyhow::Result<String> {
    let dir = manifest.parent().unwrap_or(Path::new(""));
    let absolute_dir = lexical_absolute(dir)?;
    let absolute_model = lexical_absolute(model)?;
    let relative = absolute_model.strip_prefix(&absolute_dir).map_err(|_| {
        anyhow::anyhow!(
            "{} is not inside {}, the manifest's directory, and a manifest's paths stay inside \
             its directory: write the manifest beside the model or in a directory above it \
             (--output)",
            model.display(),
            absolute_dir.display()
        )
    })?;
    let parts: Vec<&str> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<_>>()
        .with_context(|| format!("{} is not a UTF-8 path", model.display()))?;
    Ok(parts.join("/"))
}

/// `path` made absolute against the current directory, with `.` and `..` resolved by name
/// (symbolic links are `trtfarm check`'s to judge).
fn lexical_absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    })
    .with_context(|| format!("cannot resolve {}", path.display()))?;
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Writes the manifest; without `force`, only if nothing is there (checked again at creation,
/// so a file that appeared meanwhile is not replaced).
fn write_manifest(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; not overwriting it (pass --force to replace it)",
                path.display()
            )
        } else {
            anyhow::Error::new(error).context(format!("cannot write {}", path.display()))
        }
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The manifest for the model at `model_path` (relative to the manifest) with graph `inputs`.
pub fn render(model_path: &str, inputs: &[GraphInput]) -> String {
    let mut out = String::new();
    let file_name = model_path.rsplit('/').next().unwrap_or(model_path);
    let _ = writeln!(
        out,
        "# The TensorRT engines to build from {}, written by `trtfarm init`.\n\
         # Every key is described in trtfarm's manifest reference (docs/manifest.md). For completion\n\
         # and checking in an editor, make the first line\n\
         # `#:schema <path-to-trtfarm>/manifest-schema/engine.schema.json`.\n\
         schema_version = 1\n",
        one_line(file_name)
    );
    let _ = writeln!(out, "[model]\npath = {}", toml_string(model_path));
    out.push_str("# Its inputs, as the model declares them:\n");
    if inputs.is_empty() {
        out.push_str("#   none\n");
    }
    for input in inputs {
        let _ = writeln!(out, "#   {}", one_line(&input.to_string()));
    }

    let _ = writeln!(
        out,
        "\n[defaults]\n\
         # TensorRT-RTX builds ahead of time, on the CPU, for the GPUs listed below.\n\
         toolchain = {}\n\
         # Common settings, at their defaults (the workspace size is an example); uncomment one\n\
         # to change it for every engine, or set it in one [[engine]].",
        toml_string(TOOLCHAIN)
    );
    let width = COMMON_SETTINGS
        .iter()
        .map(|(key, value, _)| key.len() + value.len())
        .max()
        .unwrap_or(0);
    for (key, value, note) in COMMON_SETTINGS {
        let pad = width - key.len() - value.len();
        let _ = writeln!(out, "# {key} = {value}{:pad$}  # {note}", "");
    }
    let targets: Vec<String> = COMPUTE_CAPABILITIES
        .iter()
        .map(|c| toml_string(c))
        .collect();
    let _ = writeln!(
        out,
        "\n[defaults.compatibility]\n\
         # The GPUs the engines run on: 8.6 Ampere (RTX 30xx, RTX A6000), 8.9 Ada (RTX 40xx, L4,\n\
         # L40), 12.0 Blackwell (RTX 50xx, RTX PRO 6000).\n\
         compute_capabilities = [{}]",
        targets.join(", ")
    );

    out.push('\n');
    out.push_str(&render_profile(inputs));

    for (name, precision, why) in ENGINES {
        let _ = write!(out, "\n# {why}\n[[engine]]\nname = \"{name}\"\n");
        if let Some(precision) = precision {
            let _ = writeln!(out, "{precision}");
        }
        let _ = writeln!(out, "output = \"build/{name}.engine\"");
    }
    out
}

/// The `[[profile]]` table `trtfarm check` suggests, each line of invented sizes marked as
/// placeholders; for a model without dynamic inputs, a comment saying none is needed.
fn render_profile(inputs: &[GraphInput]) -> String {
    let model_inputs: Vec<ModelInput> = inputs
        .iter()
        .cloned()
        .map(trtfarm::inputs::to_model_input)
        .collect();
    let suggested = manifest_schema::suggested_profile(&model_inputs);
    let mut out = String::new();
    let unranked: Vec<String> = model_inputs
        .iter()
        .filter(|i| i.dims.is_none())
        .map(|i| format!("`{}`", one_line(&i.name)))
        .collect();
    if !unranked.is_empty() {
        let _ = writeln!(
            out,
            "# The model does not give the rank of {}: if such an input is dynamic, give its\n\
             # min, opt and max shapes in a [[profile]] like the one below.",
            unranked.join(", ")
        );
    }
    if suggested.is_empty() {
        out.push_str("# No optimization profile: every input of the model has fixed dimensions.\n");
        return out;
    }
    out.push_str(
        "# One optimization profile: min, opt and max shapes for every input with a dimension\n\
         # chosen at run time. TensorRT chooses kernels for opt; the engine accepts min to max.\n\
         # Dimensions that share a name in the model must get the same sizes.\n\
         [[profile]]\n",
    );
    for (_, line) in suggested {
        let _ = writeln!(out, "{line}  # {PLACEHOLDER_NOTE}");
    }
    out
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// `text` on one line: control characters (a newline in a hostile input name) escaped, so a
/// comment cannot end early and turn the rest into TOML.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_graph::{DataType, Dim, ElementType, InputKind};

    fn input(name: &str, dims: Option<Vec<Dim>>) -> GraphInput {
        GraphInput {
            name: name.into(),
            kind: InputKind::Tensor,
            element_type: ElementType::Known(DataType::Float),
            dims,
        }
    }

    fn parse(text: &str) -> manifest_schema::Manifest {
        manifest_schema::parse(text, Path::new("/project/engine.toml"))
            .unwrap_or_else(|e| panic!("{}\n{text}", e.render_plain()))
    }

    #[test]
    fn a_dynamic_model_gets_a_placeholder_profile_that_fits_its_inputs() {
        let inputs = [
            input(
                "ids",
                Some(vec![Dim::symbolic("batch"), Dim::symbolic("seq")]),
            ),
            input(
                "mask",
                Some(vec![Dim::symbolic("batch"), Dim::symbolic("seq")]),
            ),
            input("scale", Some(vec![Dim::Fixed(4)])),
        ];
        let text = render("models/bert.onnx", &inputs);
        assert!(text.contains("path = \"models/bert.onnx\""), "{text}");
        assert!(text.contains("#   ids: FLOAT [batch, seq]"), "{text}");
        assert!(
            text.contains(&format!(
                "inputs.ids = {{ min = [1, 32], opt = [8, 256], max = [32, 1024] }}  # {PLACEHOLDER_NOTE}"
            )),
            "{text}"
        );
        assert!(
            !text.contains("inputs.scale"),
            "static inputs need no shapes: {text}"
        );
        let manifest = parse(&text);
        let model_inputs: Vec<ModelInput> = inputs
            .iter()
            .cloned()
            .map(trtfarm::inputs::to_model_input)
            .collect();
        assert_eq!(manifest.check_against_model(&model_inputs), []);
        let names: Vec<&str> = manifest
            .variants()
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["fp32", "fp16"]);
        let fp16 = manifest.variant("fp16").unwrap();
        assert_eq!(fp16.settings.precision, manifest_schema::Precision::Fp16);
        assert_eq!(
            fp16.output.as_deref(),
            Some(Path::new("/project/build/fp16.engine"))
        );
        assert_eq!(fp16.settings.toolchain.to_string(), TOOLCHAIN);
    }

    #[test]
    fn a_static_model_gets_no_profile() {
        let inputs = [input(
            "pixels",
            Some(vec![
                Dim::Fixed(1),
                Dim::Fixed(3),
                Dim::Fixed(224),
                Dim::Fixed(224),
            ]),
        )];
        let text = render("resnet.onnx", &inputs);
        assert!(!text.contains("[[profile]]"), "{text}");
        assert!(
            text.contains("every input of the model has fixed dimensions"),
            "{text}"
        );
        let manifest = parse(&text);
        assert!(manifest.variants().iter().all(|v| v.profiles.is_empty()));
    }

    #[test]
    fn every_commented_setting_is_a_real_key_at_its_default() {
        let text = render("m.onnx", &[input("x", Some(vec![Dim::Fixed(1)]))]);
        let prefixes: Vec<String> = COMMON_SETTINGS
            .iter()
            .map(|(key, _, _)| format!("# {key} = "))
            .collect();
        let uncommented: String = text
            .lines()
            .map(|line| match prefixes.iter().any(|p| line.starts_with(p)) {
                true => format!("{}\n", &line[2..]),
                false => format!("{line}\n"),
            })
            .collect();
        assert_ne!(uncommented, text);
        let with = parse(&uncommented);
        let without = parse(&text);
        for (a, b) in with.variants().iter().zip(without.variants()) {
            let (mut a, b) = (a.settings.clone(), b.settings.clone());
            // The workspace has no fixed default (the toolchain's): its value is an example.
            assert_eq!(a.memory_pools.workspace, Some(2 << 30));
            a.memory_pools = b.memory_pools.clone();
            assert_eq!(a, b, "an uncommented setting is not at its default");
        }
    }

    #[test]
    fn names_with_control_characters_cannot_break_out_of_comments() {
        let inputs = [input(
            "x\n[defaults]\nprecision = \"int8\"",
            Some(vec![Dim::Unknown]),
        )];
        let text = render("a\"b.onnx", &inputs);
        let manifest = parse(&text);
        assert_eq!(manifest.model.path, "a\"b.onnx");
        assert_eq!(
            manifest.variant("fp32").unwrap().settings.precision,
            manifest_schema::Precision::Fp32
        );
    }

    #[test]
    fn the_model_path_is_relative_to_the_manifest_and_stays_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("models/net.onnx");
        let manifest = dir.path().join("engine.toml");
        assert_eq!(
            relative_model_path(&model, &manifest).unwrap(),
            "models/net.onnx"
        );
        let beside = manifest_path(&model, None);
        assert_eq!(beside, dir.path().join("models/engine.toml"));
        assert_eq!(relative_model_path(&model, &beside).unwrap(), "net.onnx");
        let below = dir.path().join("models/sub/engine.toml");
        let error = relative_model_path(&model, &below).unwrap_err().to_string();
        assert!(error.contains("is not inside"), "{error}");
    }

    #[test]
    fn the_only_model_is_found_and_several_or_none_are_errors_that_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let error = only_model_in(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("no .onnx model") && error.contains("trtfarm init"),
            "{error}"
        );
        std::fs::write(dir.path().join("b.onnx"), b"").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        assert_eq!(only_model_in(dir.path()).unwrap(), PathBuf::from("b.onnx"));
        std::fs::write(dir.path().join("a.ONNX"), b"").unwrap();
        let error = only_model_in(dir.path()).unwrap_err().to_string();
        assert!(error.contains("several models (a.ONNX, b.onnx)"), "{error}");
    }
}
