//! The plumbing every chart-based module shares, in one place: the settings each module has
//! (chart, namespace, Argo CD project and destination, sync policy, Helm value overrides), their
//! validation, the Argo CD `Application` builder, Helm-style deep merge, ingress and TLS
//! settings, generated secrets, and the render → plan / apply / destroy steps.
//!
//! A module implements [`Component`] (what it renders from its resolved inputs) and gets its
//! [`Module`](devops_stack_core::Module) implementation from `component_module!`; the setters
//! every module shares come from `common_setters!`.

use std::collections::BTreeMap;

use devops_stack_core::argocd::{
    Application, ApplicationDestination, ApplicationSource, ApplicationSpec, AutomatedSync,
    Backoff, HelmSource, RetryStrategy, SyncPolicy,
};
use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterIssuer, ClusterRef, Hostnames, Ingress, RoleOwner, RoleRequest,
    ServiceAccount, WorkloadIdentityRef, WorkloadRole,
};
use devops_stack_core::k8s::ownership_labels;
use devops_stack_core::plan::unknown;
use devops_stack_core::validate::SYSTEM_NAMESPACES;
use devops_stack_core::{
    Capability, Context, Handle, Input, ModuleResult, NamespaceOwner, Needs, Phase, Planned,
    Resource, Secret, Validation,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::kube_prometheus_stack::ServiceMonitorCrds;

/// A Helm chart at a pinned version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartSource {
    /// The Helm repository URL (or an OCI registry).
    pub repo_url: String,
    /// The chart's name.
    pub chart: String,
    /// The chart version: semver, with an optional leading `v` (cert-manager's charts have one).
    pub version: String,
}

impl ChartSource {
    /// The chart `chart` of the repository `repo_url` at `version`.
    pub fn new(
        repo_url: impl Into<String>,
        chart: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        ChartSource {
            repo_url: repo_url.into(),
            chart: chart.into(),
            version: version.into(),
        }
    }

    fn validate(&self, v: &mut Validation) {
        let version = self.version.strip_prefix('v').unwrap_or(&self.version);
        if let Err(e) = semver::Version::parse(version) {
            v.error(
                "chart_version",
                format!("`{}` is not a semantic version ({e})", self.version),
                format!(
                    "pin an exact chart version of `{}` such as `1.2.3`",
                    self.chart
                ),
            );
        }
        if self.repo_url.is_empty() {
            v.error(
                "chart_repository",
                "is empty",
                "give the Helm repository URL of the chart (or of a mirror)",
            );
        }
    }

