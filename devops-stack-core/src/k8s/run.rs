//! What one stack run shares across its modules' deployers: the clusters they reached,
//! deletions still finishing in the background, and the destroy of modules the state records
//! that the stack no longer has.
//!
//! It plugs into the stack engine as an [`Engine`](crate::Engine): [`KubeEngine`] carries the
//! run's settings ([`KubeOptions`], the [`StackLock`]), each run starts a [`KubeRun`] that
//! [`Deployer::for_module`] links to, and the stack engine gives it the run's last word
//! ([`EngineRun::end`]). At the end of an apply, the modules the state records and the stack no
//! longer has are destroyed (see [`RemovedModules`]); in a destroy, that happens before the first
//! module's destroy on each cluster, and the run ends only when the namespaces and CRDs its
//! modules deleted are gone.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::KubeError;
use super::discovery::SharedDiscovery;
use super::remove::{Pending, await_all_gone};
use super::state::read_all;
use super::{Deployer, KubeOptions, RemovedModules, Retry, StackLock};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::run::{Engine, EngineRun, RunEnd};
use crate::step::Step;

/// The Kubernetes engine's settings for a run: hand it to
/// [`RunOptions::engine`](crate::RunOptions::engine). Without it, a run's Kubernetes modules
/// deploy with [`KubeOptions::default`] and no lock.
///
/// ```
/// use devops_stack_core::RunOptions;
/// use devops_stack_core::k8s::{KubeEngine, KubeOptions, RemovedModules};
/// let options = RunOptions::new().engine(
///     KubeEngine::new(KubeOptions::default().removed_modules(RemovedModules::Orphan)),
/// );
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct KubeEngine {
    options: KubeOptions,
    lock: Option<StackLock>,
}

impl KubeEngine {
    /// The engine with `options`.
    pub fn new(options: KubeOptions) -> Self {
        KubeEngine {
            options,
            lock: None,
        }
    }

    /// Writes only while `lock` is held: every module's writes, the removed modules' destroys
    /// and the state. Take it before the run and release it after (or let
    /// [`cli`](https://docs.rs/devops-stack) do both).
    #[must_use]
    pub fn lock(mut self, lock: StackLock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// The engine's options.
    pub fn options(&self) -> &KubeOptions {
        &self.options
    }
}

impl Engine for KubeEngine {
    fn start(&self) -> Arc<dyn EngineRun> {
        Arc::new(KubeRun {
            options: self.options.clone(),
            lock: self.lock.clone(),
            tracker: RunTracker::default(),
        })
    }
}

/// The Kubernetes engine's state for one run: its settings, the clusters its modules reached,
/// deletions still finishing and the removed modules it destroyed. Modules reach it with
/// [`Context::engine`].
#[derive(Default)]
pub struct KubeRun {
    pub(crate) options: KubeOptions,
    pub(crate) lock: Option<StackLock>,
    pub(crate) tracker: RunTracker,
}

impl std::fmt::Debug for KubeRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRun")
            .field("options", &self.options)
            .field("locked", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

impl KubeRun {
    /// The run's Kubernetes options.
    pub fn options(&self) -> &KubeOptions {
        &self.options
    }

    /// The run's lock, when the caller gave one for this stack.
    pub fn lock_for(&self, stack: &str) -> Option<&StackLock> {
        self.lock.as_ref().filter(|l| l.stack() == stack)
    }
}

impl EngineRun for KubeRun {
    fn end<'a>(
        &'a self,
        end: &'a RunEnd<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut options = self.options.clone();
            if end.step() == Step::Destroy {
                options.removed_modules = RemovedModules::Destroy;
            }
            let keep: Vec<&str> = end.modules().collect();
            let progress = |module: &str, message: String| end.progress(module, message);
            let run = RunInfo {
                stack: end.stack(),
                keep: &keep,
                options: &options,
                lock: self.lock_for(end.stack()),
                cancel: end.cancellation(),
                progress: &progress,
            };
            self.tracker.destroy_removed_everywhere(&run).await?;
            // What the run deleted (pruned or destroyed namespaces and CRDs) is gone at its end.
            self.tracker
                .settle(None, &options, end.cancellation())
                .await?;
            Ok(self.tracker.removed())
        })
    }
}

