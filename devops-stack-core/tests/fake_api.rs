//! Tests of the in-memory API server in `devops_stack_test::fake_api` against documented Kubernetes
//! behaviour, through kube-rs's own calls only. `matches_the_real_api_server` replays one
//! scenario on the fake and on the cluster of `DEVOPS_STACK_TEST_KUBECONFIG` (skipped, saying
//! so, when unset) and compares the answers.

use devops_stack_test::fake_api;

use std::time::Duration;

use fake_api::{FakeApi, NamespaceDeletion, count, writes};
use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::runtime::WatchStreamExt;
use serde_json::{Value, json};

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn configmaps(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &resource("", "v1", "ConfigMap", "configmaps"),
    )
}

fn namespaces(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &resource("", "v1", "Namespace", "namespaces"),
    )
}

fn crds(client: &kube::Client) -> Api<DynamicObject> {
    let ar = resource(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    Api::all_with(client.clone(), &ar)
}

/// A condition of `await_condition`: the CRD is Established.
fn established(crd: Option<&DynamicObject>) -> bool {
    crd.and_then(|o| o.data["status"]["conditions"].as_array())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

fn applications(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = resource("argoproj.io", "v1alpha1", "Application", "applications");
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Server-side apply of `body` (a whole object) by `manager`.
async fn apply(
    api: &Api<DynamicObject>,
    body: Value,
    manager: &str,
    force: bool,
) -> Result<Value, Value> {
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    let mut params = PatchParams::apply(manager);
    params.force = force;
    outcome(api.patch(&name, &params, &Patch::Apply(&body)).await)
}

async fn merge(
    api: &Api<DynamicObject>,
    name: &str,
    patch: Value,
    manager: &str,
) -> Result<Value, Value> {
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    outcome(api.patch(name, &params, &Patch::Merge(&patch)).await)
}

/// The object as JSON, or the Status of an API error as JSON.
fn outcome(result: Result<DynamicObject, kube::Error>) -> Result<Value, Value> {
    match result {
        Ok(object) => Ok(serde_json::to_value(object).unwrap()),
        Err(kube::Error::Api(status)) => Err(serde_json::to_value(*status).unwrap()),
        Err(other) => panic!("not an API error: {other}"),
    }
}

/// `{manager/operation: fieldsV1}` of an object.
fn managed(object: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for entry in object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = format!(
            "{}/{}",
            entry["manager"].as_str().unwrap(),
            entry["operation"].as_str().unwrap()
        );
        out.insert(key, entry["fieldsV1"].clone());
    }
    Value::Object(out)
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// A fake with namespace `a` and ConfigMap `c` holding `data` there, applied by `manager`;
/// and the ConfigMaps of `a`.
async fn with_configmap(data: Value, manager: &str) -> (FakeApi, Api<DynamicObject>) {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    apply(&api, configmap("c", data), manager, false)
        .await
        .unwrap();
    (fake, api)
}

/// A fake with namespace `ns`.
fn fake_with(ns: &str) -> FakeApi {
    let fake = FakeApi::new();
    fake.insert(namespace(ns));
    fake
}

#[tokio::test]
async fn apply_creates_with_server_metadata_and_managed_fields() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"app": "x"}, "finalizers": ["a/b"]}, "data": {"a": "1"}});
    let created = apply(&api, body.clone(), "stack", false).await.unwrap();
    let meta = &created["metadata"];
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        meta.get("generation").is_none(),
        "ConfigMaps carry no generation"
    );
    let entry = &meta["managedFields"][0];
    assert_eq!(
        (
            &entry["manager"],
            &entry["operation"],
            &entry["apiVersion"],
            &entry["fieldsType"]
        ),
        (
            &json!("stack"),
            &json!("Apply"),
            &json!("v1"),
            &json!("FieldsV1")
        )
    );
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}, "f:labels": {"f:app": {}}}})
    );
    // The same apply again changes nothing, not even the resourceVersion.
    let again = apply(&api, body, "stack", false).await.unwrap();
    assert_eq!(
        again["metadata"]["resourceVersion"],
        meta["resourceVersion"]
    );
}

#[tokio::test]
async fn keyed_lists_sets_and_atomic_parts_in_managed_fields() {
    let fake = fake_with("a");
    let ar = resource("apps", "v1", "Deployment", "deployments");
    let api: Api<DynamicObject> = Api::namespaced_with(fake.client(), "a", &ar);
    let deployment = |image: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                {"name": "c", "image": image, "args": ["x", "y"], "env": [{"name": "E", "value": "1"}]}]}}},
            "status": {"replicas": 5}})
    };
    let created = apply(&api, deployment("nginx"), "s", false).await.unwrap();
    // As a real kube-apiserver 1.28 answered the same apply.
    assert_eq!(
        managed(&created)["s/Apply"],
        json!({"f:spec": {"f:selector": {}, "f:template": {"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:containers": {
            "k:{\"name\":\"c\"}": {".": {}, "f:args": {}, "f:env": {"k:{\"name\":\"E\"}": {".": {}, "f:name": {}, "f:value": {}}},
                "f:image": {}, "f:name": {}}}}}}})
    );
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        created["status"],
        json!({}),
        "status is a subresource of Deployments"
    );
    let changed = apply(&api, deployment("nginx:2"), "s", false)
        .await
        .unwrap();
    assert_eq!(changed["metadata"]["generation"], 2);
    let relabelled = merge(&api, "d", json!({"metadata": {"labels": {"x": "y"}}}), "k")
        .await
        .unwrap();
    assert_eq!(
        relabelled["metadata"]["generation"], 2,
        "metadata changes leave the generation"
    );
    // Another applier owning one container's field: the keyed item merges.
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
        "containers": [{"name": "side", "image": "busybox"}]}}}});
    let both = apply(&api, sidecar, "other", false).await.unwrap();
    let containers = both["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(
        containers
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["c", "side"]
    );
    // An editor changes the sidecar's image, then `other` stops applying the sidecar: the item
    // stays, with its key and the edited field; `s` stops applying `c`: it goes.
    let mut edited = containers.clone();
    edited[1]["image"] = json!("busybox:2");
    merge(
        &api,
        "d",
        json!({"spec": {"template": {"spec": {"containers": edited}}}}),
        "kubectl-edit",
    )
    .await
    .unwrap();
    let nothing = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    let after = apply(&api, nothing, "other", false).await.unwrap();
    assert!(
        managed(&after).get("kubectl-edit/Update").is_none(),
        "{after}"
    );
    let names = |o: &Value| {
        o["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&after), ["c"]);
    // `s` stops applying the args and env of `c`: they go, the container stays.
    let slim = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    let after = apply(&api, slim, "s", false).await.unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c", "image": "nginx:2"}])
    );
}

