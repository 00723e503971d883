use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::ClusterRef;
use crate::context::Context;
use crate::error::BoxError;
use crate::handle::Needs;
use crate::plan::Resource;
use crate::secret::Secret;

/// What a hub's Argo CD uses to reach a spoke: the `config` of Argo CD's cluster Secret. Its
/// `Debug` redacts the token and the key; only [`argocd_config`](Self::argocd_config) shows
/// them, for the Secret itself.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SpokeCredentials {
    /// A bearer token (a ServiceAccount's, made on the spoke).
    pub bearer_token: Option<Secret>,
    /// The spoke API server's certificate authority, base64 of its PEM.
    pub ca_data: Option<String>,
    /// A client certificate and key (base64 of their PEM).
    pub client_certificate: Option<(String, Secret)>,
    /// Other keys of Argo CD's cluster config an implementation sets, as Argo CD names them
    /// (`awsAuthConfig` for a cloud's IAM, `execProviderConfig`).
    pub provider: BTreeMap<String, Value>,
}

impl SpokeCredentials {
    /// Credentials of a bearer token, trusting `ca_data`.
    pub fn bearer(token: Secret, ca_data: Option<String>) -> Self {
        SpokeCredentials {
            bearer_token: Some(token),
            ca_data,
            ..Self::default()
        }
    }

    /// Credentials an implementation sets through Argo CD's own `key` (`awsAuthConfig`),
    /// trusting `ca_data`.
    pub fn provider(key: impl Into<String>, config: Value, ca_data: Option<String>) -> Self {
        SpokeCredentials {
            ca_data,
            provider: BTreeMap::from([(key.into(), config)]),
            ..Self::default()
        }
    }

    /// The `config` of Argo CD's cluster Secret, secrets included: for the Secret only.
    pub fn argocd_config(&self) -> Value {
        let mut config = Map::new();
        if let Some(token) = &self.bearer_token {
            config.insert("bearerToken".into(), json!(token.expose()));
        }
        let mut tls = Map::new();
        tls.insert("insecure".into(), json!(false));
        if let Some(ca) = &self.ca_data {
            tls.insert("caData".into(), json!(ca));
        }
        if let Some((cert, key)) = &self.client_certificate {
            tls.insert("certData".into(), json!(cert));
            tls.insert("keyData".into(), json!(key.expose()));
        }
        config.insert("tlsClientConfig".into(), Value::Object(tls));
        for (k, v) in &self.provider {
            config.insert(k.clone(), v.clone());
        }
        Value::Object(config)
    }
}

/// How a hub's Argo CD authenticates to a spoke: made on the spoke (a ServiceAccount and its
/// token; an access entry for the hub's IAM role on EKS) when the spoke is registered, and
/// removed when it is unregistered.
pub trait SpokeAuth: Send + Sync + fmt::Debug + 'static {
    /// What it is, for plans (`service-account token`).
    fn describe(&self) -> String;

    /// The handles it reads (a hub's role).
    fn needs(&self, _needs: &mut Needs) {}

    /// What registering makes on the spoke or in the cloud, for the offline plan.
    fn planned_resources(&self, _ctx: &Context, _spoke: &ClusterRef) -> Vec<Resource> {
        Vec::new()
    }

    /// Makes (or finds) the credentials on `spoke`; idempotent.
    fn credentials<'a>(
        &'a self,
        ctx: &'a Context,
        spoke: &'a ClusterRef,
    ) -> BoxFuture<'a, Result<SpokeCredentials, BoxError>>;

    /// Removes what [`credentials`](Self::credentials) made; removing what is gone succeeds.
    fn revoke<'a>(
        &'a self,
        ctx: &'a Context,
        spoke: &'a ClusterRef,
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// A shared spoke authentication.
pub type SpokeAuthRef = Arc<dyn SpokeAuth>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_argocds_keys_and_debug_hides_the_token() {
        let c = SpokeCredentials::bearer(Secret::new("t0ken"), Some("Q0E=".into()));
        assert_eq!(
            c.argocd_config(),
            json!({"bearerToken": "t0ken", "tlsClientConfig": {"insecure": false, "caData": "Q0E="}})
        );
        assert!(!format!("{c:?}").contains("t0ken"));
        let aws = SpokeCredentials::provider(
            "awsAuthConfig",
            json!({"clusterName": "b", "roleARN": "arn:aws:iam::1:role/hub"}),
            None,
        );
        assert_eq!(aws.argocd_config()["awsAuthConfig"]["clusterName"], "b");
        assert!(aws.argocd_config().get("bearerToken").is_none());
    }
}
