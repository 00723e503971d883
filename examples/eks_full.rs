//! The full platform on Amazon EKS, as one typed stack:
//!
//! VPC → EKS cluster (IAM roles, OIDC provider, node group) → Cognito OIDC, the Route 53 zone of
//! the base domain and Loki's S3 bucket → Argo CD (bootstrap) → Prometheus Operator CRDs → the
//! EBS CSI driver with an encrypted default `gp3` class → Traefik behind a Network Load Balancer
//! with the wildcard record `*.apps.<cluster>.<base domain>` → cert-manager solving DNS-01 in the
//! zone → kube-prometheus-stack and Loki (on S3) with volumes of the `gp3` class → Argo CD (final,
//! managing itself with OIDC and monitoring), and one application team (`shop`) onboarded with
//! the team layer.
//!
//! ```sh
//! cargo run --example eks_full                  # offline plan and dependency graph; no AWS account needed
//! cargo run --example eks_full -- plan --json   # the offline plan as JSON
//! cargo run --example eks_full -- graph         # the dependency graph as Graphviz DOT only
//! cargo run --example eks_full -- diff          # what an apply would change on the live cluster
//! cargo run --example eks_full -- apply         # create or update everything, with progress per module
//! cargo run --example eks_full -- destroy       # remove everything, in reverse dependency order
//! cargo run --example eks_full -- destroy --abandon-in-cluster  # the same when the cluster's API is gone
//! ```
//!
//! With only a region and a base domain, `apply` starts from an empty account: it creates the
//! network (VPC, subnets in three zones, NAT gateways), the IAM roles and OIDC provider, the
//! cluster and its node group. `EKS_SUBNETS`, `EKS_CLUSTER_ROLE_ARN` and `EKS_NODE_ROLE_ARN` use
//! existing ones instead.
//!
//! `apply` starts with every module's preflight check, before anything is created: the hosted
//! zone of `DEVOPS_STACK_HOSTED_ZONE` (default: the base domain) must exist in Route 53.
//!
//! `destroy` first checks that the cluster's API answers, because objects in the cluster (load
//! balancers, volumes) hold cloud resources. When it does not (the cluster is broken, or it is
//! an emulator's cluster with no API behind it), `destroy` stops and says so, unless
//! `--abandon-in-cluster` says the in-cluster objects may be abandoned: then only the AWS half
//! is destroyed. Before the node groups and the cluster go, the destroy deletes the
//! `LoadBalancer` Services, Ingresses and PVCs of the stack's namespaces and waits until AWS no
//! longer has their load balancers and volumes. Loki's bucket is emptied and deleted unless
//! `LOKI_KEEP_DATA=1`.
//!
//! `apply` and `destroy` use the AWS SDK's standard credential chain (environment, profiles,
//! SSO); with `AWS_ENDPOINT_URL` set, every AWS call goes to that endpoint (an emulator such as
//! moto). The settings below come from environment variables, with defaults that plan offline.

use std::process::ExitCode;
use std::time::Duration;

use devops_stack::aws::cognito::{Cognito, User};
use devops_stack::aws::eks::{Eks, EksCluster, EksOidcIdentityProvider, NodeGroup};
use devops_stack::aws::route53::HostedZone;
use devops_stack::aws::s3::{OnDestroy, S3Bucket};
use devops_stack::aws::vpc::Vpc;
use devops_stack::interfaces::{Cluster, ClusterProvider, Hostnames, IssuerKind, OidcClient};
use devops_stack::k8s::{KubeEngine, KubeOptions, StackLock, diff_stack, preflight_stack};
use devops_stack::modules::team::{
    AccessRole, App, AppSet, RepoAccess, Repository, Team, TeamNamespace,
};
use devops_stack::modules::{
    AcmeChallenge, ArgoCd, ArgoCdFinal, CertManager, EbsCsiDriver, KubePrometheusStack, Loki,
    PrometheusOperatorCrds, Traefik,
};
use devops_stack::progress::{Progress, Style};
use devops_stack::{BuiltStack, Error, Handle, RunOptions, Stack};

