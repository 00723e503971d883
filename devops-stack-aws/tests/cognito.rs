//! The `Cognito` module against moto: pool, domain, clients, group and users; re-runs; destroy
//! of only what the module owns.

mod common;

use aws_sdk_cognitoidentityprovider::Client;
use devops_stack_aws::cognito::{Cognito, CognitoOidc, DEFAULT_ADMIN_GROUP, User};
use devops_stack_core::interfaces::{Hostnames, OidcProvider};
use devops_stack_core::{RunOptions, Stack};

fn hosts() -> Hostnames {
    Hostnames::new("prod", "example.com")
}

fn cognito(endpoint: &str) -> Cognito {
    Cognito::new("cognito", hosts())
        .aws(common::aws(endpoint))
        .domain_prefix("prod-example-login")
        .user(User::new("alice", "alice@example.com").admin())
        .user(User::new("bob", "bob@example.com"))
}

async fn apply(module: Cognito) -> Result<CognitoOidc, devops_stack_core::Error> {
    let mut stack = Stack::new("test");
    let handle = stack.add(module);
    let report = stack.build()?.apply(&RunOptions::new()).await?;
    Ok((*report.output(&handle).expect("an output")).clone())
}

async fn destroy(module: Cognito) -> Result<(), devops_stack_core::Error> {
    let mut stack = Stack::new("test");
    stack.add(module);
    stack.build()?.destroy(&RunOptions::new()).await.map(drop)
}

async fn pools(client: &Client) -> Vec<String> {
    let out = client
        .list_user_pools()
        .max_results(60)
        .send()
        .await
        .unwrap();
    out.user_pools()
        .iter()
        .filter_map(|p| p.id().map(str::to_owned))
        .collect()
}

async fn client_names(client: &Client, pool: &str) -> Vec<String> {
    let out = client
        .list_user_pool_clients()
        .user_pool_id(pool)
        .max_results(60)
        .send()
        .await
        .unwrap();
    let mut names: Vec<String> = out
        .user_pool_clients()
        .iter()
        .filter_map(|c| c.client_name().map(str::to_owned))
        .collect();
    names.sort();
    names
}

async fn usernames(client: &Client, pool: &str) -> Vec<String> {
    let out = client.list_users().user_pool_id(pool).send().await.unwrap();
    let mut names: Vec<String> = out
        .users()
        .iter()
        .filter_map(|u| u.username().map(str::to_owned))
        .collect();
    names.sort();
    names
}

async fn group_members(client: &Client, pool: &str, group: &str) -> Option<Vec<String>> {
    let out = client
        .list_users_in_group()
        .user_pool_id(pool)
        .group_name(group)
        .send()
        .await
        .ok()?;
    Some(
        out.users()
            .iter()
            .filter_map(|u| u.username().map(str::to_owned))
            .collect(),
    )
}

