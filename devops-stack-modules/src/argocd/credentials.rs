//! The credentials the stack reads or makes through Argo CD's API and keeps in Secrets: the
//! bootstrap's admin password and pipeline token, the tokens of the teams' project roles.

use std::time::Duration;

use devops_stack_core::Secret;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::api::ArgoCdApi;
use super::{ArgoCd, ArgoCdOutput};
use crate::chart::Env;
use crate::error::{Error, Result};

impl ArgoCd {
    /// The admin password: from `argocd-initial-admin-secret`, kept in the Secret `<id>-admin`
    /// (Argo CD advises deleting the initial one).
    pub(super) async fn admin_password(&self, client: &kube::Client, env: &Env) -> Result<Secret> {
        let ns = &self.common.namespace;
        let copy = format!("{}-admin", self.common.id);
        for attempt in 0..60 {
            let kept = read_key(client, ns, &copy, "password").await?;
            if let Some(p) = read_key(client, ns, "argocd-initial-admin-secret", "password").await?
            {
                // a re-apply finds the copy up to date and writes nothing
                if kept.as_ref().map(Secret::expose) != Some(p.expose()) {
                    keep_secret(client, env, ns, &copy, "password", &p).await?;
                }
                return Ok(p);
            }
            if let Some(p) = kept {
                return Ok(p);
            }
            if attempt == 0 {
                tracing::info!("waiting for argocd-initial-admin-secret");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Err(Error::Missing {
            object: format!("Secret {ns}/argocd-initial-admin-secret"),
            problem: format!(
                "neither it nor the copy {ns}/{copy} exists; set a new admin password in argocd-secret \
                 (`admin.password`, bcrypt) and store it under `password` in {ns}/{copy}"
            ),
        })
    }

    /// A token of the pipeline account: the one kept in the Secret `<id>-pipeline-token`, else a
    /// new one, kept there.
    pub(super) async fn pipeline_token(
        &self,
        client: &kube::Client,
        env: &Env,
        admin: &Secret,
    ) -> Result<Secret> {
        let ns = &self.common.namespace;
        let name = format!("{}-pipeline-token", self.common.id);
        if let Some(t) = read_key(client, ns, &name, "token").await? {
            return Ok(t);
        }
        let api = ArgoCdApi::new(
            client,
            ns,
            &self.common.release_name,
            self.spec.api_url.as_deref(),
        );
        let token = api
            .create_token(
                admin,
                &format!("/api/v1/account/{}/token", self.spec.pipeline_account),
                &json!({"name": self.spec.pipeline_account, "id": "devops-stack"}),
            )
            .await?;
        keep_secret(client, env, ns, &name, "token", &token).await?;
        Ok(token)
    }
}

/// The value of `key` in the Secret `ns/name`, if the Secret exists and the key is not empty.
pub(crate) async fn read_key(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<Secret>> {
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?;
    Ok(found
        .and_then(|s| s.data)
        .and_then(|d| d.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()))
        .filter(|v| !v.is_empty())
        .map(Secret::new))
}

/// Stores `value` under `key` in the Secret `name` (server-side apply). These secrets live in
/// Argo CD's namespace and go with it on destroy.
async fn keep_secret(
    client: &kube::Client,
    env: &Env,
    ns: &str,
    name: &str,
    key: &str,
    value: &Secret,
) -> Result<()> {
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), ns);
    let object = env.secret(name, ns, &[], [(key, value.expose())]);
    api.patch(
        name,
        &PatchParams::apply("devops-stack").force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|e| Error::kube(format!("writing Secret {ns}/{name}"), e))?;
    Ok(())
}

/// Issues the tokens of the teams' project roles, as Argo CD's admin.
pub(crate) struct TokenIssuer<'a> {
    client: &'a kube::Client,
    argocd: ArgoCdOutput,
}

impl<'a> TokenIssuer<'a> {
    pub(crate) fn new(client: &'a kube::Client, argocd: ArgoCdOutput) -> Self {
        TokenIssuer { client, argocd }
    }

    /// The token kept under `token` in the Secret `name` of Argo CD's namespace, if any.
    pub(crate) async fn read(&self, name: &str) -> Result<Option<Secret>> {
        read_key(self.client, &self.argocd.target.namespace, name, "token").await
    }

