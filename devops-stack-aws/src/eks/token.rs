//! EKS bearer tokens, made the way `aws-iam-authenticator` and `aws eks get-token` make them, and
//! the tower layer that puts a fresh one on every Kubernetes request.
//!
//! A token is `k8s-aws-v1.` followed by the unpadded base64url encoding of a presigned STS
//! `GetCallerIdentity` URL. The URL is signed with SigV4 in its query string, expires in 60
//! seconds and signs the `x-k8s-aws-id` header holding the cluster's name, so that a token made
//! for one cluster is refused by another. EKS accepts a token for about 15 minutes after it was
//! signed; [`EksAuthLayer`] signs a new one every [`TOKEN_REFRESH`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devops_stack_core::{BoxError, Secret};
use http::HeaderValue;

use crate::config::region_of;
use crate::error::{Error, Result};

/// The prefix of every EKS token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// The header that binds a token to one cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";

/// How long the presigned URL is valid (`X-Amz-Expires`).
pub const PRESIGN_EXPIRY: Duration = Duration::from_secs(60);

/// How often [`EksAuthLayer`] signs a new token (EKS accepts one for about 15 minutes).
pub const TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);

/// Signs EKS tokens for one cluster with the credentials of an SDK configuration.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use devops_stack_aws::{AwsConfig, eks::TokenSource};
/// let sdk = AwsConfig::new().region("eu-west-1").load().await?;
/// let token = TokenSource::new(&sdk, "prod")?.token().await?;
/// assert!(token.expose().starts_with("k8s-aws-v1."));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenSource {
    cluster: String,
    region: String,
    sts_url: String,
    credentials: SharedCredentialsProvider,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .field("sts_url", &self.sts_url)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `cluster`, signing with `sdk`'s credentials for its region, against its
    /// endpoint override when it has one (`https://sts.<region>.amazonaws.com/` otherwise).
    ///
    /// # Errors
    /// [`Error::Token`] when `sdk` has no credentials provider.
    pub fn new(sdk: &SdkConfig, cluster: impl Into<String>) -> Result<Self> {
        let cluster = cluster.into();
        let region = region_of(sdk);
        let credentials = sdk.credentials_provider().ok_or_else(|| Error::Token {
            cluster: cluster.clone(),
            reason: "the AWS configuration has no credentials provider".into(),
        })?;
        let base = match sdk.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://sts.{region}.amazonaws.com"),
        };
        Ok(TokenSource {
            cluster,
            region,
            sts_url: format!("{base}/?Action=GetCallerIdentity&Version=2011-06-15"),
            credentials,
        })
    }

    /// The cluster the tokens are for.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// A token signed now.
    ///
    /// # Errors
    /// [`Error::Token`] when the credentials cannot be resolved or signing fails.
    pub async fn token(&self) -> Result<Secret> {
        self.token_at(SystemTime::now()).await
    }

    /// A token signed as of `time`.
    ///
    /// # Errors
    /// As [`TokenSource::token`].
    pub async fn token_at(&self, time: SystemTime) -> Result<Secret> {
        let fail = |reason: String| Error::Token {
            cluster: self.cluster.clone(),
            reason,
        };
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| fail(format!("cannot resolve AWS credentials: {e}")))?;
        let identity: Identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(PRESIGN_EXPIRY);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("sts")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| fail(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "GET",
            self.sts_url.as_str(),
            [(CLUSTER_ID_HEADER, self.cluster.as_str())].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| fail(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| fail(e.to_string()))?
            .into_parts();
        let mut request = http::Request::get(&self.sts_url)
            .body(())
            .map_err(|e| fail(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(Secret::new(format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(request.uri().to_string())
        )))
    }
}

/// A tower layer adding `Authorization: Bearer <EKS token>` to every request, signing a new
/// token every [`TOKEN_REFRESH`]. Used by [`EksCluster::client`](super::EksCluster); use it with
/// [`kube::client::ClientBuilder::with_layer`] for a custom client.
#[derive(Debug, Clone)]
pub struct EksAuthLayer {
    source: Arc<TokenSource>,
    refresh: Duration,
}