    /// An Argo CD source for this chart, with `release` and `values`.
    pub(crate) fn source(&self, release: &str, values: Value) -> ApplicationSource {
        ApplicationSource {
            repo_url: self.repo_url.clone(),
            chart: Some(self.chart.clone()),
            target_revision: Some(self.version.clone()),
            helm: Some(HelmSource {
                release_name: Some(release.to_owned()),
                values_object: Some(values),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Argo CD's automated sync settings of a module's Applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncSettings {
    /// Delete resources the chart no longer renders (default true).
    pub prune: bool,
    /// Revert changes made outside Argo CD (default true).
    pub self_heal: bool,
    /// Allow syncing to an empty set of resources (default false).
    pub allow_empty: bool,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            prune: true,
            self_heal: true,
            allow_empty: false,
        }
    }
}

/// The JSON type a Helm value must have, for the typed checks of overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    Integer,
    Object,
    Bool,
    String,
}

impl ValueKind {
    fn matches(self, v: &Value) -> bool {
        match self {
            ValueKind::Integer => v.is_i64() || v.is_u64(),
            ValueKind::Object => v.is_object(),
            ValueKind::Bool => v.is_boolean(),
            ValueKind::String => v.is_string(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ValueKind::Integer => "an integer",
            ValueKind::Object => "an object",
            ValueKind::Bool => "a boolean",
            ValueKind::String => "a string",
        }
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a floating-point number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deep-merges `patch` over `base` with Helm's semantics (RFC 7386): maps merge recursively,
/// other values replace, `null` deletes the key.
///
/// ```
/// use devops_stack_modules::merge_values;
/// use serde_json::json;
/// let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
/// merge_values(&mut v, &json!({"a": {"b": 3, "c": null}, "d": [2]}));
/// assert_eq!(v, json!({"a": {"b": 3}, "d": [2]}));
/// ```
pub fn merge_values(base: &mut Value, patch: &Value) {
    json_patch::merge(base, patch);
}

/// The settings every chart-based module shares. Set through each module's setters.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) id: String,
    pub(crate) cluster: Input<ClusterRef>,
    pub(crate) argocd: Input<ArgoCdTarget>,
    pub(crate) chart: ChartSource,
    pub(crate) release_name: String,
    pub(crate) namespace: String,
    pub(crate) project: Option<String>,
    pub(crate) destination_server: Option<String>,
    pub(crate) sync: SyncSettings,
    /// Helm value overrides, merged in order over the module's defaults.
    pub(crate) values: Vec<Value>,
    pub(crate) subdomain: Option<String>,
    pub(crate) service_monitors: Option<Input<ServiceMonitorCrds>>,
    /// Whether deleting the Application deletes what it deployed (Argo CD's resources finalizer).
    pub(crate) cascade: bool,
    /// Whether the module creates (and on destroy deletes) its target namespace.
    pub(crate) owns_namespace: bool,
    /// The Application's name when it is not the module's id (Argo CD's final phase takes over
    /// the bootstrap's release under its name).
    pub(crate) application: Option<String>,
}

impl Common {
    pub(crate) fn new(
        id: &str,
        cluster: Input<ClusterRef>,
        argocd: Input<ArgoCdTarget>,
        chart: ChartSource,
        namespace: &str,
    ) -> Self {
        Common {
            id: id.to_owned(),
            cluster,
            argocd,
            release_name: chart.chart.clone(),
            chart,
            namespace: namespace.to_owned(),
            project: None,
            destination_server: None,
            sync: SyncSettings::default(),
            values: Vec::new(),
            subdomain: None,
            service_monitors: None,
            cascade: true,
            owns_namespace: true,
            application: None,
        }
    }

    pub(crate) fn needs(&self, n: &mut Needs) {
        n.add(&self.cluster)
            .add(&self.argocd)
            .add(&self.service_monitors);
    }

    /// Checks the shared settings and the typed Helm value overrides.
    pub(crate) fn validate(&self, v: &mut Validation, typed: &[(&str, ValueKind)]) {
        self.chart.validate(v);
        v.dns_label("namespace", &self.namespace);
        v.provides(Capability::Namespace {
            name: self.namespace.clone(),
            owner: NamespaceOwner::Platform,
        });
        // named by the module's id as the stack has it (`<spoke>-<id>` in a fleet)
        v.provides(Capability::Application {
            name: v.module().to_owned(),
        });
        v.dns_label("release_name", &self.release_name);
        if let Some(p) = &self.project {
            v.dns_subdomain("project", p);
        }
        if let Some(s) = self.subdomain.as_deref().filter(|s| !s.is_empty()) {
            v.dns_subdomain("subdomain", s);
        }
        check_destination_server(v, self.destination_server.as_deref());
        for patch in &self.values {
            if !patch.is_object() {
                v.error(
                    "values",
                    format!("the override is {}, not an object", describe(patch)),
                    "pass Helm values as a JSON object, like `json!({\"replicas\": 2})`",
                );
                continue;
            }
            for (pointer, kind) in typed {
                if let Some(found) = patch.pointer(pointer).filter(|x| !x.is_null())
                    && !kind.matches(found)
                {
                    v.error(
                        format!("values{}", pointer.replace('/', ".")),
                        format!(
                            "is {} (`{found}`), but the chart expects {}",
                            describe(found),
                            kind.name()
                        ),
                        format!(
                            "set `{}` to {} or remove it from the overrides",
                            &pointer[1..].replace('/', "."),
                            kind.name()
                        ),
                    );
                }
            }
        }
    }

    /// Resolves the module's inputs for a step.
    pub(crate) fn env(&self, ctx: &Context) -> Result<Env> {
        let argocd = ctx.get(&self.argocd)?;
        self.env_with(ctx, argocd)
    }

    /// Resolves the module's inputs with an Argo CD target known otherwise (Argo CD itself).
    pub(crate) fn env_with(&self, ctx: &Context, argocd: ArgoCdTarget) -> Result<Env> {
        let cluster = ctx.get(&self.cluster)?;
        let monitors = match &self.service_monitors {
            Some(i) => Some(ctx.get(i)?),
            None => None,
        };
        Ok(Env {
            module: ctx.module_id().to_owned(),
            labels: ownership_labels(ctx.stack_name(), ctx.module_id()),
            hostnames: self.hostnames(&cluster),
            cluster,
            argocd,
            monitors,
            roles: BTreeMap::new(),
        })
    }

    /// How the module's hostnames are made on `cluster` (its subdomain applied).
    pub(crate) fn hostnames(&self, cluster: &ClusterRef) -> Hostnames {
        let hostnames = cluster.hostnames();
        match &self.subdomain {
            Some(s) => hostnames.subdomain(s.clone()),
            None => hostnames,
        }
    }

    /// The Helm values: `defaults`, then the ServiceMonitor settings from `monitors` when the
    /// stack has the monitoring CRDs, then the user's overrides.
    pub(crate) fn values(
        &self,
        env: &Env,
        mut defaults: Value,
        monitors: impl FnOnce(&ServiceMonitorCrds) -> Value,
    ) -> Value {
        if let Some(crds) = &env.monitors {
            merge_values(&mut defaults, &monitors(crds));
        }
        for patch in &self.values {
            merge_values(&mut defaults, patch);
        }
        defaults
    }

    /// The module's Argo CD Application deploying the chart with `values` (already merged).
    pub(crate) fn application(&self, env: &Env, values: Value) -> Value {
        let name = self.application.as_deref().unwrap_or(&env.module);
        self.application_of(env, name, &self.chart, &self.release_name, values)
    }

    /// Another Application of the module, named `name`, deploying `chart` as `release` into the
    /// module's namespace with the module's project, destination and sync settings.
    pub(crate) fn application_of(
        &self,
        env: &Env,
        name: &str,
        chart: &ChartSource,
        release: &str,
        values: Value,
    ) -> Value {
        let spec = ApplicationSpec {
            project: self
                .project
                .clone()
                .unwrap_or_else(|| env.argocd.project.clone()),
            source: Some(chart.source(release, values)),
            sources: Vec::new(),
            destination: ApplicationDestination {
                server: Some(
                    self.destination_server
                        .clone()
                        .unwrap_or_else(|| env.cluster.argocd_server().to_owned()),
                ),
                namespace: Some(self.namespace.clone()),
                name: None,
            },
            sync_policy: Some(SyncPolicy {
                automated: Some(AutomatedSync {
                    prune: self.sync.prune,
                    self_heal: self.sync.self_heal,
                    allow_empty: self.sync.allow_empty,
                }),
                sync_options: vec![
                    "CreateNamespace=true".into(),
                    "ServerSideApply=true".into(),
                    "SkipDryRunOnMissingResource=true".into(),
                ],
                retry: Some(RetryStrategy {
                    limit: 10,
                    backoff: Some(Backoff {
                        duration: "10s".into(),
                        factor: 2,
                        max_duration: "3m".into(),
                    }),
                }),
            }),
            ignore_differences: Vec::new(),
        };
        let mut app =
            Application::with_finalizer(name, &env.argocd.namespace, spec, env.labels.clone());
        if !self.cascade {
            app.metadata.finalizers = None;
        }
        to_json(&app)
    }

    /// The objects of a chart-based module: its namespace (unless a system namespace or not
    /// owned) and its Application.
    pub(crate) fn chart_objects(&self, env: &Env, values: Value) -> Vec<Value> {
        let mut objects = Vec::new();
        if self.owns_namespace && !SYSTEM_NAMESPACES.contains(&self.namespace.as_str()) {
            objects.push(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": env.labels},
            }));
        }
        objects.push(self.application(env, values));
        objects
    }
}

/// Checks an Argo CD destination server URL, when one is given.
pub(crate) fn check_destination_server(v: &mut Validation, server: Option<&str>) {
    if let Some(server) = server
        && !server.starts_with("https://")
    {
        v.error(
            "destination_server",
            format!("`{server}` is not an https:// URL"),
            "give the API server URL Argo CD knows the cluster by, like `https://kubernetes.default.svc`",
        );
    }
}

/// The name Helm charts give their main objects by default (`<chart>.fullname`): the release
/// name when it contains the chart's name, else `<release>-<chart>`, cut to 63 characters.
pub(crate) fn helm_fullname(release: &str, chart: &str) -> String {
    let name = if release.contains(chart) {
        release.to_owned()
    } else {
        format!("{release}-{chart}")
    };
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// Serializes a typed object for the apply engine.
pub(crate) fn to_json(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("typed Kubernetes objects serialize to JSON")
}

/// A module's resolved inputs during one step.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// The module's id as the stack has it (`<spoke>-<id>` in a fleet): it names the module's
    /// Argo CD Applications, which share the Argo CD namespace with every spoke's.
    pub(crate) module: String,
    pub(crate) cluster: ClusterRef,
    pub(crate) argocd: ArgoCdTarget,
    /// The ownership labels of the module's objects.
    pub(crate) labels: BTreeMap<String, String>,
    /// How hostnames are made (the module's subdomain applied).
    pub(crate) hostnames: Hostnames,
    /// The ServiceMonitor CRDs, when the module was given them.
    pub(crate) monitors: Option<ServiceMonitorCrds>,
    /// The workload roles the module asked for ([`Component::workload_roles`]), by service
    /// account: as planned offline, as made by the cloud on apply.
    pub(crate) roles: BTreeMap<ServiceAccount, WorkloadRole>,
}

impl Env {
    /// The hostname of `app`: `explicit` when set, else `<app>.<subdomain>.<cluster>.<base_domain>`.
    pub(crate) fn host(&self, app: &str, explicit: Option<&String>) -> String {
        explicit
            .cloned()
            .unwrap_or_else(|| self.hostnames.host(app))
    }

    /// The annotations the service account `sa` needs for its workload role (empty when the
    /// module asked for none for it).
    pub(crate) fn role_annotations(&self, sa: &ServiceAccount) -> BTreeMap<String, String> {
        self.roles
            .get(sa)
            .map(|r| r.annotations.clone())
            .unwrap_or_default()
    }

    /// The ownership labels and `extra` ones.
    fn labels_with(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        labels
    }

    /// A `Secret` with `data` as `stringData` (redacted in plans).
    pub(crate) fn secret<'a>(
        &self,
        name: &str,
        namespace: &str,
        extra_labels: &[(&str, &str)],
        data: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Value {
        let labels = self.labels_with(extra_labels);
        let data: BTreeMap<&str, &str> = data.into_iter().collect();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "stringData": data,
        })
    }

