//! Keycloak, the stack's OIDC provider, from the `keycloakx` chart of
//! <https://codecentric.github.io/helm-charts> (Keycloak's own Quarkus image).
//!
//! # Inputs
//! - the cluster, Argo CD and the ingress controller, in [`Keycloak::new`](Keycloak#method.new);
//! - optionally a cluster issuer for TLS ([`Keycloak::issuer`](Keycloak#method.issuer)).
//!
//! # Outputs
//! [`KeycloakOidc`], which implements `OidcProvider`: `handle.oidc("grafana")` is the
//! `Input<Oidc>` of client `grafana`, with issuer `https://<keycloak host>/realms/<realm>`, the
//! standard endpoints under `…/protocol/openid-connect/`, scopes `openid profile email`, the
//! `groups` claim, and oauth2-proxy arguments that admit the admin group only; and the realm's
//! groups: the admin group and every group the stack's teams name through
//! `handle.group(..)`, created with the realm.
//!
//! # Defaults
//! Chart `keycloakx` [`CHART_VERSION`], namespace `keycloak`, 1 replica with the embedded
//! `dev-file` database (the realm is re-imported from its Secret on every start, so nothing is
//! lost; point `database` at PostgreSQL through `values` for several replicas: Keycloak then
//! skips the import of a realm that exists, and new groups or clients must be added through
//! its admin console or API), hostname
//! `keycloak.<subdomain>.<cluster>.<base_domain>`, realm `devops-stack`, admin group
//! [`DEFAULT_ADMIN_GROUP`](crate::DEFAULT_ADMIN_GROUP), one confidential client per built-in app
//! (`OidcClient::all_apps`: Argo CD, Grafana, Prometheus, Alertmanager) with redirect URIs derived
//! from the hostnames, no users.
//!
//! # Secrets
//! The admin password, every client secret and every user's initial password are generated
//! (`Secret::generate`) and kept in the Secret `<id>-secrets`; on apply the existing Secret is
//! read first, so a re-apply keeps the same values. The realm (with those secrets) is rendered
//! into the Secret `<id>-realm`, which Keycloak imports at start (`--import-realm`). Neither
//! secret is in the Application; plans show them redacted.

use std::collections::BTreeMap;

use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterIssuer, ClusterRef, Ingress, Oidc, OidcClient, OidcProvider,
};
use devops_stack_core::validate::email;
use devops_stack_core::{Context, Input, Needs, Validation};
use serde::Serialize;
use serde_json::{Value, json};

use crate::chart::{
    Chart, ChartSource, ChartSpec, Common, Env, Exposure, GeneratedSecret, Rendered, Secrets,
    Sizable, Sizing, ValueKind,
};
use crate::error::Result;

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::KEYCLOAKX.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::KEYCLOAKX.repository;

/// A user of the realm, member of the admin group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeycloakUser {
    /// The user's email (validated).
    pub email: String,
    /// Whether the user is in the admin group (default true).
    pub admin: bool,
}

/// What Keycloak outputs: the OIDC settings of each client.
#[derive(Debug, Clone, Serialize)]
pub struct KeycloakOidc {
    /// The issuer URL of the realm.
    pub issuer_url: String,
    /// The realm.
    pub realm: String,
    /// The admin group.
    pub admin_group: String,
    /// The realm's groups: the admin group and every group the stack's teams name.
    pub groups: Vec<String>,
    /// The OIDC settings by client name.
    pub clients: BTreeMap<String, Oidc>,
}

impl OidcProvider for KeycloakOidc {
    fn client(&self, name: &str) -> Option<Oidc> {
        self.clients.get(name).cloned()
    }

    fn client_names(&self) -> Vec<String> {
        self.clients.keys().cloned().collect()
    }

    fn group_name_problem(name: &str) -> Option<String> {
        name.contains('/')
            .then(|| "`/` separates the parts of a Keycloak group's path".to_owned())
    }
}

