//! The EKS calls moto does not serve (UpdateClusterVersion, access entries and their policies,
//! add-ons), checked for their request shapes with a replaying HTTP client plugged into the SDK
//! (`common::replay`): each request the module sends is recorded and answered with the next
//! canned response.

mod common;

use common::replay::{Canned, ReplayClient};
use devops_stack_aws::eks::{AccessEntry, Addon, CLUSTER_ADMIN_POLICY, Eks};
use devops_stack_aws::tags::{MODULE_TAG, STACK_TAG};
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
        .destroy(&RunOptions::new().abandon_in_cluster())
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

/// The OIDC settings of the client `kubernetes` of a provider.
fn kubernetes_client() -> devops_stack_core::interfaces::Oidc {
    devops_stack_core::interfaces::Oidc {
        issuer_url: "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool".into(),
        authorization_url: String::new(),
        token_url: String::new(),
        userinfo_url: String::new(),
        logout_url: None,
        client_id: "kube-client-id".into(),
        client_secret: devops_stack_core::Secret::new("s"),
        scopes: vec!["openid".into()],
        groups_claim: "cognito:groups".into(),
        extra_proxy_args: Vec::new(),
    }
}

fn identity_config(status: &str, tags: Value) -> Value {
    json!({"identityProviderConfig": {"oidc": {
        "clusterName": "prod",
        "identityProviderConfigName": "devops-stack",
        "issuerUrl": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool",
        "clientId": "kube-client-id",
        "usernameClaim": "email",
        "usernamePrefix": "oidc:",
        "groupsClaim": "cognito:groups",
        "groupsPrefix": "oidc:",
        "status": status,
        "tags": tags
    }}})
}

fn not_found() -> Canned {
    event_with(
        404,
        &[("x-amzn-errortype", "ResourceNotFoundException")],
        json!({"message": "identity provider config not found"}).to_string(),
    )
}

/// An adopted cluster (no entries or add-ons) and the association of the provider's client.
fn trusting(client: &ReplayClient) -> devops_stack_core::BuiltStack {
    use devops_stack_aws::eks::EksOidcIdentityProvider;
    let aws = common::aws("https://eks.replay.test").http_client(client.clone());
    let mut stack = Stack::new("replay");
    let eks = stack.add(
        Eks::adopt("eks", "prod", "example.com")
            .aws(aws)
            .polling(common::polling()),
    );
    stack.add(
        EksOidcIdentityProvider::new(&eks, devops_stack_core::Input::value(kubernetes_client()))
            .polling(common::polling()),
    );
    stack.build().unwrap()
}

#[tokio::test]
async fn the_cluster_trusts_the_provider_and_the_destroy_removes_only_its_own_config() {
    let owned = json!({STACK_TAG: "replay", MODULE_TAG: "eks-oidc-identity-provider"});
    let client = ReplayClient::new(vec![
        event(200, cluster("1.33")), // DescribeCluster (adopted)
        event(200, cluster("1.33")), // wait for ACTIVE
        not_found(),                 // DescribeIdentityProviderConfig
        event(
            200,
            json!({"update": {"id": "u-2", "status": "InProgress", "type": "AssociateIdentityProviderConfig"}}),
        ),
        event(200, identity_config("CREATING", owned.clone())),
        event(200, identity_config("ACTIVE", owned.clone())),
    ]);
    let report = trusting(&client)
        .apply(&RunOptions::new())
        .await
        .expect("applied");
    let requests = sent(&client);
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("GET", "/clusters/prod"),
            ("GET", "/clusters/prod"),
            ("POST", "/clusters/prod/identity-provider-configs/describe"),
            ("POST", "/clusters/prod/identity-provider-configs/associate"),
            ("POST", "/clusters/prod/identity-provider-configs/describe"),
            ("POST", "/clusters/prod/identity-provider-configs/describe"),
        ]
    );
    // AssociateIdentityProviderConfig: the provider's issuer, client and groups claim, prefixed
    // names, and the ownership tags.
    let associate = &requests[3].2;
    assert_eq!(
        associate["oidc"],
        json!({
            "identityProviderConfigName": "devops-stack",
            "issuerUrl": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool",
            "clientId": "kube-client-id",
            "usernameClaim": "email",
            "usernamePrefix": "oidc:",
            "groupsClaim": "cognito:groups",
            "groupsPrefix": "oidc:"
        })
    );
    assert_eq!(associate["tags"], owned);
    assert_eq!(
        requests[2].2["identityProviderConfig"],
        json!({"type": "oidc", "name": "devops-stack"})
    );
    let out = report
        .module("eks-oidc-identity-provider")
        .unwrap()
        .output
        .clone()
        .unwrap();
    assert_eq!(out["groups_prefix"], "oidc:");

    // Destroy: the module's own config is disassociated and waited for; the adopted cluster stays.
    let client = ReplayClient::new(vec![
        event(200, cluster("1.33")),                            // read: DescribeCluster
        event(200, identity_config("ACTIVE", owned.clone())),   // read: the config
        event(200, identity_config("ACTIVE", owned.clone())),   // destroy: Describe
        event(200, json!({"update": {"id": "u-3", "status": "InProgress"}})), // Disassociate
        event(200, identity_config("DELETING", owned.clone())), // wait
        not_found(),                                            // gone
        event(200, cluster("1.33")),                            // the cluster's destroy
        event_with(
            200,
            &[("content-type", "text/xml")],
            "<ListOpenIDConnectProvidersResponse><ListOpenIDConnectProvidersResult><OpenIDConnectProviderList/></ListOpenIDConnectProvidersResult></ListOpenIDConnectProvidersResponse>".into(),
        ),
    ]);
    trusting(&client)
        .destroy(&RunOptions::new().abandon_in_cluster())
        .await
        .expect("destroyed");
    let requests = sent(&client);
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    assert!(
        calls.contains(&(
            "POST",
            "/clusters/prod/identity-provider-configs/disassociate"
        )),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|(m, _)| *m == "DELETE"), "{calls:?}");
}

