//! GitOps for application teams: a [`Team`] is a tenant of the platform, safe by default.
//!
//! # What a team gets
//! - **Namespaces** ([`TeamNamespace`]), created by the platform before any of the team's
//!   Applications syncs, each with a ResourceQuota `team-quota` ([`Quota`]), a LimitRange
//!   `team-limits` ([`Limits`]) and a baseline NetworkPolicy `team-baseline`
//!   ([`NetworkBaseline`]: by default only the namespace itself and the ingress controller's
//!   namespace may connect). Two teams claiming one namespace, or a team claiming a namespace of
//!   a platform module or of Kubernetes, is an error of [`Stack::build`](devops_stack_core::Stack::build).
//! - **An AppProject** named after the team, deny by default: destinations exactly the team's
//!   namespaces on its cluster, no cluster-scoped kind, ResourceQuota, LimitRange,
//!   NetworkPolicy, Role and RoleBinding on the namespace-resource deny-list (RBAC can be
//!   allowed with [`Team::namespaced_rbac`]), source repositories only the team's,
//!   and optional [`SyncWindow`]s whose cron schedules are checked at build time.
//! - **Access** ([`AccessRole`]): each identity group of the stack's OIDC provider gets an Argo
//!   CD project role (`p, proj:<team>:<role>, applications, <action>, <team>/*, allow`) and a
//!   RoleBinding to the Role `team-<role>` in each team namespace. No role may change the
//!   namespace's quota, limits or NetworkPolicies (the built-in `edit` ClusterRole can, so the
//!   team's Roles are the library's own). CI can get a project-role token
//!   ([`Team::ci_token`]), kept in the Secret `<id>-ci-token` of Argo CD's namespace.
//! - **Repositories** ([`Repository`], [`RepoAccess`]: public, HTTPS token, SSH key, GitHub
//!   App), each rendered as an Argo CD `repository` Secret scoped to the team's project, so no
//!   other project can use its credentials; ApplicationSet git generators read them too (Argo
//!   CD 3 passes a set's literal project to the repo-server). A URL prefix (an Argo CD
//!   credential template, which Argo CD hands to every project) is refused unless shared by
//!   opt-in ([`Repository::share_with_every_project`]). Secret material is a
//!   [`Secret`] or a key of an existing Kubernetes Secret
//!   ([`SecretSource`]), read at apply time; it never appears in plans, diffs, events, errors or
//!   the stack's state.
//! - **Delivery**: [`App`]s (one Application each) and [`AppSet`]s (directory, file and
//!   pull-request generators), always in the team's project and namespaces, optionally
//!   published through the stack's ingress controller with TLS from its issuer.
//!
//! # Inputs
//! The cluster and Argo CD, in [`Team::new`]; the ingress (any ingress controller's
//! `Input<Ingress>`, which names its class and namespace) and issuer for published apps
//! ([`Team::ingress`], [`Team::issuer`]); the bootstrap Argo CD for a CI token.
//!
//! # Outputs
//! [`TeamOutput`]: the project, the namespaces, the published URLs and the CI token.
//!
//! # Example
//! ```
//! use devops_stack_core::interfaces::IdentityGroup;
//! use devops_stack_modules::team::*;
//! # fn wire(cluster: devops_stack_core::Input<devops_stack_core::interfaces::ClusterRef>,
//! #         argocd: devops_stack_core::Input<devops_stack_core::interfaces::ArgoCdTarget>) {
//! let repo = "https://github.com/acme/shop.git";
//! let team = Team::new("shop", cluster, argocd)
//!     .namespace(TeamNamespace::new("shop"))
//!     .namespace(TeamNamespace::new("shop-staging"))
//!     .access(AccessRole::Deployer, IdentityGroup::external("shop-deployers"))
//!     .repository(Repository::new(repo, RepoAccess::Public))
//!     .app(App::new("storefront", repo, "shop").path("deploy"))
//!     .application_set(AppSet::directories("services", repo, "shop-staging", ["services/*"]));
//! # let _ = team; }
//! ```

mod delivery;
mod namespaces;
mod project;
mod repository;

use std::collections::BTreeMap;

