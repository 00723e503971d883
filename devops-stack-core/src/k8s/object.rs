//! Rendered objects: identity, ownership labels, content hash and apply order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use base64::Engine as _;

use super::KubeError;
use crate::error::Result;

/// The annotation holding the hash of an object's rendered content, written with the object so
/// that a later run (or one resuming after a crash) can tell it is already applied.
pub const HASH_ANNOTATION: &str = "devops-stack.io/content-hash";

/// Which objects go first: CRDs, then Namespaces, then the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    Crd,
    Namespace,
    Other,
}

/// The identity of an object: what the inventory records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apiVersion`, as `group/version` or `v1`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// The namespace; `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    pub(crate) fn of(object: &Value) -> Result<ObjectRef> {
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        let name = text(&object["metadata"]["name"]);
        match (text(&object["apiVersion"]), text(&object["kind"]), name) {
            (Some(api_version), Some(kind), Some(name)) => Ok(ObjectRef {
                api_version,
                kind,
                namespace: text(&object["metadata"]["namespace"]),
                name,
            }),
            _ => Err(KubeError::InvalidObject {
                what: format!(
                    "an object (apiVersion `{}`, kind `{}`)",
                    object["apiVersion"].as_str().unwrap_or(""),
                    object["kind"].as_str().unwrap_or("")
                ),
                problem: "it has no apiVersion, kind or metadata.name".into(),
                fix: "render complete objects".into(),
            }
            .into()),
        }
    }

    /// The API group (empty for the core group).
    pub(crate) fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    pub(crate) fn class(&self) -> Class {
        match (self.group(), self.kind.as_str()) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Class::Crd,
            ("", "Namespace") => Class::Namespace,
            _ => Class::Other,
        }
    }

    /// `Kind namespace/name` (or `Kind name`), as in [`ApplyReport`](super::ApplyReport).
    pub fn title(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    pub(crate) fn is_application(&self) -> bool {
        self.group() == "argoproj.io" && self.kind == "Application"
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {} {ns}/{}", self.api_version, self.kind, self.name),
            None => write!(f, "{} {} {}", self.api_version, self.kind, self.name),
        }
    }
}

/// An object ready to apply: ownership labels merged in and its content hash annotated.
///
/// A Secret's hash leaves out its `data` and `stringData`: a hash of secret values, kept on the
/// object and in the state ConfigMap, would let anyone who can read them check guesses of the
/// values. Its values are compared with the live ones instead ([`Desired::secret_data`]).
#[derive(Clone)]
pub(crate) struct Desired {
    pub(crate) id: ObjectRef,
    pub(crate) body: Value,
    pub(crate) hash: String,
    /// For a Secret: every key it renders with its base64 value (`stringData` encoded).
    pub(crate) secret_data: Option<BTreeMap<String, String>>,
    /// For a Secret of a plan: the keys whose values are known only after apply
    /// ([`unknown`](crate::plan::unknown) placeholders: credentials made by the apply). A diff
    /// takes them as they are live.
    pub(crate) unknown_keys: Vec<String>,
}

impl fmt::Debug for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Desired")
            .field("id", &self.id)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Whether `id` is a core Secret.
pub(crate) fn is_secret(id: &ObjectRef) -> bool {
    id.api_version == "v1" && id.kind == "Secret"
}