    /// A `ConfigMap` with extra labels.
    pub(crate) fn config_map(
        &self,
        name: &str,
        namespace: &str,
        extra_labels: &[(&str, &str)],
        data: Value,
    ) -> Value {
        let labels = self.labels_with(extra_labels);
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": data,
        })
    }
}

/// The ingress controller and the TLS issuer a module publishes its UIs through.
#[derive(Debug, Clone)]
pub(crate) struct Exposure {
    pub(crate) ingress: Input<Ingress>,
    pub(crate) issuer: Option<Input<ClusterIssuer>>,
}

impl Exposure {
    pub(crate) fn new(ingress: Input<Ingress>) -> Self {
        Exposure {
            ingress,
            issuer: None,
        }
    }

    pub(crate) fn needs(&self, n: &mut Needs) {
        n.add(&self.ingress).add(&self.issuer);
    }

    pub(crate) fn resolve(&self, ctx: &Context) -> Result<IngressSettings> {
        let ingress = ctx.get(&self.ingress)?;
        let issuer = match &self.issuer {
            Some(i) => Some(ctx.get(i)?),
            None => None,
        };
        Ok(IngressSettings {
            class_name: ingress.class_name.clone(),
            annotations: ingress.annotations_for(issuer.as_ref()),
            tls: issuer.is_some(),
        })
    }
}

