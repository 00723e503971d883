//! EKS Pod Identity as the cluster's workload identity.
//!
//! - Against moto (IAM, the clusters) with the EKS calls moto does not serve (pod identity
//!   associations, add-ons) answered by `common::eks_fake`: one role serving two clusters and
//!   going with the last, a foreign association refused, and a live cluster switched from IRSA.
//! - With the replaying client (`common::replay`, no server): the exact requests, in order, of
//!   the switch from IRSA, of a second cluster adding its association, of a foreign association
//!   refused before any change, and of the add-on on an adopted cluster.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::eks_fake::Emulated;
use common::replay::{Canned, IAM_NS, ReplayClient, Sent, eks_json, eks_not_found, iam};
use devops_stack_aws::AwsConfig;
use devops_stack_aws::eks::{Eks, EksCluster, POD_IDENTITY_AGENT, WorkloadIdentityMode};
use devops_stack_aws::iam::EksPodIdentity;
use devops_stack_aws::tags::{MODULE_TAG, POD_IDENTITY_USE_TAG_PREFIX, STACK_TAG};
use devops_stack_core::interfaces::{
    PolicyDocument, RoleOwner, RoleRequest, ServiceAccount, Statement, WorkloadIdentityProvider,
    WorkloadIdentityRef, WorkloadRole,
};
use devops_stack_core::{Resource, RunOptions, Stack};
use serde_json::{Value, json};

fn abandon() -> RunOptions {
    RunOptions::new().abandon_in_cluster()
}

fn loki() -> ServiceAccount {
    ServiceAccount::new("loki", "loki")
}

fn request() -> RoleRequest {
    RoleRequest::new(
        loki(),
        PolicyDocument::new().statement(Statement::allow(
            ["s3:GetObject", "s3:PutObject"],
            ["arn:aws:s3:::fleet-loki/*"],
        )),
    )
}

fn owner(stack: &str) -> RoleOwner {
    RoleOwner {
        stack: stack.into(),
        module: "loki".into(),
    }
}

fn ownership(stack: &str, module: &str) -> Value {
    json!({STACK_TAG: stack, MODULE_TAG: module})
}

/// The text of IAM's (URL-encoded) trust policy of `role`.
async fn trust(iam: &aws_sdk_iam::Client, role: &str) -> Value {
    let live = iam
        .get_role()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    let document = url::form_urlencoded::parse(
        format!("d={}", live.assume_role_policy_document().unwrap()).as_bytes(),
    )
    .next()
    .map(|(_, v)| v.into_owned())
    .unwrap();
    serde_json::from_str(&document).unwrap()
}

