//! The stack's state: one ConfigMap per stack in the state namespace, one data key per module.
//!
//! Each module writes only its own key, by server-side apply with a field manager of its own
//! (`<field_manager>/<module>`), so modules that run in parallel never overwrite each other and
//! no read-modify-write race exists. Removing a module's key is an apply without it.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::KubeError;
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
    /// The fingerprint of the fields the engine's field manager owned on the object right after
    /// it applied it (see the [engine's documentation](super)); a different live fingerprint
    /// means another manager changed a managed field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
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
    /// The modules this module read when it last applied, so that once the stack no longer has
    /// it, it is destroyed before what it depended on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
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
        let Some(mut data) =
            read_data(&self.client, &self.namespace, &self.stack, &self.retry).await?
        else {
            return Ok(None);
        };
        let Some(text) = data.remove(&self.module) else {
            return Ok(None);
        };
        parse_entry(&self.namespace, &self.stack, &self.module, &text).map(Some)
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

/// The data of `stack`'s state ConfigMap (`None` when there is none). A ConfigMap of that name
/// without the stack's label is someone else's: an error, never read nor written.
async fn read_data(
    client: &kube::Client,
    namespace: &str,
    stack: &str,
    retry: &Retry,
) -> Result<Option<std::collections::BTreeMap<String, String>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = state_name(stack);
    let cm = retry
        .run(false, "reading state", || api.get_opt(&name))
        .await
        .map_err(|e| Error::kube(format!("reading state ConfigMap {namespace}/{name}"), e))?;
    let Some(cm) = cm else { return Ok(None) };
    let label = cm.metadata.labels.as_ref().and_then(|l| l.get(STACK_LABEL));
    if label.map(String::as_str) != Some(stack) {
        return Err(KubeError::State {
            config_map: format!("{namespace}/{name}"),
            problem: format!(
                "exists but is not the state of stack `{stack}` (its `{STACK_LABEL}` label is {})",
                label.map_or_else(|| "missing".to_owned(), |l| format!("`{l}`"))
            ),
            fix: "rename or remove that ConfigMap, or keep the state in another namespace with `KubeOptions::state_namespace`".into(),
            source: None,
        }
        .into());
    }
    Ok(Some(cm.data.unwrap_or_default()))
}

fn parse_entry(namespace: &str, stack: &str, module: &str, text: &str) -> Result<ModuleState> {
    serde_json::from_str(text).map_err(|e| {
        KubeError::State {
            config_map: format!("{namespace}/{}", state_name(stack)),
            problem: format!("the entry `{module}` is invalid"),
            fix: "delete that key and apply again".into(),
            source: Some(e),
        }
        .into()
    })
}

/// What the state of `stack` in `options.state_namespace` records, module by module (sorted by
/// module id); empty when the stack has no state there.
///
/// # Errors
/// API errors; an entry that does not parse.
pub async fn read_state(
    client: &kube::Client,
    stack: &str,
    options: &super::KubeOptions,
) -> Result<Vec<(String, ModuleState)>> {
    let mut all = read_all(client, &options.state_namespace, stack, &Retry::default()).await?;
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

/// Every module entry of `stack`'s state, by module id.
pub(crate) async fn read_all(
    client: &kube::Client,
    namespace: &str,
    stack: &str,
    retry: &Retry,
) -> Result<Vec<(String, ModuleState)>> {
    let data = read_data(client, namespace, stack, retry)
        .await?
        .unwrap_or_default();
    data.into_iter()
        .map(|(module, text)| {
            let entry = parse_entry(namespace, stack, &module, &text)?;
            Ok((module, entry))
        })
        .collect()
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
