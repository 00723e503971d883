//! Clusters that are not cloud resources: an existing cluster from a kubeconfig
//! ([`Kubeconfig`]), and a local kind cluster ([`Kind`]). Both output a [`LocalCluster`], which
//! implements [`crate::interfaces::Cluster`].
//!
//! ```
//! use devops_stack_core::Stack;
//! use devops_stack_core::clusters::{Kind, Kubeconfig};
//!
//! let mut stack = Stack::new("dev");
//! let cluster = stack.add(Kind::new("kind").base_domain("127-0-0-1.nip.io"));
//! let _input = cluster.cluster(); // what modules that deploy to it take
//! # let _ = Kubeconfig::new("prod", "/etc/kube/prod.yaml", "example.com").context("prod-admin");
//! ```

mod kind;
mod kubeconfig;

use std::path::PathBuf;

use futures::future::BoxFuture;
use kube::config::{KubeConfigOptions, Kubeconfig as KubeconfigFile};
use serde::Serialize;

pub use kind::Kind;
pub use kubeconfig::Kubeconfig;

use crate::error::{BoxError, Error, Result};
use crate::interfaces::{Cluster, KubeconfigSource};
use crate::k8s::KubeError;

/// A cluster reached through a kubeconfig file: the output of [`Kubeconfig`] and [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalCluster {
    /// The cluster's name (in hostnames).
    pub name: String,
    /// The base domain of its hostnames.
    pub base_domain: String,
    /// The kubeconfig file.
    pub kubeconfig: PathBuf,
    /// The context to use; the file's current context when `None`.
    pub context: Option<String>,
}

impl LocalCluster {
    /// The client configuration from the kubeconfig, without contacting the cluster.
    ///
    /// # Errors
    /// [`KubeError::Kubeconfig`] when the file cannot be read or has no such context.
    pub async fn config(&self) -> Result<kube::Config> {
        let fail = |reason: String| {
            Error::from(KubeError::Kubeconfig {
                path: self.kubeconfig.display().to_string(),
                reason,
            })
        };
        let file = KubeconfigFile::read_from(&self.kubeconfig).map_err(|e| fail(e.to_string()))?;
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|e| fail(e.to_string()))
    }

    /// A client for the cluster.
    ///
    /// # Errors
    /// As [`LocalCluster::config`], and when the client cannot be built (TLS settings).
    pub async fn connect(&self) -> Result<kube::Client> {
        let config = self.config().await?;
        crate::k8s::install_tls_provider();
        kube::Client::try_from(config).map_err(|e| {
            Error::from(KubeError::Kubeconfig {
                path: self.kubeconfig.display().to_string(),
                reason: e.to_string(),
            })
        })
    }
}

impl Cluster for LocalCluster {
    fn name(&self) -> &str {
        &self.name
    }

    fn server(&self) -> Option<String> {
        let file = KubeconfigFile::read_from(&self.kubeconfig).ok()?;
        let context = self
            .context
            .clone()
            .or_else(|| file.current_context.clone())?;
        let cluster = file
            .contexts
            .iter()
            .find(|c| c.name == context)?
            .context
            .as_ref()?
            .cluster
            .clone();
        file.clusters
            .iter()
            .find(|c| c.name == cluster)?
            .cluster
            .as_ref()?
            .server
            .clone()
    }

    /// The file and the context named, or the file's current context.
    fn kubeconfig(&self) -> Option<KubeconfigSource> {
        let context = match &self.context {
            Some(context) => Some(context.clone()),
            None => KubeconfigFile::read_from(&self.kubeconfig)
                .ok()
                .and_then(|file| file.current_context),
        };
        Some(KubeconfigSource {
            path: self.kubeconfig.clone(),
            context,
        })
    }

    fn base_domain(&self) -> &str {
        &self.base_domain
    }

    fn client(&self) -> BoxFuture<'_, std::result::Result<kube::Client, BoxError>> {
        Box::pin(async move { Ok(self.connect().await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: 'https://127.0.0.1:6443'}
users:
- name: u
  user: {token: abc}
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: team}
current-context: ctx
";

    #[tokio::test]
    async fn loads_a_kubeconfig_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let mut cluster = LocalCluster {
            name: "prod".into(),
            base_domain: "example.com".into(),
            kubeconfig: path.clone(),
            context: Some("ctx".into()),
        };
        assert_eq!(
            cluster.kubeconfig(),
            Some(KubeconfigSource {
                path: path.clone(),
                context: Some("ctx".into())
            })
        );
        cluster.context = None;
        assert_eq!(
            cluster.kubeconfig().unwrap().context.as_deref(),
            Some("ctx"),
            "the file's current context"
        );
        cluster.context = Some("ctx".into());
        let config = cluster.config().await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(config.default_namespace, "team");
        cluster.context = Some("missing".into());
        let e = cluster.config().await.unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("kubeconfig"), "{e}");
        assert_eq!(
            cluster.hostnames().host("grafana"),
            "grafana.apps.prod.example.com"
        );
    }
}
