//! Traefik, the ingress controller, from the `traefik` chart of <https://traefik.github.io/charts>.
//!
//! # Inputs
//! - the cluster (`Input<ClusterRef>`) and Argo CD (`Input<ArgoCdTarget>`), in
//!   [`Traefik::new`](Traefik);
//! - optionally a DNS zone (`Input<DnsZone>`, [`Traefik::dns_zone`]) for the wildcard record;
//! - optionally the ServiceMonitor CRDs ([`Traefik::service_monitors`]), which enables Traefik's
//!   ServiceMonitor from the first run, with the chart's dedicated metrics Service it scrapes.
//!
//! # Outputs
//! An [`IngressController`](crate::IngressController): the
//! [`Ingress`](devops_stack_core::interfaces::Ingress) every other module's ingresses use, with the
//! controller's namespace (class `traefik`, TLS ingresses annotated
//! `traefik.ingress.kubernetes.io/router.tls: "true"`). It implements `IngressProvider`.
//!
//! # On a cloud
//! On a cluster whose `load_balancer_annotations` are not empty (EKS: a Network Load Balancer),
//! the controller's `LoadBalancer` Service gets them, for the scheme of
//! [`Traefik::load_balancer_scheme`] (internet-facing by default; internal); elsewhere the Service is
//! left as the chart makes it. With [`Traefik::dns_zone`], after the engine applied, the module waits
//! (at most [`Traefik::load_balancer_timeout`], 10 minutes by default) until the Service `<release>` (`traefik` by default)
//! has `status.loadBalancer.ingress[0].hostname`, points the wildcard record
//! `*.<subdomain>.<cluster>.<base domain>` (CNAME) at it in the zone, and outputs the hostname
//! in `ingress.load_balancer_hostname`. The plan shows the record, its target unknown; destroy
//! deletes it before the objects. [`Traefik::wildcard_record`]`(false)` turns the record off (and
//! with it the wait, unless [`Traefik::wait_for_load_balancer`] asks for it). A wildcard outside the
//! zone stops plan and apply before anything is made, naming both.
//!
//! # Defaults
//! Chart `traefik` [`CHART_VERSION`], namespace `traefik`, release `traefik`, ingress class
//! `traefik` marked as the cluster default, 2 replicas, 100m CPU / 128Mi memory requested and
//! 256Mi limit, a `LoadBalancer` service ([`Traefik::service_type`]), the Kubernetes Ingress provider publishing the
//! service's address; sync with prune and self-heal. The module declares
//! `Capability::IngressClass`, so the stack refuses two controllers claiming the same class
//! or both claiming the default.

use devops_stack_core::Validation;
use serde_json::{Value, json};

use crate::chart::{Chart, Common, ValueKind, helm_fullname};
use crate::ingress_controller::{IngressChart, IngressControllerSpec, sealed};
use crate::kube_prometheus_stack::ServiceMonitorCrds;
use crate::pins::Pin;

/// The pinned chart version.
pub const CHART_VERSION: &str = crate::pins::TRAEFIK.version;
/// The chart's Helm repository.
pub const CHART_REPOSITORY: &str = crate::pins::TRAEFIK.repository;

/// Values the chart moved since the module's first pin (37.x), with their new place: the
/// Service type went under `service.spec`, an entry point's HTTP options under `http` (39.0.0),
/// the logs to Traefik's own names (41.0.0).
const MOVED_VALUES: &[(&str, &str)] = &[
    ("/service/type", "/service/spec/type"),
    ("/ports/web/redirections", "/ports/web/http/redirections"),
    ("/ports/websecure/tls", "/ports/websecure/http/tls"),
    (
        "/ports/websecure/middlewares",
        "/ports/websecure/http/middlewares",
    ),
    ("/logs/general", "/log"),
    ("/logs/access", "/accessLog"),
];

/// Deploys Traefik as the stack's ingress controller.
///
/// Its constructor and setters are on [`Chart`]: those of the ingress controllers (`new`,
/// `class_name`, `dns_zone`...), and those every chart module has (`namespace`, `values`,
/// `replicas`...).
///
/// ```
/// # use devops_stack_core::{Input, interfaces::{ArgoCdTarget, ClusterRef}};
/// # fn f(cluster: Input<ClusterRef>, argocd: Input<ArgoCdTarget>) {
/// use devops_stack_modules::Traefik;
/// let traefik = Traefik::new(cluster, argocd).replicas(3).values(serde_json::json!({"log": {"level": "DEBUG"}}));
/// # }
/// ```
pub type Traefik = Chart<IngressControllerSpec<TraefikChart>>;

/// The names and values of the `traefik` chart ([`IngressChart`]).
#[derive(Debug, Clone, Copy)]
pub struct TraefikChart;

impl sealed::Sealed for TraefikChart {}

impl IngressChart for TraefikChart {
    const NAME: &'static str = "traefik";
    const PIN: Pin = crate::pins::TRAEFIK;
    const CLASS_NAME: &'static str = "traefik";
    const CONTROLLER: &'static str = "traefik.io/ingress-controller";
    const TLS_ANNOTATIONS: &'static [(&'static str, &'static str)] =
        &[("traefik.ingress.kubernetes.io/router.tls", "true")];
    const TYPED_VALUES: &'static [(&'static str, ValueKind)] = &[
        ("/deployment/replicas", ValueKind::Integer),
        ("/resources", ValueKind::Object),
        ("/ingressClass/isDefaultClass", ValueKind::Bool),
        ("/ingressClass/name", ValueKind::String),
        ("/service/spec/type", ValueKind::String),
    ];
    const SERVICE_VALUES: &'static str = "/service";

    fn service_name(release: &str) -> String {
        helm_fullname(release, "traefik")
    }

    fn values(c: &IngressControllerSpec<Self>) -> Value {
        json!({
            "deployment": {"replicas": c.sizing.replicas},
            "resources": c.sizing.resources.to_value(),
            "ingressClass": {"enabled": true, "isDefaultClass": c.default_class, "name": c.class_name},
            "providers": {
                "kubernetesIngress": {"enabled": true, "publishedService": {"enabled": true}},
                "kubernetesCRD": {"enabled": true},
            },
            "service": {"spec": {"type": c.service_type}},
            "metrics": {"prometheus": {"entryPoint": "metrics"}},
        })
    }

    fn service_monitor(crds: &ServiceMonitorCrds) -> Value {
        // the chart's ServiceMonitor scrapes the port `metrics`, which only the dedicated
        // metrics Service exposes (`ports.metrics.expose.default` is false)
        json!({"metrics": {"prometheus": {
            "service": {"enabled": true},
            "serviceMonitor": {"enabled": true, "additionalLabels": crds.labels},
        }}})
    }

    fn validate(common: &Common, v: &mut Validation) {
        // keys the chart moved since 37.x: the old ones would be ignored (`service.type`) or
        // refused by the chart's schema (`logs`) only when Argo CD renders the chart
        for overrides in &common.values {
            for (old, new) in MOVED_VALUES {
                if overrides.pointer(old).is_some() {
                    v.error(
                        "values",
                        format!(
                            "`{old}` is no longer a value of the traefik chart {}",
                            crate::pins::TRAEFIK.version
                        ),
                        format!("set `{new}` instead"),
                    );
                }
            }
        }
    }
}
