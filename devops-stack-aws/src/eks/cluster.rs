//! [`EksCluster`], the output of the [`Eks`](super::Eks) module.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

use devops_stack_core::interfaces::{
    Cluster, LoadBalancerScheme, WorkloadIdentityProvider, WorkloadIdentityRef,
};
use devops_stack_core::{BoxError, Secret};
use futures::future::BoxFuture;
use serde::Serialize;

use super::WorkloadIdentityMode;
use super::token::{EksAuthLayer, TokenSource};
use crate::config::AwsConfig;
use crate::error::{Error, Result};
use crate::iam::{EksPodIdentity, EksWorkloadIdentity};

/// A live (or planned) EKS cluster: what the [`Eks`](super::Eks) module outputs.
///
/// It implements [`Cluster`], and therefore `ClusterProvider`: pass the handle's `cluster()` to
/// the modules that deploy into it. Its Kubernetes client authenticates with EKS tokens signed
/// from the module's AWS credentials, refreshed every 10 minutes.
#[derive(Clone, Serialize)]
pub struct EksCluster {
    /// The cluster's name.
    pub name: String,
    /// The base domain of the stack's hostnames on this cluster.
    pub base_domain: String,
    /// The AWS region.
    pub region: String,
    /// The API server endpoint (`https://...eks.amazonaws.com`).
    pub endpoint: String,
    /// The API server's CA bundle: base64 of PEM, as EKS returns it.
    pub certificate_authority_data: String,
    /// The cluster's ARN.
    pub arn: String,
    /// The OIDC issuer of the cluster's service-account tokens (for IRSA), if any.
    pub oidc_issuer_url: Option<String>,
    /// The Kubernetes version (`1.35`).
    pub version: String,
    /// The ARN of the cluster's IAM OIDC provider (for IRSA), once it exists.
    pub oidc_provider_arn: Option<String>,
    /// How [`workload_identity`](WorkloadIdentityProvider::workload_identity) gives roles.
    pub workload_identity_mode: WorkloadIdentityMode,
    #[serde(skip)]
    pub(crate) tokens: Option<TokenSource>,
    #[serde(skip)]
    pub(crate) aws: Option<AwsConfig>,
}

impl fmt::Debug for EksCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EksCluster")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("arn", &self.arn)
            .field("oidc_issuer_url", &self.oidc_issuer_url)
            .field("version", &self.version)
            .field("workload_identity_mode", &self.workload_identity_mode)
            .finish_non_exhaustive()
    }
}

impl EksCluster {
    /// A bearer token for the cluster's API, valid for about 15 minutes.
    ///
    /// # Errors
    /// [`Error::Client`] for a planned cluster (no credentials); [`Error::Token`] when signing fails.
    pub async fn token(&self) -> Result<Secret> {
        self.token_source()?.token().await
    }

    fn token_source(&self) -> Result<&TokenSource> {
        self.tokens.as_ref().ok_or_else(|| Error::Client {
            cluster: self.name.clone(),
            reason: "this cluster comes from an offline plan; apply the stack first".into(),
        })
    }

    /// The AWS configuration of the cluster's module, in the cluster's region.
    ///
    /// # Errors
    /// [`Error::Client`] for a planned cluster (no configuration).
    pub(crate) fn aws_config(&self) -> Result<AwsConfig> {
        let aws = self.aws.clone().ok_or_else(|| Error::Client {
            cluster: self.name.clone(),
            reason: "this cluster comes from an offline plan; apply the stack first".into(),
        })?;
        Ok(if self.region.is_empty() {
            aws
        } else {
            aws.region(&self.region)
        })
    }

