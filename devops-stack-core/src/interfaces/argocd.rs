use serde::Serialize;

/// Where modules put their Argo CD `Application`s and where those deploy to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgoCdTarget {
    /// The namespace Argo CD watches for Applications.
    pub namespace: String,
    /// The Argo CD project of the stack's Applications.
    pub project: String,
    /// The destination server (`https://kubernetes.default.svc` for the cluster Argo CD runs in).
    pub destination_server: String,
}

/// A module output that provides Argo CD.
pub trait ArgoCdProvider {
    /// Where Applications go.
    fn argocd(&self) -> ArgoCdTarget;
}