/// The role's tags.
async fn role_tags(iam: &aws_sdk_iam::Client, role: &str) -> BTreeMap<String, String> {
    iam.get_role()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .role
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

async fn role_exists(iam: &aws_sdk_iam::Client, role: &str) -> bool {
    iam.get_role().role_name(role).send().await.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Against moto, with the fake for the EKS calls moto does not serve.
// ---------------------------------------------------------------------------------------------

/// Applies an `Eks` module creating `cluster` in stack `stack`.
async fn apply_cluster(
    stack: &str,
    cluster: &str,
    mode: WorkloadIdentityMode,
    aws: &AwsConfig,
) -> (devops_stack_core::BuiltStack, Arc<EksCluster>) {
    let mut s = Stack::new(stack);
    let eks = s.add(
        Eks::new("eks", cluster, "example.com")
            .aws(aws.clone())
            .polling(common::polling())
            .subnets(["subnet-1", "subnet-2"])
            .workload_identity(mode),
    );
    let s = s.build().unwrap();
    let report = s.apply(&RunOptions::new()).await.expect("applied");
    let out = report.output(&eks).expect("a cluster");
    (s, out)
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn one_role_serves_two_clusters_and_goes_with_the_last() {
    let Emulated {
        endpoint: ep,
        fake,
        recorder,
        aws,
        lock: _lock,
        ..
    } = Emulated::start().await;
    let iam = aws_sdk_iam::Client::new(&common::sdk(&ep).await);
    // One stack applied to two clusters of a fleet: the same stack name and module ids.
    let (stack_a, a) =
        apply_cluster("fleet", "fleet-a", WorkloadIdentityMode::PodIdentity, &aws).await;
    let (stack_b, b) =
        apply_cluster("fleet", "fleet-b", WorkloadIdentityMode::PodIdentity, &aws).await;
    for cluster in ["fleet-a", "fleet-b"] {
        let addons = fake.addons(cluster);
        assert_eq!(addons.len(), 1, "{addons:?}");
        assert_eq!(addons[0]["addonName"], POD_IDENTITY_AGENT);
        assert_eq!(addons[0]["tags"], ownership("fleet", "eks"));
    }
    let (on_a, on_b) = (a.workload_identity(), b.workload_identity());
    let owner = owner("fleet");
    let role = EksPodIdentity::role_name(&owner, &loki());
    assert_eq!(role, "fleet-loki-loki-loki");

    let from_a = on_a.ensure_role(&owner, &request()).await.expect("a role");
    assert!(from_a.annotations.is_empty(), "no annotation: {from_a:?}");
    assert_eq!(from_a.id, format!("arn:aws:iam::123456789012:role/{role}"));
    assert_eq!(on_a.planned_role(&owner, &request()), from_a);
    let trust = trust(&iam, &role).await;
    assert_eq!(
        trust,
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"]
        }]})
    );
    let association = &fake.associations("fleet-a")[0];
    assert_eq!(
        (
            &association["namespace"],
            &association["serviceAccount"],
            &association["roleArn"]
        ),
        (&json!("loki"), &json!("loki"), &json!(from_a.id))
    );
    assert_eq!(association["tags"], ownership("fleet", "loki"));

    // The second cluster: the same role, its trust untouched, one more association and mark.
    recorder.clear();
    let from_b = on_b
        .ensure_role(&owner, &request())
        .await
        .expect("the same role");
    assert_eq!(from_b, from_a);
    let ops = recorder.operations();
    for never in ["CreateRole", "UpdateAssumeRolePolicy"] {
        assert!(!ops.iter().any(|o| o == never), "{never} in {ops:?}");
    }
    assert_eq!(
        ops.iter()
            .filter(|o| *o == "CreatePodIdentityAssociation")
            .count(),
        1,
        "{ops:?}"
    );
    assert_eq!(fake.associations("fleet-b").len(), 1);
    assert_eq!(fake.associations("fleet-a").len(), 1);
    let marks: BTreeMap<String, String> = role_tags(&iam, &role)
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with(POD_IDENTITY_USE_TAG_PREFIX))
        .collect();
    assert_eq!(
        marks,
        BTreeMap::from([
            (
                format!("{POD_IDENTITY_USE_TAG_PREFIX}us-east-1/fleet-a"),
                "us-east-1/fleet-a".into()
            ),
            (
                format!("{POD_IDENTITY_USE_TAG_PREFIX}us-east-1/fleet-b"),
                "us-east-1/fleet-b".into()
            ),
        ])
    );

    // Again on the first: nothing to change.
    recorder.clear();
    on_a.ensure_role(&owner, &request())
        .await
        .expect("unchanged");
    let ops = recorder.operations();
    for never in [
        "CreateRole",
        "UpdateAssumeRolePolicy",
        "TagRole",
        "CreatePodIdentityAssociation",
        "UpdatePodIdentityAssociation",
    ] {
        assert!(!ops.iter().any(|o| o == never), "{never} in {ops:?}");
    }

    // An association of the module pointed elsewhere by hand is pointed back.
    fake.point_associations("fleet-a", "arn:aws:iam::123456789012:role/elsewhere");
    recorder.clear();
    on_a.ensure_role(&owner, &request())
        .await
        .expect("pointed back");
    assert_eq!(
        fake.associations("fleet-a")[0]["roleArn"],
        from_a.id.as_str()
    );
    assert!(
        recorder
            .operations()
            .iter()
            .any(|o| o == "UpdatePodIdentityAssociation")
    );

    // The first cluster's destroy: its association goes; the role stays for the second.
    on_a.delete_role(&owner, &loki())
        .await
        .expect("deleted on a");
    assert!(fake.associations("fleet-a").is_empty());
    assert_eq!(fake.associations("fleet-b").len(), 1);
    assert!(role_exists(&iam, &role).await, "the role serves fleet-b");
    let tags = role_tags(&iam, &role).await;
    assert!(!tags.contains_key(&format!("{POD_IDENTITY_USE_TAG_PREFIX}us-east-1/fleet-a")));
    assert!(tags.contains_key(&format!("{POD_IDENTITY_USE_TAG_PREFIX}us-east-1/fleet-b")));
    // ... and once more: nothing left to delete there.
    on_a.delete_role(&owner, &loki()).await.expect("again");
    assert!(role_exists(&iam, &role).await);

    // The last cluster's destroy: the role goes with it.
    on_b.delete_role(&owner, &loki())
        .await
        .expect("deleted on b");
    assert!(fake.associations("fleet-b").is_empty());
    assert!(
        !role_exists(&iam, &role).await,
        "the role went with the last cluster"
    );

    stack_a.destroy(&abandon()).await.expect("destroyed");
    stack_b.destroy(&abandon()).await.expect("destroyed");
    let left: Vec<String> = iam
        .list_roles()
        .send()
        .await
        .unwrap()
        .roles()
        .iter()
        .map(|r| r.role_name().to_owned())
        .filter(|n| n.starts_with("fleet"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn an_association_the_module_did_not_make_is_refused_and_left_alone() {
    let Emulated {
        endpoint: ep,
        fake,
        aws,
        lock: _lock,
        ..
    } = Emulated::start().await;
    let iam = aws_sdk_iam::Client::new(&common::sdk(&ep).await);
    let (stack, cluster) =
        apply_cluster("fleet", "fleet-a", WorkloadIdentityMode::PodIdentity, &aws).await;
    let theirs = fake.insert_association(
        "fleet-a",
        "loki",
        "loki",
        "arn:aws:iam::123456789012:role/made-by-hand",
        json!({}),
    );
    let identity = cluster.workload_identity();
    let owner = owner("fleet");
    let err = identity
        .ensure_role(&owner, &request())
        .await
        .expect_err("not ours");
    match err.downcast_ref::<devops_stack_aws::Error>() {
        Some(devops_stack_aws::Error::NotOwned {
            resource,
            owner,
            fix,
        }) => {
            assert!(resource.contains(&theirs), "{resource}");
            assert!(
                resource.contains("loki/loki") && resource.contains("fleet-a"),
                "{resource}"
            );
            assert_eq!(owner, "none");
            assert!(fix.contains("delete-pod-identity-association"), "{fix}");
        }
        other => panic!("not NotOwned: {other:?} ({err})"),
    }
    // Nothing was made or changed.
    assert!(!role_exists(&iam, &EksPodIdentity::role_name(&owner, &loki())).await);
    assert_eq!(
        fake.associations("fleet-a")[0]["associationId"],
        theirs.as_str()
    );
    // The module's destroy leaves it too.
    identity
        .delete_role(&owner, &loki())
        .await
        .expect("left alone");
    assert_eq!(fake.associations("fleet-a").len(), 1);
    stack.destroy(&abandon()).await.expect("destroyed");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_live_cluster_switches_from_irsa_and_its_irsa_role_goes_at_destroy() {
    let Emulated {
        endpoint: ep,
        fake,
        recorder,
        aws,
        lock: _lock,
        ..
    } = Emulated::start().await;
    let iam = aws_sdk_iam::Client::new(&common::sdk(&ep).await);
    let owner = owner("switch");
    let (_, irsa) = apply_cluster("switch", "switch", WorkloadIdentityMode::Irsa, &aws).await;
    assert!(fake.addons("switch").is_empty(), "no agent with IRSA");
    let before = irsa
        .workload_identity()
        .ensure_role(&owner, &request())
        .await
        .unwrap();
    assert!(
        before
            .annotations
            .contains_key("eks.amazonaws.com/role-arn")
    );
    assert!(role_exists(&iam, "switch-irsa-loki-loki").await);

    // The one-line switch, applied to the live cluster.
    let (stack, pods) =
        apply_cluster("switch", "switch", WorkloadIdentityMode::PodIdentity, &aws).await;
    assert_eq!(fake.addons("switch")[0]["addonName"], POD_IDENTITY_AGENT);
    recorder.clear();
    let after = pods
        .workload_identity()
        .ensure_role(&owner, &request())
        .await
        .unwrap();
    assert!(after.annotations.is_empty());
    assert_eq!(fake.associations("switch")[0]["roleArn"], after.id.as_str());
    assert!(
        role_exists(&iam, "switch-irsa-loki-loki").await,
        "pods started before the switch still use the IRSA role"
    );
    let ops = recorder.operations();
    assert!(!ops.iter().any(|o| o.starts_with("Delete")), "{ops:?}");

    recorder.clear();
    pods.workload_identity()
        .delete_role(&owner, &loki())
        .await
        .unwrap();
    assert!(!role_exists(&iam, "switch-loki-loki-loki").await);
    assert!(!role_exists(&iam, "switch-irsa-loki-loki").await);
    assert!(fake.associations("switch").is_empty());
    let ops = recorder.operations();
    let at = |op: &str| {
        ops.iter()
            .position(|o| o == op)
            .unwrap_or_else(|| panic!("{op}: {ops:?}"))
    };
    assert!(
        at("DeletePodIdentityAssociation") < at("DeleteRole"),
        "{ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|o| *o == "DeleteRole").count(),
        2,
        "{ops:?}"
    );
    stack.destroy(&abandon()).await.expect("destroyed");
}

// ---------------------------------------------------------------------------------------------
// With the replaying client: the requests, in order.
// ---------------------------------------------------------------------------------------------

const ACCOUNT: &str = "123456789012";

fn iam_no_such_role(name: &str) -> Canned {
    Canned::new(
        404,
        format!(
            "<ErrorResponse xmlns=\"{IAM_NS}\"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The role with name {name} cannot be found.</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        ),
    )
    .header("content-type", "text/xml")
}

/// A `<Role>` with its trust (URL-encoded, as IAM returns it) and tags.
fn role_xml(name: &str, trust: &Value, tags: &[(&str, &str)]) -> String {
    let trust: String =
        url::form_urlencoded::byte_serialize(trust.to_string().as_bytes()).collect();
    let tags: String = tags
        .iter()
        .map(|(k, v)| format!("<member><Key>{k}</Key><Value>{v}</Value></member>"))
        .collect();
    format!(
        "<Role><Path>/</Path><RoleName>{name}</RoleName><RoleId>AROA{name}</RoleId><Arn>arn:aws:iam::{ACCOUNT}:role/{name}</Arn><CreateDate>2026-01-01T00:00:00Z</CreateDate><AssumeRolePolicyDocument>{trust}</AssumeRolePolicyDocument><Tags>{tags}</Tags></Role>"
    )
}

fn get_role(name: &str, trust: &Value, tags: &[(&str, &str)]) -> Canned {
    iam("GetRole", &role_xml(name, trust, tags))
}

fn pods_trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]
    }]})
}

