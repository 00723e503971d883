//! The `Eks` module against moto: create, re-run, update, replacement, adopt, destroy.

mod common;

use aws_sdk_eks::Client;
use aws_sdk_eks::types::VpcConfigRequest;
use devops_stack_aws::eks::{AccessEntry, Addon, Eks, EksCluster, NodeGroup, Taint, TaintEffect};
use devops_stack_core::interfaces::Cluster;
use devops_stack_core::{RunOptions, Stack};

const ROLE: &str = "arn:aws:iam::123456789012:role/eks-cluster";
const NODE_ROLE: &str = "arn:aws:iam::123456789012:role/eks-nodes";

fn default_group() -> NodeGroup {
    NodeGroup::new("default", NODE_ROLE)
        .instance_types(["m6i.large"])
        .scaling(1, 2, 3)
        .disk_size(40)
        .label("role", "general")
        .taint(Taint::new("dedicated", "ops", TaintEffect::NoSchedule))
}

fn cluster(endpoint: &str) -> Eks {
    Eks::new("eks", "prod", "example.com")
        .aws(common::aws(endpoint))
        .polling(common::polling())
        .version("1.33")
        .role_arn(ROLE)
        .subnets(["subnet-aaa", "subnet-bbb"])
        .tag("team", "platform")
}

async fn apply(module: Eks) -> Result<EksCluster, devops_stack_core::Error> {
    let mut stack = Stack::new("test");
    let handle = stack.add(module);
    let report = stack.build()?.apply(&RunOptions::new()).await?;
    Ok((*report.output(&handle).expect("an output")).clone())
}

async fn destroy(module: Eks) -> Result<(), devops_stack_core::Error> {
    let mut stack = Stack::new("test");
    stack.add(module);
    // moto's cluster has no Kubernetes API to empty first.
    stack
        .build()?
        .destroy(&RunOptions::new().abandon_in_cluster())
        .await
        .map(drop)
}

/// (clusters, node groups of `prod`).
async fn count(client: &Client) -> (usize, usize) {
    let clusters = client
        .list_clusters()
        .send()
        .await
        .unwrap()
        .clusters
        .unwrap_or_default();
    let groups = if clusters.iter().any(|c| c == "prod") {
        client
            .list_nodegroups()
            .cluster_name("prod")
            .send()
            .await
            .unwrap()
            .nodegroups
            .unwrap_or_default()
            .len()
    } else {
        0
    };
    (clusters.len(), groups)
}

