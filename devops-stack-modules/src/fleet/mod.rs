//! A fleet: one platform definition over many clusters. The hub is a stack's cluster with its
//! Argo CD; each spoke is another cluster, registered with the hub's Argo CD (a
//! registration module writes Argo CD's cluster Secret in the hub's Argo CD
//! namespace, with typed labels and values and the credentials a [`SpokeAuth`] makes on the
//! spoke). The platform's modules are written once, as a function from a spoke's typed settings
//! to its modules, and added for every spoke under the spoke's [scope](devops_stack_core::Scope):
//! their ids become `<spoke>-<id>`, their Applications are written to the hub and deploy to the
//! spoke, their other objects go to the spoke itself, and a module of spoke A given a handle of
//! spoke B is refused when the stack is built.
//!
//! Spokes roll out in ordered waves: a wave's modules start only once every Application of the
//! wave before is Synced and Healthy (a [`WaveReport`] gate between them); a failure stops the
//! later waves.
//!
//! ```
//! use devops_stack_core::Stack;
//! use devops_stack_core::clusters::Kind;
//! use devops_stack_modules::fleet::{Fleet, SpokeSpec};
//! use devops_stack_modules::{ArgoCd, MetricsServer, Traefik};
//!
//! /// What differs between spokes, typed.
//! struct Settings { replicas: u32 }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("fleet");
//! let hub = stack.add(Kind::new("hub"));
//! let argocd = stack.add(ArgoCd::new(&hub));
//! let dev = stack.add(Kind::new("dev"));
//! let prod = stack.add(Kind::new("prod"));
//! Fleet::new(&hub, &argocd)
//!     .spoke(SpokeSpec::new("dev", &dev, Settings { replicas: 1 }).label("env", "dev"))
//!     .spoke(SpokeSpec::new("prod", &prod, Settings { replicas: 3 }).label("env", "prod"))
//!     .wave("first", ["dev"])
//!     .wave("then", ["prod"])
//!     .add_to(&mut stack, |spoke, settings| {
//!         let argocd = spoke.argocd();
//!         let cluster = spoke.cluster().clone();
//!         spoke.add(Traefik::new(&cluster, argocd.clone()).replicas(settings.replicas));
//!         spoke.add(MetricsServer::new(&cluster, argocd));
//!     });
//! let plan = stack.build()?.plan().await?;
//! assert!(plan.module("prod-traefik").is_some());
//! assert_eq!(plan.module("wave-then").unwrap().output["spokes"][0], "prod");
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

mod report;
mod route;
mod spoke;
mod sweep;
mod token;
mod wave;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterProvider, ClusterRef, SpokeAuth, SpokeAuthRef,
};
use devops_stack_core::validate::dns_label;
use devops_stack_core::{ConfigError, Dependency, Handle, Input, Module, Scope, Stack};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

pub use report::{FleetReport, SpokeChanges, SpokeDifference};
pub use spoke::{SECRET_TYPE_LABEL, Spoke, VALUE_PREFIX, WAVE_LABEL};
pub use token::ServiceAccountToken;
pub use wave::WaveReport;

pub(crate) use route::{Deployers, cluster_of};
use spoke::Registration;
use sweep::Sweep;
use wave::WaveGate;

/// One spoke of a fleet: its name (Argo CD's cluster name, the prefix of its modules' ids), its
/// cluster, its typed settings (what the fleet's function reads), the labels and values of its
/// registration, and how the hub authenticates (default: a [`ServiceAccountToken`]).
pub struct SpokeSpec<S> {
    name: String,
    cluster: Input<ClusterRef>,
    cluster_module: Dependency,
    settings: S,
    auth: SpokeAuthRef,
    server: Option<String>,
    labels: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
    problems: Vec<ConfigError>,
}

