//! An existing cluster, reached through a kubeconfig file.

use std::path::PathBuf;

use super::LocalCluster;
use crate::context::Context;
use crate::module::{Module, ModuleResult, Planned};
use crate::validate::{self, Capability, Interface, Validation};

/// An existing cluster from a kubeconfig file and context. Applying it checks that the file and
/// context load; destroying it does nothing (the cluster is not the stack's to delete).
///
/// ```
/// use devops_stack_core::clusters::Kubeconfig;
/// let prod = Kubeconfig::new("prod", "/etc/kube/prod.yaml", "example.com").context("prod-admin");
/// assert_eq!(prod.cluster().name, "prod");
/// ```
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    id: String,
    cluster: LocalCluster,
}

impl Kubeconfig {
    /// The cluster of `path`'s current context, named `id` in hostnames, under `base_domain`.
    pub fn new(
        id: impl Into<String>,
        path: impl Into<PathBuf>,
        base_domain: impl Into<String>,
    ) -> Self {
        let id = id.into();
        Kubeconfig {
            cluster: LocalCluster {
                name: id.clone(),
                base_domain: base_domain.into(),
                kubeconfig: path.into(),
                context: None,
            },
            id,
        }
    }

    /// The context to use instead of the current one.
    #[must_use]
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.cluster.context = Some(context.into());
        self
    }

    /// The cluster's name in hostnames (default: the module id).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cluster.name = name.into();
        self
    }

    /// The cluster this module outputs.
    pub fn cluster(&self) -> &LocalCluster {
        &self.cluster
    }
}

/// Checks the fields [`Kubeconfig`] and [`Kind`](super::Kind) share.
pub(super) fn validate_cluster(v: &mut Validation, c: &LocalCluster, must_exist: bool) {
    v.provides(Capability::Interface(Interface::Cluster));
    v.dns_label("name", &c.name);
    v.check(
        "base_domain",
        validate::base_domain(&c.base_domain),
        "use a domain you control, or `<ip>.nip.io` for a local cluster",
    );
    if c.kubeconfig.as_os_str().is_empty() {
        v.error(
            "kubeconfig",
            "is empty",
            "give the path of a kubeconfig file",
        );
    } else if must_exist && !c.kubeconfig.is_file() {
        v.error(
            "kubeconfig",
            format!("`{}` is not a file", c.kubeconfig.display()),
            "give the path of an existing kubeconfig file",
        );
    }
    if c.context.as_deref() == Some("") {
        v.error(
            "context",
            "is empty",
            "name a context of the kubeconfig, or leave it unset for the current one",
        );
    }
}

impl Module for Kubeconfig {
    type Output = LocalCluster;

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "kubeconfig"
    }

    fn validate(&self, v: &mut Validation) {
        validate_cluster(v, &self.cluster, true);
    }

    async fn plan(&self, _ctx: &Context) -> ModuleResult<Planned<LocalCluster>> {
        Ok(Planned::new(self.cluster.clone()))
    }

    async fn apply(&self, _ctx: &Context) -> ModuleResult<LocalCluster> {
        self.cluster.config().await?;
        Ok(self.cluster.clone())
    }

    async fn read(&self, _ctx: &Context) -> ModuleResult<Option<LocalCluster>> {
        self.cluster.config().await?;
        Ok(Some(self.cluster.clone()))
    }

    /// Deletes nothing of the cluster (it was not created by the stack); waits until the
    /// namespaces and CRDs the stack's modules deleted from it are gone.
    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        crate::k8s::settle(ctx, &self.cluster.name).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_fields() {
        let m = Kubeconfig::new("prod", "/nonexistent/kubeconfig", "localhost")
            .name("Prod")
            .context("");
        let mut v = Validation::new("prod");
        m.validate(&mut v);
        let fields: Vec<&str> = v.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "base_domain", "kubeconfig", "context"]);
        assert!(v.errors()[2].problem.contains("/nonexistent/kubeconfig"));
    }
}
