//! Profiles checked against the model's inputs: each case asserts where the problem is reported,
//! what it says and the hint.

use std::path::Path;

use manifest_schema::{Diagnostic, Manifest, ModelDim, ModelInput, parse};

/// Five lines every case starts with, so case text begins on line 6.
macro_rules! head {
    () => {
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n"
    };
}

fn manifest(text: &str) -> Manifest {
    match parse(text, Path::new("engine.toml")) {
        Ok(manifest) => manifest,
        Err(errors) => panic!("manifest should parse:\n{errors}"),
    }
}

fn check(text: &str, inputs: &[ModelInput]) -> Vec<Diagnostic> {
    manifest(text).check_against_model(inputs)
}

/// A model input of known rank.
fn input(name: &str, dims: &[Dim]) -> ModelInput {
    ModelInput {
        name: name.to_string(),
        dims: Some(dims.iter().map(Dim::to_model).collect()),
    }
}

/// Shorthand for [`ModelDim`]: fixed, symbolic (named), unknown.
enum Dim {
    F(u64),
    S(&'static str),
    U,
}

impl Dim {
    fn to_model(&self) -> ModelDim {
        match self {
            Dim::F(size) => ModelDim::Fixed(*size),
            Dim::S(name) => ModelDim::Symbolic(name.to_string()),
            Dim::U => ModelDim::Unknown,
        }
    }
}

use Dim::{F, S, U};

/// `images: [N, 3, 64, 64]`, the classifier example's input.
fn classifier() -> Vec<ModelInput> {
    vec![input("images", &[S("N"), F(3), F(64), F(64)])]
}

/// `features: [batch, 32]`, `context: [batch, 16]`, the ranker example's inputs.
fn ranker() -> Vec<ModelInput> {
    vec![
        input("features", &[S("batch"), F(32)]),
        input("context", &[S("batch"), F(16)]),
    ]
}

fn assert_diagnostic(d: &Diagnostic, line: usize, column: usize, message: &[&str], hint: &[&str]) {
    assert_eq!((d.line, d.column), (line, column), "{d}");
    for part in message {
        assert!(d.message.contains(part), "message lacks {part:?}: {d}");
    }
    let text = d.hint.as_deref().unwrap_or_default();
    for part in hint {
        assert!(text.contains(part), "hint lacks {part:?}: {d}");
    }
}

fn only(diagnostics: &[Diagnostic]) -> &Diagnostic {
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    &diagnostics[0]
}

#[test]
fn matching_profiles_give_no_diagnostics() {
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.features = { min = [1, 32], opt = [4, 32], max = [8, 32] }\n",
        "inputs.context = { min = [1, 16], opt = [4, 16], max = [8, 16] }\n",
        // A static input may be given when its sizes agree.
        "inputs.scale = { min = [1], opt = [1], max = [1] }\n",
        // An unnamed dynamic dimension is independent of everything.
        "inputs.mask = { min = [1, 4], opt = [2, 4], max = [3, 4] }\n",
    );
    let mut inputs = ranker();
    inputs.push(input("scale", &[F(1)]));
    inputs.push(input("mask", &[U, F(4)]));
    assert_eq!(check(text, &inputs), []);

    // A static model needs no profile.
    let static_model = [input("pixels", &[F(1), F(3), F(128), F(128)])];
    assert_eq!(check(head!(), &static_model), []);
    // Inputs whose rank the model does not say are only checked by name.
    let unranked = [ModelInput {
        name: "images".to_string(),
        dims: None,
    }];
    let text = concat!(
        head!(),
        "[[profile]]\ninputs.images = { min = [1], opt = [2], max = [3] }\n"
    );
    assert_eq!(check(text, &unranked), []);
}

#[test]
fn a_profile_input_the_model_lacks_suggests_the_closest_name() {
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "name = \"batch\"\n",
        "inputs.image = { min = [1, 3, 64, 64], opt = [8, 3, 64, 64], max = [32, 3, 64, 64] }\n",
    );
    let diagnostics = check(text, &classifier());
    // One error, at the misspelt key, with the rename as its fix: not another saying `images`
    // is missing, whose fix would be a second line.
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_diagnostic(
        &diagnostics[0],
        8,
        8,
        &["profile `batch` gives input `image`, but the model has no such input"],
        &["did you mean `images`?", "the model's inputs are `images`"],
    );

    // Nothing close: list the model's inputs.
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.features = { min = [1, 32], opt = [4, 32], max = [8, 32] }\n",
        "inputs.context = { min = [1, 16], opt = [4, 16], max = [8, 16] }\n",
        "inputs.\"input.1\" = { min = [1], opt = [1], max = [1] }\n",
    );
    let d = only(&check(text, &ranker())).clone();
    assert_diagnostic(
        &d,
        9,
        8,
        &["profile `profile0` gives input `input.1`"],
        &["the model's inputs are `features`, `context`"],
    );
    assert!(!d.hint.unwrap_or_default().contains("did you mean"));
}

