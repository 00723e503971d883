//! What a team deploys: single Applications ([`App`]) and ApplicationSets ([`AppSet`]) over
//! its repositories, always in its own project and namespaces.

use std::collections::BTreeMap;

use devops_stack_core::Validation;
use devops_stack_core::argocd::{
    Application, ApplicationDestination, ApplicationSet, ApplicationSetSpec,
    ApplicationSetSyncPolicy, ApplicationSource, ApplicationSpec, AutomatedSync, Backoff,
    DirectorySource, HelmSource, KustomizeSource, RetryStrategy, SyncPolicy,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::repository::SecretSource;

/// How an App's manifests are made from its directory.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Manifests {
    /// Plain manifests (the default), optionally with subdirectories.
    #[default]
    Directory,
    /// Plain manifests of the directory and its subdirectories.
    DirectoryRecursive,
    /// A Helm chart, with values files of its directory and values deep-merged over them.
    Helm {
        /// Values files, in order (`values-prod.yaml`).
        value_files: Vec<String>,
        /// Values (an object).
        values: Value,
    },
    /// A Kustomize overlay, with image overrides (`name=registry/name:tag`).
    Kustomize {
        /// Image overrides.
        images: Vec<String>,
    },
}

impl Manifests {
    fn apply_to(&self, source: &mut ApplicationSource, release: &str) {
        match self {
            Manifests::Directory => {}
            Manifests::DirectoryRecursive => {
                source.directory = Some(DirectorySource { recurse: true });
            }
            Manifests::Helm {
                value_files,
                values,
            } => {
                source.helm = Some(HelmSource {
                    release_name: Some(release.to_owned()),
                    values_object: (!values.is_null()).then(|| values.clone()),
                    value_files: value_files.clone(),
                    skip_crds: None,
                });
            }
            Manifests::Kustomize { images } => {
                source.kustomize = Some(KustomizeSource {
                    images: images.clone(),
                    ..Default::default()
                });
            }
        }
    }

    fn validate(&self, v: &mut Validation, field: &str) {
        if let Manifests::Helm { values, .. } = self
            && !(values.is_object() || values.is_null())
        {
            v.error(
                format!("{field}.manifests.values"),
                "the Helm values are not an object",
                "pass Helm values as a JSON object, like `json!({\"replicas\": 2})`",
            );
        }
    }
}

/// The sync policy of a team's Applications.
///
/// The default: automated sync with prune and self-heal, server-side apply, and 5 retries
/// 5 s apart, doubling up to 3 minutes. Namespaces are never created by a sync
/// (`CreateNamespace` is off): the platform creates the team's namespaces first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppSync {
    /// Sync automatically on every change of the source (default true).
    pub automated: bool,
    /// Delete resources no longer in the source (default true).
    pub prune: bool,
    /// Revert changes made outside Git (default true).
    pub self_heal: bool,
    /// Apply server-side (default true).
    pub server_side_apply: bool,
    /// How many times a failed sync is retried (default 5).
    pub retries: i64,
}

impl Default for AppSync {
    fn default() -> Self {
        AppSync {
            automated: true,
            prune: true,
            self_heal: true,
            server_side_apply: true,
            retries: 5,
        }
    }
}

impl AppSync {
    fn policy(&self) -> SyncPolicy {
        SyncPolicy {
            automated: self.automated.then_some(AutomatedSync {
                prune: self.prune,
                self_heal: self.self_heal,
                allow_empty: false,
            }),
            sync_options: if self.server_side_apply {
                vec!["ServerSideApply=true".into()]
            } else {
                Vec::new()
            },
            retry: Some(RetryStrategy {
                limit: self.retries,
                backoff: Some(Backoff {
                    duration: "5s".into(),
                    factor: 2,
                    max_duration: "3m".into(),
                }),
            }),
        }
    }
}

/// How an App is published: an Ingress through the stack's ingress controller, with TLS from
/// the team's issuer, on `<host>.<subdomain>.<cluster>.<base_domain>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publish {
    /// The first label of the hostname.
    pub host: String,
    /// The Service the App's manifests create.
    pub service: String,
    /// The Service's port, by name.
    pub port: String,
}

