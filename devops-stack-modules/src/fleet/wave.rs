//! A rollout wave's gate: it runs once every module of the wave's spokes is applied, checks
//! that each of their Argo CD Applications is Synced and Healthy as the hub's Argo CD reports
//! it, and only then do the next wave's modules start. A failed module of the wave (or an
//! Application that is not Synced and Healthy) stops the later waves: their modules are
//! skipped, and the report names the spoke.

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef};
use devops_stack_core::k8s::{MODULE_LABEL, STACK_LABEL};
use devops_stack_core::{Context, Input, Module, ModuleResult, Needs, Planned};
use kube::api::ListParams;
use serde::Serialize;

use crate::error::{Error, Result};

/// What a wave's gate reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveReport {
    /// The wave's name.
    pub wave: String,
    /// Its place in the rollout (1 for the first).
    pub order: usize,
    /// Its spokes.
    pub spokes: Vec<String>,
    /// The Applications found Synced and Healthy (empty in a plan).
    pub applications: Vec<String>,
}

/// The gate after one wave; added by [`Fleet`](super::Fleet).
pub(crate) struct WaveGate {
    pub(crate) id: String,
    pub(crate) report: WaveReport,
    /// The module ids of the wave's spokes, each with its spoke.
    pub(crate) modules: Vec<(String, String)>,
    pub(crate) hub: Input<ClusterRef>,
    pub(crate) argocd: Input<ArgoCdTarget>,
}

impl WaveGate {
    async fn check(&self, ctx: &Context) -> Result<WaveReport> {
        let hub = ctx.get(&self.hub)?;
        let argocd = ctx.get(&self.argocd)?;
        let client = hub
            .client()
            .await
            .map_err(|e| Error::cloud(format!("connecting to the hub `{}`", hub.name()), e))?;
        let api = super::applications(client, Some(&argocd.namespace));
        let list = api
            .list(&ListParams::default().labels(&format!("{STACK_LABEL}={}", ctx.stack_name())))
            .await
            .map_err(|e| Error::kube("listing the hub's Applications", e))?;
        let mut report = self.report.clone();
        let mut not_ready = Vec::new();
        for app in list.items {
            let module = app
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MODULE_LABEL))
                .cloned()
                .unwrap_or_default();
            let Some((_, spoke)) = self.modules.iter().find(|(m, _)| *m == module) else {
                continue;
            };
            let name = app.metadata.name.clone().unwrap_or_default();
            let status = &app.data["status"];
            let (sync, health) = (
                status["sync"]["status"].as_str().unwrap_or("Unknown"),
                status["health"]["status"].as_str().unwrap_or("Unknown"),
            );
            if sync == "Synced" && health == "Healthy" {
                report.applications.push(name);
            } else {
                not_ready.push(format!(
                    "spoke `{spoke}`: Application {name} is {sync}/{health}"
                ));
            }
        }
        if !not_ready.is_empty() {
            return Err(Error::Input {
                field: format!("wave `{}`", report.wave),
                problem: format!("not every Application is Synced and Healthy: {}", not_ready.join("; ")),
                fix: "fix those spokes' Applications; the later waves start once this wave is healthy (apply again)".into(),
            });
        }
        report.applications.sort();
        Ok(report)
    }
}

impl Module for WaveGate {
    type Output = WaveReport;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "wave"
    }

    fn needs(&self, n: &mut Needs) {
        n.add(&self.hub).add(&self.argocd);
    }

    async fn plan(&self, _ctx: &Context) -> ModuleResult<Planned<WaveReport>> {
        Ok(Planned::new(self.report.clone()))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<WaveReport> {
        ctx.progress(format!(
            "checking that wave `{}` ({}) is Synced and Healthy",
            self.report.wave,
            self.report.spokes.join(", ")
        ));
        Ok(self.check(ctx).await?)
    }

    async fn destroy(&self, _ctx: &Context) -> ModuleResult<()> {
        Ok(())
    }
}
