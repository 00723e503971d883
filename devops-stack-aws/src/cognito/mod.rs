//! The [`Cognito`] module: a Cognito user pool as the stack's OIDC provider.
//!
//! | Input | Default |
//! |---|---|
//! | the stack's [`Hostnames`] (`new`) | required; the callback URLs are made from them |
//! | [`Cognito::pool_name`] / [`Cognito::existing_pool`] | a new pool named after the cluster |
//! | [`Cognito::domain_prefix`] | `<cluster>-<base domain, dots as dashes>` |
//! | [`Cognito::clients`] | [`OidcClient::all_apps`]: Argo CD, Grafana, Prometheus, Alertmanager |
//! | [`Cognito::admin_group`] | [`DEFAULT_ADMIN_GROUP`] |
//! | [`Cognito::user`] | no users |
//! | [`Cognito::aws`], [`Cognito::region`], [`Cognito::endpoint_url`] | the SDK's standard chain |
//!
//! Output: [`CognitoOidc`], an `OidcProvider` with one [`Oidc`] per client (issuer
//! `https://cognito-idp.<region>.amazonaws.com/<pool id>`, the hosted UI's endpoints, the client
//! id and its secret as a [`Secret`], groups in the `cognito:groups` claim).
//!
//! The module takes [`Hostnames`], not a cluster handle, so it runs in parallel with the cluster.
//!
//! # What a re-run finds, and what destroy deletes
//!
//! A re-run creates nothing twice: it finds its pool by name and by the tags it put on it
//! (`devops-stack.io/stack` = the stack's name, `devops-stack.io/module` = the module's id), the
//! domain on the pool, the clients by name, the group by name and the users by username, and
//! updates the clients' URLs and OAuth settings in place.
//!
//! * A pool the module **created** (tagged as above) is its own: destroy deletes its domain,
//!   then the pool with everything in it. A pool of the same name without the tags is never
//!   touched (Cognito pool names are not unique).
//! * A pool given by id with [`Cognito::existing_pool`] is **adopted** and never deleted.
//!   Cognito cannot tag app clients, so in an adopted pool the module owns what bears its
//!   names: destroy deletes the app clients named in its client list, the domain when it is the
//!   module's prefix, and each group when its description is the module's marker
//!   ([`group_marker`]). Users are people: they are kept in an adopted pool.
//!
//! # Groups
//! The module ensures the admin group and every group the stack's teams name through its
//! handle (`cognito.group("shop-deployers")`). A group it creates carries its marker as its
//! description and is deleted with the module; a group that exists already is used as it is
//! and never deleted. A name Cognito would refuse (more than 128 characters, other characters
//! than letters, digits, spaces or `+=,.@-_`) is an error of the stack's build.

mod apply;

use std::collections::BTreeMap;

use devops_stack_core::interfaces::{Hostnames, Oidc, OidcClient, OidcProvider};
use devops_stack_core::plan::unknown;
use devops_stack_core::validate::email;
use devops_stack_core::{
    Context, Interface, Module, ModuleResult, Planned, Resource, Secret, Validation,
};
use serde::Serialize;
use serde_json::json;

use crate::config::AwsConfig;

/// The name of the admin group unless set otherwise.
pub const DEFAULT_ADMIN_GROUP: &str = "devops-stack-admins";

pub use crate::tags::{MODULE_TAG, STACK_TAG};

/// The OAuth scopes every client may request.
pub const SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// The claim of Cognito's ID tokens that lists the user's groups.
pub const GROUPS_CLAIM: &str = "cognito:groups";

/// The description the module gives the admin group it creates, by which it recognises it.
pub fn group_marker(stack: &str, module: &str) -> String {
    format!("Managed by devops-stack (stack {stack}, module {module})")
}

/// Where the user pool comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pool {
    Create(String),
    Existing(String),
}

/// A Cognito user pool with a hosted-UI domain, one OAuth client per app, an admin group and
/// users.
///
/// ```
/// use devops_stack_aws::cognito::{Cognito, User};
/// use devops_stack_core::interfaces::Hostnames;
/// let cognito = Cognito::new("cognito", Hostnames::new("prod", "example.com"))
///     .domain_prefix("prod-example-login")
///     .user(User::new("alice", "alice@example.com").admin())
///     .user(User::new("bob", "bob@example.com"));
/// # let _ = cognito;
/// ```
#[derive(Debug, Clone)]
pub struct Cognito {
    id: String,
    hostnames: Hostnames,
    pool: Pool,
    domain_prefix: String,
    clients: Vec<OidcClient>,
    admin_group: String,
    users: BTreeMap<String, User>,
    aws: AwsConfig,
}