#[tokio::test]
async fn resource_version_in_an_apply_is_a_precondition() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let created = apply(&api, configmap("c", json!({"a": "1"})), "s", false)
        .await
        .unwrap();
    let mut body = configmap("c", json!({"a": "2"}));
    body["metadata"]["resourceVersion"] = json!("1");
    assert_eq!(
        apply(&api, body.clone(), "s", false).await.unwrap_err()["code"],
        409
    );
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    assert_eq!(
        apply(&api, body, "s", false).await.unwrap()["data"]["a"],
        "2"
    );
}

#[tokio::test]
async fn a_different_value_conflicts_and_force_takes_ownership() {
    let (_, api) = with_configmap(json!({"a": "1", "b": "2"}), "stack").await;
    apply(&api, configmap("c", json!({"a": "1"})), "other", false)
        .await
        .unwrap();
    let err = apply(&api, configmap("c", json!({"a": "5"})), "other", false)
        .await
        .unwrap_err();
    assert_eq!(err["code"], 409);
    assert_eq!(err["reason"], "Conflict");
    assert_eq!(
        err["message"],
        "Apply failed with 1 conflict: conflict with \"stack\": .data.a"
    );
    assert_eq!(
        err["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"stack\"", "field": ".data.a"}])
    );
    let forced = apply(&api, configmap("c", json!({"a": "5"})), "other", true)
        .await
        .unwrap();
    assert_eq!(forced["data"], json!({"a": "5", "b": "2"}));
    assert_eq!(
        managed(&forced),
        json!({"other/Apply": {"f:data": {"f:a": {}}}, "stack/Apply": {"f:data": {"f:b": {}}}})
    );
}

#[tokio::test]
async fn several_conflicts_are_listed_by_manager() {
    let (_, api) = with_configmap(json!({"a": "1", "b": "2"}), "stack").await;
    merge(&api, "c", json!({"data": {"a": "9"}}), "kubectl-edit")
        .await
        .unwrap();
    let err = apply(
        &api,
        configmap("c", json!({"a": "5", "b": "6"})),
        "other",
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err["message"],
        "Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using v1:\n- .data.a\nconflicts with \"stack\":\n- .data.b"
    );
    assert_eq!(err["details"]["causes"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_same_value_is_shared_and_stays_while_an_owner_remains() {
    let (_, api) = with_configmap(json!({"a": "1", "b": "2"}), "one").await;
    let shared = apply(&api, configmap("c", json!({"a": "1"})), "two", false)
        .await
        .unwrap();
    assert_eq!(
        managed(&shared),
        json!({"one/Apply": {"f:data": {"f:a": {}, "f:b": {}}}, "two/Apply": {"f:data": {"f:a": {}}}})
    );
    // `one` stops applying both: `b` (its alone) goes, `a` (shared) stays.
    let after = apply(&api, configmap("c", json!({})), "one", false)
        .await
        .unwrap();
    assert_eq!(after["data"], json!({"a": "1"}));
    assert_eq!(
        managed(&after),
        json!({"one/Apply": {"f:data": {}}, "two/Apply": {"f:data": {"f:a": {}}}})
    );
    // `two` stops too: `a` goes, and so does the map `data` left empty.
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    apply(&api, object.clone(), "one", false).await.unwrap();
    let bare = apply(&api, object, "two", false).await.unwrap();
    assert!(bare.get("data").is_none(), "{bare}");
    assert!(
        bare["metadata"].get("managedFields").is_none(),
        "managers owning nothing are dropped"
    );
}

#[tokio::test]
async fn a_field_an_applier_stops_applying_is_removed_with_maps_left_empty() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let with_label = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "x"}, "finalizers": ["f/g"]}, "data": {"a": "1"}});
    apply(&api, with_label, "s", false).await.unwrap();
    let fewer = apply(&api, configmap("c", json!({"a": "1"})), "s", false)
        .await
        .unwrap();
    assert!(fewer["metadata"].get("labels").is_none(), "{fewer}");
    assert!(fewer["metadata"].get("finalizers").is_none(), "{fewer}");
    assert_eq!(fewer["data"], json!({"a": "1"}));
}

#[tokio::test]
async fn a_merge_patch_moves_ownership_of_the_fields_it_changes() {
    let (fake, api) = with_configmap(json!({"a": "1", "b": "2"}), "stack").await;
    // An unchanged value keeps its owner; a changed one moves to the editor.
    let edited = merge(
        &api,
        "c",
        json!({"data": {"a": "9", "b": "2"}}),
        "kubectl-edit",
    )
    .await
    .unwrap();
    assert_eq!(
        managed(&edited),
        json!({"stack/Apply": {"f:data": {"f:b": {}}}, "kubectl-edit/Update": {"f:data": {"f:a": {}}}})
    );
    let entries = edited["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries[0]["operation"], "Apply", "Apply entries come first");
    let err = apply(
        &api,
        configmap("c", json!({"a": "1", "b": "2"})),
        "stack",
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.a"
    );
    let reverted = apply(
        &api,
        configmap("c", json!({"a": "1", "b": "2"})),
        "stack",
        true,
    )
    .await
    .unwrap();
    assert_eq!(reverted["data"]["a"], "1");
    assert_eq!(
        managed(&reverted),
        json!({"stack/Apply": {"f:data": {"f:a": {}, "f:b": {}}}})
    );
    // Without a fieldManager the manager is "unknown" (kube's client sends no user agent).
    merge(
        &configmaps(&fake.client(), "a"),
        "c",
        json!({"data": {"z": "1"}}),
        "",
    )
    .await
    .unwrap();
    let live = fake.get("v1", "ConfigMap", "a", "c").unwrap();
    assert_eq!(
        managed(&live)["unknown/Update"],
        json!({"f:data": {"f:z": {}}})
    );
}

#[tokio::test]
async fn resource_version_in_a_merge_patch_is_a_precondition() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let created = apply(&api, configmap("c", json!({"a": "1"})), "s", false)
        .await
        .unwrap();
    let rv = created["metadata"]["resourceVersion"].clone();
    let ok = merge(
        &api,
        "c",
        json!({"metadata": {"resourceVersion": rv}, "data": {"a": "2"}}),
        "e",
    )
    .await
    .unwrap();
    assert_ne!(ok["metadata"]["resourceVersion"], rv);
    let err = merge(
        &api,
        "c",
        json!({"metadata": {"resourceVersion": rv}, "data": {"a": "3"}}),
        "e",
    )
    .await
    .unwrap_err();
    assert_eq!(err["code"], 409);
    assert_eq!(
        err["message"],
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
}

#[tokio::test]
async fn create_and_insert_are_updates_and_a_second_create_already_exists() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let inserted = fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "a", "labels": {"x": "1"}}, "data": {"a": "1"}}));
    assert_eq!(
        managed(&inserted),
        json!({"kubectl-create/Update": {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}}})
    );
    let again: DynamicObject = serde_json::from_value(configmap("c", json!({}))).unwrap();
    let err = outcome(api.create(&PostParams::default(), &again).await).unwrap_err();
    assert_eq!(
        (err["code"].clone(), err["reason"].clone()),
        (json!(409), json!("AlreadyExists"))
    );
    assert_eq!(err["message"], "configmaps \"c\" already exists");
    // An applier setting the same value shares it with the creator; a different one conflicts.
    let err = apply(&api, configmap("c", json!({"a": "2"})), "stack", false)
        .await
        .unwrap_err();
    assert_eq!(
        err["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .data.a"
    );
}

