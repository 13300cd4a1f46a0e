//! The bounds of `manifest_schema::limits`: a manifest just at each bound is valid, one just
//! over it is refused at the right place with a hint, and nothing about a hostile manifest
//! (size, nesting) can make parsing run away.

use std::fmt::Write;
use std::path::Path;

use manifest_schema::limits::{
    MAX_ENGINES, MAX_MANIFEST_BYTES, MAX_PROFILE_INPUTS, MAX_PROFILES, MAX_RANK,
};
use manifest_schema::{Diagnostic, parse};

/// Lines 1–5: schema version, model and a toolchain.
const HEAD: &str =
    "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n";

fn diagnostics(toml: &str) -> Vec<Diagnostic> {
    match parse(toml, Path::new("engine.toml")) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.diagnostics().to_vec(),
    }
}

/// The one diagnostic `toml` gets, which must be at `line`:`column` and say `message`, with a
/// hint saying `hint`.
fn assert_refused(toml: &str, line: usize, column: usize, message: &str, hint: &str) {
    let found = diagnostics(toml);
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    assert_eq!((d.line, d.column), (line, column), "{d:#?}");
    assert!(d.message.contains(message), "{d:#?}");
    assert!(d.hint.as_deref().unwrap_or("").contains(hint), "{d:#?}");
}

fn engines(count: usize) -> String {
    let mut text = HEAD.to_string();
    for i in 0..count {
        write!(text, "[[engine]]\nname = \"e{i}\"\n").unwrap();
    }
    text
}

#[test]
fn engines_up_to_the_limit_are_fine_and_one_more_is_refused_at_its_name() {
    assert_eq!(diagnostics(&engines(MAX_ENGINES)), Vec::new());
    // Engine i's name is on line 7 + 2i; the first one over the limit is i = MAX_ENGINES.
    assert_refused(
        &engines(MAX_ENGINES + 1),
        7 + 2 * MAX_ENGINES,
        8,
        "the manifest has 257 `[[engine]]` tables, over the limit of 256; this is engine 257",
        "split the engines over several manifests",
    );
}

fn profiles(header: &str, count: usize) -> String {
    let mut text = HEAD.to_string();
    if header == "[[engine.profile]]" {
        text.push_str("[[engine]]\nname = \"a\"\n");
    }
    for i in 0..count {
        write!(
            text,
            "{header}\ninputs.x = {{ min = [1], opt = [{i}], max = [{}] }}\n",
            i + 1
        )
        .unwrap();
    }
    // `opt` must lie between min and max: shift it to 1..=i+1.
    text.replace("opt = [0]", "opt = [1]")
}

#[test]
fn profiles_up_to_the_limit_are_fine_and_one_more_is_refused() {
    assert_eq!(
        diagnostics(&profiles("[[profile]]", MAX_PROFILES)),
        Vec::new()
    );
    assert_eq!(
        diagnostics(&profiles("[[engine.profile]]", MAX_PROFILES)),
        Vec::new()
    );
    // Profile i's header is on line 6 + 2i (two lines later under an engine).
    assert_refused(
        &profiles("[[profile]]", MAX_PROFILES + 1),
        6 + 2 * MAX_PROFILES,
        1,
        "65 optimization profiles, over the limit of 64; this is profile 65",
        "fewer, wider profiles",
    );
    assert_refused(
        &profiles("[[engine.profile]]", MAX_PROFILES + 1),
        8 + 2 * MAX_PROFILES,
        1,
        "65 optimization profiles, over the limit of 64",
        "fewer, wider profiles",
    );
}

fn inputs(count: usize) -> String {
    let mut text = format!("{HEAD}[[profile]]\nname = \"wide\"\n[profile.inputs]\n");
    for i in 0..count {
        writeln!(text, "x{i} = {{ min = [1], opt = [1], max = [1] }}").unwrap();
    }
    text
}

#[test]
fn inputs_up_to_the_limit_are_fine_and_one_more_is_refused() {
    assert_eq!(diagnostics(&inputs(MAX_PROFILE_INPUTS)), Vec::new());
    assert_refused(
        &inputs(MAX_PROFILE_INPUTS + 1),
        8,
        1,
        "profile `wide` describes 1025 inputs, over the limit of 1024",
        "no real model has this many",
    );
}

#[test]
fn rank_eight_is_fine() {
    let shape = format!("[{}]", ["2"; MAX_RANK].join(", "));
    let text = format!(
        "{HEAD}[[profile]]\ninputs.x = {{ min = {shape}, opt = {shape}, max = {shape} }}\n"
    );
    assert_eq!(diagnostics(&text), Vec::new());
}

#[test]
fn the_largest_shape_whose_element_count_fits_is_fine() {
    // 2^31 - 1 cubed overflows (see invalid.rs); squared it fits in 63 bits.
    let text = format!(
        "{HEAD}[[profile]]\ninputs.x = {{ min = [1, 1], opt = [1, 1], max = [2147483647, 2147483647] }}\n"
    );
    assert_eq!(diagnostics(&text), Vec::new());
}

#[test]
fn text_over_the_size_limit_is_refused_unparsed() {
    let mut text = HEAD.to_string();
    text.push_str(&"#".repeat(MAX_MANIFEST_BYTES - text.len()));
    text.push('\n');
    assert_refused(
        &text,
        1,
        1,
        "the manifest is 1048577 bytes, over the limit of 1048576 bytes (1 MiB)",
        "real manifests are a few KiB",
    );
    // One byte less parses (a long comment is still a comment).
    text.truncate(MAX_MANIFEST_BYTES - 1);
    text.push('\n');
    assert_eq!(diagnostics(&text), Vec::new());
}

#[test]
fn loading_reads_no_more_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.toml");
    std::fs::write(&path, vec![b'#'; 3 * MAX_MANIFEST_BYTES]).unwrap();
    let errors = manifest_schema::load(&path).unwrap_err();
    let d = &errors.diagnostics()[0];
    assert!(
        d.message
            .contains("the manifest is larger than the limit of 1048576 bytes"),
        "{d:#?}"
    );
    // A device never ends; the bounded read does.
    let errors = manifest_schema::load(Path::new("/dev/zero")).unwrap_err();
    assert!(
        errors.diagnostics()[0]
            .message
            .contains("larger than the limit"),
        "{}",
        errors.render_plain()
    );
}

#[test]
fn deeply_nested_toml_is_an_error_not_a_stack_overflow() {
    // Within the size limit, arrays and inline tables nested far deeper than any parser's stack.
    for (open, close) in [("[", "]"), ("{a=", "}")] {
        let depth = (MAX_MANIFEST_BYTES - HEAD.len() - 8) / (open.len() + close.len());
        let text = format!("{HEAD}x = {}{}\n", open.repeat(depth), close.repeat(depth));
        assert!(text.len() <= MAX_MANIFEST_BYTES);
        let found = diagnostics(&text);
        assert!(!found.is_empty(), "a nested value is refused");
    }
}