/// One Application of a team: a directory of one of the team's repositories, deployed into one
/// of the team's namespaces.
///
/// ```
/// use devops_stack_modules::team::{App, Manifests};
/// let app = App::new("storefront", "https://github.com/acme/shop.git", "shop")
///     .path("deploy/storefront")
///     .revision("v1.4.2")
///     .manifests(Manifests::Kustomize { images: vec![] })
///     .publish("shop", "storefront", "http");
/// assert_eq!(app.name(), "storefront");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct App {
    name: String,
    repo_url: String,
    path: String,
    revision: String,
    namespace: String,
    manifests: Manifests,
    sync: AppSync,
    publish: Option<Publish>,
}

impl App {
    /// The app `name` from `repo_url` (one of the team's repositories) deployed into
    /// `namespace` (one of the team's), from the directory `.` at `HEAD`, as plain manifests.
    pub fn new(
        name: impl Into<String>,
        repo_url: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        App {
            name: name.into(),
            repo_url: repo_url.into(),
            path: ".".into(),
            revision: "HEAD".into(),
            namespace: namespace.into(),
            manifests: Manifests::Directory,
            sync: AppSync::default(),
            publish: None,
        }
    }

    /// The app's name (the Application is `<team>-<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory in the repository.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The branch, tag or commit (default `HEAD`).
    #[must_use]
    pub fn revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }

    /// How the manifests are made (default plain directory).
    #[must_use]
    pub fn manifests(mut self, manifests: Manifests) -> Self {
        self.manifests = manifests;
        self
    }

    /// Another sync policy.
    #[must_use]
    pub fn sync(mut self, sync: AppSync) -> Self {
        self.sync = sync;
        self
    }

    /// Publishes the Service `service` (port `port`) on the hostname `host.<subdomain>.<cluster>.<base_domain>`.
    #[must_use]
    pub fn publish(
        mut self,
        host: impl Into<String>,
        service: impl Into<String>,
        port: impl Into<String>,
    ) -> Self {
        self.publish = Some(Publish {
            host: host.into(),
            service: service.into(),
            port: port.into(),
        });
        self
    }

    pub(super) fn repo_url(&self) -> &str {
        &self.repo_url
    }

    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(super) fn published(&self) -> Option<&Publish> {
        self.publish.as_ref()
    }

    pub(super) fn validate(&self, v: &mut Validation, field: &str) {
        v.dns_label(&format!("{field}.name"), &self.name);
        if self.revision.is_empty() {
            v.error(
                format!("{field}.revision"),
                "is empty",
                "give a branch, tag or commit, or leave the default `HEAD`",
            );
        }
        self.manifests.validate(v, field);
        if let Some(p) = &self.publish {
            v.dns_label(&format!("{field}.publish.host"), &p.host);
            v.dns_label(&format!("{field}.publish.service"), &p.service);
        }
    }

    /// The Application's name: `<team>-<name>` (the stack refuses two equal names, such as
    /// team `a`'s app `b-c` and team `a-b`'s app `c`).
    pub(super) fn application_name(&self, team: &str) -> String {
        format!("{team}-{}", self.name)
    }

    /// The Application, named `<team>-<name>` in Argo CD's namespace.
    pub(super) fn application(&self, t: &Target<'_>) -> Value {
        let name = self.application_name(t.project);
        let mut source = ApplicationSource {
            repo_url: self.repo_url.clone(),
            path: Some(self.path.clone()),
            target_revision: Some(self.revision.clone()),
            ..Default::default()
        };
        self.manifests.apply_to(&mut source, &self.name);
        let spec = t.spec(source, &self.namespace, &self.sync);
        let app = Application::with_finalizer(&name, t.argocd_namespace, spec, t.labels.clone());
        crate::chart::to_json(&app)
    }
}

/// Where the team's Applications go: its project, Argo CD's namespace and the cluster.
pub(super) struct Target<'a> {
    pub(super) project: &'a str,
    pub(super) argocd_namespace: &'a str,
    pub(super) server: &'a str,
    pub(super) labels: &'a BTreeMap<String, String>,
}

impl Target<'_> {
    /// An Application spec in the team's project, deploying `source` into `namespace`.
    fn spec(&self, source: ApplicationSource, namespace: &str, sync: &AppSync) -> ApplicationSpec {
        ApplicationSpec {
            project: self.project.to_owned(),
            source: Some(source),
            sources: Vec::new(),
            destination: ApplicationDestination {
                server: Some(self.server.to_owned()),
                namespace: Some(namespace.to_owned()),
                name: None,
            },
            sync_policy: Some(sync.policy()),
            ignore_differences: Vec::new(),
        }
    }
}