#[tokio::test]
async fn finalizers_keep_a_deleted_object_until_removed() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x/y"]}});
    apply(&api, body, "s", false).await.unwrap();
    let deleted = api.delete("c", &DeleteParams::default()).await.unwrap();
    let marked = deleted.left().expect("the object, kept by its finalizer");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(
        api.get("c")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    merge(
        &api,
        "c",
        json!({"metadata": {"finalizers": null}}),
        "controller",
    )
    .await
    .unwrap();
    let err = outcome(api.get("c").await).unwrap_err();
    assert_eq!(err["message"], "configmaps \"c\" not found");
    // Without finalizers a delete answers a Success Status and the object is gone.
    apply(&api, configmap("d", json!({})), "s", false)
        .await
        .unwrap();
    let status = api
        .delete("d", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .unwrap();
    assert_eq!(status.details.unwrap().name, "d");
    assert_eq!(fake.names(), ["Namespace a"]);
}

#[tokio::test]
async fn delete_preconditions_on_uid_and_resource_version() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let created = apply(&api, configmap("c", json!({})), "s", false)
        .await
        .unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_owned();
    let with = |uid: Option<&str>, rv: Option<&str>| DeleteParams {
        preconditions: Some(Preconditions {
            uid: uid.map(Into::into),
            resource_version: rv.map(Into::into),
        }),
        ..DeleteParams::default()
    };
    let err = match api.delete("c", &with(Some("other"), None)).await {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("{other:?}"),
    };
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"c\": the UID in the precondition (other) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    assert!(api.delete("c", &with(None, Some("1"))).await.is_err());
    assert!(fake.get("v1", "ConfigMap", "a", "c").is_some());
    api.delete("c", &with(Some(&uid), None)).await.unwrap();
    assert!(fake.get("v1", "ConfigMap", "a", "c").is_none());
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_content() {
    let fake = fake_with("a");
    fake.insert(namespace("b"));
    let client = fake.client();
    for ns in ["a", "b"] {
        apply(
            &configmaps(&client, ns),
            configmap("c", json!({})),
            "s",
            false,
        )
        .await
        .unwrap();
    }
    let answer = namespaces(&client)
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        answer.left().unwrap().data["status"]["phase"],
        "Terminating"
    );
    assert_eq!(fake.names(), ["ConfigMap b/c", "Namespace b"]);
}

#[tokio::test]
async fn a_terminating_namespace_refuses_new_content_until_it_is_gone() {
    let fake = fake_with("a").namespace_deletion(NamespaceDeletion::Manual);
    let client = fake.client();
    let api = configmaps(&client, "a");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["x/y"]}});
    apply(&api, body, "s", false).await.unwrap();
    namespaces(&client)
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    let err = apply(&api, configmap("new", json!({})), "s", false)
        .await
        .unwrap_err();
    assert_eq!(err["code"], 403);
    assert_eq!(
        err["message"],
        "configmaps \"new\" is forbidden: unable to create new content in namespace a because it is being terminated"
    );
    assert_eq!(
        err["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    // Existing objects may still be written.
    apply(&api, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["x/y"]}, "data": {"a": "1"}}), "s", false).await.unwrap();
    fake.finish_namespace_deletions();
    let held = fake.get("v1", "ConfigMap", "a", "held").unwrap();
    assert!(
        held["metadata"]["deletionTimestamp"].is_string(),
        "kept by its finalizer"
    );
    assert!(
        fake.get("v1", "Namespace", None, "a").is_some(),
        "the namespace waits for its content"
    );
    fake.edit(
        "v1",
        "ConfigMap",
        "a",
        "held",
        json!({"metadata": {"finalizers": null}}),
        "controller",
    )
    .unwrap();
    assert_eq!(fake.names(), Vec::<String>::new());
    // Writing into a namespace that does not exist.
    let err = apply(&api, configmap("c", json!({})), "s", false)
        .await
        .unwrap_err();
    assert_eq!(
        (err["code"].clone(), err["message"].clone()),
        (json!(404), json!("namespaces \"a\" not found"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_namespace_deletion_can_take_time() {
    let fake = fake_with("a").namespace_deletion(NamespaceDeletion::After(Duration::from_secs(5)));
    let client = fake.client();
    apply(
        &configmaps(&client, "a"),
        configmap("c", json!({})),
        "s",
        false,
    )
    .await
    .unwrap();
    namespaces(&client)
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(fake.get("v1", "ConfigMap", "a", "c").is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(fake.get("v1", "Namespace", None, "a").is_none());
}

#[tokio::test]
async fn list_by_label_and_field_selector() {
    let fake = fake_with("a");
    fake.insert(namespace("b"));
    let client = fake.client();
    for (ns, name, owner) in [("a", "c1", "me"), ("a", "c2", "you"), ("b", "c3", "me")] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"owner": owner, "tier": "x"}}});
        apply(&configmaps(&client, ns), body, "s", false)
            .await
            .unwrap();
    }
    let names = |list: kube::core::ObjectList<DynamicObject>| {
        list.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let mine = configmaps(&client, "a")
        .list(&ListParams::default().labels("owner=me,tier=x"))
        .await
        .unwrap();
    assert_eq!(names(mine), ["c1"]);
    let all: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &resource("", "v1", "ConfigMap", "configmaps"),
    );
    let everywhere = all
        .list(&ListParams::default().labels("owner=me"))
        .await
        .unwrap();
    assert_eq!(
        everywhere
            .metadata
            .resource_version
            .as_deref()
            .map(str::is_empty),
        Some(false)
    );
    assert_eq!(names(everywhere), ["c1", "c3"]);
    assert_eq!(
        names(
            // `!=` also matches objects without the label: `tier` keeps kube-root-ca.crt out.
            all.list(&ListParams::default().labels("owner!=me,tier"))
                .await
                .unwrap()
        ),
        ["c2"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.name=c3"))
                .await
                .unwrap()
        ),
        ["c3"]
    );
    // The raw list: kind, and items without apiVersion/kind, as the real server sends built-ins.
    let raw = fake.list("v1", "ConfigMap", "a");
    let raw_names: Vec<&str> = raw
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        raw_names,
        ["c1", "c2", "kube-root-ca.crt"],
        "every namespace has the root CA"
    );
    assert!(raw[0].get("kind").is_none() && raw[0]["metadata"]["managedFields"].is_array());
    let log = fake.take_log();
    assert!(
        log.contains(
            &"GET /api/v1/namespaces/a/configmaps?labelSelector=owner=me,tier=x".to_owned()
        ),
        "{log:?}"
    );
}

