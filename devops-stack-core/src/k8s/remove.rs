//! Deleting a module's objects (prune and destroy): only what still carries the module's labels,
//! with preconditions, Applications first and waited for, namespaces and CRDs finishing in the
//! background.

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::KubeError;
use super::discovery::Resolved;
use super::object::{Class, ObjectRef};
use super::ownership::{self, Owner};
use super::retry::code;
use super::wait::{self, Waited};
use super::{Deployer, StuckApplications};
use crate::argocd::RESOURCES_FINALIZER;
use crate::error::{Error, Result};

/// A deletion still finishing: a namespace terminating, a CRD whose instances are being removed.
pub(crate) struct Pending {
    pub(crate) cluster: String,
    pub(crate) module: String,
    pub(crate) id: ObjectRef,
    pub(crate) api: Api<DynamicObject>,
}

/// What a destroy (or a prune) did. Objects are named `Kind namespace/name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DestroyReport {
    /// Objects deleted.
    pub deleted: Vec<String>,
    /// Objects the module recorded but that no longer carry its labels (relabelled by hand, or
    /// adopted by another stack since): left in place.
    pub left_alone: Vec<String>,
    /// Applications deleted without cascading under
    /// [`StuckApplications::OrphanAfter`](super::StuckApplications), each with what it had
    /// deployed, which stays.
    pub orphaned: Vec<String>,
    /// Why nothing was deleted: the cluster's API could not be reached during a destroy under
    /// [`AbandonInCluster`](crate::interfaces::AbandonInCluster), so its objects were abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<String>,
}

/// How deleting one object ended.
enum Removed {
    Deleted,
    Gone,
    LeftAlone,
}

impl Deployer {
    /// Deletes `targets`, objects the module recorded, with what is live of each.
    pub(crate) async fn remove(
        &self,
        targets: Vec<(ObjectRef, Resolved, Option<DynamicObject>)>,
        deadline: Instant,
    ) -> Result<DestroyReport> {
        let mut report = DestroyReport::default();
        let (mut apps, mut rest, mut last) = (Vec::new(), Vec::new(), Vec::new());
        for (id, r, live) in targets {
            let Some(live) = live else { continue };
            if ownership::owner(&live.metadata, &self.stack, &self.module) != Owner::This {
                self.progress(&format!(
                    "leaving {id} alone: it no longer carries the labels of module `{}`",
                    self.module
                ));
                report.left_alone.push(id.title());
                continue;
            }
            let api = self.resolver_api(&r, &id);
            match (id.is_application(), id.class()) {
                (true, _) => apps.push((id, api, live)),
                (false, Class::Namespace | Class::Crd) => last.push((id, api, live)),
                (false, Class::Other) => rest.push((id, api, live)),
            }
        }
        let n = self.options.max_in_flight.max(1);

        // Applications first, waited for: Argo CD must outlive them to delete what they deployed.
        let done: Vec<(ObjectRef, Removed, Option<String>)> = stream::iter(apps)
            .map(|(id, api, live)| async move {
                let (removed, orphaned) =
                    self.remove_application(&id, &api, live, deadline).await?;
                Ok::<_, Error>((id, removed, orphaned))
            })
            .buffer_unordered(n)
            .try_collect()
            .await?;
        for (id, removed, orphaned) in done {
            tally(&mut report, &id, &removed);
            report.orphaned.extend(orphaned);
        }

        // The rest in parallel; garbage collection finishes what they own.
        let done: Vec<(ObjectRef, Removed)> = stream::iter(rest)
            .map(|(id, api, live)| async move {
                let removed = self.delete_checked(&api, &id, live).await?;
                Ok::<_, Error>((id, removed))
            })
            .buffer_unordered(n)
            .try_collect()
            .await?;
        for (id, removed) in &done {
            tally(&mut report, id, removed);
        }

        // Namespaces and CRDs last; they may finish terminating in the background.
        let done: Vec<(ObjectRef, Api<DynamicObject>, Removed)> = stream::iter(last)
            .map(|(id, api, live)| async move {
                let removed = self.delete_checked(&api, &id, live).await?;
                Ok::<_, Error>((id, api, removed))
            })
            .buffer_unordered(n)
            .try_collect()
            .await?;
        let mut terminating = Vec::new();
        for (id, api, removed) in done {
            tally(&mut report, &id, &removed);
            if matches!(removed, Removed::Deleted) {
                terminating.push(Pending {
                    cluster: self.target.cluster.clone(),
                    module: self.module.clone(),
                    id,
                    api,
                });
            }
        }
        if self.options.wait && !terminating.is_empty() {
            match &self.run {
                Some(run) => run.tracker.defer(terminating),
                None => {
                    await_all_gone(
                        terminating,
                        deadline,
                        &self.cancel,
                        self.options.wait_timeout,
                    )
                    .await?
                }
            }
        }
        Ok(report)
    }

