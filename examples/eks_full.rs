//! The full platform on Amazon EKS as one typed stack (VPC, EKS, Cognito, Route 53, Loki's S3
//! bucket, Argo CD, Prometheus Operator CRDs, EBS CSI, Traefik, cert-manager, monitoring, Loki,
//! Argo CD final and a team), run by the ready command line `devops_stack::cli`:
//!
//! ```sh
//! cargo run --example eks_full             # offline plan and graph; no AWS account needed
//! cargo run --example eks_full -- --help   # plan [--json], graph, diff, apply, destroy, state, unlock
//! ```
//!
//! Settings come from the environment (defaults plan offline). `DEVOPS_STACK_LOCK_BUCKET` keeps
//! the run lock in S3, so that even two first applies cannot run at once.

use std::process::ExitCode;
use std::time::Duration;

use devops_stack::aws::cognito::{Cognito, User};
use devops_stack::aws::eks::{Eks, EksCluster, EksOidcIdentityProvider, NodeGroup};
use devops_stack::aws::s3::{OnDestroy, S3Bucket};
use devops_stack::aws::{lock::S3Lock, route53::HostedZone, vpc::Vpc};
use devops_stack::cli::{Built, Cli, Part};
use devops_stack::interfaces::{Hostnames, IssuerKind, OidcClient};
use devops_stack::modules::team::{
    AccessRole, App, AppSet, RepoAccess, Repository, Team, TeamNamespace,
};
use devops_stack::modules::{
    AcmeChallenge, ArgoCd, ArgoCdFinal, CertManager, EbsCsiDriver, KubePrometheusStack, Loki,
    PrometheusOperatorCrds, Traefik,
};
use devops_stack::{Error, Handle, RunOptions, Stack};

/// A setting from the environment, with a default that plans offline.
fn var(k: &str, default: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| default.to_owned())
}

/// The whole platform, or (`Part::OutsideCluster`) what `destroy --abandon-in-cluster` removes
/// when the cluster's API is gone. Every edge comes from a handle passed to a module.
fn platform(part: Part) -> Result<Built<EksCluster>, Error> {
    let name = var("DEVOPS_STACK_NAME", "prod");
    let domain = var("DEVOPS_STACK_BASE_DOMAIN", "example.com");
    let region = var("AWS_REGION", "eu-west-1");
    let mut stack = Stack::new(&name);
    let group = match std::env::var("EKS_NODE_ROLE_ARN") {
        Ok(arn) => NodeGroup::new("default", &arn),
        Err(_) => NodeGroup::named("default"),
    };
    let mut eks = Eks::new("eks", &name, &domain)
        .region(&region)
        .version(var("EKS_VERSION", "1.35"))
        .tag("team", "platform")
        .node_group(group.instance_types(["m6i.large"]).scaling(2, 3, 6).disk_size(50));
    if let Ok(arn) = std::env::var("EKS_CLUSTER_ROLE_ARN") {
        eks = eks.role_arn(&arn);
    }
    eks = match std::env::var("EKS_SUBNETS") {
        Ok(subnets) => eks.subnets(subnets.split(',')),
        Err(_) => {
            let vpc = Vpc::create("vpc", &name, "10.0.0.0/16").region(&region).max_nodes(6);
            eks.network(&stack.add(vpc.tag("team", "platform")))
        }
    };
    let eks = stack.add(eks);
    let cognito = stack.add(
        Cognito::new("cognito", Hostnames::new(&name, &domain))
            .region(&region)
            .domain_prefix(format!("{name}-{}", domain.replace('.', "-")))
            .user(User::new("admin", var("ADMIN_EMAIL", "admin@example.com")).admin())
            .client(OidcClient::kubernetes()), // kubectl logs in with it (kubelogin)
    );
    // The cluster trusts Cognito's tokens: their groups are Kubernetes groups `oidc:<group>`.
    let trust = stack.add(EksOidcIdentityProvider::new(&eks, cognito.oidc("kubernetes")));
    // Looked up in a preflight check, before anything is created; never created.
    let zone = stack
        .add(HostedZone::lookup("dns", var("DEVOPS_STACK_HOSTED_ZONE", &domain)).region(&region));
    // Bucket names are global: the stack's name and domain make a clash unlikely.
    let bucket = var("LOKI_BUCKET", &format!("{name}-{}-loki", domain.replace('.', "-")));
    let keep = if var("LOKI_KEEP_DATA", "0") == "1" { OnDestroy::Keep } else { OnDestroy::Delete };
    let logs = stack.add(
        S3Bucket::new("loki-bucket", bucket).region(&region).retention_days(31).on_destroy(keep),
    );
    if part == Part::OutsideCluster {
        return built(stack, eks);
    }
    let argocd = stack.add(ArgoCd::new(&eks));
    let crds = stack.add(PrometheusOperatorCrds::new(&eks, &argocd));
    let ebs = stack.add(EbsCsiDriver::new(&eks, &argocd, eks.workload_identity()));
    // A Network Load Balancer, and `*.apps.<cluster>.<domain>` pointing at it.
    let traefik = stack.add(Traefik::new(&eks, &argocd).dns_zone(&zone).service_monitors(&crds));
    let certs = stack.add(
        CertManager::new(&eks, &argocd)
            .letsencrypt(var("ACME_EMAIL", "platform@example.com"))
            .acme_challenge(AcmeChallenge::dns01(&zone, eks.workload_identity()))
            .service_monitors(&crds),
    );
    let tls = certs.issuer(IssuerKind::LetsEncryptProduction);
    let monitoring = stack.add(
        KubePrometheusStack::new(&eks, &argocd, &traefik)
            .oidc(&cognito)
            .issuer(tls.clone())
            .storage_class(&ebs)
            .service_monitors(&crds),
    );
    stack.add(
        Loki::new(&eks, &argocd)
            .monitoring(&monitoring)
            .storage_class(&ebs)
            .object_store(&logs, eks.workload_identity()),
    );
    // An application team: two namespaces, a deployer group (Cognito's, `oidc:shop-deployers`
    // in the cluster), an app published through Traefik with TLS, an ApplicationSet.
    let repo = "https://github.com/example/shop-deploy.git";
    stack.add(
        Team::new("shop", &eks, &argocd)
            .namespace(TeamNamespace::new("shop"))
            .namespace(TeamNamespace::new("shop-staging"))
            .access(AccessRole::Deployer, cognito.group("shop-deployers"))
            .cluster_oidc(&trust)
            .repository(Repository::new(repo, RepoAccess::Public))
            .app(App::new("web", repo, "shop").path("web").publish("shop", "web", "http"))
            .application_set(AppSet::directories("apps", repo, "shop-staging", ["apps/*"]))
            .ingress(&traefik)
            .issuer(tls.clone()),
    );
    stack.add(
        ArgoCdFinal::new(&eks, &argocd, &traefik, cognito.oidc("argocd"))
            .issuer(tls)
            .monitoring(&monitoring),
    );
    built(stack, eks)
}

/// How it runs: the cluster may take 40 minutes, every other module 20.
fn built(stack: Stack, eks: Handle<EksCluster>) -> Result<Built<EksCluster>, Error> {
    let options = RunOptions::new()
        .concurrency(8)
        .timeout(Duration::from_secs(20 * 60))
        .module_timeout(&eks, Duration::from_secs(40 * 60));
    Ok(Built::new(stack.build()?, options).cluster(eks))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::new(platform);
    match std::env::var("DEVOPS_STACK_LOCK_BUCKET") {
        Ok(bucket) => cli.lock(S3Lock::new(bucket)).main().await,
        Err(_) => cli.main().await,
    }
}