async fn domain_owner(client: &Client, prefix: &str) -> Option<String> {
    let out = client
        .describe_user_pool_domain()
        .domain(prefix)
        .send()
        .await
        .unwrap();
    out.domain_description()
        .and_then(|d| d.user_pool_id())
        .map(str::to_owned)
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn create_rerun_and_destroy() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let client = Client::new(&common::sdk(&ep).await);

    let out = apply(cognito(&ep)).await.expect("created");
    let pool = out.user_pool_id.clone();
    assert_eq!(
        out.issuer_url,
        format!("https://cognito-idp.us-east-1.amazonaws.com/{pool}")
    );
    assert_eq!(
        out.client_names(),
        ["alertmanager", "argocd", "grafana", "prometheus"]
    );
    let grafana = out.client("grafana").unwrap();
    assert_eq!(
        grafana.authorization_url,
        "https://prod-example-login.auth.us-east-1.amazoncognito.com/oauth2/authorize"
    );
    assert_eq!(
        grafana.token_url,
        "https://prod-example-login.auth.us-east-1.amazoncognito.com/oauth2/token"
    );
    assert_eq!(
        grafana.userinfo_url,
        "https://prod-example-login.auth.us-east-1.amazoncognito.com/oauth2/userInfo"
    );
    assert_eq!(
        grafana.logout_url.as_deref(),
        Some("https://prod-example-login.auth.us-east-1.amazoncognito.com/logout")
    );
    assert_eq!(grafana.groups_claim, "cognito:groups");
    assert_eq!(grafana.scopes, ["openid", "email", "profile"]);
    assert!(!grafana.client_id.is_empty());
    assert!(
        !grafana.client_secret.is_empty(),
        "the secret comes from DescribeUserPoolClient"
    );
    // Secrets never show up in Debug or JSON.
    let secret = grafana.client_secret.expose().to_owned();
    assert!(!format!("{out:?}").contains(&secret));
    assert!(!serde_json::to_string(&out).unwrap().contains(&secret));

    // What moto holds.
    assert_eq!(pools(&client).await, std::slice::from_ref(&pool));
    assert_eq!(
        domain_owner(&client, "prod-example-login").await.as_deref(),
        Some(pool.as_str())
    );
    assert_eq!(
        client_names(&client, &pool).await,
        ["alertmanager", "argocd", "grafana", "prometheus"]
    );
    assert_eq!(usernames(&client, &pool).await, ["alice", "bob"]);
    assert_eq!(
        group_members(&client, &pool, DEFAULT_ADMIN_GROUP)
            .await
            .unwrap(),
        ["alice"]
    );
    let described = client
        .describe_user_pool_client()
        .user_pool_id(&pool)
        .client_id(&grafana.client_id)
        .send()
        .await
        .unwrap()
        .user_pool_client
        .unwrap();
    assert_eq!(
        described.callback_urls(),
        ["https://grafana.apps.prod.example.com/login/generic_oauth"]
    );
    assert_eq!(
        described.logout_urls(),
        ["https://grafana.apps.prod.example.com"]
    );
    assert_eq!(
        described.allowed_o_auth_scopes(),
        ["openid", "email", "profile"]
    );
    assert_eq!(described.allowed_o_auth_flows()[0].as_str(), "code");

    // A second run finds everything and creates nothing.
    let again = apply(cognito(&ep)).await.expect("re-run");
    assert_eq!(again.user_pool_id, pool);
    assert_eq!(
        again.client("grafana").unwrap().client_id,
        grafana.client_id
    );
    assert_eq!(
        again.client("grafana").unwrap().client_secret.expose(),
        secret
    );
    assert_eq!(pools(&client).await.len(), 1);
    assert_eq!(client_names(&client, &pool).await.len(), 4);
    assert_eq!(usernames(&client, &pool).await.len(), 2);
    assert_eq!(
        group_members(&client, &pool, DEFAULT_ADMIN_GROUP)
            .await
            .unwrap(),
        ["alice"]
    );

    // Destroy deletes the domain and the pool it created; a second destroy is a no-op.
    destroy(cognito(&ep)).await.expect("destroyed");
    assert!(pools(&client).await.is_empty());
    assert_eq!(domain_owner(&client, "prod-example-login").await, None);
    destroy(cognito(&ep)).await.expect("destroyed again");
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn adopted_pool_keeps_what_the_module_did_not_make() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let client = Client::new(&common::sdk(&ep).await);

    let pool = client
        .create_user_pool()
        .pool_name("shared")
        .send()
        .await
        .unwrap()
        .user_pool
        .unwrap();
    let pool = pool.id().unwrap().to_owned();
    client
        .create_user_pool_client()
        .user_pool_id(&pool)
        .client_name("legacy")
        .send()
        .await
        .unwrap();
    client
        .admin_create_user()
        .user_pool_id(&pool)
        .username("carol")
        .send()
        .await
        .unwrap();
    client
        .create_group()
        .user_pool_id(&pool)
        .group_name("ops")
        .send()
        .await
        .unwrap();

    let adopted = || {
        cognito(&ep)
            .existing_pool(pool.clone())
            .admin_group("platform-admins")
    };
    let out = apply(adopted()).await.expect("adopted");
    assert_eq!(out.user_pool_id, pool);
    assert_eq!(
        client_names(&client, &pool).await,
        ["alertmanager", "argocd", "grafana", "legacy", "prometheus"]
    );
    assert_eq!(usernames(&client, &pool).await, ["alice", "bob", "carol"]);
    assert_eq!(
        group_members(&client, &pool, "platform-admins")
            .await
            .unwrap(),
        ["alice"]
    );
    apply(adopted()).await.expect("re-run");
    assert_eq!(client_names(&client, &pool).await.len(), 5);

    destroy(adopted()).await.expect("destroyed");
    assert_eq!(
        pools(&client).await,
        std::slice::from_ref(&pool),
        "an adopted pool is never deleted"
    );
    assert_eq!(client_names(&client, &pool).await, ["legacy"]);
    assert_eq!(domain_owner(&client, "prod-example-login").await, None);
    assert!(
        group_members(&client, &pool, "platform-admins")
            .await
            .is_none(),
        "the module's group is deleted"
    );
    assert!(
        group_members(&client, &pool, "ops").await.is_some(),
        "other groups are kept"
    );
    assert_eq!(
        usernames(&client, &pool).await,
        ["alice", "bob", "carol"],
        "users are kept in an adopted pool"
    );
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_same_named_pool_of_someone_else_is_left_alone() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let client = Client::new(&common::sdk(&ep).await);

    let theirs = client
        .create_user_pool()
        .pool_name("prod")
        .send()
        .await
        .unwrap()
        .user_pool
        .unwrap();
    let theirs = theirs.id().unwrap().to_owned();
    let ours = apply(cognito(&ep)).await.expect("created");
    assert_ne!(ours.user_pool_id, theirs);
    assert_eq!(pools(&client).await.len(), 2);
    destroy(cognito(&ep)).await.expect("destroyed");
    assert_eq!(pools(&client).await, [theirs]);
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn a_domain_of_another_pool_is_a_clear_error() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let client = Client::new(&common::sdk(&ep).await);

    let other = client
        .create_user_pool()
        .pool_name("other")
        .send()
        .await
        .unwrap()
        .user_pool
        .unwrap();
    client
        .create_user_pool_domain()
        .domain("prod-example-login")
        .user_pool_id(other.id().unwrap())
        .send()
        .await
        .unwrap();
    let err = apply(cognito(&ep)).await.unwrap_err().to_string();
    assert!(
        err.contains("Cognito domain `prod-example-login` is in use"),
        "{err}"
    );
    assert!(err.contains("another user pool"), "{err}");
}

