//! What applying a whole stack would change on its clusters, before applying it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::KubeError;
use super::{Deployer, Diff, DiffAction, KubeOptions, Retry};
use crate::error::{Error, Result};
use crate::interfaces::ClusterRef;
use crate::plan::Resource;
use crate::report::Report;
use crate::stack::BuiltStack;

/// One module's changes on one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleDiff {
    /// The module.
    pub module: String,
    /// The cluster its objects go to.
    pub cluster: String,
    /// Object by object, field by field.
    pub diff: Diff,
    /// Whether the stack no longer has this module: the state records it, and an apply will
    /// destroy all of its objects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// Objects that could not be compared, because their cluster was not given (it may not exist
/// yet: then they would all be created).
#[derive(Debug, Clone, Serialize)]
pub struct NotCompared {
    /// The module.
    pub module: String,
    /// The cluster.
    pub cluster: String,
    /// How many objects.
    pub objects: usize,
}

/// What applying a stack would change: the Kubernetes side compared with what is live, and the
/// cloud resources as planned (each cloud module compares those itself when it applies).
#[derive(Debug, Clone, Serialize)]
pub struct StackDiff {
    /// The stack.
    pub stack: String,
    /// One entry per module and cluster compared, in execution order.
    pub modules: Vec<ModuleDiff>,
    /// Objects whose cluster was not given.
    pub not_compared: Vec<NotCompared>,
    /// Cloud resources the plan has, as `module: title`.
    pub cloud: Vec<String>,
}

impl StackDiff {
    /// Whether an apply would change nothing that could be compared.
    pub fn is_empty(&self) -> bool {
        self.modules.iter().all(|m| m.diff.is_empty()) && self.not_compared.is_empty()
    }

    /// The diff of `module`'s objects on `cluster`.
    pub fn module(&self, module: &str) -> Option<&Diff> {
        self.modules
            .iter()
            .find(|m| m.module == module)
            .map(|m| &m.diff)
    }

