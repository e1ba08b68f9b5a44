//! Canonical JSON for hashing: object keys sorted by their UTF-8 bytes, no
//! whitespace, serde_json's escaping and number forms. Written out here rather
//! than relying on `serde_json::Value`'s map order, which a feature flag
//! anywhere in the build (`preserve_order`) would change.

use serde_json::Value;

/// `value` as canonical JSON text.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_at_every_level_and_no_whitespace() {
        let value = serde_json::json!({"b": 1, "a": {"z": [1, {"y": "x", "c": null}], "a": "é\""}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"a":"é\"","z":[1,{"c":null,"y":"x"}]},"b":1}"#
        );
    }
}