/// How to write one ingress: class, annotations (with the issuer's), and whether to ask for TLS.
#[derive(Debug, Clone)]
pub(crate) struct IngressSettings {
    pub(crate) class_name: String,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) tls: bool,
}

impl IngressSettings {
    /// The `tls` list of an ingress for `host` (empty without an issuer); cert-manager writes
    /// the certificate to the secret `<app>-tls`.
    pub(crate) fn tls_list(&self, app: &str, host: &str) -> Value {
        if self.tls {
            json!([{"secretName": format!("{app}-tls"), "hosts": [host]}])
        } else {
            json!([])
        }
    }

    /// The scheme of the published URL.
    pub(crate) fn url(&self, host: &str) -> String {
        format!("{}://{host}", if self.tls { "https" } else { "http" })
    }
}

/// A secret of generated values the module keeps in the cluster, with the keys it holds.
#[derive(Debug, Clone)]
pub(crate) struct GeneratedSecret {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) keys: Vec<String>,
}

/// The values of the module's [`GeneratedSecret`]s: placeholders while planning; on apply, the
/// values already in the cluster, and new random ones for missing keys (so a re-apply keeps them).
#[derive(Debug, Default)]
pub(crate) struct Secrets(BTreeMap<(String, String), Secret>);

/// The length of generated secrets.
const GENERATED_LEN: usize = 32;

impl Secrets {
    fn placeholders(module: &str, wanted: &[GeneratedSecret]) -> Self {
        let mut s = Secrets::default();
        for g in wanted {
            for k in &g.keys {
                s.0.insert(
                    (g.name.clone(), k.clone()),
                    Secret::new(unknown(module, &format!("secret.{}.{k}", g.name))),
                );
            }
        }
        s
    }

