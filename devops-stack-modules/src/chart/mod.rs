//! The chart layer every chart module is built on, built-in or a platform team's own.
//!
//! A chart module is a [`Chart`] of a [`ChartSpec`]: [`Common`] holds what every chart module
//! has (its id; the cluster and Argo CD it deploys with; the chart at a pinned, overridable
//! version; release, namespace, Argo CD project and destination; sync settings; Helm value
//! overrides deep-merged over the defaults; a subdomain; the ServiceMonitor CRDs), set through
//! the setters of [`Chart`]; the spec holds the rest, and renders the module's objects and
//! typed output from its resolved inputs ([`Env`]). `Chart<C>` is a
//! [`Module`](devops_stack_core::Module) for every spec `C`, with plan, apply and destroy, the
//! spec's workload roles and generated [`Secrets`], waits, diff and ownership from the engine.
//! The built-in modules are charts of their own specs (`Traefik` is a type alias of one), so
//! they share every setter.
//!
//! [`HelmChart`] wraps an in-house chart with typed settings in one call. A spec of one's own
//! takes a few lines more, and gets the same setters (and `replicas` and `resources` with a
//! [`Sizing`]):
//!
//! ```
//! use devops_stack_core::clusters::Kind;
//! use devops_stack_core::{Context, Stack, Validation};
//! use devops_stack_modules::chart::{Chart, ChartSpec, Common, Env, Rendered, Secrets, Sizable, Sizing};
//! use devops_stack_modules::{ArgoCd, ChartRelease, ChartSource, Resources, Result};
//! use serde_json::json;
//!
//! /// The in-house ledger: what it has beyond the shared settings.
//! #[derive(Debug, Clone)]
//! struct Ledger { currency: String, sizing: Sizing }
//!
//! impl ChartSpec for Ledger {
//!     type Output = ChartRelease;
//!     const KIND: &'static str = "ledger";
//!
//!     fn validate_more(&self, _: &Common, v: &mut Validation) {
//!         self.sizing.validate(v);
//!     }
//!
//!     fn render(&self, common: &Common, _: &Context, env: &Env, _: &Secrets) -> Result<Rendered<ChartRelease>> {
//!         let defaults = json!({"currency": self.currency, "replicaCount": self.sizing.replicas});
//!         let values = common.values(env, defaults, |crds| json!({"serviceMonitor": {"labels": crds.labels}}));
//!         Ok(Rendered {
//!             output: ChartRelease {
//!                 namespace: common.namespace().to_owned(),
//!                 release: common.release_name().to_owned(),
//!                 application: common.id().to_owned(),
//!                 url: None,
//!             },
//!             objects: common.chart_objects(env, values),
//!         })
//!     }
//! }
//!
//! impl Sizable for Ledger {
//!     fn sizing(&mut self) -> &mut Sizing { &mut self.sizing }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("shop");
//! let cluster = stack.add(Kind::new("shop"));
//! let argocd = stack.add(ArgoCd::new(&cluster));
//! let chart = ChartSource::new("https://charts.example.com", "ledger", "0.3.0");
//! let common = Common::new("ledger", &cluster, &argocd, chart, "finance");
//! let ledger = Ledger { currency: "EUR".into(), sizing: Sizing::new(1, Resources::new()) };
//! stack.add(Chart::with_spec(common, ledger).replicas(2).values(json!({"currency": "CHF"})));
//! let plan = stack.build()?.plan().await?;
//! let ledger = plan.module("ledger").unwrap();
//! assert_eq!(ledger.output["namespace"], "finance");
//! let app = ledger.resources.iter().filter_map(|r| r.as_kubernetes()).find(|o| o["kind"] == "Application").unwrap();
//! assert_eq!(app["spec"]["source"]["helm"]["valuesObject"], json!({"currency": "CHF", "replicaCount": 2}));
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

mod application;
mod common;
mod env;
mod exposure;
mod helm;
mod secrets;
mod sizing;
mod source;
mod spec;
mod steps;
mod values;

use devops_stack_core::Handle;
use serde_json::Value;