/// A module naming groups of the stack's provider, as a team's roles do.
struct GroupUser(Vec<devops_stack_core::interfaces::IdentityGroup>);

impl devops_stack_core::Module for GroupUser {
    type Output = ();
    fn id(&self) -> &str {
        "group-user"
    }
    fn kind(&self) -> &'static str {
        "group-user"
    }
    fn needs(&self, n: &mut devops_stack_core::Needs) {
        for g in &self.0 {
            n.add(g);
        }
    }
    fn validate(&self, v: &mut devops_stack_core::Validation) {
        for (i, g) in self.0.iter().enumerate() {
            v.uses_group(&format!("groups[{i}]"), g);
        }
    }
    async fn plan(
        &self,
        _: &devops_stack_core::Context,
    ) -> devops_stack_core::ModuleResult<devops_stack_core::Planned<()>> {
        Ok(devops_stack_core::Planned::new(()))
    }
    async fn apply(&self, _: &devops_stack_core::Context) -> devops_stack_core::ModuleResult<()> {
        Ok(())
    }
    async fn destroy(&self, _: &devops_stack_core::Context) -> devops_stack_core::ModuleResult<()> {
        Ok(())
    }
}

/// A stack of `module` and a module naming its groups `names`.
fn with_groups(module: Cognito, names: &[&str]) -> devops_stack_core::BuiltStack {
    let mut stack = Stack::new("test");
    let sso = stack.add(module);
    stack.add(GroupUser(names.iter().map(|n| sso.group(*n)).collect()));
    stack.build().expect("valid")
}

