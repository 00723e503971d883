//! cert-manager and the stack's cluster issuers, from the `cert-manager` chart of
//! <https://charts.jetstack.io>.
//!
//! # Inputs
//! - the cluster and Argo CD, in [`CertManager::new`](CertManager#method.new);
//! - optionally the ingress controller whose class the Let's Encrypt HTTP-01 solver uses
//!   ([`CertManager::http01_ingress`]; without it the solver's ingress gets the cluster's
//!   default class);
//! - optionally the ServiceMonitor CRDs ([`CertManager::service_monitors`]);
//! - with [`AcmeChallenge::Dns01`]
//!   ([`CertManager::acme_challenge`](CertManager#method.acme_challenge)), a DNS zone and a
//!   workload identity.
//!
//! # Outputs
//! [`ClusterIssuers`], which implements `IssuerProvider`: `handle.issuer(IssuerKind::..)` is the
//! `Input<ClusterIssuer>` modules take for the TLS of their ingresses.
//!
//! # Defaults
//! Chart `cert-manager` [`CHART_VERSION`] with its CRDs (kept on uninstall), namespace
//! `cert-manager`, 1 replica of each component, Prometheus metrics on. Issuers: a self-signed CA
//! (`self-signed-ca`: a selfSigned `ClusterIssuer` signs the CA `Certificate`, whose key pair backs
//! the CA `ClusterIssuer`). With [`CertManager::letsencrypt`](CertManager#method.letsencrypt), also
//! `letsencrypt-staging` and `letsencrypt-production` with the contact email (validated) and an
//! HTTP-01 solver; the module then declares that it requires an ingress controller in the stack.
//!
//! # ACME challenges
//! [`AcmeChallenge::Http01`] (the default) answers challenges through an ingress of the
//! cluster, which Let's Encrypt must reach. [`AcmeChallenge::Dns01`] answers them with TXT
//! records in a DNS zone (a Route 53 hosted zone on AWS): needed for wildcard certificates and
//! for clusters not reachable from the internet. The Let's Encrypt issuers then get the solver
//! `{dns01: <the zone's solver block>, selector: {dnsZones: [<zone>]}}`, the block written by the
//! zone's provider ([`Dns01Solver`](devops_stack_core::interfaces::Dns01Solver); for Route 53
//! `{route53: {region, hostedZoneID}}`) and embedded as given, and cert-manager's
//! service account (`serviceAccount.name`, the chart's default name for the release) gets a
//! workload role with the zone's `change_policy` (changing records of that zone only), made before
//! the Application and deleted after it on destroy. Its annotations go on the chart's
//! `serviceAccount.annotations`, and the pod gets `securityContext.fsGroup: 1001`, as
//! cert-manager's Route 53 guide asks for IRSA, so that the projected web-identity token is
//! readable by the controller. The stack's hostnames (`*.<subdomain>.<cluster>.<base domain>`)
//! must be inside the zone: otherwise plan and apply stop, naming both, before anything is made.
//!
//! # How the issuers are deployed
//! `ClusterIssuer` and `Certificate` are custom resources whose CRDs come from the chart, and
//! cert-manager's webhook must be serving before it admits them. They are rendered into the same
//! Application through the chart's `extraObjects` value, annotated with Argo CD sync waves 1 and
//! 2: Argo CD applies the chart (CRDs, controller, webhook) in wave 0, waits until it is healthy,
//! then creates the issuers, retrying with backoff while the webhook starts. One Application
//! keeps one release and one inventory; there is no second copy of the chart, and no apply
//! through the engine that could run before the CRDs exist. The plan shows every issuer inside
//! the Application's values.

use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterIssuer, ClusterRef, DnsZone, Ingress, IssuerKind, IssuerProvider,
    RoleRequest, ServiceAccount, WorkloadIdentityRef,
};
use devops_stack_core::validate::email;
use devops_stack_core::{Context, Input, Interface, Needs, Validation};
use serde::Serialize;
use serde_json::{Value, json};

use crate::chart::{
    Chart, ChartSource, ChartSpec, Common, Env, Rendered, Secrets, Sizable, Sizing, ValueKind,
    WantedRole, helm_fullname,
};
use crate::error::{Error, Result};
use crate::merge_values;

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::CERT_MANAGER.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::CERT_MANAGER.repository;

