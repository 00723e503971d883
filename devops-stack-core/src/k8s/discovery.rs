//! Maps `apiVersion`/`kind` to API resources through API discovery, one request per group
//! version, cached for the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersion;
use kube::discovery::{self, ApiResource, Scope};

use super::KubeError;
use super::object::ObjectRef;
use super::retry::{Retry, code};
use crate::error::{Error, Result};

/// A resolved kind: its API resource and whether it is namespaced.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) resource: ApiResource,
    pub(crate) namespaced: bool,
}

/// The resources of each group version discovered so far, by `apiVersion`.
type Groups = HashMap<String, Vec<(ApiResource, bool)>>;

/// Discovery results shared by the modules of a run on one cluster.
pub(crate) type SharedDiscovery = Arc<Mutex<Groups>>;

/// Discovery results per group version, cached for the module's step and, within a stack run,
/// shared with the run's other modules on the same cluster. Missing group versions are not
/// cached, and a kind missing from a cached group version is looked up again, so that a kind
/// whose CRD was just established is found.
pub(crate) struct Resolver {
    client: kube::Client,
    retry: Retry,
    groups: Groups,
    shared: Option<SharedDiscovery>,
}

impl Resolver {
    pub(crate) fn new(client: kube::Client, retry: Retry) -> Self {
        Resolver {
            client,
            retry,
            groups: HashMap::new(),
            shared: None,
        }
    }

    /// Shares what is discovered with (and takes what was discovered from) `shared`.
    pub(crate) fn shared(mut self, shared: Option<SharedDiscovery>) -> Self {
        if let Some(shared) = &shared {
            self.groups = shared.lock().expect("not poisoned").clone();
        }
        self.shared = shared;
        self
    }

    /// Forgets the group versions of `group`, after CRDs of that group changed.
    pub(crate) fn forget_group(&mut self, group: &str) {
        let other = |gv: &String| gv.rsplit_once('/').map_or("", |(g, _)| g) != group;
        self.groups.retain(|gv, _| other(gv));
        if let Some(shared) = &self.shared {
            shared
                .lock()
                .expect("not poisoned")
                .retain(|gv, _| other(gv));
        }
    }

    /// The resource of `id`'s kind, or `None` when the cluster does not serve it.
    pub(crate) async fn lookup(&mut self, id: &ObjectRef) -> Result<Option<Resolved>> {
        if let Some(found) = self.cached(id) {
            return Ok(Some(found));
        }
        // Not cached, or a kind the cached group version did not have yet: ask again.
        self.groups.remove(&id.api_version);
        if !self.groups.contains_key(&id.api_version) {
            let gv: GroupVersion =
                id.api_version
                    .parse()
                    .map_err(|e| KubeError::InvalidObject {
                        what: id.to_string(),
                        problem: format!("invalid apiVersion: {e}"),
                        fix: "write `apiVersion` as `group/version` (or `v1`)".into(),
                    })?;
            let found = self
                .retry
                .run(false, "API discovery", || {
                    discovery::pinned_group(&self.client, &gv)
                })
                .await;
            match found {
                Ok(g) => {
                    let rs = g
                        .versioned_resources(&gv.version)
                        .into_iter()
                        .map(|(ar, caps)| (ar, caps.scope == Scope::Namespaced))
                        .collect::<Vec<_>>();
                    if let Some(shared) = &self.shared {
                        shared
                            .lock()
                            .expect("not poisoned")
                            .insert(id.api_version.clone(), rs.clone());
                    }
                    self.groups.insert(id.api_version.clone(), rs);
                }
                Err(e) if code(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(Error::kube(format!("discovering {}", id.api_version), e)),
            }
        }
        Ok(self.cached(id))
    }

    fn cached(&self, id: &ObjectRef) -> Option<Resolved> {
        self.groups
            .get(&id.api_version)?
            .iter()
            .find(|(ar, _)| ar.kind == id.kind)
            .map(|(ar, namespaced)| Resolved {
                resource: ar.clone(),
                namespaced: *namespaced,
            })
    }

    /// Like [`Resolver::lookup`], with an unserved kind as an error naming the object.
    pub(crate) async fn resolve(&mut self, id: &ObjectRef) -> Result<Resolved> {
        self.lookup(id).await?.ok_or_else(|| {
            Error::from(KubeError::UnknownKind {
                object: id.to_string(),
                api_version: id.api_version.clone(),
                kind: id.kind.clone(),
            })
        })
    }

    /// The dynamic API of `id`, namespaced when its kind is (in the client's default namespace
    /// when the object names none).
    pub(crate) fn api(&self, r: &Resolved, id: &ObjectRef) -> Api<DynamicObject> {
        api_for(&self.client, r, id)
    }

    /// `id` with its namespace made to match the kind's scope.
    pub(crate) fn scoped(&self, r: &Resolved, id: &ObjectRef) -> ObjectRef {
        let mut id = id.clone();
        id.namespace = if r.namespaced {
            Some(
                id.namespace
                    .unwrap_or_else(|| self.client.default_namespace().to_owned()),
            )
        } else {
            None
        };
        id
    }
}

/// The dynamic API of `id` with `client`, namespaced when its kind is (in the client's default
/// namespace when the object names none).
pub(crate) fn api_for(client: &kube::Client, r: &Resolved, id: &ObjectRef) -> Api<DynamicObject> {
    if r.namespaced {
        let ns = id
            .namespace
            .as_deref()
            .unwrap_or(client.default_namespace());
        Api::namespaced_with(client.clone(), ns, &r.resource)
    } else {
        Api::all_with(client.clone(), &r.resource)
    }
}
