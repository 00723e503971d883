//! The Kubernetes engine: server-side apply with ownership, drift repair, prune, waits, diffs
//! and destroy. Modules that deploy to a cluster render objects and hand them to a [`Deployer`].
//!
//! # What an apply does
//!
//! 1. Every object gets the [ownership labels](ownership_labels) of its stack and module, and the
//!    hash of its rendered content in the [`HASH_ANNOTATION`].
//! 2. **Survey, before any write.** API discovery maps each `apiVersion`/`kind` to its resource
//!    (a kind whose CRD is in the same bundle is known to be absent). What is live is read with
//!    one LIST per kind and namespace (a GET where there is a single object, and for CRDs),
//!    [`KubeOptions::max_in_flight`] requests at a time, together with the objects the module's
//!    inventory recorded last time.
//! 3. **Ownership.** An object that exists and does not carry this stack's and this module's
//!    labels is not taken over: the apply fails with [`KubeError::NotOwned`] naming each such object
//!    and its owner, **before anything is written**, unless an [`Adopt`] rule in
//!    [`KubeOptions::adopt`] covers it. A Namespace that exists and is not the module's is used as
//!    it is: not labelled, not recorded, never deleted.
//! 4. **Convergence.** An object of the module is left alone (no request at all) only when its
//!    rendered content is what the module applied last time *and* the module's field manager
//!    still owns exactly the fields it owned after that apply (the fingerprint of its
//!    `managedFields` entry, kept in the inventory). A hand edit of a managed field moves that
//!    field to the editor's manager, so it is seen, and the object is re-applied with `force`,
//!    which takes back exactly the fields of the module's applied configuration: all of them were
//!    the module's after its last apply of the same content. Fields other managers own (Argo CD's
//!    `status`, controllers' defaults, other tools' labels) are never part of that entry. A
//!    changed object is applied without `force`: a field another manager owns is an
//!    [`KubeError::FieldConflict`] unless [`KubeOptions::force_conflicts`].
//! 5. Writes go CRDs first (then waited for until `Established`, after which their kinds are
//!    discovered again), then Namespaces, then the rest, each group in parallel with at most
//!    [`KubeOptions::max_in_flight`] requests in flight.
//! 6. The module's inventory is kept in the stack's state ConfigMap (see [`ModuleState`]):
//!    before the first write it is widened with the new objects (so that a crash leaves nothing
//!    untracked), and at the end it is set to what was applied, with each object's hash and field
//!    fingerprint. Objects of the previous inventory that are no longer rendered are deleted
//!    (pruned) if they still carry the module's labels; one relabelled since is left alone and
//!    named in [`ApplyReport::left_alone`]. An unchanged re-apply writes nothing at all.
//! 7. Deployments (`Available`) and Argo CD Applications (`Synced` and `Healthy`) are waited for
//!    through watches, up to [`KubeOptions::wait_timeout`], unless [`KubeOptions::wait`] is false.
//!
//! Deletions (prune, destroy) re-check ownership on what was just read and delete with a UID
//! and resourceVersion precondition, so an object changed in between is read again and checked
//! again. Applications get Argo CD's resources finalizer, so that Argo CD deletes what they
//! deployed, and are waited for (Argo CD must outlive them); namespaces and CRDs finish
//! terminating in the background while the stack's destroy goes on, and the run waits for them
//! at its end (or before its cluster is deleted, see [`settle`]).
//!
//! A refused connection, a name that does not resolve or a TLS failure is not retried: it fails
//! at once with [`KubeError::Unreachable`], which names the cluster, its server, the kubeconfig file
//! and context, the cause in plain words ([`UnreachableCause`]) and its fix. 429, 5xx and
//! connection resets are retried (see [`Retry`]); a run's [`StackLock`] keeps two runs of a stack
//! from writing at once.
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

mod bundle;
pub(crate) mod cause;
pub(crate) mod conflict;
mod deploy_apply;
mod deploy_destroy;
mod deploy_diff;
mod deploy_survey;
mod deploy_wait;
mod diff;
mod discovery;
pub(crate) mod error;
mod fields;
mod live;
mod lock;
mod object;
mod options;
mod ownership;
mod reach;
mod remove;
mod retry;
mod run;
mod stack_diff;
mod state;
mod wait;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use bundle::parse_bundle;
pub use cause::UnreachableCause;
pub use diff::{Diff, DiffAction, FieldChange, ObjectDiff};
pub use error::{ApplicationRefusal, Error as KubeError};
pub use lock::{LockBuilder, StackLock, lock_name};
pub use object::{HASH_ANNOTATION, ObjectRef, content_hash};
pub use options::{KubeOptions, RemovedModules, StuckApplications};
pub use ownership::{Adopt, OwnershipConflict};
pub use reach::unreachable_cause;
pub use remove::DestroyReport;
pub use retry::Retry;
pub(crate) use run::RunTracker;
pub use run::settle;
pub use run::{KubeEngine, KubeRun};
pub use stack_diff::{ModuleDiff, NotCompared, StackDiff, diff_stack, preflight_stack};
pub use state::{InventoryEntry, ModuleState, read_state, state_name};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::interfaces::{AbandonInCluster, ClusterRef};
use deploy_apply::{apply_error, scoped_body, secret_values_live, with_live_unknowns};
use deploy_survey::{Action, Item, Survey};
use discovery::{Resolved, Resolver};
use live::{Depth, LiveObjects};
use object::{Class, Desired, live_hash};
use ownership::Owner;
use reach::Target;
use retry::code;
use state::StateStore;
use wait::{Readiness, Waited};

