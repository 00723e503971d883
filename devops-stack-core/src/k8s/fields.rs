//! Field ownership, from `managedFields`: the fingerprint of the engine's own entry (how drift
//! is recognised without comparing whole objects) and who owns a field (how a diff names the
//! manager that changed it).
//!
//! When another manager changes a field the engine applied (`kubectl edit`, a merge patch,
//! another tool's forced apply), the API server moves that field's ownership to the other
//! manager: it leaves the engine's `Apply` entry. So while the engine's entry is exactly as it was
//! after the engine's last apply, and the rendered content is the same, every field the engine
//! manages still has the value the engine gave it. Fields other managers own never enter the
//! engine's entry, so their changes (Argo CD writing `status`, a controller's defaults, other
//! tools' labels) are not drift.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::ObjectMeta;
use serde_json::{Value, json};

use super::object::content_hash;

/// The fingerprint of what `manager` owns on the object through `Apply`; `None` when it owns
/// nothing there.
pub(crate) fn fingerprint(meta: &ObjectMeta, manager: &str) -> Option<String> {
    let entry = applied_entry(meta.managed_fields.as_deref()?, manager)?;
    let fields = entry.fields_v1.as_ref().map(|f| &f.0);
    let mut hash = content_hash(&json!({"apiVersion": entry.api_version, "fields": fields}));
    hash.truncate(16);
    Some(hash)
}

fn applied_entry<'a>(
    entries: &'a [ManagedFieldsEntry],
    manager: &str,
) -> Option<&'a ManagedFieldsEntry> {
    entries.iter().find(|e| {
        e.manager.as_deref() == Some(manager)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().unwrap_or("").is_empty()
    })
}

/// One step of a diff path (see [`FieldChange::path`](super::FieldChange::path)).
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(std::borrow::Cow<'a, str>),
    Index,
}

/// Splits `spec.ports[0].port` and `metadata.labels["a/b"]` into steps.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("[\"") {
            // A quoted key is JSON-escaped; it ends at the first `"]` not escaped.
            let mut end = None;
            let bytes = r.as_bytes();
            let mut i = 0;
            while i + 1 < bytes.len() {
                if bytes[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if bytes[i] == b'"' && bytes[i + 1] == b']' {
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let Some(end) = end else { break };
            let key = serde_json::from_str::<String>(&format!("\"{}\"", &r[..end]))
                .map_or_else(|_| r[..end].into(), Into::into);
            out.push(Step::Key(key));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            out.push(Step::Index);
            rest = r.split_once(']').map_or("", |(_, after)| after);
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Step::Key(rest[..end].into()));
            rest = &rest[end..];
        }
    }
    out
}

/// Whether `fields` (a `fieldsV1` tree) covers `steps`: the field itself, something inside it,
/// or (past a list, whose items the path names by index) anything in that list.
fn covers(fields: &Value, steps: &[Step<'_>]) -> bool {
    match steps.split_first() {
        None => true,
        Some((Step::Index, _)) => fields.as_object().is_some_and(|m| !m.is_empty()),
        Some((Step::Key(k), rest)) => fields
            .get(format!("f:{k}"))
            .is_some_and(|inner| covers(inner, rest)),
    }
}

/// The managers owning the field at `path` (a diff path), other than `except`.
pub(crate) fn owners(meta: &ObjectMeta, path: &str, except: &str) -> Vec<String> {
    let steps = steps(path);
    let mut out: Vec<String> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() != Some(except))
        .filter(|e| e.fields_v1.as_ref().is_some_and(|f| covers(&f.0, &steps)))
        .filter_map(|e| e.manager.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every manager with an entry on the object, for conflict reports.
pub(crate) fn managers(meta: &ObjectMeta) -> Vec<String> {
    let mut out: Vec<String> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|e| {
            let m = e.manager.clone()?;
            Some(match e.operation.as_deref() {
                Some(op) => format!("{m} ({op})"),
                None => m,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;

    fn entry(manager: &str, op: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    #[test]
    fn the_fingerprint_follows_the_engines_apply_entry_only() {
        let ours = json!({"f:spec": {"f:source": {"f:targetRevision": {}, "f:chart": {}}}});
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![
                entry("devops-stack", "Apply", ours.clone()),
                entry(
                    "argocd-application-controller",
                    "Update",
                    json!({"f:status": {}}),
                ),
            ]),
            ..Default::default()
        };
        let before = fingerprint(&meta, "devops-stack").unwrap();
        // Another manager's entry changes: not drift.
        meta.managed_fields.as_mut().unwrap()[1] = entry(
            "argocd-application-controller",
            "Update",
            json!({"f:status": {"f:sync": {}}}),
        );
        assert_eq!(fingerprint(&meta, "devops-stack").unwrap(), before);
        // A hand edit takes `targetRevision` away from the engine: drift.
        meta.managed_fields.as_mut().unwrap()[0] = entry(
            "devops-stack",
            "Apply",
            json!({"f:spec": {"f:source": {"f:chart": {}}}}),
        );
        assert_ne!(fingerprint(&meta, "devops-stack").unwrap(), before);
        assert_eq!(fingerprint(&meta, "someone-else"), None);
        assert_eq!(fingerprint(&ObjectMeta::default(), "devops-stack"), None);
    }

    #[test]
    fn owners_of_diff_paths() {
        let meta = ObjectMeta {
            managed_fields: Some(vec![
                entry(
                    "devops-stack",
                    "Apply",
                    json!({"f:spec": {"f:source": {"f:chart": {}}}}),
                ),
                entry(
                    "kubectl-edit",
                    "Update",
                    json!({"f:spec": {"f:source": {"f:targetRevision": {}}}, "f:metadata": {"f:labels": {"f:team/a.b": {}}}}),
                ),
                entry(
                    "helm",
                    "Update",
                    json!({"f:spec": {"f:ports": {"k:{\"port\":80}": {}}}}),
                ),
            ]),
            ..Default::default()
        };
        assert_eq!(
            owners(&meta, "spec.source.targetRevision", "devops-stack"),
            ["kubectl-edit"]
        );
        assert_eq!(
            owners(&meta, "metadata.labels[\"team/a.b\"]", "devops-stack"),
            ["kubectl-edit"]
        );
        assert_eq!(
            owners(&meta, "spec.ports[0].port", "devops-stack"),
            ["helm"]
        );
        assert!(owners(&meta, "spec.source.chart", "devops-stack").is_empty());
        assert_eq!(
            managers(&meta),
            [
                "devops-stack (Apply)",
                "helm (Update)",
                "kubectl-edit (Update)"
            ]
        );
        assert_eq!(
            steps("a.b[\"x.y\\\"z\"][3].c"),
            [
                Step::Key("a".into()),
                Step::Key("b".into()),
                Step::Key("x.y\"z".into()),
                Step::Index,
                Step::Key("c".into())
            ]
        );
    }
}