    /// Deletes `live` if it is still the module's, with a UID and resourceVersion precondition;
    /// when it changed in between, reads it again and checks again.
    async fn delete_checked(
        &self,
        api: &Api<DynamicObject>,
        id: &ObjectRef,
        mut live: DynamicObject,
    ) -> Result<Removed> {
        for _ in 0..5 {
            self.check_cancelled()?;
            if ownership::owner(&live.metadata, &self.stack, &self.module) != Owner::This {
                self.progress(&format!(
                    "leaving {id} alone: its labels changed while it was being deleted"
                ));
                return Ok(Removed::LeftAlone);
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: live.metadata.uid.clone(),
                    resource_version: live.metadata.resource_version.clone(),
                }),
                ..DeleteParams::background()
            };
            // `true`: a 409 here is a failed precondition, which retrying cannot fix.
            match self
                .retry
                .run(true, "deleting", || api.delete(&id.name, &dp))
                .await
            {
                Ok(_) => {
                    self.progress(&format!("deleted {id}"));
                    return Ok(Removed::Deleted);
                }
                Err(e) if code(&e) == Some(404) => return Ok(Removed::Gone),
                Err(e) if code(&e) == Some(409) => match self.get(api, id).await? {
                    Some(again) => live = again,
                    None => return Ok(Removed::Gone),
                },
                Err(e) => return Err(self.api_error(format!("deleting {id}"), e)),
            }
        }
        Err(KubeError::KeptChanging {
            object: id.to_string(),
            action: "it was being deleted".into(),
            fix: "run the destroy again".into(),
        }
        .into())
    }

    /// Deletes an Application with Argo CD's resources finalizer and waits until Argo CD has
    /// deleted what it deployed; under [`StuckApplications::OrphanAfter`], orphans it when Argo
    /// CD does not. Returns the orphan's description, if it was orphaned.
    async fn remove_application(
        &self,
        id: &ObjectRef,
        api: &Api<DynamicObject>,
        live: DynamicObject,
        deadline: Instant,
    ) -> Result<(Removed, Option<String>)> {
        let Some(live) = self.add_finalizer(api, id, live).await? else {
            return Ok((Removed::Gone, None));
        };
        match self.delete_checked(api, id, live).await? {
            Removed::Deleted => {}
            other => return Ok((other, None)),
        }
        if !self.options.wait {
            return Ok((Removed::Deleted, None));
        }
        self.progress(&format!("waiting for {id} and its resources to be deleted"));
        let orphan_after = match self.options.stuck_applications {
            StuckApplications::OrphanAfter(after) => Some(after),
            StuckApplications::Fail => None,
        };
        let first = orphan_after.map_or(deadline, |after| (Instant::now() + after).min(deadline));
        let last = match self.await_gone(api, id, first).await? {
            Waited::Met => return Ok((Removed::Deleted, None)),
            Waited::TimedOut(last) => last,
        };
        let Some(after) = orphan_after else {
            return Err(Error::from(KubeError::NotDeleted {
                object: id.to_string(),
                timeout: self.options.wait_timeout,
                last_status: wait::describe(last.as_deref()),
            }));
        };
        let deployed = deployed_resources(last.as_deref());
        self.progress(&format!(
            "orphaning {id}: Argo CD did not delete it within {after:?}; removing `{RESOURCES_FINALIZER}` and deleting it without cascading; what it deployed stays: {deployed}"
        ));
        self.remove_finalizer(api, id).await?;
        match self.await_gone(api, id, deadline).await? {
            Waited::Met => Ok((
                Removed::Deleted,
                Some(format!("{} (left in place: {deployed})", id.title())),
            )),
            Waited::TimedOut(last) => Err(Error::from(KubeError::NotDeleted {
                object: id.to_string(),
                timeout: self.options.wait_timeout,
                last_status: wait::describe(last.as_deref()),
            })),
        }
    }

    async fn await_gone(
        &self,
        api: &Api<DynamicObject>,
        id: &ObjectRef,
        deadline: Instant,
    ) -> Result<Waited> {
        wait::until(
            api.clone(),
            &id.name,
            deadline,
            &self.cancel,
            &self.module,
            |o| o.is_none(),
        )
        .await
        .map_err(|e| self.reach(e))
    }

    /// Makes sure a live Application carries Argo CD's resources finalizer, so that deleting
    /// it deletes what it deployed; returns it as it is then (`None`: gone). A read-modify-write
    /// with a `resourceVersion` precondition.
    async fn add_finalizer(
        &self,
        api: &Api<DynamicObject>,
        id: &ObjectRef,
        live: DynamicObject,
    ) -> Result<Option<DynamicObject>> {
        let has = |o: &DynamicObject| {
            o.metadata.deletion_timestamp.is_some()
                || o.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == RESOURCES_FINALIZER)
        };
        if has(&live) {
            return Ok(Some(live));
        }
        let op = || async {
            let Some(app) = api.get_opt(&id.name).await? else {
                return Ok(None);
            };
            if has(&app) {
                return Ok(Some(app));
            }
            let mut finalizers = app.metadata.finalizers.clone().unwrap_or_default();
            finalizers.push(RESOURCES_FINALIZER.to_owned());
            let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": app.metadata.resource_version}});
            api.patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(Some)
        };
        self.retry
            .run(false, "adding the resources finalizer", op)
            .await
            .map_err(|e| self.api_error(format!("adding the resources finalizer to {id}"), e))
    }

    /// Removes Argo CD's resources finalizer from an Application (read-modify-write with a
    /// `resourceVersion` precondition).
    async fn remove_finalizer(&self, api: &Api<DynamicObject>, id: &ObjectRef) -> Result<()> {
        let op = || async {
            let Some(app) = api.get_opt(&id.name).await? else {
                return Ok(());
            };
            let finalizers: Vec<String> = app
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != RESOURCES_FINALIZER)
                .collect();
            let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": app.metadata.resource_version}});
            api.patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        };
        self.retry
            .run(false, "removing the resources finalizer", op)
            .await
            .map_err(|e| self.api_error(format!("removing the resources finalizer of {id}"), e))
    }
}