/// The answers of an empty role deletion (no managed policy, the inline one, no profile).
fn role_deletion(name: &str, tags: &[(&str, &str)], trust: &Value) -> Vec<Canned> {
    vec![
        get_role(name, trust, tags),
        iam(
            "ListAttachedRolePolicies",
            "<AttachedPolicies/><IsTruncated>false</IsTruncated>",
        ),
        iam(
            "ListRolePolicies",
            "<PolicyNames><member>devops-stack</member></PolicyNames><IsTruncated>false</IsTruncated>",
        ),
        iam("DeleteRolePolicy", ""),
        iam(
            "ListInstanceProfilesForRole",
            "<InstanceProfiles/><IsTruncated>false</IsTruncated>",
        ),
        iam("DeleteRole", ""),
    ]
}

/// The answers of a role made from nothing (no managed policy, an inline one).
fn role_creation(name: &str, trust: &Value, tags: &[(&str, &str)]) -> Vec<Canned> {
    vec![
        iam_no_such_role(name),
        iam("CreateRole", &role_xml(name, trust, tags)),
        iam(
            "ListAttachedRolePolicies",
            "<AttachedPolicies/><IsTruncated>false</IsTruncated>",
        ),
        iam("PutRolePolicy", ""),
    ]
}

fn cluster_json(name: &str) -> Value {
    json!({"cluster": {
        "name": name,
        "arn": format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{name}"),
        "status": "ACTIVE",
        "version": "1.33",
        "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/eks-cluster"),
        // Refused at once: a destroy's reachability check fails fast.
        "endpoint": "https://127.0.0.1:1",
        "certificateAuthority": {"data": ""},
        "identity": {"oidc": {"issuer": format!("https://oidc.eks.us-east-1.amazonaws.com/id/{name}")}},
        "resourcesVpcConfig": {"subnetIds": ["subnet-a", "subnet-b"], "securityGroupIds": [], "publicAccessCidrs": ["0.0.0.0/0"]},
        "tags": {}
    }})
}

