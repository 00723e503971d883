//! The cleanup before a cluster is deleted, against a real kube-apiserver (with
//! kube-controller-manager: a PVC's protection finalizer is removed by it) and moto, with this test
//! playing Kubernetes' cloud controller and the EBS CSI driver: for a `LoadBalancer` Service and a
//! PVC it makes a tagged load balancer and a tagged volume in moto, and deletes each only a while
//! after its object is gone. Ignored unless asked for (`--include-ignored`): they need
//! `DEVOPS_STACK_TEST_KUBECONFIG` and `DEVOPS_STACK_TEST_AWS_ENDPOINT` (scripts/test.sh sets both
//! when it can).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerTypeEnum, Tag as LbTag};
use devops_stack_aws::Error;
use devops_stack_aws::eks::{CLUSTER_TAG_PREFIX, CloudCleanup};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

/// The kube client and moto's endpoint; panics, saying how to set it, when either is missing.
async fn setup() -> (kube::Client, String) {
    let endpoint = common::endpoint();
    let path = devops_stack_test::live::kubeconfig();
    devops_stack_core::k8s::install_tls_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig is valid");
    (kube::Client::try_from(config).expect("client"), endpoint)
}

fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:08x}", nanos ^ std::process::id())
}

async fn namespace(kube: &kube::Client, name: &str, stack: Option<&str>) {
    let mut labels = BTreeMap::new();
    if let Some(stack) = stack {
        labels.insert("devops-stack.io/stack".to_owned(), stack.to_owned());
    }
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(kube.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// The annotation asking the cloud controller for an NLB (without it, a Classic Load Balancer).
const NLB: &str = "service.beta.kubernetes.io/aws-load-balancer-type";

async fn service(kube: &kube::Client, ns: &str, name: &str, type_: &str) {
    let annotations = if name == "legacy" {
        json!({})
    } else {
        json!({NLB: "nlb"})
    };
    let s: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": type_, "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}},
    }))
    .unwrap();
    Api::<Service>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("service created");
}

async fn claim(kube: &kube::Client, ns: &str, name: &str) {
    let c: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &c)
        .await
        .expect("claim created");
}