    /// A Kubernetes client for the cluster, authenticated with EKS tokens that are re-signed
    /// every 10 minutes.
    ///
    /// # Errors
    /// [`Error::Client`] when the endpoint or CA data are invalid, or this is a planned cluster.
    pub fn kube_client(&self) -> Result<kube::Client> {
        let fail = |reason: String| Error::Client {
            cluster: self.name.clone(),
            reason,
        };
        if self.endpoint.is_empty() {
            return Err(fail(
                "the cluster no longer exists (a destroy stopped after deleting it); the objects in it went with it".into(),
            ));
        }
        let tokens = self.token_source()?.clone();
        devops_stack_core::k8s::install_tls_provider();
        let uri: http::Uri = self
            .endpoint
            .parse()
            .map_err(|e| fail(format!("invalid endpoint `{}`: {e}", self.endpoint)))?;
        let mut config = kube::Config::new(uri);
        if !self.certificate_authority_data.is_empty() {
            config.root_cert =
                Some(pem_certificates(&self.certificate_authority_data).map_err(fail)?);
        }
        let client = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| fail(e.to_string()))?
            .with_layer(&EksAuthLayer::new(tokens))
            .build();
        Ok(client)
    }
}

impl WorkloadIdentityProvider for EksCluster {
    /// The cluster's [`WorkloadIdentityMode`]: IRSA through the cluster's OIDC provider
    /// ([`EksWorkloadIdentity`]), or EKS Pod Identity ([`EksPodIdentity`]); for a planned
    /// cluster, one that names roles but cannot create them.
    fn workload_identity(&self) -> WorkloadIdentityRef {
        let account = self.arn.split(':').nth(4).unwrap_or_default();
        if self.workload_identity_mode == WorkloadIdentityMode::PodIdentity {
            return match &self.aws {
                Some(aws) if !account.is_empty() => Arc::new(EksPodIdentity::live(
                    &self.name,
                    &self.region,
                    account,
                    aws.clone(),
                )),
                _ => Arc::new(EksPodIdentity::planned(&self.name, &self.region)),
            };
        }
        match (&self.oidc_provider_arn, &self.oidc_issuer_url, &self.aws) {
            (Some(provider), Some(issuer), Some(aws)) if !account.is_empty() => {
                Arc::new(EksWorkloadIdentity::live(
                    &self.name,
                    &self.region,
                    account,
                    provider.clone(),
                    issuer.trim_start_matches("https://").to_owned(),
                    aws.clone(),
                ))
            }
            _ => Arc::new(EksWorkloadIdentity::planned(&self.name, &self.region)),
        }
    }
}

/// The annotation asking the cluster's cloud controller for a Network Load Balancer.
pub const NLB_TYPE_ANNOTATION: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
/// The annotation making the cloud controller's load balancer internal.
pub const INTERNAL_ANNOTATION: &str = "service.beta.kubernetes.io/aws-load-balancer-internal";

impl Cluster for EksCluster {
    /// A Network Load Balancer made by the cluster's cloud controller (no AWS Load Balancer
    /// Controller needed): `aws-load-balancer-type: nlb`, and `aws-load-balancer-internal` for an
    /// internal one (in the private subnets, which the [`Vpc`](crate::vpc::Vpc) module tags
    /// `kubernetes.io/role/internal-elb`; public ones `kubernetes.io/role/elb`). The cloud
    /// controller tags it `kubernetes.io/cluster/<name>`, which is how a destroy finds it.
    fn load_balancer_annotations(
        &self,
        scheme: LoadBalancerScheme,
    ) -> std::collections::BTreeMap<String, String> {
        let mut a =
            std::collections::BTreeMap::from([(NLB_TYPE_ANNOTATION.to_owned(), "nlb".to_owned())]);
        if scheme == LoadBalancerScheme::Internal {
            a.insert(INTERNAL_ANNOTATION.to_owned(), "true".to_owned());
        }
        a
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn base_domain(&self) -> &str {
        &self.base_domain
    }

    fn oidc_issuer_url(&self) -> Option<&str> {
        self.oidc_issuer_url.as_deref()
    }

    fn server(&self) -> Option<String> {
        Some(self.endpoint.clone()).filter(|e| !e.is_empty())
    }

    fn client(&self) -> BoxFuture<'_, Result<kube::Client, BoxError>> {
        Box::pin(async move { self.kube_client().map_err(Into::into) })
    }
}