/// Deploys Keycloak with a realm, the stack's OIDC clients, an admin group and users.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`..., and
/// `replicas`, `resources`) are on [`Chart`].
pub type Keycloak = Chart<KeycloakSpec>;

/// The spec of [`Keycloak`]: where it is published, its realm, clients and users, its sizing.
#[derive(Debug, Clone)]
pub struct KeycloakSpec {
    exposure: Exposure,
    hostname: Option<String>,
    realm: String,
    admin_group: String,
    clients: Option<Vec<OidcClient>>,
    extra_clients: Vec<OidcClient>,
    users: BTreeMap<String, KeycloakUser>,
    sizing: Sizing,
}

impl Keycloak {
    /// Keycloak on `cluster`, deployed by `argocd`, published through `ingress`, with the id
    /// `keycloak`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
        ingress: impl Into<Input<Ingress>>,
    ) -> Self {
        let mut common = Common::new(
            "keycloak",
            cluster,
            argocd,
            ChartSource::new(CHART_REPOSITORY, "keycloakx", CHART_VERSION),
            "keycloak",
        );
        common.release_name = "keycloak".into();
        Chart::with_spec(
            common,
            KeycloakSpec {
                exposure: Exposure::new(ingress.into()),
                hostname: None,
                realm: "devops-stack".into(),
                admin_group: crate::DEFAULT_ADMIN_GROUP.into(),
                clients: None,
                extra_clients: Vec::new(),
                users: BTreeMap::new(),
                sizing: Sizing::new(
                    1,
                    crate::Resources::new()
                        .request("cpu", "250m")
                        .request("memory", "768Mi")
                        .limit("memory", "1Gi"),
                ),
            },
        )
    }

    /// TLS for the ingress from `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: Input<ClusterIssuer>) -> Self {
        self.spec.exposure.issuer = Some(issuer);
        self
    }

    /// Another hostname (default `keycloak.<subdomain>.<cluster>.<base_domain>`).
    #[must_use]
    pub fn hostname(mut self, host: impl Into<String>) -> Self {
        self.spec.hostname = Some(host.into());
        self
    }

    /// Another realm name (default `devops-stack`).
    #[must_use]
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.spec.realm = realm.into();
        self
    }

    /// Another admin group name.
    #[must_use]
    pub fn admin_group(mut self, group: impl Into<String>) -> Self {
        self.spec.admin_group = group.into();
        self
    }

    /// Replaces the default clients (the built-in apps, from the hostnames).
    #[must_use]
    pub fn clients(mut self, clients: Vec<OidcClient>) -> Self {
        self.spec.clients = Some(clients);
        self
    }

    /// Adds a client (an in-house app).
    #[must_use]
    pub fn client(mut self, client: OidcClient) -> Self {
        self.spec.extra_clients.push(client);
        self
    }

    /// Adds a user, member of the admin group.
    #[must_use]
    pub fn user(mut self, username: impl Into<String>, email: impl Into<String>) -> Self {
        self.spec.users.insert(
            username.into(),
            KeycloakUser {
                email: email.into(),
                admin: true,
            },
        );
        self
    }

    /// Adds users from a map of username to user.
    #[must_use]
    pub fn users(mut self, users: BTreeMap<String, KeycloakUser>) -> Self {
        self.spec.users.extend(users);
        self
    }
}

impl KeycloakSpec {
    fn all_clients(&self, env: &Env) -> Vec<OidcClient> {
        let mut clients = self
            .clients
            .clone()
            .unwrap_or_else(|| OidcClient::all_apps(&env.hostnames));
        clients.extend(self.extra_clients.iter().cloned());
        clients
    }

    /// The Secret of the generated values of the module `id`.
    fn secrets_name(id: &str) -> String {
        format!("{id}-secrets")
    }

    /// The realm's groups: the admin group, then the groups the stack's other modules name
    /// (`handle.group(..)`). The realm is the stack's: Keycloak imports it whole at start.
    fn groups(&self, ctx: &Context) -> Vec<String> {
        ctx.groups_with(&self.admin_group)
    }

