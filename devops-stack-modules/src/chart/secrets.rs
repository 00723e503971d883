//! Secrets of generated values a module keeps in the cluster: placeholders in the offline
//! plan, on apply the values already there or new random ones.

use std::collections::BTreeMap;

use devops_stack_core::Secret;
use devops_stack_core::plan::unknown;

use crate::error::{Error, Result};

/// A secret of generated values the module keeps in the cluster, with the keys it holds
/// ([`ChartSpec::generated_secrets`](super::ChartSpec::generated_secrets)).
#[derive(Debug, Clone)]
pub struct GeneratedSecret {
    /// The Secret's name.
    pub name: String,
    /// The Secret's namespace.
    pub namespace: String,
    /// The keys holding a generated value.
    pub keys: Vec<String>,
}

/// The values of a module's [`GeneratedSecret`]s, handed to
/// [`ChartSpec::render`](super::ChartSpec::render): placeholders while planning; on apply, the
/// values already in the cluster, and new random ones for missing keys (so a re-apply keeps
/// them).
#[derive(Debug, Default)]
pub struct Secrets(BTreeMap<(String, String), Secret>);

/// The length of generated secrets.
const GENERATED_LEN: usize = 32;

impl Secrets {
    pub(crate) fn placeholders(module: &str, wanted: &[GeneratedSecret]) -> Self {
        let mut s = Secrets::default();
        for g in wanted {
            for k in &g.keys {
                s.0.insert(
                    (g.name.clone(), k.clone()),
                    Secret::new(unknown(module, &format!("secret.{}.{k}", g.name))),
                );
            }
        }
        s
    }

    pub(crate) async fn load(client: &kube::Client, wanted: &[GeneratedSecret]) -> Result<Self> {
        use k8s_openapi::api::core::v1::Secret as KubeSecret;
        let mut s = Secrets::default();
        for g in wanted {
            let api: kube::Api<KubeSecret> = kube::Api::namespaced(client.clone(), &g.namespace);
            let existing = api.get_opt(&g.name).await.map_err(|e| {
                Error::kube(format!("reading Secret {}/{}", g.namespace, g.name), e)
            })?;
            let data = existing.and_then(|x| x.data).unwrap_or_default();
            for k in &g.keys {
                let value = data
                    .get(k)
                    .and_then(|b| String::from_utf8(b.0.clone()).ok())
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| Secret::generate(GENERATED_LEN), Secret::new);
                s.0.insert((g.name.clone(), k.clone()), value);
            }
        }
        Ok(s)
    }

    /// The value of `key` of the generated secret `name`.
    ///
    /// # Panics
    /// When the module did not declare that key in
    /// [`ChartSpec::generated_secrets`](super::ChartSpec::generated_secrets) (a bug).
    pub fn get(&self, name: &str, key: &str) -> &Secret {
        self.0
            .get(&(name.to_owned(), key.to_owned()))
            .unwrap_or_else(|| panic!("secret {name}/{key} was not declared in generated_secrets"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;

    #[tokio::test]
    async fn reapply_keeps_existing_secrets_and_generates_missing_ones() {
        let (client, mut server) = mock::client();
        let wanted = vec![GeneratedSecret {
            name: "kc-secrets".into(),
            namespace: "keycloak".into(),
            keys: vec!["client-argocd".into(), "client-grafana".into()],
        }];
        let load = tokio::spawn(async move { Secrets::load(&client, &wanted).await.unwrap() });
        server
            .expect(
                "GET",
                "/api/v1/namespaces/keycloak/secrets/kc-secrets",
                200,
                mock::secret("keycloak", "kc-secrets", &[("client-argocd", "kept-value")]),
            )
            .await;
        let secrets = load.await.unwrap();
        assert_eq!(
            secrets.get("kc-secrets", "client-argocd").expose(),
            "kept-value"
        );
        let generated = secrets.get("kc-secrets", "client-grafana").expose();
        assert_eq!(generated.len(), GENERATED_LEN);
    }

    #[tokio::test]
    async fn first_apply_generates_everything() {
        let (client, mut server) = mock::client();
        let wanted = vec![GeneratedSecret {
            name: "s".into(),
            namespace: "n".into(),
            keys: vec!["a".into()],
        }];
        let load = tokio::spawn(async move { Secrets::load(&client, &wanted).await.unwrap() });
        server
            .expect(
                "GET",
                "/api/v1/namespaces/n/secrets/s",
                404,
                mock::not_found(),
            )
            .await;
        assert_eq!(
            load.await.unwrap().get("s", "a").expose().len(),
            GENERATED_LEN
        );
    }

    #[test]
    fn plans_show_placeholders() {
        let wanted = [GeneratedSecret {
            name: "s".into(),
            namespace: "n".into(),
            keys: vec!["a".into()],
        }];
        let s = Secrets::placeholders("kc", &wanted);
        assert_eq!(
            s.get("s", "a").expose(),
            "(known after apply: kc.secret.s.a)"
        );
    }
}