/// The DER certificates of EKS's CA data (base64 of a PEM bundle).
fn pem_certificates(data: &str) -> Result<Vec<Vec<u8>>, String> {
    let pem = STANDARD
        .decode(data.trim())
        .map_err(|e| format!("the CA data is not base64: {e}"))?;
    let pem = String::from_utf8(pem).map_err(|_| "the CA data is not a PEM bundle".to_owned())?;
    let mut certs = Vec::new();
    for block in pem.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body = block
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap_or_default();
        let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        certs.push(
            STANDARD
                .decode(body)
                .map_err(|e| format!("a certificate of the CA data is not base64: {e}"))?,
        );
    }
    if certs.is_empty() {
        return Err("the CA data holds no certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_decode_to_der() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBQY=\n-----END CERTIFICATE-----\n";
        let data = STANDARD.encode(pem);
        assert_eq!(
            pem_certificates(&data).unwrap(),
            vec![vec![0, 1, 2, 3, 4], vec![5, 6]]
        );
        assert!(
            pem_certificates(&STANDARD.encode("nothing"))
                .unwrap_err()
                .contains("no certificate")
        );
        assert!(pem_certificates("!!").unwrap_err().contains("not base64"));
    }

    /// The client sends `Authorization: Bearer k8s-aws-v1.<...>` to the API server.
    #[tokio::test]
    async fn client_authenticates_with_an_eks_token() {
        use aws_config::{BehaviorVersion, Region, SdkConfig};
        use aws_credential_types::Credentials;
        use aws_credential_types::provider::SharedCredentialsProvider;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed early");
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"major":"1","minor":"33","gitVersion":"v1.33.0-eks","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":"linux/amd64"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });

        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKID", "SECRET", None, None, "test",
            )))
            .build();
        let cluster = EksCluster {
            name: "prod".into(),
            base_domain: "example.com".into(),
            region: "eu-west-1".into(),
            endpoint: format!("http://127.0.0.1:{port}"),
            certificate_authority_data: String::new(),
            arn: "arn:aws:eks:eu-west-1:123456789012:cluster/prod".into(),
            oidc_issuer_url: None,
            version: "1.33".into(),
            oidc_provider_arn: None,
            workload_identity_mode: WorkloadIdentityMode::Irsa,
            aws: None,
            tokens: Some(TokenSource::new(&sdk, "prod").unwrap()),
        };
        let client = Cluster::client(&cluster).await.unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.minor, "33");
        let request = server.await.unwrap();
        let auth = request
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.trim().to_owned())
            .expect("an authorization header");
        let token = auth
            .strip_prefix("Bearer k8s-aws-v1.")
            .expect("a bearer EKS token");
        // The token's URL signs for the STS of the cluster's region.
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
    }

    #[test]
    fn a_planned_cluster_has_no_client() {
        let cluster = EksCluster {
            name: "prod".into(),
            base_domain: "example.com".into(),
            region: "eu-west-1".into(),
            endpoint: "(known after apply: eks.endpoint)".into(),
            certificate_authority_data: String::new(),
            arn: String::new(),
            oidc_issuer_url: None,
            version: "1.33".into(),
            oidc_provider_arn: None,
            workload_identity_mode: WorkloadIdentityMode::Irsa,
            tokens: None,
            aws: None,
        };
        let err = cluster.kube_client().err().expect("no client").to_string();
        assert!(err.contains("offline plan"), "{err}");

        // The mode chooses the workload identity: IRSA annotates, Pod Identity does not.
        use devops_stack_core::interfaces::{
            PolicyDocument, RoleOwner, RoleRequest, ServiceAccount,
        };
        let owner = RoleOwner {
            stack: "prod".into(),
            module: "loki".into(),
        };
        let request = RoleRequest::new(ServiceAccount::new("loki", "loki"), PolicyDocument::new());
        let irsa = cluster.workload_identity().planned_role(&owner, &request);
        assert!(
            irsa.id.ends_with(":role/prod-irsa-loki-loki"),
            "{}",
            irsa.id
        );
        assert!(
            irsa.annotations
                .contains_key(crate::iam::ROLE_ARN_ANNOTATION)
        );
        let pods = EksCluster {
            workload_identity_mode: WorkloadIdentityMode::PodIdentity,
            ..cluster
        };
        let role = pods.workload_identity().planned_role(&owner, &request);
        assert!(
            role.id.ends_with(":role/prod-loki-loki-loki"),
            "{}",
            role.id
        );
        assert!(role.annotations.is_empty());
    }
}
