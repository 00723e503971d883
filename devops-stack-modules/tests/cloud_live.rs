//! Live tests of the modules' cloud side against the cluster whose kubeconfig path is in
//! `DEVOPS_STACK_TEST_KUBECONFIG` (each test is skipped, saying so, when it is unset).
//!
//! The test plays the cloud: the recording workload identity and DNS records of
//! `tests/support/cloud.rs` stand for IAM and Route 53, and the test itself plays Argo CD
//! deploying the controller's Service and the cloud's load balancer controller giving it a
//! hostname. Argo CD's Applications are marked Synced/Healthy by the stand-in of
//! `devops_stack_test::argocd_standin`. Every test uses its own stack name and
//! namespaces, and cleans up even when it fails.
//!
//! ```text
//! DEVOPS_STACK_TEST_KUBECONFIG=~/.kube/config cargo test -p devops-stack-modules --test cloud_live
//! ```

use devops_stack_test::argocd_standin;
use devops_stack_test::live;
mod support;

use devops_stack_core::k8s::KubeEngine;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argocd_standin::{ArgoCdStandIn, applications};
use devops_stack_core::interfaces::{
    ArgoCdTarget, ClusterRef, IN_CLUSTER, RoleOwner, RoleRequest, ServiceAccount, WorkloadIdentity,
    WorkloadIdentityRef, WorkloadRole,
};
use devops_stack_core::k8s::KubeOptions;
use devops_stack_core::{BoxError, Input, Resource, RunOptions, Stack};
use devops_stack_modules::{EbsCsiDriver, Loki, Traefik};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass as KubeStorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use live::{
    Counting, create_namespace, delete_labelled, delete_namespace, helper_client, kubeconfig,
    unique, with_cleanup,
};
use serde_json::json;
use support::cloud::{RecordingIdentity, RecordingRecords, zone};

/// The hostname the test's "cloud" gives the load balancer.
const LB_HOSTNAME: &str = "k8s-traefik-0123456789.elb.eu-west-1.amazonaws.com";

/// One live test's cluster, Argo CD stand-in, stack name and namespaces (`<name>-argocd`, the
/// user's, where the Applications go; `<name>-state`; `<name>-<module>`).
struct Live {
    helper: kube::Client,
    cluster: Counting,
    name: String,
    standin: ArgoCdStandIn,
}

impl Live {
    /// Panics without `DEVOPS_STACK_TEST_KUBECONFIG`, saying how to set it.
    async fn start(prefix: &str) -> Live {
        let path = kubeconfig();
        let helper = helper_client(path.clone()).await;
        let cluster = Counting::new(path).await;
        let name = unique(prefix);
        let argocd_ns = format!("{name}-argocd");
        create_namespace(&helper, &argocd_ns).await;
        let standin = ArgoCdStandIn::start(&helper, &[&argocd_ns]).await;
        Live {
            helper,
            cluster,
            name,
            standin,
        }
    }

