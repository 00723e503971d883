//! Helm values: the deep merge of overrides over defaults, the JSON types the typed checks of
//! overrides expect, and the serialization of typed objects for the apply engine.

use serde::Serialize;
use serde_json::Value;

/// Deep-merges `patch` over `base` with Helm's semantics (RFC 7386): maps merge recursively,
/// other values replace, `null` deletes the key.
///
/// ```
/// use devops_stack_modules::merge_values;
/// use serde_json::json;
/// let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
/// merge_values(&mut v, &json!({"a": {"b": 3, "c": null}, "d": [2]}));
/// assert_eq!(v, json!({"a": {"b": 3}, "d": [2]}));
/// ```
pub fn merge_values(base: &mut Value, patch: &Value) {
    json_patch::merge(base, patch);
}

/// The JSON type a Helm value must have, for the typed checks of overrides
/// ([`ChartSpec::typed_values`](super::ChartSpec::typed_values)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueKind {
    /// A whole number.
    Integer,
    /// A map.
    Object,
    /// `true` or `false`.
    Bool,
    /// A string.
    String,
}

impl ValueKind {
    pub(crate) fn matches(self, v: &Value) -> bool {
        match self {
            ValueKind::Integer => v.is_i64() || v.is_u64(),
            ValueKind::Object => v.is_object(),
            ValueKind::Bool => v.is_boolean(),
            ValueKind::String => v.is_string(),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ValueKind::Integer => "an integer",
            ValueKind::Object => "an object",
            ValueKind::Bool => "a boolean",
            ValueKind::String => "a string",
        }
    }
}

/// What a JSON value is, for error messages.
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a floating-point number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Serializes a typed object for the apply engine.
pub(crate) fn to_json(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("typed Kubernetes objects serialize to JSON")
}
