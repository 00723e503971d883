//! What both ingress controllers do on a cloud: their load balancer's annotations, waiting for
//! its hostname, and the wildcard DNS record pointing at it.

use std::collections::BTreeMap;
use std::time::Duration;

use devops_stack_core::interfaces::{
    DnsRecord, DnsZone, Hostnames, Ingress, RecordKind, RoleOwner,
};
use devops_stack_core::plan::unknown;
use devops_stack_core::{Context, Input, Resource};
use k8s_openapi::api::core::v1::Service;

use super::{IngressController, IngressControllerSpec};
use crate::chart::Env;
use crate::error::{Error, Result};

impl<K> IngressControllerSpec<K> {
    /// Whether the wildcard record is made: a zone is given and the record is not turned off.
    pub(super) fn record(&self) -> Option<&Input<DnsZone>> {
        self.dns_zone.as_ref().filter(|_| self.wildcard_record)
    }

    /// Whether apply waits for the load balancer's hostname: when there is a record to point at
    /// it, or when asked.
    pub(super) fn waits(&self) -> bool {
        self.wait_for_load_balancer
            .unwrap_or_else(|| self.record().is_some())
    }

    /// The annotations of the controller's Service that get the cluster's load balancer of the
    /// chosen scheme (none where the cluster has no cloud load balancers, or the Service is not
    /// a `LoadBalancer`).
    pub(super) fn service_annotations(&self, env: &Env) -> BTreeMap<String, String> {
        if self.service_type == "LoadBalancer" {
            env.cluster.load_balancer_annotations(self.scheme)
        } else {
            BTreeMap::new()
        }
    }

    /// The wildcard record's name: `*.<subdomain>.<cluster>.<base domain>`.
    fn wildcard(hostnames: &Hostnames) -> String {
        hostnames.host("*")
    }

    /// Refuses a wildcard record outside the zone, before any side effect.
    pub(super) fn check_record(&self, ctx: &Context, env: &Env) -> Result<()> {
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
    pub(super) fn planned_record(&self, ctx: &Context, env: &Env) -> Result<Vec<Resource>> {
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
    /// `service` of the output's namespace, points the wildcard record at it, and puts it in the
    /// output.
    pub(super) async fn publish_load_balancer(
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

    /// Before the objects are deleted: deletes the wildcard record of the module's `hostnames`
    /// (it is the module's own; a record of the same name made by anyone else is left alone by
    /// the zone).
    pub(super) async fn delete_record(&self, ctx: &Context, hostnames: &Hostnames) -> Result<()> {
        if let Some(zone) = self.record() {
            let zone = ctx.get(zone)?;
            let name = Self::wildcard(hostnames);
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
    pub(super) fn output(
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

    /// Waits for the hostname of the Service `traefik/traefik` of module `traefik`, at most
    /// `timeout` or until `cancelled`, through a client the returned server answers.
    fn wait(
        timeout: Duration,
        cancelled: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (tokio::task::JoinHandle<Result<String>>, mock::Server) {
        let (client, server) = mock::client();
        let wait = tokio::spawn(async move {
            wait_for_hostname(&client, "traefik", "traefik", timeout, "traefik", cancelled).await
        });
        (wait, server)
    }

    #[tokio::test]
    async fn waits_until_the_service_exists_and_has_a_hostname() {
        let (wait, mut server) = wait(Duration::from_secs(30), std::future::pending());
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
        let (wait, mut server) = wait(Duration::from_millis(200), std::future::pending());
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
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (wait, mut server) = wait(Duration::from_secs(60), async {
            let _ = rx.await;
        });
        server.expect("GET", PATH, 404, mock::not_found()).await;
        tx.send(()).unwrap();
        let e = wait.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("cancelled while module `traefik`"), "{e}");
    }
}
