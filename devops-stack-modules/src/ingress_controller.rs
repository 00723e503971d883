//! The output ingress controllers share, so that swapping one for another changes one line,
//! and what both do on a cloud: the load balancer's annotations, waiting for its hostname, and
//! the wildcard DNS record pointing at it.

use std::collections::BTreeMap;
use std::time::Duration;

use devops_stack_core::interfaces::{
    ClusterRef, DnsRecord, DnsZone, Ingress, IngressProvider, LoadBalancerScheme, RecordKind,
    RoleOwner,
};
use devops_stack_core::plan::unknown;
use devops_stack_core::{Context, Input, Needs, Resource, Validation};
use k8s_openapi::api::core::v1::Service;
use serde::Serialize;

use crate::common::{Common, Env};
use crate::error::{Error, Result};

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

/// The settings both ingress controllers have.
#[derive(Debug, Clone)]
pub(crate) struct ControllerSettings {
    pub(crate) class_name: String,
    pub(crate) default_class: bool,
    pub(crate) service_type: String,
    pub(crate) scheme: LoadBalancerScheme,
    pub(crate) dns_zone: Option<Input<DnsZone>>,
    pub(crate) wildcard_record: bool,
    pub(crate) wait_for_load_balancer: Option<bool>,
    pub(crate) load_balancer_timeout: Duration,
}

impl ControllerSettings {
    pub(crate) fn new(class_name: &str) -> Self {
        ControllerSettings {
            class_name: class_name.to_owned(),
            default_class: true,
            service_type: "LoadBalancer".into(),
            scheme: LoadBalancerScheme::default(),
            dns_zone: None,
            wildcard_record: true,
            wait_for_load_balancer: None,
            load_balancer_timeout: DEFAULT_LOAD_BALANCER_TIMEOUT,
        }
    }

    pub(crate) fn needs(&self, n: &mut Needs) {
        n.add(&self.dns_zone);
    }

    /// Whether the wildcard record is made: a zone is given and the record is not turned off.
    fn record(&self) -> Option<&Input<DnsZone>> {
        self.dns_zone.as_ref().filter(|_| self.wildcard_record)
    }

    /// Whether apply waits for the load balancer's hostname: when there is a record to point at
    /// it, or when asked.
    fn waits(&self) -> bool {
        self.wait_for_load_balancer
            .unwrap_or_else(|| self.record().is_some())
    }

