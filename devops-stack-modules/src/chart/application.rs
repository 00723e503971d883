//! The objects of a chart module: its namespace and the Argo CD Application(s) deploying its
//! chart(s) with the module's project, destination and sync settings.

use devops_stack_core::argocd::{
    Application, ApplicationDestination, ApplicationSpec, AutomatedSync, Backoff, RetryStrategy,
    SyncPolicy,
};
use devops_stack_core::validate::SYSTEM_NAMESPACES;
use serde_json::{Value, json};

use super::common::Common;
use super::env::Env;
use super::source::ChartSource;
use super::values::to_json;

impl Common {
    /// The objects of the module's chart deployed with `values` (already merged, as
    /// [`Common::values`] makes them): its namespace (unless a system namespace or not the
    /// module's own), then its Argo CD Application.
    pub fn chart_objects(&self, env: &Env, values: Value) -> Vec<Value> {
        let mut objects = Vec::new();
        if self.owns_namespace && !SYSTEM_NAMESPACES.contains(&self.namespace.as_str()) {
            objects.push(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": env.labels},
            }));
        }
        objects.push(self.application(env, values));
        objects
    }

    /// The module's Argo CD Application deploying the chart with `values` (already merged).
    fn application(&self, env: &Env, values: Value) -> Value {
        let name = self.application.as_deref().unwrap_or(&env.module);
        self.application_of(env, name, &self.chart, &self.release_name, values)
    }

    /// Another Application of the module, named `name`, deploying `chart` as `release` into the
    /// module's namespace with the module's project, destination and sync settings.
    pub(crate) fn application_of(
        &self,
        env: &Env,
        name: &str,
        chart: &ChartSource,
        release: &str,
        values: Value,
    ) -> Value {
        let spec = ApplicationSpec {
            project: self
                .project
                .clone()
                .unwrap_or_else(|| env.argocd.project.clone()),
            source: Some(chart.source(release, values)),
            sources: Vec::new(),
            destination: ApplicationDestination {
                server: Some(
                    self.destination_server
                        .clone()
                        .unwrap_or_else(|| env.cluster.argocd_server().to_owned()),
                ),
                namespace: Some(self.namespace.clone()),
                name: None,
            },
            sync_policy: Some(SyncPolicy {
                automated: Some(AutomatedSync {
                    prune: self.sync.prune,
                    self_heal: self.sync.self_heal,
                    allow_empty: self.sync.allow_empty,
                }),
                sync_options: vec![
                    "CreateNamespace=true".into(),
                    "ServerSideApply=true".into(),
                    "SkipDryRunOnMissingResource=true".into(),
                ],
                retry: Some(RetryStrategy {
                    limit: 10,
                    backoff: Some(Backoff {
                        duration: "10s".into(),
                        factor: 2,
                        max_duration: "3m".into(),
                    }),
                }),
            }),
            ignore_differences: Vec::new(),
        };
        let mut app =
            Application::with_finalizer(name, &env.argocd.namespace, spec, env.labels.clone());
        if !self.cascade {
            app.metadata.finalizers = None;
        }
        to_json(&app)
    }
}
