//! The Kubernetes engine: server-side apply with ownership labels and inventories, prune, waits,
//! diffs and destroy. Modules that deploy to a cluster render objects and hand them to a
//! [`Deployer`].
//!
//! CONTRACT (kept stable for the modules crate; the bodies are being implemented):

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::interfaces::ClusterRef;

/// The label naming the stack that owns an object.
pub const STACK_LABEL: &str = "devops-stack.io/stack";
/// The label naming the module that owns an object.
pub const MODULE_LABEL: &str = "devops-stack.io/module";

/// Engine settings for a run, passed with [`RunOptions::extension`](crate::RunOptions::extension).
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The server-side apply field manager (default `devops-stack`).
    pub field_manager: String,
    /// Take over fields another manager owns instead of reporting the conflict (default false).
    pub force_conflicts: bool,
    /// How long to wait for objects to become ready (default 10 minutes).
    pub wait_timeout: Duration,
    /// Whether to wait for readiness at all (default true).
    pub wait: bool,
    /// The namespace of the stack's state and lock (default `devops-stack-system`).
    pub state_namespace: String,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            field_manager: "devops-stack".into(),
            force_conflicts: false,
            wait_timeout: Duration::from_secs(600),
            wait: true,
            state_namespace: "devops-stack-system".into(),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// Objects created or changed, as `Kind namespace/name`.
    pub changed: Vec<String>,
    /// Objects already as rendered (no write request made).
    pub unchanged: Vec<String>,
    /// Objects deleted because the module no longer renders them.
    pub pruned: Vec<String>,
}

/// Applies, diffs and destroys one module's objects on one cluster.
pub struct Deployer {
    client: kube::Client,
    stack: String,
    module: String,
    options: KubeOptions,
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer").field("stack", &self.stack).field("module", &self.module).finish_non_exhaustive()
    }
}

impl Deployer {
    /// A deployer for the running module of `ctx` on `cluster`, with the run's [`KubeOptions`].
    ///
    /// # Errors
    /// When the cluster's client cannot be made.
    pub async fn for_module(ctx: &Context, cluster: &ClusterRef) -> Result<Deployer> {
        let client = cluster
            .client()
            .await
            .map_err(|e| Error::Kubernetes(format!("cannot connect to cluster `{}`: {e}", cluster.name())))?;
        Ok(Deployer {
            client,
            stack: ctx.stack_name().to_owned(),
            module: ctx.module_id().to_owned(),
            options: ctx.extension::<KubeOptions>().cloned().unwrap_or_default(),
        })
    }

    /// The ownership labels every object of this module gets.
    pub fn labels(&self) -> BTreeMap<String, String> {
        ownership_labels(&self.stack, &self.module)
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Applies `objects` (server-side apply, CRDs first and waited for), waits for readiness,
    /// records the module's inventory and prunes what it no longer renders.
    ///
    /// # Errors
    /// API errors, field-manager conflicts, and readiness timeouts naming the object.
    pub async fn apply(&self, objects: Vec<Value>) -> Result<ApplyReport> {
        let _ = (objects, &self.options, &self.client);
        Err(Error::Kubernetes("the apply engine is not implemented yet".into()))
    }

    /// Deletes every object of the module's inventory, Argo CD Applications with their resources
    /// finalizer, and waits until they are gone. Safe to run again.
    ///
    /// # Errors
    /// API errors, and namespaces stuck in finalizers, by name.
    pub async fn destroy(&self) -> Result<()> {
        Err(Error::Kubernetes("the destroy engine is not implemented yet".into()))
    }
}

/// The ownership labels of `module` in `stack`.
pub fn ownership_labels(stack: &str, module: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (STACK_LABEL.to_owned(), stack.to_owned()),
        (MODULE_LABEL.to_owned(), module.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "devops-stack".to_owned()),
    ])
}

/// Parses a multi-document YAML bundle (an install manifest) into objects, skipping empty
/// documents and flattening `List` kinds.
///
/// # Errors
/// [`Error::Kubernetes`] naming the document that is not valid YAML or not an object.
pub fn parse_bundle(yaml: &str) -> Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| Error::Kubernetes(format!("YAML document #{} is invalid: {e}", i + 1)))?;
        match v {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(m.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
            }
            Value::Object(_) => out.push(v),
            other => {
                return Err(Error::Kubernetes(format!(
                    "YAML document #{} is not a Kubernetes object but {other}",
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod bundle_tests {
    use super::*;

    #[test]
    fn parses_multi_document_bundles() {
        let objs = parse_bundle("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["kind"], "ConfigMap");
        assert!(parse_bundle("- 1\n").unwrap_err().to_string().contains("#1"));
    }
}