#[test]
fn a_name_unlike_any_input_is_a_rename_when_one_input_is_left_without_shapes() {
    // `pixels` looks like no input of the model, but `images` is the only one left: one error,
    // the rename as its fix, and no second error asking for an `images` line.
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.pixels = { min = [1, 3, 64, 64], opt = [8, 3, 64, 64], max = [32, 3, 64, 64] }\n",
    );
    let diagnostics = check(text, &classifier());
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_diagnostic(
        &diagnostics[0],
        7,
        8,
        &["profile `profile0` gives input `pixels`, but the model has no such input"],
        &[
            "only input this profile leaves without shapes is `images` (`[N, 3, 64, 64]`)",
            "rename `pixels` to `images`",
        ],
    );

    // Two unknown names, or a different rank: no guess, the missing input is its own error.
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.pixels = { min = [1, 64, 64], opt = [8, 64, 64], max = [32, 64, 64] }\n",
    );
    let diagnostics = check(text, &classifier());
    assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
    assert!(
        diagnostics
            .iter()
            .all(|d| !d.hint.as_deref().unwrap_or_default().contains("rename"))
    );
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.feats = { min = [1, 32], opt = [4, 32], max = [8, 32] }\n",
        "inputs.ctx = { min = [1, 16], opt = [4, 16], max = [8, 16] }\n",
    );
    let diagnostics = check(text, &ranker());
    assert!(
        diagnostics
            .iter()
            .all(|d| !d.hint.as_deref().unwrap_or_default().contains("rename"))
    );
}

#[test]
fn a_dynamic_input_missing_from_a_profile_is_reported_at_the_profile() {
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "name = \"p0\"\n",
        "inputs.features = { min = [1, 32], opt = [4, 32], max = [8, 32] }\n",
    );
    let d = only(&check(text, &ranker())).clone();
    assert_diagnostic(
        &d,
        8,
        1,
        &[
            "profile `p0` gives no shapes for input `context`",
            "dynamic in the model: `[batch, 16]`",
        ],
        // The suggestion reuses the sizes the profile already gives `batch`.
        &["add `inputs.context = { min = [1, 16], opt = [4, 16], max = [8, 16] }`"],
    );
    assert!(!d.hint.unwrap_or_default().contains("examples"));

    // Written as a `[profile.inputs]` table, the header is the anchor.
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "[profile.inputs]\n",
        "features = { min = [1, 32], opt = [4, 32], max = [8, 32] }\n",
    );
    assert_diagnostic(
        only(&check(text, &ranker())),
        7,
        1,
        &["input `context`"],
        &[],
    );
}

#[test]
fn dynamic_inputs_without_any_profile_are_reported_at_the_model_path() {
    let inputs = vec![
        input("images", &[S("N"), F(3), S("H"), S("W")]),
        input("mask", &[S("N"), U]),
        input("scale", &[F(1)]),
    ];
    let d = only(&check(head!(), &inputs)).clone();
    let snippet = "[[profile]]\n\
        inputs.images = { min = [1, 3, 32, 32], opt = [8, 3, 256, 256], max = [32, 3, 1024, 1024] }\n\
        inputs.mask = { min = [1, 32], opt = [8, 256], max = [32, 1024] }";
    assert_diagnostic(
        &d,
        3,
        8,
        &[
            "model `m.onnx` has dynamic inputs `images` `[N, 3, H, W]` and `mask` `[N, ?]`",
            "the manifest has no optimization profile",
        ],
        &[
            "the sizes of `N`, `H`, `W` and `?` ([1, 8, 32] as min, opt and max for a first dimension, [32, 256, 1024] for others) are placeholders",
            snippet,
        ],
    );
    assert!(!d.hint.unwrap_or_default().contains("scale"));

    // The snippet is ready to paste.
    let fixed = format!("{}{snippet}\n", head!());
    assert_eq!(check(&fixed, &inputs), []);
}

#[test]
fn a_rank_mismatch_is_reported_at_the_min_shape() {
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.images = { min = [1, 3, 64], opt = [8, 3, 64], max = [32, 3, 64] }\n",
    );
    assert_diagnostic(
        only(&check(text, &classifier())),
        7,
        25,
        &[
            "input `images` has rank 4 in the model (`[N, 3, 64, 64]`)",
            "profile `profile0` gives it 3 dimensions",
        ],
        &["need 4 dimensions", "min = [1, 3, 64, 64]"],
    );
}

#[test]
fn a_fixed_dimension_must_keep_its_size() {
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.images = { min = [1, 4, 64, 64], opt = [8, 4, 64, 64], max = [32, 4, 64, 64] }\n",
    );
    assert_diagnostic(
        only(&check(text, &classifier())),
        7,
        29,
        &[
            "input `images` dimension 1 is fixed to 3 in the model",
            "profile `profile0` gives min 4, opt 4 and max 4",
        ],
        &["use 3 at index 1 of min, opt and max"],
    );

    // Only max differs: reported at max.
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.images = { min = [1, 3, 64, 64], opt = [8, 3, 64, 64], max = [32, 3, 64, 128] }\n",
    );
    let line = text.lines().nth(6).unwrap_or_default();
    let column = line.find("128").unwrap_or_default() + 1;
    assert_diagnostic(
        only(&check(text, &classifier())),
        7,
        column,
        &["dimension 3 is fixed to 64", "gives max 128"],
        &[],
    );
}

