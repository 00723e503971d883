//! A module's resolved inputs during one step ([`Env`]), and the objects made from them.

use std::collections::BTreeMap;

use devops_stack_core::Context;
use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterRef, Hostnames, ServiceAccount, WorkloadRole,
};
use devops_stack_core::k8s::ownership_labels;
use serde_json::{Value, json};

use super::common::Common;
use crate::error::Result;
use crate::kube_prometheus_stack::ServiceMonitorCrds;

/// A module's resolved inputs during one step (plan, apply or destroy): its cluster, its Argo
/// CD, the ownership labels of its objects, how its hostnames are made, the ServiceMonitor
/// CRDs when it was given them, and its workload roles.
#[derive(Debug, Clone)]
pub struct Env {
    /// The module's id as the stack has it (`<spoke>-<id>` in a fleet): it names the module's
    /// Argo CD Applications, which share the Argo CD namespace with every spoke's.
    pub(crate) module: String,
    pub(crate) cluster: ClusterRef,
    pub(crate) argocd: ArgoCdTarget,
    /// The ownership labels of the module's objects.
    pub(crate) labels: BTreeMap<String, String>,
    /// How hostnames are made (the module's subdomain applied).
    pub(crate) hostnames: Hostnames,
    /// The ServiceMonitor CRDs, when the module was given them.
    pub(crate) monitors: Option<ServiceMonitorCrds>,
    /// The workload roles the module asked for
    /// ([`ChartSpec::workload_roles`](super::ChartSpec::workload_roles)), by service account:
    /// as planned offline, as made by the cloud on apply.
    pub(crate) roles: BTreeMap<ServiceAccount, WorkloadRole>,
}

impl Common {
    /// Resolves the module's inputs for a step.
    pub(crate) fn env(&self, ctx: &Context) -> Result<Env> {
        let argocd = ctx.get(&self.argocd)?;
        self.env_with(ctx, argocd)
    }

    /// Resolves the module's inputs with an Argo CD target known otherwise (Argo CD itself).
    pub(crate) fn env_with(&self, ctx: &Context, argocd: ArgoCdTarget) -> Result<Env> {
        let cluster = ctx.get(&self.cluster)?;
        let monitors = match &self.service_monitors {
            Some(i) => Some(ctx.get(i)?),
            None => None,
        };
        Ok(Env {
            module: ctx.module_id().to_owned(),
            labels: ownership_labels(ctx.stack_name(), ctx.module_id()),
            hostnames: self.hostnames(&cluster),
            cluster,
            argocd,
            monitors,
            roles: BTreeMap::new(),
        })
    }
}

impl Env {
    /// The hostname of `app`: `explicit` when set, else
    /// `<app>.<subdomain>.<cluster>.<base_domain>`.
    pub fn host(&self, app: &str, explicit: Option<&str>) -> String {
        explicit.map_or_else(|| self.hostnames.host(app), str::to_owned)
    }

    /// The annotations the service account `sa` needs for its workload role (empty when the
    /// module asked for none for it).
    pub fn role_annotations(&self, sa: &ServiceAccount) -> BTreeMap<String, String> {
        self.roles
            .get(sa)
            .map(|r| r.annotations.clone())
            .unwrap_or_default()
    }

    /// The ownership labels and `extra` ones.
    fn labels_with(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        labels
    }

    /// A `Secret` `namespace/name` with the ownership labels and `extra_labels`, holding `data`
    /// as `stringData` (redacted in plans).
    pub fn secret<'a>(
        &self,
        name: &str,
        namespace: &str,
        extra_labels: &[(&str, &str)],
        data: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Value {
        let labels = self.labels_with(extra_labels);
        let data: BTreeMap<&str, &str> = data.into_iter().collect();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "stringData": data,
        })
    }

    /// A `ConfigMap` `namespace/name` with the ownership labels and `extra_labels`, holding
    /// `data`.
    pub fn config_map(
        &self,
        name: &str,
        namespace: &str,
        extra_labels: &[(&str, &str)],
        data: Value,
    ) -> Value {
        let labels = self.labels_with(extra_labels);
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": data,
        })
    }
}