    async fn load(client: &kube::Client, wanted: &[GeneratedSecret]) -> Result<Self> {
        use k8s_openapi::api::core::v1::Secret as KubeSecret;
        let mut s = Secrets::default();
        for g in wanted {
            let api: kube::Api<KubeSecret> = kube::Api::namespaced(client.clone(), &g.namespace);
            let existing = api.get_opt(&g.name).await.map_err(|e| {
                Error::kube(format!("reading Secret {}/{}", g.namespace, g.name), e)
            })?;
            let data = existing.and_then(|x| x.data).unwrap_or_default();
            for k in &g.keys {
                let value = data
                    .get(k)
                    .and_then(|b| String::from_utf8(b.0.clone()).ok())
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| Secret::generate(GENERATED_LEN), Secret::new);
                s.0.insert((g.name.clone(), k.clone()), value);
            }
        }
        Ok(s)
    }

    /// The value of `key` of the generated secret `name`.
    ///
    /// # Panics
    /// When the module did not declare that key in [`Component::generated_secrets`] (a bug).
    pub(crate) fn get(&self, name: &str, key: &str) -> &Secret {
        self.0
            .get(&(name.to_owned(), key.to_owned()))
            .unwrap_or_else(|| panic!("secret {name}/{key} was not declared in generated_secrets"))
    }
}

/// What a module renders: its output and the objects the apply engine applies.
#[derive(Debug)]
pub(crate) struct Rendered<O> {
    pub(crate) output: O,
    pub(crate) objects: Vec<Value>,
}

