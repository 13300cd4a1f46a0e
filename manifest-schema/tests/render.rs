//! Rendering diagnostics for people.

use std::path::Path;

use manifest_schema::parse;

const BAD: &str = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\nprecision = \"fp61\"\n";

fn errors() -> manifest_schema::ManifestErrors {
    match parse(BAD, Path::new("dir/engine.toml")) {
        Ok(_) => panic!("parsed an invalid manifest"),
        Err(errors) => errors,
    }
}

#[test]
fn plain_rendering_has_location_source_line_caret_and_help() {
    let text = errors().render_plain();
    let expected = "\
dir/engine.toml:6:13: error: unknown precision `fp61`
  |
6 | precision = \"fp61\"
  |             ^^^^^^
  = help: did you mean `fp16`? valid values: `fp32`, `tf32`, `fp16`, `bf16`, `int8`, `fp8`, `fp4`
";
    assert_eq!(text, expected);
    assert_eq!(errors().to_string(), expected.trim_end());
}

#[test]
fn fancy_rendering_shows_the_snippet_and_help() {
    let text = errors().render_fancy(false);
    assert!(text.contains("unknown precision `fp61`"), "{text}");
    assert!(text.contains("precision = \"fp61\""), "{text}");
    assert!(text.contains("dir/engine.toml:6:13"), "{text}");
    assert!(text.contains("did you mean `fp16`?"), "{text}");
}

#[test]
fn diagnostics_serialize_for_json_output() {
    let json = serde_json::to_value(errors().diagnostics()).unwrap_or_default();
    assert_eq!(json[0]["line"], 6);
    assert_eq!(json[0]["column"], 13);
    assert_eq!(json[0]["severity"], "error");
    assert_eq!(json[0]["file"], "dir/engine.toml");
    assert_eq!(json[0]["span"]["start"], 94);
}