/// A forge whose pull requests an [`AppSet`] previews.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Forge {
    /// A GitHub repository `owner/repo` (github.com, or an Enterprise API URL).
    GitHub {
        /// The owner (organisation or user).
        owner: String,
        /// The repository's name.
        repo: String,
        /// The API URL of a GitHub Enterprise server.
        api: Option<String>,
    },
    /// A GitLab project, by id or `group/project` path.
    GitLab {
        /// The project.
        project: String,
        /// The API URL of a self-managed GitLab.
        api: Option<String>,
    },
}

/// What an [`AppSet`] makes one Application of.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Generator {
    /// One Application per directory matching `include` (globs like `apps/*`), deployed into
    /// the set's namespace; the Application is `<team>-<directory name>`.
    Directories {
        /// Globs of directories.
        include: Vec<String>,
        /// Globs of directories to leave out.
        exclude: Vec<String>,
    },
    /// One Application per JSON or YAML file matching `files` (`envs/*/config.json`); the
    /// Application is `<team>-<name>` where `name` is a field of the file, deployed from the
    /// directory of the file.
    Files {
        /// Globs of files.
        files: Vec<String>,
    },
    /// One preview Application per open pull request carrying every label in `labels`, at the
    /// pull request's head commit, deployed into the set's namespace (a team namespace with its
    /// own quota) with every resource name prefixed `pr-<number>-` (Kustomize) or a release
    /// `pr-<number>` (Helm).
    PullRequests {
        /// The forge and repository.
        forge: Forge,
        /// Labels a pull request must carry.
        labels: Vec<String>,
        /// The forge API token (kept in Argo CD's namespace when given as a value).
        token: SecretSource,
        /// How often to look for pull requests, in seconds (default 300).
        requeue_after_seconds: u32,
    },
}

/// An ApplicationSet over one of the team's repositories. The library fills in the project and
/// `goTemplate` with `missingkey=error`, so a team cannot generate into another team's project
/// or namespaces. Directory and file sets get `applicationsSync: create-update` and
/// `preserveResourcesOnDeletion` (the controller never deletes an Application when the set is
/// edited); pull-request previews get `applicationsSync: sync` without preservation, so a
/// preview and everything it deployed go when its pull request closes or loses its label.
///
/// ```
/// use devops_stack_modules::team::AppSet;
/// let set = AppSet::directories("services", "https://github.com/acme/shop.git", "shop", ["apps/*"]);
/// assert_eq!(set.name(), "services");
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct AppSet {
    name: String,
    repo_url: String,
    revision: String,
    namespace: String,
    generator: Generator,
    path: String,
    manifests: Manifests,
    sync: AppSync,
    prune_removed: bool,
}

impl AppSet {
    /// One Application per directory of `repo_url` matching a glob of `include`, into
    /// `namespace`.
    pub fn directories(
        name: impl Into<String>,
        repo_url: impl Into<String>,
        namespace: impl Into<String>,
        include: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        AppSet::new(
            name.into(),
            repo_url.into(),
            namespace.into(),
            Generator::Directories {
                include: include.into_iter().map(Into::into).collect(),
                exclude: Vec::new(),
            },
        )
    }

    /// One Application per file of `repo_url` matching a glob of `files`; each file has a
    /// `name` field.
    pub fn files(
        name: impl Into<String>,
        repo_url: impl Into<String>,
        namespace: impl Into<String>,
        files: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        AppSet::new(
            name.into(),
            repo_url.into(),
            namespace.into(),
            Generator::Files {
                files: files.into_iter().map(Into::into).collect(),
            },
        )
    }

    /// One preview per open pull request of `forge` with all of `labels`, deploying the
    /// directory `path` of `repo_url` into `namespace`.
    pub fn pull_requests(
        name: impl Into<String>,
        repo_url: impl Into<String>,
        namespace: impl Into<String>,
        forge: Forge,
        labels: impl IntoIterator<Item = impl Into<String>>,
        token: impl Into<SecretSource>,
    ) -> Self {
        AppSet::new(
            name.into(),
            repo_url.into(),
            namespace.into(),
            Generator::PullRequests {
                forge,
                labels: labels.into_iter().map(Into::into).collect(),
                token: token.into(),
                requeue_after_seconds: 300,
            },
        )
    }