async fn node_group(client: &Client, name: &str) -> aws_sdk_eks::types::Nodegroup {
    client
        .describe_nodegroup()
        .cluster_name("prod")
        .nodegroup_name(name)
        .send()
        .await
        .unwrap()
        .nodegroup
        .unwrap()
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn create_rerun_update_and_destroy() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let client = Client::new(&common::sdk(&ep).await);

    let out = apply(cluster(&ep).node_group(default_group()))
        .await
        .expect("created");
    assert_eq!(out.name, "prod");
    assert_eq!(out.version, "1.33");
    assert_eq!(out.region, "us-east-1");
    assert!(out.endpoint.starts_with("https://"), "{}", out.endpoint);
    assert!(out.arn.starts_with("arn:aws:eks:us-east-1:"), "{}", out.arn);
    assert!(!out.certificate_authority_data.is_empty());
    assert!(
        out.oidc_issuer_url()
            .is_some_and(|u| u.starts_with("https://oidc.eks.us-east-1.amazonaws.com/id/"))
    );
    assert_eq!(
        out.hostnames().host("grafana"),
        "grafana.apps.prod.example.com"
    );
    assert!(
        out.token()
            .await
            .unwrap()
            .expose()
            .starts_with("k8s-aws-v1.")
    );
    // moto's certificate authority data is random text, not a PEM bundle: the client says so.
    let err = Cluster::client(&out)
        .await
        .err()
        .expect("moto's CA data is refused")
        .to_string();
    assert!(
        err.contains("cannot build a Kubernetes client for cluster `prod`")
            && err.contains("CA data"),
        "{err}"
    );

    let ng = node_group(&client, "default").await;
    assert_eq!(ng.instance_types(), ["m6i.large"]);
    assert_eq!(ng.disk_size(), Some(40));
    assert_eq!(ng.subnets(), ["subnet-aaa", "subnet-bbb"]);
    assert_eq!(ng.labels().unwrap()["role"], "general");
    assert_eq!(ng.taints()[0].key(), Some("dedicated"));
    let c = client
        .describe_cluster()
        .name("prod")
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(c.tags().unwrap()["team"], "platform");
    assert_eq!(c.version(), Some("1.33"));
    assert_eq!(
        c.resources_vpc_config().unwrap().public_access_cidrs(),
        ["0.0.0.0/0"]
    );
    assert_eq!(count(&client).await, (1, 1));

    // A second run creates nothing.
    let again = apply(cluster(&ep).node_group(default_group()))
        .await
        .expect("re-run");
    assert_eq!(again.arn, out.arn);
    assert_eq!(count(&client).await, (1, 1));

    // Scaling, labels, taints and CIDRs are updated in place; a new node group is added.
    let updated = cluster(&ep)
        .public_access_cidrs(["203.0.113.0/24"])
        .node_group(
            NodeGroup::new("default", NODE_ROLE)
                .instance_types(["m6i.large"])
                .scaling(2, 4, 6)
                .disk_size(40)
                .label("tier", "apps"),
        )
        .node_group(
            NodeGroup::new("spot", NODE_ROLE)
                .instance_types(["t3.medium"])
                .scaling(0, 1, 2),
        );
    apply(updated).await.expect("updated");
    let ng = node_group(&client, "default").await;
    let s = ng.scaling_config().unwrap();
    assert_eq!(
        (s.min_size(), s.desired_size(), s.max_size()),
        (Some(2), Some(4), Some(6))
    );
    let c = client
        .describe_cluster()
        .name("prod")
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(
        c.resources_vpc_config().unwrap().public_access_cidrs(),
        ["203.0.113.0/24"]
    );
    assert_eq!(count(&client).await, (1, 2));
    assert_eq!(
        node_group(&client, "spot").await.instance_types(),
        ["t3.medium"]
    );

    // Destroy removes every node group, then the cluster; a second destroy is a no-op.
    destroy(cluster(&ep)).await.expect("destroyed");
    assert_eq!(count(&client).await, (0, 0));
    destroy(cluster(&ep)).await.expect("destroyed again");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn immutable_changes_are_reported_as_replacements() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);

    apply(cluster(&ep).node_group(default_group()))
        .await
        .expect("created");

    let err = apply(cluster(&ep).subnets(["subnet-ccc", "subnet-ddd"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("EKS cluster `prod` would need a replacement"),
        "{err}"
    );
    assert!(err.contains("subnets"), "{err}");

    let err = apply(cluster(&ep).version("1.32"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("EKS cannot downgrade"), "{err}");

    let bigger = NodeGroup::new("default", NODE_ROLE)
        .instance_types(["m6i.xlarge"])
        .scaling(1, 2, 3)
        .disk_size(80);
    let err = apply(cluster(&ep).node_group(bigger))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node group `default` of EKS cluster `prod` would need a replacement"),
        "{err}"
    );
    assert!(
        err.contains("instance_types") && err.contains("disk_size"),
        "{err}"
    );
}

/// moto has no UpdateClusterVersion, CreateAccessEntry or CreateAddon: the module reaches the
/// call and reports clearly that the endpoint does not implement it.
#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn operations_moto_lacks_are_reported_clearly() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);

    apply(cluster(&ep)).await.expect("created");
    let err = apply(cluster(&ep).version("1.34"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("upgrading the cluster to 1.34"), "{err}");
    assert!(err.contains("does not implement"), "{err}");

    let err = apply(
        cluster(&ep).access_entry(AccessEntry::admin("arn:aws:iam::123456789012:role/admin")),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("listing access entries"), "{err}");

    let err = apply(cluster(&ep).addon(Addon::new("vpc-cni")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("listing add-ons"), "{err}");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn adopted_cluster_survives_destroy() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let client = Client::new(&common::sdk(&ep).await);

    let adopt = || {
        Eks::adopt("eks", "prod", "example.com")
            .aws(common::aws(&ep))
            .polling(common::polling())
            .node_group(NodeGroup::new("extra", NODE_ROLE).subnets(["subnet-aaa"]))
    };
    let err = apply(adopt()).await.unwrap_err().to_string();
    assert!(err.contains("EKS cluster `prod` does not exist"), "{err}");

    client
        .create_cluster()
        .name("prod")
        .version("1.34")
        .role_arn(ROLE)
        .resources_vpc_config(
            VpcConfigRequest::builder()
                .subnet_ids("subnet-aaa")
                .subnet_ids("subnet-bbb")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let out = apply(adopt()).await.expect("adopted");
    assert_eq!(out.version, "1.34");
    assert_eq!(count(&client).await, (1, 1));
    assert_eq!(node_group(&client, "extra").await.subnets(), ["subnet-aaa"]);

    destroy(adopt()).await.expect("destroyed");
    assert_eq!(
        count(&client).await,
        (1, 0),
        "the adopted cluster is kept, its node group removed"
    );
}
