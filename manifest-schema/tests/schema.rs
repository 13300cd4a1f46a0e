//! The shipped `engine.schema.json` matches the code.

use std::path::Path;

#[test]
fn shipped_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("engine.schema.json");
    let generated = manifest_schema::json_schema_text();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        if let Err(e) = std::fs::write(&path, &generated) {
            panic!("cannot write {}: {e}", path.display());
        }
        return;
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == generated,
        "{} is out of date: run `UPDATE_SCHEMA=1 cargo test -p manifest-schema` to regenerate",
        path.display()
    );
}

#[test]
fn schema_describes_the_format() {
    let schema = manifest_schema::json_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    assert!(required.contains(&"model".into()) && required.contains(&"schema_version".into()));
    let text = schema.to_string();
    for needle in [
        "fp16",
        "tensorrt-rtx",
        "compute_capabilities",
        "Builder optimization level",
        "ampere+",
    ] {
        assert!(text.contains(needle), "schema lacks {needle}");
    }
}
