//! The `Stack` builder and the validated `BuiltStack` it produces.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{ConfigError, Error, Result};
use crate::executor::{self, Pass};
use crate::graph::{EdgeKind, Graph};
use crate::handle::{AsDependencies, Dependency, Handle, StackId};
use crate::layout::Layout;
use crate::module::{ErasedModule, Module, Phase, Step};
use crate::output::{Outputs, new_outputs};
use crate::plan::{ModulePlan, Plan};
use crate::report::Failure;
use crate::report::{Report, Status};
use crate::run::{RunEnd, RunOptions, refuse};
use crate::scope::Scoped;
use crate::validate::{Capability, Interface, NamespaceOwner, Validation, dns_label};

/// Builds a stack: add modules, wire them with the handles `add` returns, then [`build`](Stack::build).
///
/// ```
/// # use devops_stack_core::{Context, Module, ModuleResult, Needs, Planned, Stack, Input};
/// # struct Num { id: &'static str, from: Vec<Input<u64>> }
/// # impl Module for Num {
/// #     type Output = u64;
/// #     fn id(&self) -> &str { self.id }
/// #     fn kind(&self) -> &'static str { "num" }
/// #     fn needs(&self, n: &mut Needs) { n.add(&self.from); }
/// #     async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<u64>> { Ok(Planned::new(self.apply(ctx).await?)) }
/// #     async fn apply(&self, ctx: &Context) -> ModuleResult<u64> {
/// #         let mut s = 1; for i in &self.from { s += ctx.get(i)?; } Ok(s)
/// #     }
/// #     async fn destroy(&self, _: &Context) -> ModuleResult<()> { Ok(()) }
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut stack = Stack::new("demo");
/// let a = stack.add(Num { id: "a", from: vec![] });
/// let b = stack.add(Num { id: "b", from: vec![a.input()] });
/// let _c = stack.add(Num { id: "c", from: vec![a.input(), b.input()] });
/// let stack = stack.build()?;
/// let plan = stack.plan().await?;
/// assert_eq!(plan.module("c").unwrap().output, 4);
/// # Ok::<_, devops_stack_core::Error>(())
/// # }).unwrap();
/// ```
pub struct Stack {
    id: StackId,
    name: String,
    modules: Vec<Arc<dyn ErasedModule>>,
    /// The scope of each module (see [`Stack::scope`]).
    scopes: Vec<Option<Arc<str>>>,
    order: Vec<(Dependency, Dependency)>,
    /// Unscoped clusters each scope may use (see [`Scope::allow`]).
    allowed: Vec<(Arc<str>, Dependency)>,
    /// Problems builders found while adding modules (see [`Stack::report`]).
    reported: Vec<ConfigError>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("name", &self.name)
            .field(
                "modules",
                &self
                    .modules
                    .iter()
                    .map(|m| m.id().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Stack {
    /// Why module `i` may not use `d` (another scope's output, or one reserved for others).
    fn misuse(&self, i: usize, d: &Dependency) -> Option<ConfigError> {
        let id = self.modules[i].id();
        let (mine, theirs) = (self.scopes[i].as_deref(), self.scopes[d.index].as_deref());
        if let (Some(mine), Some(theirs)) = (mine, theirs)
            && mine != theirs
        {
            return Some(ConfigError::new(
                Some(id),
                "needs",
                format!(
                    "module `{id}` of `{mine}` uses the output of `{}` of `{theirs}`",
                    d.module
                ),
                format!(
                    "give it the handles of `{mine}` (what the fleet's function was given for `{mine}`)"
                ),
            ));
        }
        None
    }

    /// Why scoped module `i` may not use the unscoped cluster `d`: a spoke's modules reach
    /// clusters only through their scope (a spoke's registration, or what [`Scope::allow`]s).
    fn outside_cluster(&self, i: usize, d: usize) -> Option<ConfigError> {
        let scope = self.scopes[i].as_ref()?;
        if self.scopes[d].is_some() || self.allowed.iter().any(|(s, a)| s == scope && a.index == d)
        {
            return None;
        }
        let (id, cluster) = (self.modules[i].id(), self.modules[d].id());
        Some(ConfigError::new(
            Some(id),
            "needs",
            format!(
                "module `{id}` of `{scope}` targets the cluster of `{cluster}`, which is not registered as `{scope}`'s cluster"
            ),
            format!(
                "register `{cluster}` as a spoke of the fleet and give the module that spoke's handle, or give it `{scope}`'s cluster"
            ),
        ))
    }

    /// A new, empty stack. The name labels every object the stack creates and keys its state; it
    /// must be a DNS-1123 label (checked by [`build`](Stack::build)).
    pub fn new(name: impl Into<String>) -> Self {
        Stack {
            id: StackId::next(),
            name: name.into(),
            modules: Vec::new(),
            scopes: Vec::new(),
            order: Vec::new(),
            allowed: Vec::new(),
            reported: Vec::new(),
        }
    }

    /// Adds a module and returns the typed handle to its future output.
    pub fn add<M: Module>(&mut self, module: M) -> Handle<M::Output> {
        self.push(module, None)
    }

    /// Adds modules under the scope `name` (one spoke of a fleet): their ids become
    /// `<name>-<id>`, and [`build`](Stack::build) refuses one that uses the output of a module
    /// of another scope. See [`Scope`].
    pub fn scope(&mut self, name: &str) -> Scope<'_> {
        Scope {
            stack: self,
            name: Arc::from(name),
        }
    }

    fn push<M: Module>(&mut self, module: M, scope: Option<Arc<str>>) -> Handle<M::Output> {
        let dep = Dependency {
            stack: self.id,
            index: self.modules.len(),
            module: Arc::from(module.id()),
        };
        self.modules.push(Arc::new(module));
        self.scopes.push(scope);
        Handle::new(dep)
    }

    /// Records a problem a builder found while adding modules (a fleet's spoke named twice):
    /// [`build`](Stack::build) returns it with the others, before anything runs.
    pub fn report(&mut self, problem: ConfigError) -> &mut Self {
        self.reported.push(problem);
        self
    }

    /// Runs the modules of `after` only once those of `before` are done, without passing data.
    pub fn order(
        &mut self,
        before: &impl AsDependencies,
        after: &impl AsDependencies,
    ) -> &mut Self {
        let (mut b, mut a) = (Vec::new(), Vec::new());
        before.push_to(&mut b);
        after.push_to(&mut a);
        for x in &b {
            for y in &a {
                self.order.push((x.clone(), y.clone()));
            }
        }
        self
    }

    /// Validates everything (names, ids, handles, capabilities, module configuration, cycles)
    /// and returns the stack ready to plan, apply or destroy. Nothing has run yet.
    ///
    /// # Errors
    /// [`Error::Invalid`] with every configuration problem found, or [`Error::Cycle`].
    pub fn build(mut self) -> Result<BuiltStack> {
        let mut errors = std::mem::take(&mut self.reported);
        if let Err(problem) = dns_label(&self.name) {
            errors.push(ConfigError::new(
                None,
                "stack.name",
                problem,
                "name the stack with 1-63 lowercase letters, digits or `-`",
            ));
        }
        let names: Arc<[Arc<str>]> = self.modules.iter().map(|m| Arc::from(m.id())).collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut data: Vec<Vec<usize>> = Vec::with_capacity(self.modules.len());
        let mut defaults: Vec<(Option<&str>, &str, String)> = Vec::new();
        // ingress classes and namespaces are per cluster: per scope
        let mut classes: HashMap<(Option<&str>, String), &str> = HashMap::new();
        let mut namespaces: HashMap<(Option<&str>, &str), (&str, &NamespaceOwner)> = HashMap::new();
        let mut argocd_names: HashMap<(&str, &str), &str> = HashMap::new();
        let mut groups: Vec<std::collections::BTreeSet<String>> =
            vec![Default::default(); self.modules.len()];
        let mut provided: HashMap<Interface, ()> = HashMap::new();
        let mut required: Vec<(&str, Interface, String)> = Vec::new();
        let mut validations = Vec::with_capacity(self.modules.len());
        for (i, m) in self.modules.iter().enumerate() {
            let id = m.id();
            if let Err(problem) = dns_label(id) {
                errors.push(ConfigError::new(
                    Some(id),
                    "id",
                    problem,
                    "give the module an id of 1-63 lowercase letters, digits or `-`",
                ));
            }
            if let Some(first) = seen.insert(id, i) {
                errors.push(ConfigError::new(
                    Some(id),
                    "id",
                    format!(
                        "modules #{} and #{} both have the id `{id}`",
                        first + 1,
                        i + 1
                    ),
                    "give one of them another id (most modules have an `.id(..)` setter)",
                ));
            }
            let mut deps = Vec::new();
            for d in m.needs() {
                if d.stack != self.id || d.index >= self.modules.len() {
                    errors.push(ConfigError::new(
                        Some(id),
                        "needs",
                        format!("holds a handle to `{}` from another stack", d.module),
                        format!(
                            "add `{}` to this stack and pass the handle its `add` returns",
                            d.module
                        ),
                    ));
                } else {
                    if let Some(problem) = self.misuse(i, &d) {
                        errors.push(problem);
                    }
                    deps.push(d.index);
                }
            }
            data.push(deps);
            let mut v = Validation::new(id);
            m.validate(&mut v);
            validations.push(v);
        }
        for ((m, v), scope) in self.modules.iter().zip(&validations).zip(&self.scopes) {
            let scope = scope.as_deref();
            errors.extend(v.errors.iter().cloned());
            for cap in &v.provides {
                match cap {
                    Capability::IngressClass { name, default } => {
                        provided.insert(Interface::Ingress, ());
                        if let Some(other) = classes.insert((scope, name.clone()), m.id()) {
                            errors.push(ConfigError::new(
                                Some(m.id()),
                                "ingress_class",
                                format!("the ingress class `{name}` is also served by `{other}`"),
                                "give each ingress controller its own class name",
                            ));
                        }
                        if *default {
                            defaults.push((scope, m.id(), name.clone()));
                        }
                    }
                    Capability::Interface(i) => {
                        provided.insert(*i, ());
                    }
                    Capability::Application { name } | Capability::ApplicationSet { name } => {
                        let kind = if matches!(cap, Capability::Application { .. }) {
                            "Application"
                        } else {
                            "ApplicationSet"
                        };
                        if let Some(other) = argocd_names.insert((kind, name.as_str()), m.id()) {
                            let by = if other == m.id() {
                                format!("twice by `{other}`")
                            } else {
                                format!("by `{other}` and by `{}`", m.id())
                            };
                            errors.push(ConfigError::new(
                                Some(m.id()),
                                "applications",
                                format!("the Argo CD {kind} `{name}` is made {by}: one would overwrite the other"),
                                "rename one of them (a team's Applications are named `<team>-<app>`: change the team's or the app's name)",
                            ));
                        }
                    }
                    Capability::Namespace { name, owner } => {
                        let claim = (m.id(), owner);
                        match namespaces.insert((scope, name), claim) {
                            Some((other, first))
                                if other != m.id()
                                    && (matches!(first, NamespaceOwner::Team(_))
                                        || matches!(owner, NamespaceOwner::Team(_))) =>
                            {
                                errors.push(ConfigError::new(
                                    Some(m.id()),
                                    "namespaces",
                                    format!("the namespace `{name}` is claimed by {owner} (module `{}`) and by {first} (module `{other}`)", m.id()),
                                    "give each team namespaces of its own, used by no other team and by no platform module",
                                ));
                                // keep the team's claim, so that a third claim is reported too
                                if matches!(first, NamespaceOwner::Team(_)) {
                                    namespaces.insert((scope, name), (other, first));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            required.extend(v.requires.iter().map(|(i, why)| (m.id(), *i, why.clone())));
            for g in &v.groups {
                if let Some(p) = g.provider().filter(|p| p.stack == self.id)
                    && let Some(set) = groups.get_mut(p.index)
                {
                    set.insert(g.name().to_owned());
                }
            }
        }
        for (i, deps) in data.iter().enumerate() {
            for &d in deps {
                let cluster = validations[d]
                    .provides
                    .contains(&Capability::Interface(Interface::Cluster));
                if cluster && let Some(problem) = self.outside_cluster(i, d) {
                    errors.push(problem);
                }
            }
        }
        let mut by_scope: HashMap<Option<&str>, Vec<(&str, String)>> = HashMap::new();
        for (scope, m, class) in defaults {
            by_scope.entry(scope).or_default().push((m, class));
        }
        let mut by_scope: Vec<_> = by_scope.into_iter().filter(|(_, d)| d.len() > 1).collect();
        by_scope.sort();
        for (scope, defaults) in by_scope {
            let list: Vec<String> = defaults
                .iter()
                .map(|(m, c)| format!("`{m}` ({c})"))
                .collect();
            errors.push(ConfigError::new(
                Some(defaults[1].0),
                "default_class",
                format!(
                    "{} ingress controllers claim the default ingress class{}: {}",
                    defaults.len(),
                    scope.map(|s| format!(" of `{s}`")).unwrap_or_default(),
                    list.join(", ")
                ),
                "keep `default_class(true)` on one controller and set `default_class(false)` on the others",
            ));
        }
        for (m, interface, why) in required {
            if !provided.contains_key(&interface) {
                errors.push(ConfigError::new(
                    Some(m),
                    "requires",
                    format!("needs {interface} ({why}), but no module in the stack provides it"),
                    format!("add a module that provides {interface} to the stack"),
                ));
            }
        }
        let mut order = Vec::new();
        for (b, a) in &self.order {
            for d in [b, a] {
                if d.stack != self.id {
                    errors.push(ConfigError::new(
                        Some(&d.module),
                        "order",
                        "`Stack::order` was given a handle from another stack",
                        "use handles returned by this stack's `add`",
                    ));
                }
            }
            order.push((b.index, a.index));
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let phases: Vec<Phase> = self.modules.iter().map(|m| m.phase()).collect();
        let graph = Graph::build(&names, &phases, &data, &order)?;
        Ok(BuiltStack {
            id: self.id,
            has_cluster: provided.contains_key(&Interface::Cluster),
            layout: Layout {
                name: Arc::from(self.name),
                modules: self.modules,
                names,
                phases,
                graph,
                groups: groups
                    .into_iter()
                    .map(|g| g.into_iter().collect::<Vec<_>>().into())
                    .collect(),
            },
        })
    }
}

/// Scopes: the modules of one part of a stack (one spoke cluster of a fleet) added under a
/// common name. A scoped module's id is `<scope>-<id>`, so that the same definition added for
/// two spokes gives two sets of modules (and two sets of Argo CD Applications) that never
/// collide; and [`Stack::build`] refuses a module that uses the output of
/// another scope's module, so that the ingress, issuer or OIDC of spoke A never reach spoke B.
///
/// ```
/// use devops_stack_core::{Context, Module, ModuleResult, Planned, Stack};
/// # struct Echo(&'static str, Vec<devops_stack_core::Input<String>>);
/// # impl Module for Echo {
/// #     type Output = String;
/// #     fn id(&self) -> &str { self.0 }
/// #     fn kind(&self) -> &'static str { "echo" }
/// #     fn needs(&self, n: &mut devops_stack_core::Needs) { for i in &self.1 { n.add(i); } }
/// #     async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<String>> {
/// #         Ok(Planned::new(ctx.module_id().to_owned()))
/// #     }
/// #     async fn apply(&self, ctx: &Context) -> ModuleResult<String> { Ok(ctx.module_id().to_owned()) }
/// #     async fn destroy(&self, _: &Context) -> ModuleResult<()> { Ok(()) }
/// # }
/// let mut stack = Stack::new("fleet");
/// let a = stack.scope("a").add(Echo("ingress", vec![]));
/// // spoke b's module given spoke a's ingress: refused when the stack is built
/// stack.scope("b").add(Echo("app", vec![a.input()]));
/// let err = stack.build().unwrap_err();
/// assert_eq!(err.config_errors()[0].module.as_deref(), Some("b-app"));
/// assert!(err.config_errors()[0].problem.contains("`a-ingress` of `a`"));
/// ```
pub struct Scope<'a> {
    pub(crate) stack: &'a mut Stack,
    pub(crate) name: Arc<str>,
}

impl Scope<'_> {
    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Puts the module of `cluster` (added to the stack before) in this scope: the spoke's own
    /// cluster, which then only this scope's modules may use.
    pub fn include(&mut self, cluster: &impl AsDependencies) -> &mut Self {
        let mut deps = Vec::new();
        cluster.push_to(&mut deps);
        for d in deps {
            let Some(scope) = self.stack.scopes.get_mut(d.index) else {
                continue;
            };
            match scope {
                Some(other) if *other != self.name => {
                    let problem = ConfigError::new(
                        Some(&d.module),
                        "scope",
                        format!("is the cluster of `{other}` and of `{}`", self.name),
                        "give each spoke a cluster of its own",
                    );
                    self.stack.reported.push(problem);
                }
                _ => *scope = Some(self.name.clone()),
            }
        }
        self
    }

    /// Lets this scope's modules use the unscoped cluster of `cluster` (the hub, where a spoke
    /// is registered).
    pub fn allow(&mut self, cluster: &impl AsDependencies) -> &mut Self {
        let mut deps = Vec::new();
        cluster.push_to(&mut deps);
        for d in deps {
            self.stack.allowed.push((self.name.clone(), d));
        }
        self
    }

    /// Adds `module` with the id `<scope>-<its id>` and returns the handle to its output.
    pub fn add<M: Module>(&mut self, module: M) -> Handle<M::Output> {
        let id = format!("{}-{}", self.name, module.id());
        self.stack
            .push(Scoped { id, inner: module }, Some(self.name.clone()))
    }
}

/// A validated stack: plan it offline, apply it or destroy it.
pub struct BuiltStack {
    id: StackId,
    /// Whether a module provides [`Interface::Cluster`].
    has_cluster: bool,
    pub(crate) layout: Layout,
}

impl std::fmt::Debug for BuiltStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltStack")
            .field("name", &self.layout.name)
            .field("order", &self.order())
            .finish()
    }
}

impl BuiltStack {
    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.layout.name
    }

    /// Module ids in a valid execution order (stack order wherever the edges allow).
    pub fn order(&self) -> Vec<&str> {
        self.layout
            .graph
            .topo
            .iter()
            .map(|&i| &*self.layout.names[i])
            .collect()
    }

    /// The ids of the modules that module `id` runs after, directly.
    pub fn predecessors(&self, id: &str) -> Vec<&str> {
        self.index(id)
            .map(|i| {
                self.layout.graph.preds[i]
                    .iter()
                    .map(|&p| &*self.layout.names[p])
                    .collect()
            })
            .unwrap_or_default()
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.layout.names.iter().position(|n| &**n == id)
    }

    /// Refuses run settings that contradict the stack, before anything runs: a module timeout
    /// for a handle of another stack; [`RunOptions::abandon_in_cluster`] for a stack with no
    /// cluster module. [`apply`](BuiltStack::apply), [`destroy`](BuiltStack::destroy) and
    /// [`read`](BuiltStack::read) check it first.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming each setting (`run.module_timeout`, `run.abandon_in_cluster`)
    /// and its fix.
    pub fn check(&self, options: &RunOptions) -> Result<()> {
        refuse(options.contradictions(self.id, self.has_cluster))
    }

    /// Renders offline, with no cluster and no cloud account, what every module would create.
    /// Each module is planned as soon as its inputs' plans are done, seeing their planned
    /// outputs (the same scheduler as apply and destroy).
    ///
    /// # Errors
    /// [`Error::RunFailed`] listing the modules whose plan failed (their dependents are skipped).
    pub async fn plan(&self) -> Result<Plan> {
        self.plan_with(None).await
    }

    /// Renders what every module would create given what is live: each module sees the live
    /// outputs of a [`read`](BuiltStack::read) report wherever they exist, and planned outputs
    /// (with values known only after apply marked) where they do not. Diff the result against the
    /// cluster with the Kubernetes engine to see what an apply would change.
    ///
    /// # Errors
    /// As [`BuiltStack::plan`].
    pub async fn plan_live(&self, live: &Report) -> Result<Plan> {
        self.plan_with(Some(live.outputs.clone())).await
    }

    async fn plan_with(&self, live: Option<Outputs>) -> Result<Plan> {
        let options = RunOptions::new();
        let executor::Ran {
            report,
            mut rendered,
        } = executor::run(
            &self.layout,
            Pass {
                step: Step::Plan,
                shared: options.shared(),
                options: &options,
                outputs: new_outputs(self.layout.modules.len()),
                absent: Vec::new(),
                live,
            },
        )
        .await;
        report.into_result()?;
        let modules = self
            .layout
            .graph
            .topo
            .iter()
            .filter_map(|&i| {
                let rendered = rendered[i].take()?;
                let (needs, after) = self.edges_into(i);
                Some(ModulePlan {
                    id: self.layout.names[i].to_string(),
                    kind: self.layout.modules[i].kind().to_owned(),
                    phase: self.layout.phases[i],
                    needs,
                    after,
                    resources: rendered.resources,
                    output: rendered.output,
                })
            })
            .collect();
        Ok(Plan {
            stack: self.layout.name.to_string(),
            modules,
        })
    }

    /// Looks up every module's live output without changing anything (the first pass of a
    /// destroy). Modules whose resources do not exist, and their dependents, report
    /// [`Status::Absent`].
    ///
    /// # Errors
    /// [`Error::Invalid`] for contradicting settings ([`BuiltStack::check`]);
    /// [`Error::RunFailed`] when a module's read failed.
    pub async fn read(&self, options: &RunOptions) -> Result<Report> {
        self.check(options)?;
        self.pass(Step::Read, options, options.shared(), Vec::new(), None)
            .await
            .into_result()
    }

    /// One pass of `step` over the stack with the run's shared state.
    async fn pass(
        &self,
        step: Step,
        options: &RunOptions,
        shared: Arc<crate::run::RunShared>,
        absent: Vec<bool>,
        outputs: Option<Outputs>,
    ) -> Report {
        executor::run(
            &self.layout,
            Pass {
                step,
                options,
                shared,
                outputs: outputs.unwrap_or_else(|| new_outputs(self.layout.modules.len())),
                absent,
                live: None,
            },
        )
        .await
        .report
    }

    /// The modules `i` reads, and those it only runs after.
    fn edges_into(&self, i: usize) -> (Vec<String>, Vec<String>) {
        let mut needs = Vec::new();
        let mut after = Vec::new();
        for &(a, _, kind) in self.layout.graph.edges_into(i) {
            match kind {
                EdgeKind::Data => needs.push(self.layout.names[a].to_string()),
                EdgeKind::Order | EdgeKind::Phase => after.push(self.layout.names[a].to_string()),
            }
        }
        (needs, after)
    }

    /// Applies every module, each as soon as its inputs are ready, after every module's
    /// [preflight](crate::Module::preflight) passed.
    ///
    /// # Errors
    /// [`Error::Invalid`] for contradicting settings ([`BuiltStack::check`]): nothing ran.
    /// [`Error::RunFailed`] for [`Step::Preflight`] when a preflight check failed: nothing was
    /// applied.
    /// [`Error::RunFailed`] when any module failed, timed out, was cancelled or skipped; the
    /// report inside says which, with timings.
    ///
    /// Then each engine of the run has its last word ([`EngineRun::end`](crate::EngineRun::end)):
    /// the Kubernetes engine destroys, on every cluster the run's modules deployed to, the
    /// modules the stack's state records and the stack no longer has, dependents first (unless
    /// [`RemovedModules::Orphan`](crate::k8s::RemovedModules)); the report lists them in
    /// [`Report::removed`].
    pub async fn apply(&self, options: &RunOptions) -> Result<Report> {
        self.check(options)?;
        self.preflight(options).await?;
        let shared = options.shared();
        let report = self
            .pass(Step::Apply, options, shared.clone(), Vec::new(), None)
            .await;
        self.finish(report, options, &shared).await
    }

    /// Runs every module's preflight check at once, each module regardless of the others (no
    /// input can be read), and fails with all of their errors before anything is applied.
    ///
    /// # Errors
    /// [`Error::RunFailed`] for [`Step::Preflight`], naming each module whose check failed.
    pub async fn preflight(&self, options: &RunOptions) -> Result<Report> {
        // quiet: a module's apply events are the ones a display shows; a failed check is the error
        let mut quiet = options.clone();
        quiet.events = Default::default();
        self.pass(Step::Preflight, &quiet, quiet.shared(), Vec::new(), None)
            .await
            .into_result()
    }

    /// The report of a run, with each engine's end-of-run work when every module succeeded.
    async fn finish(
        &self,
        mut report: Report,
        options: &RunOptions,
        shared: &crate::run::RunShared,
    ) -> Result<Report> {
        if !report.is_success() {
            return report.into_result();
        }
        let end = RunEnd {
            stack: &self.layout.name,
            modules: &self.layout.names,
            step: report.step,
            cancel: &options.cancel,
            events: &options.events,
            start: tokio::time::Instant::now(),
        };
        for engine in shared.engines.all() {
            match engine.end(&end).await {
                Ok(removed) => report.removed.extend(removed),
                Err(e) => {
                    return Err(Error::RunFailed {
                        step: report.step,
                        failed: vec![Failure::from(e)],
                        report: Box::new(report),
                    });
                }
            }
        }
        Ok(report)
    }

    /// Destroys every module in reverse dependency order: first each module's live output is
    /// read (forward), then dependents are destroyed before what they depend on. A module whose
    /// resources do not exist is skipped along with its dependents; a module whose destroy
    /// failed keeps what it depends on in place. Safe to run again.
    ///
    /// # Errors
    /// [`Error::Invalid`] for contradicting settings ([`BuiltStack::check`]): nothing ran.
    /// [`Error::RunFailed`] for the read pass or the destroy pass.
    ///
    /// In-cluster modules delete their namespaces and CRDs without waiting for them to finish
    /// terminating; the run waits for them at its end (cluster modules wait for those of their
    /// cluster before deleting it, see [`k8s::settle`](crate::k8s::settle)). The modules the
    /// stack's state records and the stack no longer has are destroyed too, before anything
    /// else on their cluster; the report lists them in [`Report::removed`].
    pub async fn destroy(&self, options: &RunOptions) -> Result<Report> {
        self.check(options)?;
        let shared = options.shared();
        let read = self
            .pass(Step::Read, options, shared.clone(), Vec::new(), None)
            .await
            .into_result()?;
        let absent: Vec<bool> = read
            .modules
            .iter()
            .map(|m| m.status == Status::Absent)
            .collect();
        let report = self
            .pass(
                Step::Destroy,
                options,
                shared.clone(),
                absent,
                Some(read.outputs),
            )
            .await;
        self.finish(report, options, &shared).await
    }

    /// The dependency graph as Graphviz DOT (solid: data, dashed: ordering and phases).
    pub fn to_dot(&self) -> String {
        let modules = self
            .layout
            .graph
            .topo
            .iter()
            .map(|&i| {
                let (needs, after) = self.edges_into(i);
                ModulePlan {
                    id: self.layout.names[i].to_string(),
                    kind: self.layout.modules[i].kind().to_owned(),
                    phase: self.layout.phases[i],
                    needs,
                    after,
                    resources: Vec::new(),
                    output: serde_json::Value::Null,
                }
            })
            .collect();
        Plan {
            stack: self.layout.name.to_string(),
            modules,
        }
        .to_dot()
    }
}
