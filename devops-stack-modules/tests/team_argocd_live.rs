//! The team layer against a **real Argo CD** (application-controller, repo-server,
//! ApplicationSet controller and API server of the pinned version, run by the project's test
//! environment, `scripts/testenv.sh`), with a real API server, kwok's nodes, and loopback git
//! and SCM servers. Argo CD itself, not a stand-in, decides here what a team may deploy.
//!
//! Gated on `DEVOPS_STACK_TEST_ARGOCD_KUBECONFIG` (the kubeconfig of the environment's cluster
//! that runs Argo CD) and the environment's variables (`eval "$(scripts/testenv.sh env)"`):
//!
//! ```text
//! scripts/testenv.sh start && eval "$(scripts/testenv.sh env --argocd)"
//! cargo test -p devops-stack-modules --test team_argocd_live
//! ```

use devops_stack_test::real_argocd;

use devops_stack_core::k8s::KubeEngine;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devops_stack_core::clusters::LocalCluster;
use devops_stack_core::interfaces::{ArgoCdTarget, ClusterRef, IN_CLUSTER, IdentityGroup};
use devops_stack_core::k8s::KubeOptions;
use devops_stack_core::{Input, RunOptions, Secret, Stack};
use devops_stack_modules::team::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// Argo CD's namespace in the test environment (its processes watch this one).
const ARGOCD_NS: &str = "argocd";
const USER: &str = "team-a-bot";
const PASSWORD: &str = "live-password-do-not-print";

/// What the test environment gives.
struct TestEnv {
    kubeconfig: PathBuf,
    git_url: String,
    git_root: PathBuf,
    scm_api: String,
    crds: PathBuf,
}

impl TestEnv {
    /// Panics when a variable is unset, saying how to set it.
    fn get() -> TestEnv {
        let need = |k: &str| {
            devops_stack_test::live::required_var(
                k,
                "scripts/test.sh starts the real Argo CD tier when the test environment is built; or \
                 `bash scripts/testenv.sh start --name NAME --load-balancers` and \
                 `eval \"$(bash scripts/testenv.sh env --name NAME --argocd)\"`",
            )
        };
        let kubeconfig = need("DEVOPS_STACK_TEST_ARGOCD_KUBECONFIG");
        TestEnv {
            kubeconfig: kubeconfig.into(),
            // HTTPS: the team layer sends no credentials over clear text
            git_url: need("DEVOPS_STACK_TEST_ARGOCD_GIT_HTTPS_URL"),
            git_root: need("DEVOPS_STACK_TEST_ARGOCD_GIT_ROOT").into(),
            scm_api: need("DEVOPS_STACK_TEST_ARGOCD_SCM_API"),
            crds: need("DEVOPS_STACK_TEST_ARGOCD_CRD_DIR").into(),
        }
    }

    fn cluster(&self) -> LocalCluster {
        LocalCluster {
            name: "argocd-live".into(),
            base_domain: "example.com".into(),
            kubeconfig: self.kubeconfig.clone(),
            context: None,
        }
    }

    async fn client(&self) -> kube::Client {
        self.cluster().connect().await.unwrap()
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn argo(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind),
        plural,
    )
}

fn applications(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ARGOCD_NS,
        &argo("Application", "applications"),
    )
}

/// Runs `git` in `dir`, panicking with its output when it fails. It trusts the environment's CA
/// (the environment variable, which beats `http.sslCAInfo`, since a machine may set it).
fn git(dir: &Path, args: &[&str]) {
    let ca = std::env::var_os("DEVOPS_STACK_TEST_ARGOCD_OIDC_CA").map(PathBuf::from);
    devops_stack_test::git::run(dir, args, ca.as_deref());
}

