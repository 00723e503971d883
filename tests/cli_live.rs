//! The ready command line against a live API server, with the lock in the cluster (the stack's
//! Lease): `apply` holds it for the whole run; a live Lease of another holder refuses `apply`
//! and `unlock`, both naming it, until `unlock --force` breaks it; `state` reads what the
//! apply recorded; `diff` finds nothing to change; `destroy` leaves nothing labelled behind.

use std::time::Duration;

use devops_stack::cli::{Built, Cli, Outcome};
use devops_stack::clusters::{Kubeconfig, LocalCluster};
use devops_stack::interfaces::ClusterRef;
use devops_stack::k8s::{Deployer, KubeOptions, STACK_LABEL, StackLock, read_state};
use devops_stack::{
    Context, Error, Input, Module, ModuleResult, Needs, Planned, RunOptions, Stack,
};
use devops_stack_test::live::{
    create_namespace, delete_labelled, delete_namespace, helper_client, kubeconfig, unique,
    wait_none_labelled, with_cleanup,
};
use serde_json::json;

/// A module that keeps one ConfigMap in `namespace` of its cluster.
struct Settings {
    cluster: Input<ClusterRef>,
    namespace: String,
}

impl Module for Settings {
    type Output = ();
    fn id(&self) -> &str {
        "settings"
    }
    fn kind(&self) -> &'static str {
        "settings"
    }
    fn needs(&self, n: &mut Needs) {
        n.add(&self.cluster);
    }
    async fn plan(&self, _: &Context) -> ModuleResult<Planned<()>> {
        Ok(Planned::new(()))
    }
    async fn apply(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": self.namespace},
            "data": {"colour": "blue"},
        });
        Deployer::for_module(ctx, &cluster)
            .await?
            .apply(vec![object])
            .await?;
        Ok(())
    }
    async fn destroy(&self, ctx: &Context) -> ModuleResult<()> {
        let cluster = ctx.get(&self.cluster)?;
        Deployer::for_module(ctx, &cluster).await?.destroy().await?;
        Ok(())
    }
}

fn options(state_namespace: &str) -> KubeOptions {
    KubeOptions {
        wait_timeout: Duration::from_secs(60),
        state_namespace: state_namespace.into(),
        ..KubeOptions::default()
    }
}

fn cli(stack: &str, namespace: &str) -> Cli<LocalCluster> {
    let (stack, ns, path) = (stack.to_owned(), namespace.to_owned(), kubeconfig());
    Cli::new(move |_| {
        let mut s = Stack::new(&stack);
        let cluster = s.add(Kubeconfig::new("test", path.clone(), "example.com"));
        s.add(Settings {
            cluster: (&cluster).into(),
            namespace: ns.clone(),
        });
        Ok(Built::new(s.build()?, RunOptions::new()).cluster(cluster))
    })
    .kube_options(options(namespace))
    .holder("alice@ci")
    .progress(false)
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh starts one (DEVOPS_STACK_TEST_KUBECONFIG)"]
async fn the_lease_refuses_a_second_holder_until_forced_and_state_diff_destroy_read_the_cluster() {
    let client = helper_client(kubeconfig()).await;
    let stack = unique("cli");
    let namespace = unique("cli-ns");
    create_namespace(&client, &namespace).await;
    let selector = format!("{STACK_LABEL}={stack}");
    with_cleanup(
        async {
            assert_eq!(
                cli(&stack, &namespace).execute(["apply"]).await.unwrap(),
                Outcome::Done
            );
            let lease: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
                kube::Api::namespaced(client.clone(), &namespace);
            assert!(
                lease
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty(),
                "the apply released its Lease"
            );
            let state = read_state(&client, &stack, &options(&namespace))
                .await
                .unwrap();
            assert_eq!(
                state.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
                ["settings"]
            );
            assert_eq!(
                state[0].1.objects[0].object.to_string(),
                format!("v1 ConfigMap {namespace}/settings")
            );
            assert_eq!(
                cli(&stack, &namespace).execute(["state"]).await.unwrap(),
                Outcome::Done
            );
            assert_eq!(
                cli(&stack, &namespace).execute(["diff"]).await.unwrap(),
                Outcome::Done,
                "nothing to change after the apply"
            );

            // another run holds the Lease (and keeps renewing it)
            let other = StackLock::builder(client.clone(), &stack)
                .namespace(&namespace)
                .holder("bob@laptop")
                .acquire()
                .await
                .unwrap();
            let refused = cli(&stack, &namespace).execute(["apply"]).await;
            assert!(
                matches!(&refused, Err(Error::LockHeld { holder, .. }) if holder == "bob@laptop"),
                "{refused:?}"
            );
            let refused = cli(&stack, &namespace).execute(["unlock"]).await;
            assert!(
                matches!(&refused, Err(Error::LockHeld { holder, .. }) if holder == "bob@laptop"),
                "{refused:?}"
            );
            assert_eq!(
                cli(&stack, &namespace)
                    .execute(["unlock", "--force"])
                    .await
                    .unwrap(),
                Outcome::Done
            );
            assert!(
                lease
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty(),
                "unlock --force deleted the Lease"
            );
            drop(other);

            assert_eq!(
                cli(&stack, &namespace).execute(["destroy"]).await.unwrap(),
                Outcome::Done
            );
            wait_none_labelled(&client, &selector, Duration::from_secs(60)).await;
        },
        async {
            delete_labelled(&client, &selector).await;
            delete_namespace(&client, &namespace).await;
        },
    )
    .await;
}