#[tokio::test]
async fn builtin_discovery() {
    let fake = FakeApi::new();
    let client = fake.client();
    for (g, v, k, namespaced) in [
        ("", "v1", "Secret", true),
        ("", "v1", "Namespace", false),
        ("apps", "v1", "Deployment", true),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            false,
        ),
        ("networking.k8s.io", "v1", "Ingress", true),
        ("coordination.k8s.io", "v1", "Lease", true),
    ] {
        let (_, caps) = discovery::pinned_kind(&client, &GroupVersionKind::gvk(g, v, k))
            .await
            .unwrap();
        assert_eq!(caps.scope == Scope::Namespaced, namespaced, "{k}");
    }
    let all = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(all.has_group("apiextensions.k8s.io"));
    assert!(!all.has_group("argoproj.io"));
    // Aggregated discovery: two requests in all, the same answers.
    fake.take_log();
    let aggregated = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert_eq!(fake.take_log(), ["GET /apis", "GET /api"]);
    let (ar, caps) = aggregated
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("deployments", Scope::Namespaced)
    );
    let (ar, caps) = aggregated
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("namespaces", Scope::Cluster)
    );
    let with_argocd = FakeApi::new().with_argocd_crds();
    let argocd = kube::Discovery::new(with_argocd.client())
        .run_aggregated()
        .await
        .unwrap();
    assert!(
        argocd
            .resolve_gvk(&GroupVersionKind::gvk(
                "argoproj.io",
                "v1alpha1",
                "AppProject"
            ))
            .is_some()
    );
}

fn crd(group: &str, kind: &str, plural: &str, scope: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": scope, "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

#[tokio::test]
async fn an_applied_crd_is_established_and_served() {
    let fake = FakeApi::new().crds_established_after_reads(2);
    let client = fake.client();
    let crds: Api<DynamicObject> = crds(&client);
    let created = apply(
        &crds,
        crd("example.com", "Widget", "widgets", "Cluster"),
        "s",
        false,
    )
    .await
    .unwrap();
    assert_eq!(created["status"], json!({}), "not established yet");
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    assert!(
        discovery::pinned_kind(&client, &gvk).await.is_err(),
        "not served before it is established"
    );
    let first = crds.get("widgets.example.com").await.unwrap();
    assert!(first.data["status"]["conditions"].is_null());
    let second = crds.get("widgets.example.com").await.unwrap();
    let conditions = second.data["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    let (ar, caps) = discovery::pinned_kind(&client, &gvk).await.unwrap();
    assert_eq!(caps.scope, Scope::Cluster);
    assert!(
        kube::Discovery::new(client.clone())
            .run()
            .await
            .unwrap()
            .has_group("example.com")
    );
    // Its objects can be written; status is a subresource (declared), so apply ignores it.
    let widgets: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let w = apply(&widgets, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"l": [1, 2]}, "status": {"s": 1}}), "s", false).await.unwrap();
    assert!(w.get("status").is_none());
    assert_eq!(
        managed(&w)["s/Apply"],
        json!({"f:spec": {".": {}, "f:l": {}}}),
        "atomic lists; maps owned as members too, as the schema declares no fields"
    );
    // Deleting the CRD deletes its objects and stops serving it.
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert!(discovery::pinned_kind(&client, &gvk).await.is_err());
    assert_eq!(fake.names(), Vec::<String>::new());
}

#[tokio::test]
async fn waiting_for_a_crd_through_a_watch() {
    let fake = FakeApi::new().crds_established_after_reads(3);
    let client = fake.client();
    let crds: Api<DynamicObject> = crds(&client);
    apply(
        &crds,
        crd("example.com", "Gadget", "gadgets", "Namespaced"),
        "s",
        false,
    )
    .await
    .unwrap();
    let wait = kube::runtime::wait::await_condition(crds, "gadgets.example.com", established);
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap()
        .unwrap();
    assert!(count(&fake.take_log(), "GET") >= 3);
}

#[tokio::test]
async fn watching_an_object_sees_its_deletion() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    apply(&api, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x/y"]}}), "s", false).await.unwrap();
    let mut events = Box::pin(kube::runtime::watcher::watch_object(api.clone(), "c"));
    assert!(events.next().await.unwrap().unwrap().is_some());
    api.delete("c", &DeleteParams::default()).await.unwrap();
    let marked = events.next().await.unwrap().unwrap().unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    fake.edit(
        "v1",
        "ConfigMap",
        "a",
        "c",
        json!({"metadata": {"finalizers": null}}),
        "controller",
    )
    .unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert!(gone.unwrap().unwrap().is_none());
    let log = fake.take_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/v1/namespaces/a/configmaps?")
                && l.contains("watch=true")),
        "{log:?}"
    );
}

