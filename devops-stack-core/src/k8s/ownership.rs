//! Who owns a live object, explicit adoption, and the conflicts that stop an apply before it
//! writes anything.
//!
//! An object belongs to a module of a stack when it carries both [ownership
//! labels](super::ownership_labels) with their names. The engine writes only objects that do not
//! exist yet or belong to the module applying them, and deletes only objects that still belong
//! to it at the moment of deletion. Anything else is a conflict, unless the user adopts it with an
//! [`Adopt`] rule, or it is a Namespace: a namespace that exists and is not the module's own is
//! used as it is, never labelled, recorded nor deleted.

use kube::api::ObjectMeta;
use serde::Serialize;

pub use super::conflict::OwnershipConflict;
use super::object::ObjectRef;
use super::{MODULE_LABEL, STACK_LABEL, fields};

/// An explicit decision to take over objects that exist and are not the module's own (created
/// by hand, by another tool, or by another stack). Adopted objects get the module's labels, are
/// recorded in its inventory, are applied with `force` (taking over the fields the module
/// renders), and are deleted when the module is destroyed. `diff` shows them as "adopt".
///
/// ```
/// use devops_stack_core::k8s::{Adopt, KubeOptions};
/// let options = KubeOptions::default()
///     .adopt(Adopt::object("loki", "v1", "Namespace", None, "loki"))
///     .adopt(Adopt::module("legacy-ingress"));
/// assert_eq!(options.adopt.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "adopt", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Adopt {
    /// Every object module `module` renders.
    Module {
        /// The module's id.
        module: String,
    },
    /// One object of module `module`. The `apiVersion`'s version is not compared, so a rule
    /// keeps matching across API versions of the same group.
    Object {
        /// The module's id.
        module: String,
        /// The object.
        object: ObjectRef,
    },
}

impl Adopt {
    /// Adopt every object `module` renders.
    pub fn module(module: impl Into<String>) -> Adopt {
        Adopt::Module {
            module: module.into(),
        }
    }

    /// Adopt one object of `module`: `apiVersion`, `kind`, namespace (`None` for cluster-scoped
    /// kinds) and name.
    pub fn object(
        module: impl Into<String>,
        api_version: impl Into<String>,
        kind: impl Into<String>,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Adopt {
        Adopt::Object {
            module: module.into(),
            object: ObjectRef {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: namespace.map(str::to_owned),
                name: name.into(),
            },
        }
    }

    /// Whether this rule adopts `id` for `module`.
    pub(crate) fn covers(&self, module: &str, id: &ObjectRef) -> bool {
        match self {
            Adopt::Module { module: m } => m == module,
            Adopt::Object { module: m, object } => {
                m == module
                    && object.group() == id.group()
                    && object.kind == id.kind
                    && object.name == id.name
                    && object.namespace == id.namespace
            }
        }
    }
}

/// Who owns a live object, as far as this module is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// It carries this stack's and this module's labels.
    This,
    /// Anything else: no ownership labels, or another stack's or module's.
    Other,
}

/// Reads the ownership labels of `meta`.
pub(crate) fn owner(meta: &ObjectMeta, stack: &str, module: &str) -> Owner {
    let label = |k: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    if label(STACK_LABEL) == Some(stack) && label(MODULE_LABEL) == Some(module) {
        Owner::This
    } else {
        Owner::Other
    }
}

impl OwnershipConflict {
    pub(crate) fn new(id: &ObjectRef, meta: &ObjectMeta) -> OwnershipConflict {
        let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
        let owner = match (label(STACK_LABEL), label(MODULE_LABEL)) {
            (Some(s), Some(m)) => format!("owned by stack `{s}`, module `{m}`"),
            (Some(s), None) => format!("labelled for stack `{s}`"),
            (None, Some(m)) => format!("labelled for module `{m}` of no stack"),
            (None, None) => "not created by devops-stack (no ownership labels)".to_owned(),
        };
        OwnershipConflict {
            object: id.to_string(),
            owner,
            managers: fields::managers(meta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn only_both_labels_make_an_object_the_modules_own() {
        let ours = meta(&[(STACK_LABEL, "sa"), (MODULE_LABEL, "loki")]);
        assert_eq!(owner(&ours, "sa", "loki"), Owner::This);
        assert_eq!(owner(&ours, "sb", "loki"), Owner::Other);
        assert_eq!(owner(&ours, "sa", "traefik"), Owner::Other);
        assert_eq!(owner(&meta(&[]), "sa", "loki"), Owner::Other);
        assert_eq!(owner(&ObjectMeta::default(), "sa", "loki"), Owner::Other);
        let id = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "loki".into(),
        };
        let c = OwnershipConflict::new(&id, &ours);
        assert_eq!(
            c.to_string(),
            "v1 Namespace loki: owned by stack `sa`, module `loki`"
        );
        assert!(
            OwnershipConflict::new(&id, &meta(&[]))
                .owner
                .contains("no ownership labels")
        );
    }

    #[test]
    fn adoption_rules_match_group_kind_namespace_and_name() {
        let id = ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("web".into()),
            name: "api".into(),
        };
        assert!(
            Adopt::object("m", "apps/v1beta1", "Deployment", Some("web"), "api").covers("m", &id)
        );
        assert!(!Adopt::object("m", "apps/v1", "Deployment", Some("web"), "api").covers("n", &id));
        assert!(!Adopt::object("m", "apps/v1", "Deployment", None, "api").covers("m", &id));
        assert!(!Adopt::object("m", "v1", "Deployment", Some("web"), "api").covers("m", &id));
        assert!(Adopt::module("m").covers("m", &id));
        assert!(!Adopt::module("m").covers("mm", &id));
    }
}
