//! A user-written module wired into a stack of built-in modules through their typed handles.
//!
//! `Storefront` deploys an in-house app from a Git repository as an Argo CD Application, and
//! publishes it with an ingress through whichever ingress controller the stack has, with TLS
//! from the stack's cluster issuer. It logs in with OIDC through the stack's Keycloak.
//!
//! ```sh
//! cargo run --example custom_module   # prints the offline plan; no cluster is contacted
//! ```

use std::collections::BTreeMap;

use devops_stack_core::argocd::{
    Application, ApplicationDestination, ApplicationSource, ApplicationSpec, AutomatedSync,
    SyncPolicy,
};
use devops_stack_core::clusters::Kind;
use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterIssuer, ClusterRef, Ingress, IssuerKind, Oidc, OidcClient,
};
use devops_stack_core::k8s::{Deployer, ownership_labels};
use devops_stack_core::{
    Context, Input, Module, ModuleResult, Needs, Planned, Resource, Stack, Validation,
};
use devops_stack_modules::{
    ArgoCd, ArgoCdFinal, CertManager, Keycloak, KubePrometheusStack, MetricsServer,
    PrometheusOperatorCrds, Traefik,
};
use serde::Serialize;
use serde_json::{Value, json};

/// What the storefront outputs: its public URL.
#[derive(Debug, Clone, Serialize)]
struct StorefrontOutput {
    url: String,
}

/// An in-house app deployed from Git by Argo CD, published through the stack's ingress.
struct Storefront {
    repo_url: String,
    path: String,
    revision: String,
    namespace: String,
    cluster: Input<ClusterRef>,
    argocd: Input<ArgoCdTarget>,
    ingress: Input<Ingress>,
    issuer: Input<ClusterIssuer>,
    oidc: Input<Oidc>,
}

impl Storefront {
    /// Renders the Application and the Ingress; the same for plan and apply.
    fn render(&self, ctx: &Context) -> ModuleResult<(ClusterRef, Vec<Value>, StorefrontOutput)> {
        let cluster = ctx.get(&self.cluster)?;
        let argocd = ctx.get(&self.argocd)?;
        let ingress = ctx.get(&self.ingress)?;
        let issuer = ctx.get(&self.issuer)?;
        let oidc = ctx.get(&self.oidc)?;
        let labels: BTreeMap<String, String> = ownership_labels(ctx.stack_name(), ctx.module_id());
        let host = cluster.hostnames().host("shop");

        let app = Application::with_finalizer(
            "storefront",
            &argocd.namespace,
            ApplicationSpec {
                project: argocd.project.clone(),
                source: Some(ApplicationSource {
                    repo_url: self.repo_url.clone(),
                    path: Some(self.path.clone()),
                    target_revision: Some(self.revision.clone()),
                    ..Default::default()
                }),
                sources: vec![],
                destination: ApplicationDestination {
                    server: Some(argocd.destination_server.clone()),
                    namespace: Some(self.namespace.clone()),
                    name: None,
                },
                sync_policy: Some(SyncPolicy {
                    automated: Some(AutomatedSync {
                        prune: true,
                        self_heal: true,
                        allow_empty: false,
                    }),
                    sync_options: vec!["CreateNamespace=true".into()],
                    retry: None,
                }),
                ignore_differences: vec![],
            },
            labels.clone(),
        );
        // the ingress follows the stack's controller and issuer; swapping Traefik for
        // ingress-nginx changes its class and annotations, nothing here
        let ingress_object = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "storefront",
                "namespace": self.namespace,
                "labels": labels,
                "annotations": ingress.annotations_for(Some(&issuer)),
            },
            "spec": {
                "ingressClassName": ingress.class_name,
                "tls": [{"hosts": [host], "secretName": "storefront-tls"}],
                "rules": [{"host": host, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "storefront", "port": {"name": "http"}}},
                }]}}],
            },
        });
        // the app reads its OIDC settings from a ConfigMap the repository's Deployment mounts;
        // its client secret is in Keycloak's Secret, never here
        let oidc_config = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "storefront-oidc", "namespace": self.namespace, "labels": labels},
            "data": {"issuer": oidc.issuer_url, "client_id": oidc.client_id},
        });
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": labels}}),
            oidc_config,
            serde_json::to_value(&app)?,
            ingress_object,
        ];
        Ok((
            cluster,
            objects,
            StorefrontOutput {
                url: format!("https://{host}"),
            },
        ))
    }
}