fn addon_json(cluster: &str, tags: Value) -> Value {
    json!({"addon": {"addonName": POD_IDENTITY_AGENT, "clusterName": cluster, "status": "ACTIVE", "tags": tags}})
}

/// The answers of adopting `cluster` (the cluster, the agent when `mode` asks for it, the OIDC
/// provider someone else made).
fn adoption(cluster: &str, mode: WorkloadIdentityMode) -> Vec<Canned> {
    let mut answers = vec![
        eks_json(200, cluster_json(cluster)),
        eks_json(200, cluster_json(cluster)),
    ];
    if mode == WorkloadIdentityMode::PodIdentity {
        answers.extend([
            eks_json(200, json!({"addons": []})),
            eks_json(200, addon_json(cluster, ownership("replay", "eks"))),
            eks_json(200, addon_json(cluster, ownership("replay", "eks"))),
        ]);
    }
    answers.push(iam(
        "GetOpenIDConnectProvider",
        "<Url>oidc.eks.us-east-1.amazonaws.com/id/x</Url><ClientIDList><member>sts.amazonaws.com</member></ClientIDList><ThumbprintList/><Tags/>",
    ));
    answers
}

fn adopted(
    client: &ReplayClient,
    cluster: &str,
    mode: WorkloadIdentityMode,
) -> (
    devops_stack_core::BuiltStack,
    devops_stack_core::Handle<EksCluster>,
) {
    let aws = common::aws("https://eks.replay.test").http_client(client.clone());
    let mut stack = Stack::new("replay");
    let eks = stack.add(
        Eks::adopt("eks", cluster, "example.com")
            .aws(aws)
            .polling(common::polling())
            .workload_identity(mode),
    );
    (stack.build().unwrap(), eks)
}