    fn ns(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    fn cluster(&self) -> Input<ClusterRef> {
        Input::value(Arc::new(self.cluster.clone()) as ClusterRef)
    }

    fn argocd(&self) -> Input<ArgoCdTarget> {
        Input::value(ArgoCdTarget {
            namespace: self.ns("argocd"),
            project: "default".into(),
            destination_server: IN_CLUSTER.into(),
        })
    }

    fn options(&self) -> RunOptions {
        RunOptions::new().engine(KubeEngine::new(KubeOptions {
            wait_timeout: Duration::from_secs(120),
            state_namespace: self.ns("state"),
            ..KubeOptions::default()
        }))
    }

    /// Runs `body`, then deletes everything of the stack and the test's namespaces (`module`'s
    /// among them), even when `body` failed.
    async fn run(&self, module: &str, body: impl std::future::Future<Output = ()>) {
        let cleanup = async {
            delete_labelled(
                &self.helper,
                &format!("devops-stack.io/stack={}", self.name),
            )
            .await;
            for suffix in ["argocd", "state", module] {
                delete_namespace(&self.helper, &self.ns(suffix)).await;
            }
        };
        with_cleanup(body, cleanup).await;
    }

    /// Stops the stand-in.
    async fn stop(self) {
        self.standin.shutdown().await;
    }
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn traefik_waits_for_its_load_balancer_points_the_wildcard_at_it_and_destroy_deletes_it() {
    let live = Live::start("lb").await;
    let records = RecordingRecords::new();
    let (name, ns, argocd_ns) = (live.name.clone(), live.ns("traefik"), live.ns("argocd"));
    let body = async {
        let mut stack = Stack::new(&name);
        let traefik = stack.add(
            Traefik::new(live.cluster(), live.argocd())
                .namespace(&ns)
                .dns_zone(Input::value(zone("example.com", &records)))
                .load_balancer_timeout(Duration::from_secs(60)),
        );
        let stack = stack.build().unwrap();
        let options = live.options();
        let wildcard = "*.apps.test.example.com";

        // The plan shows the record, its target unknown.
        let plan = stack.plan().await.unwrap();
        assert!(
            plan.to_text()
                .contains(&format!("aws route53:RecordSet {wildcard}")),
            "{}",
            plan.to_text()
        );

        let cloud = tokio::spawn(live::play_load_balancer(
            live.helper.clone(),
            ns.clone(),
            LB_HOSTNAME,
            Duration::from_secs(2),
        ));
        let report = stack.apply(&options).await.unwrap();
        let applied = Instant::now();
        let status_set = cloud.await.unwrap();
        assert!(
            applied >= status_set,
            "apply returned before the load balancer had a hostname"
        );
        let out = report.output(&traefik).expect("traefik's output");
        assert_eq!(
            out.ingress.load_balancer_hostname.as_deref(),
            Some(LB_HOSTNAME)
        );
        let (owner, record) = records.cname(wildcard).expect("the wildcard record");
        assert_eq!(record.target, LB_HOSTNAME);
        assert_eq!(
            owner,
            RoleOwner {
                stack: name.clone(),
                module: "traefik".into()
            }
        );
        assert_eq!(
            records.calls(),
            [format!("ensure {name}/traefik {wildcard} -> {LB_HOSTNAME}")]
        );

        // A second apply finds the hostname at once and keeps the record as it is.
        stack.apply(&options).await.unwrap();
        assert_eq!(records.cname(wildcard).unwrap().1.target, LB_HOSTNAME);

        // Destroy deletes the record, then the objects.
        stack.destroy(&options).await.unwrap();
        assert!(records.cname(wildcard).is_none(), "the record remains");
        assert_eq!(
            records.calls().last().unwrap(),
            &format!("delete {name}/traefik {wildcard}")
        );
        assert!(
            applications(&live.helper, &argocd_ns)
                .get_opt("traefik")
                .await
                .unwrap()
                .is_none()
        );
    };
    live.run("traefik", body).await;
    live.stop().await;
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_load_balancer_that_never_comes_fails_naming_the_service_and_what_it_waited_for() {
    let live = Live::start("nolb").await;
    let records = RecordingRecords::new();
    let (name, ns) = (live.name.clone(), live.ns("traefik"));
    let body = async {
        let mut stack = Stack::new(&name);
        stack.add(
            Traefik::new(live.cluster(), live.argocd())
                .namespace(&ns)
                .dns_zone(Input::value(zone("example.com", &records)))
                .load_balancer_timeout(Duration::from_secs(2)),
        );
        let stack = stack.build().unwrap();
        let options = live.options();
        let e = stack.apply(&options).await.unwrap_err().to_string();
        println!("{e}");
        assert!(
            e.contains(&format!("Service {ns}/traefik"))
                && e.contains("status.loadBalancer.ingress[0].hostname")
                && e.contains("the Service does not exist yet")
                && e.contains("load_balancer_timeout"),
            "{e}"
        );
        assert!(records.calls().is_empty(), "{:?}", records.calls());
        // what was applied can be destroyed
        stack.destroy(&options).await.unwrap();
        assert_eq!(
            records.calls(),
            [format!("delete {name}/traefik *.apps.test.example.com")]
        );
    };
    live.run("traefik", body).await;
    live.stop().await;
}

/// A recording identity that also notes, at each call, whether Loki's Application exists.
struct Probing {
    inner: Arc<RecordingIdentity>,
    client: kube::Client,
    argocd_ns: String,
    seen: Mutex<Vec<(&'static str, bool)>>,
}

impl std::fmt::Debug for Probing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probing")
    }
}

impl Probing {
    async fn note(&self, call: &'static str) {
        let exists = applications(&self.client, &self.argocd_ns)
            .get_opt("loki")
            .await
            .unwrap()
            .is_some();
        self.seen.lock().unwrap().push((call, exists));
    }
}

impl WorkloadIdentity for Probing {
    fn planned_role(&self, owner: &RoleOwner, request: &RoleRequest) -> WorkloadRole {
        self.inner.planned_role(owner, request)
    }
    fn planned_resource(&self, owner: &RoleOwner, request: &RoleRequest) -> Resource {
        self.inner.planned_resource(owner, request)
    }
    fn ensure_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        request: &'a RoleRequest,
    ) -> BoxFuture<'a, Result<WorkloadRole, BoxError>> {
        Box::pin(async move {
            self.note("ensure").await;
            self.inner.ensure_role(owner, request).await
        })
    }
    fn delete_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        service_account: &'a ServiceAccount,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.note("delete").await;
            self.inner.delete_role(owner, service_account).await
        })
    }
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn loki_s_role_is_made_before_its_application_and_deleted_after_it() {
    let live = Live::start("role").await;
    let (name, ns, argocd_ns) = (live.name.clone(), live.ns("loki"), live.ns("argocd"));
    let identity = Arc::new(Probing {
        inner: RecordingIdentity::new(),
        client: live.helper.clone(),
        argocd_ns: argocd_ns.clone(),
        seen: Mutex::default(),
    });
    let body = async {
        let mut stack = Stack::new(&name);
        stack.add(
            Loki::new(live.cluster(), live.argocd())
                .namespace(&ns)
                .object_store(
                    Input::value(support::cloud::bucket()),
                    Input::value(Arc::clone(&identity) as WorkloadIdentityRef),
                ),
        );
        let stack = stack.build().unwrap();
        let options = live.options();
        stack.apply(&options).await.unwrap();
        let sa = ServiceAccount::new(&ns, "loki");
        assert!(identity.inner.roles.lock().unwrap().contains_key(&sa));
        let app = applications(&live.helper, &argocd_ns)
            .get("loki")
            .await
            .unwrap();
        let values = &app.data["spec"]["source"]["helm"]["valuesObject"];
        assert_eq!(
            values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
            format!("arn:aws:iam::123456789012:role/test-{ns}-loki")
        );
        assert_eq!(values["loki"]["storage"]["type"], "s3");

        stack.destroy(&options).await.unwrap();
        assert!(identity.inner.roles.lock().unwrap().is_empty());
        assert_eq!(
            identity.inner.calls(),
            [
                format!("ensure {name}/loki {ns}/loki"),
                format!("delete {name}/loki {ns}/loki"),
            ]
        );
        // made before the Application existed, deleted after it was gone
        assert_eq!(
            *identity.seen.lock().unwrap(),
            [("ensure", false), ("delete", false)]
        );
    };
    live.run("loki", body).await;
    live.stop().await;
}

