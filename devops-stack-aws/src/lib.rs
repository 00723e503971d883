//! AWS modules for devops-stack: a [`Vpc`](vpc::Vpc) network, an [`Eks`](eks::Eks) cluster
//! with its IAM roles, OIDC provider and managed node groups, [`Cognito`](cognito::Cognito)
//! as the stack's OIDC provider, an [`S3Bucket`](s3::S3Bucket) as a component's object store
//! (Loki's), and the user's Route 53 [`HostedZone`](route53::HostedZone) for DNS-01 challenges
//! and the records modules own. From an empty account, `Vpc` → `Eks` (through
//! [`Eks::network`](eks::Eks::network), with no role ARNs) creates everything the cluster needs.
//!
//! Every resource created carries the [`tags::STACK_TAG`] and [`tags::MODULE_TAG`] tags; nothing
//! without them is ever updated or deleted, and a destroy removes what they mark, in the order AWS
//! needs. The cluster's output also gives modules workload identity through the core
//! `WorkloadIdentity` interface: IRSA ([`iam::EksWorkloadIdentity`], the default) or EKS Pod
//! Identity ([`iam::EksPodIdentity`]), one setting of the cluster apart
//! ([`Eks::workload_identity`](eks::Eks::workload_identity)).
//!
//! Both read their AWS configuration from the SDK's standard chain (environment, profiles, SSO,
//! instance roles) unless told otherwise with [`AwsConfig`]; an endpoint override
//! (`AWS_ENDPOINT_URL` or [`AwsConfig::endpoint_url`]) is used for every call, the EKS token's
//! STS request included, so everything runs against an emulator such as moto.
//!
//! The [`EksCluster`](eks::EksCluster) output implements the core `Cluster` interface, with a
//! Kubernetes client authenticated by EKS tokens; the [`CognitoOidc`](cognito::CognitoOidc)
//! output implements `OidcProvider`, with one app client per consuming app.
//!
//! ```
//! use devops_stack_aws::cognito::{Cognito, User};
//! use devops_stack_aws::eks::{Eks, NodeGroup};
//! use devops_stack_core::Stack;
//! use devops_stack_core::interfaces::Hostnames;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut stack = Stack::new("prod");
//! let eks = stack.add(
//!     Eks::new("eks", "prod", "example.com")
//!         .region("eu-west-1")
//!         .version("1.35")
//!         .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
//!         .subnets(["subnet-aaa", "subnet-bbb"])
//!         .node_group(NodeGroup::new("default", "arn:aws:iam::123456789012:role/eks-nodes").scaling(2, 3, 5)),
//! );
//! let cognito = stack.add(
//!     Cognito::new("cognito", Hostnames::new("prod", "example.com"))
//!         .region("eu-west-1")
//!         .domain_prefix("prod-example-login")
//!         .user(User::new("alice", "alice@example.com").admin()),
//! );
//! let _cluster = eks.cluster(); // an Input<ClusterRef> for the modules that deploy into it
//! let _grafana = cognito.oidc("grafana"); // an Input<Oidc>
//!
//! // Planning is offline: no AWS call is made.
//! let plan = stack.build()?.plan().await?;
//! let text = plan.to_text();
//! assert!(text.contains("aws eks:Cluster prod"));
//! assert!(text.contains("aws eks:Nodegroup prod/default"));
//! assert!(text.contains("aws cognito:UserPoolClient argocd"));
//! # Ok::<_, devops_stack_core::Error>(())
//! # }).unwrap();
//! ```

pub mod cognito;
mod config;
pub mod eks;
mod error;
pub mod iam;
pub mod lock;
pub mod route53;
pub mod s3;
pub mod tags;
pub mod vpc;
mod wait;

pub use config::{AwsConfig, DEFAULT_MAX_ATTEMPTS};
pub use error::{Error, Result};
pub use wait::Polling;