async fn drop_namespace(kube: &kube::Client, name: &str) {
    let _ = Api::<Namespace>::all(kube.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// What the played cloud controller made and when it deleted it.
#[derive(Debug, Default)]
struct Cloud {
    /// `Service ns/name` or `PVC ns/name` → the AWS id made for it.
    made: BTreeMap<String, String>,
    /// When each was deleted from AWS.
    deleted: BTreeMap<String, Instant>,
    /// When its object was first seen gone.
    gone_since: BTreeMap<String, Instant>,
}

/// Plays the cloud controller and the CSI driver for the objects of `namespaces`, for cluster
/// `cluster`, deleting a resource `delay` after its object is gone.
fn play_cloud_controller(
    kube: kube::Client,
    sdk: aws_config::SdkConfig,
    cluster: String,
    namespaces: Vec<String>,
    subnets: Vec<String>,
    delay: Duration,
) -> (Arc<Mutex<Cloud>>, tokio::task::JoinHandle<()>) {
    let cloud = Arc::new(Mutex::new(Cloud::default()));
    let state = cloud.clone();
    let task = tokio::spawn(async move {
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
        let classic = aws_sdk_elasticloadbalancing::Client::new(&sdk);
        let cluster_tag = format!("{CLUSTER_TAG_PREFIX}{cluster}");
        loop {
            let mut present = Vec::new();
            for ns in &namespaces {
                let services = Api::<Service>::namespaced(kube.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .unwrap();
                for s in services.items {
                    if s.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
                        continue;
                    }
                    let key = format!("Service {ns}/{}", s.metadata.name.clone().unwrap());
                    present.push(key.clone());
                    if state.lock().unwrap().made.contains_key(&key) {
                        continue;
                    }
                    let name = format!("k8s-{}", &suffix()[..6]);
                    let service_tag = key.trim_start_matches("Service ").to_owned();
                    let nlb = s.metadata.annotations.as_ref().and_then(|a| a.get(NLB));
                    if nlb.is_none() {
                        // as the in-tree controller does: a Classic Load Balancer
                        let tag = |k: &str, v: &str| {
                            aws_sdk_elasticloadbalancing::types::Tag::builder()
                                .key(k)
                                .value(v)
                                .build()
                                .unwrap()
                        };
                        classic
                            .create_load_balancer()
                            .load_balancer_name(&name)
                            .listeners(
                                aws_sdk_elasticloadbalancing::types::Listener::builder()
                                    .protocol("TCP")
                                    .load_balancer_port(80)
                                    .instance_port(30080)
                                    .build()
                                    .unwrap(),
                            )
                            .set_subnets(Some(subnets.clone()))
                            .tags(tag(&cluster_tag, "owned"))
                            .tags(tag("kubernetes.io/service-name", &service_tag))
                            .send()
                            .await
                            .expect("classic load balancer made");
                        state
                            .lock()
                            .unwrap()
                            .made
                            .insert(key, format!("classic:{name}"));
                        continue;
                    }
                    let lb = elb
                        .create_load_balancer()
                        .name(&name)
                        .r#type(LoadBalancerTypeEnum::Network)
                        .set_subnets(Some(subnets.clone()))
                        .tags(LbTag::builder().key(&cluster_tag).value("owned").build())
                        .tags(
                            LbTag::builder()
                                .key("kubernetes.io/service-name")
                                .value(key.trim_start_matches("Service "))
                                .build(),
                        )
                        .send()
                        .await
                        .expect("load balancer made");
                    let arn = lb.load_balancers()[0]
                        .load_balancer_arn()
                        .unwrap()
                        .to_owned();
                    state.lock().unwrap().made.insert(key, arn);
                }
                let claims = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .unwrap();
                for c in claims.items {
                    let name = c.metadata.name.clone().unwrap();
                    let key = format!("PVC {ns}/{name}");
                    present.push(key.clone());
                    if state.lock().unwrap().made.contains_key(&key) {
                        continue;
                    }
                    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
                    let volume = ec2
                        .create_volume()
                        .availability_zone(format!("{}a", common::REGION))
                        .size(1)
                        .tag_specifications(
                            TagSpecification::builder()
                                .resource_type(ResourceType::Volume)
                                .tags(tag(&cluster_tag, "owned"))
                                .tags(tag("kubernetes.io/created-for/pvc/name", &name))
                                .tags(tag("kubernetes.io/created-for/pvc/namespace", ns))
                                .tags(tag(
                                    "kubernetes.io/created-for/pv/name",
                                    &format!("pvc-{}", c.metadata.uid.clone().unwrap()),
                                ))
                                .build(),
                        )
                        .send()
                        .await
                        .expect("volume made");
                    state
                        .lock()
                        .unwrap()
                        .made
                        .insert(key, volume.volume_id().unwrap().to_owned());
                }
            }
            let due: Vec<(String, String)> = {
                let mut s = state.lock().unwrap();
                let now = Instant::now();
                let gone: Vec<String> = s
                    .made
                    .keys()
                    .filter(|k| !present.contains(k) && !s.deleted.contains_key(*k))
                    .cloned()
                    .collect();
                for k in &gone {
                    s.gone_since.entry(k.clone()).or_insert(now);
                }
                gone.into_iter()
                    .filter(|k| now.duration_since(s.gone_since[k]) >= delay)
                    .map(|k| (k.clone(), s.made[&k].clone()))
                    .collect()
            };
            for (key, id) in due {
                if let Some(name) = id.strip_prefix("classic:") {
                    classic
                        .delete_load_balancer()
                        .load_balancer_name(name)
                        .send()
                        .await
                        .expect("classic load balancer deleted");
                } else if key.starts_with("Service") {
                    elb.delete_load_balancer()
                        .load_balancer_arn(&id)
                        .send()
                        .await
                        .expect("load balancer deleted");
                } else {
                    ec2.delete_volume()
                        .volume_id(&id)
                        .send()
                        .await
                        .expect("volume deleted");
                }
                state.lock().unwrap().deleted.insert(key, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (cloud, task)
}

/// A VPC with two subnets in moto, for load balancers.
async fn subnets(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let mut ids = Vec::new();
    for (i, zone) in ["a", "b"].iter().enumerate() {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.9.{i}.0/24"))
            .availability_zone(format!("{}{zone}", common::REGION))
            .send()
            .await
            .unwrap();
        ids.push(s.subnet().unwrap().subnet_id().unwrap().to_owned());
    }
    ids
}

async fn load_balancer_exists(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> bool {
    let all = elb.describe_load_balancers().send().await.unwrap();
    all.load_balancers()
        .iter()
        .any(|lb| lb.load_balancer_arn() == Some(arn))
}

async fn volume_exists(ec2: &aws_sdk_ec2::Client, id: &str) -> bool {
    let all = ec2.describe_volumes().send().await.unwrap();
    all.volumes()
        .iter()
        .any(|v| v.volume_id() == Some(id) && v.state().is_none_or(|s| s.as_str() != "deleted"))
}

async fn wait_until_made(cloud: &Arc<Mutex<Cloud>>, n: usize) {
    let start = Instant::now();
    while cloud.lock().unwrap().made.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the played controller made {:?}",
            cloud.lock().unwrap().made
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs a cluster and moto (DEVOPS_STACK_TEST_KUBECONFIG, DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts them"]
async fn destroy_deletes_the_objects_waits_for_their_cloud_resources_and_removes_nothing_untagged()
{
    let (kube, endpoint) = setup().await;
    let _guard = common::LOCK.lock().await;
    common::reset(&endpoint);
    let sdk = common::sdk(&endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    let subnets = subnets(&ec2).await;

    // What the cleanup must never touch: an untagged load balancer and volume, and a volume
    // tagged for the cluster but made for no claim (a node's root volume).
    let user_lb = elb
        .create_load_balancer()
        .name("user-lb")
        .r#type(LoadBalancerTypeEnum::Network)
        .set_subnets(Some(subnets.clone()))
        .send()
        .await
        .unwrap();
    let user_lb = user_lb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let user_volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .send()
        .await
        .unwrap();
    let user_volume = user_volume.volume_id().unwrap().to_owned();
    let s = suffix();
    let cluster = format!("cleanup-{s}");
    let root_volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(20)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .tags(
                    Tag::builder()
                        .key(format!("{CLUSTER_TAG_PREFIX}{cluster}"))
                        .value("owned")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let root_volume = root_volume.volume_id().unwrap().to_owned();

    let stack = format!("dsc-{s}");
    let ns = format!("dsc-{s}");
    namespace(&kube, &ns, Some(&stack)).await;
    service(&kube, &ns, "ingress", "LoadBalancer").await;
    service(&kube, &ns, "legacy", "LoadBalancer").await;
    service(&kube, &ns, "internal", "ClusterIP").await;
    claim(&kube, &ns, "data").await;
    let delay = Duration::from_millis(1500);
    let (cloud, player) = play_cloud_controller(
        kube.clone(),
        sdk.clone(),
        cluster.clone(),
        vec![ns.clone()],
        subnets,
        delay,
    );
    wait_until_made(&cloud, 3).await;

    let messages = Mutex::new(Vec::new());
    let report = CloudCleanup::new(&cluster, &stack, common::aws(&endpoint))
        .timeout(Duration::from_secs(30))
        .interval(Duration::from_millis(200))
        .run(&kube, &|m| messages.lock().unwrap().push(m))
        .await
        .expect("cleanup finishes");
    let finished = Instant::now();
    player.abort();

    let cloud = std::mem::take(&mut *cloud.lock().unwrap());
    assert_eq!(
        report.deleted,
        vec![
            format!("Service {ns}/ingress"),
            format!("Service {ns}/legacy"),
            format!("PersistentVolumeClaim {ns}/data")
        ]
    );
    assert_eq!(report.gone.len(), 3, "{report:?}");
    assert!(
        report
            .gone
            .iter()
            .any(|l| l.resource.starts_with("classic load balancer")
                && l.made_for == format!("Service {ns}/legacy"))
    );
    assert!(
        report
            .gone
            .iter()
            .any(|l| l.made_for == format!("Service {ns}/ingress"))
    );
    assert!(
        report
            .gone
            .iter()
            .any(|l| l.made_for == format!("PersistentVolumeClaim {ns}/data"))
    );
    // it waited for the controller: both were deleted by it, before the cleanup returned
    assert_eq!(cloud.deleted.len(), 3, "{cloud:?}");
    for (what, at) in &cloud.deleted {
        assert!(
            *at <= finished,
            "{what} was deleted after the cleanup returned"
        );
    }
    assert!(
        messages
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.starts_with("waiting for 3 cloud resources"))
    );
    // nothing untagged, and nothing not made for a claim, was touched
    assert!(load_balancer_exists(&elb, &user_lb).await);
    assert!(volume_exists(&ec2, &user_volume).await);
    assert!(volume_exists(&ec2, &root_volume).await);
    // the ClusterIP Service makes nothing in the cloud and stays
    let services = Api::<Service>::namespaced(kube.clone(), &ns);
    assert!(services.get_opt("internal").await.unwrap().is_some());
    drop_namespace(&kube, &ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster and moto (DEVOPS_STACK_TEST_KUBECONFIG, DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts them"]
async fn a_load_balancer_of_a_namespace_the_stack_does_not_own_stops_the_destroy_until_it_goes() {
    let (kube, endpoint) = setup().await;
    let _guard = common::LOCK.lock().await;
    common::reset(&endpoint);
    let sdk = common::sdk(&endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let subnets = subnets(&ec2).await;
    let s = suffix();
    let cluster = format!("cleanup-{s}");
    let stack = format!("dsc-{s}");
    let user_ns = format!("dsc-user-{s}");
    namespace(&kube, &user_ns, None).await;
    service(&kube, &user_ns, "shop", "LoadBalancer").await;
    let (cloud, player) = play_cloud_controller(
        kube.clone(),
        sdk.clone(),
        cluster.clone(),
        vec![user_ns.clone()],
        subnets,
        Duration::from_millis(300),
    );
    wait_until_made(&cloud, 1).await;

    let cleanup = CloudCleanup::new(&cluster, &stack, common::aws(&endpoint))
        .timeout(Duration::from_secs(2))
        .interval(Duration::from_millis(200));
    let err = cleanup
        .run(&kube, &|_| {})
        .await
        .expect_err("the load balancer stays while its Service does");
    let Error::CloudResourcesRemain { remaining, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(remaining.len(), 1);
    assert!(
        remaining[0].contains(&format!("Service {user_ns}/shop")),
        "{err}"
    );
    assert!(err.to_string().contains("destroy again"), "{err}");
    // the user's Service was not deleted: the namespace is not the stack's
    let services = Api::<Service>::namespaced(kube.clone(), &user_ns);
    assert!(services.get_opt("shop").await.unwrap().is_some());

    // once its owner deletes it, the destroy run again finishes
    services
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    let report = cleanup
        .timeout(Duration::from_secs(20))
        .run(&kube, &|_| {})
        .await
        .expect("the second run finishes");
    assert!(report.deleted.is_empty());
    assert_eq!(report.gone.len(), 1);
    player.abort();
    drop_namespace(&kube, &user_ns).await;
}
