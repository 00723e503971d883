//! What the ingress controllers ([`Traefik`](crate::Traefik) and
//! [`IngressNginx`](crate::IngressNginx)) share, written once: the output, so that swapping one
//! for another changes one line; the settings, setters and checks; the render of the chart's
//! values around what each chart names differently ([`IngressChart`]); and what both do on a
//! cloud: the load balancer's annotations, waiting for its hostname, and the wildcard DNS
//! record pointing at it.

mod load_balancer;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterRef, DnsZone, Ingress, IngressProvider, LoadBalancerScheme,
};
use devops_stack_core::{Context, Input, Needs, Resource, Validation};
use serde::Serialize;
use serde_json::{Value, json};

use crate::chart::{
    Chart, ChartSpec, Common, Env, Rendered, Resources, Secrets, Sizable, Sizing, ValueKind,
};
use crate::error::Result;
use crate::kube_prometheus_stack::ServiceMonitorCrds;
use crate::pins::Pin;

/// How long an ingress controller waits by default for the cloud to give its Service a load
/// balancer hostname.
pub const DEFAULT_LOAD_BALANCER_TIMEOUT: Duration = Duration::from_secs(600);

/// What an ingress controller module (Traefik, ingress-nginx) outputs: how to publish through
/// it, its namespace included. Implements [`IngressProvider`], so its handle is an
/// `Input<Ingress>` for every module that publishes a UI or lets the controller's traffic in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressController {
    /// How ingresses use it, and its namespace.
    pub ingress: Ingress,
}

impl IngressProvider for IngressController {
    fn ingress(&self) -> Ingress {
        self.ingress.clone()
    }
}

pub(crate) mod sealed {
    /// Keeps [`IngressChart`](super::IngressChart) to the controllers of this crate.
    pub trait Sealed {}
}

/// What differs between the ingress controllers' charts: names and values. Implemented by
/// [`TraefikChart`](crate::traefik::TraefikChart) and
/// [`IngressNginxChart`](crate::ingress_nginx::IngressNginxChart) (sealed).
pub trait IngressChart: sealed::Sealed + fmt::Debug + Clone + Send + Sync + 'static {
    /// The controller's name: its module id and kind, chart, namespace and release name.
    const NAME: &'static str;
    /// The pinned chart.
    const PIN: Pin;
    /// The default ingress class.
    const CLASS_NAME: &'static str;
    /// The controller of its IngressClass (`spec.controller`).
    const CONTROLLER: &'static str;
    /// The annotations of TLS ingresses.
    const TLS_ANNOTATIONS: &'static [(&'static str, &'static str)];
    /// The typed checks of the chart's values ([`ChartSpec::typed_values`]).
    const TYPED_VALUES: &'static [(&'static str, ValueKind)];
    /// Where the chart's values of the controller's Service are (a JSON pointer): its load
    /// balancer annotations go there.
    const SERVICE_VALUES: &'static str;

    /// The controller's Service, as the chart names it for `release`.
    fn service_name(release: &str) -> String;

    /// The chart's values for the controller's settings.
    fn values(spec: &IngressControllerSpec<Self>) -> Value;

    /// The values that turn the chart's ServiceMonitor on, with the CRDs' labels.
    fn service_monitor(crds: &ServiceMonitorCrds) -> Value;

    /// Checks of the chart's own (default: none).
    fn validate(_common: &Common, _v: &mut Validation) {}
}

/// The spec of an ingress controller of the chart `K`: its class, its Service and load
/// balancer, the wildcard DNS record, its sizing.
#[derive(Debug, Clone)]
pub struct IngressControllerSpec<K> {
    pub(crate) class_name: String,
    pub(crate) default_class: bool,
    pub(crate) service_type: String,
    scheme: LoadBalancerScheme,
    dns_zone: Option<Input<DnsZone>>,
    wildcard_record: bool,
    wait_for_load_balancer: Option<bool>,
    load_balancer_timeout: Duration,
    pub(crate) sizing: Sizing,
    chart: PhantomData<K>,
}

impl<K: IngressChart> Chart<IngressControllerSpec<K>> {
    /// The ingress controller on `cluster`, deployed by `argocd`, with the id of its chart
    /// (`traefik`, `ingress-nginx`).
    pub fn new(
        cluster: impl Into<Input<ClusterRef>>,
        argocd: impl Into<Input<ArgoCdTarget>>,
    ) -> Self {
        Chart::with_spec(
            Common::new(K::NAME, cluster, argocd, K::PIN.source(), K::NAME),
            IngressControllerSpec {
                class_name: K::CLASS_NAME.to_owned(),
                default_class: true,
                service_type: "LoadBalancer".into(),
                scheme: LoadBalancerScheme::default(),
                dns_zone: None,
                wildcard_record: true,
                wait_for_load_balancer: None,
                load_balancer_timeout: DEFAULT_LOAD_BALANCER_TIMEOUT,
                sizing: Sizing::new(2, Resources::small(128)),
                chart: PhantomData,
            },
        )
    }

    /// Another ingress class name.
    #[must_use]
    pub fn class_name(mut self, name: impl Into<String>) -> Self {
        self.spec.class_name = name.into();
        self
    }

    /// The type of the controller's Service (default `LoadBalancer`; `NodePort` where no load
    /// balancer is available, since Argo CD reports a `LoadBalancer` Service without an address
    /// as progressing, and the apply waits for it).
    #[must_use]
    pub fn service_type(mut self, service_type: impl Into<String>) -> Self {
        self.spec.service_type = service_type.into();
        self
    }

