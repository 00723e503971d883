//! Multi-document YAML bundles as objects.

use super::*;

/// Parses a multi-document YAML bundle (an install manifest) into objects, skipping empty
/// documents and flattening `List` kinds.
///
/// # Errors
/// [`KubeError::InvalidObject`] naming the document that is not valid YAML or not an object.
pub fn parse_bundle(yaml: &str) -> Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| KubeError::InvalidObject {
            what: format!("YAML document #{}", i + 1),
            problem: format!("it is not valid YAML: {e}"),
            fix: "correct the manifest".into(),
        })?;
        match v {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(
                    m.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Value::Object(_) => out.push(v),
            other => {
                return Err(KubeError::InvalidObject {
                    what: format!("YAML document #{}", i + 1),
                    problem: format!("it is not a Kubernetes object but {other}"),
                    fix: "each document must be one object (or a `List`)".into(),
                }
                .into());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_bundles() {
        let objs = parse_bundle("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["kind"], "ConfigMap");
        let e = parse_bundle("apiVersion: v1\n---\n- 1\n").unwrap_err();
        let Some(KubeError::InvalidObject { what, problem, .. }) = e.kubernetes() else {
            panic!("{e:?}")
        };
        assert_eq!(what, "YAML document #2");
        assert!(problem.contains("not a Kubernetes object"), "{problem}");
        let e = parse_bundle("a: [\n").unwrap_err();
        assert!(
            matches!(e.kubernetes(), Some(KubeError::InvalidObject { what, .. }) if what == "YAML document #1"),
            "{e}"
        );
    }
}