/// The stack's settings, from the environment.
struct Settings {
    name: String,
    base_domain: String,
    region: String,
    version: String,
    subnets: Option<Vec<String>>,
    cluster_role: Option<String>,
    node_role: Option<String>,
    acme_email: String,
    admin_email: String,
    hosted_zone: String,
    loki_bucket: String,
    keep_logs: bool,
}

impl Settings {
    fn from_env() -> Self {
        let var = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_owned());
        Settings {
            name: var("DEVOPS_STACK_NAME", "prod"),
            base_domain: var("DEVOPS_STACK_BASE_DOMAIN", "example.com"),
            region: var("AWS_REGION", "eu-west-1"),
            version: var("EKS_VERSION", "1.35"),
            subnets: std::env::var("EKS_SUBNETS")
                .ok()
                .map(|s| s.split(',').map(str::to_owned).collect()),
            cluster_role: std::env::var("EKS_CLUSTER_ROLE_ARN").ok(),
            node_role: std::env::var("EKS_NODE_ROLE_ARN").ok(),
            acme_email: var("ACME_EMAIL", "platform@example.com"),
            admin_email: var("ADMIN_EMAIL", "admin@example.com"),
            hosted_zone: std::env::var("DEVOPS_STACK_HOSTED_ZONE")
                .unwrap_or_else(|_| var("DEVOPS_STACK_BASE_DOMAIN", "example.com")),
            // bucket names are global: the stack's name and base domain make it unlikely to clash
            loki_bucket: std::env::var("LOKI_BUCKET").unwrap_or_else(|_| {
                format!(
                    "{}-{}-loki",
                    var("DEVOPS_STACK_NAME", "prod"),
                    var("DEVOPS_STACK_BASE_DOMAIN", "example.com").replace('.', "-")
                )
            }),
            keep_logs: std::env::var("LOKI_KEEP_DATA").is_ok_and(|v| v == "1"),
        }
    }
}