async fn group_description(client: &Client, pool: &str, group: &str) -> Option<Option<String>> {
    match client
        .get_group()
        .user_pool_id(pool)
        .group_name(group)
        .send()
        .await
    {
        Ok(out) => Some(out.group.and_then(|g| g.description().map(str::to_owned))),
        Err(_) => None,
    }
}

#[tokio::test]
#[ignore = "needs moto (DEVOPS_STACK_TEST_AWS_ENDPOINT): scripts/test.sh starts it"]
async fn the_groups_a_stack_names_are_created_an_existing_one_is_used_and_kept() {
    let ep = common::endpoint();
    let _guard = common::LOCK.lock().await;
    common::reset(&ep);
    let client = Client::new(&common::sdk(&ep).await);
    let pool = client
        .create_user_pool()
        .pool_name("corp")
        .send()
        .await
        .unwrap()
        .user_pool
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    // someone else's group, of a name a team also uses
    client
        .create_group()
        .user_pool_id(&pool)
        .group_name("shop-viewers")
        .description("made by hand")
        .send()
        .await
        .unwrap();
    let module = || cognito(&ep).existing_pool(pool.clone());
    let names = ["shop-deployers", "shop-viewers"];

    let plan = with_groups(module(), &names).plan().await.unwrap();
    let text = plan.to_text();
    assert!(
        text.contains("cognito:Group shop-deployers")
            && text.contains("cognito:Group shop-viewers"),
        "{text}"
    );

    let report = with_groups(module(), &names)
        .apply(&RunOptions::new())
        .await
        .expect("applied");
    let out = report.module("cognito").unwrap().output.clone().unwrap();
    assert_eq!(
        out["groups"],
        serde_json::json!([DEFAULT_ADMIN_GROUP, "shop-deployers", "shop-viewers"])
    );
    let marker = devops_stack_aws::cognito::group_marker("test", "cognito");
    assert_eq!(
        group_description(&client, &pool, "shop-deployers").await,
        Some(Some(marker.clone())),
        "created, with the module's marker"
    );
    assert_eq!(
        group_description(&client, &pool, "shop-viewers").await,
        Some(Some("made by hand".into())),
        "an existing group is used as it is"
    );

    with_groups(module(), &names)
        .destroy(&RunOptions::new())
        .await
        .expect("destroyed");
    assert_eq!(
        group_description(&client, &pool, "shop-deployers").await,
        None,
        "the group the module created goes"
    );
    assert_eq!(
        group_description(&client, &pool, "shop-viewers").await,
        Some(Some("made by hand".into())),
        "the existing group stays"
    );
}

#[test]
fn a_group_name_cognito_would_refuse_is_a_build_error() {
    let long = "g".repeat(129);
    let mut stack = Stack::new("test");
    let sso = stack.add(Cognito::new("cognito", hosts()).domain_prefix("prod-example-login"));
    stack.add(GroupUser(vec![
        sso.group("shop-deployers"),
        sso.group(long.as_str()),
    ]));
    let e = stack.build().unwrap_err();
    let errors = e.config_errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].module.as_deref(), Some("group-user"));
    assert_eq!(errors[0].field, "groups[1]");
    assert!(
        errors[0]
            .problem
            .contains("has 129 characters; Cognito allows 1 to 128"),
        "{}",
        errors[0].problem
    );
}