/// The label naming the stack that owns an object.
pub const STACK_LABEL: &str = "devops-stack.io/stack";
/// The label naming the module that owns an object.
pub const MODULE_LABEL: &str = "devops-stack.io/module";

/// What an apply did. Objects are named `Kind namespace/name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// Objects created or changed (a write request each), adopted and reverted ones included.
    pub changed: Vec<String>,
    /// Objects already as rendered and managed (no request made).
    pub unchanged: Vec<String>,
    /// Objects of the module whose managed fields had been changed by another manager, and were
    /// put back.
    pub reverted: Vec<String>,
    /// Existing objects taken over through an [`Adopt`] rule.
    pub adopted: Vec<String>,
    /// Namespaces that existed and are not the module's: used, not managed.
    pub not_managed: Vec<String>,
    /// Objects deleted because the module no longer renders them.
    pub pruned: Vec<String>,
    /// Objects the module no longer renders and no longer owns (their labels changed since it
    /// applied them): left in place.
    pub left_alone: Vec<String>,
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
    /// The cluster's name and server, for errors.
    target: Target,
    /// The run this deployer is part of, when it was made for a module of a stack run.
    run: Option<RunLink>,
    /// Why the cluster's objects are abandoned (a destroy under [`AbandonInCluster`] of a
    /// cluster whose API cannot be reached).
    abandoned: Option<String>,
}

/// A deployer's link to its stack run.
struct RunLink {
    /// The module's context (`None` for the engine's own work at the end of a run).
    ctx: Option<Context>,
    tracker: RunTracker,
    /// The modules of the stack this module reads.
    needs: Vec<String>,
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer")
            .field("stack", &self.stack)
            .field("module", &self.module)
            .field("cluster", &self.target.cluster)
            .finish_non_exhaustive()
    }
}

impl Deployer {
    /// A deployer for the running module of `ctx` on `cluster`, with the run's [`KubeOptions`],
    /// its [`StackLock`] (both from the run's [`KubeEngine`]) and its cancellation.
    /// Progress (the object being waited for) is reported as the module's progress events.
    ///
    /// # Errors
    /// When the cluster's client cannot be made.
    pub async fn for_module(ctx: &Context, cluster: &ClusterRef) -> Result<Deployer> {
        Self::for_named_module(ctx, cluster, ctx.module_id()).await
    }