    fn realm_json(
        &self,
        store: &str,
        clients: &[OidcClient],
        groups: &[String],
        secrets: &Secrets,
    ) -> Value {
        let groups_mapper = json!({
            "name": "groups",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-group-membership-mapper",
            "config": {
                "claim.name": "groups",
                "full.path": "false",
                "id.token.claim": "true",
                "access.token.claim": "true",
                "userinfo.token.claim": "true",
            },
        });
        let clients: Vec<Value> = clients
            .iter()
            .map(|c| {
                json!({
                    "clientId": c.name,
                    "name": c.name,
                    "enabled": true,
                    "protocol": "openid-connect",
                    "publicClient": false,
                    "clientAuthenticatorType": "client-secret",
                    "secret": secrets.get(store, &format!("client-{}", c.name)).expose(),
                    "standardFlowEnabled": true,
                    "directAccessGrantsEnabled": false,
                    "redirectUris": c.redirect_uris,
                    "webOrigins": ["+"],
                    "attributes": {"post.logout.redirect.uris": c.logout_uris.join("##")},
                    "protocolMappers": [groups_mapper],
                })
            })
            .collect();
        let users: Vec<Value> = self
            .users
            .iter()
            .map(|(name, u)| {
                json!({
                    "username": name,
                    "email": u.email,
                    "emailVerified": true,
                    "enabled": true,
                    "groups": if u.admin { vec![format!("/{}", self.admin_group)] } else { vec![] },
                    "credentials": [{
                        "type": "password",
                        "value": secrets.get(store, &format!("user-{name}")).expose(),
                        "temporary": true,
                    }],
                })
            })
            .collect();
        json!({
            "realm": self.realm,
            "enabled": true,
            "sslRequired": "external",
            "groups": groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
            "clients": clients,
            "users": users,
        })
    }
}

impl Sizable for KeycloakSpec {
    fn sizing(&mut self) -> &mut Sizing {
        &mut self.sizing
    }
}

impl ChartSpec for KeycloakSpec {
    type Output = KeycloakOidc;
    const KIND: &'static str = "keycloak";

