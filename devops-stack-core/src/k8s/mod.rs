//! The Kubernetes engine: server-side apply with ownership labels and inventories, prune, waits,
//! diffs and destroy. Modules that deploy to a cluster render objects and hand them to a
//! [`Deployer`].
//!
//! # What an apply does
//!
//! 1. Every object gets the [ownership labels](ownership_labels) and the hash of its rendered
//!    content in the [`HASH_ANNOTATION`].
//! 2. Objects are ordered: CustomResourceDefinitions first (then waited for until `Established`,
//!    and discovery is run again for their groups), then Namespaces, then the rest in the order
//!    given. API discovery maps each `apiVersion`/`kind` to its resource and scope.
//! 3. Each object is read; one whose live hash annotation equals its rendered hash is left alone,
//!    so an apply with unchanged inputs makes **no write request**, and an apply that died
//!    half-way resumes where it stopped. Others are written by server-side apply with
//!    [`KubeOptions::field_manager`]; a field-manager conflict is an [`Error::FieldConflict`]
//!    unless [`KubeOptions::force_conflicts`].
//! 4. The module's inventory is kept in the stack's state ConfigMap (see [`ModuleState`]):
//!    before the first write it is widened with the new objects (so that a crash leaves nothing
//!    untracked), and at the end it is set to what was applied, with each object's hash. Objects
//!    of the previous inventory that are no longer rendered are deleted (pruned).
//! 5. Deployments (`Available`) and Argo CD Applications (`Synced` and `Healthy`) are waited for
//!    through watches, up to [`KubeOptions::wait_timeout`], unless [`KubeOptions::wait`] is false.
//!
//! Transient faults are retried (see [`Retry`]); a run's [`StackLock`] keeps two runs of a stack
//! from writing at once.
//!
//! Because unchanged objects are recognised by their hash annotation, a field changed in the
//! cluster by hand is not reverted by a re-apply with the same inputs; [`Deployer::diff`] shows
//! such drift, and any change of the rendered object re-applies it whole.
//!
//! ```no_run
//! use devops_stack_core::k8s::{Deployer, KubeOptions, parse_bundle};
//! # async fn run(client: kube::Client) -> devops_stack_core::Result<()> {
//! let deployer = Deployer::new(client, "prod", "cert-manager", KubeOptions::default());
//! let objects = parse_bundle("apiVersion: v1\nkind: Namespace\nmetadata: {name: cert-manager}\n")?;
//! println!("{}", deployer.diff(objects.clone()).await?.to_text());
//! let report = deployer.apply(objects).await?;
//! assert!(report.pruned.is_empty());
//! # Ok(())
//! # }
//! ```

mod diff;
mod discovery;
mod lock;
mod object;
mod retry;
mod stack_diff;
mod state;
mod wait;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use diff::{Diff, DiffAction, FieldChange, ObjectDiff};
pub use lock::{LockBuilder, StackLock, lock_name};
pub use object::{HASH_ANNOTATION, ObjectRef, content_hash};
pub use retry::Retry;
pub use stack_diff::{ModuleDiff, NotCompared, StackDiff, diff_stack};
pub use state::{InventoryEntry, ModuleState, state_name};