/// A user of the pool, with a verified email. Cognito emails them a temporary password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The username.
    pub username: String,
    /// The email address (marked verified).
    pub email: String,
    /// Whether the user is in the admin group.
    pub admin: bool,
}

impl User {
    /// A user who is not an admin.
    pub fn new(username: impl Into<String>, email: impl Into<String>) -> Self {
        User {
            username: username.into(),
            email: email.into(),
            admin: false,
        }
    }

    /// Puts the user in the admin group.
    #[must_use]
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }
}

fn default_prefix(hosts: &Hostnames) -> String {
    let raw = format!("{}-{}", hosts.cluster, hosts.base_domain).to_ascii_lowercase();
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    cleaned
        .chars()
        .take(63)
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

crate::config::aws_setters!(Cognito);

impl Cognito {
    /// A new pool named after the cluster, with clients for every built-in app of `hostnames`.
    pub fn new(id: impl Into<String>, hostnames: Hostnames) -> Self {
        Cognito {
            id: id.into(),
            pool: Pool::Create(hostnames.cluster.clone()),
            domain_prefix: default_prefix(&hostnames),
            clients: OidcClient::all_apps(&hostnames),
            hostnames,
            admin_group: DEFAULT_ADMIN_GROUP.into(),
            users: BTreeMap::new(),
            aws: AwsConfig::new(),
        }
    }

    /// The name of the pool the module creates.
    #[must_use]
    pub fn pool_name(mut self, name: impl Into<String>) -> Self {
        self.pool = Pool::Create(name.into());
        self
    }

    /// Uses (adopts) the existing pool `pool_id` instead of creating one; it is never deleted.
    #[must_use]
    pub fn existing_pool(mut self, pool_id: impl Into<String>) -> Self {
        self.pool = Pool::Existing(pool_id.into());
        self
    }

    /// The hosted UI's domain prefix (`<prefix>.auth.<region>.amazoncognito.com`), unique in the region.
    #[must_use]
    pub fn domain_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.domain_prefix = prefix.into();
        self
    }

    /// The app clients (default: [`OidcClient::all_apps`] of the hostnames).
    #[must_use]
    pub fn clients(mut self, clients: impl IntoIterator<Item = OidcClient>) -> Self {
        self.clients = clients.into_iter().collect();
        self
    }

    /// One more app client.
    #[must_use]
    pub fn client(mut self, client: OidcClient) -> Self {
        self.clients.push(client);
        self
    }

    /// The admin group's name (default [`DEFAULT_ADMIN_GROUP`]).
    #[must_use]
    pub fn admin_group(mut self, name: impl Into<String>) -> Self {
        self.admin_group = name.into();
        self
    }

    /// A user (replacing one of the same username).
    #[must_use]
    pub fn user(mut self, user: User) -> Self {
        self.users.insert(user.username.clone(), user);
        self
    }

    /// The hostnames the clients' URLs are made from.
    pub fn hostnames(&self) -> &Hostnames {
        &self.hostnames
    }

    fn pool_resource(&self) -> String {
        match &self.pool {
            Pool::Create(name) => format!("Cognito user pool `{name}`"),
            Pool::Existing(id) => format!("Cognito user pool `{id}`"),
        }
    }

    /// The groups the module ensures: the admin group, then those the stack's other modules
    /// name through `handle.group(..)` (a team's roles).
    fn groups(&self, ctx: &Context) -> Vec<String> {
        ctx.groups_with(&self.admin_group)
    }

    /// The output for a pool in `region` with its clients' ids and secrets.
    fn output(
        &self,
        ctx: &Context,
        region: &str,
        pool_id: &str,
        clients: BTreeMap<String, (String, Secret)>,
    ) -> CognitoOidc {
        let issuer_url = format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}");
        let base = format!(
            "https://{}.auth.{region}.amazoncognito.com",
            self.domain_prefix
        );
        let clients = clients
            .into_iter()
            .map(|(name, (client_id, client_secret))| {
                let oidc = Oidc {
                    issuer_url: issuer_url.clone(),
                    authorization_url: format!("{base}/oauth2/authorize"),
                    token_url: format!("{base}/oauth2/token"),
                    userinfo_url: format!("{base}/oauth2/userInfo"),
                    logout_url: Some(format!("{base}/logout")),
                    client_id,
                    client_secret,
                    scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                    groups_claim: GROUPS_CLAIM.into(),
                    extra_proxy_args: vec![
                        "--oidc-email-claim=email".into(),
                        format!("--oidc-groups-claim={GROUPS_CLAIM}"),
                    ],
                };
                (name, oidc)
            })
            .collect();
        CognitoOidc {
            region: region.into(),
            user_pool_id: pool_id.into(),
            domain: format!("{}.auth.{region}.amazoncognito.com", self.domain_prefix),
            issuer_url,
            admin_group: self.admin_group.clone(),
            groups: self.groups(ctx),
            clients,
        }
    }
}

