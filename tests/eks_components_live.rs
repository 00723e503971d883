//! The EKS components wired across the crates, with real parts on both sides: the in-cluster
//! modules on a real API server (the cluster whose kubeconfig path is in
//! `DEVOPS_STACK_TEST_KUBECONFIG`), the AWS side in moto (`DEVOPS_STACK_TEST_AWS_ENDPOINT`):
//! the Route 53 zone looked up, Loki's S3 bucket, IRSA roles made through a moto EKS cluster's
//! OIDC provider, and the wildcard record pointing at the ingress load balancer. The test plays
//! Argo CD (the stand-in marks Applications Synced/Healthy) and the cloud controller (it creates
//! Traefik's `LoadBalancer` Service and gives it a hostname). Skipped, saying so, when either
//! variable is unset.
//!
//! ```text
//! DEVOPS_STACK_TEST_KUBECONFIG=... DEVOPS_STACK_TEST_AWS_ENDPOINT=http://127.0.0.1:5000 \
//!   cargo test -p devops-stack --test eks_components_live -- --nocapture
//! ```

use devops_stack_test::argocd_standin;
use devops_stack_test::aws as common;
use devops_stack_test::live;

use devops_stack::k8s::KubeEngine;
use std::sync::Arc;
use std::time::Duration;

use argocd_standin::{ArgoCdStandIn, applications};
use devops_stack::aws::eks::Eks;
use devops_stack::aws::route53::HostedZone;
use devops_stack::aws::s3::S3Bucket;
use devops_stack::interfaces::{
    ArgoCdTarget, ClusterRef, IN_CLUSTER, WorkloadIdentityProvider, WorkloadIdentityRef,
};
use devops_stack::k8s::{KubeOptions, STACK_LABEL};
use devops_stack::modules::{AcmeChallenge, CertManager, Loki, Traefik};
use devops_stack::{BuiltStack, Input, RunOptions, Stack};
use live::{
    Counting, create_namespace, delete_labelled, delete_namespace, helper_client, kubeconfig,
    unique, with_cleanup,
};

/// The hostname the played cloud gives Traefik's load balancer.
const LB_HOSTNAME: &str = "k8s-traefik-0123456789.elb.us-east-1.amazonaws.com";
/// The live cluster's base domain (`live::Counting`'s), whose zone the test creates in moto.
const DOMAIN: &str = "example.com";

/// The in-cluster half: Traefik publishing `*.apps.test.example.com`, cert-manager solving
/// DNS-01 in the zone, Loki on the bucket, each with its IRSA role from `identity`.
fn platform(
    name: &str,
    cluster: &Counting,
    endpoint: &str,
    identity: &WorkloadIdentityRef,
) -> BuiltStack {
    let cluster: Input<ClusterRef> = Input::value(Arc::new(cluster.clone()) as ClusterRef);
    let argocd = Input::value(ArgoCdTarget {
        namespace: format!("{name}-argocd"),
        project: "default".into(),
        destination_server: IN_CLUSTER.into(),
    });
    let identity = Input::value(identity.clone());
    let mut stack = Stack::new(name);
    let zone = stack.add(HostedZone::lookup("dns", DOMAIN).aws(common::aws(endpoint)));
    let bucket =
        stack.add(S3Bucket::new("logs", format!("{name}-logs")).aws(common::aws(endpoint)));
    stack.add(
        Traefik::new(cluster.clone(), argocd.clone())
            .namespace(format!("{name}-traefik"))
            .dns_zone(&zone)
            .load_balancer_timeout(Duration::from_secs(60)),
    );
    stack.add(
        CertManager::new(cluster.clone(), argocd.clone())
            .namespace(format!("{name}-cert-manager"))
            .letsencrypt("ops@example.com")
            .acme_challenge(AcmeChallenge::dns01(&zone, identity.clone())),
    );
    stack.add(
        Loki::new(cluster, argocd)
            .namespace(format!("{name}-loki"))
            .object_store(&bucket, identity),
    );
    stack.build().expect("a valid stack")
}