/// The ACME directory of Let's Encrypt's staging environment.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// The ACME directory of Let's Encrypt's production environment.
pub const LETSENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The group cert-manager's pod runs with under [`AcmeChallenge::Dns01`] (`fsGroup`), so that
/// the projected web-identity token of its workload role is readable.
pub const DNS01_FS_GROUP: u32 = 1001;

/// How the Let's Encrypt issuers answer ACME challenges.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum AcmeChallenge {
    /// Through an ingress of the cluster (the default): Let's Encrypt must reach it.
    #[default]
    Http01,
    /// With TXT records in a DNS zone, changed by cert-manager with a workload role: for
    /// wildcard certificates and clusters not reachable from the internet.
    Dns01 {
        /// The zone the stack's hostnames are in.
        zone: Input<DnsZone>,
        /// The workload identity that makes cert-manager's role.
        identity: Input<WorkloadIdentityRef>,
    },
}

impl AcmeChallenge {
    /// DNS-01 in `zone`, cert-manager's role made by `identity`.
    ///
    /// ```
    /// # use devops_stack_core::{Input, interfaces::{DnsZone, WorkloadIdentityRef}};
    /// # fn f(zone: Input<DnsZone>, identity: Input<WorkloadIdentityRef>) {
    /// use devops_stack_modules::AcmeChallenge;
    /// let challenge = AcmeChallenge::dns01(zone, identity);
    /// # }
    /// ```
    pub fn dns01(
        zone: impl Into<Input<DnsZone>>,
        identity: impl Into<Input<WorkloadIdentityRef>>,
    ) -> Self {
        AcmeChallenge::Dns01 {
            zone: zone.into(),
            identity: identity.into(),
        }
    }
}

/// The cluster issuers cert-manager offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterIssuers {
    /// cert-manager's namespace.
    pub namespace: String,
    /// Every enabled issuer.
    pub issuers: Vec<ClusterIssuer>,
}

impl IssuerProvider for ClusterIssuers {
    fn issuer(&self, kind: IssuerKind) -> Option<ClusterIssuer> {
        self.issuers.iter().find(|i| i.kind == kind).cloned()
    }
}

/// Deploys cert-manager and its cluster issuers.
///
/// Its own setters are below; the shared ones (`namespace`, `values`, `sync`..., and
/// `replicas`, `resources`) are on [`Chart`].
///
/// ```
/// # use devops_stack_core::{Input, interfaces::{ArgoCdTarget, ClusterRef}};
/// # fn f(cluster: Input<ClusterRef>, argocd: Input<ArgoCdTarget>) {
/// use devops_stack_modules::CertManager;
/// let cm = CertManager::new(cluster, argocd).letsencrypt("ops@example.com");
/// # }
/// ```
pub type CertManager = Chart<CertManagerSpec>;

/// The spec of [`CertManager`]: its issuers, how they answer ACME challenges, its sizing.
#[derive(Debug, Clone)]
pub struct CertManagerSpec {
    self_signed_ca: bool,
    letsencrypt_email: Option<String>,
    http01_ingress: Option<Input<Ingress>>,
    challenge: AcmeChallenge,
    sizing: Sizing,
}

impl CertManager {
    /// cert-manager on `cluster`, deployed by `argocd`, with the id `cert-manager` and a
    /// self-signed CA issuer.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        Chart::with_spec(
            Common::new(
                "cert-manager",
                cluster,
                argocd,
                ChartSource::new(CHART_REPOSITORY, "cert-manager", CHART_VERSION),
                "cert-manager",
            ),
            CertManagerSpec {
                self_signed_ca: true,
                letsencrypt_email: None,
                http01_ingress: None,
                challenge: AcmeChallenge::Http01,
                sizing: Sizing::new(1, crate::Resources::small(64)),
            },
        )
    }

    /// Enables the Let's Encrypt staging and production issuers, registered with `email`.
    #[must_use]
    pub fn letsencrypt(mut self, email: impl Into<String>) -> Self {
        self.spec.letsencrypt_email = Some(email.into());
        self
    }

    /// The ingress controller whose class the HTTP-01 solver uses.
    #[must_use]
    pub fn http01_ingress(mut self, ingress: impl Into<Input<Ingress>>) -> Self {
        self.spec.http01_ingress = Some(ingress.into());
        self
    }

    /// How the Let's Encrypt issuers answer challenges (default [`AcmeChallenge::Http01`]).
    #[must_use]
    pub fn acme_challenge(mut self, challenge: AcmeChallenge) -> Self {
        self.spec.challenge = challenge;
        self
    }

    /// Whether to create the self-signed CA issuer (default true).
    #[must_use]
    pub fn self_signed_ca(mut self, on: bool) -> Self {
        self.spec.self_signed_ca = on;
        self
    }
}