/// What the [`Cognito`] module outputs: the pool and one [`Oidc`] per app client.
#[derive(Debug, Clone, Serialize)]
pub struct CognitoOidc {
    /// The AWS region.
    pub region: String,
    /// The user pool's id.
    pub user_pool_id: String,
    /// The hosted UI's domain (`<prefix>.auth.<region>.amazoncognito.com`).
    pub domain: String,
    /// The issuer URL.
    pub issuer_url: String,
    /// The admin group's name (in the `cognito:groups` claim of admins).
    pub admin_group: String,
    /// The groups the module ensures: the admin group and every group the stack's teams name.
    pub groups: Vec<String>,
    /// The OIDC settings of each client, by client name.
    pub clients: BTreeMap<String, Oidc>,
}

impl OidcProvider for CognitoOidc {
    fn client(&self, name: &str) -> Option<Oidc> {
        self.clients.get(name).cloned()
    }

    fn client_names(&self) -> Vec<String> {
        self.clients.keys().cloned().collect()
    }

    fn group_name_problem(name: &str) -> Option<String> {
        check_pool_name(name).err()
    }
}

/// Checks a Cognito domain prefix: 1-63 lowercase letters, digits and `-`, not starting or
/// ending with `-`, without the reserved words `aws`, `amazon` or `cognito`.
pub fn check_domain_prefix(prefix: &str) -> Result<(), String> {
    devops_stack_core::validate::dns_label(prefix)?;
    if let Some(word) = ["aws", "amazon", "cognito"]
        .into_iter()
        .find(|w| prefix.contains(w))
    {
        return Err(format!("`{prefix}` contains the reserved word `{word}`"));
    }
    Ok(())
}

/// Checks a Cognito user pool name: 1-128 letters, digits, spaces or `+=,.@-_`.
fn check_pool_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "`{name}` has {} characters; Cognito allows 1 to 128",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_alphanumeric() || " +=,.@-_".contains(*c)))
    {
        Some(c) => Err(format!("`{name}` contains `{c}`")),
        None => Ok(()),
    }
}