    /// [`for_module`](Deployer::for_module) for another module's objects, in the running
    /// module's run: the state's `module` entry (a module the stack no longer has, which the
    /// running module removes on purpose, as a fleet removes a spoke that left it).
    ///
    /// # Errors
    /// When the cluster's client cannot be made.
    pub async fn for_named_module(
        ctx: &Context,
        cluster: &ClusterRef,
        module: &str,
    ) -> Result<Deployer> {
        install_tls_provider();
        let destroying = ctx.step() == crate::Step::Destroy;
        let abandon = destroying && ctx.abandon_in_cluster();
        let (client, abandoned) = match cluster.client().await {
            Ok(client) => (client, None),
            Err(e) if abandon => (
                closed_client(),
                Some(format!(
                    "cannot connect to cluster `{}`: {e}",
                    cluster.name()
                )),
            ),
            Err(source) => {
                return Err(KubeError::Client {
                    cluster: cluster.name().to_owned(),
                    hint: destroying.then(|| AbandonInCluster::HINT.to_owned()),
                    source,
                }
                .into());
            }
        };
        let engine = ctx.engine::<KubeRun>();
        let mut d = Deployer::new(client, ctx.stack_name(), module, engine.options.clone())
            .cancellation(ctx.cancellation().clone());
        d.lock = engine.lock_for(ctx.stack_name()).cloned();
        d.target = Target::of(&**cluster);
        d.abandoned = abandoned;
        if d.abandoned.is_none() {
            engine
                .tracker
                .register(cluster.name(), &d.client, &d.target.server);
        }
        d.run = Some(RunLink {
            ctx: Some(ctx.clone()),
            tracker: engine.tracker.clone(),
            needs: ctx.dependencies(),
        });
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
            target: Target::named("(unnamed)", None),
            run: None,
            abandoned: None,
        }
    }

    /// Why this deployer abandons its cluster's objects, when it does: a destroy under
    /// [`AbandonInCluster`] whose cluster cannot be reached. Its client then answers nothing.
    pub fn abandoned(&self) -> Option<&str> {
        self.abandoned.as_deref()
    }

    /// Whether an error means the cluster's API cannot be reached and the run abandons its
    /// objects.
    fn abandons(&self, e: &Error) -> bool {
        matches!(e.kubernetes(), Some(KubeError::Unreachable { .. }))
            && self
                .run
                .as_ref()
                .and_then(|r| r.ctx.as_ref())
                .is_some_and(|ctx| ctx.step() == crate::Step::Destroy && ctx.abandon_in_cluster())
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

    /// Names the cluster (and its server URL) in errors, for a deployer made with
    /// [`Deployer::new`].
    #[must_use]
    pub fn cluster(mut self, name: impl Into<String>, server: impl Into<String>) -> Self {
        self.target = Target::named(name, Some(server.into()));
        self
    }

    /// Links a deployer the engine makes itself during a run (a removed module's) to the run.
    pub(crate) fn in_run(mut self, tracker: &RunTracker, cluster: &str) -> Self {
        self.target.cluster = cluster.to_owned();
        self.run = Some(RunLink {
            ctx: None,
            tracker: tracker.clone(),
            needs: Vec::new(),
        });
        self
    }

    /// A resolver of kinds, sharing discovery with the run's other modules on this cluster.
    fn resolver(&self) -> Resolver {
        let shared = self
            .run
            .as_ref()
            .map(|r| r.tracker.discovery(&self.target.cluster));
        Resolver::new(self.client.clone(), self.retry).shared(shared)
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

    /// Turns a Kubernetes error that says the API server cannot be reached into
    /// [`KubeError::Unreachable`](crate::k8s::KubeError::Unreachable), naming this deployer's cluster, server and kubeconfig.
    fn reach(&self, e: Error) -> Error {
        match e {
            Error::Kubernetes(k) => match *k {
                KubeError::Api { action, source } => match unreachable_cause(&source) {
                    Some(cause) => self.target.unreachable(cause, source),
                    None => KubeError::Api { action, source }.into(),
                },
                k => Error::Kubernetes(Box::new(k)),
            },
            e => e,
        }
    }

    /// A Kubernetes client error while doing `action`.
    fn api_error(&self, action: impl Into<String>, e: kube::Error) -> Error {
        self.reach(Error::kube(action, e))
    }

    /// Before writing: the run's lock is still ours, or nobody else's lock is live.
    async fn guard(&self) -> Result<()> {
        match &self.lock {
            Some(lock) => lock.ensure_held(),
            None => lock::check_unlocked(
                &self.client,
                &self.options.state_namespace,
                &self.stack,
                &self.retry,
            )
            .await
            .map_err(|e| self.reach(e)),
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
        self.store().read().await.map_err(|e| self.reach(e))
    }

    /// Drops the module's entry from the state without deleting its objects (the state's
    /// ConfigMap goes with its last entry): for objects whose deletion the caller makes itself
    /// (credentials that the deletion revokes).
    ///
    /// # Errors
    /// API errors.
    pub async fn forget(&self) -> Result<()> {
        self.guard().await?;
        self.store().write(None).await.map_err(|e| self.reach(e))
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
        let mut entry = store
            .read()
            .await
            .map_err(|e| self.reach(e))?
            .unwrap_or_default();
        if entry.output.as_ref() == Some(&value) {
            return Ok(());
        }
        self.guard().await?;
        entry.output = Some(value);
        store.write(Some(&entry)).await
    }

    /// The objects among `objects` that exist and are not this module's, and that no
    /// [`Adopt`] rule covers: what [`Deployer::apply`] would refuse. Reads only (one LIST per
    /// kind and namespace).
    ///
    /// # Errors
    /// API errors, [`KubeError::Unreachable`], and [`KubeError::UnknownKind`].
    pub async fn conflicts(&self, objects: Vec<Value>) -> Result<Vec<OwnershipConflict>> {
        let desired = self.render(objects)?;
        Ok(self.survey(&desired, Depth::Metadata).await?.conflicts())
    }

    async fn get(&self, api: &Api<DynamicObject>, id: &ObjectRef) -> Result<Option<DynamicObject>> {
        self.retry
            .run(false, "reading", || api.get_opt(&id.name))
            .await
            .map_err(|e| self.api_error(format!("reading {id}"), e))
    }

    fn progress(&self, message: &str) {
        match self.run.as_ref().and_then(|r| r.ctx.as_ref()) {
            Some(ctx) => ctx.progress(message),
            None => tracing::info!(stack = %self.stack, module = %self.module, "{message}"),
        }
    }
}

/// A client that answers nothing, for a deployer whose cluster is abandoned.
fn closed_client() -> kube::Client {
    let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
        Err::<http::Response<kube::client::Body>, _>(std::io::Error::other(
            "the cluster's objects are abandoned (AbandonInCluster)",
        ))
    });
    kube::Client::new(service, "default")
}

fn to_json(o: &DynamicObject) -> Result<Value> {
    serde_json::to_value(o).map_err(|source| Error::Serialize {
        what: "a live object".into(),
        source,
    })
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