impl<S> SpokeSpec<S> {
    /// Spoke `name`, the cluster of the module `cluster` (added to the stack before), with
    /// `settings`.
    pub fn new<C: ClusterProvider + Send + Sync + 'static>(
        name: impl Into<String>,
        cluster: &Handle<C>,
        settings: S,
    ) -> Self {
        SpokeSpec {
            name: name.into(),
            cluster: cluster.cluster(),
            cluster_module: cluster.dependency(),
            settings,
            auth: Arc::new(ServiceAccountToken::new()),
            server: None,
            labels: BTreeMap::new(),
            values: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    /// How the hub's Argo CD authenticates to the spoke.
    #[must_use]
    pub fn auth(mut self, auth: impl SpokeAuth) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// The API server the hub's Argo CD reaches the spoke at (default: the one the spoke's
    /// client uses, read from its kubeconfig).
    #[must_use]
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    /// A label of the registration (what ApplicationSet cluster generators select on): a
    /// Kubernetes label key and value, checked when the stack is built.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        if let Some(problem) = label_problem(&key, &value) {
            self.problems.push(self.problem(&format!("labels.{key}"), problem, "use 1-63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"));
        }
        self.labels.insert(key, value);
        self
    }

    /// The registration's values, from a typed struct: each field (nested ones as `a.b`)
    /// becomes the annotation `values.devops-stack.io/<field>` of its cluster Secret, which
    /// templates read as `{{metadata.annotations.values.devops-stack.io/<field>}}`. Every field
    /// is kept; a value that is not a string, number or boolean is refused when the stack is
    /// built, naming the field.
    #[must_use]
    pub fn values(mut self, values: &impl Serialize) -> Self {
        match serde_json::to_value(values) {
            Ok(Value::Object(map)) => {
                let mut flat = Vec::new();
                flatten("", &Value::Object(map), &mut flat);
                for (field, value) in flat {
                    match value {
                        Ok(v) => {
                            self.values.insert(field, v);
                        }
                        Err(kind) => {
                            let problem = self.problem(
                                &format!("values.{field}"),
                                format!("is {kind}, which an annotation cannot carry"),
                                "make it a string, number or boolean (or a struct of those)",
                            );
                            self.problems.push(problem);
                        }
                    }
                }
            }
            Ok(other) => {
                let problem = self.problem(
                    "values",
                    format!("is {other}, not a struct"),
                    "pass a struct whose fields are the values",
                );
                self.problems.push(problem);
            }
            Err(e) => {
                let problem = self.problem("values", e.to_string(), "pass a serializable struct");
                self.problems.push(problem);
            }
        }
        self
    }

    fn problem(&self, field: &str, problem: impl Into<String>, fix: &str) -> ConfigError {
        ConfigError::new(
            None,
            format!("fleet.spokes.{}.{field}", self.name),
            problem,
            fix,
        )
    }
}

/// The Argo CD Applications of `namespace`, or of every namespace, as they are (other tools'
/// Applications included, whatever fields their Argo CD version has).
pub(crate) fn applications(
    client: kube::Client,
    namespace: Option<&str>,
) -> kube::Api<kube::api::DynamicObject> {
    let resource = kube::discovery::ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    };
    match namespace {
        Some(ns) => kube::Api::namespaced_with(client, ns, &resource),
        None => kube::Api::all_with(client, &resource),
    }
}

/// `a.b` → scalar as text, or the kind of what cannot be one.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Result<String, &'static str>)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), Ok(s.clone()))),
        Value::Number(n) => out.push((prefix.to_owned(), Ok(n.to_string()))),
        Value::Bool(b) => out.push((prefix.to_owned(), Ok(b.to_string()))),
        Value::Null => out.push((prefix.to_owned(), Err("null"))),
        Value::Array(_) => out.push((prefix.to_owned(), Err("a list"))),
    }
}

/// Why `key: value` is not a Kubernetes label.
fn label_problem(key: &str, value: &str) -> Option<String> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let name = key.rsplit('/').next().unwrap_or(key);
    if !name_ok(name) {
        return Some(format!("`{key}` is not a label key"));
    }
    if !value.is_empty() && !name_ok(value) {
        return Some(format!("`{value}` is not a label value"));
    }
    None
}

/// The spokes of a fleet and how they roll out; [`add_to`](Fleet::add_to) adds their
/// registrations, their modules and the waves' gates to a stack.
pub struct Fleet<S> {
    hub: Input<ClusterRef>,
    hub_module: Dependency,
    argocd: Input<ArgoCdTarget>,
    spokes: Vec<SpokeSpec<S>>,
    waves: Vec<(String, Vec<String>)>,
    wait: Duration,
}