    fn needs_more(&self, n: &mut Needs) {
        self.exposure.needs(n);
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/replicas", ValueKind::Integer),
            ("/resources", ValueKind::Object),
        ]
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        if let Some(h) = &self.hostname {
            v.dns_subdomain("hostname", h);
        }
        v.dns_label("realm", &self.realm);
        for (name, user) in &self.users {
            v.check(
                &format!("users.{name}.email"),
                email(&user.email),
                "give the user a valid email address like `jane@example.com`",
            );
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/') {
                v.error(
                    format!("users.{name}"),
                    "is not a valid username",
                    "use letters, digits, `.`, `_` or `-`",
                );
            }
        }
        for c in self.clients.iter().flatten().chain(&self.extra_clients) {
            v.dns_label(&format!("clients.{}", c.name), &c.name);
        }
        self.sizing.validate(v);
    }

    fn generated_secrets(&self, common: &Common, env: &Env) -> Vec<GeneratedSecret> {
        let mut keys = vec!["admin-password".to_owned()];
        keys.extend(
            self.all_clients(env)
                .iter()
                .map(|c| format!("client-{}", c.name)),
        );
        keys.extend(self.users.keys().map(|u| format!("user-{u}")));
        vec![GeneratedSecret {
            name: Self::secrets_name(&common.id),
            namespace: common.namespace.clone(),
            keys,
        }]
    }

    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        secrets: &Secrets,
    ) -> Result<Rendered<KeycloakOidc>> {
        let ing = self.exposure.resolve(ctx)?;
        let host = env.host("keycloak", self.hostname.as_deref());
        let base = ing.url(&host);
        let ns = &common.namespace;
        let store = Self::secrets_name(&common.id);
        let realm_secret = format!("{}-realm", common.id);
        let clients = self.all_clients(env);

        let extra_env = format!(
            "- name: KC_BOOTSTRAP_ADMIN_USERNAME\n  value: admin\n\
             - name: KC_BOOTSTRAP_ADMIN_PASSWORD\n  valueFrom:\n    secretKeyRef:\n      name: {store}\n      key: admin-password\n\
             - name: KC_HOSTNAME\n  value: {base}\n"
        );
        // the realm is imported at start: a changed realm (a new client or user) restarts Keycloak
        let groups = self.groups(ctx);
        let realm =
            serde_json::to_string_pretty(&self.realm_json(&store, &clients, &groups, secrets))
                .expect("JSON serializes");
        let checksum = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(realm.as_bytes());
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let defaults = json!({
            "replicas": self.sizing.replicas,
            "podAnnotations": {"checksum/realm": checksum},
            "resources": self.sizing.resources.to_value(),
            "command": ["/opt/keycloak/bin/kc.sh", "start", "--import-realm"],
            "http": {"relativePath": "/"},
            "database": {"vendor": "dev-file"},
            "proxy": {"enabled": true, "mode": "xforwarded", "http": {"enabled": true}},
            "extraEnv": extra_env,
            "extraVolumes": format!("- name: realm\n  secret:\n    secretName: {realm_secret}\n"),
            "extraVolumeMounts": "- name: realm\n  mountPath: /opt/keycloak/data/import\n  readOnly: true\n",
            "ingress": {
                "enabled": true,
                "ingressClassName": ing.class_name,
                "annotations": ing.annotations,
                "rules": [{"host": host, "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": ing.tls_list("keycloak", &host),
            },
        });
        let values = common.values(env, defaults, |crds| {
            json!({"metrics": {"enabled": true}, "serviceMonitor": {"enabled": true, "labels": crds.labels}})
        });

        let issuer_url = format!("{base}/realms/{}", self.realm);
        let endpoint = |p: &str| format!("{issuer_url}/protocol/openid-connect/{p}");
        let scopes = vec![
            "openid".to_owned(),
            "profile".to_owned(),
            "email".to_owned(),
        ];
        let oidc_clients = clients
            .iter()
            .map(|c| {
                let oidc = Oidc {
                    issuer_url: issuer_url.clone(),
                    authorization_url: endpoint("auth"),
                    token_url: endpoint("token"),
                    userinfo_url: endpoint("userinfo"),
                    logout_url: Some(endpoint("logout")),
                    client_id: c.name.clone(),
                    client_secret: secrets.get(&store, &format!("client-{}", c.name)).clone(),
                    scopes: scopes.clone(),
                    groups_claim: "groups".into(),
                    extra_proxy_args: vec![
                        "--provider=oidc".into(),
                        format!("--oidc-issuer-url={issuer_url}"),
                        format!("--scope={}", scopes.join(" ")),
                        "--oidc-groups-claim=groups".into(),
                        format!("--allowed-group={}", self.admin_group),
                        "--email-domain=*".into(),
                    ],
                };
                (c.name.clone(), oidc)
            })
            .collect();

        let mut stored: Vec<(String, String)> = vec![(
            "admin-password".to_owned(),
            secrets.get(&store, "admin-password").expose().to_owned(),
        )];
        for c in &clients {
            let k = format!("client-{}", c.name);
            stored.push((k.clone(), secrets.get(&store, &k).expose().to_owned()));
        }
        for u in self.users.keys() {
            let k = format!("user-{u}");
            stored.push((k.clone(), secrets.get(&store, &k).expose().to_owned()));
        }
        let mut objects = common.chart_objects(env, values);
        objects.insert(
            1,
            env.secret(
                &store,
                ns,
                &[],
                stored.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        );
        objects.insert(
            2,
            env.secret(&realm_secret, ns, &[], [("realm.json", realm.as_str())]),
        );
        Ok(Rendered {
            output: KeycloakOidc {
                issuer_url,
                realm: self.realm.clone(),
                admin_group: self.admin_group.clone(),
                groups,
                clients: oidc_clients,
            },
            objects,
        })
    }
}