fn tally(report: &mut DestroyReport, id: &ObjectRef, removed: &Removed) {
    match removed {
        Removed::Deleted => report.deleted.push(id.title()),
        Removed::LeftAlone => report.left_alone.push(id.title()),
        Removed::Gone => {}
    }
}

/// What an Application deployed, from its status, for the orphaning message.
fn deployed_resources(app: Option<&DynamicObject>) -> String {
    let resources: Vec<String> = app
        .and_then(|a| a.data["status"]["resources"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            match s("namespace").as_str() {
                "" => format!("{} {}", s("kind"), s("name")),
                ns => format!("{} {ns}/{}", s("kind"), s("name")),
            }
        })
        .collect();
    if resources.is_empty() {
        "whatever it deployed (its status lists no resources)".into()
    } else {
        resources.join(", ")
    }
}

/// Waits, all at once, until every pending object is gone; names what is still there at the
/// deadline (namespaces with what blocks their finalizers).
pub(crate) async fn await_all_gone(
    pending: Vec<Pending>,
    deadline: Instant,
    cancel: &CancellationToken,
    timeout: std::time::Duration,
) -> Result<()> {
    let waits = pending.into_iter().map(|p| async move {
        let waited = wait::until(
            p.api.clone(),
            &p.id.name,
            deadline,
            cancel,
            &p.module,
            |o| o.is_none(),
        )
        .await?;
        Ok::<_, Error>((p, waited))
    });
    let results = futures::future::try_join_all(waits).await?;
    let mut stuck = Vec::new();
    for (p, waited) in results {
        if let Waited::TimedOut(last) = waited {
            if p.id.class() == Class::Namespace {
                stuck.push((p.id.name.clone(), namespace_blockers(last.as_deref())));
            } else {
                return Err(Error::from(KubeError::NotDeleted {
                    object: p.id.to_string(),
                    timeout,
                    last_status: wait::describe(last.as_deref()),
                }));
            }
        }
    }
    if !stuck.is_empty() {
        return Err(Error::from(KubeError::NamespaceStuck {
            namespaces: stuck,
            timeout,
        }));
    }
    Ok(())
}

/// Why a namespace is still there: its finalizers and the conditions of its deletion.
fn namespace_blockers(last: Option<&DynamicObject>) -> String {
    let Some(ns) = last else { return "gone".into() };
    let finalizers = ns.data["spec"]["finalizers"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let conditions: Vec<String> = ns.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .map(|c| {
            format!(
                "{}: {}",
                c["type"].as_str().unwrap_or("?"),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "finalizers [{finalizers}]; {}",
        if conditions.is_empty() {
            "no conditions reported".into()
        } else {
            conditions.join("; ")
        }
    )
}