#[tokio::test]
async fn argocd_applications_keep_status_in_the_main_object() {
    let fake = fake_with("argocd").with_argocd_crds();
    let client = fake.client();
    let crd = fake
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "applications.argoproj.io",
        )
        .unwrap();
    assert!(managed(&crd).get("argocd-operator/Apply").is_some());
    let apps = applications(&client, "argocd");
    let app = |revision: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "x", "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
            "spec": {"project": "default", "source": {"repoURL": "https://r", "targetRevision": revision}, "syncPolicy": {"syncOptions": ["A=1"]}}})
    };
    apply(&apps, app("1.0"), "stack", false).await.unwrap();
    fake.mark_applications(true, true);
    let marked = fake
        .get("argoproj.io/v1alpha1", "Application", "argocd", "x")
        .unwrap();
    assert_eq!(
        (
            marked["status"]["sync"]["status"].clone(),
            marked["status"]["health"]["status"].clone()
        ),
        (json!("Synced"), json!("Healthy"))
    );
    assert!(
        managed(&marked)
            .get("argocd-application-controller/Update")
            .is_some()
    );
    // A status written through the main object is kept (no status subresource).
    let patched = merge(
        &apps,
        "x",
        json!({"status": {"health": {"status": "Degraded"}}}),
        "me",
    )
    .await
    .unwrap();
    assert_eq!(patched["status"]["health"]["status"], "Degraded");
    fake.edit(
        "argoproj.io/v1alpha1",
        "Application",
        "argocd",
        "x",
        json!({"spec": {"source": {"targetRevision": "2.0"}}}),
        "kubectl-edit",
    )
    .unwrap();
    let err = apply(&apps, app("1.0"), "stack", false).await.unwrap_err();
    assert_eq!(
        err["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using argoproj.io/v1alpha1: .spec.source.targetRevision"
    );
    apply(&apps, app("1.0"), "stack", true).await.unwrap();
    // The controller plays Argo CD: the finalizer goes when the Application is deleted.
    let fake = fake.with_argocd_controller();
    apps.delete("x", &DeleteParams::foreground()).await.unwrap();
    assert!(
        fake.get("argoproj.io/v1alpha1", "Application", "argocd", "x")
            .is_none()
    );
}