/// A module deployed from resolved inputs to rendered objects. The render is the same for
/// plan and apply, so the offline plan shows exactly what apply sends.
pub(crate) trait Component: Send + Sync + 'static {
    /// The typed output.
    type Output: Serialize + Send + Sync + 'static;
    /// The component kind.
    const KIND: &'static str;
    /// The phase.
    const PHASE: Phase = Phase::Main;

    /// The shared settings.
    fn common(&self) -> &Common;

    /// Inputs beyond the shared ones.
    fn needs_more(&self, _n: &mut Needs) {}

    /// Typed checks of Helm value overrides: JSON pointers and the type the chart expects.
    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[]
    }

    /// Checks beyond the shared ones; declares capabilities.
    fn validate_more(&self, _v: &mut Validation) {}

    /// Secrets of generated values the module keeps in the cluster.
    fn generated_secrets(&self, _env: &Env) -> Vec<GeneratedSecret> {
        Vec::new()
    }

    /// The cloud roles the module's workloads need (default: none). Plan shows them, apply
    /// makes them before the objects (their annotations are in [`Env::roles`] for
    /// [`Component::render`]), destroy deletes them after the objects.
    fn workload_roles(&self, _ctx: &Context) -> Result<Vec<WantedRole>> {
        Ok(Vec::new())
    }

    /// Checks what only the resolved inputs can say (a hostname inside a DNS zone), before any
    /// side effect of plan or apply (default: nothing).
    fn check(&self, _ctx: &Context, _env: &Env) -> Result<()> {
        Ok(())
    }

    /// Cloud resources the module makes outside the engine besides its roles (a DNS record),
    /// for the offline plan (default: none).
    fn planned_cloud(&self, _ctx: &Context, _env: &Env) -> Result<Vec<Resource>> {
        Ok(Vec::new())
    }

    /// Runs after the engine applied the objects and they are ready, and may complete the
    /// output (default: the output as rendered).
    fn after_apply(
        &self,
        _ctx: &Context,
        _env: &Env,
        _client: &kube::Client,
        output: Self::Output,
    ) -> impl std::future::Future<Output = Result<Self::Output>> + Send {
        async move { Ok(output) }
    }

    /// Deletes, before the module's objects, the cloud resources it made outside the engine
    /// (a DNS record). Runs even when the run abandons the cluster's objects: what it deletes
    /// is outside the cluster (default: nothing).
    fn release(
        &self,
        _ctx: &Context,
        _cluster: &ClusterRef,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Runs before the engine deletes the module's objects (default: nothing).
    fn before_destroy(
        &self,
        _ctx: &Context,
        _client: &kube::Client,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Renders the output and the objects.
    fn render(&self, ctx: &Context, env: &Env, secrets: &Secrets)
    -> Result<Rendered<Self::Output>>;
}

/// A workload role a component asks for: the workload identity that makes it, and what for.
#[derive(Debug, Clone)]
pub(crate) struct WantedRole {
    pub(crate) identity: WorkloadIdentityRef,
    pub(crate) request: RoleRequest,
}

impl WantedRole {
    pub(crate) fn new(identity: WorkloadIdentityRef, request: RoleRequest) -> Self {
        WantedRole { identity, request }
    }
}

/// The offline plan of a component: its roles, its rendered objects (secrets as placeholders)
/// and its other cloud resources.
pub(crate) async fn plan<C: Component>(c: &C, ctx: &Context) -> ModuleResult<Planned<C::Output>> {
    let mut env = c.common().env(ctx)?;
    c.check(ctx, &env)?;
    let owner = RoleOwner::of(ctx);
    let mut resources = Vec::new();
    for w in c.workload_roles(ctx)? {
        resources.push(w.identity.planned_resource(&owner, &w.request));
        env.roles.insert(
            w.request.service_account.clone(),
            w.identity.planned_role(&owner, &w.request),
        );
    }
    let secrets = Secrets::placeholders(ctx.module_id(), &c.generated_secrets(&env));
    let r = c.render(ctx, &env, &secrets)?;
    resources.extend(
        r.objects
            .iter()
            .map(|o| Resource::kubernetes(crate::fleet::cluster_of(&env.cluster, o), o)),
    );
    resources.extend(c.planned_cloud(ctx, &env)?);
    Ok(Planned::new(r.output).with_resources(resources))
}

/// Applies a component: checks its inputs, makes its workload roles, loads or generates its
/// secrets, renders, hands the objects to the engine, then runs its `after_apply`.
pub(crate) async fn apply<C: Component>(c: &C, ctx: &Context) -> ModuleResult<C::Output> {
    let env = c.common().env(ctx)?;
    let cluster = env.cluster.clone();
    Ok(apply_with(c, ctx, env)
        .await
        .map_err(|e| e.reach(&*cluster))?)
}

/// [`apply`] with the module's resolved inputs.
async fn apply_with<C: Component>(c: &C, ctx: &Context, mut env: Env) -> Result<C::Output> {
    c.check(ctx, &env)?;
    let wanted = c.workload_roles(ctx)?;
    let deployer = crate::fleet::Deployers::for_module(ctx, &env.cluster).await?;
    let secrets = Secrets::load(deployer.client(), &c.generated_secrets(&env)).await?;
    let owner = RoleOwner::of(ctx);
    for w in &wanted {
        let sa = &w.request.service_account;
        ctx.progress(format!(
            "ensuring the workload role of service account {sa}"
        ));
        let role = w
            .identity
            .ensure_role(&owner, &w.request)
            .await
            .map_err(|e| Error::cloud(format!("ensuring the role of service account {sa}"), e))?;
        env.roles.insert(sa.clone(), role);
    }
    let r = c.render(ctx, &env, &secrets)?;
    ctx.progress(format!("applying {} objects", r.objects.len()));
    deployer.apply(r.objects).await?;
    c.after_apply(ctx, &env, deployer.client(), r.output).await
}

/// Destroys a component: what it made outside the engine first (even when the run abandons the
/// cluster's objects), then its own step, then the engine deletes its inventory (Applications
/// with their resources finalizer, so that what they deployed goes too), then its workload
/// roles (cloud resources: deleted whether or not the cluster's objects were abandoned).
pub(crate) async fn destroy<C: Component>(c: &C, ctx: &Context) -> ModuleResult<()> {
    let cluster = ctx.get(&c.common().cluster)?;
    Ok(destroy_on(c, ctx, &cluster)
        .await
        .map_err(|e| e.reach(&*cluster))?)
}

/// [`destroy`] on the module's cluster.
async fn destroy_on<C: Component>(c: &C, ctx: &Context, cluster: &ClusterRef) -> Result<()> {
    let wanted = c.workload_roles(ctx)?;
    let deployer = crate::fleet::Deployers::for_module(ctx, cluster).await?;
    c.release(ctx, cluster).await?;
    if deployer.abandoned().is_none() {
        c.before_destroy(ctx, deployer.client()).await?;
    }
    deployer.destroy().await?;
    let owner = RoleOwner::of(ctx);
    for w in wanted {
        let sa = &w.request.service_account;
        w.identity
            .delete_role(&owner, sa)
            .await
            .map_err(|e| Error::cloud(format!("deleting the role of service account {sa}"), e))?;
    }
    Ok(())
}

/// The monitoring CRDs as an input, from their module's handle.
pub(crate) fn crds_input(h: &Handle<ServiceMonitorCrds>) -> Input<ServiceMonitorCrds> {
    h.input()
}

/// Implements `Module` for a [`Component`].
macro_rules! component_module {
    ([$($generics:tt)*] $t:ty, $out:ty) => {
        impl<$($generics)*> devops_stack_core::Module for $t {
            type Output = $out;

            fn id(&self) -> &str {
                &$crate::common::Component::common(self).id
            }

            fn kind(&self) -> &'static str {
                <$t as $crate::common::Component>::KIND
            }

            fn phase(&self) -> devops_stack_core::Phase {
                <$t as $crate::common::Component>::PHASE
            }

            fn needs(&self, n: &mut devops_stack_core::Needs) {
                $crate::common::Component::common(self).needs(n);
                $crate::common::Component::needs_more(self, n);
            }

            fn validate(&self, v: &mut devops_stack_core::Validation) {
                $crate::common::Component::common(self)
                    .validate(v, $crate::common::Component::typed_values(self));
                $crate::common::Component::validate_more(self, v);
            }

            async fn plan(
                &self,
                ctx: &devops_stack_core::Context,
            ) -> devops_stack_core::ModuleResult<devops_stack_core::Planned<Self::Output>> {
                $crate::common::plan(self, ctx).await
            }

            async fn apply(
                &self,
                ctx: &devops_stack_core::Context,
            ) -> devops_stack_core::ModuleResult<Self::Output> {
                $crate::common::apply(self, ctx).await
            }

            async fn destroy(
                &self,
                ctx: &devops_stack_core::Context,
            ) -> devops_stack_core::ModuleResult<()> {
                $crate::common::destroy(self, ctx).await
            }
        }
    };
    ($t:ty, $out:ty) => {
        $crate::common::component_module!([] $t, $out);
    };
}