/// The handles of a fleet added to a stack.
#[derive(Debug)]
pub struct FleetHandles {
    /// Each spoke's registration (its cluster, as its modules see it), by name.
    pub spokes: BTreeMap<String, Handle<Spoke>>,
    /// Each wave's gate, in order.
    pub waves: Vec<Handle<WaveReport>>,
    /// The spokes in rollout order, each with its wave.
    order: Vec<(String, Option<String>)>,
}

/// Adds one spoke's modules: what the fleet's function is given for each spoke.
pub struct SpokeScope<'a> {
    scope: Scope<'a>,
    cluster: Handle<Spoke>,
    argocd: Input<ArgoCdTarget>,
    added: Vec<Dependency>,
}

impl SpokeScope<'_> {
    /// The spoke's name.
    pub fn name(&self) -> &str {
        self.scope.name()
    }

    /// The spoke, as its modules take their cluster.
    pub fn cluster(&self) -> &Handle<Spoke> {
        &self.cluster
    }

    /// The hub's Argo CD, which deploys the spoke's Applications.
    pub fn argocd(&self) -> Input<ArgoCdTarget> {
        self.argocd.clone()
    }

    /// Adds a module of this spoke (its id becomes `<spoke>-<id>`).
    pub fn add<M: Module>(&mut self, module: M) -> Handle<M::Output> {
        let h = self.scope.add(module);
        self.added.push(h.dependency());
        h
    }
}