/// Adopts `cluster` through `client`, whose first answers are [`adoption`]'s.
async fn adopt(
    client: &ReplayClient,
    cluster: &str,
    mode: WorkloadIdentityMode,
) -> WorkloadIdentityRef {
    let (stack, eks) = adopted(client, cluster, mode);
    let report = stack.apply(&RunOptions::new()).await.expect("adopted");
    report.output(&eks).expect("a cluster").workload_identity()
}

/// Each request as `iam:<Action> <RoleName>` or `eks:<METHOD> <path>`.
fn label(sent: &Sent) -> String {
    let uri: http::Uri = sent.uri.parse().unwrap();
    if sent.method == "POST" && uri.path() == "/" {
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(&sent.body)
            .into_owned()
            .collect();
        let action = &form["Action"];
        match form.get("RoleName") {
            Some(role) => format!("iam:{action} {role}"),
            None => format!("iam:{action}"),
        }
    } else {
        format!("eks:{} {}", sent.method, uri.path())
    }
}

fn labels(client: &ReplayClient) -> Vec<String> {
    assert_eq!(client.unused(), 0, "canned responses left over");
    client.sent().iter().map(label).collect()
}

fn form(sent: &Sent) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&sent.body)
        .into_owned()
        .collect()
}

fn body(sent: &Sent) -> Value {
    serde_json::from_slice(&sent.body).unwrap_or(Value::Null)
}

/// What a component renders on its ServiceAccount from the role it was given, as a line of the
/// timeline (devops-stack-modules renders after `ensure_role` returns).
fn render(role: &WorkloadRole) -> String {
    if role.annotations.is_empty() {
        format!("render {} without annotation", role.service_account)
    } else {
        format!(
            "render {} with {:?}",
            role.service_account,
            role.annotations.keys().collect::<Vec<_>>()
        )
    }
}

