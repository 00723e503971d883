//! The built-in component modules of devops-stack.
//!
//! Every module deploys its component as Argo CD Application(s) of the upstream Helm chart at a
//! pinned, overridable version (checked as semver when the stack is built), with typed settings
//! and defaults that work, Helm value overrides deep-merged over the defaults ([`merge_values`]:
//! maps merge, other values replace, `null` deletes), configurable automated sync
//! ([`SyncSettings`]), target namespace, Argo CD project and destination cluster, and a typed
//! output that other modules take as an input. Hostnames default to
//! `<app>.<subdomain>.<cluster>.<base_domain>`; every ingress uses the stack's ingress controller
//! and gets TLS from the chosen cluster issuer.
//!
//! The chart modules are one generic type, a [`Chart`](chart::Chart) of each component's spec
//! (`Traefik` names `Chart<IngressControllerSpec<TraefikChart>>`): the settings and setters they
//! share are written once, in the [`chart`] layer, which is public, so that a platform team's own
//! chart ([`HelmChart`], or a [`ChartSpec`](chart::ChartSpec) of its own) gets them too.
//!
//! | module | component | output | implements |
//! |---|---|---|---|
//! | [`ArgoCd`] (bootstrap phase) | Argo CD, plain | [`ArgoCdOutput`] | `ArgoCdProvider` |
//! | [`ArgoCdFinal`] (final phase) | Argo CD managing itself | [`SelfManagedArgoCd`] | `ArgoCdProvider` |
//! | [`PrometheusOperatorCrds`] (bootstrap phase) | monitoring CRDs | [`ServiceMonitorCrds`] | |
//! | [`Traefik`], [`IngressNginx`] | ingress controller | [`IngressController`] | `IngressProvider` |
//! | [`CertManager`] | cert-manager and cluster issuers | [`ClusterIssuers`] | `IssuerProvider` |
//! | [`Keycloak`] | OIDC provider | [`KeycloakOidc`] | `OidcProvider` |
//! | [`KubePrometheusStack`] | Prometheus, Alertmanager, Grafana | [`MonitoringStack`] | `MonitoringProvider` |
//! | [`Loki`] | logs (Loki, shipped by Grafana Alloy) | [`Logs`] | |
//! | [`MetricsServer`] | resource metrics | [`ResourceMetrics`] | |
//! | [`EbsCsiDriver`] | Amazon EBS CSI driver and a `gp3` StorageClass | [`EbsCsi`] | `StorageClassProvider` |
//! | [`Team`] | an application team: namespaces, AppProject, access, repositories, apps | [`TeamOutput`] | |
//!
//! # On a cloud
//! Components never name a cloud: they take core's interfaces as inputs. A storage class
//! ([`EbsCsiDriver`]'s output) for the volumes of [`KubePrometheusStack`] and [`Loki`]; an
//! object store and a workload identity for [`Loki`] to keep its chunks in a bucket; a DNS zone
//! and a workload identity for [`CertManager`] to solve ACME DNS-01 challenges
//! ([`AcmeChallenge`]); a DNS zone for the ingress controllers' wildcard record, and the
//! cluster's load balancer annotations on their Service. A module that asks for a workload role
//! shows it in the plan, makes it before its objects and deletes it after them.
//!
//! # ServiceMonitors from the first run
//! Modules that run before kube-prometheus-stack cannot depend on it, yet need the
//! `ServiceMonitor` CRD to enable their monitors. [`PrometheusOperatorCrds`] installs the CRDs in
//! the bootstrap phase; giving its handle to a module's `service_monitors(..)` setter creates the
//! edge that makes the module wait for the CRDs, and turns its ServiceMonitor on. See
//! [`kube_prometheus_stack`].
//!
//! # Example
//! A whole platform, planned offline (no cluster is contacted while planning):
//!
//! ```
//! use devops_stack_core::interfaces::{Cluster, IssuerKind};
//! use devops_stack_core::{BoxError, Context, Module, ModuleResult, Planned, Stack};
//! use devops_stack_modules::*;
//! use std::{future::Future, pin::Pin};
//!
//! /// An existing cluster (the real ones are in `devops_stack_core::clusters` and `devops_stack_aws`).
//! #[derive(Debug, Clone, serde::Serialize)]
//! struct Existing;
//! impl Cluster for Existing {
//!     fn name(&self) -> &str { "prod" }
//!     fn base_domain(&self) -> &str { "example.com" }
//!     fn client(&self) -> Pin<Box<dyn Future<Output = Result<kube::Client, BoxError>> + Send + '_>> {
//!         Box::pin(async { Err("offline".into()) })
//!     }
//! }
//! struct UseExisting;
//! impl Module for UseExisting {
//!     type Output = Existing;
//!     fn id(&self) -> &str { "cluster" }
//!     fn kind(&self) -> &'static str { "existing-cluster" }
//!     async fn plan(&self, _: &Context) -> ModuleResult<Planned<Existing>> { Ok(Planned::new(Existing)) }
//!     async fn apply(&self, _: &Context) -> ModuleResult<Existing> { Ok(Existing) }
//!     async fn destroy(&self, _: &Context) -> ModuleResult<()> { Ok(()) }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("prod");
//! let cluster = stack.add(UseExisting);
//! let argocd = stack.add(ArgoCd::new(&cluster));
//! let crds = stack.add(PrometheusOperatorCrds::new(&cluster, &argocd));
//! let ingress = stack.add(Traefik::new(&cluster, &argocd).service_monitors(&crds));
//! let certs = stack.add(CertManager::new(&cluster, &argocd).letsencrypt("ops@example.com").http01_ingress(&ingress));
//! let tls = certs.issuer(IssuerKind::LetsEncryptProduction);
//! let sso = stack.add(Keycloak::new(&cluster, &argocd, &ingress).issuer(tls.clone()).user("jane", "jane@example.com"));
//! let monitoring = stack.add(
//!     KubePrometheusStack::new(&cluster, &argocd, &ingress).oidc(&sso).issuer(tls.clone()).service_monitors(&crds),
//! );
//! stack.add(Loki::new(&cluster, &argocd).monitoring(&monitoring));
//! stack.add(MetricsServer::new(&cluster, &argocd));
//! stack.add(ArgoCdFinal::new(&cluster, &argocd, &ingress, sso.oidc("argocd")).issuer(tls).monitoring(&monitoring));
//!
//! let plan = stack.build()?.plan().await?;
//! assert!(plan.to_text().contains("argoproj.io/v1alpha1 Application argocd/traefik"));
//! assert!(!plan.to_text().contains("hunter2"));
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