    /// A new token of the role `role` of `project` (never expiring; deleting the project or
    /// the role revokes it).
    pub(crate) async fn project_token(&self, project: &str, role: &str) -> Result<Secret> {
        let api = ArgoCdApi::new(
            self.client,
            &self.argocd.target.namespace,
            &self.argocd.release_name,
            self.argocd.api_url.as_deref(),
        );
        api.create_token(
            &self.argocd.admin_password,
            &format!("/api/v1/projects/{project}/roles/{role}/token"),
            &json!({"project": project, "role": role, "id": "devops-stack", "expiresIn": 0}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use devops_stack_core::interfaces::{ArgoCdTarget, Hostnames};
    use serde_json::Value;

    use super::*;
    use crate::argocd::{CHART_REPOSITORY, CHART_VERSION};
    use crate::chart::ChartSource;
    use crate::mock;

    fn env() -> Env {
        Env {
            module: "argocd".into(),
            cluster: Arc::new(mock::Offline),
            argocd: ArgoCdTarget {
                namespace: "argocd".into(),
                project: "default".into(),
                destination_server: "https://kubernetes.default.svc".into(),
            },
            labels: BTreeMap::new(),
            hostnames: Hostnames::new("c", "example.com"),
            monitors: None,
            roles: BTreeMap::new(),
        }
    }

    const SECRETS: &str = "/api/v1/namespaces/argocd/secrets";
    const PROXY: &str = "/api/v1/namespaces/argocd/services/argocd-server:80/proxy";

    /// Answers the read of `argocd-initial-admin-secret` with the password `pw`.
    async fn expect_initial_admin(server: &mut mock::Server) {
        let initial = mock::secret(
            "argocd",
            "argocd-initial-admin-secret",
            &[("password", "pw")],
        );
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-initial-admin-secret"),
                200,
                initial,
            )
            .await;
    }

    /// Answers the admin's login (password `pw`), then the creation of a token at `path` with
    /// `token`, made with the session: the creation's body.
    async fn expect_token(server: &mut mock::Server, path: &str, token: &str) -> Value {
        let login = server
            .expect(
                "POST",
                &format!("{PROXY}/api/v1/session"),
                200,
                json!({"token": "session"}),
            )
            .await;
        assert_eq!(login, json!({"username": "admin", "password": "pw"}));
        let create = server
            .expect(
                "POST",
                &format!("{PROXY}{path}"),
                200,
                json!({"token": token}),
            )
            .await;
        assert_eq!(create["__cookie"], "argocd.token=session");
        create
    }

    #[tokio::test]
    async fn reads_the_admin_password_and_creates_a_pipeline_token_once() {
        let (client, mut server) = mock::client();
        let module = ArgoCd::new(mock::offline_cluster());
        let run = tokio::spawn(async move {
            let env = env();
            let admin = module.admin_password(&client, &env).await.unwrap();
            let token = module.pipeline_token(&client, &env, &admin).await.unwrap();
            let again = module.pipeline_token(&client, &env, &admin).await.unwrap();
            (
                admin.expose().to_owned(),
                token.expose().to_owned(),
                again.expose().to_owned(),
            )
        });
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-admin"),
                404,
                mock::not_found(),
            )
            .await;
        expect_initial_admin(&mut server).await;
        let copy = server
            .expect("PATCH", &format!("{SECRETS}/argocd-admin"), 200, json!({}))
            .await;
        assert_eq!(copy["stringData"]["password"], "pw");
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-pipeline-token"),
                404,
                mock::not_found(),
            )
            .await;
        let create = expect_token(
            &mut server,
            "/api/v1/account/pipeline/token",
            "pipeline-jwt",
        )
        .await;
        assert_eq!(create["name"], "pipeline");
        let kept = server
            .expect(
                "PATCH",
                &format!("{SECRETS}/argocd-pipeline-token"),
                200,
                json!({}),
            )
            .await;
        assert_eq!(kept["stringData"]["token"], "pipeline-jwt");
        // a re-apply reads the kept token and makes no API call
        let stored = mock::secret(
            "argocd",
            "argocd-pipeline-token",
            &[("token", "pipeline-jwt")],
        );
        server
            .expect(
                "GET",
                &format!("{SECRETS}/argocd-pipeline-token"),
                200,
                stored,
            )
            .await;
        let (admin, token, again) = run.await.unwrap();
        assert_eq!(
            (admin.as_str(), token.as_str(), again.as_str()),
            ("pw", "pipeline-jwt", "pipeline-jwt")
        );
    }

    #[tokio::test]
    async fn an_up_to_date_copy_of_the_admin_password_is_not_written_again() {
        let (client, mut server) = mock::client();
        let module = ArgoCd::new(mock::offline_cluster());
        let run = tokio::spawn(async move {
            let admin = module.admin_password(&client, &env()).await.unwrap();
            admin.expose().to_owned()
        });
        let copy = mock::secret("argocd", "argocd-admin", &[("password", "pw")]);
        server
            .expect("GET", &format!("{SECRETS}/argocd-admin"), 200, copy)
            .await;
        expect_initial_admin(&mut server).await;
        // a PATCH of the copy would wait for an answer that never comes
        let admin = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("no write request after the two reads")
            .unwrap();
        assert_eq!(admin, "pw");
    }

    #[tokio::test]
    async fn issues_a_project_role_token_as_admin() {
        let (client, mut server) = mock::client();
        let argocd = ArgoCdOutput {
            target: env().argocd,
            release_name: "argocd".into(),
            chart: ChartSource::new(CHART_REPOSITORY, "argo-cd", CHART_VERSION),
            values: json!({}),
            admin_password: Secret::new("pw"),
            pipeline_account: "pipeline".into(),
            pipeline_token: Secret::new("pipeline-jwt"),
            api_url: None,
        };
        let run = tokio::spawn(async move {
            let issuer = TokenIssuer::new(&client, argocd);
            let kept = issuer.read("shop-ci-token").await.unwrap();
            let token = issuer.project_token("shop", "ci").await.unwrap();
            (kept.is_none(), token.expose().to_owned())
        });
        server
            .expect(
                "GET",
                &format!("{SECRETS}/shop-ci-token"),
                404,
                mock::not_found(),
            )
            .await;
        let create = expect_token(
            &mut server,
            "/api/v1/projects/shop/roles/ci/token",
            "project-jwt",
        )
        .await;
        assert_eq!(
            (create["project"].as_str(), create["role"].as_str()),
            (Some("shop"), Some("ci"))
        );
        assert_eq!(run.await.unwrap(), (true, "project-jwt".to_owned()));
    }
}