impl EksAuthLayer {
    /// A layer signing with `source`.
    pub fn new(source: TokenSource) -> Self {
        EksAuthLayer {
            source: Arc::new(source),
            refresh: TOKEN_REFRESH,
        }
    }

    /// How often to sign a new token (default [`TOKEN_REFRESH`]; keep it well under 15 minutes).
    #[must_use]
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }
}

impl<S> tower::Layer<S> for EksAuthLayer {
    type Service = EksAuth<S>;

    fn layer(&self, inner: S) -> EksAuth<S> {
        EksAuth {
            inner,
            source: self.source.clone(),
            refresh: self.refresh,
            current: None,
            signing: None,
        }
    }
}

type Signing = Pin<Box<dyn Future<Output = Result<Secret>> + Send>>;

/// The service of [`EksAuthLayer`]. A new token is signed in `poll_ready`, so that `call` never
/// waits and a request never leaves with an expired token.
pub struct EksAuth<S> {
    inner: S,
    source: Arc<TokenSource>,
    refresh: Duration,
    current: Option<(HeaderValue, Instant)>,
    signing: Option<Signing>,
}

impl<S> fmt::Debug for EksAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EksAuth")
            .field("cluster", &self.source.cluster)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl<S, B> tower::Service<http::Request<B>> for EksAuth<S>
where
    S: tower::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let fresh = self
            .current
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < self.refresh);
        if !fresh {
            let source = self.source.clone();
            let signing = self
                .signing
                .get_or_insert_with(|| Box::pin(async move { source.token().await }));
            let token = match signing.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(token) => token,
            };
            self.signing = None;
            let token = token?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))?;
            value.set_sensitive(true);
            self.current = Some((value, Instant::now()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some((value, _)) = &self.current {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
        }
        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_config::Region;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::future;
    use tower::{Layer, Service};

    use super::*;

    /// Counts how often credentials are resolved, i.e. how often a token is signed.
    #[derive(Debug)]
    struct Counting(Arc<AtomicUsize>);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKID", "SECRET", None, None, "test",
            )))
        }
    }

    /// Records the `Authorization` header of each request.
    #[derive(Clone, Default)]
    struct Record(Arc<Mutex<Vec<HeaderValue>>>);

    impl Service<http::Request<()>> for Record {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Ready<Result<(), Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            let value = request.headers()[http::header::AUTHORIZATION].clone();
            self.0.lock().unwrap().push(value);
            std::future::ready(Ok(()))
        }
    }

    async fn send_three(layer: &EksAuthLayer) -> Vec<HeaderValue> {
        let record = Record::default();
        let mut service = layer.layer(record.clone());
        for _ in 0..3 {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .unwrap();
            service.call(http::Request::new(())).await.unwrap();
        }
        record.0.lock().unwrap().clone()
    }

    fn source(count: &Arc<AtomicUsize>) -> TokenSource {
        let sdk = SdkConfig::builder()
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(Counting(count.clone())))
            .build();
        TokenSource::new(&sdk, "prod").unwrap()
    }

    #[tokio::test]
    async fn tokens_are_reused_until_the_refresh_interval() {
        let count = Arc::new(AtomicUsize::new(0));
        let headers = send_three(&EksAuthLayer::new(source(&count))).await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "one token for three requests"
        );
        assert_eq!(headers.len(), 3);
        for h in &headers {
            assert!(h.is_sensitive(), "the header is marked sensitive");
            assert!(h.to_str().unwrap().starts_with("Bearer k8s-aws-v1."));
        }
    }

    #[tokio::test]
    async fn tokens_are_resigned_after_the_refresh_interval() {
        let count = Arc::new(AtomicUsize::new(0));
        send_three(&EksAuthLayer::new(source(&count)).refresh(Duration::ZERO)).await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            3,
            "a new token for every request"
        );
    }

    #[test]
    fn debug_shows_no_credentials() {
        let count = Arc::new(AtomicUsize::new(0));
        let text = format!("{:?}", source(&count));
        assert!(
            text.contains("prod") && text.contains("sts.eu-west-1.amazonaws.com"),
            "{text}"
        );
        assert!(!text.contains("AKID") && !text.contains("SECRET"), "{text}");
    }
}