impl Desired {
    pub(crate) fn new(mut object: Value, labels: &BTreeMap<String, String>) -> Result<Desired> {
        let id = ObjectRef::of(&object)?;
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("ObjectRef::of checked metadata.name");
        let label_map = entry_object(meta, "labels");
        for (k, v) in labels {
            label_map.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(HASH_ANNOTATION);
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
        let mut unknown_keys = Vec::new();
        let (hash, secret_data) = if is_secret(&id) {
            let mut public = object.clone();
            let mut data = BTreeMap::new();
            if let Some(map) = public.as_object_mut() {
                for (key, encode) in [("data", false), ("stringData", true)] {
                    if let Some(Value::Object(values)) = map.remove(key) {
                        for (k, v) in values {
                            let text = v.as_str().unwrap_or_default();
                            if crate::plan::is_unknown(text) {
                                unknown_keys.push(k.clone());
                            }
                            let value = if encode {
                                base64::engine::general_purpose::STANDARD.encode(text)
                            } else {
                                text.to_owned()
                            };
                            data.insert(k, value);
                        }
                    }
                }
            }
            (content_hash(&public), Some(data))
        } else {
            (content_hash(&object), None)
        };
        let meta = object["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        entry_object(meta, "annotations")
            .insert(HASH_ANNOTATION.into(), Value::String(hash.clone()));
        Ok(Desired {
            id,
            body: object,
            hash,
            secret_data,
            unknown_keys,
        })
    }
}

fn entry_object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// The hex SHA-256 of `object`'s content, independent of key order.
///
/// ```
/// use devops_stack_core::k8s::content_hash;
/// let a = serde_json::json!({"kind": "ConfigMap", "data": {"a": "1", "b": "2"}});
/// let b = serde_json::json!({"data": {"b": "2", "a": "1"}, "kind": "ConfigMap"});
/// assert_eq!(content_hash(&a), content_hash(&b));
/// assert_ne!(content_hash(&a), content_hash(&serde_json::json!({"kind": "ConfigMap"})));
/// ```
pub fn content_hash(object: &Value) -> String {
    let mut h = Sha256::new();
    feed(&mut h, object);
    hex::encode(h.finalize())
}

fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                feed(h, &Value::String(k.clone()));
                h.update(b":");
                feed(h, &m[k]);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for x in a {
                feed(h, x);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

/// The hash annotation of a live object.
pub(crate) fn live_hash(meta: &kube::api::ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(HASH_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn desired_objects_get_labels_and_hash() {
        let labels = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let d = Desired::new(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"c": "d"}}}), &labels).unwrap();
        assert_eq!(d.body["metadata"]["labels"], json!({"a": "b", "c": "d"}));
        assert_eq!(
            d.body["metadata"]["annotations"][HASH_ANNOTATION],
            d.hash.as_str()
        );
        let again = Desired::new(d.body.clone(), &labels).unwrap();
        assert_eq!(
            again.hash, d.hash,
            "re-rendering an applied object keeps its hash"
        );
        assert_eq!(d.id.to_string(), "v1 ConfigMap x");
        assert!(Desired::new(json!({"kind": "ConfigMap"}), &labels).is_err());
        // A Secret's hash does not depend on its values, which are kept for comparison.
        let secret = |v: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": v}, "data": {"b": "eA=="}});
        let (a, b) = (
            Desired::new(secret("hunter2"), &labels).unwrap(),
            Desired::new(secret("other"), &labels).unwrap(),
        );
        assert_eq!(a.hash, b.hash);
        assert_eq!(
            a.secret_data.unwrap(),
            BTreeMap::from([
                ("b".into(), "eA==".into()),
                ("password".into(), "aHVudGVyMg==".into())
            ])
        );
        assert!(!format!("{b:?}").contains("other"));
    }

    #[test]
    fn classes_order_crds_then_namespaces() {
        let r = |v: &str, k: &str| ObjectRef {
            api_version: v.into(),
            kind: k.into(),
            namespace: None,
            name: "n".into(),
        };
        assert_eq!(
            r("apiextensions.k8s.io/v1", "CustomResourceDefinition").class(),
            Class::Crd
        );
        assert_eq!(r("v1", "Namespace").class(), Class::Namespace);
        assert_eq!(r("example.com/v1", "Namespace").class(), Class::Other);
        assert!(Class::Crd < Class::Namespace && Class::Namespace < Class::Other);
        assert!(r("argoproj.io/v1alpha1", "Application").is_application());
    }
}
