//! ingress-nginx, the ingress controller, from the `ingress-nginx` chart of
//! <https://kubernetes.github.io/ingress-nginx>.
//!
//! **The project is retired**: ingress-nginx made no releases and no security fixes after March
//! 2026. The module stays for clusters that run it, pinned to the final release ([`CHART_VERSION`],
//! controller 1.15.1); new platforms should use [`Traefik`](crate::Traefik), which outputs the same
//! [`IngressController`](crate::IngressController) (so switching is a one-line change), or a
//! Gateway API implementation.
//!
//! # Inputs
//! - the cluster (`Input<ClusterRef>`) and Argo CD (`Input<ArgoCdTarget>`), in
//!   [`IngressNginx::new`](IngressNginx);
//! - optionally a DNS zone (`Input<DnsZone>`, [`IngressNginx::dns_zone`]) for the wildcard record;
//! - optionally the ServiceMonitor CRDs ([`IngressNginx::service_monitors`]).
//!
//! # Outputs
//! An [`IngressController`](crate::IngressController) (the same type as Traefik's, so swapping is a
//! one-line change): class `nginx`, controller `k8s.io/ingress-nginx`, TLS ingresses annotated
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

use serde_json::{Value, json};

use crate::chart::{Chart, ValueKind, helm_fullname};
use crate::ingress_controller::{IngressChart, IngressControllerSpec, sealed};
use crate::kube_prometheus_stack::ServiceMonitorCrds;
use crate::pins::Pin;

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::INGRESS_NGINX.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::INGRESS_NGINX.repository;

/// Deploys ingress-nginx as the stack's ingress controller.
///
/// ingress-nginx is retired (no releases or security fixes after March 2026): prefer
/// [`Traefik`](crate::Traefik) for a new platform. See the [module documentation](self).
///
/// Its constructor and setters are on [`Chart`]: those of the ingress controllers (`new`,
/// `class_name`, `dns_zone`...), and those every chart module has (`namespace`, `values`,
/// `replicas`...).
pub type IngressNginx = Chart<IngressControllerSpec<IngressNginxChart>>;

/// The names and values of the `ingress-nginx` chart ([`IngressChart`]).
#[derive(Debug, Clone, Copy)]
pub struct IngressNginxChart;

impl sealed::Sealed for IngressNginxChart {}

impl IngressChart for IngressNginxChart {
    const NAME: &'static str = "ingress-nginx";
    const PIN: Pin = crate::pins::INGRESS_NGINX;
    const CLASS_NAME: &'static str = "nginx";
    const CONTROLLER: &'static str = "k8s.io/ingress-nginx";
    const TLS_ANNOTATIONS: &'static [(&'static str, &'static str)] =
        &[("nginx.ingress.kubernetes.io/ssl-redirect", "true")];
    const TYPED_VALUES: &'static [(&'static str, ValueKind)] = &[
        ("/controller/replicaCount", ValueKind::Integer),
        ("/controller/resources", ValueKind::Object),
        ("/controller/ingressClassResource/default", ValueKind::Bool),
        ("/controller/ingressClassResource/name", ValueKind::String),
        ("/controller/service/type", ValueKind::String),
    ];
    const SERVICE_VALUES: &'static str = "/controller/service";

    fn service_name(release: &str) -> String {
        format!("{}-controller", helm_fullname(release, "ingress-nginx"))
    }

    fn values(c: &IngressControllerSpec<Self>) -> Value {
        json!({
            "controller": {
                "replicaCount": c.sizing.replicas,
                "resources": c.sizing.resources.to_value(),
                "ingressClass": c.class_name,
                "ingressClassResource": {
                    "enabled": true,
                    "name": c.class_name,
                    "default": c.default_class,
                    "controllerValue": Self::CONTROLLER,
                },
                "watchIngressWithoutClass": c.default_class,
                "service": {"type": c.service_type},
                "metrics": {"enabled": true},
            },
        })
    }

    fn service_monitor(crds: &ServiceMonitorCrds) -> Value {
        json!({"controller": {"metrics": {"serviceMonitor": {"enabled": true, "additionalLabels": crds.labels}}}})
    }
}