impl Module for Storefront {
    type Output = StorefrontOutput;

    fn id(&self) -> &str {
        "storefront"
    }

    fn kind(&self) -> &'static str {
        "in-house-app"
    }

    fn needs(&self, needs: &mut Needs) {
        needs
            .add(&self.cluster)
            .add(&self.argocd)
            .add(&self.ingress)
            .add(&self.issuer)
            .add(&self.oidc);
    }

    fn validate(&self, v: &mut Validation) {
        v.dns_label("namespace", &self.namespace);
        if !self.repo_url.starts_with("https://") {
            v.error(
                "repo_url",
                format!("`{}` is not an https URL", self.repo_url),
                "give the Git repository's https URL",
            );
        }
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<StorefrontOutput>> {
        let (cluster, objects, output) = self.render(ctx)?;
        Ok(Planned::new(output).with_resources(
            objects
                .iter()
                .map(|o| Resource::kubernetes(cluster.name(), o)),
        ))
    }

    async fn apply(&self, ctx: &Context) -> ModuleResult<StorefrontOutput> {
        let (cluster, objects, output) = self.render(ctx)?;
        Deployer::for_module(ctx, &cluster)
            .await?
            .apply(objects)
            .await?;
        Ok(output)
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        Deployer::for_module(ctx, &cluster).await?.destroy().await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut stack = Stack::new("shop");
    let cluster = stack.add(Kind::new("shop"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let crds = stack.add(PrometheusOperatorCrds::new(&cluster, &argocd));
    // one line to swap for `IngressNginx::new(&cluster, &argocd)`
    let ingress = stack.add(
        Traefik::new(&cluster, &argocd)
            .service_type("NodePort") // kind has no load balancer
            .service_monitors(&crds),
    );
    let certs = stack.add(CertManager::new(&cluster, &argocd).service_monitors(&crds));
    let tls = certs.issuer(IssuerKind::SelfSignedCa);
    let hostnames = devops_stack_core::interfaces::Hostnames::new("shop", "127-0-0-1.nip.io");
    let sso = stack.add(
        Keycloak::new(&cluster, &argocd, &ingress)
            .issuer(tls.clone())
            .user("jane", "jane@example.com")
            .client(OidcClient::new(
                "storefront",
                [format!("{}/callback", hostnames.url("shop"))],
            )),
    );
    let monitoring = stack.add(
        KubePrometheusStack::new(&cluster, &argocd, &ingress)
            .oidc(&sso)
            .issuer(tls.clone())
            .service_monitors(&crds),
    );
    stack.add(MetricsServer::new(&cluster, &argocd).kubelet_insecure_tls(true));
    stack.add(Storefront {
        repo_url: "https://git.example.com/shop/storefront.git".into(),
        path: "deploy".into(),
        revision: "main".into(),
        namespace: "storefront".into(),
        cluster: cluster.cluster(),
        argocd: argocd.argocd(),
        ingress: ingress.ingress(),
        issuer: tls.clone(),
        oidc: sso.oidc("storefront"),
    });
    stack.add(
        ArgoCdFinal::new(&cluster, &argocd, &ingress, sso.oidc("argocd"))
            .issuer(tls)
            .monitoring(&monitoring),
    );

    let plan = stack.build()?.plan().await?;
    println!("{}", plan.to_text());
    Ok(())
}
