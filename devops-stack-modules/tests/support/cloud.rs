//! A cloud for tests: a cluster whose load balancers are NLBs (as on EKS), a workload identity
//! and DNS records that record every call, and the inputs of the cloud interfaces.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use devops_stack_core::interfaces::{
    Cluster, Dns01Solver, DnsRecord, DnsRecords, DnsZone, LoadBalancerScheme, ObjectStore,
    ObjectStoreKind, PolicyDocument, RecordKind, RoleOwner, RoleRequest, ServiceAccount, Statement,
    WorkloadIdentity, WorkloadIdentityRef, WorkloadRole,
};
use devops_stack_core::{BoxError, Context, Input, Module, ModuleResult, Planned, Resource};
use futures::future::BoxFuture;
use serde::Serialize;

/// A cluster in plans only, whose `LoadBalancer` Services get Network Load Balancers.
#[derive(Debug, Clone, Serialize)]
pub struct NlbCluster {
    pub name: String,
    pub base_domain: String,
}

impl Cluster for NlbCluster {
    fn name(&self) -> &str {
        &self.name
    }
    fn base_domain(&self) -> &str {
        &self.base_domain
    }
    fn load_balancer_annotations(&self, scheme: LoadBalancerScheme) -> BTreeMap<String, String> {
        nlb_annotations(scheme)
    }
    fn client(&self) -> Pin<Box<dyn Future<Output = Result<kube::Client, BoxError>> + Send + '_>> {
        Box::pin(async { Err("tests have no cluster".into()) })
    }
}

/// The annotations of a Network Load Balancer of `scheme`, made by the cloud controller (as
/// `devops-stack-aws`'s EKS cluster gives them).
pub fn nlb_annotations(scheme: LoadBalancerScheme) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([(
        "service.beta.kubernetes.io/aws-load-balancer-type".to_owned(),
        "nlb".to_owned(),
    )]);
    if scheme == LoadBalancerScheme::Internal {
        a.insert(
            "service.beta.kubernetes.io/aws-load-balancer-internal".to_owned(),
            "true".to_owned(),
        );
    }
    a
}

/// Provides the [`NlbCluster`].
pub struct NlbClusterModule(pub NlbCluster);

impl NlbClusterModule {
    pub fn new(name: &str, base_domain: &str) -> Self {
        NlbClusterModule(NlbCluster {
            name: name.into(),
            base_domain: base_domain.into(),
        })
    }
}

impl Module for NlbClusterModule {
    type Output = NlbCluster;
    fn id(&self) -> &str {
        "cluster"
    }
    fn kind(&self) -> &'static str {
        "nlb-cluster"
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<NlbCluster>> {
        Ok(Planned::new(self.0.clone()))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<NlbCluster> {
        Ok(self.0.clone())
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

/// A workload identity that makes roles in memory and records every call as
/// `ensure|delete <stack>/<module> <namespace>/<name>`.
#[derive(Debug, Default)]
pub struct RecordingIdentity {
    pub calls: Mutex<Vec<String>>,
    pub roles: Mutex<BTreeMap<ServiceAccount, (RoleOwner, RoleRequest)>>,
}

impl RecordingIdentity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// As the input modules take.
    pub fn input(self: &Arc<Self>) -> Input<WorkloadIdentityRef> {
        Input::value(Arc::clone(self) as WorkloadIdentityRef)
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn arn(sa: &ServiceAccount) -> String {
        format!(
            "arn:aws:iam::123456789012:role/test-{}-{}",
            sa.namespace, sa.name
        )
    }
}

impl WorkloadIdentity for RecordingIdentity {
    fn planned_role(&self, _owner: &RoleOwner, request: &RoleRequest) -> WorkloadRole {
        let sa = &request.service_account;
        WorkloadRole {
            id: Self::arn(sa),
            service_account: sa.clone(),
            annotations: BTreeMap::from([("eks.amazonaws.com/role-arn".to_owned(), Self::arn(sa))]),
        }
    }

    fn planned_resource(&self, owner: &RoleOwner, request: &RoleRequest) -> Resource {
        let sa = &request.service_account;
        Resource::cloud(
            "aws",
            "iam:Role",
            format!("test-{}-{}", sa.namespace, sa.name),
            serde_json::json!({
                "arn": Self::arn(sa),
                "owner": owner,
                "assumed_by": sa.to_string(),
                "policy": request.policy,
                "managed_policies": request.managed_policies,
            }),
        )
    }

    fn ensure_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        request: &'a RoleRequest,
    ) -> BoxFuture<'a, Result<WorkloadRole, BoxError>> {
        Box::pin(async move {
            let sa = &request.service_account;
            self.calls
                .lock()
                .unwrap()
                .push(format!("ensure {}/{} {sa}", owner.stack, owner.module));
            let mut roles = self.roles.lock().unwrap();
            if let Some((o, _)) = roles.get(sa)
                && o != owner
            {
                return Err(format!("the role of {sa} belongs to {}/{}", o.stack, o.module).into());
            }
            roles.insert(sa.clone(), (owner.clone(), request.clone()));
            Ok(self.planned_role(owner, request))
        })
    }

    fn delete_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        service_account: &'a ServiceAccount,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!(
                "delete {}/{} {service_account}",
                owner.stack, owner.module
            ));
            let mut roles = self.roles.lock().unwrap();
            if roles.get(service_account).is_some_and(|(o, _)| o == owner) {
                roles.remove(service_account);
            }
            Ok(())
        })
    }
}

