//! A team's Git repositories and how Argo CD reaches them, rendered as Argo CD `repository`
//! Secrets scoped to the team's project.
//!
//! Argo CD looks credential templates (`repo-creds`, what a URL prefix renders as) up by URL
//! alone and ignores their `project` field, so a prefix credential would be handed to every
//! project whose source repositories match, the platform's included. A prefix is therefore
//! refused unless the user opts into sharing it ([`Repository::share_with_every_project`]),
//! which the plan shows; each repository declared with [`Repository::new`] gets a
//! project-scoped `repository` Secret that no other project can use.

use std::collections::BTreeMap;

use devops_stack_core::plan::unknown;
use devops_stack_core::{Secret, Validation};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Secret material: a value, or a key of a Kubernetes Secret the user already has (read when
/// applying, never shown).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretSource {
    /// The value itself.
    Value(Secret),
    /// The key `key` of the Secret `namespace/name`.
    Existing {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
}

impl From<Secret> for SecretSource {
    fn from(s: Secret) -> Self {
        SecretSource::Value(s)
    }
}

impl SecretSource {
    /// The key `key` of the existing Secret `namespace/name`.
    pub fn existing(
        namespace: impl Into<String>,
        name: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        SecretSource::Existing {
            namespace: namespace.into(),
            name: name.into(),
            key: key.into(),
        }
    }

    /// The value: itself, the Secret's key read from the cluster when `client` is given, or a
    /// placeholder while planning.
    pub(super) async fn resolve(
        &self,
        client: Option<&kube::Client>,
        module: &str,
    ) -> Result<Secret> {
        match (self, client) {
            (SecretSource::Value(s), _) => Ok(s.clone()),
            (
                SecretSource::Existing {
                    namespace,
                    name,
                    key,
                },
                None,
            ) => Ok(Secret::new(unknown(
                module,
                &format!("secret.{namespace}.{name}.{key}"),
            ))),
            (
                SecretSource::Existing {
                    namespace,
                    name,
                    key,
                },
                Some(client),
            ) => {
                crate::argocd::read_key(client, namespace, name, key)
                    .await?
                    .ok_or_else(|| Error::Missing {
                        object: format!("Secret {namespace}/{name}"),
                        problem: format!(
                            "it has no key `{key}` (or the Secret does not exist); create it, or point the team at another Secret"
                        ),
                    })
            }
        }
    }

    pub(super) fn validate(&self, v: &mut Validation, field: &str) {
        match self {
            SecretSource::Value(s) if s.is_empty() => {
                v.error(
                    field,
                    "is empty",
                    "give the secret value, or a reference to an existing Kubernetes Secret",
                );
            }
            SecretSource::Existing {
                namespace,
                name,
                key,
            } => {
                v.dns_label(&format!("{field}.namespace"), namespace);
                v.dns_subdomain(&format!("{field}.name"), name);
                if key.is_empty() {
                    v.error(
                        format!("{field}.key"),
                        "is empty",
                        "name the key of the Secret that holds the value",
                    );
                }
            }
            SecretSource::Value(_) => {}
        }
    }
}

/// How Argo CD authenticates to a repository.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RepoAccess {
    /// A public repository: no credentials.
    Public,
    /// HTTPS with a username and a token (a personal or project access token).
    HttpsToken {
        /// The username (`git` or any non-empty name for most forges).
        username: String,
        /// The token.
        token: SecretSource,
    },
    /// SSH with a private key.
    SshKey {
        /// The private key (PEM).
        private_key: SecretSource,
    },
    /// A GitHub App installation.
    GitHubApp {
        /// The app's id.
        app_id: u64,
        /// The installation's id.
        installation_id: u64,
        /// The app's private key (PEM).
        private_key: SecretSource,
        /// The API URL of a GitHub Enterprise server (none for github.com).
        enterprise_base_url: Option<String>,
    },
}

/// A Git repository of a team, or with [`Repository::prefix`] every repository under a URL
/// prefix (an Argo CD credential template, which Argo CD hands to every project: the stack
/// refuses one unless [`Repository::share_with_every_project`] opts in).
///
/// ```
/// use devops_stack_core::Secret;
/// use devops_stack_modules::team::{RepoAccess, Repository, SecretSource};
/// let repo = Repository::new(
///     "https://github.com/acme/shop.git",
///     RepoAccess::HttpsToken { username: "git".into(), token: Secret::new("ghp_x").into() },
/// );
/// assert_eq!(repo.url(), "https://github.com/acme/shop.git");
/// let org = Repository::prefix("git@github.com:acme/", RepoAccess::SshKey {
///     private_key: SecretSource::existing("argocd", "acme-deploy-key", "sshPrivateKey"),
/// })
/// .share_with_every_project();
/// assert_eq!(org.url(), "git@github.com:acme/");
/// assert!(org.is_shared());
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    url: String,
    access: RepoAccess,
    prefix: bool,
    shared: bool,
}