#[test]
fn dimensions_sharing_a_name_need_equal_sizes() {
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "name = \"p0\"\n",
        "inputs.features = { min = [1, 32], opt = [4, 32], max = [8, 32] }\n",
        "inputs.context = { min = [2, 16], opt = [4, 16], max = [8, 16] }\n",
    );
    assert_diagnostic(
        only(&check(text, &ranker())),
        9,
        27,
        &[
            "`batch` is one dimension in the model (inputs `features` dim 0 and `context` dim 0), but profile `p0` gives min 1 and 2",
        ],
        &[
            "Profile kMIN values are not self-consistent. Dimensions with name batch must be equal",
            "contradictory IOptimizationProfile kMIN/kMAX constraints",
            "give every `batch` the same min",
        ],
    );

    // Within one input, in min and max, and with the literal name `?`, which is a name too.
    let inputs = [input("x", &[S("?"), S("S"), S("S")]), input("y", &[S("?")])];
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.x = { min = [1, 2, 3], opt = [1, 4, 4], max = [1, 8, 9] }\n",
        "inputs.y = { min = [1], opt = [1], max = [2] }\n",
    );
    let diagnostics = check(text, &inputs);
    assert_eq!(diagnostics.len(), 3, "{diagnostics:#?}");
    assert_diagnostic(
        &diagnostics[0],
        7,
        27,
        &[
            "`S` is one dimension in the model (input `x` dims 1 and 2)",
            "gives min 2 and 3",
        ],
        &[],
    );
    assert_diagnostic(
        &diagnostics[1],
        7,
        61,
        &["`S` is one dimension", "gives max 8 and 9"],
        &["the same max"],
    );
    assert_diagnostic(
        &diagnostics[2],
        8,
        43,
        &[
            "`?` is one dimension in the model (inputs `x` dim 0 and `y` dim 0)",
            "gives max 1 and 2",
        ],
        &[],
    );
}

#[test]
fn variants_report_shared_profiles_once_and_own_profiles_at_their_place() {
    let text = concat!(
        head!(),
        "[[profile]]\n",
        "inputs.image = { min = [1, 3, 64, 64], opt = [8, 3, 64, 64], max = [32, 3, 64, 64] }\n",
        "inputs.images = { min = [1, 3, 64, 64], opt = [8, 3, 64, 64], max = [32, 3, 64, 64] }\n",
        "[[engine]]\n",
        "name = \"a\"\n",
        "[[engine]]\n",
        "name = \"b\"\n",
        "[[engine]]\n",
        "name = \"own\"\n",
        "[[engine.profile]]\n",
        "name = \"small\"\n",
        "inputs.images = { min = [1, 3, 32, 64], opt = [1, 3, 64, 64], max = [1, 3, 64, 64] }\n",
        "[[engine]]\n",
        "name = \"none\"\n",
        "profile = []\n",
    );
    let diagnostics = check(text, &classifier());
    assert_eq!(diagnostics.len(), 3, "{diagnostics:#?}");
    assert_diagnostic(
        &diagnostics[0],
        3,
        8,
        &[
            "engine `none` has no optimization profile, but model `m.onnx` has dynamic input `images` `[N, 3, 64, 64]`",
        ],
        &["[[engine.profile]]\ninputs.images = { min = [1, 3, 64, 64]"],
    );
    // Once, although engines `a` and `b` both use the shared profile.
    assert_diagnostic(
        &diagnostics[1],
        7,
        8,
        &["profile `profile0` gives input `image`"],
        &["did you mean `images`?"],
    );
    assert_diagnostic(
        &diagnostics[2],
        17,
        32,
        &["profile `small` gives min 32"],
        &[],
    );
}

#[test]
fn errors_wrap_diagnostics_for_rendering() {
    let m = manifest(head!());
    let diagnostics = m.check_against_model(&classifier());
    let mut twice = diagnostics.clone();
    twice.extend(diagnostics.clone());
    twice.push(m.model_diagnostic("`m.onnx` is not an ONNX model", None));
    let errors = m.errors(twice);
    assert_eq!(errors.diagnostics().len(), 2);
    assert_eq!(errors.file(), Path::new("engine.toml"));
    let plain = errors.render_plain();
    assert!(
        plain.contains("engine.toml:3:8: error: `m.onnx` is not an ONNX model"),
        "{plain}"
    );
    assert!(
        plain.contains("engine.toml:3:8: error: model `m.onnx` has dynamic input"),
        "{plain}"
    );
    // The pasteable snippet lines up under the hint.
    assert!(
        plain.contains("\n          [[profile]]\n          inputs.images = {"),
        "{plain}"
    );
    assert!(errors.render_fancy(false).contains("[[profile]]"));
}
