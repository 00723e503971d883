//! Per-object, per-field differences between what runs and what an apply would make.

use std::fmt::{self, Write as _};

use serde::Serialize;
use serde_json::Value;

use super::object::{HASH_ANNOTATION, ObjectRef};
use crate::secret::REDACTED;

/// What an apply would do to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DiffAction {
    /// Create it.
    Create,
    /// Change the listed fields.
    Update,
    /// Nothing.
    Unchanged,
    /// Delete it (the module no longer renders it, or the stack no longer has the module).
    Delete,
    /// Take it over: it exists and is not the module's, and an [`Adopt`](super::Adopt) rule
    /// covers it; the listed fields change.
    Adopt,
    /// Leave it as it is: a namespace that exists and is not the module's ("exists, not managed
    /// by this stack").
    NotManaged,
    /// It exists and is someone else's: the apply will fail, before writing anything, unless it
    /// is adopted.
    Conflict,
}

/// One changed field. `before`/`after` are `None` when the field is absent; values under a
/// Secret's `data`/`stringData` are shown as [`REDACTED`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// The field path: `spec.source.helm.valuesObject.replicas`,
    /// `metadata.labels["app.kubernetes.io/name"]`, `spec.ports[0].port`.
    pub path: String,
    /// The value now.
    pub before: Option<Value>,
    /// The value after an apply.
    pub after: Option<Value>,
    /// The field managers other than the engine's that own the field now: who changed it, when
    /// the engine applied it before (drift an apply puts back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_by: Vec<String>,
}

/// The difference for one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectDiff {
    /// The object.
    pub object: ObjectRef,
    /// What an apply would do.
    pub action: DiffAction,
    /// The changed fields (for a creation, every field of the rendered object).
    pub changes: Vec<FieldChange>,
    /// Why, when it is not plain: who owns an object in conflict or to adopt, a field conflict
    /// the apply would hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What an apply would change, object by object. [`Diff::to_text`] renders it for people.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diff {
    /// One entry per rendered object, in apply order, then the objects that would be pruned.
    pub objects: Vec<ObjectDiff>,
}

/// Metadata the API server manages; never part of a diff.
const SERVER_FIELDS: [&str; 7] = [
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
    "deletionGracePeriodSeconds",
];

impl ObjectDiff {
    /// The difference between the live object `before` (`None`: it does not exist) and `after`,
    /// ignoring `status`, server-managed metadata and the content-hash annotation.
    ///
    /// ```
    /// use devops_stack_core::k8s::{DiffAction, ObjectDiff};
    /// use serde_json::json;
    /// let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "uid": "1"}, "data": {"p": "YQ=="}});
    /// let next = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"p": "Yg=="}});
    /// let d = ObjectDiff::between(Some(&live), &next).unwrap();
    /// assert_eq!(d.action, DiffAction::Update);
    /// assert_eq!(d.to_string(), "~ v1 Secret s\n    data.p: \"<redacted>\" -> \"<redacted>\"\n");
    /// ```
    ///
    /// # Errors
    /// When `after` has no `apiVersion`, `kind` or name.
    pub fn between(before: Option<&Value>, after: &Value) -> crate::Result<ObjectDiff> {
        let object = ObjectRef::of(after)?;
        let mut changes = Vec::new();
        let before = before.map(comparable);
        compare(
            &mut String::new(),
            before.as_ref(),
            Some(&comparable(after)),
            &mut changes,
        );
        if object.api_version == "v1" && object.kind == "Secret" {
            for c in &mut changes {
                if c.path.starts_with("data") || c.path.starts_with("stringData") {
                    let hide = |v: &mut Option<Value>| {
                        if v.is_some() {
                            *v = Some(Value::String(REDACTED.into()));
                        }
                    };
                    hide(&mut c.before);
                    hide(&mut c.after);
                }
            }
        }
        let action = match (before.is_some(), changes.is_empty()) {
            (false, _) => DiffAction::Create,
            (true, true) => DiffAction::Unchanged,
            (true, false) => DiffAction::Update,
        };
        Ok(ObjectDiff {
            object,
            action,
            changes,
            note: None,
        })
    }
}

fn comparable(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SERVER_FIELDS {
                meta.remove(f);
            }
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove(HASH_ANNOTATION);
                if a.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    o
}

fn compare(
    path: &mut String,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) if !(b.is_empty() && a.is_empty()) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                push_key(path, k);
                compare(path, b.get(k), a.get(k), out);
                path.truncate(len);
            }
        }
        (None, Some(Value::Object(a))) | (Some(Value::Object(a)), None) if !a.is_empty() => {
            let added = after.is_some();
            for (k, v) in a {
                let len = path.len();
                push_key(path, k);
                if added {
                    compare(path, None, Some(v), out);
                } else {
                    compare(path, Some(v), None, out);
                }
                path.truncate(len);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) if a.len() == b.len() => {
            for (i, (x, y)) in b.iter().zip(a).enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                compare(path, Some(x), Some(y), out);
                path.truncate(len);
            }
        }
        (b, a) if b != a => out.push(FieldChange {
            path: path.clone(),
            before: b.cloned(),
            after: a.cloned(),
            changed_by: Vec::new(),
        }),
        _ => {}
    }
}

fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        let _ = write!(path, "[{}]", Value::String(key.to_owned()));
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_owned(), Value::to_string)
}

impl fmt::Display for ObjectDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.action {
            DiffAction::Create => "+",
            DiffAction::Update => "~",
            DiffAction::Unchanged | DiffAction::NotManaged => "=",
            DiffAction::Delete => "-",
            DiffAction::Adopt => "~ (adopt)",
            DiffAction::Conflict => "! (conflict)",
        };
        write!(f, "{sign} {}", self.object)?;
        match (&self.note, self.action) {
            (Some(note), _) => writeln!(f, " ({note})")?,
            (None, DiffAction::NotManaged) => writeln!(f, " (exists, not managed by this stack)")?,
            (None, _) => writeln!(f)?,
        }
        for c in &self.changes {
            match (&c.before, &c.after) {
                (None, Some(a)) if self.action == DiffAction::Create => {
                    writeln!(f, "    {}: {a}", c.path)?
                }
                (b, a) => write!(
                    f,
                    "    {}: {} -> {}",
                    c.path,
                    show(b.as_ref()),
                    show(a.as_ref())
                )?,
            }
            if c.changed_by.is_empty() {
                if !(c.before.is_none() && self.action == DiffAction::Create) {
                    writeln!(f)?;
                }
            } else {
                writeln!(
                    f,
                    " (changed by {}; the apply puts it back)",
                    c.changed_by.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

impl Diff {
    /// Whether an apply would change nothing.
    pub fn is_empty(&self) -> bool {
        self.objects
            .iter()
            .all(|o| matches!(o.action, DiffAction::Unchanged | DiffAction::NotManaged))
    }

    /// The entry of the object named `name` of `kind`.
    pub fn object(&self, kind: &str, name: &str) -> Option<&ObjectDiff> {
        self.objects
            .iter()
            .find(|o| o.object.kind == kind && o.object.name == name)
    }

    /// A readable text: one block per object that would change (`+` create, `~` update,
    /// `-` delete) with one line per field, then a summary line.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mut counts = [0usize; 7];
        for o in &self.objects {
            let i = match o.action {
                DiffAction::Create => 0,
                DiffAction::Update => 1,
                DiffAction::Delete => 2,
                DiffAction::Unchanged => 3,
                DiffAction::Adopt => 4,
                DiffAction::NotManaged => 5,
                DiffAction::Conflict => 6,
            };
            counts[i] += 1;
            if o.action != DiffAction::Unchanged {
                let _ = write!(s, "{o}");
            }
        }
        let _ = write!(
            s,
            "{} to create, {} to update, {} to delete, {} unchanged",
            counts[0], counts[1], counts[2], counts[3]
        );
        for (n, what) in counts[4..]
            .iter()
            .zip(["to adopt", "not managed", "in conflict"])
        {
            if *n > 0 {
                let _ = write!(s, ", {n} {what}");
            }
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn helm_values_show_key_by_key() {
        let live = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "t", "namespace": "argocd", "resourceVersion": "5", "labels": {"app.kubernetes.io/name": "t"}},
            "spec": {"source": {"helm": {"valuesObject": {"replicas": 1, "image": {"tag": "a"}}}}},
            "status": {"sync": {"status": "Synced"}}});
        let mut next = live.clone();
        next["spec"]["source"]["helm"]["valuesObject"]["replicas"] = json!(2);
        next["spec"]["source"]["helm"]["valuesObject"]["extra"] = json!({"x": true});
        next["metadata"]["labels"]["app.kubernetes.io/name"] = json!("u");
        next["metadata"]["resourceVersion"] = json!("6");
        let d = ObjectDiff::between(Some(&live), &next).unwrap();
        let paths: Vec<&str> = d.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.labels[\"app.kubernetes.io/name\"]",
                "spec.source.helm.valuesObject.extra.x",
                "spec.source.helm.valuesObject.replicas"
            ]
        );
        let text = Diff { objects: vec![d] }.to_text();
        assert!(
            text.contains("~ argoproj.io/v1alpha1 Application argocd/t\n"),
            "{text}"
        );
        assert!(
            text.contains("    spec.source.helm.valuesObject.replicas: 1 -> 2\n"),
            "{text}"
        );
        assert!(
            text.contains("    spec.source.helm.valuesObject.extra.x: (absent) -> true\n"),
            "{text}"
        );
        assert!(
            text.ends_with("0 to create, 1 to update, 0 to delete, 0 unchanged\n"),
            "{text}"
        );
    }

    #[test]
    fn creations_and_secrets() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "hunter2"}});
        let d = ObjectDiff::between(None, &s).unwrap();
        assert_eq!(d.action, DiffAction::Create);
        let text = d.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("stringData.password: \"<redacted>\""),
            "{text}"
        );
        let same = ObjectDiff::between(Some(&s), &s).unwrap();
        assert_eq!(same.action, DiffAction::Unchanged);
        assert!(
            Diff {
                objects: vec![same]
            }
            .is_empty()
        );
    }
}