/// The switch of a live stack from IRSA: the association is made within `ensure_role`, so before
/// the component renders its ServiceAccount without the annotation; the IRSA role is not touched
/// then, and goes at destroy, after the association and the Pod Identity role.
#[tokio::test]
async fn switching_from_irsa_associates_before_the_annotation_goes_and_cleans_up_at_destroy() {
    let owner = owner("replay");
    let pod_role = "replay-loki-loki-loki";
    let irsa_role = "prod-irsa-loki-loki";
    let owned = [(STACK_TAG, "replay"), (MODULE_TAG, "loki")];
    let mark = format!("{POD_IDENTITY_USE_TAG_PREFIX}us-east-1/prod");
    let irsa_trust = json!({"Version": "2012-10-17"});

    // Before: IRSA.
    let before = ReplayClient::new(
        adoption("prod", WorkloadIdentityMode::Irsa)
            .into_iter()
            .chain(role_creation(irsa_role, &irsa_trust, &owned)),
    );
    let irsa = adopt(&before, "prod", WorkloadIdentityMode::Irsa).await;
    let adopted = before.sent().len();
    let role = irsa.ensure_role(&owner, &request()).await.unwrap();
    let mut timeline = labels(&before)[adopted..].to_vec();
    timeline.push(render(&role));

    // After the one-line switch: apply, then the module's destroy.
    let association = json!({"association": {
        "clusterName": "prod", "namespace": "loki", "serviceAccount": "loki",
        "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/{pod_role}"),
        "associationId": "a-1", "associationArn": "arn:aws:eks:us-east-1:123456789012:podidentityassociation/prod/a-1",
        "tags": ownership("replay", "loki"),
    }});
    let mark_tag = [owned[0], owned[1], (mark.as_str(), "us-east-1/prod")];
    let after = ReplayClient::new(
        adoption("prod", WorkloadIdentityMode::PodIdentity)
            .into_iter()
            // ensure_role
            .chain([eks_json(200, json!({"associations": []}))])
            .chain(role_creation(pod_role, &pods_trust(), &mark_tag))
            .chain([
                eks_json(200, association.clone()),
                get_role(irsa_role, &irsa_trust, &owned),
            ])
            // delete_role
            .chain([
                eks_json(200, json!({"associations": [{"associationId": "a-1", "namespace": "loki", "serviceAccount": "loki", "clusterName": "prod"}]})),
                eks_json(200, association.clone()),
                eks_json(200, association.clone()),
                get_role(pod_role, &pods_trust(), &mark_tag),
                iam("UntagRole", ""),
            ])
            .chain(role_deletion(pod_role, &owned, &pods_trust()))
            .chain(role_deletion(irsa_role, &owned, &irsa_trust)),
    );
    let pods = adopt(&after, "prod", WorkloadIdentityMode::PodIdentity).await;
    let adopted = after.sent().len();
    let role = pods.ensure_role(&owner, &request()).await.unwrap();
    let ensured = after.sent().len();
    timeline.extend(after.sent()[adopted..].iter().map(label));
    timeline.push(render(&role));
    pods.delete_role(&owner, &loki()).await.unwrap();
    timeline.extend(labels(&after)[ensured..].iter().cloned());

    assert_eq!(
        timeline,
        [
            // IRSA: the role, then the ServiceAccount with its annotation
            "iam:GetRole prod-irsa-loki-loki",
            "iam:CreateRole prod-irsa-loki-loki",
            "iam:ListAttachedRolePolicies prod-irsa-loki-loki",
            "iam:PutRolePolicy prod-irsa-loki-loki",
            "render loki/loki with [\"eks.amazonaws.com/role-arn\"]",
            // Pod Identity: no foreign association; the role; the association; the IRSA role
            // only read; then the ServiceAccount without the annotation
            "eks:GET /clusters/prod/pod-identity-associations",
            "iam:GetRole replay-loki-loki-loki",
            "iam:CreateRole replay-loki-loki-loki",
            "iam:ListAttachedRolePolicies replay-loki-loki-loki",
            "iam:PutRolePolicy replay-loki-loki-loki",
            "eks:POST /clusters/prod/pod-identity-associations",
            "iam:GetRole prod-irsa-loki-loki",
            "render loki/loki without annotation",
            // destroy: the association, the Pod Identity role (its last cluster), the IRSA role
            "eks:GET /clusters/prod/pod-identity-associations",
            "eks:GET /clusters/prod/pod-identity-associations/a-1",
            "eks:DELETE /clusters/prod/pod-identity-associations/a-1",
            "iam:GetRole replay-loki-loki-loki",
            "iam:UntagRole replay-loki-loki-loki",
            "iam:GetRole replay-loki-loki-loki",
            "iam:ListAttachedRolePolicies replay-loki-loki-loki",
            "iam:ListRolePolicies replay-loki-loki-loki",
            "iam:DeleteRolePolicy replay-loki-loki-loki",
            "iam:ListInstanceProfilesForRole replay-loki-loki-loki",
            "iam:DeleteRole replay-loki-loki-loki",
            "iam:GetRole prod-irsa-loki-loki",
            "iam:ListAttachedRolePolicies prod-irsa-loki-loki",
            "iam:ListRolePolicies prod-irsa-loki-loki",
            "iam:DeleteRolePolicy prod-irsa-loki-loki",
            "iam:ListInstanceProfilesForRole prod-irsa-loki-loki",
            "iam:DeleteRole prod-irsa-loki-loki",
        ]
    );

    // What was sent: the trust of the pods' service, the mark of this cluster, the association.
    let sent = after.sent();
    let create = sent
        .iter()
        .find(|s| label(s) == "iam:CreateRole replay-loki-loki-loki")
        .unwrap();
    let create = form(create);
    let trust: Value = serde_json::from_str(&create["AssumeRolePolicyDocument"]).unwrap();
    assert_eq!(trust, pods_trust());
    let tags: BTreeMap<&str, &str> = (1..=3)
        .map(|i| {
            (
                create[&format!("Tags.member.{i}.Key")].as_str(),
                create[&format!("Tags.member.{i}.Value")].as_str(),
            )
        })
        .collect();
    assert_eq!(
        tags,
        BTreeMap::from([
            (STACK_TAG, "replay"),
            (MODULE_TAG, "loki"),
            (mark.as_str(), "us-east-1/prod"),
        ])
    );
    let associate = sent
        .iter()
        .find(|s| label(s) == "eks:POST /clusters/prod/pod-identity-associations")
        .unwrap();
    let associate = body(associate);
    assert_eq!(associate["namespace"], "loki");
    assert_eq!(associate["serviceAccount"], "loki");
    assert_eq!(
        associate["roleArn"],
        format!("arn:aws:iam::{ACCOUNT}:role/{pod_role}")
    );
    assert_eq!(associate["tags"], ownership("replay", "loki"));
    let listed = sent
        .iter()
        .find(|s| label(s) == "eks:GET /clusters/prod/pod-identity-associations")
        .unwrap();
    assert!(
        listed.uri.contains("namespace=loki") && listed.uri.contains("serviceAccount=loki"),
        "{}",
        listed.uri
    );
    let untag = sent
        .iter()
        .find(|s| label(s) == "iam:UntagRole replay-loki-loki-loki")
        .unwrap();
    assert_eq!(form(untag)["TagKeys.member.1"], mark);
}