    fn new(name: String, repo_url: String, namespace: String, generator: Generator) -> Self {
        AppSet {
            name,
            repo_url,
            revision: "HEAD".into(),
            namespace,
            generator,
            path: ".".into(),
            manifests: Manifests::Directory,
            sync: AppSync::default(),
            prune_removed: false,
        }
    }

    /// Whether the controller deletes the Application of a directory or file that is no
    /// longer in the repository, with everything it deployed (default false: a directory
    /// removed by mistake, in a bad merge, would otherwise take its workloads down with it).
    /// Pull-request previews always go with their pull request.
    #[must_use]
    pub fn prune_removed(mut self, prune: bool) -> Self {
        self.prune_removed = prune;
        self
    }

    /// The set's name (the ApplicationSet is `<team>-<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Directories to leave out (directory generator only).
    #[must_use]
    pub fn exclude(mut self, globs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        if let Generator::Directories { exclude, .. } = &mut self.generator {
            exclude.extend(globs.into_iter().map(Into::into));
        }
        self
    }

    /// The branch or tag the generator reads (default `HEAD`; pull requests use their head).
    #[must_use]
    pub fn revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }

    /// How each Application's manifests are made (default plain directory).
    #[must_use]
    pub fn manifests(mut self, manifests: Manifests) -> Self {
        self.manifests = manifests;
        self
    }

    /// The directory each pull-request preview deploys (default `.`; the directory and file
    /// generators deploy the directory they find).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Another sync policy of the generated Applications.
    #[must_use]
    pub fn sync(mut self, sync: AppSync) -> Self {
        self.sync = sync;
        self
    }

    pub(super) fn repo_url(&self) -> &str {
        &self.repo_url
    }

    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The forge token given as a value: kept in a Secret of Argo CD's namespace.
    pub(super) fn token_value(&self) -> Option<&SecretSource> {
        match &self.generator {
            Generator::PullRequests {
                token: t @ SecretSource::Value(_),
                ..
            } => Some(t),
            _ => None,
        }
    }

    /// The name of the Secret holding the forge token that Argo CD owns.
    pub(super) fn token_secret_name(&self, project: &str) -> String {
        format!("{project}-{}-forge-token", self.name)
    }

    pub(super) fn validate(&self, v: &mut Validation, field: &str) {
        v.dns_label(&format!("{field}.name"), &self.name);
        self.manifests.validate(v, field);
        match &self.generator {
            Generator::Directories { include, .. } if include.is_empty() => {
                v.error(
                    format!("{field}.include"),
                    "is empty",
                    "give at least one directory glob, like `apps/*`",
                );
            }
            Generator::Files { files } if files.is_empty() => {
                v.error(
                    format!("{field}.files"),
                    "is empty",
                    "give at least one file glob, like `envs/*/config.json`",
                );
            }
            Generator::PullRequests { forge, token, .. } => {
                let names_repository = match forge {
                    Forge::GitHub { owner, repo, .. } => !owner.is_empty() && !repo.is_empty(),
                    Forge::GitLab { project, .. } => !project.is_empty(),
                };
                if !names_repository {
                    v.error(
                        format!("{field}.forge"),
                        "names no repository",
                        "give the GitHub owner and repository, or the GitLab project",
                    );
                }
                token.validate(v, &format!("{field}.token"));
            }
            _ => {}
        }
    }

    /// The ApplicationSet's policy. A preview goes with its pull request, and a set with
    /// [`AppSet::prune_removed`] deletes the Application of a removed directory: the
    /// controller may delete Applications (`sync`), and their resources go with them (the
    /// template carries the resources finalizer). Any other set never deletes an Application
    /// when its source changes (`create-update`).
    fn sync_policy(&self) -> ApplicationSetSyncPolicy {
        let preview = matches!(self.generator, Generator::PullRequests { .. });
        let delete = preview || self.prune_removed;
        ApplicationSetSyncPolicy {
            preserve_resources_on_deletion: !preview,
            applications_sync: Some(if delete { "sync" } else { "create-update" }.into()),
        }
    }

    /// The ApplicationSet's name: `<team>-<name>`.
    pub(super) fn set_name(&self, team: &str) -> String {
        format!("{team}-{}", self.name)
    }

    /// The ApplicationSet, named `<team>-<name>` in Argo CD's namespace.
    pub(super) fn application_set(&self, t: &Target<'_>) -> Value {
        let prefix = t.project;
        let (generator, app_name, path, revision, release) = match &self.generator {
            Generator::Directories { include, exclude } => {
                let mut dirs: Vec<Value> = include.iter().map(|p| json!({"path": p})).collect();
                dirs.extend(exclude.iter().map(|p| json!({"path": p, "exclude": true})));
                (
                    json!({"git": {"repoURL": self.repo_url, "revision": self.revision, "directories": dirs}}),
                    format!("{prefix}-{{{{.path.basename}}}}"),
                    "{{.path.path}}".to_owned(),
                    self.revision.clone(),
                    "{{.path.basename}}".to_owned(),
                )
            }
            Generator::Files { files } => {
                let files: Vec<Value> = files.iter().map(|p| json!({"path": p})).collect();
                (
                    json!({"git": {"repoURL": self.repo_url, "revision": self.revision, "files": files}}),
                    format!("{prefix}-{{{{.name}}}}"),
                    "{{.path.path}}".to_owned(),
                    self.revision.clone(),
                    "{{.name}}".to_owned(),
                )
            }
            Generator::PullRequests {
                forge,
                labels,
                token,
                requeue_after_seconds,
            } => {
                let token_ref = match token {
                    SecretSource::Value(_) => {
                        json!({"secretName": self.token_secret_name(prefix), "key": "token"})
                    }
                    SecretSource::Existing { name, key, .. } => {
                        json!({"secretName": name, "key": key})
                    }
                };
                let forge = match forge {
                    Forge::GitHub { owner, repo, api } => {
                        let mut g = json!({"owner": owner, "repo": repo, "tokenRef": token_ref});
                        // Argo CD writes no empty list back (`omitempty`): leave it out too
                        if !labels.is_empty() {
                            g["labels"] = json!(labels);
                        }
                        if let Some(api) = api {
                            g["api"] = api.clone().into();
                        }
                        json!({"github": g})
                    }
                    Forge::GitLab { project, api } => {
                        let mut g = json!({"project": project, "tokenRef": token_ref,
                            "pullRequestState": "opened"});
                        if !labels.is_empty() {
                            g["labels"] = json!(labels);
                        }
                        if let Some(api) = api {
                            g["api"] = api.clone().into();
                        }
                        json!({"gitlab": g})
                    }
                };
                let mut pr = forge;
                pr["requeueAfterSeconds"] = (*requeue_after_seconds).into();
                (
                    json!({"pullRequest": pr}),
                    format!("{prefix}-{}-pr-{{{{.number}}}}", self.name),
                    self.path.clone(),
                    "{{.head_sha}}".to_owned(),
                    "pr-{{.number}}".to_owned(),
                )
            }
        };
        let mut source = ApplicationSource {
            repo_url: self.repo_url.clone(),
            path: Some(path),
            target_revision: Some(revision),
            ..Default::default()
        };
        let mut manifests = self.manifests.clone();
        if let (Generator::PullRequests { .. }, Manifests::Kustomize { images }) =
            (&self.generator, &self.manifests)
        {
            source.kustomize = Some(KustomizeSource {
                name_prefix: Some("pr-{{.number}}-".into()),
                images: images.clone(),
            });
            manifests = Manifests::Directory;
        }
        manifests.apply_to(&mut source, &release);
        let spec = t.spec(source, &self.namespace, &self.sync);
        // The generated Applications belong to the ApplicationSet, not to the stack: they
        // carry the team's label only, never the stack's ownership labels.
        let team_labels: BTreeMap<&str, &str> = t
            .labels
            .get_key_value(super::TEAM_LABEL)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .into_iter()
            .collect();
        let template = json!({
            "metadata": {"name": app_name, "labels": team_labels, "finalizers": [devops_stack_core::argocd::RESOURCES_FINALIZER]},
            "spec": crate::chart::to_json(&spec),
        });
        let mut set = ApplicationSet::new(
            &self.set_name(prefix),
            ApplicationSetSpec {
                go_template: true,
                go_template_options: vec!["missingkey=error".into()],
                generators: vec![devops_stack_core::argocd::as_controller_writes(generator)],
                template,
                sync_policy: Some(self.sync_policy()),
            },
        );
        set.metadata.namespace = Some(t.argocd_namespace.to_owned());
        set.metadata.labels = Some(t.labels.clone());
        crate::chart::to_json(&set)
    }
}
