use serde::Serialize;

use super::Hostnames;
use crate::handle::{AsDependencies, Dependency};
use crate::secret::Secret;

/// A group of users of the stack's OIDC provider, by the name its tokens carry in the groups
/// claim. Argo CD's RBAC matches it there; Kubernetes RBAC matches it as a `Group` subject
/// (when the API server authenticates the same provider's tokens).
///
/// Made from the provider's handle with `handle.group("name")` (which makes the dependency on
/// the provider), or with [`IdentityGroup::external`] for a provider outside the stack. The
/// name is checked when the stack is built by the module that uses it.
///
/// ```
/// use devops_stack_core::interfaces::IdentityGroup;
/// let g = IdentityGroup::external("shop-deployers");
/// assert_eq!(g.name(), "shop-deployers");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityGroup {
    name: String,
    provider: Option<Dependency>,
    problem: Option<String>,
}

impl IdentityGroup {
    /// A group of an identity provider outside the stack (which the stack does not create).
    pub fn external(name: impl Into<String>) -> Self {
        IdentityGroup {
            name: name.into(),
            provider: None,
            problem: None,
        }
    }

    pub(crate) fn of(name: String, provider: Dependency, problem: Option<String>) -> Self {
        IdentityGroup {
            name,
            provider: Some(provider),
            problem,
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the stack's provider would refuse this name, if it would
    /// ([`OidcProvider::group_name_problem`]); a module using the group reports it when the
    /// stack is built.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// The module of the stack's provider, for a group made from its handle.
    pub(crate) fn provider(&self) -> Option<&Dependency> {
        self.provider.as_ref()
    }
}

impl Serialize for IdentityGroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl AsDependencies for IdentityGroup {
    fn push_to(&self, out: &mut Vec<Dependency>) {
        out.extend(self.provider.iter().cloned());
    }
}

/// The OIDC settings one application needs to log its users in.
#[derive(Debug, Clone, Serialize)]
pub struct Oidc {
    /// The issuer URL (the `iss` of tokens; discovery is at `/.well-known/openid-configuration`).
    pub issuer_url: String,
    /// The authorization endpoint.
    pub authorization_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The userinfo endpoint.
    pub userinfo_url: String,
    /// The end-session (logout) endpoint, if the provider has one.
    pub logout_url: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret: redacted in `Debug`, plans and logs.
    pub client_secret: Secret,
    /// The scopes to request.
    pub scopes: Vec<String>,
    /// The claim that carries group membership.
    pub groups_claim: String,
    /// Extra arguments for an OIDC proxy (oauth2-proxy) in front of apps without OIDC support.
    pub extra_proxy_args: Vec<String>,
}

/// The applications of the stack that log in with OIDC, with their callback paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum App {
    /// Argo CD (`/auth/callback`).
    ArgoCd,
    /// Grafana (`/login/generic_oauth`).
    Grafana,
    /// Prometheus behind oauth2-proxy (`/oauth2/callback`).
    Prometheus,
    /// Alertmanager behind oauth2-proxy (`/oauth2/callback`).
    Alertmanager,
}

impl App {
    /// Every built-in app.
    pub const ALL: [App; 4] = [
        App::ArgoCd,
        App::Grafana,
        App::Prometheus,
        App::Alertmanager,
    ];

    /// The app's name: its client name and hostname prefix.
    pub fn name(self) -> &'static str {
        match self {
            App::ArgoCd => "argocd",
            App::Grafana => "grafana",
            App::Prometheus => "prometheus",
            App::Alertmanager => "alertmanager",
        }
    }

    /// The path the provider redirects to after login.
    pub fn callback_path(self) -> &'static str {
        match self {
            App::ArgoCd => "/auth/callback",
            App::Grafana => "/login/generic_oauth",
            App::Prometheus | App::Alertmanager => "/oauth2/callback",
        }
    }
}

/// A client an OIDC provider creates: its name and where it may redirect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OidcClient {
    /// The client's name (`argocd`).
    pub name: String,
    /// The allowed redirect (callback) URIs.
    pub redirect_uris: Vec<String>,
    /// The allowed post-logout redirect URIs.
    pub logout_uris: Vec<String>,
}

impl OidcClient {
    /// A client with explicit redirect URIs.
    pub fn new(
        name: impl Into<String>,
        redirect_uris: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        OidcClient {
            name: name.into(),
            redirect_uris: redirect_uris.into_iter().map(Into::into).collect(),
            logout_uris: Vec::new(),
        }
    }

