//! A ServiceAccount token made on the spoke for the hub's Argo CD: what `argocd cluster add`
//! makes, owned and removed by the registration.

use std::time::Duration;

use base64::Engine as _;
use devops_stack_core::interfaces::{ClusterRef, SpokeAuth, SpokeCredentials};
use devops_stack_core::k8s::Deployer;
use devops_stack_core::{BoxError, Context, Resource, Secret};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::Api;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The name of the objects [`ServiceAccountToken`] makes for the hub of `stack`.
pub(crate) fn binding_name(stack: &str) -> String {
    format!("devops-stack-{stack}-argocd")
}

/// The hub authenticates with the token of a ServiceAccount made on the spoke, bound to a
/// ClusterRole that may manage everything (Argo CD deploys the platform's CRDs and cluster
/// roles), and trusts the CA the spoke's token controller puts beside the token. The objects
/// are named after the hub's stack (`devops-stack-<stack>-argocd`) in `kube-system`, carry the
/// registration's ownership labels, and are deleted when the spoke is unregistered.
#[derive(Debug, Clone)]
pub struct ServiceAccountToken {
    namespace: String,
    wait: Duration,
}

impl Default for ServiceAccountToken {
    fn default() -> Self {
        ServiceAccountToken {
            namespace: "kube-system".into(),
            wait: Duration::from_secs(60),
        }
    }
}

impl ServiceAccountToken {
    /// A token in `kube-system`, waited for up to 60 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Another namespace for the ServiceAccount and its token.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    fn name(ctx: &Context) -> String {
        binding_name(ctx.stack_name())
    }

    /// Makes the ClusterRoleBinding the owner of the other objects, so that deleting it (the
    /// one request the token can still make, as it revokes the token's rights) deletes them
    /// too, through the garbage collector. Written once, by a field manager of its own.
    async fn owned_by_binding(&self, ctx: &Context, client: &kube::Client) -> Result<()> {
        use k8s_openapi::api::core::v1::ServiceAccount;
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
        use kube::api::{Patch, PatchParams};
        let name = Self::name(ctx);
        let fail = |what: &str, e| Error::kube(format!("{what} {name}"), e);
        let binding = Api::<ClusterRoleBinding>::all(client.clone())
            .get(&name)
            .await
            .map_err(|e| fail("reading ClusterRoleBinding", e))?;
        let uid = binding.metadata.uid.unwrap_or_default();
        let owner = serde_json::json!({"metadata": {"ownerReferences": [{
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "name": name, "uid": uid,
        }]}});
        let params = PatchParams::default();
        let owned = |refs: Option<
            &Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
        >| { refs.is_some_and(|r| r.iter().any(|o| o.uid == uid)) };
        let roles = Api::<ClusterRole>::all(client.clone());
        let role = roles
            .get(&name)
            .await
            .map_err(|e| fail("reading ClusterRole", e))?;
        if !owned(role.metadata.owner_references.as_ref()) {
            roles
                .patch(&name, &params, &Patch::Merge(&owner))
                .await
                .map_err(|e| fail("owning ClusterRole", e))?;
        }
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &self.namespace);
        let account = accounts
            .get(&name)
            .await
            .map_err(|e| fail("reading ServiceAccount", e))?;
        if !owned(account.metadata.owner_references.as_ref()) {
            accounts
                .patch(&name, &params, &Patch::Merge(&owner))
                .await
                .map_err(|e| fail("owning ServiceAccount", e))?;
        }
        Ok(())
    }

    fn objects(&self, ctx: &Context) -> Vec<Value> {
        let name = Self::name(ctx);
        vec![
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": self.namespace},
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ],
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": self.namespace}],
            }),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": {
                    "name": name, "namespace": self.namespace,
                    "annotations": {"kubernetes.io/service-account.name": name},
                },
            }),
        ]
    }

    async fn make(&self, ctx: &Context, spoke: &ClusterRef) -> Result<SpokeCredentials> {
        let deployer = Deployer::for_module(ctx, spoke).await?;
        deployer.apply(self.objects(ctx)).await?;
        let name = Self::name(ctx);
        let api: Api<KubeSecret> = Api::namespaced(deployer.client().clone(), &self.namespace);
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Wait {
                    object: format!("Secret {}/{name} on spoke `{}`", self.namespace, spoke.name()),
                    what: "its token".into(),
                    waited: self.wait,
                    state: "no `token` in its data".into(),
                    fix: "check that the spoke's kube-controller-manager runs its token controller (`--service-account-private-key-file`)".into(),
                });
            }
            let secret = api
                .get_opt(&name)
                .await
                .map_err(|e| Error::kube(format!("reading Secret {}/{name}", self.namespace), e))?;
            if secret.is_none() {
                // the token controller deletes a token Secret that came before its
                // ServiceAccount (the objects are applied in parallel): the ServiceAccount is
                // there now, so the Secret is made again
                deployer.apply(self.objects(ctx)).await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let data = secret.as_ref().and_then(|s| s.data.as_ref());
            if let Some(token) = data.and_then(|d| d.get("token")) {
                self.owned_by_binding(ctx, deployer.client()).await?;
                let token = String::from_utf8_lossy(&token.0).into_owned();
                let ca = data
                    .and_then(|d| d.get("ca.crt"))
                    .map(|c| base64::engine::general_purpose::STANDARD.encode(&c.0));
                return Ok(SpokeCredentials::bearer(Secret::new(token), ca));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl SpokeAuth for ServiceAccountToken {
    fn describe(&self) -> String {
        format!(
            "ServiceAccount token made on the spoke (in `{}`)",
            self.namespace
        )
    }

    fn planned_resources(&self, ctx: &Context, spoke: &ClusterRef) -> Vec<Resource> {
        self.objects(ctx)
            .iter()
            .map(|o| Resource::kubernetes(spoke.name(), o))
            .collect()
    }

    fn credentials<'a>(
        &'a self,
        ctx: &'a Context,
        spoke: &'a ClusterRef,
    ) -> BoxFuture<'a, std::result::Result<SpokeCredentials, BoxError>> {
        Box::pin(async move { self.make(ctx, spoke).await.map_err(Into::into) })
    }

    fn revoke<'a>(
        &'a self,
        ctx: &'a Context,
        spoke: &'a ClusterRef,
    ) -> BoxFuture<'a, std::result::Result<(), BoxError>> {
        Box::pin(async move {
            Deployer::for_module(ctx, spoke).await?.destroy().await?;
            Ok(())
        })
    }
}