impl CertManagerSpec {
    /// cert-manager's service account: the chart's default name for the release, in its
    /// namespace.
    fn service_account(common: &Common) -> ServiceAccount {
        ServiceAccount::new(
            &common.namespace,
            helm_fullname(&common.release_name, "cert-manager"),
        )
    }

    /// Whether cert-manager's service account gets a workload role (Let's Encrypt with DNS-01).
    fn dns01(&self) -> Option<(&Input<DnsZone>, &Input<WorkloadIdentityRef>)> {
        match (&self.challenge, &self.letsencrypt_email) {
            (AcmeChallenge::Dns01 { zone, identity }, Some(_)) => Some((zone, identity)),
            _ => None,
        }
    }

    fn issuer_objects(&self, ns: &str, solver: &Value) -> (Vec<ClusterIssuer>, Vec<Value>) {
        let wave = |w: &str| json!({"argocd.argoproj.io/sync-wave": w});
        let mut issuers = Vec::new();
        let mut objects = Vec::new();
        if self.self_signed_ca {
            let ca = "self-signed-ca";
            objects.push(json!({
                "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
                "metadata": {"name": "self-signed", "annotations": wave("1")},
                "spec": {"selfSigned": {}},
            }));
            objects.push(json!({
                "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": ca, "namespace": ns, "annotations": wave("1")},
                "spec": {
                    "isCA": true,
                    "commonName": "devops-stack self-signed CA",
                    "secretName": ca,
                    "duration": "87600h",
                    "privateKey": {"algorithm": "ECDSA", "size": 256},
                    "issuerRef": {"name": "self-signed", "kind": "ClusterIssuer", "group": "cert-manager.io"},
                },
            }));
            objects.push(json!({
                "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
                "metadata": {"name": ca, "annotations": wave("2")},
                "spec": {"ca": {"secretName": ca}},
            }));
            issuers.push(ClusterIssuer {
                name: ca.into(),
                kind: IssuerKind::SelfSignedCa,
            });
        }
        if let Some(email) = &self.letsencrypt_email {
            for (name, server, kind) in [
                (
                    "letsencrypt-staging",
                    LETSENCRYPT_STAGING,
                    IssuerKind::LetsEncryptStaging,
                ),
                (
                    "letsencrypt-production",
                    LETSENCRYPT_PRODUCTION,
                    IssuerKind::LetsEncryptProduction,
                ),
            ] {
                objects.push(json!({
                    "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
                    "metadata": {"name": name, "annotations": wave("1")},
                    "spec": {"acme": {
                        "email": email,
                        "server": server,
                        "privateKeySecretRef": {"name": format!("{name}-account")},
                        "solvers": [solver],
                    }},
                }));
                issuers.push(ClusterIssuer {
                    name: name.into(),
                    kind,
                });
            }
        }
        (issuers, objects)
    }
}

impl Sizable for CertManagerSpec {
    fn sizing(&mut self) -> &mut Sizing {
        &mut self.sizing
    }
}

impl ChartSpec for CertManagerSpec {
    type Output = ClusterIssuers;
    const KIND: &'static str = "cert-manager";

    fn needs_more(&self, n: &mut Needs) {
        n.add(&self.http01_ingress);
        if let AcmeChallenge::Dns01 { zone, identity } = &self.challenge {
            n.add(zone).add(identity);
        }
    }

    fn workload_roles(&self, common: &Common, ctx: &Context) -> Result<Vec<WantedRole>> {
        match self.dns01() {
            Some((zone, identity)) => Ok(vec![WantedRole::new(
                ctx.get(identity)?,
                RoleRequest::new(Self::service_account(common), ctx.get(zone)?.change_policy),
            )]),
            None => Ok(Vec::new()),
        }
    }