    /// The client of a built-in app, its URIs derived from the stack's hostnames.
    ///
    /// ```
    /// use devops_stack_core::interfaces::{App, Hostnames, OidcClient};
    /// let c = OidcClient::app(App::Grafana, &Hostnames::new("prod", "example.com"));
    /// assert_eq!(c.redirect_uris, ["https://grafana.apps.prod.example.com/login/generic_oauth"]);
    /// ```
    pub fn app(app: App, hosts: &Hostnames) -> Self {
        let base = hosts.url(app.name());
        OidcClient {
            name: app.name().into(),
            redirect_uris: vec![format!("{base}{}", app.callback_path())],
            logout_uris: vec![base],
        }
    }

    /// The client `kubernetes` that `kubectl` logs in with (through the kubelogin plugin,
    /// whose local callbacks are `http://localhost:8000` and `http://localhost:18000`), the
    /// audience a cluster trusting the provider checks.
    ///
    /// ```
    /// use devops_stack_core::interfaces::OidcClient;
    /// assert_eq!(OidcClient::kubernetes().name, "kubernetes");
    /// ```
    pub fn kubernetes() -> Self {
        OidcClient::new(
            "kubernetes",
            ["http://localhost:8000", "http://localhost:18000"],
        )
    }

    /// The clients of all built-in apps.
    pub fn all_apps(hosts: &Hostnames) -> Vec<OidcClient> {
        App::ALL
            .iter()
            .map(|&a| OidcClient::app(a, hosts))
            .collect()
    }
}

/// A module output that provides OIDC login (Keycloak, Cognito).
///
/// The provider also creates the groups that other modules of its stack name through its
/// handle (`handle.group("shop-deployers")`, for a team's roles): its module reads them with
/// [`Context::requested_groups`](crate::Context::requested_groups), creates those that do not
/// exist, owns and deletes only those it created, and uses an existing one as it is.
pub trait OidcProvider {
    /// The settings for client `name`, if the provider has that client.
    fn client(&self, name: &str) -> Option<Oidc>;

    /// The names of the provider's clients.
    fn client_names(&self) -> Vec<String>;

    /// Why the provider would refuse a group named `name`, if it would (checked when the
    /// stack is built; by default any name is accepted).
    fn group_name_problem(name: &str) -> Option<String>
    where
        Self: Sized,
    {
        let _ = name;
        None
    }
}

/// How a cluster's API server authenticates tokens of the stack's OIDC provider: the issuer and
/// client it trusts, and the claims and prefixes that make Kubernetes user and group names
/// (a token's group `shop-deployers` is the RBAC `Group` `<groups_prefix>shop-deployers`).
///
/// ```
/// use devops_stack_core::interfaces::ClusterOidc;
/// let oidc = ClusterOidc::new("https://id.example.com", "kubernetes", "groups");
/// assert_eq!(oidc.group_subject("shop-deployers"), "oidc:shop-deployers");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterOidc {
    /// The issuer URL.
    pub issuer_url: String,
    /// The client id tokens are issued for (their audience).
    pub client_id: String,
    /// The claim holding the user's name (default `email`).
    pub username_claim: String,
    /// The prefix of user names (default `oidc:`).
    pub username_prefix: String,
    /// The claim holding the user's groups.
    pub groups_claim: String,
    /// The prefix of group names (default `oidc:`), so that no group of the provider can name
    /// one of Kubernetes' own (`system:masters`).
    pub groups_prefix: String,
}

impl ClusterOidc {
    /// Trusts `issuer_url` for `client_id`, with groups in `groups_claim`, the `email` claim
    /// as user name, and both prefixed `oidc:`.
    pub fn new(
        issuer_url: impl Into<String>,
        client_id: impl Into<String>,
        groups_claim: impl Into<String>,
    ) -> Self {
        ClusterOidc {
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            username_claim: "email".into(),
            username_prefix: "oidc:".into(),
            groups_claim: groups_claim.into(),
            groups_prefix: "oidc:".into(),
        }
    }

    /// The RBAC `Group` subject of the provider's group `name`.
    pub fn group_subject(&self, name: &str) -> String {
        format!("{}{name}", self.groups_prefix)
    }
}

/// A module output saying how a cluster authenticates the stack's OIDC tokens (the EKS
/// identity provider association).
pub trait ClusterOidcProvider {
    /// The cluster's OIDC authentication.
    fn cluster_oidc(&self) -> ClusterOidc;
}

impl ClusterOidcProvider for ClusterOidc {
    fn cluster_oidc(&self) -> ClusterOidc {
        self.clone()
    }
}
