//! Offline plans: what each module would create, as text, JSON and a Graphviz graph.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::secret::REDACTED;
use crate::step::Phase;

/// The placeholder for a value that is known only after apply (a cluster endpoint, a pool id).
///
/// ```
/// use devops_stack_core::plan::{unknown, is_unknown};
/// let endpoint = unknown("eks", "endpoint");
/// assert_eq!(endpoint, "(known after apply: eks.endpoint)");
/// assert!(is_unknown(&format!("https://{endpoint}/")));
/// ```
pub fn unknown(module: &str, field: &str) -> String {
    format!("(known after apply: {module}.{field})")
}

/// Whether `value` contains an [`unknown`] placeholder.
pub fn is_unknown(value: &str) -> bool {
    value.contains("(known after apply: ")
}

/// Something a module creates.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resource {
    /// A Kubernetes object (an Argo CD `Application`, a `Namespace`, a `Secret`...).
    Kubernetes {
        /// The cluster it goes to.
        cluster: String,
        /// The object, with `apiVersion`, `kind` and `metadata`. `Secret` data is redacted
        /// whenever the resource is serialized or printed.
        #[serde(serialize_with = "serialize_redacted")]
        object: Value,
    },
    /// A cloud resource (an EKS cluster, a Cognito user pool).
    Cloud {
        /// The provider (`aws`).
        provider: String,
        /// The resource type (`eks:Cluster`).
        kind: String,
        /// Its name.
        name: String,
        /// Its settings.
        properties: Value,
    },
}

impl Resource {
    /// A Kubernetes object for `cluster`.
    ///
    /// # Panics
    /// Never for the `k8s-openapi` and Argo CD types; a `Serialize` impl that fails is a bug.
    pub fn kubernetes(cluster: impl Into<String>, object: &impl Serialize) -> Self {
        Resource::Kubernetes {
            cluster: cluster.into(),
            object: serde_json::to_value(object).expect("Kubernetes objects serialize to JSON"),
        }
    }

    /// A cloud resource.
    pub fn cloud(
        provider: impl Into<String>,
        kind: impl Into<String>,
        name: impl Into<String>,
        properties: Value,
    ) -> Self {
        Resource::Cloud {
            provider: provider.into(),
            kind: kind.into(),
            name: name.into(),
            properties,
        }
    }

    /// The Kubernetes object, if this is one.
    pub fn as_kubernetes(&self) -> Option<&Value> {
        match self {
            Resource::Kubernetes { object, .. } => Some(object),
            Resource::Cloud { .. } => None,
        }
    }

    /// A one-line title: `argoproj.io/v1alpha1 Application argocd/traefik` or `aws eks:Cluster prod`.
    pub fn title(&self) -> String {
        match self {
            Resource::Kubernetes { object, .. } => {
                let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
                let meta = &object["metadata"];
                let name = match meta["namespace"].as_str() {
                    Some(ns) => format!("{ns}/{}", s(&meta["name"])),
                    None => s(&meta["name"]),
                };
                format!("{} {} {name}", s(&object["apiVersion"]), s(&object["kind"]))
            }
            Resource::Cloud {
                provider,
                kind,
                name,
                ..
            } => format!("{provider} {kind} {name}"),
        }
    }

    fn body(&self) -> Value {
        match self {
            Resource::Kubernetes { object, .. } => {
                let mut o = redact_secret(object);
                if let Some(map) = o.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                o
            }
            Resource::Cloud { properties, .. } => properties.clone(),
        }
    }
}

/// A copy of `object` with the values of a `Secret`'s `data` and `stringData` replaced by
/// [`REDACTED`]; other objects are returned unchanged.
pub fn redact_secret(object: &Value) -> Value {
    let mut o = object.clone();
    if o["kind"] == "Secret" {
        for key in ["data", "stringData"] {
            if let Some(map) = o.get_mut(key).and_then(Value::as_object_mut) {
                for v in map.values_mut() {
                    *v = Value::String(REDACTED.into());
                }
            }
        }
    }
    o
}

fn serialize_redacted<S: serde::Serializer>(object: &Value, s: S) -> Result<S::Ok, S::Error> {
    redact_secret(object).serialize(s)
}