impl<S> Fleet<S> {
    /// A fleet whose hub is the cluster of `hub`, with `argocd` (the hub's Argo CD).
    pub fn new<C: ClusterProvider + Send + Sync + 'static>(
        hub: &Handle<C>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        Fleet {
            hub: hub.cluster(),
            hub_module: hub.dependency(),
            argocd: argocd.into(),
            spokes: Vec::new(),
            waves: Vec::new(),
            wait: Duration::from_secs(300),
        }
    }

    /// Adds a spoke.
    #[must_use]
    pub fn spoke(mut self, spoke: SpokeSpec<S>) -> Self {
        self.spokes.push(spoke);
        self
    }

    /// The next rollout wave: `spokes` start once every Application of the waves before is
    /// Synced and Healthy. With waves, every spoke is in exactly one.
    #[must_use]
    pub fn wave<I: Into<String>>(
        mut self,
        name: impl Into<String>,
        spokes: impl IntoIterator<Item = I>,
    ) -> Self {
        self.waves
            .push((name.into(), spokes.into_iter().map(Into::into).collect()));
        self
    }

    /// How long unregistering a spoke waits for the Applications that deploy to it (default
    /// 5 min).
    #[must_use]
    pub fn unregister_timeout(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The problems of the fleet's definition (each a build error of the stack).
    fn problems(&mut self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        let mut servers = BTreeMap::new();
        for s in &mut self.spokes {
            problems.append(&mut s.problems);
            let field = format!("fleet.spokes.{}", s.name);
            if let Err(p) = dns_label(&s.name) {
                problems.push(ConfigError::new(
                    None,
                    format!("{field}.name"),
                    p,
                    "name spokes with 1-63 lowercase letters, digits or `-`",
                ));
            }
            if !names.insert(s.name.clone()) {
                problems.push(ConfigError::new(
                    None,
                    format!("{field}.name"),
                    format!("two spokes are named `{}`", s.name),
                    "give each spoke its own name",
                ));
            }
            if let Some(server) = &s.server
                && let Some(other) = servers.insert(server.clone(), s.name.clone())
            {
                problems.push(ConfigError::new(
                    None,
                    format!("{field}.server"),
                    format!(
                        "spokes `{other}` and `{}` have the same API server {server}",
                        s.name
                    ),
                    "register each cluster once",
                ));
            }
        }
        let mut placed: BTreeMap<&str, &str> = BTreeMap::new();
        for (wave, spokes) in &self.waves {
            for s in spokes {
                if !names.contains(s) {
                    problems.push(ConfigError::new(None, format!("fleet.waves.{wave}"), format!("names the unknown spoke `{s}`"), format!("add the spoke with `Fleet::spoke` or remove it from the wave (spokes: {})", names.iter().cloned().collect::<Vec<_>>().join(", "))));
                } else if let Some(first) = placed.insert(s, wave) {
                    problems.push(ConfigError::new(
                        None,
                        format!("fleet.waves.{wave}"),
                        format!("spoke `{s}` is also in wave `{first}`"),
                        "put each spoke in one wave",
                    ));
                }
            }
        }
        if !self.waves.is_empty() {
            for s in &names {
                if !placed.contains_key(s.as_str()) {
                    problems.push(ConfigError::new(
                        None,
                        format!("fleet.spokes.{s}"),
                        "is in no wave",
                        "add it to one wave with `Fleet::wave`",
                    ));
                }
            }
        }
        problems
    }

    /// Adds the fleet to `stack`: for each spoke, its registration and the modules `each`
    /// adds for it (given the spoke's settings), then a gate after each wave. Problems of the
    /// definition (two spokes of one name or server, a wave naming an unknown spoke, a spoke in
    /// two waves or in none, a label that is not one) are reported by [`Stack::build`].
    pub fn add_to(
        mut self,
        stack: &mut Stack,
        mut each: impl FnMut(&mut SpokeScope<'_>, &S),
    ) -> FleetHandles {
        for p in self.problems() {
            stack.report(p);
        }
        let wave_of: BTreeMap<String, String> = self
            .waves
            .iter()
            .flat_map(|(w, spokes)| spokes.iter().map(move |s| (s.clone(), w.clone())))
            .collect();
        let mut handles = FleetHandles {
            spokes: BTreeMap::new(),
            waves: Vec::new(),
            order: Vec::new(),
        };
        let mut modules: BTreeMap<String, Vec<Dependency>> = BTreeMap::new();
        for spec in self.spokes {
            let mut scope = stack.scope(&spec.name);
            scope.include(&spec.cluster_module).allow(&self.hub_module);
            let registration = scope.add(Registration {
                name: spec.name.clone(),
                hub: self.hub.clone(),
                argocd: self.argocd.clone(),
                spoke: spec.cluster,
                auth: spec.auth,
                server: spec.server,
                wave: wave_of.get(&spec.name).cloned(),
                labels: spec.labels,
                values: spec.values,
                wait: self.wait,
            });
            let mut spoke = SpokeScope {
                scope,
                cluster: registration.clone(),
                argocd: self.argocd.clone(),
                added: vec![registration.dependency()],
            };
            each(&mut spoke, &spec.settings);
            modules.insert(spec.name.clone(), spoke.added);
            handles
                .order
                .push((spec.name.clone(), wave_of.get(&spec.name).cloned()));
            handles.spokes.insert(spec.name, registration);
        }
        // the spokes the definition no longer has: removed in order, alongside the rest
        stack.add(Sweep {
            hub: self.hub.clone(),
            argocd: self.argocd.clone(),
            registrations: handles
                .spokes
                .values()
                .map(|h| h.module_id().to_owned())
                .collect(),
        });
        let self_waves: Vec<String> = self.waves.iter().map(|(w, _)| w.clone()).collect();
        let mut previous: Option<Handle<WaveReport>> = None;
        for (order, (wave, spokes)) in self.waves.into_iter().enumerate() {
            let members: Vec<Dependency> = spokes
                .iter()
                .flat_map(|s| modules.get(s).cloned().unwrap_or_default())
                .collect();
            let gate = stack.add(WaveGate {
                id: format!("wave-{wave}"),
                modules: spokes
                    .iter()
                    .flat_map(|s| {
                        modules
                            .get(s)
                            .into_iter()
                            .flatten()
                            .map(move |d| (d.module().to_owned(), s.clone()))
                    })
                    .collect(),
                report: WaveReport {
                    wave,
                    order: order + 1,
                    spokes,
                    applications: Vec::new(),
                },
                hub: self.hub.clone(),
                argocd: self.argocd.clone(),
            });
            if let Some(previous) = &previous {
                stack.order(previous, &members);
            }
            stack.order(&members, &gate);
            handles.waves.push(gate.clone());
            previous = Some(gate);
        }
        let rank = |w: &Option<String>| {
            w.as_ref()
                .and_then(|w| self_waves.iter().position(|x| x == w))
                .unwrap_or(usize::MAX)
        };
        handles.order.sort_by_key(|(_, w)| rank(w));
        handles
    }
}
