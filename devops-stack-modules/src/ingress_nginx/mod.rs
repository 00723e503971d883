//! ingress-nginx, the ingress controller, from the `ingress-nginx` chart of
//! <https://kubernetes.github.io/ingress-nginx>.
//!
//! **The project is retired**: ingress-nginx made no releases and no security fixes after
//! March 2026. The module stays for clusters that run it, pinned to the final release
//! ([`CHART_VERSION`], controller 1.15.1); new platforms should use
//! [`Traefik`](crate::Traefik), which outputs the same [`IngressController`] (so switching is
//! a one-line change), or a Gateway API implementation.
//!
//! # Inputs
//! - the cluster (`Input<ClusterRef>`) and Argo CD (`Input<ArgoCdTarget>`), in [`IngressNginx::new`];
//! - optionally a DNS zone (`Input<DnsZone>`, [`IngressNginx::dns_zone`]) for the wildcard record;
//! - optionally the ServiceMonitor CRDs ([`IngressNginx::service_monitors`]).
//!
//! # Outputs
//! An [`IngressController`] (the same type as Traefik's, so swapping is a one-line change): class
//! `nginx`, controller `k8s.io/ingress-nginx`, TLS ingresses annotated
//! `nginx.ingress.kubernetes.io/ssl-redirect: "true"`. It implements `IngressProvider`.
//!
//! # On a cloud
//! On a cluster whose `load_balancer_annotations` are not empty (EKS: a Network Load Balancer),
//! the controller's `LoadBalancer` Service gets them, for the scheme of
//! [`IngressNginx::load_balancer_scheme`] (internet-facing by default; internal); elsewhere the Service is
//! left as the chart makes it. With [`IngressNginx::dns_zone`], after the engine applied, the module waits
//! (at most [`IngressNginx::load_balancer_timeout`], 10 minutes by default) until the Service `<release>-controller` (`ingress-nginx-controller` by default)
//! has `status.loadBalancer.ingress[0].hostname`, points the wildcard record
//! `*.<subdomain>.<cluster>.<base domain>` (CNAME) at it in the zone, and outputs the hostname
//! in `ingress.load_balancer_hostname`. The plan shows the record, its target unknown; destroy
//! deletes it before the objects. [`IngressNginx::wildcard_record`]`(false)` turns the record off (and
//! with it the wait, unless [`IngressNginx::wait_for_load_balancer`] asks for it). A wildcard outside the
//! zone stops plan and apply before anything is made, naming both.
//!
//! # Defaults
//! Chart `ingress-nginx` [`CHART_VERSION`], namespace `ingress-nginx`, release `ingress-nginx`,
//! ingress class `nginx` marked as the cluster default, 2 replicas, 100m CPU / 128Mi memory
//! requested and 256Mi limit, a `LoadBalancer` service ([`IngressNginx::service_type`]), metrics on;
//! sync with prune and self-heal.
//! Declares `Capability::IngressClass`.

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef};
use devops_stack_core::{Context, Input};
use serde_json::json;

use crate::common::{
    ChartSource, Common, Component, Env, Rendered, Secrets, Sizing, ValueKind, common_setters,
    component_module, helm_fullname, sizing_setters,
};
use crate::error::Result;
use crate::ingress_controller::{
    ControllerSettings, IngressController, controller_hooks, controller_setters,
};

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::INGRESS_NGINX.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::INGRESS_NGINX.repository;

/// Deploys ingress-nginx as the stack's ingress controller.
///
/// ingress-nginx is retired (no releases or security fixes after March 2026): prefer
/// [`Traefik`](crate::Traefik) for a new platform. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct IngressNginx {
    common: Common,
    controller: ControllerSettings,
    sizing: Sizing,
}

impl IngressNginx {
    /// ingress-nginx on `cluster`, deployed by `argocd`, with the id `ingress-nginx`.
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        IngressNginx {
            common: Common::new(
                "ingress-nginx",
                cluster.into(),
                argocd.into(),
                ChartSource::new(CHART_REPOSITORY, "ingress-nginx", CHART_VERSION),
                "ingress-nginx",
            ),
            controller: ControllerSettings::new("nginx"),
            sizing: Sizing::new(2, crate::Resources::small(128)),
        }
    }
}

impl IngressNginx {
    /// The controller's Service, as the chart names it for the release.
    fn service_name(&self) -> String {
        format!(
            "{}-controller",
            helm_fullname(&self.common.release_name, "ingress-nginx")
        )
    }
}

common_setters!(IngressNginx);
sizing_setters!(IngressNginx);
controller_setters!(IngressNginx);
component_module!(IngressNginx, IngressController);

impl Component for IngressNginx {
    type Output = IngressController;
    const KIND: &'static str = "ingress-nginx";

    fn common(&self) -> &Common {
        &self.common
    }

    controller_hooks!();

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        &[
            ("/controller/replicaCount", ValueKind::Integer),
            ("/controller/resources", ValueKind::Object),
            ("/controller/ingressClassResource/default", ValueKind::Bool),
            ("/controller/ingressClassResource/name", ValueKind::String),
            ("/controller/service/type", ValueKind::String),
        ]
    }

    fn validate_more(&self, v: &mut devops_stack_core::Validation) {
        self.controller.validate(v);
        self.sizing.validate(v);
    }

    fn render(
        &self,
        ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<IngressController>> {
        let c = &self.controller;
        let mut defaults = json!({
            "controller": {
                "replicaCount": self.sizing.replicas,
                "resources": self.sizing.resources.to_value(),
                "ingressClass": c.class_name,
                "ingressClassResource": {
                    "enabled": true,
                    "name": c.class_name,
                    "default": c.default_class,
                    "controllerValue": "k8s.io/ingress-nginx",
                },
                "watchIngressWithoutClass": c.default_class,
                "service": {"type": c.service_type},
                "metrics": {"enabled": true},
            },
        });
        let annotations = c.service_annotations(env);
        if !annotations.is_empty() {
            defaults["controller"]["service"]["annotations"] = json!(annotations);
        }
        let values = self.common.values(env, defaults, |crds| {
            json!({"controller": {"metrics": {"serviceMonitor": {"enabled": true, "additionalLabels": crds.labels}}}})
        });
        Ok(Rendered {
            output: c.output(
                ctx,
                &self.common.namespace,
                "k8s.io/ingress-nginx",
                &[("nginx.ingress.kubernetes.io/ssl-redirect", "true")],
            ),
            objects: self.common.chart_objects(env, values),
        })
    }
}