/// One module's part of a [`Plan`].
#[derive(Debug, Clone, Serialize)]
pub struct ModulePlan {
    /// The module's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its phase.
    pub phase: Phase,
    /// The modules whose outputs it reads.
    pub needs: Vec<String>,
    /// Modules it runs after without reading them (phase and ordering edges).
    pub after: Vec<String>,
    /// What it would create.
    pub resources: Vec<Resource>,
    /// Its output as far as known offline; secrets redacted.
    pub output: Value,
}

/// What a whole stack would create, computed offline. Modules are in execution order.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The stack's name.
    pub stack: String,
    /// One entry per module, in a valid execution order.
    pub modules: Vec<ModulePlan>,
}

impl Plan {
    /// The number of resources in the plan.
    pub fn resource_count(&self) -> usize {
        self.modules.iter().map(|m| m.resources.len()).sum()
    }

    /// The plan of module `id`.
    pub fn module(&self, id: &str) -> Option<&ModulePlan> {
        self.modules.iter().find(|m| m.id == id)
    }

    /// The plan as pretty JSON (secrets redacted).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plans serialize to JSON")
    }

    /// The plan as readable text: each module with what it needs, each resource with its body
    /// as YAML, and its output.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan for stack `{}`: {} modules, {} resources",
            self.stack,
            self.modules.len(),
            self.resource_count()
        );
        for (i, m) in self.modules.iter().enumerate() {
            let phase = match m.phase {
                Phase::Bootstrap => ", bootstrap phase",
                Phase::Final => ", final phase",
                _ => "",
            };
            let _ = writeln!(out, "\n[{}] {} ({}{phase})", i + 1, m.id, m.kind);
            if !m.needs.is_empty() {
                let _ = writeln!(out, "    needs: {}", m.needs.join(", "));
            }
            if !m.after.is_empty() {
                let _ = writeln!(out, "    after: {}", m.after.join(", "));
            }
            for r in &m.resources {
                let _ = writeln!(out, "    + {}", r.title());
                push_yaml(&mut out, &r.body(), 8);
            }
            if !m.output.is_null() {
                let _ = writeln!(out, "    output:");
                push_yaml(&mut out, &m.output, 8);
            }
        }
        out
    }

    /// The dependency graph as Graphviz DOT: solid edges for data, dashed for ordering only.
    pub fn to_dot(&self) -> String {
        let mut out = format!(
            "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n",
            self.stack
        );
        for m in &self.modules {
            let style = match m.phase {
                Phase::Bootstrap => ", style=filled, fillcolor=\"#dbeafe\"",
                Phase::Final => ", style=filled, fillcolor=\"#dcfce7\"",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\\n({})\"{style}];",
                m.id, m.id, m.kind
            );
        }
        for m in &self.modules {
            for n in &m.needs {
                let _ = writeln!(out, "  \"{n}\" -> \"{}\";", m.id);
            }
            for n in &m.after {
                let _ = writeln!(out, "  \"{n}\" -> \"{}\" [style=dashed];", m.id);
            }
        }
        out.push_str("}\n");
        out
    }
}

fn push_yaml(out: &mut String, value: &Value, indent: usize) {
    let text = serde_yaml_ng::to_string(value).unwrap_or_else(|e| format!("<{e}>\n"));
    let pad = " ".repeat(indent);
    for line in text.lines() {
        let _ = writeln!(out, "{pad}{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_in_json_and_text() {
        let r = Resource::kubernetes(
            "c",
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}, "stringData": {"password": "hunter2"}}),
        );
        let plan = Plan {
            stack: "s".into(),
            modules: vec![ModulePlan {
                id: "m".into(),
                kind: "k".into(),
                phase: Phase::Main,
                needs: vec![],
                after: vec![],
                resources: vec![r.clone()],
                output: Value::Null,
            }],
        };
        assert!(!plan.to_json().contains("hunter2"));
        assert!(!plan.to_text().contains("hunter2"));
        assert!(plan.to_text().contains("v1 Secret n/s"));
        // the object itself keeps the value for the apply engine
        assert_eq!(
            r.as_kubernetes().unwrap()["stringData"]["password"],
            "hunter2"
        );
    }
}
