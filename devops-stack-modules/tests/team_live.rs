//! Live tests of the team layer against the cluster whose kubeconfig path is in
//! `DEVOPS_STACK_TEST_KUBECONFIG` (skipped, saying so, when it is unset).
//!
//! The cluster needs no nodes and no Argo CD: Argo CD's CRDs are installed in a minimal form
//! (any fields, no status subresource, like Argo CD's own) when they are missing, and left
//! alone when they exist; a helper task plays Argo CD's part for the team's Applications (it
//! marks them Synced and Healthy and drops their finalizer when they are deleted).
//!
//! ```text
//! DEVOPS_STACK_TEST_KUBECONFIG=~/.kube/config cargo test -p devops-stack-modules --test team_live
//! ```

use devops_stack_core::k8s::KubeEngine;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef, IN_CLUSTER, IdentityGroup};
use devops_stack_core::k8s::{KubeOptions, diff_stack, state_name};
use devops_stack_core::{Input, RunOptions, Secret, Stack};
use devops_stack_modules::team::*;
use devops_stack_test::live::{Counting, kubeconfig, local, required_var};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret as KubeSecret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::GroupVersionKind;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "live-token-do-not-print";
const SSH_KEY: &str = "live-ssh-key-do-not-print";

fn argo(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind),
        plural,
    )
}

/// Installs a minimal CRD of Argo CD's `kind` unless one exists (never touching an existing
/// one): any fields, and no status subresource, as in Argo CD's own CRDs.
async fn ensure_argo_crd(client: &kube::Client, kind: &str, plural: &str) {
    let name = format!("{plural}.argoproj.io");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    if api.get_opt(&name).await.unwrap().is_none() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": "argoproj.io", "scope": "Namespaced",
                "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
        // Applied under the field manager of the core's live tests, which apply their own
        // Application CRD: whichever test comes first, the other can still apply.
        api.patch(
            &name,
            &PatchParams::apply("devops-stack-live-tests"),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("creating CRD {name}: {e}"));
    }
    let established = kube::runtime::wait::await_condition(
        api,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(60), established)
        .await
        .unwrap()
        .unwrap();
}

/// Plays Argo CD for the Applications of `ns`: THIS MARKS THEM Synced/Healthy ITSELF (in the
/// main object, as Argo CD's CRD has no status subresource; through the subresource too, for a
/// CRD that another test installed with one), and removes the finalizer of those being deleted.
fn play_argocd(
    client: kube::Client,
    ns: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, &ns, &argo("Application", "applications"));
        let healthy =
            json!({"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}});
        while !stop.is_cancelled() {
            for app in api
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                let name = app.metadata.name.clone().unwrap();
                if app.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                } else if app.data["status"]["health"]["status"] != "Healthy" {
                    let _ = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&healthy))
                        .await;
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&healthy))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{nanos:08x}")
}

async fn get(client: &kube::Client, ar: &ApiResource, ns: &str, name: &str) -> Option<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

/// Whether a user of `group` may `verb` the `resource` of API group `api` in `namespace`,
/// as the API server's authorizer answers a SubjectAccessReview.
async fn can(
    client: &kube::Client,
    group: &str,
    verb: &str,
    api: &str,
    resource: &str,
    namespace: &str,
) -> bool {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {"user": "someone", "groups": [group, "system:authenticated"],
            "resourceAttributes": {"namespace": namespace, "verb": verb, "group": api, "resource": resource}}
    }))
    .unwrap();
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

