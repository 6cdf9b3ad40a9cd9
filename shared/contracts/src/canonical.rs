//! Canonical JSON: object keys sorted at every level. `serde_json` keeps insertion order when any
//! crate in the build turns on its `preserve_order` feature (feature unification makes that depend on
//! what else is being built), so anything compared or hashed as text goes through here first.

use serde_json::{Map, Value};

/// `value` with every object's keys in sorted order.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut sorted = Map::new();
            for k in keys {
                sorted.insert(k.clone(), canonical(&map[k]));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_whatever_the_input_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": 3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"c": 3, "z": [ {"x": 2, "y": 1} ]}, "b": 1}"#).unwrap();
        assert_eq!(canonical(&a).to_string(), canonical(&b).to_string());
        assert_eq!(canonical(&a).to_string(), json!({"a": {"c": 3, "z": [{"x": 2, "y": 1}]}, "b": 1}).to_string());
        assert_eq!(canonical(&a).to_string(), r#"{"a":{"c":3,"z":[{"x":2,"y":1}]},"b":1}"#);
    }
}