/// The setters of modules with a [`Sizing`] (their struct has a `sizing` field).
macro_rules! sizing_setters {
    ($t:ty) => {
        impl $t {
            /// The number of replicas (the default is in the module's documentation).
            #[must_use]
            pub fn replicas(mut self, n: u32) -> Self {
                self.sizing.replicas = n;
                self
            }

            /// The compute resources (the default is in the module's documentation).
            #[must_use]
            pub fn resources(mut self, resources: $crate::Resources) -> Self {
                self.sizing.resources = resources;
                self
            }
        }
    };
}

/// The setters every chart-based module shares (its struct has a `common: Common` field).
macro_rules! common_setters {
    ([$($generics:tt)*] $t:ty) => {
        impl<$($generics)*> $t {
            /// Another module id (also the Argo CD Application's name).
            #[must_use]
            pub fn id(mut self, id: impl Into<String>) -> Self {
                self.common.id = id.into();
                self
            }

            /// Another chart version (must be semver).
            #[must_use]
            pub fn chart_version(mut self, version: impl Into<String>) -> Self {
                self.common.chart.version = version.into();
                self
            }

            /// Another Helm repository for the chart (a mirror).
            #[must_use]
            pub fn chart_repository(mut self, url: impl Into<String>) -> Self {
                self.common.chart.repo_url = url.into();
                self
            }

            /// Another target namespace.
            #[must_use]
            pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
                self.common.namespace = namespace.into();
                self
            }

            /// Another Helm release name.
            #[must_use]
            pub fn release_name(mut self, name: impl Into<String>) -> Self {
                self.common.release_name = name.into();
                self
            }

            /// Another Argo CD project (default: the Argo CD module's project).
            #[must_use]
            pub fn project(mut self, project: impl Into<String>) -> Self {
                self.common.project = Some(project.into());
                self
            }

            /// Another destination cluster, by the API server URL Argo CD knows it by (default:
            /// the cluster's `argocd_server()`).
            #[must_use]
            pub fn destination_server(mut self, server: impl Into<String>) -> Self {
                self.common.destination_server = Some(server.into());
                self
            }

            /// Other automated sync settings.
            #[must_use]
            pub fn sync(mut self, sync: $crate::SyncSettings) -> Self {
                self.common.sync = sync;
                self
            }

            /// Whether Argo CD prunes resources the chart no longer renders (default true).
            #[must_use]
            pub fn prune(mut self, on: bool) -> Self {
                self.common.sync.prune = on;
                self
            }

            /// Whether Argo CD reverts changes made outside it (default true).
            #[must_use]
            pub fn self_heal(mut self, on: bool) -> Self {
                self.common.sync.self_heal = on;
                self
            }

            /// Whether Argo CD may sync to an empty set of resources (default false).
            #[must_use]
            pub fn allow_empty(mut self, on: bool) -> Self {
                self.common.sync.allow_empty = on;
                self
            }

            /// Helm value overrides, deep-merged over the defaults with Helm's semantics (maps
            /// merge, other values replace, `null` deletes). Several calls apply in order.
            #[must_use]
            pub fn values(mut self, overrides: serde_json::Value) -> Self {
                self.common.values.push(overrides);
                self
            }

            /// Another subdomain for this module's hostnames (default `apps`; empty for none).
            #[must_use]
            pub fn subdomain(mut self, subdomain: impl Into<String>) -> Self {
                self.common.subdomain = Some(subdomain.into());
                self
            }

            /// Enables the component's ServiceMonitors from the first run, with the CRDs of the
            /// [`PrometheusOperatorCrds`]($crate::PrometheusOperatorCrds) module.
            #[must_use]
            pub fn service_monitors(
                mut self,
                crds: &devops_stack_core::Handle<$crate::kube_prometheus_stack::ServiceMonitorCrds>,
            ) -> Self {
                self.common.service_monitors = Some($crate::common::crds_input(crds));
                self
            }
        }
    };
    ($t:ty) => {
        $crate::common::common_setters!([] $t);
    };
}