use devops_stack_core::argocd::{AppProject, AppProjectSpec, ApplicationDestination};
use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterIssuer, ClusterOidc, ClusterRef, Hostnames, IdentityGroup, Ingress,
};
use devops_stack_core::k8s::{Deployer, ownership_labels};
use devops_stack_core::plan::unknown;
use devops_stack_core::validate::SYSTEM_NAMESPACES;
use devops_stack_core::{
    Capability, Context, Handle, Input, Module, ModuleResult, NamespaceOwner, Needs, Planned,
    Resource, Secret, Validation,
};
use serde::Serialize;
use serde_json::{Value, json};

pub use delivery::{App, AppSet, AppSync, Forge, Generator, Manifests, Publish};
pub use namespaces::{Limits, NetworkBaseline, Quota, TeamNamespace};
pub use project::{AccessRole, SyncWindow, WindowKind};
pub use repository::{CREDENTIALS_SCOPE, RepoAccess, Repository, SecretSource};

use crate::argocd::{ArgoCdOutput, TokenIssuer};
use crate::error::Result;
use delivery::Target;

/// The label every object of a team carries, with the team's name.
pub const TEAM_LABEL: &str = "devops-stack.io/team";

/// The label by which Argo CD finds its Secrets (`repository`, `repo-creds`, `scm-creds`).
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";

/// The project role of CI's token.
pub const CI_ROLE: &str = "ci";

/// What a team outputs.
#[derive(Debug, Clone, Serialize)]
pub struct TeamOutput {
    /// The team's name.
    pub name: String,
    /// Its Argo CD project.
    pub project: String,
    /// Its namespaces.
    pub namespaces: Vec<String>,
    /// The URLs of its published apps, by app name.
    pub urls: BTreeMap<String, String>,
    /// A token of the project role `ci`, when asked for ([`Team::ci_token`]).
    pub ci_token: Option<Secret>,
}

/// An application team: its namespaces, AppProject, access, repositories and deliveries.
/// See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Team {
    id: String,
    name: String,
    cluster: Input<ClusterRef>,
    argocd: Input<ArgoCdTarget>,
    namespaces: Vec<TeamNamespace>,
    access: Vec<(AccessRole, IdentityGroup)>,
    kubernetes_group_prefix: Option<Input<String>>,
    repositories: Vec<Repository>,
    sync_windows: Vec<SyncWindow>,
    apps: Vec<App>,
    app_sets: Vec<AppSet>,
    ingress: Option<Input<Ingress>>,
    issuer: Option<Input<ClusterIssuer>>,
    ci: Option<(AccessRole, Input<ArgoCdOutput>)>,
    destination_server: Option<String>,
    namespaced_rbac: bool,
}

impl Team {
    /// The team `name` (also its project's name; the module id is `team-<name>`) on
    /// `cluster`, its Applications managed by `argocd`. Add at least one namespace.
    pub fn new(
        name: impl Into<String>,
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        let name = name.into();
        Team {
            id: format!("team-{name}"),
            name,
            cluster: cluster.into(),
            argocd: argocd.into(),
            namespaces: Vec::new(),
            access: Vec::new(),
            kubernetes_group_prefix: None,
            repositories: Vec::new(),
            sync_windows: Vec::new(),
            apps: Vec::new(),
            app_sets: Vec::new(),
            ingress: None,
            issuer: None,
            ci: None,
            destination_server: None,
            namespaced_rbac: false,
        }
    }

    /// Another module id (default `team-<name>`).
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Adds a namespace of the team.
    #[must_use]
    pub fn namespace(mut self, namespace: TeamNamespace) -> Self {
        self.namespaces.push(namespace);
        self
    }

    /// Gives `group` the access `role`.
    #[must_use]
    pub fn access(mut self, role: AccessRole, group: IdentityGroup) -> Self {
        self.access.push((role, group));
        self
    }