    /// Checks the class name and the Service type; declares the ingress class.
    pub(crate) fn validate(&self, v: &mut Validation) {
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

    /// The annotations of the controller's Service that get the cluster's load balancer of the
    /// chosen scheme (none where the cluster has no cloud load balancers, or the Service is not
    /// a `LoadBalancer`).
    pub(crate) fn service_annotations(&self, env: &Env) -> BTreeMap<String, String> {
        if self.service_type == "LoadBalancer" {
            env.cluster.load_balancer_annotations(self.scheme)
        } else {
            BTreeMap::new()
        }
    }

    /// The wildcard record's name: `*.<subdomain>.<cluster>.<base domain>`.
    fn wildcard(hostnames: &devops_stack_core::interfaces::Hostnames) -> String {
        hostnames.host("*")
    }

    /// Refuses a wildcard record outside the zone, before any side effect.
    pub(crate) fn check(&self, ctx: &Context, env: &Env) -> Result<()> {
        if let Some(zone) = self.record() {
            let zone = ctx.get(zone)?;
            let name = Self::wildcard(&env.hostnames);
            if !zone.contains(&name) {
                return Err(Error::input(
                    "dns_zone",
                    format!(
                        "the wildcard record `{name}` is not in the zone `{}`",
                        zone.domain
                    ),
                    format!(
                        "give the zone of `{}` (or a parent domain), change the cluster's base domain or the module's subdomain, or turn the record off with `wildcard_record(false)`",
                        env.hostnames.base_domain
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The wildcard record, for the offline plan, its target unknown.
    pub(crate) fn planned_cloud(&self, ctx: &Context, env: &Env) -> Result<Vec<Resource>> {
        match self.record() {
            Some(zone) => {
                let zone = ctx.get(zone)?;
                let record = DnsRecord::cname(
                    Self::wildcard(&env.hostnames),
                    unknown(ctx.module_id(), "load_balancer_hostname"),
                );
                Ok(vec![zone.planned_record(&record)])
            }
            None => Ok(Vec::new()),
        }
    }

    /// After the engine applied: waits (bounded) for the load balancer's hostname on the Service
    /// `service` of `namespace`, points the wildcard record at it, and puts it in the output.
    pub(crate) async fn after_apply(
        &self,
        ctx: &Context,
        env: &Env,
        client: &kube::Client,
        service: &str,
        mut output: IngressController,
    ) -> Result<IngressController> {
        if !self.waits() {
            return Ok(output);
        }
        ctx.progress(format!(
            "waiting up to {:?} for the load balancer of Service {}/{service}",
            self.load_balancer_timeout, output.ingress.namespace
        ));
        let hostname = wait_for_hostname(
            client,
            &output.ingress.namespace,
            service,
            self.load_balancer_timeout,
            ctx.module_id(),
            ctx.cancellation().cancelled(),
        )
        .await?;
        if let Some(zone) = self.record() {
            let zone = ctx.get(zone)?;
            let record = DnsRecord::cname(Self::wildcard(&env.hostnames), &hostname);
            ctx.progress(format!("pointing {} at {hostname}", record.name));
            zone.records
                .ensure_record(&RoleOwner::of(ctx), &record)
                .await
                .map_err(|e| {
                    Error::cloud(
                        format!(
                            "creating the record {} CNAME {hostname} in zone {}",
                            record.name, zone.domain
                        ),
                        e,
                    )
                })?;
        }
        output.ingress.load_balancer_hostname = Some(hostname);
        Ok(output)
    }

    /// Before the objects are deleted: deletes the wildcard record (it is the module's own; a
    /// record of the same name made by anyone else is left alone by the zone).
    pub(crate) async fn release(
        &self,
        ctx: &Context,
        common: &Common,
        cluster: &ClusterRef,
    ) -> Result<()> {
        if let Some(zone) = self.record() {
            let zone = ctx.get(zone)?;
            let name = Self::wildcard(&common.hostnames(cluster));
            zone.records
                .delete_record(&RoleOwner::of(ctx), &name, RecordKind::Cname)
                .await
                .map_err(|e| {
                    Error::cloud(
                        format!("deleting the record {name} from zone {}", zone.domain),
                        e,
                    )
                })?;
        }
        Ok(())
    }

    /// The output of a controller of `controller` in `namespace` whose TLS ingresses get
    /// `tls_annotations`; its load balancer's hostname is unknown until apply waited for it.
    pub(crate) fn output(
        &self,
        ctx: &Context,
        namespace: &str,
        controller: &str,
        tls_annotations: &[(&str, &str)],
    ) -> IngressController {
        IngressController {
            ingress: Ingress {
                namespace: namespace.to_owned(),
                class_name: self.class_name.clone(),
                controller: controller.to_owned(),
                default_class: self.default_class,
                annotations: Default::default(),
                tls_annotations: tls_annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                load_balancer_hostname: self
                    .waits()
                    .then(|| unknown(ctx.module_id(), "load_balancer_hostname")),
            },
        }
    }
}

/// How often the Service is read while waiting for its load balancer.
const POLL: Duration = Duration::from_millis(500);

/// Waits until the Service `namespace/name` has `status.loadBalancer.ingress[0].hostname`, at
/// most `timeout`, or until `cancelled` (the run of `module` was cancelled).
async fn wait_for_hostname(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    module: &str,
    cancelled: impl std::future::Future<Output = ()>,
) -> Result<String> {
    let api: kube::Api<Service> = kube::Api::namespaced(client.clone(), namespace);
    let object = format!("Service {namespace}/{name}");
    tokio::pin!(cancelled);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let service = api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("reading {object}"), e))?;
        let state = match &service {
            None => "the Service does not exist yet".to_owned(),
            Some(s) => {
                let first = s
                    .status
                    .as_ref()
                    .and_then(|st| st.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .and_then(|i| i.first());
                match first {
                    Some(i) => match (&i.hostname, &i.ip) {
                        (Some(h), _) if !h.is_empty() => return Ok(h.clone()),
                        (_, Some(ip)) => format!(
                            "the load balancer has the address {ip} but no hostname, and a CNAME record needs one"
                        ),
                        _ => "the load balancer has no address yet".to_owned(),
                    },
                    None => "the Service has no load balancer yet".to_owned(),
                }
            }
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(Error::Wait {
                object,
                what: "the load balancer hostname (`status.loadBalancer.ingress[0].hostname`)"
                    .into(),
                waited: timeout,
                state,
                fix: "check the Service's events (`kubectl describe service`) and the cloud's load balancer controller, or wait longer with `load_balancer_timeout`".into(),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(POLL.min(deadline - now)) => {}
            () = &mut cancelled => {
                return Err(devops_stack_core::Error::Cancelled { module: module.to_owned() }.into());
            }
        }
    }
}

/// The setters both ingress controllers have (their struct has a `controller` field).
macro_rules! controller_setters {
    ($t:ty) => {
        impl $t {
            /// Another ingress class name.
            #[must_use]
            pub fn class_name(mut self, name: impl Into<String>) -> Self {
                self.controller.class_name = name.into();
                self
            }

            /// The type of the controller's Service (default `LoadBalancer`; `NodePort` where no
            /// load balancer is available, since Argo CD reports a `LoadBalancer` Service without an
            /// address as progressing, and the apply waits for it).
            #[must_use]
            pub fn service_type(mut self, service_type: impl Into<String>) -> Self {
                self.controller.service_type = service_type.into();
                self
            }

            /// Whether the class is the cluster's default (default true).
            #[must_use]
            pub fn default_class(mut self, on: bool) -> Self {
                self.controller.default_class = on;
                self
            }

            /// Whether the controller's load balancer is reachable from the internet (the
            /// default) or only from inside the network. Applied through the cluster's
            /// `load_balancer_annotations` (a Network Load Balancer on EKS); nothing changes on a
            /// cluster without cloud load balancers.
            #[must_use]
            pub fn load_balancer_scheme(
                mut self,
                scheme: devops_stack_core::interfaces::LoadBalancerScheme,
            ) -> Self {
                self.controller.scheme = scheme;
                self
            }

            /// The DNS zone to publish the stack's hostnames in: after apply, the wildcard record
            /// `*.<subdomain>.<cluster>.<base domain>` points (CNAME) at the load balancer's
            /// hostname, and destroy deletes it. The wildcard must be inside the zone.
            #[must_use]
            pub fn dns_zone(
                mut self,
                zone: impl Into<devops_stack_core::Input<devops_stack_core::interfaces::DnsZone>>,
            ) -> Self {
                self.controller.dns_zone = Some(zone.into());
                self
            }

            /// Whether the wildcard record is made when a DNS zone is given (default true).
            #[must_use]
            pub fn wildcard_record(mut self, on: bool) -> Self {
                self.controller.wildcard_record = on;
                self
            }

            /// Whether apply waits for the load balancer's hostname and outputs it (default: when
            /// the wildcard record is made).
            #[must_use]
            pub fn wait_for_load_balancer(mut self, on: bool) -> Self {
                self.controller.wait_for_load_balancer = Some(on);
                self
            }

            /// How long apply waits for the load balancer's hostname (default 10 minutes).
            #[must_use]
            pub fn load_balancer_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.controller.load_balancer_timeout = timeout;
                self
            }
        }
    };
}

/// The [`Component`](crate::common::Component) steps both ingress controllers share, in their
/// `impl Component` (their struct has `common` and `controller` fields and a `service_name()`).
macro_rules! controller_hooks {
    () => {
        fn needs_more(&self, n: &mut devops_stack_core::Needs) {
            self.controller.needs(n);
        }

        fn check(
            &self,
            ctx: &devops_stack_core::Context,
            env: &$crate::common::Env,
        ) -> $crate::Result<()> {
            self.controller.check(ctx, env)
        }

        fn planned_cloud(
            &self,
            ctx: &devops_stack_core::Context,
            env: &$crate::common::Env,
        ) -> $crate::Result<Vec<devops_stack_core::Resource>> {
            self.controller.planned_cloud(ctx, env)
        }

        async fn after_apply(
            &self,
            ctx: &devops_stack_core::Context,
            env: &$crate::common::Env,
            client: &kube::Client,
            output: $crate::IngressController,
        ) -> $crate::Result<$crate::IngressController> {
            self.controller
                .after_apply(ctx, env, client, &self.service_name(), output)
                .await
        }

        async fn release(
            &self,
            ctx: &devops_stack_core::Context,
            cluster: &devops_stack_core::interfaces::ClusterRef,
        ) -> $crate::Result<()> {
            self.controller.release(ctx, &self.common, cluster).await
        }
    };
}

pub(crate) use {controller_hooks, controller_setters};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use serde_json::json;

    const PATH: &str = "/api/v1/namespaces/traefik/services/traefik";

    fn service(status: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "traefik", "namespace": "traefik"},
            "spec": {"type": "LoadBalancer"}, "status": status})
    }

    #[tokio::test]
    async fn waits_until_the_service_exists_and_has_a_hostname() {
        let (client, mut server) = mock::client();
        let wait = tokio::spawn(async move {
            wait_for_hostname(
                &client,
                "traefik",
                "traefik",
                Duration::from_secs(30),
                "traefik",
                std::future::pending(),
            )
            .await
        });
        server.expect("GET", PATH, 404, mock::not_found()).await;
        server
            .expect("GET", PATH, 200, service(json!({"loadBalancer": {}})))
            .await;
        let ready = json!({"loadBalancer": {"ingress": [{"hostname": "nlb-1.elb.amazonaws.com"}]}});
        server.expect("GET", PATH, 200, service(ready)).await;
        assert_eq!(wait.await.unwrap().unwrap(), "nlb-1.elb.amazonaws.com");
    }

    #[tokio::test]
    async fn an_address_without_a_hostname_times_out_saying_so() {
        let (client, mut server) = mock::client();
        let wait = tokio::spawn(async move {
            wait_for_hostname(
                &client,
                "traefik",
                "traefik",
                Duration::from_millis(200),
                "traefik",
                std::future::pending(),
            )
            .await
        });
        let ip = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}});
        server.expect("GET", PATH, 200, service(ip.clone())).await;
        server.expect("GET", PATH, 200, service(ip)).await;
        let e = wait.await.unwrap().unwrap_err().to_string();
        assert!(
            e.contains("Service traefik/traefik")
                && e.contains("203.0.113.7 but no hostname")
                && e.contains("after 200ms"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_waiting() {
        let (client, mut server) = mock::client();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let wait = tokio::spawn(async move {
            wait_for_hostname(
                &client,
                "traefik",
                "traefik",
                Duration::from_secs(60),
                "traefik",
                async {
                    let _ = rx.await;
                },
            )
            .await
        });
        server.expect("GET", PATH, 404, mock::not_found()).await;
        tx.send(()).unwrap();
        let e = wait.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("cancelled while module `traefik`"), "{e}");
    }
}
