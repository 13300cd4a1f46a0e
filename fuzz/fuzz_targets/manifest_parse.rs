//! Arbitrary bytes as `engine.toml`: parsing never panics, errors always render (their spans
//! index the text), and a manifest that parses has canonical variant encodings (what feeds the
//! action key) that are the same on a second parse and after TOML re-formatting.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use manifest_schema::Manifest;

/// `(name, canonical encoding)` of every variant, in manifest order.
fn encodings(manifest: &Manifest) -> Vec<(String, Vec<u8>)> {
    manifest
        .variants()
        .iter()
        .map(|v| (v.name.clone(), v.canonical_encoding()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/engine.toml");
    let manifest = match manifest_schema::parse(text, path) {
        Ok(manifest) => manifest,
        Err(errors) => {
            // What a user sees: every diagnostic, with its source line and carets.
            let _ = errors.render_plain();
            let _ = errors.render_fancy(false);
            let _ = errors.to_string();
            return;
        }
    };
    let first = encodings(&manifest);
    let again = manifest_schema::parse(text, path).expect("a manifest that parsed parses again");
    assert_eq!(
        first,
        encodings(&again),
        "a re-parse changed a canonical encoding"
    );

    // The same document written differently (key order, quoting, inline tables) is the same
    // request: its encodings must not change.
    let Ok(value) = toml::from_str::<toml::Table>(text) else {
        panic!("the manifest parsed but is not a TOML table");
    };
    let Ok(reformatted) = toml::to_string(&value) else {
        return;
    };
    match manifest_schema::parse(&reformatted, path) {
        Ok(reparsed) => assert_eq!(
            first,
            encodings(&reparsed),
            "re-formatting changed a canonical encoding:\n{reformatted}"
        ),
        Err(errors) => panic!(
            "the re-formatted manifest is refused:\n{reformatted}\n{}",
            errors.render_plain()
        ),
    }
});