pub use common::Common;
pub(crate) use common::check_destination_server;
pub use env::Env;
pub(crate) use exposure::{Exposure, IngressSettings};
pub use helm::{ChartRelease, HelmChart, HelmChartSpec};
pub use secrets::{GeneratedSecret, Secrets};
pub use sizing::{Resources, Sizable, Sizing};
pub(crate) use source::helm_fullname;
pub use source::{ChartSource, SyncSettings};
pub use spec::{ChartSpec, Rendered, WantedRole};
pub(crate) use values::to_json;
pub use values::{ValueKind, merge_values};

use crate::kube_prometheus_stack::ServiceMonitorCrds;

/// A chart module: the settings every chart module shares ([`Common`]) and those of its kind
/// (the spec `C`). A [`Module`](devops_stack_core::Module) when `C` is a [`ChartSpec`].
///
/// The built-in modules are charts of their own specs, under their own names
/// ([`Traefik`](crate::Traefik), [`Loki`](crate::Loki), [`HelmChart`]...), each with its own
/// constructor and setters besides these.
#[derive(Debug, Clone)]
pub struct Chart<C> {
    pub(crate) common: Common,
    pub(crate) spec: C,
}

impl<C> Chart<C> {
    /// The chart module of `spec` with the shared settings `common`.
    pub fn with_spec(common: Common, spec: C) -> Self {
        Chart { common, spec }
    }

    /// Another module id (also the Argo CD Application's name).
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.common.id = id.into();
        self
    }

    /// Another chart version (must be semver).
    #[must_use]
    pub fn chart_version(mut self, version: impl Into<String>) -> Self {
        self.common.chart.version = version.into();
        self
    }

    /// Another Helm repository for the chart (a mirror).
    #[must_use]
    pub fn chart_repository(mut self, url: impl Into<String>) -> Self {
        self.common.chart.repo_url = url.into();
        self
    }

    /// Another target namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.common.namespace = namespace.into();
        self
    }

    /// Another Helm release name.
    #[must_use]
    pub fn release_name(mut self, name: impl Into<String>) -> Self {
        self.common.release_name = name.into();
        self
    }

    /// Another Argo CD project (default: the Argo CD module's project).
    #[must_use]
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.common.project = Some(project.into());
        self
    }

    /// Another destination cluster, by the API server URL Argo CD knows it by (default: the
    /// cluster's `argocd_server()`).
    #[must_use]
    pub fn destination_server(mut self, server: impl Into<String>) -> Self {
        self.common.destination_server = Some(server.into());
        self
    }

    /// Other automated sync settings.
    #[must_use]
    pub fn sync(mut self, sync: SyncSettings) -> Self {
        self.common.sync = sync;
        self
    }

    /// Whether Argo CD prunes resources the chart no longer renders (default true).
    #[must_use]
    pub fn prune(mut self, on: bool) -> Self {
        self.common.sync.prune = on;
        self
    }

    /// Whether Argo CD reverts changes made outside it (default true).
    #[must_use]
    pub fn self_heal(mut self, on: bool) -> Self {
        self.common.sync.self_heal = on;
        self
    }

    /// Whether Argo CD may sync to an empty set of resources (default false).
    #[must_use]
    pub fn allow_empty(mut self, on: bool) -> Self {
        self.common.sync.allow_empty = on;
        self
    }

    /// Helm value overrides, deep-merged over the defaults with Helm's semantics (maps merge,
    /// other values replace, `null` deletes). Several calls apply in order.
    #[must_use]
    pub fn values(mut self, overrides: Value) -> Self {
        self.common.values.push(overrides);
        self
    }

    /// Another subdomain for this module's hostnames (default `apps`; empty for none).
    #[must_use]
    pub fn subdomain(mut self, subdomain: impl Into<String>) -> Self {
        self.common.subdomain = Some(subdomain.into());
        self
    }

    /// Enables the component's ServiceMonitors from the first run, with the CRDs of the
    /// [`PrometheusOperatorCrds`](crate::PrometheusOperatorCrds) module.
    #[must_use]
    pub fn service_monitors(mut self, crds: &Handle<ServiceMonitorCrds>) -> Self {
        self.common.service_monitors = Some(crds.input());
        self
    }
}