/// The run-wide state of the engine; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct RunTracker(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Cluster name → client.
    clusters: Mutex<BTreeMap<String, kube::Client>>,
    pending: Mutex<Vec<Pending>>,
    /// Clusters whose removed modules were dealt with in this run.
    removed_done: tokio::sync::Mutex<BTreeSet<String>>,
    /// The removed modules destroyed, in order.
    removed: Mutex<Vec<String>>,
    /// API discovery per cluster, shared by the run's modules.
    discovery: Mutex<BTreeMap<String, SharedDiscovery>>,
}

/// How to report progress of work that is not a module's own.
pub(crate) type Progress<'a> = &'a (dyn Fn(&str, String) + Send + Sync);

impl RunTracker {
    pub(crate) fn register(&self, cluster: &str, client: &kube::Client, _server: &str) {
        self.0
            .clusters
            .lock()
            .expect("not poisoned")
            .entry(cluster.to_owned())
            .or_insert_with(|| client.clone());
    }

    /// The discovery cache of `cluster` for this run.
    pub(crate) fn discovery(&self, cluster: &str) -> SharedDiscovery {
        self.0
            .discovery
            .lock()
            .expect("not poisoned")
            .entry(cluster.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets `cluster`: its objects are abandoned (its API cannot be reached and the run
    /// carries `AbandonInCluster`), so the end of the run does not go back to it.
    pub(crate) fn forget(&self, cluster: &str) {
        self.0
            .clusters
            .lock()
            .expect("not poisoned")
            .remove(cluster);
        self.0
            .pending
            .lock()
            .expect("not poisoned")
            .retain(|p| p.cluster != cluster);
    }

    pub(crate) fn defer(&self, pending: Vec<Pending>) {
        self.0.pending.lock().expect("not poisoned").extend(pending);
    }

    /// Waits for the deletions still finishing on `cluster` (every cluster when `None`).
    pub(crate) async fn settle(
        &self,
        cluster: Option<&str>,
        options: &KubeOptions,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let mine: Vec<Pending> = {
            let mut pending = self.0.pending.lock().expect("not poisoned");
            let (mine, rest) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|p| cluster.is_none_or(|c| p.cluster == c));
            *pending = rest;
            mine
        };
        if mine.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + options.wait_timeout;
        await_all_gone(mine, deadline, cancel, options.wait_timeout).await
    }

    /// The removed modules destroyed so far in this run.
    pub(crate) fn removed(&self) -> Vec<String> {
        self.0.removed.lock().expect("not poisoned").clone()
    }

    /// Destroys, once per cluster and run, the modules the state of `stack` on `cluster`
    /// records and `keep` does not have.
    pub(crate) async fn destroy_removed_on(
        &self,
        cluster: &str,
        client: &kube::Client,
        run: &RunInfo<'_>,
    ) -> Result<()> {
        let mut done = self.0.removed_done.lock().await;
        if !done.insert(cluster.to_owned()) {
            return Ok(());
        }
        let removed = destroy_removed(client, cluster, self, run).await?;
        self.0.removed.lock().expect("not poisoned").extend(removed);
        Ok(())
    }

    /// From a module's destroy: [`RunTracker::destroy_removed_on`] with the module's context.
    pub(crate) async fn destroy_removed(
        &self,
        cluster: &str,
        client: &kube::Client,
        ctx: &Context,
    ) -> Result<()> {
        let keep: Vec<&str> = ctx.names.iter().map(|n| &**n).collect();
        let engine = ctx.engine::<KubeRun>();
        let options = engine.options.clone();
        let progress = |module: &str, message: String| {
            tracing::info!(module, "{message}");
            ctx.progress(format!("[removed module `{module}`] {message}"));
        };
        let run = RunInfo {
            stack: ctx.stack_name(),
            keep: &keep,
            options: &options,
            lock: engine.lock_for(ctx.stack_name()),
            cancel: ctx.cancellation(),
            progress: &progress,
        };
        self.destroy_removed_on(cluster, client, &run).await
    }

    /// At the end of a run: the removed modules of every cluster the run reached and has not
    /// dealt with yet.
    pub(crate) async fn destroy_removed_everywhere(&self, run: &RunInfo<'_>) -> Result<()> {
        if run.options.removed_modules == RemovedModules::Orphan {
            return Ok(());
        }
        let clusters: Vec<(String, kube::Client)> = self
            .0
            .clusters
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        for (name, client) in clusters {
            self.destroy_removed_on(&name, &client, run).await?;
        }
        Ok(())
    }
}

/// What the removed-module work of a run needs to know.
pub(crate) struct RunInfo<'a> {
    pub(crate) stack: &'a str,
    /// The modules the stack has.
    pub(crate) keep: &'a [&'a str],
    pub(crate) options: &'a KubeOptions,
    pub(crate) lock: Option<&'a StackLock>,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) progress: Progress<'a>,
}