#[tokio::test]
async fn secret_string_data_is_folded_into_data() {
    let fake = fake_with("a");
    let api: Api<DynamicObject> =
        Api::namespaced_with(fake.client(), "a", &resource("", "v1", "Secret", "secrets"));
    let secret = |value: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": value}});
    let first = apply(&api, secret("hello"), "s", false).await.unwrap();
    assert_eq!(first["data"], json!({"k": "aGVsbG8="}));
    assert!(first.get("stringData").is_none());
    assert_eq!(
        managed(&first)["s/Apply"],
        json!({"f:stringData": {"f:k": {}}})
    );
    let same = apply(&api, secret("hello"), "s", false).await.unwrap();
    assert_eq!(
        same["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    let changed = apply(&api, secret("bye"), "s", false).await.unwrap();
    assert_eq!(changed["data"], json!({"k": "Ynll"}));
    assert!(
        fake.get("v1", "Secret", "a", "s")
            .unwrap()
            .get("stringData")
            .is_none()
    );
}

#[tokio::test]
async fn dry_runs_store_nothing() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let dry = PatchParams::apply("s").dry_run();
    let answer = api
        .patch("c", &dry, &Patch::Apply(configmap("c", json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(answer.data["data"]["a"], "1");
    assert!(fake.get("v1", "ConfigMap", "a", "c").is_none());
    let stored = apply(&api, configmap("c", json!({"a": "1"})), "s", false)
        .await
        .unwrap();
    api.patch("c", &dry, &Patch::Apply(configmap("c", json!({"a": "2"}))))
        .await
        .unwrap();
    let delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    api.delete("c", &delete).await.unwrap();
    assert_eq!(fake.get("v1", "ConfigMap", "a", "c").unwrap(), stored);
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let owner = apply(&api, configmap("owner", json!({})), "s", false)
        .await
        .unwrap();
    let uid = owner["metadata"]["uid"].clone();
    let dependent = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dep", "finalizers": ["x/y"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
    apply(&api, dependent, "s", false).await.unwrap();
    api.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let held = fake.get("v1", "ConfigMap", "a", "owner").unwrap();
    assert_eq!(
        held["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(
        fake.get("v1", "ConfigMap", "a", "dep").unwrap()["metadata"]["deletionTimestamp"]
            .is_string()
    );
    fake.edit(
        "v1",
        "ConfigMap",
        "a",
        "dep",
        json!({"metadata": {"finalizers": null}}),
        "c",
    )
    .unwrap();
    assert_eq!(fake.names(), ["Namespace a"]);
}

#[tokio::test]
async fn faults_and_the_request_log() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    fake.fail_next("GET", "/api/v1/namespaces/a/configmaps/c", 500);
    fake.fail_next("PATCH", "/api/v1/namespaces/a/*", 429);
    fake.disconnect_next("DELETE", "/api/v1/namespaces/a/configmaps/c");
    let err = outcome(api.get("c").await).unwrap_err();
    assert_eq!(
        (err["code"].clone(), err["reason"].clone()),
        (json!(500), json!("InternalError"))
    );
    let err = apply(&api, configmap("c", json!({})), "s", false)
        .await
        .unwrap_err();
    assert_eq!(err["code"], 429);
    apply(&api, configmap("c", json!({})), "s", false)
        .await
        .unwrap();
    assert!(matches!(
        api.delete("c", &DeleteParams::default()).await,
        Err(kube::Error::Service(_))
    ));
    api.delete("c", &DeleteParams::default()).await.unwrap();
    let log = fake.take_log();
    assert_eq!(count(&log, "PATCH"), 2);
    assert_eq!(
        writes(&log),
        [
            "PATCH /api/v1/namespaces/a/configmaps/c?fieldManager=s",
            "PATCH /api/v1/namespaces/a/configmaps/c?fieldManager=s",
            "DELETE /api/v1/namespaces/a/configmaps/c",
            "DELETE /api/v1/namespaces/a/configmaps/c",
        ]
    );
    assert!(fake.take_log().is_empty());
}

#[tokio::test(start_paused = true)]
async fn latency_makes_parallel_requests_overlap() {
    let fake = fake_with("a").with_latency(Duration::from_millis(100));
    let api = configmaps(&fake.client(), "a");
    let writes = (0..8).map(|i| {
        let api = api.clone();
        async move { apply(&api, configmap(&format!("c{i}"), json!({})), "s", false).await }
    });
    for result in futures::future::join_all(writes).await {
        result.unwrap();
    }
    assert_eq!(fake.max_in_flight(), 8);
}

// ---------------------------------------------------------------------------------------------
// The same scenario on the fake and on a real API server
// ---------------------------------------------------------------------------------------------

/// Drops what differs between any two runs: uids, versions, times, the real controllers' writes.
fn normalize(value: &mut Value, uid: &str) {
    match value {
        Value::Object(map) => {
            for field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "time",
                "deletionTimestamp",
                "lastTransitionTime",
            ] {
                if let Some(v) = map.get_mut(field) {
                    *v = json!("<set>");
                }
            }
            if let Some(Value::Array(causes)) = map.get_mut("causes") {
                causes.sort_by_key(|c| c["field"].to_string());
            }
            for v in map.values_mut() {
                normalize(v, uid);
            }
        }
        Value::Array(items) => {
            // The real controller manager writes Deployments when it gets to them.
            items.retain(|i| i["manager"] != "kube-controller-manager");
            items.iter_mut().for_each(|v| normalize(v, uid));
        }
        Value::String(s) if !uid.is_empty() && s.contains(uid) => *s = s.replace(uid, "<uid>"),
        _ => {}
    }
}

async fn scenario(client: kube::Client, ns: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut record = |v: Result<Value, Value>| seen.push(v.unwrap_or_else(|e| json!({"error": e})));
    let pick = |v: Result<Value, Value>| {
        v.map(|o| json!({"metadata": {"managedFields": o["metadata"]["managedFields"], "labels": o["metadata"]["labels"], "finalizers": o["metadata"]["finalizers"], "generation": o["metadata"]["generation"]}, "data": o["data"], "spec": o["spec"], "status": o["status"]}))
    };
    record(pick(apply(&namespaces(&client), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"o": "s"}}}), "stack", false).await));
    let cms = configmaps(&client, ns);
    let full = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "labels": {"app": "x"}, "finalizers": ["x/y"]}, "data": {"a": "1", "b": "2"}});
    record(pick(apply(&cms, full.clone(), "stack", false).await));
    record(pick(
        merge(&cms, "c1", json!({"data": {"a": "9"}}), "kubectl-edit").await,
    ));
    record(pick(apply(&cms, full.clone(), "stack", false).await));
    record(pick(
        apply(
            &cms,
            configmap("c1", json!({"a": "5", "b": "6"})),
            "other",
            false,
        )
        .await,
    ));
    record(pick(apply(&cms, full.clone(), "stack", true).await));
    record(pick(
        apply(&cms, configmap("c1", json!({"b": "2"})), "t", false).await,
    ));
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "finalizers": ["x/y"]}, "data": {"a": "1"}});
    record(pick(apply(&cms, fewer, "stack", false).await));
    record(pick(
        merge(
            &cms,
            "c1",
            json!({"metadata": {"resourceVersion": "1"}, "data": {"a": "3"}}),
            "e",
        )
        .await,
    ));
    let again: DynamicObject = serde_json::from_value(configmap("c1", json!({}))).unwrap();
    record(pick(outcome(
        cms.create(&PostParams::default(), &again).await,
    )));
    let mut created: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2", "labels": {"x": "1"}}, "data": {"a": "1"}})).unwrap();
    created.metadata.namespace = Some(ns.into());
    record(pick(outcome(
        cms.create(
            &PostParams {
                field_manager: Some("kubectl-create".into()),
                ..PostParams::default()
            },
            &created,
        )
        .await,
    )));
    let listed = cms
        .list(&ListParams::default().labels("x=1"))
        .await
        .unwrap();
    record(Ok(
        json!({"list": listed.items.iter().map(|o| (o.metadata.name.clone(), o.types.is_some())).collect::<Vec<_>>()}),
    ));
    let partial = cms
        .list_metadata(&ListParams::default().labels("x=1"))
        .await
        .unwrap();
    let partial: Vec<Value> = partial
        .items
        .iter()
        .map(|o| {
            json!([
                o.types,
                o.metadata.labels,
                o.metadata.managed_fields.as_ref().map(Vec::len)
            ])
        })
        .collect();
    record(Ok(json!({"list_metadata": partial})));
    let uid = cms.get("c1").await.unwrap().metadata.uid.unwrap();
    let wrong = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    record(outcome(
        cms.delete("c1", &wrong).await.map(|e| e.left().unwrap()),
    ));
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    record(outcome(cms.delete("c1", &right).await.map(|e| e.left().unwrap())).map(|o| json!({"finalizers": o["metadata"]["finalizers"], "deleting": o["metadata"]["deletionTimestamp"].is_string()})));
    merge(&cms, "c1", json!({"metadata": {"finalizers": null}}), "c")
        .await
        .unwrap();
    record(pick(outcome(cms.get("c1").await)));
    // Finalizers and labels an applier stops applying; a field removed by a merge patch.
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c3", "labels": {"a": "1", "b": "2"}, "finalizers": ["x/y"]}, "data": {"a": "1", "b": "2"}});
    record(pick(apply(&cms, held, "stack", false).await));
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c3", "labels": {"a": "1"}}, "data": {"a": "1", "b": "2"}});
    record(pick(apply(&cms, fewer, "stack", false).await));
    record(pick(
        merge(
            &cms,
            "c3",
            json!({"data": {"b": null}, "metadata": {"labels": {"c": "3"}}}),
            "kubectl-edit",
        )
        .await,
    ));
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &resource("apps", "v1", "Deployment", "deployments"),
    );
    let deployment = |image: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
            {"name": "c", "image": image, "args": ["x"], "env": [{"name": "E", "value": "1"}]}]}}}, "status": {"replicas": 3}})
    };
    let d = apply(&deployments, deployment("nginx"), "stack", false).await;
    record(d.map(|o| json!({"managed": o["metadata"]["managedFields"], "generation": o["metadata"]["generation"], "status": o["status"]})));
    record(
        pick(apply(&deployments, deployment("nginx:2"), "stack", false).await)
            .map(|o| o["metadata"]["generation"].clone()),
    );
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
        "containers": [{"name": "side", "image": "busybox", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
    record(
        pick(apply(&deployments, sidecar, "other", false).await)
            // (not the containers: the real server adds defaults, the fake does not)
            .map(|o| o["metadata"]["managedFields"].clone()),
    );
    // An edit of the sidecar's image, then its applier stops applying it, then `stack` stops
    // applying its container's args and env.
    let live = deployments.get("d").await.unwrap();
    let mut containers = live.data["spec"]["template"]["spec"]["containers"].clone();
    containers[1]["image"] = json!("busybox:2");
    let edit = json!({"spec": {"template": {"spec": {"containers": containers}}}});
    let images = |o: Value| {
        let containers = o["spec"]["template"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let images: Vec<Value> = containers
            .iter()
            .map(|c| json!([c["name"], c["image"], c["ports"]]))
            .collect();
        json!({"managed": o["metadata"]["managedFields"], "images": images})
    };
    record(
        merge(&deployments, "d", edit, "kubectl-edit")
            .await
            .map(images),
    );
    let nothing = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    record(
        apply(&deployments, nothing, "other", false)
            .await
            .map(images),
    );
    let slim = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    record(apply(&deployments, slim, "stack", false).await.map(images));
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource("", "v1", "Secret", "secrets"));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "hello"}});
    let first = apply(&secrets, secret.clone(), "stack", false)
        .await
        .unwrap();
    let second = apply(&secrets, secret, "stack", false).await.unwrap();
    record(Ok(
        json!({"secret": [first["data"], first["stringData"], first["metadata"]["managedFields"], first["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]]}),
    ));
    // A Service: ports keyed by port and (defaulted) protocol, an atomic selector.
    let services: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &resource("", "v1", "Service", "services"),
    );
    let service = |app: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    };
    let shown = |o: Value| json!([o["metadata"]["managedFields"], o["status"]]);
    record(
        apply(&services, service("a"), "stack", false)
            .await
            .map(shown),
    );
    record(
        apply(&services, service("b"), "other", false)
            .await
            .map(shown),
    );
    // A CRD (no status subresource, as Argo CD's) and one of its objects.
    let group = format!("{ns}.example.com");
    let crds: Api<DynamicObject> = crds(&client);
    let mut definition = crd(&group, "Widget", "widgets", "Namespaced");
    definition["spec"]["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("subresources");
    apply(&crds, definition, "stack", false).await.unwrap();
    let crd_name = format!("widgets.{group}");
    let wait = kube::runtime::wait::await_condition(crds.clone(), &crd_name, established);
    let crd = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    record(Ok(json!({"crd status": crd.data["status"]})));
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &resource(&group, "v1", "Widget", "widgets"),
    );
    let widget = |m: i64| {
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"l": [1, 2], "m": {"a": m}, "source": {"targetRevision": "1.0"}}, "status": {"phase": "x"}})
    };
    record(pick(apply(&widgets, widget(1), "stack", false).await));
    record(pick(
        merge(
            &widgets,
            "w",
            json!({"spec": {"m": {"a": 2}, "l": [3]}, "status": {"phase": "y"}}),
            "kubectl-edit",
        )
        .await,
    ));
    record(pick(apply(&widgets, widget(1), "stack", false).await));
    let listed = widgets.list(&ListParams::default()).await.unwrap();
    record(Ok(
        json!({"widgets": listed.items.iter().map(|o| o.types.clone()).collect::<Vec<_>>()}),
    ));
    crds.delete(&crd_name, &DeleteParams::default())
        .await
        .unwrap();
    record(pick(
        apply(
            &configmaps(&client, &format!("{ns}-missing")),
            configmap("c", json!({})),
            "stack",
            false,
        )
        .await,
    ));
    namespaces(&client)
        .delete(ns, &DeleteParams::default())
        .await
        .unwrap();
    record(pick(
        apply(&cms, configmap("late", json!({})), "stack", false).await,
    ));
    for v in &mut seen {
        normalize(v, &uid);
    }
    seen
}