/// A repository of the environment's git server: a bare repository and a work tree to push
/// from. With `credentials`, the server asks for them (HTTP basic authentication).
struct Repo {
    url: String,
    work: tempdir::TempDir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub(crate) struct TempDir(pub(crate) std::path::PathBuf);
    impl TempDir {
        pub(crate) fn new(prefix: &str) -> TempDir {
            let p = std::env::temp_dir().join(super::unique(prefix));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Repo {
    fn new(env: &TestEnv, name: &str, credentials: Option<(&str, &str)>) -> Repo {
        let bare = env.git_root.join(format!("{name}.git"));
        git(
            &env.git_root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        if let Some((user, password)) = credentials {
            std::fs::write(
                bare.join("testenv-credentials"),
                format!("{user}:{password}\n"),
            )
            .unwrap();
        }
        let work = tempdir::TempDir::new("repo");
        git(&work.0, &["init", "-q", "-b", "main"]);
        let url = format!("{}/{name}.git", env.git_url.trim_end_matches('/'));
        let push_url = match credentials {
            Some((u, p)) => url.replacen("://", &format!("://{u}:{p}@"), 1),
            None => url.clone(),
        };
        git(&work.0, &["remote", "add", "origin", &push_url]);
        Repo { url, work }
    }

    /// Writes `files` (path, content), removes `removed`, commits and pushes.
    fn push(&self, files: &[(&str, String)], removed: &[&str]) {
        for (path, content) in files {
            let p = self.work.0.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        for path in removed {
            git(&self.work.0, &["rm", "-q", "-r", path]);
        }
        git(&self.work.0, &["add", "-A"]);
        git(&self.work.0, &["commit", "-q", "-m", "change"]);
        git(&self.work.0, &["push", "-q", "origin", "main"]);
    }
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// Polls `check` every 500 ms until it returns `Some`, for at most `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The Application `name` as Argo CD has it, if it exists.
async fn app(client: &kube::Client, name: &str) -> Option<Value> {
    applications(client)
        .get_opt(name)
        .await
        .unwrap()
        .map(|a| serde_json::to_value(a).unwrap())
}

/// Everything Argo CD says went wrong with an Application: its conditions and its last sync's
/// message.
fn complaints(app: &Value) -> String {
    let mut out: Vec<String> = app["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {}",
                c["type"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    if let Some(m) = app["status"]["operationState"]["message"].as_str() {
        out.push(m.to_owned());
    }
    for r in app["status"]["operationState"]["syncResult"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(m) = r["message"].as_str() {
            out.push(m.to_owned());
        }
    }
    out.join(" | ")
}

/// Asks the ApplicationSet controller to reconcile the set `name` now (its git generator
/// otherwise looks every 3 minutes).
async fn refresh(sets: &Api<DynamicObject>, name: &str) {
    let _ = sets
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"argocd.argoproj.io/application-set-refresh": "true"}}})),
        )
        .await;
}

/// An Application made by hand, as a team member may through Argo CD's API: `project`,
/// deploying `path` of `repo` into `namespace`, synced automatically.
async fn hand_made(
    client: &kube::Client,
    name: &str,
    project: &str,
    repo: &str,
    path: &str,
    namespace: &str,
) {
    let app = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": ARGOCD_NS},
        "spec": {
            "project": project,
            "source": {"repoURL": repo, "path": path, "targetRevision": "HEAD"},
            "destination": {"server": IN_CLUSTER, "namespace": namespace},
            "syncPolicy": {"automated": {"prune": true}, "retry": {"limit": 0}},
        },
    });
    applications(client)
        .patch(
            name,
            &PatchParams::apply("a-team-member"),
            &Patch::Apply(&app),
        )
        .await
        .unwrap();
}

async fn delete_app(client: &kube::Client, name: &str) {
    let _ = applications(client)
        .delete(name, &DeleteParams::default())
        .await;
}

fn team_target() -> Input<ArgoCdTarget> {
    Input::value(ArgoCdTarget {
        namespace: ARGOCD_NS.into(),
        project: "default".into(),
        destination_server: IN_CLUSTER.into(),
    })
}