fn kind<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_team_is_created_as_rendered_reapplied_without_writes_and_destroyed_alone() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = local(path).connect().await.unwrap();
    for (k, p) in [
        ("Application", "applications"),
        ("AppProject", "appprojects"),
        ("ApplicationSet", "applicationsets"),
    ] {
        ensure_argo_crd(&helper, k, p).await;
    }

    // The user's own things: Argo CD's namespace with a deploy key and a ConfigMap in it.
    let team = unique("t");
    let argocd_ns = format!("{team}-argocd");
    let state_ns = format!("{team}-state");
    let namespaces: Api<Namespace> = Api::all(helper.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": argocd_ns}})).unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<KubeSecret> = Api::namespaced(helper.clone(), &argocd_ns);
    secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "deploy-key"}, "stringData": {"sshPrivateKey": SSH_KEY}})).unwrap())
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(helper.clone(), &argocd_ns);
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "users-own"}, "data": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let argocd = play_argocd(helper.clone(), argocd_ns.clone(), stop.clone());

    let (a, b) = (format!("{team}-a"), format!("{team}-b"));
    let repo = "https://git.example.com/shop/apps.git";
    let module = Team::new(
        &team,
        Input::value(Arc::new(cluster.clone()) as ClusterRef),
        Input::value(ArgoCdTarget {
            namespace: argocd_ns.clone(),
            project: "default".into(),
            destination_server: IN_CLUSTER.into(),
        }),
    )
    .namespace(TeamNamespace::new(&a))
    .namespace(TeamNamespace::new(&b).quota(Quota::none().hard("pods", "5")))
    .access(
        AccessRole::Deployer,
        IdentityGroup::external("shop-deployers"),
    )
    .access(AccessRole::Viewer, IdentityGroup::external("shop-viewers"))
    .sync_window(SyncWindow::deny("0 18 * * 5", "62h").manual_sync(true))
    .repository(Repository::new(
        repo,
        RepoAccess::HttpsToken {
            username: "git".into(),
            token: Secret::new(TOKEN).into(),
        },
    ))
    .repository(Repository::new(
        "git@git.example.com:shop/web.git",
        RepoAccess::SshKey {
            private_key: SecretSource::existing(&argocd_ns, "deploy-key", "sshPrivateKey"),
        },
    ))
    .app(App::new("web", "git@git.example.com:shop/web.git", &a).path("deploy"))
    .application_set(AppSet::directories("services", repo, &b, ["services/*"]));
    let mut stack = Stack::new(&team);
    stack.add(module);
    let stack = stack.build().unwrap();
    let kube = KubeOptions {
        wait_timeout: Duration::from_secs(120),
        state_namespace: state_ns.clone(),
        ..KubeOptions::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let options = RunOptions::new()
        .engine(KubeEngine::new(kube.clone()))
        .events(tx);

    // 1. Apply: every object of the team, as rendered.
    stack.apply(&options).await.unwrap();
    let planned = stack.plan().await.unwrap();
    let rendered: std::collections::BTreeMap<String, Value> = planned
        .modules
        .iter()
        .flat_map(|m| &m.resources)
        .filter_map(|r| {
            r.as_kubernetes().map(|o| {
                (
                    format!(
                        "{} {}",
                        o["kind"].as_str().unwrap(),
                        o["metadata"]["name"].as_str().unwrap()
                    ),
                    o.clone(),
                )
            })
        })
        .collect();
    let project = get(
        &helper,
        &argo("AppProject", "appprojects"),
        &argocd_ns,
        &team,
    )
    .await
    .expect("the AppProject");
    assert_eq!(
        project["spec"],
        rendered[&format!("AppProject {team}")]["spec"]
    );
    assert_eq!(project["spec"]["destinations"].as_array().unwrap().len(), 2);
    for ns in [&a, &b] {
        assert!(
            namespaces.get_opt(ns).await.unwrap().is_some(),
            "namespace {ns}"
        );
        let quota = get(
            &helper,
            &kind::<k8s_openapi::api::core::v1::ResourceQuota>(),
            ns,
            "team-quota",
        )
        .await
        .unwrap();
        let binding = get(
            &helper,
            &kind::<k8s_openapi::api::rbac::v1::RoleBinding>(),
            ns,
            "team-deployer",
        )
        .await
        .unwrap();
        let policy = get(
            &helper,
            &kind::<k8s_openapi::api::networking::v1::NetworkPolicy>(),
            ns,
            "team-baseline",
        )
        .await
        .unwrap();
        let role = get(
            &helper,
            &kind::<k8s_openapi::api::rbac::v1::Role>(),
            ns,
            "team-viewer",
        )
        .await
        .unwrap();
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "shop-deployers"}])
        );
        assert_eq!(binding["roleRef"]["name"], "team-deployer");
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            policy["spec"]["ingress"],
            json!([{"from": [{"podSelector": {}}]}])
        );
        assert_eq!(
            role["rules"],
            rendered[&"Role team-viewer".to_owned()]["rules"]
        );
        let hard = &quota["spec"]["hard"];
        if ns == &b {
            assert_eq!(hard, &json!({"pods": "5"}));
        } else {
            assert_eq!(hard["requests.cpu"], "4");
            assert_eq!(hard["services.loadbalancers"], "0");
        }
    }
    let app = get(
        &helper,
        &argo("Application", "applications"),
        &argocd_ns,
        &format!("{team}-web"),
    )
    .await
    .unwrap();
    assert_eq!(app["spec"]["project"], team.as_str());
    let set = get(
        &helper,
        &argo("ApplicationSet", "applicationsets"),
        &argocd_ns,
        &format!("{team}-services"),
    )
    .await
    .unwrap();
    assert_eq!(
        set["spec"]["syncPolicy"]["applicationsSync"],
        "create-update"
    );
    // the secret material reached Argo CD's Secrets, read from the user's Secret where referenced
    let repo_secret = secrets.get(&format!("team-{team}-repo-0")).await.unwrap();
    let creds = secrets.get(&format!("team-{team}-repo-1")).await.unwrap();
    let value =
        |s: &KubeSecret, k: &str| String::from_utf8(s.data.as_ref().unwrap()[k].0.clone()).unwrap();
    assert_eq!(value(&repo_secret, "password"), TOKEN);
    assert_eq!(value(&creds, "sshPrivateKey"), SSH_KEY);
    // both scoped to the team's project, the one a generator reads included
    assert_eq!(value(&repo_secret, "project"), team);
    assert_eq!(value(&creds, "project"), team);

    // The API server's RBAC: the team's groups may do their job, never change their guards.
    for (group, verb, group_api, resource, allowed) in [
        ("shop-viewers", "list", "", "pods", true),
        ("shop-viewers", "delete", "", "pods", false),
        ("shop-deployers", "patch", "apps", "deployments", true),
        ("shop-deployers", "update", "", "resourcequotas", false),
        ("shop-deployers", "delete", "", "limitranges", false),
        (
            "shop-deployers",
            "patch",
            "networking.k8s.io",
            "networkpolicies",
            false,
        ),
        (
            "shop-deployers",
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            false,
        ),
        ("shop-deployers", "list", "", "secrets", false),
    ] {
        assert_eq!(
            can(&helper, group, verb, group_api, resource, &a).await,
            allowed,
            "{group} {verb} {resource}"
        );
    }

    // 2. A re-apply writes nothing (the first apply did write, through the same client).
    assert!(cluster.take_writes().len() > 10);
    stack.apply(&options).await.unwrap();
    assert_eq!(
        cluster.take_writes(),
        Vec::<String>::new(),
        "a re-apply of an unchanged team wrote"
    );

    // 3. Secret values are in no diff, event, error or state.
    let live = stack.read(&options).await.unwrap();
    let diff = diff_stack(
        &stack,
        &live,
        &[Arc::new(cluster.clone()) as ClusterRef],
        &kube,
    )
    .await
    .unwrap();
    let state = Api::<ConfigMap>::namespaced(helper.clone(), &state_ns)
        .get(&state_name(&team))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(format!("{e} {e:?}"));
    }
    for (what, text) in [
        ("diff", format!("{} {:?}", diff.to_text(), diff)),
        ("state", serde_json::to_string(&state).unwrap()),
        ("events", events.join("\n")),
        ("plan", planned.to_json()),
    ] {
        for secret in [TOKEN, SSH_KEY] {
            assert!(!text.contains(secret), "{secret} is in the {what}");
        }
    }

    // 4. Destroy removes the team and nothing else.
    stack.destroy(&options).await.unwrap();
    for ns in [&a, &b] {
        assert!(
            namespaces.get_opt(ns).await.unwrap().is_none(),
            "namespace {ns} remains"
        );
    }
    assert!(
        get(
            &helper,
            &argo("AppProject", "appprojects"),
            &argocd_ns,
            &team
        )
        .await
        .is_none()
    );
    assert!(
        get(
            &helper,
            &argo("ApplicationSet", "applicationsets"),
            &argocd_ns,
            &format!("{team}-services")
        )
        .await
        .is_none()
    );
    assert!(
        get(
            &helper,
            &argo("Application", "applications"),
            &argocd_ns,
            &format!("{team}-web")
        )
        .await
        .is_none()
    );
    assert!(
        secrets
            .get_opt(&format!("team-{team}-repo-0"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        namespaces.get_opt(&argocd_ns).await.unwrap().is_some(),
        "the user's namespace went"
    );
    assert!(
        secrets.get_opt("deploy-key").await.unwrap().is_some(),
        "the user's Secret went"
    );
    assert!(
        config_maps.get_opt("users-own").await.unwrap().is_some(),
        "the user's ConfigMap went"
    );

    stop.cancel();
    argocd.await.unwrap();
    for ns in [&argocd_ns, &state_ns] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn a_missing_credential_secret_stops_the_team_before_anything_is_written() {
    let path = kubeconfig();
    let cluster = Counting::new(path.clone()).await;
    let helper = local(path).connect().await.unwrap();
    ensure_argo_crd(&helper, "AppProject", "appprojects").await;
    let team = unique("m");
    let module = Team::new(
        &team,
        Input::value(Arc::new(cluster.clone()) as ClusterRef),
        Input::value(ArgoCdTarget {
            namespace: "default".into(),
            project: "default".into(),
            destination_server: IN_CLUSTER.into(),
        }),
    )
    .namespace(TeamNamespace::new(&team))
    .repository(Repository::new(
        "https://git.example.com/shop/apps.git",
        RepoAccess::HttpsToken {
            username: "git".into(),
            token: SecretSource::existing("default", format!("{team}-absent"), "token"),
        },
    ));
    let mut stack = Stack::new(&team);
    stack.add(module);
    let stack = stack.build().unwrap();
    let kube = KubeOptions {
        state_namespace: format!("{team}-state"),
        ..KubeOptions::default()
    };
    let e = stack
        .apply(&RunOptions::new().engine(KubeEngine::new(kube)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("Secret default/{team}-absent")) && e.contains("no key `token`"),
        "{e}"
    );
    assert_eq!(
        cluster.take_writes(),
        Vec::<String>::new(),
        "something was written"
    );
    let namespaces: Api<Namespace> = Api::all(helper.clone());
    assert!(namespaces.get_opt(&team).await.unwrap().is_none());
}

/// An ID token of the test environment's loopback OIDC issuer (`DEVOPS_STACK_TEST_OIDC_ISSUER`,
/// its CA in `DEVOPS_STACK_TEST_OIDC_CA`) for `sub` in `groups`, with the API server's audience.
fn oidc_token(issuer: &str, ca: &str, sub: &str, groups: &[&str]) -> String {
    let body = json!({"sub": sub, "groups": groups, "aud": "kubernetes", "ttl_seconds": 600});
    let out = std::process::Command::new("curl")
        .args([
            "-sSf",
            "--cacert",
            ca,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
        ])
        .arg("--data")
        .arg(body.to_string())
        .arg(format!("{}/token", issuer.trim_end_matches('/')))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "the issuer refused a token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    answer["id_token"].as_str().unwrap().to_owned()
}

/// A client of the test cluster authenticating with `token` only (no client certificate).
async fn client_with_token(path: PathBuf, token: &str) -> kube::Client {
    let mut config = local(path).config().await.unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_owned().into()),
        ..Default::default()
    };
    devops_stack_core::k8s::install_tls_provider();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
#[ignore = "needs a cluster whose API server trusts the test OIDC issuer (DEVOPS_STACK_TEST_KUBECONFIG, DEVOPS_STACK_TEST_OIDC_*): scripts/test.sh starts it with the test environment"]
async fn the_api_server_s_oidc_authenticator_lets_the_deployer_group_deploy_and_guards_the_quota() {
    let path = kubeconfig();
    let how = "the test environment's clusters trust its OIDC issuer: `eval \"$(bash scripts/testenv.sh env --name NAME)\"`";
    let issuer = required_var("DEVOPS_STACK_TEST_OIDC_ISSUER", how);
    let ca = required_var("DEVOPS_STACK_TEST_OIDC_CA", how);
    let helper = local(path.clone()).connect().await.unwrap();
    ensure_argo_crd(&helper, "AppProject", "appprojects").await;
    let team = unique("o");
    let argocd_ns = format!("{team}-argocd");
    let namespaces: Api<Namespace> = Api::all(helper.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": argocd_ns}})).unwrap(),
        )
        .await
        .unwrap();
    let group = format!("{team}-deployers");
    let admins = format!("{team}-admins");
    let cluster = Counting::new(path.clone()).await;
    let mut stack = Stack::new(&team);
    stack.add(
        Team::new(
            &team,
            Input::value(Arc::new(cluster.clone()) as ClusterRef),
            Input::value(ArgoCdTarget {
                namespace: argocd_ns.clone(),
                project: "default".into(),
                destination_server: IN_CLUSTER.into(),
            }),
        )
        .namespace(TeamNamespace::new(&team))
        .access(AccessRole::Deployer, IdentityGroup::external(&group))
        .access(AccessRole::Admin, IdentityGroup::external(&admins))
        // the test environment's API server prefixes OIDC groups with `oidc:`
        .kubernetes_group_prefix("oidc:"),
    );
    let stack = stack.build().unwrap();
    let kube = KubeOptions {
        state_namespace: format!("{team}-state"),
        ..KubeOptions::default()
    };
    let options = RunOptions::new().engine(KubeEngine::new(kube));
    stack.apply(&options).await.unwrap();

    // An admin's token (group `oidc:<team>-admins` to the API server) creates a Deployment;
    // a deployer's restarts it (deployers deliver through Argo CD: their Role patches, it does
    // not create); neither edits the namespace's quota.
    type Deployment = k8s_openapi::api::apps::v1::Deployment;
    let admin = client_with_token(
        path.clone(),
        &oidc_token(&issuer, &ca, &format!("{team}-admin"), &[&admins]),
    )
    .await;
    let token = oidc_token(&issuer, &ca, &format!("{team}-dev"), &[&group]);
    let dev = client_with_token(path.clone(), &token).await;
    let deployments: Api<Deployment> = Api::namespaced(dev.clone(), &team);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"restart": "1"}}}}});
    Api::<Deployment>::namespaced(admin.clone(), &team)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}))
            .unwrap(),
        )
        .await
        .expect("the admin group's token creates a Deployment");
    let restarted = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    assert!(
        restarted.is_ok(),
        "the deployer could not restart its Deployment: {restarted:?}"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(dev.clone(), &team);
    assert!(pods.list(&ListParams::default()).await.is_ok());
    // ...and never its guards
    for (who, client) in [("deployer", &dev), ("admin", &admin)] {
        let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> =
            Api::namespaced(client.clone(), &team);
        let edit = quotas
            .patch(
                "team-quota",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"hard": {"pods": "1000"}}})),
            )
            .await;
        match edit {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
            other => panic!("the {who} edited its quota: {other:?}"),
        }
    }
    // a deployer creates no Deployment of its own
    let created = deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "sneaky"},
                "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "x"}},
                        "spec": {"containers": [{"name": "x", "image": "nginx"}]}}}}))
            .unwrap(),
        )
        .await;
    assert!(
        matches!(created, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{created:?}"
    );
    // a token without the group is refused the Deployment
    let outsider = client_with_token(
        path.clone(),
        &oidc_token(&issuer, &ca, &format!("{team}-other"), &["someone-else"]),
    )
    .await;
    let denied = Api::<Deployment>::namespaced(outsider, &team)
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    assert!(
        matches!(denied, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{denied:?}"
    );

    stack.destroy(&options).await.unwrap();
    for ns in [&argocd_ns, &format!("{team}-state")] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
}