pub(crate) use {common_setters, component_module, sizing_setters};

/// Compute resources of a container: requests and limits by resource name (`cpu`, `memory`).
///
/// ```
/// use devops_stack_modules::Resources;
/// let r = Resources::new().request("cpu", "100m").request("memory", "128Mi").limit("memory", "256Mi");
/// assert_eq!(r.to_value()["limits"]["memory"], "256Mi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resources {
    /// Requests, like `cpu: 100m`.
    pub requests: BTreeMap<String, String>,
    /// Limits, like `memory: 256Mi`.
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    /// No requests and no limits.
    pub fn new() -> Self {
        Resources::default()
    }

    /// Requests `quantity` of `resource`.
    #[must_use]
    pub fn request(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.requests.insert(resource.into(), quantity.into());
        self
    }

    /// Limits `resource` to `quantity`.
    #[must_use]
    pub fn limit(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.limits.insert(resource.into(), quantity.into());
        self
    }

    /// The Kubernetes `resources` object.
    pub fn to_value(&self) -> Value {
        to_json(self)
    }

    /// Small defaults for a controller: 100m CPU and `memory` requested, `memory` × 2 as limit.
    pub(crate) fn small(memory_mi: u32) -> Self {
        Resources::new()
            .request("cpu", "100m")
            .request("memory", format!("{memory_mi}Mi"))
            .limit("memory", format!("{}Mi", memory_mi * 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;

    #[tokio::test]
    async fn reapply_keeps_existing_secrets_and_generates_missing_ones() {
        let (client, mut server) = mock::client();
        let wanted = vec![GeneratedSecret {
            name: "kc-secrets".into(),
            namespace: "keycloak".into(),
            keys: vec!["client-argocd".into(), "client-grafana".into()],
        }];
        let load = tokio::spawn(async move { Secrets::load(&client, &wanted).await.unwrap() });
        server
            .expect(
                "GET",
                "/api/v1/namespaces/keycloak/secrets/kc-secrets",
                200,
                mock::secret("keycloak", "kc-secrets", &[("client-argocd", "kept-value")]),
            )
            .await;
        let secrets = load.await.unwrap();
        assert_eq!(
            secrets.get("kc-secrets", "client-argocd").expose(),
            "kept-value"
        );
        let generated = secrets.get("kc-secrets", "client-grafana").expose();
        assert_eq!(generated.len(), GENERATED_LEN);
    }

    #[tokio::test]
    async fn first_apply_generates_everything() {
        let (client, mut server) = mock::client();
        let wanted = vec![GeneratedSecret {
            name: "s".into(),
            namespace: "n".into(),
            keys: vec!["a".into()],
        }];
        let load = tokio::spawn(async move { Secrets::load(&client, &wanted).await.unwrap() });
        server
            .expect(
                "GET",
                "/api/v1/namespaces/n/secrets/s",
                404,
                mock::not_found(),
            )
            .await;
        assert_eq!(
            load.await.unwrap().get("s", "a").expose().len(),
            GENERATED_LEN
        );
    }

    #[test]
    fn helm_fullname_is_the_charts_default_name() {
        assert_eq!(helm_fullname("traefik", "traefik"), "traefik");
        assert_eq!(helm_fullname("edge-traefik", "traefik"), "edge-traefik");
        assert_eq!(helm_fullname("edge", "traefik"), "edge-traefik");
        assert_eq!(helm_fullname("cm", "cert-manager"), "cm-cert-manager");
        let long = "a".repeat(60);
        assert_eq!(helm_fullname(&long, "traefik").len(), 63);
        assert_eq!(helm_fullname(&"b".repeat(62), "x"), "b".repeat(62));
    }

    #[test]
    fn plans_show_placeholders() {
        let wanted = [GeneratedSecret {
            name: "s".into(),
            namespace: "n".into(),
            keys: vec!["a".into()],
        }];
        let s = Secrets::placeholders("kc", &wanted);
        assert_eq!(
            s.get("s", "a").expose(),
            "(known after apply: kc.secret.s.a)"
        );
    }
}

/// How many replicas of a component run and what each requests.
#[derive(Debug, Clone)]
pub(crate) struct Sizing {
    pub(crate) replicas: u32,
    pub(crate) resources: Resources,
}

impl Sizing {
    pub(crate) fn new(replicas: u32, resources: Resources) -> Self {
        Sizing {
            replicas,
            resources,
        }
    }

    /// Refuses zero replicas.
    pub(crate) fn validate(&self, v: &mut Validation) {
        if self.replicas == 0 {
            v.error("replicas", "is 0", "run at least one replica");
        }
    }
}
