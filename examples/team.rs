//! An application team onboarded onto a stack of built-in modules, through the team layer.
//!
//! The `shop` team deploys its storefront from Git as an Argo CD Application in its own
//! project and namespace (with a quota, container limits and a baseline NetworkPolicy made by
//! the platform), published through whichever ingress controller the stack has, with TLS from
//! the stack's cluster issuer; its deployers log in to Argo CD through the stack's Keycloak.
//!
//! ```sh
//! cargo run --example team   # prints the offline plan; no cluster is contacted
//! ```

use devops_stack_core::Stack;
use devops_stack_core::clusters::Kind;
use devops_stack_core::interfaces::IssuerKind;
use devops_stack_modules::team::{AccessRole, App, RepoAccess, Repository, TeamNamespace};
use devops_stack_modules::{
    ArgoCd, ArgoCdFinal, CertManager, Keycloak, KubePrometheusStack, MetricsServer,
    PrometheusOperatorCrds, Team, Traefik,
};

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
    let sso = stack.add(
        Keycloak::new(&cluster, &argocd, &ingress)
            .issuer(tls.clone())
            .user("jane", "jane@example.com"),
    );
    let monitoring = stack.add(
        KubePrometheusStack::new(&cluster, &argocd, &ingress)
            .oidc(&sso)
            .issuer(tls.clone())
            .service_monitors(&crds),
    );
    stack.add(MetricsServer::new(&cluster, &argocd).kubelet_insecure_tls(true));

    // The team: its namespace, its deployers, its repository and its app.
    let repo = "https://git.example.com/shop/storefront.git";
    stack.add(
        Team::new("shop", &cluster, &argocd)
            .namespace(TeamNamespace::new("storefront"))
            .access(AccessRole::Deployer, sso.group("storefront-deployers"))
            .repository(Repository::new(repo, RepoAccess::Public))
            .app(
                App::new("storefront", repo, "storefront").path("deploy").revision("main").publish(
                    "shop",
                    "storefront",
                    "http",
                ),
            )
            .ingress(&ingress)
            .issuer(tls.clone()),
    );

    stack.add(
        ArgoCdFinal::new(&cluster, &argocd, &ingress, sso.oidc("argocd"))
            .issuer(tls)
            .monitoring(&monitoring),
    );

    let plan = stack.build()?.plan().await?;
    println!("{}", plan.to_text());
    Ok(())
}
