//! EKS IAM authentication of a fleet's spoke ([`EksSpokeAuth`]), driven through a stack by a
//! small module standing in for the fleet's registration (`Probe`: its apply is
//! `credentials`, its destroy `revoke`, its plan `planned_resources`).
//!
//! - Against moto (the clusters) with the access-entry calls moto does not serve answered by
//!   `common::eks_fake`: the entry made with the tags and reused, deleted at destroy; a foreign
//!   entry refused with nothing written, and left at destroy.
//! - With the replaying client (`common::replay`, no server): the exact requests of a first
//!   registration, and a cluster without access entries refused before any write.
//! - Offline: the plan's access entry.

mod common;

use common::eks_fake::Emulated;
use common::replay::{Canned, ReplayClient, eks_json, eks_not_found, iam};
use devops_stack_aws::eks::{CLUSTER_ADMIN_POLICY, Eks, EksSpokeAuth};
use devops_stack_aws::tags::{MODULE_TAG, STACK_TAG};
use devops_stack_core::interfaces::{ClusterRef, SpokeAuth};
use devops_stack_core::{
    BuiltStack, Context, Handle, Input, Module, ModuleResult, Needs, Planned, Resource, RunOptions,
    Stack,
};
use serde_json::{Value, json};

const HUB: &str = "arn:aws:iam::123456789012:role/hub-argocd";

/// Stands in for a spoke's registration: what it does with its [`SpokeAuth`].
struct Probe {
    auth: EksSpokeAuth,
    spoke: Input<ClusterRef>,
}

impl Module for Probe {
    type Output = Value;

    fn id(&self) -> &str {
        "probe"
    }

    fn kind(&self) -> &'static str {
        "probe"
    }

    fn needs(&self, n: &mut Needs) {
        n.add(&self.spoke);
        self.auth.needs(n);
    }

    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<Value>> {
        let spoke = ctx.get(&self.spoke)?;
        Ok(Planned::new(json!({})).with_resources(self.auth.planned_resources(ctx, &spoke)))
    }

    /// The `config` of Argo CD's cluster Secret.
    async fn apply(&self, ctx: &Context) -> ModuleResult<Value> {
        let spoke = ctx.get(&self.spoke)?;
        Ok(self.auth.credentials(ctx, &spoke).await?.argocd_config())
    }

    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let spoke = ctx.get(&self.spoke)?;
        self.auth.revoke(ctx, &spoke).await
    }
}

/// A stack of `eks` and the probe authenticating the hub to it.
fn stack(
    name: &str,
    eks: Eks,
) -> (
    BuiltStack,
    Handle<devops_stack_aws::eks::EksCluster>,
    Handle<Value>,
) {
    let mut s = Stack::new(name);
    let eks = s.add(eks);
    let probe = s.add(Probe {
        auth: EksSpokeAuth::new(&eks, Input::value(HUB.to_owned())),
        spoke: eks.cluster(),
    });
    (s.build().unwrap(), eks, probe)
}

fn ownership(stack: &str, module: &str) -> Value {
    json!({STACK_TAG: stack, MODULE_TAG: module})
}