fn options(state: &str) -> RunOptions {
    RunOptions::new().engine(KubeEngine::new(KubeOptions {
        wait_timeout: Duration::from_secs(120),
        state_namespace: state.into(),
        ..KubeOptions::default()
    }))
}

#[tokio::test]
#[ignore = "needs the test environment's real Argo CD (DEVOPS_STACK_TEST_ARGOCD_*): scripts/test.sh starts it"]
async fn argo_cd_keeps_each_team_inside_its_project_and_its_credentials_to_itself() {
    let env = TestEnv::get();
    let client = env.client().await;
    real_argocd::install(&env.crds, &client).await;
    let id = unique("iso");
    let (a, b) = (format!("{id}a"), format!("{id}b"));

    // Team A's repository is private: the git server asks for A's credentials.
    let repo_a = Repo::new(&env, &format!("{a}-deploy"), Some((USER, PASSWORD)));
    repo_a.push(
        &[
            ("ok/cm.yaml", config_map(&format!("{a}-ok"))),
            ("services/api/cm.yaml", config_map(&format!("{a}-api"))),
            (
                "cluster-role/role.yaml",
                format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {a}-escalate\nrules: []\n"),
            ),
            (
                "namespace/ns.yaml",
                format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {a}-extra\n"),
            ),
        ],
        &[],
    );
    let repo_b = Repo::new(&env, &format!("{b}-deploy"), None);
    repo_b.push(&[("ok/cm.yaml", config_map(&format!("{b}-ok")))], &[]);

    let cluster: ClusterRef = Arc::new(env.cluster());
    let mut stack = Stack::new(&id);
    stack.add(
        Team::new(&a, Input::value(cluster.clone()), team_target())
            .namespace(TeamNamespace::new(&a))
            .access(
                AccessRole::Deployer,
                IdentityGroup::external(format!("{a}-deployers")),
            )
            .repository(Repository::new(
                &repo_a.url,
                RepoAccess::HttpsToken {
                    username: USER.into(),
                    token: Secret::new(PASSWORD).into(),
                },
            ))
            .app(App::new("ok", &repo_a.url, &a).path("ok"))
            // the git generator reads the private repository with the project's credentials
            .application_set(AppSet::directories("svc", &repo_a.url, &a, ["services/*"])),
    );
    stack.add(
        Team::new(&b, Input::value(cluster.clone()), team_target())
            .namespace(TeamNamespace::new(&b))
            .repository(Repository::new(&repo_b.url, RepoAccess::Public))
            .app(App::new("ok", &repo_b.url, &b).path("ok")),
    );
    let stack = stack.build().unwrap();
    let opts = options(&format!("{id}-state"));
    // Both teams' Applications reach Synced and Healthy as Argo CD reports them (the apply
    // waits for it).
    stack.apply(&opts).await.expect("both teams deploy");
    let cms = |ns: &str| Api::<ConfigMap>::namespaced(client.clone(), ns);
    assert!(cms(&a).get_opt(&format!("{a}-ok")).await.unwrap().is_some());
    assert!(cms(&b).get_opt(&format!("{b}-ok")).await.unwrap().is_some());
    // ...and the set's Application, generated from the private repository
    let sets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ARGOCD_NS,
        &argo("ApplicationSet", "applicationsets"),
    );
    eventually(
        "the generated Application to deploy",
        Duration::from_secs(120),
        || async {
            refresh(&sets, &format!("{a}-svc")).await;
            cms(&a)
                .get_opt(&format!("{a}-api"))
                .await
                .unwrap()
                .map(|_| ())
        },
    )
    .await;

    // What Argo CD refuses, each with its condition, creating nothing.
    let refused = [
        (
            format!("{a}-into-kube-system"),
            a.as_str(),
            repo_a.url.as_str(),
            "ok",
            "kube-system",
            "do not match any of the allowed destinations",
        ),
        (
            format!("{a}-cluster-role"),
            a.as_str(),
            repo_a.url.as_str(),
            "cluster-role",
            a.as_str(),
            "not permitted in project",
        ),
        (
            format!("{a}-namespace"),
            a.as_str(),
            repo_a.url.as_str(),
            "namespace",
            a.as_str(),
            "not permitted in project",
        ),
        // team B may not deploy from team A's repository
        (
            format!("{b}-steal"),
            b.as_str(),
            repo_a.url.as_str(),
            "ok",
            b.as_str(),
            "not permitted in project",
        ),
    ];
    for (name, project, repo, path, ns, _) in &refused {
        hand_made(&client, name, project, repo, path, ns).await;
    }
    for (name, _, _, _, _, expected) in &refused {
        let said = eventually(
            &format!("Argo CD to refuse {name}"),
            Duration::from_secs(90),
            || async {
                let app = app(&client, name).await?;
                let said = complaints(&app);
                said.contains(expected).then_some(said)
            },
        )
        .await;
        println!("{name}: {said}");
    }
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&format!("{a}-escalate"))
            .await
            .unwrap()
            .is_none(),
        "a team created a ClusterRole"
    );
    assert!(
        Api::<Namespace>::all(client.clone())
            .get_opt(&format!("{a}-extra"))
            .await
            .unwrap()
            .is_none(),
        "a team created a Namespace"
    );
    assert!(
        cms("kube-system")
            .get_opt(&format!("{a}-ok"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(cms(&b).get_opt(&format!("{a}-ok")).await.unwrap().is_none());

    // A platform Application (project `default`, any repository) cannot use team A's
    // credentials: Argo CD fails to fetch the private repository for it.
    let platform = format!("{id}-platform");
    hand_made(&client, &platform, "default", &repo_a.url, "ok", "default").await;
    let said = eventually(
        "the platform's Application to be refused A's repository",
        Duration::from_secs(90),
        || async {
            let app = app(&client, &platform).await?;
            let said = complaints(&app);
            let fetch_failed = said.contains("authentication required")
                || said.contains("Authentication")
                || said.contains("401")
                || said.contains("could not read Username");
            fetch_failed.then_some(said)
        },
    )
    .await;
    println!("{platform}: {said}");
    assert!(
        cms("default")
            .get_opt(&format!("{a}-ok"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!said.contains(PASSWORD), "a condition shows the password");

    for (name, ..) in &refused {
        delete_app(&client, name).await;
    }
    delete_app(&client, &platform).await;
    stack.destroy(&opts).await.expect("destroyed");
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&format!("{id}-state"), &DeleteParams::default())
        .await;
}

#[tokio::test]
#[ignore = "needs the test environment's real Argo CD (DEVOPS_STACK_TEST_ARGOCD_*): scripts/test.sh starts it"]
async fn sets_follow_their_directories_and_previews_go_with_their_pull_requests() {
    let env = TestEnv::get();
    let client = env.client().await;
    real_argocd::install(&env.crds, &client).await;
    let id = unique("set");
    let (team, previews) = (id.clone(), format!("{id}-pr"));
    let repo = Repo::new(&env, &format!("{id}-deploy"), None);
    repo.push(
        &[
            ("services/one/cm.yaml", config_map(&format!("{id}-one"))),
            ("services/two/cm.yaml", config_map(&format!("{id}-two"))),
            ("preview/cm.yaml", config_map("preview")),
            (
                "preview/kustomization.yaml",
                "resources:\n- cm.yaml\n".to_owned(),
            ),
        ],
        &[],
    );
    let owner = "acme";
    let scm_repo = format!("{id}-repo");
    let cluster: ClusterRef = Arc::new(env.cluster());
    let mut stack = Stack::new(&id);
    stack.add(
        Team::new(&team, Input::value(cluster), team_target())
            .namespace(TeamNamespace::new(&team))
            .namespace(TeamNamespace::new(&previews))
            .repository(Repository::new(&repo.url, RepoAccess::Public))
            .application_set(
                AppSet::directories("svc", &repo.url, &team, ["services/*"]).prune_removed(true),
            )
            .application_set(
                AppSet::pull_requests(
                    "previews",
                    &repo.url,
                    &previews,
                    Forge::GitHub {
                        owner: owner.into(),
                        repo: scm_repo.clone(),
                        api: Some(env.scm_api.clone()),
                    },
                    ["preview"],
                    Secret::new("forge-token-do-not-print"),
                )
                .path("preview")
                .manifests(Manifests::Kustomize { images: vec![] }),
            ),
    );
    let stack = stack.build().unwrap();
    let opts = options(&format!("{id}-state"));
    stack.apply(&opts).await.expect("applied");
    let cms = |ns: &str| Api::<ConfigMap>::namespaced(client.clone(), ns);
    let sets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ARGOCD_NS,
        &argo("ApplicationSet", "applicationsets"),
    );

    // One Application per directory, deployed.
    for dir in ["one", "two"] {
        eventually(
            &format!("{dir} deployed"),
            Duration::from_secs(120),
            || async {
                cms(&team)
                    .get_opt(&format!("{id}-{dir}"))
                    .await
                    .unwrap()
                    .map(|_| ())
            },
        )
        .await;
    }
    // The directory goes: its Application and what it deployed go too.
    repo.push(&[], &["services/two"]);
    eventually(
        "the Application of the removed directory to go",
        Duration::from_secs(180),
        || async {
            refresh(&sets, &format!("{team}-svc")).await;
            app(&client, &format!("{team}-two"))
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    eventually("its ConfigMap to go", Duration::from_secs(60), || async {
        cms(&team)
            .get_opt(&format!("{id}-two"))
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        app(&client, &format!("{team}-one")).await.is_some(),
        "the other directory's Application stays"
    );

    // A pull request opens: its preview deploys, prefixed.
    let head = String::from_utf8(
        Command::new("git")
            .current_dir(&repo.work.0)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let scm = env.scm_api.trim_end_matches('/').to_owned();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sSf"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data",
        &json!({"number": 7, "branch": "feature", "sha": head, "labels": ["preview"]}).to_string(),
        &format!("{scm}/_test/repos/{owner}/{scm_repo}/pulls"),
    ]);
    let preview = format!("{team}-previews-pr-7");
    eventually(
        "the preview to deploy",
        Duration::from_secs(120),
        || async {
            refresh(&sets, &format!("{team}-previews")).await;
            cms(&previews)
                .get_opt("pr-7-preview")
                .await
                .unwrap()
                .map(|_| ())
        },
    )
    .await;
    assert!(app(&client, &preview).await.is_some());
    // It closes: the preview and everything it deployed go.
    curl(&[
        "-X",
        "DELETE",
        &format!("{scm}/_test/repos/{owner}/{scm_repo}/pulls/7"),
    ]);
    eventually(
        "the closed pull request's preview to go",
        Duration::from_secs(120),
        || async {
            refresh(&sets, &format!("{team}-previews")).await;
            app(&client, &preview).await.is_none().then_some(())
        },
    )
    .await;
    eventually(
        "the preview's ConfigMap to go",
        Duration::from_secs(60),
        || async {
            cms(&previews)
                .get_opt("pr-7-preview")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;

    stack.destroy(&opts).await.expect("destroyed");
    // Nothing of the team is left in Argo CD: no set, no generated Application.
    eventually(
        "the generated Applications to go with their set",
        Duration::from_secs(60),
        || async {
            let left: Vec<String> = applications(&client)
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|a| a.metadata.name)
                .filter(|n| n.starts_with(&id))
                .collect();
            left.is_empty().then_some(())
        },
    )
    .await;
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&format!("{id}-state"), &DeleteParams::default())
        .await;
}