/// DNS records in memory, with their owners, recording every call as
/// `ensure|delete <stack>/<module> <name> [-> target]`. Refuses to change another owner's record.
#[derive(Debug, Default)]
pub struct RecordingRecords {
    pub calls: Mutex<Vec<String>>,
    pub records: Mutex<HashMap<(String, RecordKind), (RoleOwner, DnsRecord)>>,
}

impl RecordingRecords {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The record `name` of kind CNAME, if any.
    pub fn cname(&self, name: &str) -> Option<(RoleOwner, DnsRecord)> {
        self.records
            .lock()
            .unwrap()
            .get(&(name.to_owned(), RecordKind::Cname))
            .cloned()
    }
}

/// The Route 53 zone `domain` (id `Z0TEST`), its records in `records`.
pub fn zone(domain: &str, records: &Arc<RecordingRecords>) -> DnsZone {
    DnsZone {
        domain: domain.into(),
        solver: Dns01Solver::new(
            "route53",
            serde_json::json!({"region": "eu-west-1", "hostedZoneID": "Z0TEST"}),
        ),
        change_policy: PolicyDocument::new().statement(Statement::allow(
            [
                "route53:ChangeResourceRecordSets",
                "route53:ListResourceRecordSets",
            ],
            ["arn:aws:route53:::hostedzone/Z0TEST"],
        )),
        records: Arc::new(ZoneRecords {
            domain: domain.into(),
            hosted_zone_id: "Z0TEST".into(),
            store: Arc::clone(records),
        }),
    }
}

/// The records of one zone, kept in a [`RecordingRecords`] (which may serve several zones), and
/// planned as Route 53's are.
#[derive(Debug)]
struct ZoneRecords {
    domain: String,
    hosted_zone_id: String,
    store: Arc<RecordingRecords>,
}

impl DnsRecords for ZoneRecords {
    fn ensure_record<'a>(
        &'a self,
        owner: &'a RoleOwner,
        record: &'a DnsRecord,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.store.calls.lock().unwrap().push(format!(
                "ensure {}/{} {} -> {}",
                owner.stack, owner.module, record.name, record.target
            ));
            let mut records = self.store.records.lock().unwrap();
            let key = (record.name.clone(), record.kind);
            if let Some((o, _)) = records.get(&key)
                && o != owner
            {
                return Err(format!("{} belongs to {}/{}", record.name, o.stack, o.module).into());
            }
            records.insert(key, (owner.clone(), record.clone()));
            Ok(())
        })
    }

    fn delete_record<'a>(
        &'a self,
        owner: &'a RoleOwner,
        name: &'a str,
        kind: RecordKind,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.store
                .calls
                .lock()
                .unwrap()
                .push(format!("delete {}/{} {name}", owner.stack, owner.module));
            let mut records = self.store.records.lock().unwrap();
            let key = (name.to_owned(), kind);
            if records.get(&key).is_some_and(|(o, _)| o == owner) {
                records.remove(&key);
            }
            Ok(())
        })
    }

    fn planned_record(&self, record: &DnsRecord) -> Resource {
        Resource::cloud(
            "aws",
            "route53:RecordSet",
            record.name.clone(),
            serde_json::json!({
                "hosted_zone_id": self.hosted_zone_id,
                "zone": self.domain,
                "type": record.kind,
                "target": record.target,
                "ttl": record.ttl,
            }),
        )
    }
}

/// The S3 bucket `prod-loki` in `eu-west-1`.
pub fn bucket() -> ObjectStore {
    let access = PolicyDocument::new()
        .statement(Statement::allow(
            ["s3:ListBucket", "s3:GetBucketLocation"],
            ["arn:aws:s3:::prod-loki"],
        ))
        .statement(Statement::allow(
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            ["arn:aws:s3:::prod-loki/*"],
        ));
    ObjectStore::new(ObjectStoreKind::S3, "prod-loki", "eu-west-1", access)
}