#[tokio::test]
async fn a_config_of_that_name_the_module_did_not_make_is_left_alone() {
    let client = ReplayClient::new(vec![
        event(200, cluster("1.33")),
        event(200, cluster("1.33")),
        event(200, identity_config("ACTIVE", json!({}))),
    ]);
    let e = trusting(&client)
        .apply(&RunOptions::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not this module's"), "{e}");
    let requests = sent(&client);
    assert!(
        !requests.iter().any(|(_, p, _)| p.ends_with("/associate")),
        "nothing was associated"
    );
}

/// A Classic Load Balancer its controller deletes between the cleanup's listing and its tag
/// read fails the whole DescribeTags call: the cleanup reads the rest one by one and counts
/// the one still there, instead of failing the destroy (as a CI run once did against moto).
#[tokio::test]
async fn a_load_balancer_gone_between_listing_and_tag_read_is_skipped_not_an_error() {
    const ELB: &str = "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/";
    let xml = |body: String| Canned::new(200, body).header("content-type", "text/xml");
    let not_found = |name: &str| {
        Canned::new(
            400,
            format!(
                "<ErrorResponse xmlns=\"{ELB}\"><Error><Type>Sender</Type>\
                 <Code>LoadBalancerNotFound</Code><Message>The specified load balancer does \
                 not exist: {name}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
            ),
        )
        .header("content-type", "text/xml")
    };
    let client = ReplayClient::new(vec![
        // ELBv2: none
        xml("<DescribeLoadBalancersResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
             <DescribeLoadBalancersResult><LoadBalancers/></DescribeLoadBalancersResult>\
             <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeLoadBalancersResponse>".into()),
        // Classic: two listed
        xml(format!(
            "<DescribeLoadBalancersResponse xmlns=\"{ELB}\"><DescribeLoadBalancersResult>\
             <LoadBalancerDescriptions><member><LoadBalancerName>k8s-gone</LoadBalancerName></member>\
             <member><LoadBalancerName>k8s-kept</LoadBalancerName></member></LoadBalancerDescriptions>\
             </DescribeLoadBalancersResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>\
             </DescribeLoadBalancersResponse>"
        )),
        // both at once: one is gone
        not_found("k8s-gone"),
        // one by one (the last listed first)
        xml(format!(
            "<DescribeTagsResponse xmlns=\"{ELB}\"><DescribeTagsResult><TagDescriptions><member>\
             <LoadBalancerName>k8s-kept</LoadBalancerName><Tags>\
             <member><Key>kubernetes.io/cluster/prod</Key><Value>owned</Value></member>\
             <member><Key>kubernetes.io/service-name</Key><Value>traefik/traefik</Value></member>\
             </Tags></member></TagDescriptions></DescribeTagsResult>\
             <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeTagsResponse>"
        )),
        not_found("k8s-gone"),
        // EBS: none
        xml("<DescribeVolumesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>r</requestId><volumeSet/></DescribeVolumesResponse>".into()),
    ]);
    let aws = common::aws("https://elb.replay.test").http_client(client.clone());
    let (waiting, retained) = devops_stack_aws::eks::CloudCleanup::new("prod", "replay", aws)
        .remaining(None)
        .await
        .expect("a load balancer gone since the listing is not an error");
    assert_eq!(client.unused(), 0, "canned responses left over");
    let waiting: Vec<String> = waiting.iter().map(ToString::to_string).collect();
    assert_eq!(
        waiting,
        ["classic load balancer k8s-kept (made for Service traefik/traefik)"]
    );
    assert!(retained.is_empty());
    let bodies: Vec<String> = client
        .sent()
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert!(bodies[2].contains("k8s-gone") && bodies[2].contains("k8s-kept"));
    assert!(bodies[3].contains("k8s-kept") && !bodies[3].contains("k8s-gone"));
    assert!(bodies[4].contains("k8s-gone") && !bodies[4].contains("k8s-kept"));
}