impl Module for Cognito {
    type Output = CognitoOidc;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "cognito"
    }

    fn validate(&self, v: &mut Validation) {
        v.provides(devops_stack_core::Capability::Interface(Interface::Oidc));
        match &self.pool {
            Pool::Create(name) => {
                v.check(
                    "pool_name",
                    check_pool_name(name),
                    "use letters, digits, spaces or `+=,.@-_`",
                );
            }
            Pool::Existing(id) => {
                let ok = id.split_once('_').is_some_and(|(region, rest)| {
                    region.contains('-')
                        && !rest.is_empty()
                        && rest.chars().all(|c| c.is_ascii_alphanumeric())
                });
                if !ok {
                    v.error(
                        "existing_pool",
                        format!("`{id}` is not a user pool id"),
                        "use an id like `eu-west-1_AbCdEf123`",
                    );
                }
            }
        }
        v.check(
            "domain_prefix",
            check_domain_prefix(&self.domain_prefix),
            "use 1-63 lowercase letters, digits or `-`, without `aws`, `amazon` or `cognito`",
        );
        v.check(
            "admin_group",
            check_pool_name(&self.admin_group),
            "use 1-128 letters, digits, spaces or `+=,.@-_`",
        );
        if self.clients.is_empty() {
            v.error(
                "clients",
                "is empty",
                "keep the default clients or add one with `.client(..)`",
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for client in &self.clients {
            let field = format!("clients.{}", client.name);
            if !names.insert(&client.name) {
                v.error(&field, "is declared twice", "give each client its own name");
            }
            if client.name.is_empty() || client.name.len() > 128 {
                v.error(
                    &field,
                    "the name must have 1 to 128 characters",
                    "use a short name like `grafana`",
                );
            }
            if client.redirect_uris.is_empty() {
                v.error(
                    format!("{field}.redirect_uris"),
                    "is empty",
                    "give at least one callback URL",
                );
            }
            for uri in client.redirect_uris.iter().chain(&client.logout_uris) {
                let local = uri.starts_with("http://localhost");
                if !uri.starts_with("https://") && !local {
                    v.error(
                        format!("{field}.redirect_uris"),
                        format!(
                            "`{uri}` is not an https URL (Cognito allows http only for localhost)"
                        ),
                        "use https:// URLs",
                    );
                }
            }
        }
        for (name, user) in &self.users {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_whitespace) {
                v.error(
                    format!("users.{name}"),
                    "the username must have 1 to 128 characters without spaces",
                    "use a short username like `alice`",
                );
            }
            v.check(
                &format!("users.{name}.email"),
                email(&user.email),
                "use a valid address like `alice@example.com`",
            );
        }
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<CognitoOidc>> {
        let id = ctx.module_id();
        let region = self
            .aws
            .region_name()
            .map_or_else(|| unknown(id, "region"), str::to_owned);
        let (pool_name, pool_id) = match &self.pool {
            Pool::Create(name) => (name.clone(), unknown(id, "user_pool_id")),
            Pool::Existing(pool) => (pool.clone(), pool.clone()),
        };
        let mut resources = vec![
            Resource::cloud(
                "aws",
                "cognito:UserPool",
                &pool_name,
                json!({
                    "mode": if matches!(self.pool, Pool::Create(_)) { "create" } else { "adopt" },
                    "tags": {STACK_TAG: ctx.stack_name(), MODULE_TAG: id},
                    "aws": self.aws.plan_properties(),
                }),
            ),
            Resource::cloud(
                "aws",
                "cognito:UserPoolDomain",
                &self.domain_prefix,
                json!({"user_pool": pool_name}),
            ),
        ];
        for client in &self.clients {
            resources.push(Resource::cloud(
                "aws",
                "cognito:UserPoolClient",
                &client.name,
                json!({
                    "callback_urls": client.redirect_uris,
                    "logout_urls": client.logout_uris,
                    "allowed_oauth_flows": ["code"],
                    "allowed_oauth_scopes": SCOPES,
                    "generate_secret": true,
                }),
            ));
        }
        for group in self.groups(ctx) {
            resources.push(Resource::cloud(
                "aws",
                "cognito:Group",
                &group,
                json!({
                    "mode": "create unless it exists (an existing group is used, not owned)",
                    "description": group_marker(ctx.stack_name(), id),
                }),
            ));
        }
        for user in self.users.values() {
            resources.push(Resource::cloud(
                "aws",
                "cognito:User",
                &user.username,
                json!({"email": user.email, "admin": user.admin}),
            ));
        }
        let clients = self
            .clients
            .iter()
            .map(|c| {
                let field = format!("clients.{}", c.name);
                (
                    c.name.clone(),
                    (
                        unknown(id, &format!("{field}.client_id")),
                        Secret::new(unknown(id, &format!("{field}.client_secret"))),
                    ),
                )
            })
            .collect();
        Ok(Planned::new(self.output(ctx, &region, &pool_id, clients)).with_resources(resources))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<CognitoOidc> {
        Ok(apply::apply(self, ctx).await?)
    }

    async fn read(&self, ctx: &Context) -> ModuleResult<Option<CognitoOidc>> {
        Ok(apply::read(self, ctx).await?)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        Ok(apply::destroy(self, ctx).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_pool_names() {
        assert!(check_domain_prefix("prod-example-login").is_ok());
        assert!(
            check_domain_prefix("my-aws-login")
                .unwrap_err()
                .contains("`aws`")
        );
        assert!(check_domain_prefix("Prod").is_err());
        assert!(check_domain_prefix("-prod").is_err());
        assert_eq!(
            default_prefix(&Hostnames::new("prod", "example.com")),
            "prod-example-com"
        );
        assert!(check_pool_name("prod pool").is_ok());
        assert!(check_pool_name("a/b").is_err());
    }
}
