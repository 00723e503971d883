//! Workload identity: a cloud role for one Kubernetes service account, asked for by the module
//! that deploys the workload, owned and destroyed by that module.
//!
//! A component module (Loki storing chunks in a bucket, cert-manager solving DNS-01) never
//! names a cloud: it holds an [`Input<WorkloadIdentityRef>`](crate::Input) and asks it for a
//! role with a typed [`PolicyDocument`]. The implementation (IRSA on EKS, in
//! `devops-stack-aws`) creates a role that only that service account can assume, and returns the
//! annotations to put on the ServiceAccount.
//!
//! ```
//! use devops_stack_core::interfaces::{PolicyDocument, RoleRequest, ServiceAccount, Statement};
//! let request = RoleRequest::new(
//!     ServiceAccount::new("loki", "loki"),
//!     PolicyDocument::new().statement(Statement::allow(
//!         ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
//!         ["arn:aws:s3:::prod-loki-chunks/*"],
//!     )),
//! );
//! assert!(request.policy.unscoped_statements().is_empty());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::context::Context;
use crate::error::BoxError;
use crate::plan::Resource;

/// A Kubernetes service account, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ServiceAccount {
    /// The service account `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Whether a statement allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Effect {
    /// The actions are allowed.
    Allow,
    /// The actions are denied (a deny wins over any allow).
    Deny,
}

/// One statement of a [`PolicyDocument`]: an effect, actions, and the resources they apply to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Allow or deny.
    pub effect: Effect,
    /// The actions (`s3:GetObject`).
    pub actions: Vec<String>,
    /// The resources, by identifier (ARN); `*` only through [`Statement::allow_unscoped`].
    pub resources: Vec<String>,
    /// Set by [`Statement::allow_unscoped`]: the actions cannot be scoped to a resource.
    pub unscoped: bool,
}

impl Statement {
    /// Allows `actions` on exactly `resources`.
    pub fn allow(
        actions: impl IntoIterator<Item = impl Into<String>>,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Statement {
            effect: Effect::Allow,
            actions: actions.into_iter().map(Into::into).collect(),
            resources: resources.into_iter().map(Into::into).collect(),
            unscoped: false,
        }
    }

    /// Denies `actions` on `resources`.
    pub fn deny(
        actions: impl IntoIterator<Item = impl Into<String>>,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Statement {
            effect: Effect::Deny,
            ..Statement::allow(actions, resources)
        }
    }

    /// Allows `actions` on every resource (`*`): only for actions the cloud cannot scope to a
    /// resource (`route53:ListHostedZones`, `ec2:DescribeAvailabilityZones`). Said on purpose,
    /// so that a reviewer sees it.
    pub fn allow_unscoped(actions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Statement {
            unscoped: true,
            ..Statement::allow(actions, ["*"])
        }
    }
}

/// A typed permissions policy: what the role may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    /// Its statements.
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// An empty policy (allows nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a statement.
    #[must_use]
    pub fn statement(mut self, statement: Statement) -> Self {
        self.statements.push(statement);
        self
    }

    /// The indexes of statements that use a wildcard resource without saying so with
    /// [`Statement::allow_unscoped`], or that have no action or no resource. Implementations
    /// refuse a policy where this is not empty.
    pub fn unscoped_statements(&self) -> Vec<usize> {
        self.statements
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.actions.is_empty()
                    || s.resources.is_empty()
                    || (!s.unscoped && s.resources.iter().any(|r| r == "*" || r.ends_with(":*")))
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// What a module asks for: a role for one service account, with one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleRequest {
    /// The only service account that may assume the role.
    pub service_account: ServiceAccount,
    /// What the role may do.
    pub policy: PolicyDocument,
    /// Policies the cloud predefines and maintains, attached by name
    /// (`service-role/AmazonEBSCSIDriverPolicy` on AWS), for components whose upstream documents
    /// one as their permissions.
    pub managed_policies: Vec<String>,
}