/// The annotation saying which projects may use a repository Secret: `project:<name>`, or
/// `every-project` for credentials shared by opt-in.
pub const CREDENTIALS_SCOPE: &str = "devops-stack.io/credentials-scope";

impl Repository {
    /// The repository at `url` (`https://…` or SSH `git@host:path` / `ssh://…`).
    pub fn new(url: impl Into<String>, access: RepoAccess) -> Self {
        Repository {
            url: url.into(),
            access,
            prefix: false,
            shared: false,
        }
    }

    /// Every repository whose URL starts with `prefix`, nested paths included (GitLab
    /// subgroups), rendered as an Argo CD credential template (`repo-creds`). Argo CD hands
    /// such a template to **every** project whose repositories match: the stack refuses a
    /// prefix unless [`Repository::share_with_every_project`] says so.
    pub fn prefix(prefix: impl Into<String>, access: RepoAccess) -> Self {
        Repository {
            url: prefix.into(),
            access,
            prefix: true,
            shared: false,
        }
    }

    /// Opts into sharing these credentials with every Argo CD project, not only the team's
    /// (required for a [`Repository::prefix`]; the Secret then carries no project and is
    /// annotated [`CREDENTIALS_SCOPE`]`: every-project`, which plans show).
    #[must_use]
    pub fn share_with_every_project(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Whether the credentials are shared with every project.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The URL (or prefix).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether `url` is this repository (or under this prefix).
    pub(super) fn covers(&self, url: &str) -> bool {
        if self.prefix {
            url.starts_with(&self.url)
        } else {
            url == self.url
        }
    }

    /// The `sourceRepos` pattern of the project. Argo CD matches it as a glob with `/` as the
    /// separator, so a prefix ends in `**` (any depth: `group/sub/repo.git`), not `*`.
    pub(super) fn source_pattern(&self) -> String {
        if self.prefix {
            format!("{}**", self.url)
        } else {
            self.url.clone()
        }
    }

    pub(super) fn validate(&self, v: &mut Validation, field: &str) {
        let https = self.url.starts_with("https://") && self.url.len() > "https://".len();
        let ssh = self.url.starts_with("ssh://") || is_scp_like(&self.url);
        if !https && !ssh {
            v.error(
                format!("{field}.url"),
                format!("`{}` is neither an HTTPS nor an SSH repository URL", self.url),
                "use `https://host/org/repo.git`, `ssh://git@host/org/repo.git` or `git@host:org/repo.git`",
            );
        }
        if self.prefix && !self.shared {
            v.error(
                field,
                format!(
                    "`{}` is a prefix credential: Argo CD looks credential templates up by URL alone, so every project whose repositories match (the platform's included) would use them",
                    self.url
                ),
                "declare each repository with `Repository::new(url, access)` (scoped to the team's project), or opt in with `.share_with_every_project()` if every project may use these credentials",
            );
        }
        match &self.access {
            RepoAccess::Public => {}
            RepoAccess::HttpsToken { username, token } => {
                if ssh {
                    v.error(
                        format!("{field}.access"),
                        "a token authenticates HTTPS, but the URL is SSH",
                        "use an https:// URL, or RepoAccess::SshKey",
                    );
                }
                if username.is_empty() {
                    v.error(
                        format!("{field}.access.username"),
                        "is empty",
                        "give the username the token belongs to (`git` works on most forges)",
                    );
                }
                token.validate(v, &format!("{field}.access.token"));
            }
            RepoAccess::SshKey { private_key } => {
                if https {
                    v.error(
                        format!("{field}.access"),
                        "an SSH key authenticates SSH, but the URL is HTTPS",
                        "use an SSH URL such as `git@host:org/repo.git`, or RepoAccess::HttpsToken",
                    );
                }
                private_key.validate(v, &format!("{field}.access.private_key"));
            }
            RepoAccess::GitHubApp {
                app_id,
                installation_id,
                private_key,
                enterprise_base_url,
            } => {
                if !https {
                    v.error(
                        format!("{field}.access"),
                        "a GitHub App authenticates HTTPS, but the URL is not HTTPS",
                        "use the repository's https:// URL",
                    );
                }
                if *app_id == 0 || *installation_id == 0 {
                    v.error(format!("{field}.access"), "the app id or installation id is 0", "give the GitHub App's id and the id of its installation on the organisation");
                }
                if let Some(url) = enterprise_base_url
                    && !url.starts_with("https://")
                {
                    v.error(format!("{field}.access.enterprise_base_url"), format!("`{url}` is not an https:// URL"), "give the API URL of the GitHub Enterprise server, like `https://github.example.com/api/v3`");
                }
                private_key.validate(v, &format!("{field}.access.private_key"));
            }
        }
    }

    /// The Argo CD Secret (secret material resolved through `client`, placeholders without),
    /// scoped to `project` unless shared by opt-in. Since Argo CD 3.0 an ApplicationSet git
    /// generator whose `project` is a literal reads project-scoped repositories too, so the
    /// team's sets need no shared credentials.
    pub(super) async fn secret(
        &self,
        name: &str,
        argocd_namespace: &str,
        project: &str,
        labels: &BTreeMap<String, String>,
        client: Option<&kube::Client>,
        module: &str,
    ) -> Result<Value> {
        let mut data: BTreeMap<&str, String> = BTreeMap::new();
        data.insert("type", "git".into());
        data.insert("url", self.url.clone());
        if !self.shared {
            data.insert("project", project.into());
        }
        match &self.access {
            RepoAccess::Public => {}
            RepoAccess::HttpsToken { username, token } => {
                data.insert("username", username.clone());
                data.insert(
                    "password",
                    token.resolve(client, module).await?.expose().to_owned(),
                );
            }
            RepoAccess::SshKey { private_key } => {
                data.insert(
                    "sshPrivateKey",
                    private_key
                        .resolve(client, module)
                        .await?
                        .expose()
                        .to_owned(),
                );
            }
            RepoAccess::GitHubApp {
                app_id,
                installation_id,
                private_key,
                enterprise_base_url,
            } => {
                data.insert("githubAppID", app_id.to_string());
                data.insert("githubAppInstallationID", installation_id.to_string());
                data.insert(
                    "githubAppPrivateKey",
                    private_key
                        .resolve(client, module)
                        .await?
                        .expose()
                        .to_owned(),
                );
                if let Some(url) = enterprise_base_url {
                    data.insert("githubAppEnterpriseBaseUrl", url.clone());
                }
            }
        }
        let mut labels = labels.clone();
        labels.insert(
            super::SECRET_TYPE_LABEL.into(),
            if self.prefix {
                "repo-creds"
            } else {
                "repository"
            }
            .into(),
        );
        let scope = if self.shared {
            "every-project".to_owned()
        } else {
            format!("project:{project}")
        };
        Ok(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": argocd_namespace, "labels": labels,
                "annotations": {CREDENTIALS_SCOPE: scope}},
            "stringData": data,
        }))
    }
}

