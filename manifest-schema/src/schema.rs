//! The JSON Schema of `engine.toml`, for editors (taplo / Even Better TOML) and docs.

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::raw::RawManifest;

/// The JSON Schema (draft-07, which taplo understands) describing `engine.toml`, with
/// descriptions taken from the input types' doc comments. Shipped as
/// `manifest-schema/engine.schema.json`.
pub fn json_schema() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<RawManifest>().to_value();
    remove_null(&mut schema);
    schema
}

/// [`json_schema`] as pretty-printed JSON with a trailing newline, as shipped.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// TOML has no null (an optional key is simply absent), so drop the `null` alternatives
/// schemars adds for `Option` fields.
fn remove_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".to_string(), only);
                }
            }
            if let Some(Value::Array(alternatives)) = map.get_mut("anyOf") {
                alternatives.retain(|a| a.get("type").is_none_or(|t| t != "null"));
                if alternatives.len() == 1
                    && let Some(Value::Object(only)) = alternatives.pop()
                {
                    map.remove("anyOf");
                    for (key, v) in only {
                        map.entry(key).or_insert(v);
                    }
                }
            }
            map.values_mut().for_each(remove_null);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_null),
        _ => {}
    }
}
