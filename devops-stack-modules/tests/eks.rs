//! The modules on a cloud cluster, planned offline: the EBS CSI driver and its StorageClass,
//! volumes naming it, Loki on S3, cert-manager with DNS-01, the ingress controllers' load
//! balancer and wildcard record; the workload roles and the record in the plan.

mod support;

use std::sync::Arc;

use devops_stack_core::interfaces::{IssuerKind, LoadBalancerScheme};
use devops_stack_core::plan::{Plan, Resource, is_unknown};
use devops_stack_core::{Input, Stack};
use devops_stack_modules::*;
use serde_json::{Value, json};
use support::cloud::*;
use support::*;

/// The platform on an NLB cluster, with every cloud input.
fn eks_stack(records: &Arc<RecordingRecords>, identity: &Arc<RecordingIdentity>) -> Stack {
    let mut stack = Stack::new("eks");
    let cluster = stack.add(NlbClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let zone = Input::value(zone("example.com", records));
    let ebs = stack.add(EbsCsiDriver::new(&cluster, &argocd, identity.input()));
    let ingress = stack.add(Traefik::new(&cluster, &argocd).dns_zone(zone.clone()));
    let certs = stack.add(
        CertManager::new(&cluster, &argocd)
            .letsencrypt("ops@example.com")
            .acme_challenge(AcmeChallenge::dns01(zone, identity.input())),
    );
    let monitoring = stack.add(
        KubePrometheusStack::new(&cluster, &argocd, &ingress)
            .issuer(certs.issuer(IssuerKind::LetsEncryptProduction))
            .storage_class(&ebs)
            .alertmanager_storage(Persistence::new("2Gi").storage_class("io2")),
    );
    stack.add(
        Loki::new(&cluster, &argocd)
            .monitoring(&monitoring)
            .storage_class(&ebs)
            .object_store(Input::value(bucket()), identity.input()),
    );
    stack
}

async fn eks_plan() -> (Plan, Arc<RecordingRecords>, Arc<RecordingIdentity>) {
    let records = RecordingRecords::new();
    let identity = RecordingIdentity::new();
    let plan = plan(eks_stack(&records, &identity)).await;
    (plan, records, identity)
}

/// The Helm values of the Application `argocd/<app>`.
fn values(plan: &Plan, app: &str) -> Value {
    objects(plan)[&format!("argoproj.io/v1alpha1 Application argocd/{app}")]["spec"]["source"]
        ["helm"]["valuesObject"]
        .clone()
}

/// The cloud resource titled `title` of module `id`, its properties.
fn cloud(plan: &Plan, id: &str, title: &str) -> Value {
    let m = module(plan, id);
    let found = m.resources.iter().find(|r| r.title() == title);
    match found {
        Some(Resource::Cloud { properties, .. }) => properties.clone(),
        _ => panic!(
            "no {title} in {id}: {:?}",
            m.resources.iter().map(Resource::title).collect::<Vec<_>>()
        ),
    }
}

#[tokio::test]
async fn eks_modules() {
    let (plan, ..) = eks_plan().await;
    for id in [
        "aws-ebs-csi-driver",
        "traefik",
        "cert-manager",
        "kube-prometheus-stack",
        "loki",
    ] {
        insta::assert_yaml_snapshot!(format!("eks_{id}"), module(&plan, id));
    }
}

#[tokio::test]
async fn planning_calls_no_cloud() {
    let (_, records, identity) = eks_plan().await;
    assert!(identity.calls().is_empty(), "{:?}", identity.calls());
    assert!(records.calls().is_empty(), "{:?}", records.calls());
}

#[tokio::test]
async fn the_ebs_csi_driver_has_its_role_tags_its_volumes_and_creates_the_default_gp3_class() {
    let (plan, ..) = eks_plan().await;
    let m = module(&plan, "aws-ebs-csi-driver");
    let titles: Vec<String> = m.resources.iter().map(Resource::title).collect();
    assert_eq!(
        titles,
        [
            "aws iam:Role test-kube-system-ebs-csi-controller-sa",
            "argoproj.io/v1alpha1 Application argocd/aws-ebs-csi-driver",
            "storage.k8s.io/v1 StorageClass gp3",
        ],
        "no Namespace: kube-system is not the module's"
    );
    let role = cloud(
        &plan,
        "aws-ebs-csi-driver",
        "aws iam:Role test-kube-system-ebs-csi-controller-sa",
    );
    assert_eq!(
        role["managed_policies"],
        json!(["service-role/AmazonEBSCSIDriverPolicy"])
    );
    assert_eq!(role["assumed_by"], "kube-system/ebs-csi-controller-sa");
    let v = values(&plan, "aws-ebs-csi-driver");
    assert_eq!(v["controller"]["k8sTagClusterId"], "prod");
    assert_eq!(
        v["controller"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/test-kube-system-ebs-csi-controller-sa"
    );
    assert_eq!(v["storageClasses"], json!([]));
    let objects = objects(&plan);
    let class = &objects["storage.k8s.io/v1 StorageClass gp3"];
    assert_eq!(class["provisioner"], "ebs.csi.aws.com");
    assert_eq!(
        class["parameters"],
        json!({"type": "gp3", "encrypted": "true"})
    );
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(class["allowVolumeExpansion"], true);
    assert_eq!(class["reclaimPolicy"], "Delete");
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(class["metadata"]["labels"]["devops-stack.io/stack"], "eks");
    assert_eq!(
        m.output["storage_class"],
        json!({"name": "gp3", "provisioner": "ebs.csi.aws.com", "default": true})
    );
}

#[tokio::test]
async fn the_storage_class_can_be_renamed_keyed_and_not_default() {
    let records = RecordingRecords::new();
    let identity = RecordingIdentity::new();
    let _ = records;
    let mut stack = Stack::new("ebs");
    let cluster = stack.add(NlbClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    let ebs = stack.add(
        EbsCsiDriver::new(&cluster, &argocd, identity.input())
            .storage_class_name("encrypted-gp3")
            .kms_key_id("alias/prod-volumes")
            .default_class(false),
    );
    let traefik = stack.add(Traefik::new(&cluster, &argocd));
    stack.add(KubePrometheusStack::new(&cluster, &argocd, &traefik).storage_class(&ebs));
    let plan = plan(stack).await;
    let objects = objects(&plan);
    let class = &objects["storage.k8s.io/v1 StorageClass encrypted-gp3"];
    assert_eq!(class["parameters"]["kmsKeyId"], "alias/prod-volumes");
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "false"
    );
    let v = values(&plan, "kube-prometheus-stack");
    assert_eq!(
        v["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"],
        "encrypted-gp3"
    );
}

#[tokio::test]
async fn volumes_name_the_drivers_class_after_it_and_an_explicit_class_wins() {
    let (plan, ..) = eks_plan().await;
    for id in ["kube-prometheus-stack", "loki"] {
        assert!(
            module(&plan, id)
                .needs
                .contains(&"aws-ebs-csi-driver".to_owned()),
            "{id} does not run after the driver"
        );
    }
    let kps = values(&plan, "kube-prometheus-stack");
    assert_eq!(
        kps["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"],
        "gp3"
    );
    assert_eq!(kps["grafana"]["persistence"]["storageClassName"], "gp3");
    // the Persistence that names a class keeps it
    assert_eq!(
        kps["alertmanager"]["alertmanagerSpec"]["storage"]["volumeClaimTemplate"]["spec"]["storageClassName"],
        "io2"
    );
    let loki = values(&plan, "loki");
    assert_eq!(loki["singleBinary"]["persistence"]["storageClass"], "gp3");

    // without the input, nothing names a class (kind, kubeconfig clusters)
    let plain = plan_default().await;
    let kps = values(&plain, "kube-prometheus-stack");
    assert!(
        kps["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]
            .get("storageClassName")
            .is_none()
    );
    assert!(
        kps["grafana"]["persistence"]
            .get("storageClassName")
            .is_none()
    );
    assert!(
        values(&plain, "loki")["singleBinary"]["persistence"]
            .get("storageClass")
            .is_none()
    );
}

async fn plan_default() -> Plan {
    plan(default_stack(IngressChoice::Traefik, OidcChoice::Tiny)).await
}

#[tokio::test]
async fn loki_keeps_its_data_in_the_bucket_with_a_role_scoped_to_it() {
    let (plan, ..) = eks_plan().await;
    let v = values(&plan, "loki");
    let loki = &v["loki"];
    assert_eq!(loki["storage"]["type"], "s3");
    assert_eq!(
        loki["storage"]["bucketNames"],
        json!({"chunks": "prod-loki", "ruler": "prod-loki", "admin": "prod-loki"})
    );
    assert_eq!(loki["storage"]["s3"], json!({"region": "eu-west-1"}));
    assert_eq!(loki["schemaConfig"]["configs"][0]["object_store"], "s3");
    assert_eq!(loki["compactor"]["delete_request_store"], "s3");
    assert_eq!(loki["compactor"]["retention_enabled"], true);
    assert_eq!(
        v["serviceAccount"],
        json!({"create": true, "name": "loki", "annotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/test-loki-loki"}})
    );
    let role = cloud(&plan, "loki", "aws iam:Role test-loki-loki");
    assert_eq!(
        role["policy"],
        serde_json::to_value(bucket().access).unwrap()
    );
    assert_eq!(role["owner"], json!({"stack": "eks", "module": "loki"}));
    // the default stays on the filesystem, with no role
    let plain = plan_default().await;
    let v = values(&plain, "loki");
    assert_eq!(v["loki"]["storage"]["type"], "filesystem");
    assert_eq!(
        v["loki"]["schemaConfig"]["configs"][0]["object_store"],
        "filesystem"
    );
    assert!(v.get("serviceAccount").is_none());
    assert!(
        module(&plain, "loki")
            .resources
            .iter()
            .all(|r| r.as_kubernetes().is_some())
    );
}

#[tokio::test]
async fn loki_on_an_s3_compatible_endpoint_uses_path_style() {
    let identity = RecordingIdentity::new();
    let mut stack = Stack::new("minio");
    let cluster = stack.add(ClusterModule::new("dev", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    stack.add(Loki::new(&cluster, &argocd).object_store(
        Input::value(bucket().endpoint("https://s3.example.net")),
        identity.input(),
    ));
    let v = values(&plan(stack).await, "loki");
    assert_eq!(
        v["loki"]["storage"]["s3"],
        json!({"region": "eu-west-1", "endpoint": "https://s3.example.net", "s3ForcePathStyle": true})
    );
}

#[tokio::test]
async fn cert_manager_solves_dns01_in_the_zone_with_a_role_allowed_to_change_it() {
    let (plan, ..) = eks_plan().await;
    let v = values(&plan, "cert-manager");
    let issuers: Vec<Value> = v["extraObjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|y| serde_yaml_ng::from_str(y.as_str().unwrap()).unwrap())
        .filter(|o: &Value| o["spec"]["acme"].is_object())
        .collect();
    assert_eq!(issuers.len(), 2);
    for issuer in &issuers {
        assert_eq!(
            issuer["spec"]["acme"]["solvers"],
            json!([{
                "dns01": {"route53": {"region": "eu-west-1", "hostedZoneID": "Z0TEST"}},
                "selector": {"dnsZones": ["example.com"]},
            }])
        );
    }
    assert_eq!(v["serviceAccount"]["name"], "cert-manager");
    assert_eq!(
        v["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/test-cert-manager-cert-manager"
    );
    assert_eq!(v["securityContext"]["fsGroup"], 1001);
    let role = cloud(
        &plan,
        "cert-manager",
        "aws iam:Role test-cert-manager-cert-manager",
    );
    assert_eq!(
        role["policy"]["statements"][0]["resources"],
        json!(["arn:aws:route53:::hostedzone/Z0TEST"])
    );
    // HTTP-01 stays the default: no role, an HTTP-01 solver, no service account change
    let plain = plan_default().await;
    let v = values(&plain, "cert-manager");
    assert!(v.get("serviceAccount").is_none() && v.get("securityContext").is_none());
    assert!(v["extraObjects"].to_string().contains("http01"));
}

#[test]
fn dns01_needs_no_ingress_controller() {
    let identity = RecordingIdentity::new();
    let records = RecordingRecords::new();
    let e = errors(|s, c, a| {
        s.add(
            CertManager::new(c, a)
                .letsencrypt("ops@example.com")
                .acme_challenge(AcmeChallenge::dns01(
                    Input::value(zone("example.com", &records)),
                    identity.input(),
                )),
        );
    });
    assert!(e.is_empty(), "{e:#?}");
}

#[tokio::test]
async fn traefik_gets_an_nlb_and_the_plan_shows_the_wildcard_record() {
    let (plan, ..) = eks_plan().await;
    let v = values(&plan, "traefik");
    assert_eq!(
        v["service"]["annotations"],
        serde_json::to_value(nlb_annotations(LoadBalancerScheme::InternetFacing)).unwrap()
    );
    let record = cloud(
        &plan,
        "traefik",
        "aws route53:RecordSet *.apps.prod.example.com",
    );
    assert_eq!(record["type"], "CNAME");
    assert_eq!(record["zone"], "example.com");
    assert!(is_unknown(record["target"].as_str().unwrap()), "{record}");
    let hostname = module(&plan, "traefik").output["ingress"]["load_balancer_hostname"].clone();
    assert!(is_unknown(hostname.as_str().unwrap()), "{hostname}");
}

#[tokio::test]
async fn an_internal_load_balancer_and_no_record() {
    let identity = RecordingIdentity::new();
    let records = RecordingRecords::new();
    let _ = identity;
    let mut stack = Stack::new("internal");
    let cluster = stack.add(NlbClusterModule::new("prod", "example.com"));
    let argocd = stack.add(ArgoCd::new(&cluster));
    stack.add(
        IngressNginx::new(&cluster, &argocd)
            .load_balancer_scheme(LoadBalancerScheme::Internal)
            .dns_zone(Input::value(zone("example.com", &records)))
            .wildcard_record(false),
    );
    let plan = plan(stack).await;
    let v = values(&plan, "ingress-nginx");
    assert_eq!(
        v["controller"]["service"]["annotations"],
        serde_json::to_value(nlb_annotations(LoadBalancerScheme::Internal)).unwrap()
    );
    assert_eq!(
        v["controller"]["service"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"],
        "true"
    );
    let m = module(&plan, "ingress-nginx");
    assert!(m.resources.iter().all(|r| r.as_kubernetes().is_some()));
    assert!(m.output["ingress"]["load_balancer_hostname"].is_null());
}

#[tokio::test]
async fn clusters_without_cloud_load_balancers_change_nothing() {
    let plain = plan_default().await;
    let v = values(&plain, "traefik");
    assert!(v["service"].get("annotations").is_none(), "{v}");
    assert!(module(&plain, "traefik").output["ingress"]["load_balancer_hostname"].is_null());
}