/// An EBS volume of `class` for the claim `claim_ns/data`, as the driver would have made it.
fn volume(name: &str, class: &str, claim_ns: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": class,
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{name}")},
            "claimRef": {"namespace": claim_ns, "name": "data"},
        },
    }))
    .unwrap()
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn the_ebs_driver_goes_only_once_the_volumes_of_released_claims_are_gone() {
    let live = Live::start("ebs").await;
    let name = live.name.clone();
    let class = format!("{name}-gp3");
    let (user_pv, released_pv) = (format!("{name}-users"), format!("{name}-released"));
    let identity = RecordingIdentity::new();
    let pvs: Api<PersistentVolume> = Api::all(live.helper.clone());
    let body = async {
        // A user's claim of the class, alive, with its volume.
        let user_ns = live.ns("user");
        create_namespace(&live.helper, &user_ns).await;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(live.helper.clone(), &user_ns);
        let claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "volumeName": user_pv, "resources": {"requests": {"storage": "1Gi"}}}});
        claims
            .create(
                &PostParams::default(),
                &serde_json::from_value(claim).unwrap(),
            )
            .await
            .unwrap();
        pvs.create(&PostParams::default(), &volume(&user_pv, &class, &user_ns))
            .await
            .unwrap();

        let mut stack = Stack::new(&name);
        stack.add(
            EbsCsiDriver::new(live.cluster(), live.argocd(), identity.input())
                .storage_class_name(&class)
                .volume_release_timeout(Duration::from_secs(3)),
        );
        let stack = stack.build().unwrap();
        let options = live.options();
        stack.apply(&options).await.unwrap();
        let classes: Api<KubeStorageClass> = Api::all(live.helper.clone());
        let created = classes.get(&class).await.unwrap();
        assert_eq!(created.provisioner, "ebs.csi.aws.com");
        assert_eq!(
            created.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );

        // A volume whose claim went with its namespace (a module destroyed before the driver):
        // the driver has not deleted it yet.
        pvs.create(
            &PostParams::default(),
            &volume(&released_pv, &class, &live.ns("gone")),
        )
        .await
        .unwrap();
        let e = stack.destroy(&options).await.unwrap_err().to_string();
        println!("{e}");
        assert!(
            e.contains(&format!(
                "PersistentVolume {released_pv} (claim {}/data)",
                live.ns("gone")
            )) && !e.contains(&user_pv)
                && e.contains("volume_release_timeout"),
            "{e}"
        );
        assert!(
            classes.get_opt(&class).await.unwrap().is_some(),
            "the driver went before the volumes"
        );
        assert_eq!(identity.calls().len(), 1, "{:?}", identity.calls());

        // The driver deletes the volume; destroy again picks up and finishes.
        let driver = {
            let pvs = pvs.clone();
            let released_pv = released_pv.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                pvs.delete(&released_pv, &DeleteParams::default())
                    .await
                    .unwrap();
            })
        };
        stack.destroy(&options).await.unwrap();
        driver.await.unwrap();
        assert!(classes.get_opt(&class).await.unwrap().is_none());
        assert!(
            pvs.get_opt(&user_pv).await.unwrap().is_some(),
            "the user's volume went"
        );
        assert_eq!(
            identity.calls(),
            [
                format!("ensure {name}/aws-ebs-csi-driver kube-system/ebs-csi-controller-sa"),
                format!("delete {name}/aws-ebs-csi-driver kube-system/ebs-csi-controller-sa"),
            ]
        );
    };
    live.run("user", body).await;
    for pv in [&user_pv, &released_pv] {
        let _ = pvs.delete(pv, &DeleteParams::default()).await;
    }
    let _ = Api::<KubeStorageClass>::all(live.helper.clone())
        .delete(&class, &DeleteParams::default())
        .await;
    live.stop().await;
}