#[tokio::test]
#[ignore = "needs a cluster (DEVOPS_STACK_TEST_KUBECONFIG): scripts/test.sh starts it"]
async fn matches_the_real_api_server() {
    let path = devops_stack_test::live::kubeconfig();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let live = kube::Client::try_from(config).unwrap();
    let suffix = std::process::id();
    let ns = format!("fake-check-{suffix}");
    let real = scenario(live, &ns).await;
    // The real namespace controller takes a while: the namespace is still terminating when
    // the scenario writes into it.
    let fake = FakeApi::new().namespace_deletion(NamespaceDeletion::Manual);
    let fake = scenario(fake.client(), &ns).await;
    for (i, (r, f)) in real.iter().zip(&fake).enumerate() {
        assert_eq!(
            f, r,
            "step {i} differs: the fake answered\n{f:#}\nthe real server\n{r:#}"
        );
    }
    assert_eq!(real.len(), fake.len());
}

#[tokio::test]
async fn a_controller_writes_status_through_the_subresource() {
    let fake = fake_with("a");
    let api: Api<DynamicObject> = Api::namespaced_with(
        fake.client(),
        "a",
        &resource("apps", "v1", "Deployment", "deployments"),
    );
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
    let created = apply(&api, body, "s", false).await.unwrap();
    fake.set_status(
        "apps/v1",
        "Deployment",
        "a",
        "d",
        json!({"readyReplicas": 1}),
    );
    let live = api.get("d").await.unwrap();
    assert_eq!(live.data["status"], json!({"readyReplicas": 1}));
    assert_eq!(
        live.metadata.generation,
        Some(1),
        "status leaves the generation"
    );
    let entry = live
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("kube-controller-manager"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    // A merge patch of status through the main resource is ignored.
    let patched = merge(&api, "d", json!({"status": {"readyReplicas": 7}}), "me")
        .await
        .unwrap();
    assert_eq!(patched["status"]["readyReplicas"], 1);
    assert_ne!(patched["metadata"]["uid"], json!(null));
    assert_eq!(patched["metadata"]["uid"], created["metadata"]["uid"]);
}

#[tokio::test]
async fn replace_create_with_generate_name_and_refused_requests() {
    let fake = fake_with("a");
    let client = fake.client();
    let api = configmaps(&client, "a");
    let generated: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "g-"}}),
    )
    .unwrap();
    let made = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("g-") && name.len() == 7, "{name}");
    // PUT honours a stale resourceVersion as a precondition.
    let mut stale = api.get(&name).await.unwrap();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "1"}})),
    )
    .await
    .unwrap();
    stale.data["data"] = json!({"b": "2"});
    let err = outcome(api.replace(&name, &PostParams::default(), &stale).await).unwrap_err();
    assert_eq!(err["code"], 409);
    stale.metadata.resource_version = None;
    let replaced = outcome(api.replace(&name, &PostParams::default(), &stale).await).unwrap();
    assert_eq!(replaced["data"], json!({"b": "2"}));
    // Apply needs a field manager; JSON patches are not served; unknown kinds are not found.
    let no_manager = PatchParams {
        field_manager: None,
        ..PatchParams::default()
    };
    let err = outcome(
        api.patch(
            &name,
            &no_manager,
            &Patch::Apply(configmap(&name, json!({}))),
        )
        .await,
    )
    .unwrap_err();
    assert_eq!(err["code"], 400);
    let json_patch = serde_json::from_value(json!([{"op": "remove", "path": "/data"}])).unwrap();
    let err = outcome(
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::<()>::Json(json_patch),
        )
        .await,
    )
    .unwrap_err();
    assert_eq!(err["code"], 415);
    let unknown: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &resource("example.com", "v1", "Thing", "things"),
    );
    assert_eq!(outcome(unknown.get("x").await).unwrap_err()["code"], 404);
    // A cluster-scoped collection.
    let ns = namespaces(&client)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        ns.items
            .iter()
            .map(|n| n.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        [
            "a",
            "default",
            "kube-node-lease",
            "kube-public",
            "kube-system"
        ]
    );
}

