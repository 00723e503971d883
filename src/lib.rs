#![doc = include_str!("../README.md")]
//!
//! # Crates
//! - the core ([`Stack`], [`Module`], the executor, plans, interfaces and the Kubernetes
//!   engine) is re-exported at the root, from `devops-stack-core`;
//! - [`modules`]: the component modules (`devops-stack-modules`);
//! - [`aws`]: the VPC, EKS (with IRSA and the cleanup before the cluster goes), S3 buckets, Route 53
//!   zones and records, and Cognito (`devops-stack-aws`).

pub use devops_stack_core::*;

/// The component modules: Argo CD, Traefik, ingress-nginx, cert-manager, kube-prometheus-stack,
/// Loki, Keycloak, metrics-server.
pub use devops_stack_modules as modules;

/// The AWS side: network, EKS cluster, S3 buckets, Route 53 zones and Cognito OIDC.
#[cfg(feature = "aws")]
pub use devops_stack_aws as aws;

#[cfg(feature = "progress")]
pub mod progress;

#[cfg(feature = "cli")]
pub mod cli;
