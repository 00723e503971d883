//! The settings every chart module shares ([`Common`]), their validation, and the Helm values
//! they make from a module's defaults.

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef, Hostnames};
use devops_stack_core::{Capability, Input, NamespaceOwner, Needs, Validation};
use serde_json::Value;

use super::env::Env;
use super::source::{ChartSource, SyncSettings};
use super::values::{ValueKind, describe, merge_values};
use crate::kube_prometheus_stack::ServiceMonitorCrds;

/// The settings every chart module shares: its id, the cluster and the Argo CD it deploys
/// with, the chart, release, namespace, Argo CD project and destination, sync settings and Helm
/// value overrides. Set through the setters of [`Chart`](super::Chart); read by a
/// [`ChartSpec`](super::ChartSpec)'s steps.
#[derive(Debug, Clone)]
pub struct Common {
    pub(crate) id: String,
    pub(crate) cluster: Input<ClusterRef>,
    pub(crate) argocd: Input<ArgoCdTarget>,
    pub(crate) chart: ChartSource,
    pub(crate) release_name: String,
    pub(crate) namespace: String,
    pub(crate) project: Option<String>,
    pub(crate) destination_server: Option<String>,
    pub(crate) sync: SyncSettings,
    /// Helm value overrides, merged in order over the module's defaults.
    pub(crate) values: Vec<Value>,
    pub(crate) subdomain: Option<String>,
    pub(crate) service_monitors: Option<Input<ServiceMonitorCrds>>,
    /// Whether deleting the Application deletes what it deployed (Argo CD's resources finalizer).
    pub(crate) cascade: bool,
    /// Whether the module creates (and on destroy deletes) its target namespace.
    pub(crate) owns_namespace: bool,
    /// The Application's name when it is not the module's id (Argo CD's final phase takes over
    /// the bootstrap's release under its name).
    pub(crate) application: Option<String>,
}

impl Common {
    /// The module `id` deploying `chart` on `cluster` with `argocd` into `namespace`, as the
    /// release named like the chart, with Argo CD's project and destination, automated sync
    /// with prune and self-heal, and no value overrides.
    pub fn new(
        id: &str,
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
        chart: ChartSource,
        namespace: &str,
    ) -> Self {
        Common {
            id: id.to_owned(),
            cluster: cluster.into(),
            argocd: argocd.into(),
            release_name: chart.chart.clone(),
            chart,
            namespace: namespace.to_owned(),
            project: None,
            destination_server: None,
            sync: SyncSettings::default(),
            values: Vec::new(),
            subdomain: None,
            service_monitors: None,
            cascade: true,
            owns_namespace: true,
            application: None,
        }
    }

    /// The module id (also the name of its Argo CD Application).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace the chart is deployed to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Helm release name.
    pub fn release_name(&self) -> &str {
        &self.release_name
    }

    pub(crate) fn needs(&self, n: &mut Needs) {
        n.add(&self.cluster)
            .add(&self.argocd)
            .add(&self.service_monitors);
    }

    /// Checks the shared settings and the typed Helm value overrides.
    pub(crate) fn validate(&self, v: &mut Validation, typed: &[(&str, ValueKind)]) {
        self.chart.validate(v);
        v.dns_label("namespace", &self.namespace);
        v.provides(Capability::Namespace {
            name: self.namespace.clone(),
            owner: NamespaceOwner::Platform,
        });
        // named by the module's id as the stack has it (`<spoke>-<id>` in a fleet)
        v.provides(Capability::Application {
            name: v.module().to_owned(),
        });
        v.dns_label("release_name", &self.release_name);
        if let Some(p) = &self.project {
            v.dns_subdomain("project", p);
        }
        if let Some(s) = self.subdomain.as_deref().filter(|s| !s.is_empty()) {
            v.dns_subdomain("subdomain", s);
        }
        check_destination_server(v, self.destination_server.as_deref());
        for patch in &self.values {
            if !patch.is_object() {
                v.error(
                    "values",
                    format!("the override is {}, not an object", describe(patch)),
                    "pass Helm values as a JSON object, like `json!({\"replicas\": 2})`",
                );
                continue;
            }
            for (pointer, kind) in typed {
                if let Some(found) = patch.pointer(pointer).filter(|x| !x.is_null())
                    && !kind.matches(found)
                {
                    v.error(
                        format!("values{}", pointer.replace('/', ".")),
                        format!(
                            "is {} (`{found}`), but the chart expects {}",
                            describe(found),
                            kind.name()
                        ),
                        format!(
                            "set `{}` to {} or remove it from the overrides",
                            &pointer[1..].replace('/', "."),
                            kind.name()
                        ),
                    );
                }
            }
        }
    }

    /// How the module's hostnames are made on `cluster` (its subdomain applied).
    pub(crate) fn hostnames(&self, cluster: &ClusterRef) -> Hostnames {
        let hostnames = cluster.hostnames();
        match &self.subdomain {
            Some(s) => hostnames.subdomain(s.clone()),
            None => hostnames,
        }
    }

    /// The Helm values: `defaults`, then the ServiceMonitor settings `monitors` makes from the CRDs
    /// when the module was given them
    /// ([`Chart::service_monitors`](super::Chart::service_monitors)), then the user's overrides in
    /// order.
    pub fn values(
        &self,
        env: &Env,
        mut defaults: Value,
        monitors: impl FnOnce(&ServiceMonitorCrds) -> Value,
    ) -> Value {
        if let Some(crds) = &env.monitors {
            merge_values(&mut defaults, &monitors(crds));
        }
        for patch in &self.values {
            merge_values(&mut defaults, patch);
        }
        defaults
    }
}

/// Checks an Argo CD destination server URL, when one is given.
pub(crate) fn check_destination_server(v: &mut Validation, server: Option<&str>) {
    if let Some(server) = server
        && !server.starts_with("https://")
    {
        v.error(
            "destination_server",
            format!("`{server}` is not an https:// URL"),
            "give the API server URL Argo CD knows the cluster by, like `https://kubernetes.default.svc`",
        );
    }
}