/// A second cluster of the fleet: the role exists (the first cluster's mark on it) and keeps its
/// trust; the cluster adds its mark and its association. Its destroy then removes both and keeps
/// the role, which the first cluster still uses.
#[tokio::test]
async fn a_second_cluster_adds_its_mark_and_association_only_and_keeps_the_role_at_destroy() {
    let owner = owner("replay");
    let pod_role = "replay-loki-loki-loki";
    let owned = [(STACK_TAG, "replay"), (MODULE_TAG, "loki")];
    let mark_a = format!("{POD_IDENTITY_USE_TAG_PREFIX}us-east-1/fleet-a");
    let mark_b = format!("{POD_IDENTITY_USE_TAG_PREFIX}us-east-1/fleet-b");
    let used_by_a = [owned[0], owned[1], (mark_a.as_str(), "us-east-1/fleet-a")];
    let used_by_both = [
        used_by_a[0],
        used_by_a[1],
        used_by_a[2],
        (mark_b.as_str(), "us-east-1/fleet-b"),
    ];
    let association = json!({"association": {
        "clusterName": "fleet-b", "namespace": "loki", "serviceAccount": "loki",
        "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/{pod_role}"),
        "associationId": "a-2", "tags": ownership("replay", "loki"),
    }});
    let client = ReplayClient::new(
        adoption("fleet-b", WorkloadIdentityMode::PodIdentity)
            .into_iter()
            .chain([
                // ensure_role
                eks_json(200, json!({"associations": []})),
                get_role(pod_role, &pods_trust(), &used_by_a),
                iam("TagRole", ""),
                iam("ListAttachedRolePolicies", "<AttachedPolicies/><IsTruncated>false</IsTruncated>"),
                iam("PutRolePolicy", ""),
                eks_json(200, association.clone()),
                iam_no_such_role("fleet-b-irsa-loki-loki"),
                // delete_role
                eks_json(200, json!({"associations": [{"associationId": "a-2", "namespace": "loki", "serviceAccount": "loki"}]})),
                eks_json(200, association.clone()),
                eks_json(200, association.clone()),
                get_role(pod_role, &pods_trust(), &used_by_both),
                iam("UntagRole", ""),
                iam_no_such_role("fleet-b-irsa-loki-loki"),
            ]),
    );
    let identity = adopt(&client, "fleet-b", WorkloadIdentityMode::PodIdentity).await;
    let adopted = client.sent().len();
    let role = identity.ensure_role(&owner, &request()).await.unwrap();
    assert!(role.annotations.is_empty());
    assert_eq!(role.id, format!("arn:aws:iam::{ACCOUNT}:role/{pod_role}"));
    identity.delete_role(&owner, &loki()).await.unwrap();
    let all = labels(&client);
    assert_eq!(
        all[adopted..],
        [
            "eks:GET /clusters/fleet-b/pod-identity-associations",
            "iam:GetRole replay-loki-loki-loki",
            "iam:TagRole replay-loki-loki-loki",
            "iam:ListAttachedRolePolicies replay-loki-loki-loki",
            "iam:PutRolePolicy replay-loki-loki-loki",
            "eks:POST /clusters/fleet-b/pod-identity-associations",
            "iam:GetRole fleet-b-irsa-loki-loki",
            "eks:GET /clusters/fleet-b/pod-identity-associations",
            "eks:GET /clusters/fleet-b/pod-identity-associations/a-2",
            "eks:DELETE /clusters/fleet-b/pod-identity-associations/a-2",
            "iam:GetRole replay-loki-loki-loki",
            "iam:UntagRole replay-loki-loki-loki",
            // no DeleteRole: fleet-a still uses it
            "iam:GetRole fleet-b-irsa-loki-loki",
        ],
        "no CreateRole, no UpdateAssumeRolePolicy"
    );
    let sent = client.sent();
    let tag = form(&sent[adopted + 2]);
    assert_eq!(tag["Tags.member.1.Key"], mark_b);
    assert_eq!(tag["Tags.member.1.Value"], "us-east-1/fleet-b");
    assert!(
        !tag.contains_key("Tags.member.2.Key"),
        "only the missing mark: {tag:?}"
    );
    assert_eq!(form(&sent[adopted + 11])["TagKeys.member.1"], mark_b);
}

