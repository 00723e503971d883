//! Offline plans: every setting rendered, unknowns marked, secrets redacted, no AWS call.

use devops_stack_aws::cognito::{Cognito, User};
use devops_stack_aws::eks::{Eks, NodeGroup, Taint, TaintEffect};
use devops_stack_core::interfaces::Hostnames;
use devops_stack_core::{Resource, Stack};
use serde_json::json;

#[tokio::test]
async fn plan_renders_cluster_node_groups_and_pool() {
    let mut stack = Stack::new("prod");
    stack.add(
        Eks::new("eks", "prod", "example.com")
            // No credentials and an unroutable endpoint: planning must not call AWS.
            .endpoint_url("http://unreachable.invalid")
            .region("eu-west-1")
            .version("1.32")
            .role_arn("arn:aws:iam::123456789012:role/eks")
            .subnets(["subnet-a", "subnet-b"])
            .security_groups(["sg-1"])
            .public_access_cidrs(["203.0.113.0/24"])
            .tag("team", "platform")
            .node_group(
                NodeGroup::new("default", "arn:aws:iam::123456789012:role/nodes")
                    .instance_types(["m6i.large"])
                    .scaling(2, 3, 4)
                    .disk_size(80)
                    .label("role", "apps")
                    .taint(Taint::new("dedicated", "apps", TaintEffect::NoSchedule)),
            ),
    );
    stack.add(
        Cognito::new("cognito", Hostnames::new("prod", "example.com"))
            .endpoint_url("http://unreachable.invalid")
            .region("eu-west-1")
            .user(User::new("alice", "alice@example.com").admin()),
    );
    let plan = stack.build().unwrap().plan().await.unwrap();

    let eks = plan.module("eks").unwrap();
    let Resource::Cloud {
        kind,
        name,
        properties,
        ..
    } = &eks.resources[0]
    else {
        panic!()
    };
    assert_eq!((kind.as_str(), name.as_str()), ("eks:Cluster", "prod"));
    assert_eq!(properties["version"], "1.32");
    assert_eq!(properties["subnets"], json!(["subnet-a", "subnet-b"]));
    assert_eq!(properties["security_groups"], json!(["sg-1"]));
    assert_eq!(properties["public_access_cidrs"], json!(["203.0.113.0/24"]));
    assert_eq!(properties["tags"], json!({"team": "platform"}));
    assert_eq!(eks.resources[1].title(), "aws iam:OIDCProvider prod");
    let Resource::Cloud {
        kind,
        name,
        properties,
        ..
    } = &eks.resources[2]
    else {
        panic!()
    };
    assert_eq!(
        (kind.as_str(), name.as_str()),
        ("eks:Nodegroup", "prod/default")
    );
    assert_eq!(
        properties["scaling"],
        json!({"min": 2, "desired": 3, "max": 4})
    );
    assert_eq!(properties["disk_size"], 80);
    assert_eq!(properties["subnets"], json!(["subnet-a", "subnet-b"]));
    assert_eq!(
        properties["taints"],
        json!([{"key": "dedicated", "value": "apps", "effect": "NO_SCHEDULE"}])
    );
    assert_eq!(eks.output["endpoint"], "(known after apply: eks.endpoint)");
    assert_eq!(eks.output["arn"], "(known after apply: eks.arn)");
    assert_eq!(
        eks.output["certificate_authority_data"],
        "(known after apply: eks.certificate_authority_data)"
    );
    assert_eq!(
        eks.output["oidc_issuer_url"],
        "(known after apply: eks.oidc_issuer_url)"
    );
    assert_eq!(eks.output["region"], "eu-west-1");

    let cognito = plan.module("cognito").unwrap();
    let kinds: Vec<String> = cognito.resources.iter().map(|r| r.title()).collect();
    assert_eq!(
        kinds,
        [
            "aws cognito:UserPool prod",
            "aws cognito:UserPoolDomain prod-example-com",
            "aws cognito:UserPoolClient argocd",
            "aws cognito:UserPoolClient grafana",
            "aws cognito:UserPoolClient prometheus",
            "aws cognito:UserPoolClient alertmanager",
            "aws cognito:Group devops-stack-admins",
            "aws cognito:User alice",
        ]
    );
    let argocd = &cognito.output["clients"]["argocd"];
    assert_eq!(
        argocd["issuer_url"],
        "https://cognito-idp.eu-west-1.amazonaws.com/(known after apply: cognito.user_pool_id)"
    );
    assert_eq!(
        argocd["authorization_url"],
        "https://prod-example-com.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
    );
    assert_eq!(argocd["client_secret"], "<redacted>");
    assert_eq!(argocd["groups_claim"], "cognito:groups");
}