#[tokio::test]
async fn a_watcher_with_a_label_selector_sees_matching_objects_only() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let config = kube::runtime::watcher::Config::default().labels("owner=me");
    let mut events = Box::pin(kube::runtime::watcher(api.clone(), config).applied_objects());
    let labelled = |name: &str, owner: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"owner": owner}}});
    apply(&api, labelled("theirs", "you"), "s", false)
        .await
        .unwrap();
    apply(&api, labelled("mine", "me"), "s", false)
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.metadata.name.as_deref(), Some("mine"));
}

#[tokio::test]
async fn metadata_only_reads() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    let labelled = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"owner": "me"}}, "data": {"big": "x"}});
    apply(&api, labelled, "s", false).await.unwrap();
    let list = api
        .list_metadata(&ListParams::default().labels("owner=me"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let item = &list.items[0];
    assert_eq!(
        item.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert!(item.metadata.uid.is_some() && item.metadata.managed_fields.is_some());
    let one = api.get_metadata("c").await.unwrap();
    assert_eq!(one.metadata.labels.unwrap()["owner"], "me");
    let path = fake.path("v1", "ConfigMap", Some("a"), Some("c"));
    let edited = fake
        .edit_path(&path, json!({"data": {"big": "y"}}), "kubectl-edit")
        .unwrap();
    assert_eq!(edited["data"]["big"], "y");
    // Helpers' requests are not logged: the apply and two reads are.
    let log = fake.take_log();
    assert_eq!((count(&log, "GET"), writes(&log).len()), (2, 1), "{log:?}");
}

#[tokio::test]
async fn delete_collection_by_label() {
    let fake = fake_with("a");
    let api = configmaps(&fake.client(), "a");
    for (name, x, finalizers) in [
        ("a", "1", json!([])),
        ("b", "2", json!([])),
        ("f", "1", json!(["x/y"])),
    ] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"x": x}, "finalizers": finalizers}});
        apply(&api, body, "s", false).await.unwrap();
    }
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("x=1"),
        )
        .await
        .unwrap();
    let list = deleted.left().expect("the list of what was deleted");
    assert_eq!(
        list.items
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["a", "f"]
    );
    assert_eq!(
        fake.names(),
        ["ConfigMap a/b", "ConfigMap a/f", "Namespace a"]
    );
    assert!(
        fake.get("v1", "ConfigMap", "a", "f").unwrap()["metadata"]["deletionTimestamp"].is_string()
    );
}

/// The helpers work outside a runtime, as in a plain `#[test]`.
#[test]
fn helpers_need_no_runtime() {
    let fake = fake_with("a").with_argocd_crds();
    let app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "x", "namespace": "a"}, "spec": {}});
    fake.insert(app);
    fake.mark_applications(false, false);
    let marked = fake
        .get("argoproj.io/v1alpha1", "Application", "a", "x")
        .unwrap();
    assert_eq!(marked["status"]["sync"]["status"], "OutOfSync");
    assert_eq!(
        fake.list("argoproj.io/v1alpha1", "Application", None).len(),
        1
    );
}

#[tokio::test]
async fn every_namespace_gets_what_the_controller_manager_publishes() {
    let fake = fake_with("a");
    let client = fake.client();
    let root_ca = fake
        .get("v1", "ConfigMap", "a", "kube-root-ca.crt")
        .unwrap();
    assert!(
        root_ca["data"]["ca.crt"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(
        managed(&root_ca)
            .get("kube-controller-manager/Update")
            .is_some()
    );
    let sa = fake.get("v1", "ServiceAccount", "a", "default").unwrap();
    assert!(
        sa["metadata"].get("managedFields").is_none(),
        "as on a real cluster"
    );
    // Deleted, it comes back.
    configmaps(&client, "a")
        .delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        fake.get("v1", "ConfigMap", "a", "kube-root-ca.crt")
            .is_some()
    );
    for ns in fake_api::SYSTEM_NAMESPACES {
        assert!(
            fake.get("v1", "ConfigMap", ns, "kube-root-ca.crt")
                .is_some(),
            "{ns}"
        );
    }
    assert_eq!(
        fake.names(),
        ["Namespace a"],
        "names() leaves out what every cluster has"
    );
}