use crate::argocd::RESOURCES_FINALIZER;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::interfaces::ClusterRef;
use discovery::{Resolved, Resolver};
use object::{Class, Desired, live_hash};
use retry::code;
use state::StateStore;
use wait::{Readiness, Waited};

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
    /// How long to wait for objects to become ready (default 10 minutes). Also bounds a
    /// destroy's waits for deletions.
    pub wait_timeout: Duration,
    /// Whether to wait for readiness at all (default true). CRDs are waited for regardless,
    /// since the objects after them need them.
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
    retry: Retry,
    lock: Option<StackLock>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer")
            .field("stack", &self.stack)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl Deployer {
    /// A deployer for the running module of `ctx` on `cluster`, with the run's [`KubeOptions`],
    /// its [`StackLock`] (if the caller put one in the run's extensions) and its cancellation.
    ///
    /// # Errors
    /// When the cluster's client cannot be made.
    pub async fn for_module(ctx: &Context, cluster: &ClusterRef) -> Result<Deployer> {
        let client = cluster.client().await.map_err(|e| {
            Error::Kubernetes(format!(
                "cannot connect to cluster `{}`: {e}",
                cluster.name()
            ))
        })?;
        let mut d = Deployer::new(
            client,
            ctx.stack_name(),
            ctx.module_id(),
            ctx.extension::<KubeOptions>().cloned().unwrap_or_default(),
        )
        .cancellation(ctx.cancellation().clone());
        d.lock = ctx
            .extension::<StackLock>()
            .filter(|l| l.stack() == ctx.stack_name())
            .cloned();
        Ok(d)
    }

    /// A deployer for `module` of `stack` with `client`, outside a stack run (tools, tests).
    pub fn new(
        client: kube::Client,
        stack: impl Into<String>,
        module: impl Into<String>,
        options: KubeOptions,
    ) -> Deployer {
        Deployer {
            client,
            stack: stack.into(),
            module: module.into(),
            options,
            retry: Retry::default(),
            lock: None,
            cancel: CancellationToken::new(),
        }
    }

    /// How transient API faults are retried.
    #[must_use]
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Writes only while `lock` is held (instead of checking that nobody else holds the lock).
    #[must_use]
    pub fn lock(mut self, lock: StackLock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Stops waits and applies when `token` fires.
    #[must_use]
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The ownership labels every object of this module gets.
    pub fn labels(&self) -> BTreeMap<String, String> {
        ownership_labels(&self.stack, &self.module)
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn store(&self) -> StateStore {
        StateStore {
            client: self.client.clone(),
            namespace: self.options.state_namespace.clone(),
            stack: self.stack.clone(),
            module: self.module.clone(),
            manager: format!("{}/{}", self.options.field_manager, self.module),
            retry: self.retry,
        }
    }

    /// Before writing: the run's lock is still ours, or nobody else's lock is live.
    async fn guard(&self) -> Result<()> {
        match &self.lock {
            Some(lock) => lock.ensure_held(),
            None => {
                lock::check_unlocked(
                    &self.client,
                    &self.options.state_namespace,
                    &self.stack,
                    &self.retry,
                )
                .await
            }
        }
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled {
                module: self.module.clone(),
            });
        }
        Ok(())
    }

    fn render(&self, objects: Vec<Value>) -> Result<Vec<Desired>> {
        let labels = self.labels();
        let mut desired = objects
            .into_iter()
            .map(|o| Desired::new(o, &labels))
            .collect::<Result<Vec<_>>>()?;
        desired.sort_by_key(|d| d.id.class());
        Ok(desired)
    }

    /// What the state records for this module (`None` when it has applied nothing).
    ///
    /// # Errors
    /// API errors, and an entry that is not valid.
    pub async fn recorded(&self) -> Result<Option<ModuleState>> {
        self.store().read().await
    }

    /// Records the module's non-secret output in the state (no write when it is unchanged).
    /// Secrets in it must be [`Secret`](crate::Secret)s, which serialize redacted.
    ///
    /// # Errors
    /// API and serialization errors.
    pub async fn save_output(&self, output: &impl serde::Serialize) -> Result<()> {
        let value = serde_json::to_value(output).map_err(|source| Error::Serialize {
            what: format!("the output of module `{}`", self.module),
            source,
        })?;
        let store = self.store();
        let mut entry = store.read().await?.unwrap_or_default();
        if entry.output.as_ref() == Some(&value) {
            return Ok(());
        }
        self.guard().await?;
        entry.output = Some(value);
        store.write(Some(&entry)).await
    }

    /// Applies `objects` (server-side apply, CRDs first and waited for), waits for readiness,
    /// records the module's inventory and prunes what it no longer renders. See the [module
    /// documentation](self) for the steps.
    ///
    /// # Errors
    /// API errors, [`Error::FieldConflict`], [`Error::UnknownKind`], [`Error::NotReady`] naming
    /// the object, [`Error::LockHeld`], and [`Error::Cancelled`].
    pub async fn apply(&self, objects: Vec<Value>) -> Result<ApplyReport> {
        self.guard().await?;
        let desired = self.render(objects)?;
        let store = self.store();
        let previous = store.read().await?.unwrap_or_default();
        let mut run = Run {
            d: self,
            resolver: Resolver::new(self.client.clone(), self.retry),
            store,
            previous,
            widened: false,
            applied: Vec::new(),
            report: ApplyReport::default(),
            deadline: Instant::now() + self.options.wait_timeout,
        };
        let crds = desired.partition_point(|d| d.id.class() == Class::Crd);
        for d in &desired[..crds] {
            run.put(d, &desired).await?;
        }
        run.wait_crds(&desired[..crds]).await?;
        for d in &desired[crds..] {
            run.put(d, &desired).await?;
        }
        run.prune().await?;
        let entry = ModuleState {
            objects: run.applied.iter().map(|(e, _)| e.clone()).collect(),
            output: run.previous.output.clone(),
        };
        if entry != run.previous {
            run.store.write(Some(&entry)).await?;
        }
        if self.options.wait {
            run.wait_ready().await?;
        }
        Ok(run.report)
    }

    /// What [`Deployer::apply`] would change, object by object and field by field, from a
    /// server-side dry-run apply (`dryRun=All`) of each existing object; objects that do not
    /// exist are shown whole, and objects that would be pruned are listed. Secret values are
    /// redacted. Writes nothing.
    ///
    /// # Errors
    /// API errors and [`Error::FieldConflict`].
    pub async fn diff(&self, objects: Vec<Value>) -> Result<Diff> {
        let desired = self.render(objects)?;
        let previous = self.store().read().await?.unwrap_or_default();
        let mut resolver = Resolver::new(self.client.clone(), self.retry);
        let mut out = Diff::default();
        let mut seen = HashSet::new();
        for d in &desired {
            let Some(r) = resolver.lookup(&d.id).await? else {
                // Its CRD is not installed yet (it may be in this bundle): it would be created.
                out.objects.push(ObjectDiff::between(None, &d.body)?);
                continue;
            };
            let id = resolver.scoped(&r, &d.id);
            let body = scoped_body(d, &id);
            let api = resolver.api(&r, &id);
            let live = self.get(&api, &id).await?;
            let entry = match live {
                None => ObjectDiff::between(None, &body)?,
                Some(live) => {
                    let mut params = PatchParams::apply(&self.options.field_manager).dry_run();
                    params.force = self.options.force_conflicts;
                    let patch = Patch::Apply(&body);
                    let after = self
                        .retry
                        .run(true, "dry-run apply", || {
                            api.patch(&id.name, &params, &patch)
                        })
                        .await
                        .map_err(|e| apply_error(e, &id, "dry-run applying"))?;
                    ObjectDiff::between(Some(&to_json(&live)?), &to_json(&after)?)?
                }
            };
            seen.insert(id);
            out.objects.push(entry);
        }
        for e in &previous.objects {
            let Some(r) = resolver.lookup(&e.object).await? else {
                continue;
            };
            let id = resolver.scoped(&r, &e.object);
            if !seen.contains(&id) && self.get(&resolver.api(&r, &id), &id).await?.is_some() {
                seen.insert(id.clone());
                out.objects.push(ObjectDiff {
                    object: id,
                    action: DiffAction::Delete,
                    changes: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    /// Deletes every object of the module's inventory in reverse apply order, Argo CD
    /// Applications with their resources finalizer (waited for until gone), then waits for
    /// deleted namespaces; all within [`KubeOptions::wait_timeout`]. Then removes the module's
    /// entry from the state. Objects already gone are fine, so it is safe to run again.
    ///
    /// # Errors
    /// API errors, [`Error::NotDeleted`] for an Application that stays,
    /// [`Error::NamespaceStuck`] naming namespaces stuck in finalizers, [`Error::LockHeld`].
    pub async fn destroy(&self) -> Result<()> {
        self.guard().await?;
        let store = self.store();
        let Some(previous) = store.read().await? else {
            return Ok(());
        };
        let mut resolver = Resolver::new(self.client.clone(), self.retry);
        let mut doomed = Vec::new();
        for e in &previous.objects {
            // A kind no longer served took its objects with it.
            if let Some(r) = resolver.lookup(&e.object).await? {
                let id = resolver.scoped(&r, &e.object);
                if !doomed.iter().any(|(d, _)| d == &id) {
                    doomed.push((id, r));
                }
            }
        }
        let deadline = Instant::now() + self.options.wait_timeout;
        self.delete_all(&resolver, &doomed, deadline).await?;
        store.write(None).await
    }

    async fn get(&self, api: &Api<DynamicObject>, id: &ObjectRef) -> Result<Option<DynamicObject>> {
        self.retry
            .run(false, "reading", || api.get_opt(&id.name))
            .await
            .map_err(|e| Error::kube(format!("reading {id}"), e))
    }

    /// Deletes `objects` last first. Applications get the resources finalizer and are waited
    /// for until gone; namespaces are waited for at the end. Returns the objects that existed.
    async fn delete_all(
        &self,
        resolver: &Resolver,
        objects: &[(ObjectRef, Resolved)],
        deadline: Instant,
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        let mut namespaces = Vec::new();
        for (id, r) in objects.iter().rev() {
            self.check_cancelled()?;
            let api = resolver.api(r, id);
            if id.is_application() {
                self.add_finalizer(&api, id).await?;
            }
            let dp = DeleteParams::background();
            let gone = self
                .retry
                .run(false, "deleting", || api.delete(&id.name, &dp))
                .await;
            match gone {
                Ok(_) => deleted.push(id.title()),
                Err(e) if code(&e) == Some(404) => continue,
                Err(e) => return Err(Error::kube(format!("deleting {id}"), e)),
            }
            if !self.options.wait {
                continue;
            }
            if id.is_application() {
                self.progress(&format!("waiting for {id} and its resources to be deleted"));
                if let Waited::TimedOut(last) = self.await_gone(api, &id.name, deadline).await? {
                    return Err(Error::NotDeleted {
                        object: id.to_string(),
                        timeout: self.options.wait_timeout,
                        last_status: wait::describe(last.as_deref()),
                    });
                }
            } else if id.class() == Class::Namespace {
                namespaces.push((id, api));
            }
        }
        let mut stuck = Vec::new();
        for (id, api) in namespaces {
            if let Waited::TimedOut(last) = self.await_gone(api, &id.name, deadline).await? {
                stuck.push((id.name.clone(), namespace_blockers(last.as_deref())));
            }
        }
        if !stuck.is_empty() {
            return Err(Error::NamespaceStuck {
                namespaces: stuck,
                timeout: self.options.wait_timeout,
            });
        }
        Ok(deleted)
    }

    async fn await_gone(
        &self,
        api: Api<DynamicObject>,
        name: &str,
        deadline: Instant,
    ) -> Result<Waited> {
        wait::until(api, name, deadline, &self.cancel, &self.module, |o| {
            o.is_none()
        })
        .await
    }

    /// Makes sure a live Application carries Argo CD's resources finalizer, so that deleting
    /// it deletes what it deployed. A read-modify-write with a `resourceVersion` precondition.
    async fn add_finalizer(&self, api: &Api<DynamicObject>, id: &ObjectRef) -> Result<()> {
        let op = || async {
            let Some(app) = api.get_opt(&id.name).await? else {
                return Ok(());
            };
            let mut finalizers = app.metadata.finalizers.clone().unwrap_or_default();
            if app.metadata.deletion_timestamp.is_some()
                || finalizers.iter().any(|f| f == RESOURCES_FINALIZER)
            {
                return Ok(());
            }
            finalizers.push(RESOURCES_FINALIZER.to_owned());
            let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": app.metadata.resource_version}});
            api.patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        };
        self.retry
            .run(false, "adding the resources finalizer", op)
            .await
            .map_err(|e| Error::kube(format!("adding the resources finalizer to {id}"), e))
    }

    fn progress(&self, message: &str) {
        tracing::info!(stack = %self.stack, module = %self.module, "{message}");
    }
}

/// One apply in progress.
struct Run<'a> {
    d: &'a Deployer,
    resolver: Resolver,
    store: StateStore,
    previous: ModuleState,
    /// Whether the inventory was widened with the new objects before the first write.
    widened: bool,
    applied: Vec<(InventoryEntry, Resolved)>,
    report: ApplyReport,
    deadline: Instant,
}

impl Run<'_> {
    /// Applies one object unless its live hash already matches.
    async fn put(&mut self, d: &Desired, all: &[Desired]) -> Result<()> {
        self.d.check_cancelled()?;
        let r = self.resolver.resolve(&d.id).await?;
        let id = self.resolver.scoped(&r, &d.id);
        if self.applied.iter().any(|(e, _)| e.object == id) {
            return Err(Error::Kubernetes(format!(
                "{id} is rendered twice; fix: render each object once"
            )));
        }
        let api = self.resolver.api(&r, &id);
        let live = self.d.get(&api, &id).await?;
        if live.as_ref().and_then(|l| live_hash(&l.metadata)) == Some(d.hash.as_str()) {
            self.report.unchanged.push(id.title());
        } else {
            self.widen(all).await?;
            let o = &self.d.options;
            let mut params = PatchParams::apply(&o.field_manager);
            params.force = o.force_conflicts;
            let body = scoped_body(d, &id);
            let patch = Patch::Apply(&body);
            self.d
                .retry
                .run(true, "applying", || api.patch(&id.name, &params, &patch))
                .await
                .map_err(|e| apply_error(e, &id, "applying"))?;
            self.d.progress(&format!("applied {id}"));
            self.report.changed.push(id.title());
        }
        self.applied.push((
            InventoryEntry {
                object: id,
                hash: Some(d.hash.clone()),
            },
            r,
        ));
        Ok(())
    }

    /// Before the first write, records the new objects in the inventory (without hashes), so
    /// that a crash in the middle leaves no object the state does not know of.
    async fn widen(&mut self, all: &[Desired]) -> Result<()> {
        if self.widened {
            return Ok(());
        }
        self.widened = true;
        let mut entry = self.previous.clone();
        for d in all {
            if !entry.objects.iter().any(|e| e.object == d.id) {
                entry.objects.push(InventoryEntry {
                    object: d.id.clone(),
                    hash: None,
                });
            }
        }
        if entry != self.previous {
            self.store.write(Some(&entry)).await?;
        }
        Ok(())
    }

    /// Waits for the CRDs until `Established`, then forgets their groups' discovery.
    async fn wait_crds(&mut self, crds: &[Desired]) -> Result<()> {
        for d in crds {
            let (entry, r) = self
                .applied
                .iter()
                .find(|(e, _)| e.object.name == d.id.name && e.object.class() == Class::Crd)
                .expect("CRDs are applied first");
            self.await_ready(&entry.object, r, Readiness::Crd).await?;
            if let Some(group) = d.body["spec"]["group"].as_str() {
                self.resolver.forget_group(group);
            }
        }
        Ok(())
    }

    /// Deletes what the previous inventory has and this apply did not render.
    async fn prune(&mut self) -> Result<()> {
        let keep: HashSet<&ObjectRef> = self.applied.iter().map(|(e, _)| &e.object).collect();
        let mut doomed = Vec::new();
        for e in &self.previous.objects {
            let Some(r) = self.resolver.lookup(&e.object).await? else {
                continue;
            };
            let id = self.resolver.scoped(&r, &e.object);
            if !keep.contains(&id) && !doomed.iter().any(|(d, _)| d == &id) {
                doomed.push((id, r));
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let deadline = self.deadline;
        self.report.pruned = self.d.delete_all(&self.resolver, &doomed, deadline).await?;
        Ok(())
    }

    /// Watches `id` until it is ready, or fails naming it with the last status seen.
    async fn await_ready(&self, id: &ObjectRef, r: &Resolved, readiness: Readiness) -> Result<()> {
        let api = self.resolver.api(r, id);
        let ready = |o: Option<&DynamicObject>| o.is_some_and(|o| readiness.is_ready(o));
        match wait::until(
            api,
            &id.name,
            self.deadline,
            &self.d.cancel,
            &self.d.module,
            ready,
        )
        .await?
        {
            Waited::Met => Ok(()),
            Waited::TimedOut(last) => Err(Error::NotReady {
                object: id.to_string(),
                timeout: self.d.options.wait_timeout,
                last_status: wait::describe(last.as_deref()),
            }),
        }
    }

    /// Waits for Deployments and Applications to be ready.
    async fn wait_ready(&self) -> Result<()> {
        for (e, r) in &self.applied {
            let Some(readiness @ (Readiness::Deployment | Readiness::Application)) =
                Readiness::of(&e.object)
            else {
                continue;
            };
            self.d
                .progress(&format!("waiting for {} to be ready", e.object));
            self.await_ready(&e.object, r, readiness).await?;
        }
        Ok(())
    }
}

/// The rendered body with its namespace set to match its kind's scope.
fn scoped_body(d: &Desired, id: &ObjectRef) -> Value {
    let mut body = d.body.clone();
    let meta = &mut body["metadata"];
    match &id.namespace {
        Some(ns) => meta["namespace"] = Value::String(ns.clone()),
        None => {
            if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    body
}

fn to_json(o: &DynamicObject) -> Result<Value> {
    serde_json::to_value(o).map_err(|source| Error::Serialize {
        what: "a live object".into(),
        source,
    })
}

/// Turns a 409 of a server-side apply into [`Error::FieldConflict`] naming the other managers.
fn apply_error(e: kube::Error, id: &ObjectRef, action: &str) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 409 => {
            let mut text = s.message.clone();
            for c in s.details.iter().flat_map(|d| &d.causes) {
                text.push('\n');
                text.push_str(&c.message);
            }
            let mut managers: Vec<String> = text
                .split("with \"")
                .skip(1)
                .filter_map(|rest| rest.split_once('"').map(|(m, _)| m.to_owned()))
                .collect();
            managers.sort();
            managers.dedup();
            Error::FieldConflict {
                object: id.to_string(),
                managers,
                detail: s.message.clone(),
            }
        }
        _ => Error::kube(format!("{action} {id}"), e),
    }
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

/// Installs `ring` as rustls's process-wide crypto provider unless one is installed already.
///
/// kube's TLS asks rustls for the process default; when another crate of the build (the AWS SDK)
/// enables a second provider, rustls cannot choose one itself and building a client panics. Call
/// this before building a `kube::Client` from a `kube::Config`; the clusters of this crate and of
/// `devops-stack-aws` do.
pub fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only when another thread installed one in between, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The ownership labels of `module` in `stack`.
pub fn ownership_labels(stack: &str, module: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (STACK_LABEL.to_owned(), stack.to_owned()),
        (MODULE_LABEL.to_owned(), module.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "devops-stack".to_owned(),
        ),
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
        let v = Value::deserialize(doc)
            .map_err(|e| Error::Kubernetes(format!("YAML document #{} is invalid: {e}", i + 1)))?;
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
        assert!(
            parse_bundle("- 1\n")
                .unwrap_err()
                .to_string()
                .contains("#1")
        );
    }
}