/// Destroys the modules the state records and `run.keep` does not have, dependents first (by
/// the dependencies each module's entry records); returns their ids.
async fn destroy_removed(
    client: &kube::Client,
    cluster: &str,
    tracker: &RunTracker,
    run: &RunInfo<'_>,
) -> Result<Vec<String>> {
    let entries = read_all(
        client,
        &run.options.state_namespace,
        run.stack,
        &Retry::default(),
    )
    .await?;
    let keep: HashSet<&str> = run.keep.iter().copied().collect();
    let mut left: BTreeMap<String, Vec<String>> = entries
        .into_iter()
        .filter(|(m, _)| !keep.contains(m.as_str()))
        .map(|(m, e)| (m, e.needs))
        .collect();
    let mut destroyed = Vec::new();
    while !left.is_empty() {
        // Those no remaining removed module needs go first (all of them, on a cycle).
        let needed: HashSet<&String> = left.values().flatten().collect();
        let mut layer: Vec<String> = left
            .keys()
            .filter(|m| !needed.contains(m))
            .cloned()
            .collect();
        if layer.is_empty() {
            layer = left.keys().cloned().collect();
        }
        let destroys = layer.iter().map(|m| async move {
            (run.progress)(m, "destroying: the stack no longer has this module".into());
            let mut d = Deployer::new(client.clone(), run.stack, m.clone(), run.options.clone())
                .cancellation(run.cancel.clone())
                .in_run(tracker, cluster);
            if let Some(lock) = run.lock {
                d = d.lock(lock.clone());
            }
            let report = d.destroy().await.map_err(|e| KubeError::RemovedModule {
                module: m.clone(),
                source: Box::new(e),
            })?;
            (run.progress)(
                m,
                format!(
                    "destroyed: {} deleted, {} left alone",
                    report.deleted.len(),
                    report.left_alone.len()
                ),
            );
            Ok::<_, Error>(())
        });
        futures::future::try_join_all(destroys).await?;
        for m in layer {
            left.remove(&m);
            destroyed.push(m);
        }
    }
    Ok(destroyed)
}

/// Waits until the namespaces and CRDs the run's modules deleted on `cluster` are gone. Cluster
/// modules call it at the start of their destroy, before the cluster itself goes; outside a
/// stack run, or in a run whose modules deployed nothing to Kubernetes, it does nothing.
///
/// # Errors
/// [`KubeError::NamespaceStuck`](crate::k8s::KubeError::NamespaceStuck) naming what blocks each namespace, and [`KubeError::NotDeleted`](crate::k8s::KubeError::NotDeleted), when
/// [`KubeOptions::wait_timeout`] passes.
pub async fn settle(ctx: &Context, cluster: &str) -> Result<()> {
    let Some(engine) = ctx.started_engine::<KubeRun>() else {
        return Ok(());
    };
    engine
        .tracker
        .settle(Some(cluster), &engine.options, ctx.cancellation())
        .await
}