    /// The prefix the API server puts before group names of OIDC tokens, for a cluster whose
    /// API server is configured outside the stack (its `--oidc-groups-prefix` or
    /// `AuthenticationConfiguration`'s `claimMappings.groups.prefix`; default none), used in
    /// the RoleBindings' subjects. For a cluster the stack makes trust its provider, use
    /// [`Team::cluster_oidc`] instead.
    #[must_use]
    pub fn kubernetes_group_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.kubernetes_group_prefix = Some(Input::value(prefix.into()));
        self
    }

    /// How the cluster's API server authenticates the stack's OIDC tokens (an output such as
    /// `EksOidcIdentityProvider`'s): the RoleBindings' group subjects get its groups prefix,
    /// and the team runs after the cluster trusts the provider.
    #[must_use]
    pub fn cluster_oidc(mut self, oidc: impl Into<Input<ClusterOidc>>) -> Self {
        self.kubernetes_group_prefix =
            Some(oidc.into().map(|o: &ClusterOidc| o.groups_prefix.clone()));
        self
    }

    /// Adds a repository the team deploys from.
    #[must_use]
    pub fn repository(mut self, repository: Repository) -> Self {
        self.repositories.push(repository);
        self
    }

    /// Adds a sync window to the team's project.
    #[must_use]
    pub fn sync_window(mut self, window: SyncWindow) -> Self {
        self.sync_windows.push(window);
        self
    }

    /// Adds an Application.
    #[must_use]
    pub fn app(mut self, app: App) -> Self {
        self.apps.push(app);
        self
    }

    /// Adds an ApplicationSet.
    #[must_use]
    pub fn application_set(mut self, set: AppSet) -> Self {
        self.app_sets.push(set);
        self
    }

    /// Publishes apps through this ingress (an ingress controller's handle, like `&traefik`),
    /// and lets its controller's namespace through the baseline NetworkPolicy.
    #[must_use]
    pub fn ingress(mut self, ingress: impl Into<Input<Ingress>>) -> Self {
        self.ingress = Some(ingress.into());
        self
    }

    /// Gets TLS certificates for published apps from this cluster issuer.
    #[must_use]
    pub fn issuer(mut self, issuer: Input<ClusterIssuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// Issues CI a token of the project role `ci`, with the rights of `role`, through the API
    /// of the bootstrap `argocd`; kept in the Secret `<id>-ci-token` of Argo CD's namespace so
    /// that a re-apply returns the same token.
    #[must_use]
    pub fn ci_token(mut self, role: AccessRole, argocd: &Handle<ArgoCdOutput>) -> Self {
        self.ci = Some((role, argocd.input()));
        self
    }

    /// Lets the team's Applications create Roles and RoleBindings in its namespaces (default
    /// false). With it, a team can bind itself any ClusterRole in its namespaces, `admin`
    /// included, and so change its own quota, limits and NetworkPolicies: allow it only to
    /// teams trusted with that.
    #[must_use]
    pub fn namespaced_rbac(mut self, allow: bool) -> Self {
        self.namespaced_rbac = allow;
        self
    }

    /// Another destination cluster, by the API server URL Argo CD knows it by (default: the
    /// cluster's `argocd_server()`).
    #[must_use]
    pub fn destination_server(mut self, server: impl Into<String>) -> Self {
        self.destination_server = Some(server.into());
        self
    }

    fn ci_secret_name(&self) -> String {
        format!("{}-ci-token", self.id)
    }

    fn namespace_names(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(TeamNamespace::name)
    }

    fn owns(&self, namespace: &str) -> bool {
        self.namespace_names().any(|n| n == namespace)
    }

    fn has_repository(&self, url: &str) -> bool {
        self.repositories.iter().any(|r| r.covers(url))
    }

    fn check_delivery(&self, v: &mut Validation, field: &str, repo_url: &str, namespace: &str) {
        if !self.owns(namespace) {
            v.error(
                format!("{field}.namespace"),
                format!(
                    "`{namespace}` is not a namespace of team `{}` (its namespaces: {})",
                    self.name,
                    self.namespace_names().collect::<Vec<_>>().join(", ")
                ),
                "deploy into one of the team's namespaces, or add the namespace to the team with `.namespace(TeamNamespace::new(..))`",
            );
        }
        if !self.has_repository(repo_url) {
            v.error(
                format!("{field}.repo_url"),
                format!("`{repo_url}` is not a repository of team `{}`", self.name),
                "add it to the team with `.repository(Repository::new(..))`",
            );
        }
    }

    /// Resolves the inputs: the environment of a render.
    fn env(&self, ctx: &Context) -> Result<TeamEnv> {
        let cluster = ctx.get(&self.cluster)?;
        let argocd = ctx.get(&self.argocd)?;
        let ingress = match &self.ingress {
            Some(i) => Some(ctx.get(i)?),
            None => None,
        };
        let issuer = match &self.issuer {
            Some(i) => Some(ctx.get(i)?),
            None => None,
        };
        let server = self
            .destination_server
            .clone()
            .unwrap_or_else(|| cluster.argocd_server().to_owned());
        if self.owns(&argocd.namespace) {
            return Err(devops_stack_core::Error::Invalid(vec![
                devops_stack_core::ConfigError::new(
                    Some(&self.id),
                    "namespaces",
                    format!("`{}` is Argo CD's namespace", argocd.namespace),
                    "give the team a namespace of its own, not the platform's",
                ),
            ])
            .into());
        }
        let group_prefix = match &self.kubernetes_group_prefix {
            Some(p) => ctx.get(p)?,
            None => String::new(),
        };
        let mut labels = ownership_labels(ctx.stack_name(), ctx.module_id());
        labels.insert(TEAM_LABEL.into(), self.name.clone());
        Ok(TeamEnv {
            group_prefix,
            hostnames: cluster.hostnames(),
            cluster,
            argocd,
            ingress,
            issuer,
            server,
            labels,
        })
    }

    /// Every object of the team. Secret material is read through `client` (placeholders when
    /// planning), `jwt_tokens` are the tokens Argo CD recorded on the live project's roles, and
    /// `ci_token` the CI token to keep.
    async fn render(
        &self,
        ctx: &Context,
        env: &TeamEnv,
        client: Option<&kube::Client>,
        jwt_tokens: &BTreeMap<String, Vec<Value>>,
        ci_token: Option<&Secret>,
    ) -> Result<Vec<Value>> {
        let labels = &env.labels;
        let mut objects = Vec::new();
        if let Some(token) = ci_token {
            objects.push(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": self.ci_secret_name(), "namespace": env.argocd.namespace, "labels": labels},
                "stringData": {"token": token.expose()},
            }));
        }
        let ingress_ns = env.ingress.as_ref().map(|i| i.namespace.as_str());
        for ns in &self.namespaces {
            objects.extend(ns.objects(labels, ingress_ns));
        }
        objects.push(self.project(env, jwt_tokens));
        objects.extend(self.rbac(env));
        for (i, repo) in self.repositories.iter().enumerate() {
            let name = format!("{}-repo-{i}", self.id);
            objects.push(
                repo.secret(
                    &name,
                    &env.argocd.namespace,
                    &self.name,
                    labels,
                    client,
                    ctx.module_id(),
                )
                .await?,
            );
        }
        let target = Target {
            project: &self.name,
            argocd_namespace: &env.argocd.namespace,
            server: &env.server,
            labels,
        };
        for app in &self.apps {
            objects.push(app.application(&target));
            if let Some(p) = app.published() {
                objects.push(self.ingress_object(env, app, p));
            }
        }
        for set in &self.app_sets {
            if let Some(token) = set.token_value() {
                let value = token.resolve(client, ctx.module_id()).await?;
                // Labelled as SCM credentials: Argo CD's strict token-reference mode
                // (`applicationsetcontroller.tokenref.strict.mode`) reads no other Secret.
                let mut labels = labels.clone();
                labels.insert(SECRET_TYPE_LABEL.into(), "scm-creds".into());
                objects.push(json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": set.token_secret_name(&self.name), "namespace": env.argocd.namespace, "labels": labels},
                    "stringData": {"token": value.expose()},
                }));
            }
            objects.push(set.application_set(&target));
        }
        Ok(objects)
    }

    /// The AppProject, deny by default.
    fn project(&self, env: &TeamEnv, jwt_tokens: &BTreeMap<String, Vec<Value>>) -> Value {
        let groups = |role: AccessRole| -> Vec<String> {
            self.access
                .iter()
                .filter(|(r, _)| *r == role)
                .map(|(_, g)| g.name().to_owned())
                .collect()
        };
        let mut roles: Vec<_> = [AccessRole::Viewer, AccessRole::Deployer, AccessRole::Admin]
            .into_iter()
            .filter(|r| !groups(*r).is_empty())
            .map(|r| r.project_role(&self.name, r.name(), groups(r)))
            .collect();
        if let Some((role, _)) = &self.ci {
            roles.push(role.project_role(&self.name, CI_ROLE, Vec::new()));
        }
        for role in &mut roles {
            role.jwt_tokens = jwt_tokens.get(&role.name).cloned().unwrap_or_default();
        }
        let mut project = AppProject::new(
            &self.name,
            AppProjectSpec {
                description: Some(format!("Applications of team `{}`", self.name)),
                source_repos: self
                    .repositories
                    .iter()
                    .map(Repository::source_pattern)
                    .collect(),
                destinations: self
                    .namespace_names()
                    .map(|ns| ApplicationDestination {
                        server: Some(env.server.clone()),
                        namespace: Some(ns.to_owned()),
                        name: None,
                    })
                    .collect(),
                namespace_resource_blacklist: project::denied_kinds(self.namespaced_rbac),
                roles,
                sync_windows: self
                    .sync_windows
                    .iter()
                    .map(SyncWindow::to_argocd)
                    .collect(),
                ..Default::default()
            },
        );
        project.metadata.namespace = Some(env.argocd.namespace.clone());
        project.metadata.labels = Some(env.labels.clone());
        crate::chart::to_json(&project)
    }

    /// A Role per access role in use and a RoleBinding per group, in each namespace.
    fn rbac(&self, env: &TeamEnv) -> Vec<Value> {
        let mut used: Vec<AccessRole> = self.access.iter().map(|(r, _)| *r).collect();
        used.sort();
        used.dedup();
        let mut objects = Vec::new();
        for ns in self.namespace_names() {
            for role in &used {
                let name = format!("team-{}", role.name());
                objects.push(json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": name, "namespace": ns, "labels": env.labels},
                    "rules": namespaces::role_rules(*role),
                }));
                let subjects: Vec<Value> = self
                    .access
                    .iter()
                    .filter(|(r, _)| r == role)
                    .map(|(_, g)| {
                        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                        "name": format!("{}{}", env.group_prefix, g.name())})
                    })
                    .collect();
                objects.push(json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": ns, "labels": env.labels},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                    "subjects": subjects,
                }));
            }
        }
        objects
    }

    fn ingress_object(&self, env: &TeamEnv, app: &App, p: &Publish) -> Value {
        let host = env.hostnames.host(&p.host);
        let (class, annotations) = match &env.ingress {
            Some(i) => (i.class_name.clone(), i.annotations_for(env.issuer.as_ref())),
            None => (String::new(), BTreeMap::new()),
        };
        let tls = if env.issuer.is_some() {
            json!([{"hosts": [host], "secretName": format!("{}-tls", app.name())}])
        } else {
            json!([])
        };
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": app.name(), "namespace": app.namespace(), "labels": env.labels, "annotations": annotations},
            "spec": {
                "ingressClassName": class,
                "tls": tls,
                "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": p.service, "port": {"name": p.port}}}}]}}],
            },
        })
    }

    fn output(&self, env: &TeamEnv, ci_token: Option<Secret>) -> TeamOutput {
        let scheme = if env.issuer.is_some() {
            "https"
        } else {
            "http"
        };
        TeamOutput {
            name: self.name.clone(),
            project: self.name.clone(),
            namespaces: self.namespace_names().map(str::to_owned).collect(),
            urls: self
                .apps
                .iter()
                .filter_map(|a| {
                    a.published().map(|p| {
                        (
                            a.name().to_owned(),
                            format!("{scheme}://{}", env.hostnames.host(&p.host)),
                        )
                    })
                })
                .collect(),
            ci_token,
        }
    }

    /// The tokens Argo CD recorded on the roles of the live project, which a re-apply keeps.
    async fn live_jwt_tokens(
        &self,
        client: &kube::Client,
        env: &TeamEnv,
    ) -> Result<BTreeMap<String, Vec<Value>>> {
        let api: kube::Api<AppProject> =
            kube::Api::namespaced(client.clone(), &env.argocd.namespace);
        let live = match api.get_opt(&self.name).await {
            Ok(p) => p,
            // Argo CD's CRDs are not installed yet: no project, no tokens.
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => {
                return Err(crate::Error::kube(
                    format!("reading AppProject {}/{}", env.argocd.namespace, self.name),
                    e,
                ));
            }
        };
        Ok(live
            .map(|p| {
                p.spec
                    .roles
                    .into_iter()
                    .filter(|r| !r.jwt_tokens.is_empty())
                    .map(|r| (r.name, r.jwt_tokens))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// A team's resolved inputs.
struct TeamEnv {
    cluster: ClusterRef,
    argocd: ArgoCdTarget,
    ingress: Option<Ingress>,
    issuer: Option<ClusterIssuer>,
    hostnames: Hostnames,
    server: String,
    labels: BTreeMap<String, String>,
    /// The API server's prefix of OIDC group names.
    group_prefix: String,
}

/// Namespaces of the platform that a team may never claim, beyond Kubernetes' own.
const RESERVED: [&str; 1] = ["devops-stack-system"];

impl Module for Team {
    type Output = TeamOutput;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "team"
    }

    fn needs(&self, n: &mut Needs) {
        n.add(&self.cluster)
            .add(&self.argocd)
            .add(&self.ingress)
            .add(&self.issuer)
            .add(&self.ci.as_ref().map(|(_, a)| a.clone()))
            .add(&self.kubernetes_group_prefix);
        for (_, g) in &self.access {
            n.add(g);
        }
    }

    fn validate(&self, v: &mut Validation) {
        v.dns_label("name", &self.name);
        if self.namespaces.is_empty() {
            v.error(
                "namespaces",
                format!("team `{}` has no namespace", self.name),
                "add one with `.namespace(TeamNamespace::new(\"<name>\"))`",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let field = format!("namespaces[{i}]");
            v.dns_label(&field, ns.name());
            if SYSTEM_NAMESPACES.contains(&ns.name())
                || RESERVED.contains(&ns.name())
                || ns.name().starts_with("kube-")
            {
                v.error(
                    &field,
                    format!(
                        "`{}` is a namespace of Kubernetes or of the platform",
                        ns.name()
                    ),
                    "give the team a namespace of its own, like `<team>` or `<team>-prod`",
                );
            }
            if !seen.insert(ns.name()) {
                v.error(
                    &field,
                    format!("`{}` is listed twice", ns.name()),
                    "list each namespace once",
                );
            }
            ns.validate(v, &field);
            v.provides(Capability::Namespace {
                name: ns.name().to_owned(),
                owner: NamespaceOwner::Team(self.name.clone()),
            });
        }
        for (i, (_, group)) in self.access.iter().enumerate() {
            v.uses_group(&format!("access[{i}].group"), group);
            if group.name().trim().is_empty() {
                v.error(
                    format!("access[{i}].group"),
                    "the group name is empty",
                    "give the name of a group of the OIDC provider, as its tokens carry it in the groups claim",
                );
            } else if group.name().contains(',') || group.name().contains('\n') {
                v.error(
                    format!("access[{i}].group"),
                    format!("`{}` cannot be used in an RBAC policy line", group.name()),
                    "use a group name without `,` or line breaks",
                );
            }
        }
        if let Some(prefix) = self
            .kubernetes_group_prefix
            .as_ref()
            .and_then(Input::as_value)
            && prefix.trim().is_empty()
        {
            v.error(
                "kubernetes_group_prefix",
                "is empty",
                "give the prefix the API server puts before OIDC group names (like `oidc:`), or leave the setting out when it puts none",
            );
        }
        for (i, repo) in self.repositories.iter().enumerate() {
            repo.validate(v, &format!("repositories[{i}]"));
        }
        for (i, w) in self.sync_windows.iter().enumerate() {
            w.validate(v, &format!("sync_windows[{i}]"));
        }
        for (i, app) in self.apps.iter().enumerate() {
            let field = format!("apps[{i}]");
            app.validate(v, &field);
            v.provides(Capability::Application {
                name: app.application_name(&self.name),
            });
            self.check_delivery(v, &field, app.repo_url(), app.namespace());
            if app.published().is_some() && self.ingress.is_none() {
                v.error(
                    format!("{field}.publish"),
                    "the app is published, but the team has no ingress controller",
                    "give the team the stack's ingress controller with `.ingress(&traefik)`",
                );
            }
        }
        for (i, set) in self.app_sets.iter().enumerate() {
            let field = format!("application_sets[{i}]");
            set.validate(v, &field);
            v.provides(Capability::ApplicationSet {
                name: set.set_name(&self.name),
            });
            self.check_delivery(v, &field, set.repo_url(), set.namespace());
        }
        crate::chart::check_destination_server(v, self.destination_server.as_deref());
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<TeamOutput>> {
        let env = self.env(ctx)?;
        let token = self
            .ci
            .as_ref()
            .map(|_| Secret::new(unknown(ctx.module_id(), "ci_token")));
        let objects = self
            .render(ctx, &env, None, &BTreeMap::new(), token.as_ref())
            .await?;
        let cluster = env.cluster.name().to_owned();
        Ok(Planned::new(self.output(&env, token)).with_resources(
            objects
                .iter()
                .map(|o| Resource::kubernetes(cluster.clone(), o)),
        ))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<TeamOutput> {
        let env = self.env(ctx)?;
        Ok(self
            .apply_with(ctx, &env)
            .await
            .map_err(|e| e.reach(&*env.cluster))?)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        Ok(self
            .destroy_on(ctx, &cluster)
            .await
            .map_err(|e| e.reach(&*cluster))?)
    }
}

impl Team {
    /// Applies the team's objects, issuing its CI token once its project exists.
    async fn apply_with(&self, ctx: &Context, env: &TeamEnv) -> Result<TeamOutput> {
        let deployer = Deployer::for_module(ctx, &env.cluster).await?;
        let client = deployer.client().clone();
        let issuer = match &self.ci {
            Some((_, argocd)) => Some(TokenIssuer::new(&client, ctx.get(argocd)?)),
            None => None,
        };
        let kept = match &issuer {
            Some(i) => i.read(&self.ci_secret_name()).await?,
            None => None,
        };
        let tokens = self.live_jwt_tokens(&client, env).await?;
        let objects = self
            .render(ctx, env, Some(&client), &tokens, kept.as_ref())
            .await?;
        let new_sets = self.missing_sets(&client, &env.argocd.namespace).await?;
        ctx.progress(format!("applying {} objects", objects.len()));
        deployer.apply(objects).await?;
        self.refresh_sets(ctx, &client, &env.argocd.namespace, &new_sets)
            .await?;
        let token = match (issuer, kept) {
            (Some(issuer), None) => {
                // The project and its `ci` role exist now: issue the token, then apply again
                // with it kept in a Secret and the token Argo CD recorded on the role.
                ctx.progress("issuing the CI token of the project role `ci`");
                let token = issuer.project_token(&self.name, CI_ROLE).await?;
                let tokens = self.live_jwt_tokens(&client, env).await?;
                let objects = self
                    .render(ctx, env, Some(&client), &tokens, Some(&token))
                    .await?;
                deployer.apply(objects).await?;
                Some(token)
            }
            (_, kept) => kept,
        };
        Ok(self.output(env, token))
    }

    /// Removes what Argo CD generated for the team's sets, then the team's objects.
    async fn destroy_on(&self, ctx: &Context, cluster: &ClusterRef) -> Result<()> {
        let deployer = Deployer::for_module(ctx, cluster).await?;
        if !self.app_sets.is_empty() {
            let argocd = ctx.get(&self.argocd)?;
            self.remove_generated(ctx, deployer.client(), &argocd.namespace)
                .await?;
        }
        deployer.destroy().await?;
        Ok(())
    }
}

/// Objects of the Argo CD kind `K` (the core's typed CRDs) in `namespace`, read untyped: live
/// objects of another Argo CD version may not fit the typed schema.
fn argocd_api<K>(client: &kube::Client, namespace: &str) -> kube::Api<kube::api::DynamicObject>
where
    K: kube::Resource<DynamicType = ()>,
{
    kube::Api::namespaced_with(
        client.clone(),
        namespace,
        &kube::api::ApiResource::erase::<K>(&()),
    )
}

/// The ApplicationSets of Argo CD's namespace `namespace`.
fn set_api(client: &kube::Client, namespace: &str) -> kube::Api<kube::api::DynamicObject> {
    argocd_api::<devops_stack_core::argocd::ApplicationSet>(client, namespace)
}

/// Deletes `name` through `api`; one already gone counts as deleted.
async fn delete_if_present(
    api: &kube::Api<kube::api::DynamicObject>,
    what: &str,
    name: &str,
) -> Result<()> {
    match api.delete(name, &kube::api::DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(crate::Error::kube(format!("deleting {what}"), e)),
    }
}

/// The annotation that makes the ApplicationSet controller reconcile a set at once.
const SET_REFRESH: &str = "argocd.argoproj.io/application-set-refresh";

impl Team {
    /// The names of the team's ApplicationSets that do not exist yet.
    async fn missing_sets(&self, client: &kube::Client, namespace: &str) -> Result<Vec<String>> {
        let api = set_api(client, namespace);
        let mut missing = Vec::new();
        for set in &self.app_sets {
            let name = set.set_name(&self.name);
            match api.get_opt(&name).await {
                Ok(Some(_)) => {}
                // absent, or Argo CD's CRDs not installed yet (the apply then says so)
                Ok(None) | Err(kube::Error::Api(_)) => missing.push(name),
                Err(e) => {
                    return Err(crate::Error::kube(
                        format!("reading ApplicationSet {namespace}/{name}"),
                        e,
                    ));
                }
            }
        }
        Ok(missing)
    }

    /// Asks the ApplicationSet controller to reconcile the sets this apply created, once: it
    /// may have seen a set before the project it names (created in the same apply), and it
    /// then waits three minutes before it looks again. A one-shot annotation the controller
    /// removes: a re-apply, which creates no set, writes nothing.
    async fn refresh_sets(
        &self,
        ctx: &Context,
        client: &kube::Client,
        namespace: &str,
        created: &[String],
    ) -> Result<()> {
        let api = set_api(client, namespace);
        for name in created {
            ctx.progress(format!(
                "asking Argo CD to generate ApplicationSet {namespace}/{name}"
            ));
            let patch = json!({"metadata": {"annotations": {SET_REFRESH: "true"}}});
            api.patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| {
                crate::Error::kube(format!("refreshing ApplicationSet {namespace}/{name}"), e)
            })?;
        }
        Ok(())
    }

    /// Deletes the team's ApplicationSets, then the Applications they generated (which carry
    /// the team's label but not the stack's), and waits until Argo CD has removed them and what
    /// they deployed. This runs before the project goes: Argo CD cannot process an
    /// Application's resources finalizer without its project, and a set whose policy forbids
    /// deleting (`create-update`) orphans its Applications when it is deleted.
    async fn remove_generated(
        &self,
        ctx: &Context,
        client: &kube::Client,
        namespace: &str,
    ) -> Result<()> {
        let sets = set_api(client, namespace);
        let ours = ownership_labels(ctx.stack_name(), ctx.module_id());
        for set in &self.app_sets {
            let name = set.set_name(&self.name);
            let live = match sets.get_opt(&name).await {
                Ok(live) => live,
                // Argo CD's CRDs are gone: nothing was generated that still exists.
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => {
                    return Err(crate::Error::kube(
                        format!("reading ApplicationSet {namespace}/{name}"),
                        e,
                    ));
                }
            };
            let owned = live.as_ref().is_some_and(|l| {
                let labels = l.metadata.labels.clone().unwrap_or_default();
                ours.iter().all(|(k, v)| labels.get(k) == Some(v))
            });
            if owned {
                ctx.progress(format!("deleting ApplicationSet {namespace}/{name}"));
                delete_if_present(&sets, &format!("ApplicationSet {namespace}/{name}"), &name)
                    .await?;
            }
        }
        let apps = argocd_api::<devops_stack_core::argocd::Application>(client, namespace);
        // Generated: the team's label, not the stack's (the team's own Apps are the engine's).
        let selector = format!(
            "{TEAM_LABEL}={},!{}",
            self.name,
            devops_stack_core::k8s::STACK_LABEL
        );
        let timeout = std::time::Duration::from_secs(300);
        let start = std::time::Instant::now();
        let mut deleted = std::collections::BTreeSet::new();
        loop {
            let left = apps
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .map_err(|e| {
                    crate::Error::kube(
                        format!("listing the generated Applications of team `{}`", self.name),
                        e,
                    )
                })?
                .items;
            if left.is_empty() {
                return Ok(());
            }
            for app in &left {
                let name = app.metadata.name.clone().unwrap_or_default();
                if app.metadata.deletion_timestamp.is_none() && deleted.insert(name.clone()) {
                    ctx.progress(format!("deleting generated Application {namespace}/{name}"));
                    delete_if_present(&apps, &format!("Application {namespace}/{name}"), &name)
                        .await?;
                }
            }
            let left_names = || -> Vec<String> {
                left.iter()
                    .map(|a| {
                        let why = a.data["status"]["conditions"]
                            .as_array()
                            .and_then(|c| c.first())
                            .and_then(|c| c["message"].as_str())
                            .unwrap_or("no condition");
                        format!("{} ({why})", a.metadata.name.clone().unwrap_or_default())
                    })
                    .collect()
            };
            let what = format!("the generated Applications of team `{}`", self.name);
            if start.elapsed() > timeout {
                return Err(crate::Error::NotRemoved {
                    what,
                    left: left_names(),
                    fix: format!(
                        "waited {}s; check Argo CD's application-controller, then destroy again",
                        timeout.as_secs()
                    ),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                () = ctx.cancellation().cancelled() => {
                    return Err(crate::Error::NotRemoved {
                        what,
                        left: left_names(),
                        fix: "the destroy was cancelled; destroy again to go on".into(),
                    });
                }
            }
        }
    }
}