/// The record sets of the zone, as `(name, type, values)`.
async fn records(r53: &aws_sdk_route53::Client, zone: &str) -> Vec<(String, String, Vec<String>)> {
    r53.list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap()
        .resource_record_sets()
        .iter()
        .map(|r| {
            (
                r.name().replace("\\052", "*"),
                r.r#type().as_str().to_owned(),
                r.resource_records()
                    .iter()
                    .map(|v| v.value().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The inline policy of an IAM role, as JSON.
async fn role_policy(iam: &aws_sdk_iam::Client, role: &str) -> serde_json::Value {
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    let name = names
        .policy_names()
        .first()
        .expect("an inline policy")
        .clone();
    let doc = iam
        .get_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
        .unwrap();
    let text = doc.policy_document();
    let decoded: String = form_urlencoded::parse(format!("d={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap();
    serde_json::from_str(&decoded).unwrap()
}

#[tokio::test]
#[ignore = "needs a cluster and moto (DEVOPS_STACK_TEST_KUBECONFIG, DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts them"]
async fn the_eks_components_apply_across_the_cluster_and_aws_and_destroy_leaves_only_the_zone() {
    let path = kubeconfig();
    let endpoint = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&endpoint);
    let sdk = common::sdk(&endpoint).await;
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let s3 = common::s3(&sdk);
    // the user's zone, which the stack looks up and never deletes
    let zone_id = r53
        .create_hosted_zone()
        .name(DOMAIN)
        .caller_reference("eks-components-live")
        .send()
        .await
        .unwrap()
        .hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned();

    // An EKS cluster in moto, for its IAM OIDC provider: the roles trust it.
    let name = unique("dse");
    let mut aws_half = Stack::new(&name);
    let eks = aws_half.add(
        Eks::new("eks", "test", DOMAIN)
            .aws(common::aws(&endpoint))
            .subnets(["subnet-1", "subnet-2"]),
    );
    let aws_half = aws_half.build().unwrap();
    let report = aws_half
        .apply(&RunOptions::new())
        .await
        .expect("the EKS cluster in moto");
    let identity = report.output(&eks).unwrap().workload_identity();

    let helper = helper_client(path.clone()).await;
    let cluster = Counting::new(path).await;
    let argocd_ns = format!("{name}-argocd");
    create_namespace(&helper, &argocd_ns).await;
    let standin = ArgoCdStandIn::start(&helper, &[&argocd_ns]).await;
    let options = RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(120),
        state_namespace: format!("{name}-state"),
        ..KubeOptions::default()
    }));
    let body = async {
        let stack = platform(&name, &cluster, &endpoint, &identity);
        let player = tokio::spawn(live::play_load_balancer(
            helper.clone(),
            format!("{name}-traefik"),
            LB_HOSTNAME,
            Duration::from_millis(500),
        ));
        let report = stack.apply(&options).await.expect("applied");
        assert!(report.is_success(), "{}", report.to_text());
        player.await.unwrap();

        // The wildcard record points at the load balancer, with its ownership beside it.
        let wildcard = "*.apps.test.example.com.";
        let sets = records(&r53, &zone_id).await;
        let cname = sets
            .iter()
            .find(|(n, t, _)| n == wildcard && t == "CNAME")
            .unwrap_or_else(|| panic!("no wildcard CNAME in {sets:?}"));
        assert_eq!(cname.2, [LB_HOSTNAME]);
        let owner = sets
            .iter()
            .find(|(n, t, _)| t == "TXT" && n.contains("apps.test.example.com"))
            .unwrap_or_else(|| panic!("no ownership TXT in {sets:?}"));
        assert!(
            owner.2[0].contains(&format!("stack={name}")) && owner.2[0].contains("module=traefik"),
            "{owner:?}"
        );

        // Loki's role may use its bucket and nothing else; cert-manager's may change this zone.
        let loki_role = format!("test-irsa-{name}-loki-loki");
        let policy = role_policy(&iam, &loki_role).await.to_string();
        assert!(
            policy.contains(&format!("arn:aws:s3:::{name}-logs/*")),
            "{policy}"
        );
        assert!(!policy.contains("\"*\""), "{policy}");
        let cm_role = format!("test-irsa-{name}-cert-manager-cert-manager");
        let policy = role_policy(&iam, &cm_role).await.to_string();
        assert!(
            policy.contains(&format!("hostedzone/{zone_id}")),
            "{policy}"
        );

        // The Applications carry what came from AWS: the zone's id, the bucket, the role ARNs.
        let apps = applications(&helper, &argocd_ns);
        let loki = apps.get("loki").await.unwrap();
        let values = &loki.data["spec"]["source"]["helm"]["valuesObject"];
        assert_eq!(values["loki"]["storage"]["type"], "s3");
        assert_eq!(
            values["loki"]["storage"]["bucketNames"]["chunks"],
            format!("{name}-logs")
        );
        let loki_arn = iam.get_role().role_name(&loki_role).send().await.unwrap();
        assert_eq!(
            values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
            loki_arn.role().unwrap().arn()
        );
        // the issuers are YAML documents in the chart's `extraObjects`
        let cm = apps.get("cert-manager").await.unwrap().data.to_string();
        assert!(cm.contains(&format!("hostedZoneID: {zone_id}")), "{cm}");
        s3.head_bucket()
            .bucket(format!("{name}-logs"))
            .send()
            .await
            .expect("the bucket");

        // Destroy: the record, the roles and the bucket go; the user's zone stays.
        let stack = platform(&name, &cluster, &endpoint, &identity);
        let report = stack.destroy(&options).await.expect("destroyed");
        assert!(report.is_success(), "{}", report.to_text());
        let sets = records(&r53, &zone_id).await;
        assert!(
            sets.iter().all(|(_, t, _)| t == "SOA" || t == "NS"),
            "records left: {sets:?}"
        );
        assert!(iam.get_role().role_name(&loki_role).send().await.is_err());
        assert!(iam.get_role().role_name(&cm_role).send().await.is_err());
        assert!(
            s3.head_bucket()
                .bucket(format!("{name}-logs"))
                .send()
                .await
                .is_err()
        );
        assert!(r53.get_hosted_zone().id(&zone_id).send().await.is_ok());
    };
    let cleanup = async {
        delete_labelled(&helper, &format!("{STACK_LABEL}={name}")).await;
        for suffix in ["argocd", "state", "traefik", "cert-manager", "loki"] {
            delete_namespace(&helper, &format!("{name}-{suffix}")).await;
        }
    };
    with_cleanup(body, cleanup).await;
    standin.shutdown().await;
    // moto's cluster has no API behind it: its objects are abandoned
    aws_half
        .destroy(&RunOptions::new().abandon_in_cluster())
        .await
        .expect("the AWS half destroyed");
}