impl RoleRequest {
    /// A role for `service_account` allowed what `policy` says.
    pub fn new(service_account: ServiceAccount, policy: PolicyDocument) -> Self {
        RoleRequest {
            service_account,
            policy,
            managed_policies: Vec::new(),
        }
    }

    /// Attaches the cloud's predefined policy `name` as well (on AWS, the part of the ARN after
    /// `arn:aws:iam::aws:policy/`).
    #[must_use]
    pub fn managed_policy(mut self, name: impl Into<String>) -> Self {
        self.managed_policies.push(name.into());
        self
    }
}

/// Who owns a cloud resource made for a module (a role, a DNS record): the stack and the module
/// that asked for it. Only that module's destroy deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RoleOwner {
    /// The stack's name.
    pub stack: String,
    /// The module's id.
    pub module: String,
}

impl RoleOwner {
    /// The running module of `ctx`.
    pub fn of(ctx: &Context) -> Self {
        RoleOwner {
            stack: ctx.stack_name().to_owned(),
            module: ctx.module_id().to_owned(),
        }
    }
}

/// A role granted to a service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadRole {
    /// The role's identifier (an IAM role ARN on AWS).
    pub id: String,
    /// The service account that may assume it.
    pub service_account: ServiceAccount,
    /// The annotations the ServiceAccount needs (`eks.amazonaws.com/role-arn` with IRSA on EKS);
    /// empty when the implementation binds the role to the service account outside the cluster.
    pub annotations: BTreeMap<String, String>,
}

/// A cloud's workload identity, as a module sees it.
pub trait WorkloadIdentity: Send + Sync + fmt::Debug + 'static {
    /// The role `request` would get, offline (no cloud call), for plans.
    fn planned_role(&self, owner: &RoleOwner, request: &RoleRequest) -> WorkloadRole;

    /// The role `request` would get, as a resource of the offline plan (`aws iam:Role ...`, with
    /// its trust and policies).
    fn planned_resource(&self, owner: &RoleOwner, request: &RoleRequest) -> Resource;

    /// Creates the role, or brings an existing one of `owner` to `request` (idempotent). A role
    /// of the same name that `owner` does not own is an error, never taken over.
    ///
    /// Modules call it before they apply the objects that use the role. An implementation that
    /// binds the role outside the cluster relies on that order: when a stack switches to it from
    /// one that annotates the ServiceAccount, the binding exists before the annotation goes.
    fn ensure_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        request: &'a RoleRequest,
    ) -> BoxFuture<'a, Result<WorkloadRole, BoxError>>;

    /// Deletes the role of `service_account` if `owner` owns it; anything else is left alone.
    /// Deleting a role that does not exist succeeds. A role shared by several clusters loses
    /// this cluster's binding, and goes with the last one.
    fn delete_role<'a>(
        &'a self,
        owner: &'a RoleOwner,
        service_account: &'a ServiceAccount,
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// A shared workload identity.
pub type WorkloadIdentityRef = Arc<dyn WorkloadIdentity>;

/// A module output that provides workload identity (an EKS cluster).
pub trait WorkloadIdentityProvider {
    /// Its workload identity.
    fn workload_identity(&self) -> WorkloadIdentityRef;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_must_be_said_on_purpose() {
        let policy = PolicyDocument::new()
            .statement(Statement::allow(["s3:GetObject"], ["arn:aws:s3:::b/*"]))
            .statement(Statement::allow(["s3:ListAllMyBuckets"], ["*"]))
            .statement(Statement::allow_unscoped(["route53:ListHostedZones"]))
            .statement(Statement::allow(["s3:GetObject"], ["arn:aws:s3:::*"]))
            .statement(Statement::deny(Vec::<String>::new(), ["arn:aws:s3:::b"]));
        assert_eq!(policy.unscoped_statements(), vec![1, 3, 4]);
        assert_eq!(ServiceAccount::new("loki", "loki").to_string(), "loki/loki");
    }
}