    fn check(&self, _common: &Common, ctx: &Context, env: &Env) -> Result<()> {
        if let Some((zone, _)) = self.dns01() {
            let zone = ctx.get(zone)?;
            let wildcard = env.hostnames.host("*");
            if !zone.contains(&wildcard) {
                return Err(Error::input(
                    "acme_challenge",
                    format!(
                        "the stack's hostnames `{wildcard}` are not in the DNS-01 zone `{}`",
                        zone.domain
                    ),
                    format!(
                        "give the zone of `{}` (or of a parent domain), or change the cluster's base domain",
                        env.hostnames.base_domain
                    ),
                ));
            }
        }
        Ok(())
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/replicaCount", ValueKind::Integer),
            ("/resources", ValueKind::Object),
            ("/webhook/replicaCount", ValueKind::Integer),
            ("/cainjector/replicaCount", ValueKind::Integer),
        ]
    }

    fn validate_more(&self, _common: &Common, v: &mut Validation) {
        if let Some(e) = &self.letsencrypt_email {
            v.check(
                "letsencrypt_email",
                email(e),
                "give Let's Encrypt a reachable contact address like `ops@example.com`",
            );
            if matches!(self.challenge, AcmeChallenge::Http01) {
                v.requires(
                    Interface::Ingress,
                    "the Let's Encrypt HTTP-01 solver answers challenges through an ingress",
                );
            }
        }
        if let AcmeChallenge::Dns01 { .. } = &self.challenge {
            if self.letsencrypt_email.is_none() {
                v.error(
                    "acme_challenge",
                    "is DNS-01, but no ACME issuer is enabled",
                    "call `letsencrypt(email)`, or drop `acme_challenge`",
                );
            }
            if self.http01_ingress.is_some() {
                v.error(
                    "http01_ingress",
                    "is set, but the challenge is DNS-01: no HTTP-01 solver is made",
                    "drop `http01_ingress`, or use `AcmeChallenge::Http01`",
                );
            }
        }
        if !self.self_signed_ca && self.letsencrypt_email.is_none() {
            v.error(
                "issuers",
                "no cluster issuer is enabled",
                "keep `self_signed_ca(true)` or call `letsencrypt(email)`",
            );
        }
        self.sizing.validate(v);
    }

    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<ClusterIssuers>> {
        let solver = match self.dns01() {
            Some((zone, _)) => {
                let zone = ctx.get(zone)?;
                json!({"dns01": zone.solver.cert_manager_dns01(), "selector": {"dnsZones": [zone.domain]}})
            }
            None => {
                let mut ingress = serde_json::Map::new();
                if let Some(i) = &self.http01_ingress {
                    ingress.insert("ingressClassName".into(), ctx.get(i)?.class_name.into());
                }
                json!({"http01": {"ingress": ingress}})
            }
        };
        let (issuers, extra) = self.issuer_objects(&common.namespace, &solver);
        let extra: Vec<String> = extra
            .iter()
            .map(|o| serde_yaml_ng::to_string(o).expect("JSON values serialize to YAML"))
            .collect();
        let mut defaults = json!({
            "crds": {"enabled": true, "keep": true},
            "replicaCount": self.sizing.replicas,
            "resources": self.sizing.resources.to_value(),
            "webhook": {"replicaCount": self.sizing.replicas},
            "cainjector": {"replicaCount": self.sizing.replicas},
            "prometheus": {"enabled": true},
            "extraObjects": extra,
        });
        if self.dns01().is_some() {
            let sa = Self::service_account(common);
            merge_values(
                &mut defaults,
                &json!({
                    "serviceAccount": {"name": sa.name, "annotations": env.role_annotations(&sa)},
                    "securityContext": {"fsGroup": DNS01_FS_GROUP},
                }),
            );
        }
        let values = common.values(env, defaults, |crds| {
            json!({"prometheus": {"servicemonitor": {"enabled": true, "labels": crds.labels}}})
        });
        Ok(Rendered {
            output: ClusterIssuers {
                namespace: common.namespace.clone(),
                issuers,
            },
            objects: common.chart_objects(env, values),
        })
    }
}