/// An association of the service account the module did not make (no tags: `eksctl`, the
/// console) stops `ensure_role` before any IAM call, naming it and the fix.
#[tokio::test]
async fn a_foreign_association_is_refused_before_any_change() {
    let theirs = json!({"association": {
        "clusterName": "prod", "namespace": "loki", "serviceAccount": "loki",
        "roleArn": "arn:aws:iam::123456789012:role/by-hand", "associationId": "a-theirs", "tags": {},
    }});
    let client = ReplayClient::new(
        adoption("prod", WorkloadIdentityMode::PodIdentity)
            .into_iter()
            .chain([
                eks_json(200, json!({"associations": [{"associationId": "a-theirs", "namespace": "loki", "serviceAccount": "loki"}]})),
                eks_json(200, theirs),
            ]),
    );
    let identity = adopt(&client, "prod", WorkloadIdentityMode::PodIdentity).await;
    let adopted = client.sent().len();
    let err = identity
        .ensure_role(&owner("replay"), &request())
        .await
        .expect_err("not ours");
    let text = err.to_string();
    assert!(
        matches!(
            err.downcast_ref::<devops_stack_aws::Error>(),
            Some(devops_stack_aws::Error::NotOwned { .. })
        ),
        "{err:?}"
    );
    for part in [
        "a-theirs",
        "loki/loki",
        "`prod`",
        "role/by-hand",
        "is not this module's",
        "aws eks delete-pod-identity-association --cluster-name prod --association-id a-theirs",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert_eq!(
        labels(&client)[adopted..],
        [
            "eks:GET /clusters/prod/pod-identity-associations",
            "eks:GET /clusters/prod/pod-identity-associations/a-theirs",
        ]
    );
}

/// On an adopted cluster, the agent is installed with the module's tags when missing, and its
/// destroy removes it only when it carries them.
#[tokio::test]
async fn an_adopted_cluster_gets_the_agent_and_loses_only_the_one_the_module_made() {
    let client = ReplayClient::new(adoption("prod", WorkloadIdentityMode::PodIdentity));
    adopt(&client, "prod", WorkloadIdentityMode::PodIdentity).await;
    let sent = client.sent();
    assert_eq!(
        labels(&client),
        [
            "eks:GET /clusters/prod",
            "eks:GET /clusters/prod",
            "eks:GET /clusters/prod/addons",
            "eks:POST /clusters/prod/addons",
            "eks:GET /clusters/prod/addons/eks-pod-identity-agent",
            "iam:GetOpenIDConnectProvider",
        ]
    );
    let create = body(&sent[3]);
    assert_eq!(create["addonName"], POD_IDENTITY_AGENT);
    assert_eq!(create["tags"], ownership("replay", "eks"));

    let no_oidc = || iam("ListOpenIDConnectProviders", "<OpenIDConnectProviderList/>");
    // The agent was there before (no tags of the module): left alone.
    let client = ReplayClient::new([
        eks_json(200, cluster_json("prod")), // read
        eks_json(200, cluster_json("prod")), // destroy
        eks_json(200, addon_json("prod", json!({}))),
        no_oidc(),
    ]);
    let (stack, _) = adopted(&client, "prod", WorkloadIdentityMode::PodIdentity);
    stack.destroy(&abandon()).await.expect("destroyed");
    assert!(
        !labels(&client).iter().any(|l| l.starts_with("eks:DELETE")),
        "{:?}",
        labels(&client)
    );

    // The module made it: removed, and waited for.
    let client = ReplayClient::new([
        eks_json(200, cluster_json("prod")),
        eks_json(200, cluster_json("prod")),
        eks_json(200, addon_json("prod", ownership("replay", "eks"))),
        eks_json(200, addon_json("prod", ownership("replay", "eks"))),
        eks_not_found(),
        no_oidc(),
    ]);
    let (stack, _) = adopted(&client, "prod", WorkloadIdentityMode::PodIdentity);
    stack.destroy(&abandon()).await.expect("destroyed");
    assert_eq!(
        labels(&client),
        [
            "eks:GET /clusters/prod",
            "eks:GET /clusters/prod",
            "eks:GET /clusters/prod/addons/eks-pod-identity-agent",
            "eks:DELETE /clusters/prod/addons/eks-pod-identity-agent",
            "eks:GET /clusters/prod/addons/eks-pod-identity-agent",
            "iam:ListOpenIDConnectProviders",
        ]
    );
}

/// The offline plan: the cluster lists the agent and its mode; a component's role on it is the
/// Pod Identity role, named without the cluster, with the association.
#[tokio::test]
async fn the_plan_lists_the_agent_the_role_and_the_association() {
    let mut stack = Stack::new("prod");
    stack.add(
        Eks::new("eks", "prod", "example.com")
            .endpoint_url("http://unreachable.invalid")
            .region("eu-west-1")
            .subnets(["subnet-a", "subnet-b"])
            .workload_identity(WorkloadIdentityMode::PodIdentity),
    );
    let plan = stack.build().unwrap().plan().await.unwrap();
    let Resource::Cloud { properties, .. } = plan
        .module("eks")
        .unwrap()
        .resources
        .iter()
        .find(|r| r.title() == "aws eks:Cluster prod")
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(properties["workload_identity"], "pod_identity");
    assert_eq!(
        properties["addons"],
        json!([{"name": POD_IDENTITY_AGENT, "version": null}])
    );

    let identity = EksPodIdentity::planned("prod", "eu-west-1");
    let resource = devops_stack_core::interfaces::WorkloadIdentity::planned_resource(
        &identity,
        &owner("prod"),
        &request(),
    );
    assert_eq!(resource.title(), "aws iam:Role prod-loki-loki-loki");
    let Resource::Cloud { properties, .. } = resource else {
        panic!()
    };
    assert_eq!(properties["trust"], pods_trust());
    assert_eq!(
        properties["association"]["kind"],
        "eks:PodIdentityAssociation"
    );
    assert_eq!(properties["association"]["cluster"], "prod");
}