/// `user@host:path`, the scp-like SSH form Git accepts.
fn is_scp_like(url: &str) -> bool {
    match url.split_once(':') {
        Some((user_host, path)) => {
            !user_host.is_empty()
                && !user_host.contains('/')
                && user_host.contains('@')
                && !path.is_empty()
                && !path.starts_with("//")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert!(is_scp_like("git@github.com:acme/shop.git"));
        assert!(!is_scp_like("https://github.com/acme/shop.git"));
        assert!(!is_scp_like("github.com:acme"));
        assert!(!is_scp_like("/srv/git/shop"));
    }

    #[tokio::test]
    async fn rendered_secrets_carry_values_only_for_the_engine() {
        let repo = Repository::new(
            "https://github.com/acme/shop.git",
            RepoAccess::HttpsToken {
                username: "git".into(),
                token: Secret::new("ghp_real").into(),
            },
        );
        let s = repo
            .secret(
                "shop-repo-0",
                "argocd",
                "shop",
                &BTreeMap::new(),
                None,
                "shop",
            )
            .await
            .unwrap();
        assert_eq!(s["stringData"]["password"], "ghp_real");
        assert_eq!(s["stringData"]["project"], "shop");
        assert_eq!(
            s["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
            "repository"
        );
        assert!(!format!("{repo:?}").contains("ghp_real"));
        assert!(!serde_json::to_string(&repo).unwrap().contains("ghp_real"));
        let existing = SecretSource::existing("ci", "gh", "token");
        let placeholder = existing.resolve(None, "shop").await.unwrap();
        assert!(devops_stack_core::plan::is_unknown(placeholder.expose()));
    }
}