/// The crate's error behind a failed run.
fn aws_error(err: &devops_stack_core::Error) -> Option<&devops_stack_aws::Error> {
    let devops_stack_core::Error::RunFailed { failed, .. } = err else {
        return None;
    };
    failed.iter().find_map(|f| {
        let mut e: Option<&(dyn std::error::Error + 'static)> = Some(f);
        while let Some(cause) = e {
            if let Some(found) = cause.downcast_ref::<devops_stack_aws::Error>() {
                return Some(found);
            }
            e = cause.source();
        }
        None
    })
}

// ---------------------------------------------------------------------------------------------
// Against moto, with the fake for the access entries moto does not serve.
// ---------------------------------------------------------------------------------------------

fn moto_cluster(aws: devops_stack_aws::AwsConfig) -> Eks {
    Eks::new("eks", "fleet-a", "example.com")
        .aws(aws)
        .polling(common::polling())
        .subnets(["subnet-1", "subnet-2"])
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn the_entry_is_made_with_the_tags_reused_and_deleted_at_destroy() {
    let Emulated {
        fake,
        recorder,
        aws,
        lock: _lock,
        ..
    } = Emulated::start().await;
    let (stack, eks, probe) = stack("fleet", moto_cluster(aws));

    let report = stack.apply(&RunOptions::new()).await.expect("applied");
    let cluster = report.output(&eks).expect("a cluster");
    assert!(!cluster.certificate_authority_data.is_empty());
    assert_eq!(
        *report.output(&probe).expect("a config"),
        json!({
            "tlsClientConfig": {"insecure": false, "caData": cluster.certificate_authority_data},
            "awsAuthConfig": {"clusterName": "fleet-a"},
        })
    );
    let entries = fake.access_entries("fleet-a");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["principalArn"], HUB);
    assert_eq!(entries[0]["tags"], ownership("fleet", "probe"));
    assert_eq!(fake.access_policies("fleet-a", HUB), [CLUSTER_ADMIN_POLICY]);

    // Again: the entry is found and kept, not made twice.
    recorder.clear();
    stack
        .apply(&RunOptions::new())
        .await
        .expect("applied again");
    let ops = recorder.operations();
    assert!(ops.iter().any(|o| o == "DescribeAccessEntry"), "{ops:?}");
    assert!(!ops.iter().any(|o| o == "CreateAccessEntry"), "{ops:?}");
    assert_eq!(fake.access_entries("fleet-a").len(), 1);

    stack
        .destroy(&RunOptions::new().abandon_in_cluster())
        .await
        .expect("destroyed");
    assert!(fake.access_entries("fleet-a").is_empty());
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_foreign_entry_is_refused_with_nothing_written_and_left_at_destroy() {
    let Emulated {
        fake,
        recorder,
        aws,
        lock: _lock,
        ..
    } = Emulated::start().await;
    fake.insert_access_entry("fleet-a", HUB, json!({}));
    let (stack, _, _) = stack("fleet", moto_cluster(aws));

    let err = stack.apply(&RunOptions::new()).await.expect_err("not ours");
    match aws_error(&err) {
        Some(devops_stack_aws::Error::NotOwned {
            resource,
            owner,
            fix,
        }) => {
            assert!(
                resource.contains(HUB) && resource.contains("`fleet-a`"),
                "{resource}"
            );
            assert_eq!(owner, "none");
            assert!(
                fix.contains(&format!(
                    "aws eks delete-access-entry --cluster-name fleet-a --principal-arn {HUB}"
                )),
                "{fix}"
            );
        }
        other => panic!("not NotOwned: {other:?} ({err})"),
    }
    let ops = recorder.operations();
    for never in ["CreateAccessEntry", "AssociateAccessPolicy"] {
        assert!(!ops.iter().any(|o| o == never), "{never} in {ops:?}");
    }
    assert!(fake.access_policies("fleet-a", HUB).is_empty());

    stack
        .destroy(&RunOptions::new().abandon_in_cluster())
        .await
        .expect("destroyed");
    let ops = recorder.operations();
    assert!(!ops.iter().any(|o| o == "DeleteAccessEntry"), "{ops:?}");
    let entries = fake.access_entries("fleet-a");
    assert_eq!(entries.len(), 1, "the foreign entry stays: {entries:?}");
    assert_eq!(entries[0]["tags"], json!({}));
}

// ---------------------------------------------------------------------------------------------
// With the replaying client: the requests, in order.
// ---------------------------------------------------------------------------------------------

/// The path segment of the hub's role, as the SDK encodes it.
fn hub_segment() -> String {
    HUB.replace(':', "%3A").replace('/', "%2F")
}

fn cluster_json(mode: &str) -> Value {
    json!({"cluster": {
        "name": "prod",
        "arn": "arn:aws:eks:us-east-1:123456789012:cluster/prod",
        "status": "ACTIVE",
        "version": "1.33",
        "endpoint": "https://127.0.0.1:1",
        "certificateAuthority": {"data": "Q0E="},
        "accessConfig": {"authenticationMode": mode},
        "identity": {"oidc": {"issuer": "https://oidc.eks.us-east-1.amazonaws.com/id/prod"}},
        "resourcesVpcConfig": {"subnetIds": ["subnet-a", "subnet-b"], "securityGroupIds": [], "publicAccessCidrs": ["0.0.0.0/0"]},
        "tags": {}
    }})
}

/// The answers of adopting `prod` in `mode` (the cluster, its OIDC provider made by someone
/// else).
fn adoption(mode: &str) -> Vec<Canned> {
    vec![
        eks_json(200, cluster_json(mode)),
        eks_json(200, cluster_json(mode)),
        iam(
            "GetOpenIDConnectProvider",
            "<Url>oidc.eks.us-east-1.amazonaws.com/id/prod</Url><ClientIDList><member>sts.amazonaws.com</member></ClientIDList><ThumbprintList/><Tags/>",
        ),
    ]
}

fn adopted(client: &ReplayClient) -> (BuiltStack, Handle<Value>) {
    let aws = common::aws("https://eks.replay.test").http_client(client.clone());
    let (stack, _, probe) = stack(
        "replay",
        Eks::adopt("eks", "prod", "example.com")
            .aws(aws)
            .polling(common::polling()),
    );
    (stack, probe)
}

/// `METHOD path` of each request after the first `skip`; every canned answer was used.
fn requests(client: &ReplayClient, skip: usize) -> Vec<String> {
    assert_eq!(client.unused(), 0, "canned responses left over");
    client.sent()[skip..]
        .iter()
        .map(|r| {
            let uri: http::Uri = r.uri.parse().unwrap();
            format!("{} {}", r.method, uri.path())
        })
        .collect()
}

#[tokio::test]
async fn a_first_registration_reads_then_creates_the_tagged_entry_and_its_policy() {
    let client = ReplayClient::new(adoption("API_AND_CONFIG_MAP").into_iter().chain([
        eks_json(200, cluster_json("API_AND_CONFIG_MAP")),
        eks_not_found(),
        eks_json(200, json!({"accessEntry": {"principalArn": HUB}})),
        eks_json(200, json!({"clusterName": "prod", "principalArn": HUB})),
    ]));
    let (stack, probe) = adopted(&client);
    let report = stack.apply(&RunOptions::new()).await.expect("applied");
    assert_eq!(
        *report.output(&probe).unwrap(),
        json!({
            "tlsClientConfig": {"insecure": false, "caData": "Q0E="},
            "awsAuthConfig": {"clusterName": "prod"},
        })
    );
    let entry = format!("/clusters/prod/access-entries/{}", hub_segment());
    assert_eq!(
        requests(&client, 3),
        [
            "GET /clusters/prod".to_owned(),
            format!("GET {entry}"),
            "POST /clusters/prod/access-entries".to_owned(),
            format!("POST {entry}/access-policies"),
        ]
    );
    let sent = client.sent();
    let create: Value = serde_json::from_slice(&sent[5].body).unwrap();
    assert_eq!(create["principalArn"], HUB);
    assert_eq!(create["tags"], ownership("replay", "probe"));
    let associate: Value = serde_json::from_slice(&sent[6].body).unwrap();
    assert_eq!(associate["policyArn"], CLUSTER_ADMIN_POLICY);
    assert_eq!(associate["accessScope"], json!({"type": "cluster"}));
}

#[tokio::test]
async fn a_cluster_without_access_entries_is_refused_before_any_write() {
    let client = ReplayClient::new(
        adoption("CONFIG_MAP")
            .into_iter()
            .chain([eks_json(200, cluster_json("CONFIG_MAP"))]),
    );
    let (stack, _) = adopted(&client);
    let err = stack.apply(&RunOptions::new()).await.expect_err("refused");
    assert!(
        matches!(
            aws_error(&err),
            Some(devops_stack_aws::Error::AccessEntriesDisabled { cluster, mode })
                if cluster == "prod" && mode == "CONFIG_MAP"
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("--access-config authenticationMode=API_AND_CONFIG_MAP"),
        "{err}"
    );
    assert_eq!(requests(&client, 3), ["GET /clusters/prod"]);
}

// ---------------------------------------------------------------------------------------------
// Offline.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_plan_shows_the_access_entry_and_argocds_config() {
    let (stack, _, _) = stack(
        "prod",
        Eks::new("eks", "prod", "example.com")
            .endpoint_url("http://unreachable.invalid")
            .region("eu-west-1")
            .subnets(["subnet-a", "subnet-b"]),
    );
    let plan = stack.plan().await.unwrap();
    let resources = &plan.module("probe").unwrap().resources;
    assert_eq!(resources.len(), 1, "{resources:?}");
    assert_eq!(
        resources[0].title(),
        format!("aws eks:AccessEntry prod/{HUB}")
    );
    let Resource::Cloud { properties, .. } = &resources[0] else {
        panic!()
    };
    assert_eq!(
        *properties,
        json!({
            "cluster": "prod",
            "principal_arn": HUB,
            "policies": [CLUSTER_ADMIN_POLICY],
            "access_scope": "cluster",
            "tags": ownership("prod", "probe"),
            "argocd": {"awsAuthConfig": {"clusterName": "prod"}},
        })
    );
}
