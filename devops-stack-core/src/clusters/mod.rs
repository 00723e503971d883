//! Clusters that are not cloud resources: an existing cluster from a kubeconfig, and a local
//! kind cluster.