/// From an empty account: the plan lists the network and the roles the `Eks` module creates,
/// and the cluster's subnets come from the `Vpc` handle.
#[tokio::test]
async fn plan_of_the_aws_half_from_zero_shows_network_and_roles() {
    use devops_stack_aws::vpc::{NatGateways, Vpc};
    let mut stack = Stack::new("prod");
    let vpc = stack.add(
        Vpc::create("vpc", "prod", "10.0.0.0/16")
            .region("eu-west-1")
            .nat_gateways(NatGateways::Single),
    );
    stack.add(
        Eks::new("eks", "prod", "example.com")
            .region("eu-west-1")
            .network(&vpc)
            .node_group(NodeGroup::named("default")),
    );
    let built = stack.build().expect("valid");
    assert_eq!(built.predecessors("eks"), vec!["vpc"]);
    let plan = built.plan().await.expect("planned offline");
    let titles: Vec<String> = plan
        .module("vpc")
        .unwrap()
        .resources
        .iter()
        .chain(&plan.module("eks").unwrap().resources)
        .map(|r| r.title())
        .collect();
    for wanted in [
        "aws ec2:Vpc prod",
        "aws ec2:Subnet prod/private-3",
        "aws ec2:Subnet prod/public-1",
        "aws ec2:InternetGateway prod",
        "aws ec2:Address prod/nat-1",
        "aws ec2:NatGateway prod/nat-1",
        "aws ec2:RouteTable prod/public",
        "aws ec2:RouteTable prod/private-3",
        "aws iam:Role prod-eks-cluster",
        "aws iam:Role prod-eks-node",
        "aws eks:Cluster prod",
        "aws iam:OIDCProvider prod",
        "aws eks:Nodegroup prod/default",
    ] {
        assert!(
            titles.iter().any(|t| t == wanted),
            "{wanted} missing: {titles:?}"
        );
    }
    assert!(!titles.iter().any(|t| t == "aws ec2:NatGateway prod/nat-2"));
    let cluster = &plan.module("eks").unwrap().resources[2];
    let Resource::Cloud { properties, .. } = cluster else {
        panic!()
    };
    assert_eq!(
        properties["subnets"],
        json!(["(known after apply: vpc.private_subnets)"])
    );
    assert_eq!(properties["role_arn"], "(created: prod-eks-cluster)");
}

/// The bucket and the zone lookup, offline: the bucket's settings and what destroy does with
/// it, the zone as looked up (not created) with its id unknown.
#[tokio::test]
async fn plan_shows_the_bucket_with_on_destroy_and_the_zone_lookup() {
    use devops_stack_aws::route53::HostedZone;
    use devops_stack_aws::s3::{OnDestroy, S3Bucket};
    let mut stack = Stack::new("prod");
    let bucket = stack.add(
        S3Bucket::new("loki-bucket", "prod-example-loki")
            .endpoint_url("http://unreachable.invalid")
            .region("eu-west-1")
            .retention_days(14)
            .on_destroy(OnDestroy::Keep),
    );
    stack.add(
        HostedZone::lookup("zone", "example.com")
            .endpoint_url("http://unreachable.invalid")
            .region("eu-west-1"),
    );
    let _store = bucket.object_store();
    let plan = stack
        .build()
        .unwrap()
        .plan()
        .await
        .expect("planned offline");
    let text = plan.to_text();
    assert!(text.contains("aws s3:Bucket prod-example-loki"), "{text}");
    assert!(
        text.contains("aws route53:HostedZone example.com"),
        "{text}"
    );

    let Resource::Cloud { properties, .. } = &plan.module("loki-bucket").unwrap().resources[0]
    else {
        panic!()
    };
    assert_eq!(properties["on_destroy"], "keep");
    assert_eq!(properties["region"], "eu-west-1");
    assert_eq!(properties["public_access_blocked"], true);
    assert_eq!(properties["encryption"], "AES256 (SSE-S3)");
    assert_eq!(properties["lifecycle"]["expire_current_after_days"], 14);
    assert_eq!(properties["lifecycle"]["expire_noncurrent_after_days"], 1);
    assert_eq!(
        properties["lifecycle"]["abort_incomplete_multipart_after_days"],
        1
    );
    let output = &plan.module("loki-bucket").unwrap().output;
    assert_eq!(output["endpoint"], "http://unreachable.invalid");

    let zone = plan.module("zone").unwrap();
    let Resource::Cloud { properties, .. } = &zone.resources[0] else {
        panic!()
    };
    assert_eq!(properties["lookup"], true);
    assert_eq!(properties["created"], false);
    assert_eq!(
        zone.output["hosted_zone_id"],
        "(known after apply: zone.hosted_zone_id)"
    );
    // The default deletes the bucket on destroy.
    let mut stack = Stack::new("prod");
    stack.add(S3Bucket::new("loki-bucket", "prod-example-loki").region("eu-west-1"));
    let plan = stack.build().unwrap().plan().await.unwrap();
    let Resource::Cloud { properties, .. } = &plan.module("loki-bucket").unwrap().resources[0]
    else {
        panic!()
    };
    assert_eq!(properties["on_destroy"], "delete");
}