    /// Whether the class is the cluster's default (default true).
    #[must_use]
    pub fn default_class(mut self, on: bool) -> Self {
        self.spec.default_class = on;
        self
    }

    /// Whether the controller's load balancer is reachable from the internet (the default) or
    /// only from inside the network. Applied through the cluster's `load_balancer_annotations`
    /// (a Network Load Balancer on EKS); nothing changes on a cluster without cloud load
    /// balancers.
    #[must_use]
    pub fn load_balancer_scheme(mut self, scheme: LoadBalancerScheme) -> Self {
        self.spec.scheme = scheme;
        self
    }

    /// The DNS zone to publish the stack's hostnames in: after apply, the wildcard record
    /// `*.<subdomain>.<cluster>.<base domain>` points (CNAME) at the load balancer's hostname,
    /// and destroy deletes it. The wildcard must be inside the zone.
    #[must_use]
    pub fn dns_zone(mut self, zone: impl Into<Input<DnsZone>>) -> Self {
        self.spec.dns_zone = Some(zone.into());
        self
    }

    /// Whether the wildcard record is made when a DNS zone is given (default true).
    #[must_use]
    pub fn wildcard_record(mut self, on: bool) -> Self {
        self.spec.wildcard_record = on;
        self
    }

    /// Whether apply waits for the load balancer's hostname and outputs it (default: when the
    /// wildcard record is made).
    #[must_use]
    pub fn wait_for_load_balancer(mut self, on: bool) -> Self {
        self.spec.wait_for_load_balancer = Some(on);
        self
    }

    /// How long apply waits for the load balancer's hostname (default 10 minutes).
    #[must_use]
    pub fn load_balancer_timeout(mut self, timeout: Duration) -> Self {
        self.spec.load_balancer_timeout = timeout;
        self
    }
}

impl<K> Sizable for IngressControllerSpec<K> {
    fn sizing(&mut self) -> &mut Sizing {
        &mut self.sizing
    }
}

impl<K> IngressControllerSpec<K> {
    /// Checks the class name and the Service type; declares the ingress class.
    fn validate(&self, v: &mut Validation) {
        v.dns_subdomain("class_name", &self.class_name);
        if !["LoadBalancer", "NodePort", "ClusterIP"].contains(&self.service_type.as_str()) {
            v.error(
                "service_type",
                format!("`{}` is not a Service type", self.service_type),
                "use `LoadBalancer`, `NodePort` or `ClusterIP`",
            );
        } else if self.waits() && self.service_type != "LoadBalancer" {
            v.error(
                "service_type",
                format!(
                    "is `{}`, which gets no load balancer, yet the module is to wait for one{}",
                    self.service_type,
                    if self.record().is_some() {
                        " (for the wildcard DNS record)"
                    } else {
                        ""
                    }
                ),
                "keep `service_type(\"LoadBalancer\")`, or turn the record off with `wildcard_record(false)`",
            );
        }
        if self.load_balancer_timeout.is_zero() {
            v.error(
                "load_balancer_timeout",
                "is zero",
                "give the cloud time to make the load balancer, like `Duration::from_secs(600)`",
            );
        }
        v.provides(devops_stack_core::Capability::IngressClass {
            name: self.class_name.clone(),
            default: self.default_class,
        });
    }
}

impl<K: IngressChart> ChartSpec for IngressControllerSpec<K> {
    type Output = IngressController;
    const KIND: &'static str = K::NAME;

    fn needs_more(&self, n: &mut Needs) {
        n.add(&self.dns_zone);
    }

    fn typed_values(&self) -> &'static [(&'static str, ValueKind)] {
        K::TYPED_VALUES
    }

    fn validate_more(&self, common: &Common, v: &mut Validation) {
        self.validate(v);
        self.sizing.validate(v);
        K::validate(common, v);
    }

    fn check(&self, _common: &Common, ctx: &Context, env: &Env) -> Result<()> {
        self.check_record(ctx, env)
    }

    fn planned_cloud(&self, _common: &Common, ctx: &Context, env: &Env) -> Result<Vec<Resource>> {
        self.planned_record(ctx, env)
    }

    async fn after_apply(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        client: &kube::Client,
        output: IngressController,
    ) -> Result<IngressController> {
        let service = K::service_name(&common.release_name);
        self.publish_load_balancer(ctx, env, client, &service, output)
            .await
    }

    async fn release(&self, common: &Common, ctx: &Context, cluster: &ClusterRef) -> Result<()> {
        self.delete_record(ctx, &common.hostnames(cluster)).await
    }

    fn render(
        &self,
        common: &Common,
        ctx: &Context,
        env: &Env,
        _secrets: &Secrets,
    ) -> Result<Rendered<IngressController>> {
        let mut defaults = K::values(self);
        let annotations = self.service_annotations(env);
        if !annotations.is_empty() {
            let service = defaults
                .pointer_mut(K::SERVICE_VALUES)
                .expect("the chart's values hold its Service's");
            service["annotations"] = json!(annotations);
        }
        let values = common.values(env, defaults, K::service_monitor);
        Ok(Rendered {
            output: self.output(ctx, &common.namespace, K::CONTROLLER, K::TLS_ANNOTATIONS),
            objects: common.chart_objects(env, values),
        })
    }
}
