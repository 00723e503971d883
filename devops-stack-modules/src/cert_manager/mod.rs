//! cert-manager and the stack's cluster issuers, from the `cert-manager` chart of
//! <https://charts.jetstack.io>.
//!
//! # Inputs
//! - the cluster and Argo CD, in [`CertManager::new`];
//! - optionally the ingress controller whose class the Let's Encrypt HTTP-01 solver uses
//!   ([`CertManager::http01_ingress`]; without it the solver's ingress gets the cluster's
//!   default class);
//! - optionally the ServiceMonitor CRDs ([`CertManager::service_monitors`]).
//!
//! # Outputs
//! [`ClusterIssuers`], which implements `IssuerProvider`: `handle.issuer(IssuerKind::..)` is the
//! `Input<ClusterIssuer>` modules take for the TLS of their ingresses.
//!
//! # Defaults
//! Chart `cert-manager` [`CHART_VERSION`] with its CRDs (kept on uninstall), namespace
//! `cert-manager`, 1 replica of each component, Prometheus metrics on. Issuers: a self-signed CA
//! (`self-signed-ca`: a selfSigned `ClusterIssuer` signs the CA `Certificate`, whose key pair
//! backs the CA `ClusterIssuer`). With [`CertManager::letsencrypt`], also `letsencrypt-staging`
//! and `letsencrypt-production` with the contact email (validated) and an HTTP-01 solver; the
//! module then declares that it requires an ingress controller in the stack.
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
    ArgoCdTarget, ClusterIssuer, ClusterRef, Ingress, IssuerKind, IssuerProvider,
};
use devops_stack_core::validate::email;
use devops_stack_core::{Context, Input, Interface, Needs, Validation};
use serde::Serialize;
use serde_json::{Value, json};

use crate::common::{
    ChartSource, Common, Component, Env, Rendered, Secrets, Sizing, ValueKind, common_setters,
    component_module, sizing_setters,
};
use crate::error::Result;

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::CERT_MANAGER.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::CERT_MANAGER.repository;

/// The ACME directory of Let's Encrypt's staging environment.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// The ACME directory of Let's Encrypt's production environment.
pub const LETSENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

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
/// ```
/// # use devops_stack_core::{Input, interfaces::{ArgoCdTarget, ClusterRef}};
/// # fn f(cluster: Input<ClusterRef>, argocd: Input<ArgoCdTarget>) {
/// use devops_stack_modules::CertManager;
/// let cm = CertManager::new(cluster, argocd).letsencrypt("ops@example.com");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CertManager {
    common: Common,
    self_signed_ca: bool,
    letsencrypt_email: Option<String>,
    http01_ingress: Option<Input<Ingress>>,
    sizing: Sizing,
}

impl CertManager {
    /// cert-manager on `cluster`, deployed by `argocd`, with the id `cert-manager` and a
    /// self-signed CA issuer.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        CertManager {
            common: Common::new(
                "cert-manager",
                cluster.into(),
                argocd.into(),
                ChartSource::new(CHART_REPOSITORY, "cert-manager", CHART_VERSION),
                "cert-manager",
            ),
            self_signed_ca: true,
            letsencrypt_email: None,
            http01_ingress: None,
            sizing: Sizing::new(1, crate::Resources::small(64)),
        }
    }

    /// Enables the Let's Encrypt staging and production issuers, registered with `email`.
    #[must_use]
    pub fn letsencrypt(mut self, email: impl Into<String>) -> Self {
        self.letsencrypt_email = Some(email.into());
        self
    }

    /// The ingress controller whose class the HTTP-01 solver uses.
    #[must_use]
    pub fn http01_ingress(mut self, ingress: impl Into<Input<Ingress>>) -> Self {
        self.http01_ingress = Some(ingress.into());
        self
    }

    /// Whether to create the self-signed CA issuer (default true).
    #[must_use]
    pub fn self_signed_ca(mut self, on: bool) -> Self {
        self.self_signed_ca = on;
        self
    }

    fn issuer_objects(&self, class: Option<&str>) -> (Vec<ClusterIssuer>, Vec<Value>) {
        let ns = &self.common.namespace;
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
            let mut ingress = serde_json::Map::new();
            if let Some(class) = class {
                ingress.insert("ingressClassName".into(), class.into());
            }
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
                        "solvers": [{"http01": {"ingress": ingress}}],
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

common_setters!(CertManager);
sizing_setters!(CertManager);
component_module!(CertManager, ClusterIssuers);

impl Component for CertManager {
    type Output = ClusterIssuers;
    const KIND: &'static str = "cert-manager";

    fn common(&self) -> &Common {
        &self.common
    }

    fn needs_more(&self, n: &mut Needs) {
        n.add(&self.http01_ingress);
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/replicaCount", ValueKind::Integer),
            ("/resources", ValueKind::Object),
            ("/webhook/replicaCount", ValueKind::Integer),
            ("/cainjector/replicaCount", ValueKind::Integer),
        ]
    }

    fn validate_more(&self, v: &mut Validation) {
        if let Some(e) = &self.letsencrypt_email {
            v.check(
                "letsencrypt_email",
                email(e),
                "give Let's Encrypt a reachable contact address like `ops@example.com`",
            );
            v.requires(
                Interface::Ingress,
                "the Let's Encrypt HTTP-01 solver answers challenges through an ingress",
            );
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
        ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<ClusterIssuers>> {
        let class = match &self.http01_ingress {
            Some(i) => Some(ctx.get(i)?.class_name),
            None => None,
        };
        let (issuers, extra) = self.issuer_objects(class.as_deref());
        let extra: Vec<String> = extra
            .iter()
            .map(|o| serde_yaml_ng::to_string(o).expect("JSON values serialize to YAML"))
            .collect();
        let defaults = json!({
            "crds": {"enabled": true, "keep": true},
            "replicaCount": self.sizing.replicas,
            "resources": self.sizing.resources.to_value(),
            "webhook": {"replicaCount": self.sizing.replicas},
            "cainjector": {"replicaCount": self.sizing.replicas},
            "prometheus": {"enabled": true},
            "extraObjects": extra,
        });
        let values = self.common.values(env, defaults, |crds| {
            json!({"prometheus": {"servicemonitor": {"enabled": true, "labels": crds.labels}}})
        });
        Ok(Rendered {
            output: ClusterIssuers {
                namespace: self.common.namespace.clone(),
                issuers,
            },
            objects: self.common.chart_objects(env, values),
        })
    }
}