    /// A readable text: each module with something to change, then what was not compared.
    pub fn to_text(&self) -> String {
        let mut out = format!("Changes to stack `{}`\n", self.stack);
        let mut unchanged = Vec::new();
        for m in &self.modules {
            if m.diff.is_empty() {
                unchanged.push(m.module.as_str());
                continue;
            }
            let removed = if m.removed {
                " (no longer in the stack: to be destroyed)"
            } else {
                ""
            };
            let _ = writeln!(out, "\n[{}] on cluster `{}`{removed}", m.module, m.cluster);
            for o in m
                .diff
                .objects
                .iter()
                .filter(|o| o.action != DiffAction::Unchanged)
            {
                for line in o.to_string().lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        if !unchanged.is_empty() {
            let _ = writeln!(out, "\nunchanged: {}", unchanged.join(", "));
        }
        for n in &self.not_compared {
            let _ = writeln!(
                out,
                "not compared: {} objects of `{}` for cluster `{}`, which was not given (if it does not exist yet, they will all be created)",
                n.objects, n.module, n.cluster
            );
        }
        if !self.cloud.is_empty() {
            let _ = writeln!(
                out,
                "\ncloud resources (compared by their modules when they apply):"
            );
            for c in &self.cloud {
                let _ = writeln!(out, "    {c}");
            }
        }
        out
    }
}

/// Compares what applying `stack` would make with what is live: the stack is planned against
/// the live outputs of `live` (a [`BuiltStack::read`] report), and each module's Kubernetes
/// objects are compared, through server-side dry-run applies, on the cluster of that name among
/// `clusters`. Nothing is changed.
///
/// # Errors
/// A plan that fails, a cluster whose client cannot be made, and API errors of the dry runs.
pub async fn diff_stack(
    stack: &BuiltStack,
    live: &Report,
    clusters: &[ClusterRef],
    options: &KubeOptions,
) -> Result<StackDiff> {
    let (modules, clients) = planned(stack, live, clusters).await?;
    let mut out = StackDiff {
        stack: stack.name().to_owned(),
        modules: Vec::new(),
        not_compared: Vec::new(),
        cloud: Vec::new(),
    };
    for m in modules {
        out.cloud.extend(m.cloud);
        for (cluster, objects) in m.objects {
            match clients.get(&cluster) {
                Some(client) => {
                    let deployer =
                        Deployer::new(client.clone(), stack.name(), &m.id, options.clone());
                    let diff = deployer.diff(objects).await?;
                    out.modules.push(ModuleDiff {
                        module: m.id.clone(),
                        cluster,
                        diff,
                        removed: false,
                    });
                }
                None => out.not_compared.push(NotCompared {
                    module: m.id.clone(),
                    cluster,
                    objects: objects.len(),
                }),
            }
        }
    }
    // Modules the state records and the stack no longer has: all of their objects go.
    let keep: Vec<&str> = stack.order();
    for (cluster, client) in &clients {
        let entries = super::state::read_all(
            client,
            &options.state_namespace,
            stack.name(),
            &Retry::default(),
        )
        .await?;
        for (module, _) in entries.iter().filter(|(m, _)| !keep.contains(&m.as_str())) {
            let deployer = Deployer::new(client.clone(), stack.name(), module, options.clone());
            out.modules.push(ModuleDiff {
                module: module.clone(),
                cluster: cluster.clone(),
                diff: deployer.diff(Vec::new()).await?,
                removed: true,
            });
        }
    }
    Ok(out)
}

/// Checks, before any module of `stack` writes anything, that none of them would take over an
/// object that is not its own on the given `clusters` (see [`Deployer::conflicts`]): the stack
/// is planned against the live outputs of `live` (a [`BuiltStack::read`] report) and every
/// module's objects are surveyed, reading only. Each module's apply checks its own objects
/// again before its first write; this finds every conflict of the stack at once, before the
/// first module runs.
///
/// # Errors
/// [`KubeError::NotOwnedInStack`](crate::k8s::KubeError::NotOwnedInStack) listing every such object with its module and owner; a plan that
/// fails; API errors.
pub async fn preflight_stack(
    stack: &BuiltStack,
    live: &Report,
    clusters: &[ClusterRef],
    options: &KubeOptions,
) -> Result<()> {
    let (planned, clients) = planned(stack, live, clusters).await?;
    let mut objects = Vec::new();
    let mut modules = Vec::new();
    for m in planned {
        for (cluster, rendered) in m.objects {
            let Some(client) = clients.get(&cluster) else {
                continue;
            };
            let deployer = Deployer::new(client.clone(), stack.name(), &m.id, options.clone());
            let found = deployer.conflicts(rendered).await?;
            if !found.is_empty() && !modules.contains(&m.id) {
                modules.push(m.id.clone());
            }
            objects.extend(found.into_iter().map(|c| (m.id.clone(), c)));
        }
    }
    if objects.is_empty() {
        Ok(())
    } else {
        Err(Error::from(KubeError::NotOwnedInStack {
            stack: stack.name().to_owned(),
            modules,
            objects,
        }))
    }
}

/// One module of a stack planned against what is live.
struct PlannedModule {
    id: String,
    /// Its Kubernetes objects by cluster name.
    objects: BTreeMap<String, Vec<Value>>,
    /// Its cloud resources, as `module: title`.
    cloud: Vec<String>,
}

/// Plans `stack` against the live outputs of `live`, and makes clients for `clusters` by name.
async fn planned(
    stack: &BuiltStack,
    live: &Report,
    clusters: &[ClusterRef],
) -> Result<(Vec<PlannedModule>, BTreeMap<String, kube::Client>)> {
    let plan = stack.plan_live(live).await?;
    let mut clients = BTreeMap::new();
    for c in clusters {
        let client = c.client().await.map_err(|source| KubeError::Client {
            cluster: c.name().to_owned(),
            hint: None,
            source,
        })?;
        clients.insert(c.name().to_owned(), client);
    }
    let modules = plan
        .modules
        .into_iter()
        .map(|m| {
            let mut planned = PlannedModule {
                id: m.id,
                objects: BTreeMap::new(),
                cloud: Vec::new(),
            };
            for r in m.resources {
                match r {
                    Resource::Kubernetes { cluster, object } => {
                        planned.objects.entry(cluster).or_default().push(object)
                    }
                    cloud => planned
                        .cloud
                        .push(format!("{}: {}", planned.id, cloud.title())),
                }
            }
            planned
        })
        .collect();
    Ok((modules, clients))
}
