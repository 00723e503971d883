//! A team's Git repositories and how Argo CD reaches them, rendered as Argo CD `repository` or
//! `repo-creds` Secrets.

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
/// prefix (an Argo CD credential template).
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
/// });
/// assert_eq!(org.url(), "git@github.com:acme/");
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    url: String,
    access: RepoAccess,
    prefix: bool,
}

impl Repository {
    /// The repository at `url` (`https://…` or SSH `git@host:path` / `ssh://…`).
    pub fn new(url: impl Into<String>, access: RepoAccess) -> Self {
        Repository {
            url: url.into(),
            access,
            prefix: false,
        }
    }

    /// Every repository whose URL starts with `prefix` (rendered as `repo-creds`).
    pub fn prefix(prefix: impl Into<String>, access: RepoAccess) -> Self {
        Repository {
            url: prefix.into(),
            access,
            prefix: true,
        }
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

    /// The `sourceRepos` pattern of the project.
    pub(super) fn source_pattern(&self) -> String {
        if self.prefix {
            format!("{}*", self.url)
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

    /// The Argo CD Secret (secret material resolved through `client`, placeholders without).
    /// Scoped to `project` unless `shared` (an ApplicationSet generator reads it: argo-cd#21016).
    pub(super) async fn secret(
        &self,
        name: &str,
        argocd_namespace: &str,
        project: Option<&str>,
        labels: &BTreeMap<String, String>,
        client: Option<&kube::Client>,
        module: &str,
    ) -> Result<Value> {
        let mut data: BTreeMap<&str, String> = BTreeMap::new();
        data.insert("type", "git".into());
        data.insert("url", self.url.clone());
        if let Some(p) = project {
            data.insert("project", p.into());
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
            "argocd.argoproj.io/secret-type".into(),
            if self.prefix {
                "repo-creds"
            } else {
                "repository"
            }
            .into(),
        );
        Ok(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": argocd_namespace, "labels": labels},
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
                Some("shop"),
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
