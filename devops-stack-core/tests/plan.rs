//! Offline plans: text, JSON and DOT renderings of a representative stack, snapshotted.

use devops_stack_core::plan::unknown;
use devops_stack_core::{
    Context, Input, Module, ModuleResult, Needs, Phase, Planned, Resource, Secret, Stack,
};
use serde::Serialize;
use serde_json::json;

/// A cloud cluster: one cloud resource, an output known only after apply.
struct Cloud;

#[derive(Serialize, Clone)]
struct CloudOut {
    name: String,
    endpoint: String,
}

impl Module for Cloud {
    type Output = CloudOut;
    fn id(&self) -> &str {
        "cluster"
    }
    fn kind(&self) -> &'static str {
        "test-cloud"
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<CloudOut>> {
        Ok(Planned::new(CloudOut {
            name: "demo".into(),
            endpoint: unknown("cluster", "endpoint"),
        })
        .with_resources([Resource::cloud(
            "aws",
            "eks:Cluster",
            "demo",
            json!({"version": "1.31", "subnets": ["subnet-a", "subnet-b"]}),
        )]))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<CloudOut> {
        unreachable!("offline test")
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

/// An app deployed into the cluster with a secret; reads the cluster's name.
struct App {
    id: &'static str,
    phase: Phase,
    cluster: Input<String>,
}

#[derive(Serialize)]
struct AppOut {
    url: String,
    password: Secret,
}

impl Module for App {
    type Output = AppOut;
    fn id(&self) -> &str {
        self.id
    }
    fn kind(&self) -> &'static str {
        "test-app"
    }
    fn phase(&self) -> Phase {
        self.phase
    }
    fn needs(&self, n: &mut Needs) {
        n.add(&self.cluster);
    }
    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<AppOut>> {
        let cluster = ctx.get(&self.cluster)?;
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.id}});
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": self.id},
                            "stringData": {"password": "s3cr3t-value"}});
        Ok(Planned::new(AppOut {
            url: format!("https://{}.{cluster}.example.com", self.id),
            password: Secret::new("s3cr3t-value"),
        })
        .with_resources([
            Resource::kubernetes(&cluster, &ns),
            Resource::kubernetes(&cluster, &secret),
        ]))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<AppOut> {
        unreachable!("offline test")
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

async fn plan() -> (devops_stack_core::BuiltStack, devops_stack_core::Plan) {
    let mut s = Stack::new("demo");
    let cluster = s.add(Cloud);
    let name = cluster.map(|c: &CloudOut| c.name.clone());
    s.add(App {
        id: "argocd",
        phase: Phase::Bootstrap,
        cluster: name.clone(),
    });
    s.add(App {
        id: "grafana",
        phase: Phase::Main,
        cluster: name.clone(),
    });
    s.add(App {
        id: "argocd-final",
        phase: Phase::Final,
        cluster: name,
    });
    let built = s.build().unwrap();
    let plan = built.plan().await.unwrap();
    (built, plan)
}

#[tokio::test]
async fn plan_text_json_and_dot() {
    let (built, plan) = plan().await;
    assert_eq!(plan.resource_count(), 7);
    assert_eq!(
        plan.module("argocd-final").unwrap().after,
        ["argocd", "grafana"]
    );
    let text = plan.to_text();
    let json = plan.to_json();
    assert!(
        !text.contains("s3cr3t-value") && !json.contains("s3cr3t-value"),
        "secrets leaked"
    );
    insta::assert_snapshot!("plan_text", text);
    insta::assert_snapshot!("plan_json", json);
    insta::assert_snapshot!("graph_dot", built.to_dot());
    assert_eq!(built.to_dot(), plan.to_dot());
}

/// An endpoint that is unknown offline and, when `live` is set, exists with a real URL.
struct Endpoint {
    live: Option<&'static str>,
}

impl Module for Endpoint {
    type Output = String;
    fn id(&self) -> &str {
        "endpoint"
    }
    fn kind(&self) -> &'static str {
        "test-endpoint"
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<String>> {
        Ok(Planned::new(unknown("endpoint", "url")))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<String> {
        unreachable!("offline test")
    }
    async fn read(&self, _: &Context) -> ModuleResult<Option<String>> {
        Ok(self.live.map(str::to_owned))
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

/// Renders a ConfigMap holding the endpoint it reads.
struct Consumer(Input<String>);

impl Module for Consumer {
    type Output = ();
    fn id(&self) -> &str {
        "consumer"
    }
    fn kind(&self) -> &'static str {
        "test-consumer"
    }
    fn needs(&self, n: &mut Needs) {
        n.add(&self.0);
    }
    async fn plan(&self, ctx: &Context) -> ModuleResult<Planned<()>> {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"url": ctx.get(&self.0)?}});
        Ok(Planned::new(()).with_resources([Resource::kubernetes("demo", &cm)]))
    }
    async fn apply(&self, _: &Context) -> ModuleResult<()> {
        unreachable!("offline test")
    }
    async fn destroy(&self, _: &Context) -> ModuleResult<()> {
        Ok(())
    }
}

fn rendered_url(plan: &devops_stack_core::Plan) -> String {
    plan.module("consumer").unwrap().resources[0]
        .as_kubernetes()
        .unwrap()["data"]["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_live_plan_uses_live_outputs_where_they_exist() {
    for (live, expected) in [
        (Some("https://live.example.com"), "https://live.example.com"),
        (None, "(known after apply: endpoint.url)"),
    ] {
        let mut s = Stack::new("demo");
        let e = s.add(Endpoint { live });
        s.add(Consumer(e.input()));
        let stack = s.build().unwrap();
        assert_eq!(
            rendered_url(&stack.plan().await.unwrap()),
            "(known after apply: endpoint.url)"
        );
        let read = stack
            .read(&devops_stack_core::RunOptions::new())
            .await
            .unwrap();
        assert_eq!(
            rendered_url(&stack.plan_live(&read).await.unwrap()),
            expected
        );
    }
}
