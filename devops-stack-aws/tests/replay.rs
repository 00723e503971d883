//! The EKS calls moto does not serve (UpdateClusterVersion, access entries and their policies,
//! add-ons), checked for their request shapes with a replaying HTTP client plugged into the SDK
//! (`common::replay`): each request the module sends is recorded and answered with the next
//! canned response.

mod common;

use common::replay::{Canned, ReplayClient};
use devops_stack_aws::eks::{AccessEntry, Addon, CLUSTER_ADMIN_POLICY, Eks};
use devops_stack_aws::tags::{MODULE_TAG, STACK_TAG};
use devops_stack_core::interfaces::AbandonInCluster;
use devops_stack_core::{RunOptions, Stack};
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::123456789012:role/eks-cluster";
const ADMIN: &str = "arn:aws:iam::123456789012:role/admin";

fn cluster(version: &str) -> Value {
    json!({"cluster": {
        "name": "prod",
        "arn": "arn:aws:eks:us-east-1:123456789012:cluster/prod",
        "status": "ACTIVE",
        "version": version,
        "roleArn": ROLE,
        // Refused at once: the destroy's reachability check fails fast.
        "endpoint": "https://127.0.0.1:1",
        "certificateAuthority": {"data": ""},
        "resourcesVpcConfig": {"subnetIds": ["subnet-a", "subnet-b"], "securityGroupIds": [], "publicAccessCidrs": ["0.0.0.0/0"]},
        "tags": {STACK_TAG: "replay", MODULE_TAG: "eks"}
    }})
}

/// A request placeholder (the replay client answers in order and records what was sent) and
/// a response.
fn event(status: u16, body: Value) -> Canned {
    Canned::new(status, body.to_string())
}

fn event_with(status: u16, headers: &[(&str, &str)], body: String) -> Canned {
    headers
        .iter()
        .fold(Canned::new(status, body), |c, (k, v)| c.header(k, v))
}

/// `(method, path, JSON body)` of each request sent; every canned response was used.
fn sent(client: &ReplayClient) -> Vec<(String, String, Value)> {
    assert_eq!(client.unused(), 0, "canned responses left over");
    client
        .sent()
        .into_iter()
        .map(|r| {
            let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let uri: http::Uri = r.uri.parse().unwrap();
            (r.method, uri.path().to_owned(), body)
        })
        .collect()
}

fn module(client: &ReplayClient, eks: Eks) -> devops_stack_core::BuiltStack {
    let aws = common::aws("https://eks.replay.test").http_client(client.clone());
    let mut stack = Stack::new("replay");
    stack.add(
        eks.aws(aws)
            .polling(common::polling())
            .access_entry(AccessEntry::admin(ADMIN).kubernetes_group("platform"))
            .addon(Addon::new("vpc-cni").version("v1.19.0-eksbuild.1")),
    );
    stack.build().unwrap()
}

#[tokio::test]
async fn upgrade_access_entries_and_addons_send_what_eks_expects() {
    let client = ReplayClient::new(vec![
        event(200, cluster("1.32")), // DescribeCluster
        event(200, cluster("1.32")), // wait for ACTIVE
        event(
            200,
            json!({"update": {"id": "u-1", "status": "Successful", "type": "VersionUpdate"}}),
        ),
        event(200, cluster("1.33")), // wait for ACTIVE after the upgrade
        event(200, json!({"accessEntries": []})), // ListAccessEntries
        event(200, json!({"accessEntry": {"principalArn": ADMIN}})),
        event(
            200,
            json!({"clusterName": "prod", "principalArn": ADMIN, "associatedAccessPolicy": {"policyArn": CLUSTER_ADMIN_POLICY}}),
        ),
        event(200, json!({"addons": []})), // ListAddons
        event(
            200,
            json!({"addon": {"addonName": "vpc-cni", "status": "CREATING"}}),
        ),
        event(
            200,
            json!({"addon": {"addonName": "vpc-cni", "status": "ACTIVE"}}),
        ),
    ]);
    let stack = module(
        &client,
        Eks::new("eks", "prod", "example.com")
            .version("1.33")
            .role_arn(ROLE)
            .subnets(["subnet-a", "subnet-b"]),
    );
    stack.apply(&RunOptions::new()).await.expect("applied");
    let requests = sent(&client);
    let paths: Vec<(&str, &str)> = requests
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    let admin_path = format!(
        "/clusters/prod/access-entries/{}/access-policies",
        ADMIN.replace(':', "%3A").replace('/', "%2F")
    );
    assert_eq!(
        paths,
        vec![
            ("GET", "/clusters/prod"),
            ("GET", "/clusters/prod"),
            ("POST", "/clusters/prod/updates"),
            ("GET", "/clusters/prod"),
            ("GET", "/clusters/prod/access-entries"),
            ("POST", "/clusters/prod/access-entries"),
            ("POST", admin_path.as_str()),
            ("GET", "/clusters/prod/addons"),
            ("POST", "/clusters/prod/addons"),
            ("GET", "/clusters/prod/addons/vpc-cni"),
        ]
    );
    // UpdateClusterVersion: one minor up, with an idempotency token.
    assert_eq!(requests[2].2["version"], "1.33");
    assert!(requests[2].2["clientRequestToken"].is_string());
    // CreateAccessEntry, then AssociateAccessPolicy scoped to the whole cluster.
    assert_eq!(requests[5].2["principalArn"], ADMIN);
    assert_eq!(requests[5].2["kubernetesGroups"], json!(["platform"]));
    assert_eq!(requests[6].2["policyArn"], CLUSTER_ADMIN_POLICY);
    assert_eq!(requests[6].2["accessScope"], json!({"type": "cluster"}));
    // CreateAddon at the pinned version.
    assert_eq!(requests[8].2["addonName"], "vpc-cni");
    assert_eq!(requests[8].2["addonVersion"], "v1.19.0-eksbuild.1");
}

#[tokio::test]
async fn destroying_an_adopted_cluster_removes_only_its_entries_and_addons() {
    let client = ReplayClient::new(vec![
        event(200, cluster("1.33")), // DescribeCluster, reading before the destroy
        event(200, cluster("1.33")), // DescribeCluster
        event(200, json!({})),       // DeleteAccessEntry
        event(200, json!({"addon": {"addonName": "vpc-cni", "status": "DELETING"}})),
        event_with(
            404,
            &[("x-amzn-errortype", "ResourceNotFoundException")],
            json!({"message": "No addon: vpc-cni found in cluster: prod"}).to_string(),
        ), // DescribeAddon: gone
        event_with(
            200,
            &[("content-type", "text/xml")],
            "<ListOpenIDConnectProvidersResponse><ListOpenIDConnectProvidersResult><OpenIDConnectProviderList/></ListOpenIDConnectProvidersResult></ListOpenIDConnectProvidersResponse>".into(),
        ),
    ]);
    let stack = module(&client, Eks::adopt("eks", "prod", "example.com"));
    stack
        .destroy(&RunOptions::new().extension(AbandonInCluster))
        .await
        .expect("destroyed");
    let requests = sent(&client);
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    let entry = format!(
        "/clusters/prod/access-entries/{}",
        ADMIN.replace(':', "%3A").replace('/', "%2F")
    );
    assert_eq!(
        calls,
        vec![
            ("GET", "/clusters/prod"),
            ("GET", "/clusters/prod"),
            ("DELETE", entry.as_str()),
            ("DELETE", "/clusters/prod/addons/vpc-cni"),
            ("GET", "/clusters/prod/addons/vpc-cni"),
            ("POST", "/"),
        ],
        "no DeleteCluster, no DeleteNodegroup"
    );
}
