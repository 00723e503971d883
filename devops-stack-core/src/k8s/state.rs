//! The stack's state: one ConfigMap per stack in the state namespace, one data key per module.
//!
//! Each module writes only its own key, by server-side apply with a field manager of its own
//! (`<field_manager>/<module>`), so modules that run in parallel never overwrite each other and
//! no read-modify-write race exists. Removing a module's key is an apply without it.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::STACK_LABEL;
use super::object::ObjectRef;
use super::retry::{Retry, code};
use crate::error::{Error, Result};

/// One applied object in a module's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// The hash of its rendered content when applied; `None` while it is being applied (the
    /// entry is recorded before the object is written, so that a crash leaves nothing untracked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// What the state records for one module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModuleState {
    /// The objects the module applied, in apply order.
    #[serde(default)]
    pub objects: Vec<InventoryEntry>,
    /// The module's non-secret output, if it saved one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// The name of the state ConfigMap of `stack`.
pub fn state_name(stack: &str) -> String {
    format!("devops-stack-state-{stack}")
}

pub(crate) struct StateStore {
    pub(crate) client: kube::Client,
    pub(crate) namespace: String,
    pub(crate) stack: String,
    pub(crate) module: String,
    pub(crate) manager: String,
    pub(crate) retry: Retry,
}

impl StateStore {
    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn what(&self) -> String {
        format!(
            "state ConfigMap {}/{}",
            self.namespace,
            state_name(&self.stack)
        )
    }

    /// The module's entry, `None` when it has none.
    pub(crate) async fn read(&self) -> Result<Option<ModuleState>> {
        let api = self.api();
        let name = state_name(&self.stack);
        let cm = self
            .retry
            .run(false, "reading state", || api.get_opt(&name))
            .await
            .map_err(|e| Error::kube(format!("reading {}", self.what()), e))?;
        let Some(text) = cm
            .and_then(|c| c.data)
            .and_then(|mut d| d.remove(&self.module))
        else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Kubernetes(format!(
                "{} has an invalid entry `{}`: {e}; fix: delete that key and apply again",
                self.what(),
                self.module
            ))
        })
    }

    /// Records the module's entry (`None` removes it; the ConfigMap goes with its last entry).
    pub(crate) async fn write(&self, entry: Option<&ModuleState>) -> Result<()> {
        let mut body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": state_name(&self.stack), "namespace": self.namespace, "labels": {STACK_LABEL: self.stack}},
        });
        if let Some(e) = entry {
            let text = serde_json::to_string(e).map_err(|source| Error::Serialize {
                what: self.what(),
                source,
            })?;
            body["data"] = json!({ &self.module: text });
        }
        let api = self.api();
        let name = state_name(&self.stack);
        let params = PatchParams::apply(&self.manager).force();
        let patch = Patch::Apply(&body);
        let apply = || api.patch(&name, &params, &patch);
        let written = match self.retry.run(true, "writing state", apply).await {
            Err(e) if code(&e) == Some(404) => {
                self.create_namespace().await?;
                self.retry.run(true, "writing state", apply).await
            }
            other => other,
        }
        .map_err(|e| Error::kube(format!("writing {}", self.what()), e))?;
        if entry.is_none() && written.data.as_ref().is_none_or(|d| d.is_empty()) {
            // The last module is gone: remove the ConfigMap, unless another module wrote to it
            // since (then the resourceVersion precondition fails, which is fine).
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: written.metadata.resource_version.clone(),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match self
                .retry
                .run(true, "deleting state", || api.delete(&name, &dp))
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(Error::kube(format!("deleting {}", self.what()), e)),
            }
        }
        Ok(())
    }

    async fn create_namespace(&self) -> Result<()> {
        ensure_namespace(&self.client, &self.namespace, &self.manager, &self.retry).await
    }
}

/// Applies the namespace that holds the stack's state and lock.
pub(crate) async fn ensure_namespace(
    client: &kube::Client,
    name: &str,
    manager: &str,
    retry: &Retry,
) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    // Not labelled: stacks may share the namespace.
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let (params, patch) = (PatchParams::apply(manager), Patch::Apply(&body));
    retry
        .run(true, "creating the state namespace", || {
            api.patch(name, &params, &patch)
        })
        .await
        .map(drop)
        .map_err(|e| {
            Error::kube(
                format!("creating namespace {name} for the stack's state"),
                e,
            )
        })
}