/// The whole platform, or only its AWS half (`in_cluster` false). Every edge comes from a
/// handle passed to a constructor or setter.
fn platform(s: &Settings, in_cluster: bool) -> Result<(BuiltStack, Handle<EksCluster>), Error> {
    let hosts = Hostnames::new(&s.name, &s.base_domain);
    let mut stack = Stack::new(&s.name);

    let group = match &s.node_role {
        Some(arn) => NodeGroup::new("default", arn),
        None => NodeGroup::named("default"),
    }
    .instance_types(["m6i.large"])
    .scaling(2, 3, 6)
    .disk_size(50);
    let mut eks = Eks::new("eks", &s.name, &s.base_domain)
        .region(&s.region)
        .version(&s.version)
        .tag("team", "platform")
        .node_group(group);
    if let Some(arn) = &s.cluster_role {
        eks = eks.role_arn(arn);
    }
    eks = match &s.subnets {
        Some(subnets) => eks.subnets(subnets),
        None => {
            let vpc = stack.add(
                Vpc::create("vpc", &s.name, "10.0.0.0/16")
                    .region(&s.region)
                    .tag("team", "platform")
                    .max_nodes(6),
            );
            eks.network(&vpc)
        }
    };
    let eks = stack.add(eks);
    let cognito = stack.add(
        Cognito::new("cognito", hosts.clone())
            .region(&s.region)
            .domain_prefix(format!("{}-{}", s.name, s.base_domain.replace('.', "-")))
            .user(User::new("admin", &s.admin_email).admin())
            // the client kubectl logs in with (kubelogin), which the cluster trusts below
            .client(OidcClient::kubernetes()),
    );
    // The cluster trusts Cognito's tokens: their groups are Kubernetes groups `oidc:<group>`,
    // which the team's RoleBindings name.
    let trust = stack.add(EksOidcIdentityProvider::new(
        &eks,
        cognito.oidc("kubernetes"),
    ));
    // The zone is looked up (in a preflight check, before anything is created), never created.
    let zone = stack.add(HostedZone::lookup("dns", &s.hosted_zone).region(&s.region));
    // A billable resource of its own: part of the AWS half, so that an abandoning destroy
    // removes it too.
    let logs_bucket = stack.add(
        S3Bucket::new("loki-bucket", &s.loki_bucket)
            .region(&s.region)
            .retention_days(31)
            .on_destroy(if s.keep_logs {
                OnDestroy::Keep
            } else {
                OnDestroy::Delete
            }),
    );
    if !in_cluster {
        return Ok((stack.build()?, eks));
    }
    let argocd = stack.add(ArgoCd::new(&eks));
    let crds = stack.add(PrometheusOperatorCrds::new(&eks, &argocd));
    let ebs = stack.add(EbsCsiDriver::new(&eks, &argocd, eks.workload_identity()));
    // A Network Load Balancer (EKS gives the annotations), and `*.apps.<cluster>.<domain>`
    // pointing at it once AWS has given it a hostname.
    let traefik = stack.add(
        Traefik::new(&eks, &argocd)
            .dns_zone(&zone)
            .service_monitors(&crds),
    );
    let certs = stack.add(
        CertManager::new(&eks, &argocd)
            .letsencrypt(&s.acme_email)
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
            .object_store(&logs_bucket, eks.workload_identity()),
    );
    // An application team: two namespaces, a deployer group, an app published through Traefik
    // with TLS, and an ApplicationSet over its repository.
    let shop_repo = "https://github.com/example/shop-deploy.git";
    stack.add(
        Team::new("shop", &eks, &argocd)
            .namespace(TeamNamespace::new("shop"))
            .namespace(TeamNamespace::new("shop-staging"))
            // Cognito creates the group; the cluster knows it as `oidc:shop-deployers`
            .access(AccessRole::Deployer, cognito.group("shop-deployers"))
            .cluster_oidc(&trust)
            .repository(Repository::new(shop_repo, RepoAccess::Public))
            .app(
                App::new("web", shop_repo, "shop")
                    .path("web")
                    .publish("shop", "web", "http"),
            )
            .application_set(AppSet::directories(
                "apps",
                shop_repo,
                "shop-staging",
                ["apps/*"],
            ))
            .ingress(&traefik)
            .issuer(tls.clone()),
    );
    stack.add(
        ArgoCdFinal::new(&eks, &argocd, &traefik, cognito.oidc("argocd"))
            .issuer(tls)
            .monitoring(&monitoring),
    );
    Ok((stack.build()?, eks))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("plan");
    let settings = Settings::from_env();
    let (stack, eks) = match platform(&settings, true) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        "plan" => plan(&stack, args.iter().any(|a| a == "--json")).await,
        "graph" => {
            print!("{}", stack.to_dot());
            Ok(())
        }
        "diff" => diff(&stack, &eks).await,
        "apply" => run(&stack, command, &eks, false).await,
        "destroy" => {
            let abandon = args.iter().any(|a| a == "--abandon-in-cluster");
            destroy(&settings, &stack, &eks, abandon).await
        }
        other => {
            eprintln!(
                "unknown command `{other}`; use plan [--json], graph, diff, apply or destroy"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the offline plan (no cloud call, no cluster) and the dependency graph.
async fn plan(stack: &BuiltStack, json: bool) -> Result<(), Error> {
    let plan = stack.plan().await?;
    if json {
        println!("{}", plan.to_json());
        return Ok(());
    }
    println!("{}", plan.to_text());
    println!("Execution order: {}\n", stack.order().join(" → "));
    println!("Dependency graph (Graphviz DOT; solid: data, dashed: phase ordering):\n");
    print!("{}", stack.to_dot());
    Ok(())
}

/// Compares what an apply would make with what is live, field by field, changing nothing.
async fn diff(stack: &BuiltStack, eks: &Handle<EksCluster>) -> Result<(), Error> {
    let live = stack.read(&RunOptions::new()).await?;
    let clusters = match live.output(eks) {
        Some(cluster) => vec![cluster.cluster()],
        None => {
            println!(
                "The EKS cluster does not exist yet: an apply creates everything in the plan.\n"
            );
            Vec::new()
        }
    };
    let diff = diff_stack(stack, &live, &clusters, &KubeOptions::default()).await?;
    print!("{}", diff.to_text());
    Ok(())
}

/// Destroys the whole stack when the cluster's API answers (or the cluster is gone). When it
/// does not answer, stops and says so, unless `abandon` says the objects in the cluster may be
/// abandoned: then destroys the AWS half alone.
async fn destroy(
    settings: &Settings,
    stack: &BuiltStack,
    eks: &Handle<EksCluster>,
    abandon: bool,
) -> Result<(), Error> {
    let live = stack.read(&RunOptions::new()).await?.output(eks);
    let unreachable = match live {
        Some(cluster) if !cluster.endpoint.is_empty() => match cluster.kube_client() {
            Ok(client) => {
                match tokio::time::timeout(Duration::from_secs(20), client.apiserver_version())
                    .await
                {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("no answer within 20 s".into()),
                }
            }
            Err(e) => Some(e.to_string()),
        },
        _ => None,
    };
    match unreachable {
        None => run(stack, "destroy", eks, abandon).await,
        Some(reason) if abandon => {
            println!(
                "cannot reach the cluster's API ({reason}); abandoning the objects in it (--abandon-in-cluster) and destroying the AWS half\n"
            );
            let (aws_half, eks) = platform(settings, false)?;
            run(&aws_half, "destroy", &eks, true).await
        }
        Some(reason) => Err(Error::Kubernetes(format!(
            "cannot reach the cluster's API ({reason}); nothing was destroyed. Make it reachable and run again, or, if the cluster is going away and the objects in it may be abandoned, run `destroy --abandon-in-cluster` (AbandonInCluster in code)"
        ))),
    }
}

/// Applies or destroys for real, printing each module's progress as it happens.
///
/// When the cluster exists already, the run holds the stack's lock (a Lease in the cluster) so
/// that two runs cannot change the stack at once; a first apply, which creates the cluster, has
/// nowhere to keep a lock yet.
async fn run(
    stack: &BuiltStack,
    command: &str,
    eks: &Handle<EksCluster>,
    abandon: bool,
) -> Result<(), Error> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // One live line per module on a terminal; plain event lines in CI and pipes.
    let printer = Progress::new(Style::detect()).spawn(rx);
    let cancel = devops_stack::CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping the running steps; run the command again to resume");
            on_ctrl_c.cancel();
        }
    });
    let kube = KubeOptions::default();
    let options = |lock: Option<StackLock>| {
        let o = RunOptions::new()
            .concurrency(8)
            .timeout(Duration::from_secs(20 * 60))
            .module_timeout(eks, Duration::from_secs(40 * 60))
            .cancel_token(cancel.clone())
            .events(tx.clone());
        let o = if abandon { o.abandon_in_cluster() } else { o };
        let engine = KubeEngine::new(kube.clone());
        o.engine(match lock {
            Some(lock) => engine.lock(lock),
            None => engine,
        })
    };

    let live = stack.read(&options(None)).await?;
    let existing = live.output(eks);
    if command == "apply"
        && let Some(cluster) = &existing
    {
        // Every module's objects checked for ownership before the first module writes.
        preflight_stack(stack, &live, &[cluster.cluster()], &kube).await?;
    }
    let lock = match existing {
        // An abandoned cluster's API does not answer: there is nowhere to hold a lock.
        Some(_) if abandon => None,
        Some(cluster) => {
            let client = cluster
                .client()
                .await
                .map_err(|e| Error::Kubernetes(e.to_string()))?;
            let lock = StackLock::acquire(client, stack.name(), &kube).await?;
            println!(
                "holding the lock of stack `{}` as `{}`",
                stack.name(),
                lock.holder()
            );
            Some(lock)
        }
        None => None,
    };
    let result = if command == "apply" {
        stack.apply(&options(lock.clone())).await
    } else {
        stack.destroy(&options(lock.clone())).await
    };
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        // After a destroy the cluster, and the lock with it, may be gone.
        eprintln!("note: the stack lock was not released ({e}); it expires by itself");
    }
    drop(tx);
    let _ = printer.await;
    match result {
        Ok(report) => {
            println!("\n{}", report.to_text());
            Ok(())
        }
        Err(Error::RunFailed {
            report,
            step,
            failed,
        }) => {
            println!("\n{}", report.to_text());
            Err(Error::RunFailed {
                report,
                step,
                failed,
            })
        }
        Err(e) => Err(e),
    }
}