mod error;
#[cfg(test)]
mod mock;

pub mod argocd;
pub mod cert_manager;
pub mod chart;
pub mod ebs_csi;
pub mod fleet;
pub mod ingress_controller;
pub mod ingress_nginx;
pub mod keycloak;
pub mod kube_prometheus_stack;
pub mod loki;
pub mod metrics_server;
pub mod pins;
pub mod team;
pub mod traefik;

pub use argocd::{ArgoCd, ArgoCdFinal, ArgoCdOutput, InstallMethod, SelfManagedArgoCd};
pub use cert_manager::{AcmeChallenge, CertManager, ClusterIssuers};
pub use chart::{ChartRelease, ChartSource, HelmChart, Resources, SyncSettings, merge_values};
pub use ebs_csi::{EbsCsi, EbsCsiDriver};
pub use error::{Error, Result};
pub use ingress_controller::{DEFAULT_LOAD_BALANCER_TIMEOUT, IngressController};
pub use ingress_nginx::IngressNginx;
pub use keycloak::{Keycloak, KeycloakOidc, KeycloakUser};
pub use kube_prometheus_stack::{
    KubePrometheusStack, MonitoringStack, Persistence, PrometheusOperatorCrds, ServiceMonitorCrds,
};
pub use loki::{Logs, Loki};
pub use metrics_server::{MetricsServer, ResourceMetrics};
pub use team::{Team, TeamOutput};
pub use traefik::Traefik;

/// The group whose members administer the platform: Keycloak creates it, Argo CD maps it to
/// `role:admin`, Grafana to its Admin role, and the OIDC proxies admit only its members.
pub const DEFAULT_ADMIN_GROUP: &str = "platform-admins";
