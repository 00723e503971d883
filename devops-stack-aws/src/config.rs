//! AWS configuration shared by the modules: region, endpoint override, credentials, retries.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::{HttpClient, SharedHttpClient};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// How the modules reach AWS.
///
/// Everything not set here comes from the SDK's standard chain
/// (`aws_config::defaults(BehaviorVersion::latest())`): `AWS_REGION`, `AWS_PROFILE`, the shared
/// config and credentials files, SSO, web identity, container and instance credentials, and
/// `AWS_ENDPOINT_URL`, which the SDK honours natively. An endpoint set here wins over
/// `AWS_ENDPOINT_URL`; either is used for every call, the EKS token's STS request included, so
/// the whole crate runs against an emulator.
///
/// ```
/// use devops_stack_aws::AwsConfig;
/// let aws = AwsConfig::new().region("eu-west-1").endpoint_url("http://127.0.0.1:5055").max_attempts(5);
/// assert_eq!(aws.region_name(), Some("eu-west-1"));
/// ```
#[derive(Clone, Default)]
pub struct AwsConfig {
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    max_attempts: Option<u32>,
    interceptors: Vec<SharedInterceptor>,
    http_client: Option<SharedHttpClient>,
}

impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("profile", &self.profile)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<provider>"),
            )
            .field("max_attempts", &self.max_attempts)
            .field("interceptors", &self.interceptors.len())
            .field(
                "http_client",
                &self.http_client.as_ref().map(|_| "<client>"),
            )
            .finish()
    }
}

/// The default number of attempts of each AWS call (throttling and transient errors are retried
/// with the SDK's standard exponential backoff).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

impl AwsConfig {
    /// The SDK's standard chain, with [`DEFAULT_MAX_ATTEMPTS`] attempts per call.
    pub fn new() -> Self {
        Self::default()
    }

    /// The region (default: from the environment or profile).
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// An endpoint for every AWS call (an emulator such as moto or LocalStack).
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The named profile of the shared config files.
    #[must_use]
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Explicit credentials instead of the standard chain (tests, assumed roles built by the caller).
    #[must_use]
    pub fn credentials(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(provider));
        self
    }

    /// Static credentials (an emulator's dummy keys, say); prefer the standard chain for real
    /// accounts.
    #[must_use]
    pub fn static_credentials(
        self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Self {
        self.credentials(Credentials::new(
            access_key_id,
            secret_access_key,
            session_token.map(str::to_owned),
            None,
            "devops-stack-static",
        ))
    }

    /// How many times each call is attempted (default [`DEFAULT_MAX_ATTEMPTS`]).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// An SDK interceptor on every EC2, IAM, EKS, Cognito, S3 and Route 53 call of the modules (recording
    /// the calls made, adding headers).
    #[must_use]
    pub fn interceptor(mut self, interceptor: impl Intercept + 'static) -> Self {
        self.interceptors.push(SharedInterceptor::new(interceptor));
        self
    }

    /// The HTTP client of every call (the SDK's replaying test client, a proxy-aware client).
    #[must_use]
    pub fn http_client(mut self, client: impl HttpClient + 'static) -> Self {
        self.http_client = Some(SharedHttpClient::new(client));
        self
    }

    /// The region set here, if any.
    pub fn region_name(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The endpoint set here, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    /// Loads the SDK configuration.
    ///
    /// # Errors
    /// [`Error::Config`] when no region is configured anywhere.
    pub async fn load(&self) -> Result<SdkConfig> {
        let retry = RetryConfig::standard()
            .with_max_attempts(self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS))
            .with_max_backoff(Duration::from_secs(20));
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry);
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile.clone());
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        if let Some(client) = &self.http_client {
            loader = loader.http_client(client.clone());
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::Config {
                problem: "no AWS region is configured".into(),
                fix: "set AWS_REGION, a region in the profile, or `.region(..)` on the module"
                    .into(),
            });
        }
        Ok(config)
    }

    /// The region and endpoint as plan properties.
    pub(crate) fn plan_properties(&self) -> Value {
        json!({"region": self.region, "endpoint_url": self.endpoint_url})
    }
}

macro_rules! service_clients {
    ($($method:ident => $sdk:ident;)*) => {
        impl AwsConfig {
            $(
                /// A client of the service with this configuration's interceptors.
                pub(crate) fn $method(&self, sdk: &SdkConfig) -> $sdk::Client {
                    let mut config = $sdk::config::Builder::from(sdk);
                    for interceptor in &self.interceptors {
                        config.push_interceptor(interceptor.clone());
                    }
                    $sdk::Client::from_conf(config.build())
                }
            )*
        }
    };
}

service_clients! {
    ec2_client => aws_sdk_ec2;
    iam_client => aws_sdk_iam;
    eks_client => aws_sdk_eks;
    cognito_client => aws_sdk_cognitoidentityprovider;
    elbv2_client => aws_sdk_elasticloadbalancingv2;
    elb_client => aws_sdk_elasticloadbalancing;
    s3_client => aws_sdk_s3;
    route53_client => aws_sdk_route53;
}

/// The setters every AWS module has (its struct has an `aws: AwsConfig` field).
macro_rules! aws_setters {
    ($t:ty) => {
        impl $t {
            /// The AWS configuration (default: the SDK's standard chain).
            #[must_use]
            pub fn aws(mut self, aws: $crate::AwsConfig) -> Self {
                self.aws = aws;
                self
            }

            /// The region (shorthand for the [`AwsConfig`]($crate::AwsConfig) setter).
            #[must_use]
            pub fn region(mut self, region: impl Into<String>) -> Self {
                self.aws = self.aws.region(region);
                self
            }

            /// An endpoint for every AWS call (an emulator, or an S3-compatible store); outputs
            /// that workloads use, like an object store, carry it too.
            #[must_use]
            pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
                self.aws = self.aws.endpoint_url(url);
                self
            }
        }
    };
}

pub(crate) use aws_setters;

/// The region of a loaded configuration (checked by [`AwsConfig::load`]).
impl AwsConfig {
    /// An S3 client that, against an emulator or an S3-compatible store on a host of its own
    /// (an endpoint override), addresses buckets by path rather than as subdomains of the host.
    pub(crate) fn s3_addressed(&self, sdk: &SdkConfig) -> aws_sdk_s3::Client {
        let client = self.s3_client(sdk);
        match sdk.endpoint_url() {
            Some(_) => aws_sdk_s3::Client::from_conf(
                client.config().to_builder().force_path_style(true).build(),
            ),
            None => client,
        }
    }
}

pub(crate) fn region_of(config: &SdkConfig) -> String {
    config.region().map(ToString::to_string).unwrap_or_default()
}
