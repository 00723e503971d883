//! The EKS calls moto does not serve (pod identity associations, add-ons, access entries and
//! their policies), served from memory by a small HTTP server on loopback, beside moto:
//! [`EksFake::route`] is an SDK interceptor that sends those calls there and leaves every other
//! one (IAM, the clusters) to moto.
//!
//! It answers as EKS does for what the modules use: one association per service account of a
//! cluster and one access entry per principal (a second is `ResourceInUseException`), tags kept
//! as given, `ResourceNotFoundException` for an unknown association, add-on or access entry,
//! add-ons `ACTIVE` at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::recorder::Recorder;

#[derive(Debug, Default)]
struct State {
    /// `(cluster, association)`, the association as EKS describes it.
    associations: Vec<(String, Value)>,
    /// `(cluster, name)` to the add-on as EKS describes it.
    addons: BTreeMap<(String, String), Value>,
    /// `(cluster, principal)` to the access entry as EKS describes it.
    access_entries: BTreeMap<(String, String), Value>,
    /// `(cluster, principal)` to the access policies associated, in order.
    access_policies: BTreeMap<(String, String), Vec<String>>,
    next_id: u32,
}

/// A moto test's emulators: moto, reset and kept for this test while `lock` lives (bind it when
/// destructuring: `lock: _lock`), the fake beside it, a recorder of the operations called, and
/// an AWS configuration sending to both through the recorder.
pub struct Emulated {
    pub endpoint: String,
    pub fake: EksFake,
    pub recorder: Recorder,
    pub aws: devops_stack_aws::AwsConfig,
    pub lock: tokio::sync::MutexGuard<'static, ()>,
}

impl Emulated {
    pub async fn start() -> Self {
        let endpoint = super::endpoint();
        let guard = super::LOCK.lock().await;
        super::reset(&endpoint);
        let fake = EksFake::start().await;
        let recorder = Recorder::new();
        let aws = super::aws(&endpoint)
            .interceptor(fake.route())
            .interceptor(recorder.clone());
        Emulated {
            endpoint,
            fake,
            recorder,
            aws,
            lock: guard,
        }
    }
}

/// The fake; it serves until dropped with the test's runtime.
#[derive(Debug, Clone)]
pub struct EksFake {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
}

impl EksFake {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let served = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, Arc::clone(&served)));
            }
        });
        EksFake { state, addr }
    }

    /// The interceptor sending the calls the fake serves to it.
    pub fn route(&self) -> Route {
        Route { addr: self.addr }
    }

    /// An association made by someone else, as `eksctl` or the console would.
    pub fn insert_association(
        &self,
        cluster: &str,
        namespace: &str,
        service_account: &str,
        role_arn: &str,
        tags: Value,
    ) -> String {
        let mut state = self.state.lock().unwrap();
        let a = association(
            &mut state,
            cluster,
            namespace,
            service_account,
            role_arn,
            tags,
        );
        let id = a["associationId"].as_str().unwrap().to_owned();
        state.associations.push((cluster.to_owned(), a));
        id
    }

    /// Points the associations of `cluster` to `role_arn`, as a hand edit would.
    pub fn point_associations(&self, cluster: &str, role_arn: &str) {
        let mut state = self.state.lock().unwrap();
        for (_, a) in state.associations.iter_mut().filter(|(c, _)| c == cluster) {
            a["roleArn"] = json!(role_arn);
        }
    }

    /// The associations of `cluster`.
    pub fn associations(&self, cluster: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .associations
            .iter()
            .filter(|(c, _)| c == cluster)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// The add-ons of `cluster`.
    pub fn addons(&self, cluster: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .addons
            .iter()
            .filter(|((c, _), _)| c == cluster)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// The access entries of `cluster`.
    pub fn access_entries(&self, cluster: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .access_entries
            .iter()
            .filter(|((c, _), _)| c == cluster)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The policies associated to the access entry of `principal` on `cluster`.
    pub fn access_policies(&self, cluster: &str, principal: &str) -> Vec<String> {
        let key = (cluster.to_owned(), principal.to_owned());
        let state = self.state.lock().unwrap();
        state.access_policies.get(&key).cloned().unwrap_or_default()
    }

    /// Adds an access entry made by someone else (`eksctl`, the console).
    pub fn insert_access_entry(&self, cluster: &str, principal: &str, tags: Value) {
        let entry = access_entry(cluster, principal, &json!([]), tags);
        self.state
            .lock()
            .unwrap()
            .access_entries
            .insert((cluster.to_owned(), principal.to_owned()), entry);
    }

    /// Adds an add-on made by someone else.
    pub fn insert_addon(&self, cluster: &str, name: &str, tags: Value) {
        let addon =
            json!({"addonName": name, "clusterName": cluster, "status": "ACTIVE", "tags": tags});
        self.state
            .lock()
            .unwrap()
            .addons
            .insert((cluster.to_owned(), name.to_owned()), addon);
    }
}

fn association(
    state: &mut State,
    cluster: &str,
    namespace: &str,
    service_account: &str,
    role_arn: &str,
    tags: Value,
) -> Value {
    state.next_id += 1;
    let id = format!("a-{:017}", state.next_id);
    json!({
        "clusterName": cluster,
        "namespace": namespace,
        "serviceAccount": service_account,
        "roleArn": role_arn,
        "associationArn": format!("arn:aws:eks:us-east-1:123456789012:podidentityassociation/{cluster}/{id}"),
        "associationId": id,
        "tags": tags,
    })
}

fn access_entry(cluster: &str, principal: &str, groups: &Value, tags: Value) -> Value {
    json!({
        "clusterName": cluster,
        "principalArn": principal,
        "kubernetesGroups": groups,
        "accessEntryArn": format!("arn:aws:eks:us-east-1:123456789012:access-entry/{cluster}/x"),
        "type": "STANDARD",
        "tags": tags,
    })
}

/// A path segment, percent-decoded (the SDK encodes an ARN's `:` and `/`).
fn decoded(segment: &str) -> String {
    url::form_urlencoded::parse(format!("s={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Sends the pod identity association, add-on and access entry calls to the fake.
#[derive(Debug, Clone)]
pub struct Route {
    addr: SocketAddr,
}

impl Intercept for Route {
    fn name(&self) -> &'static str {
        "EksFakeRoute"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let uri: http::Uri = request.uri().parse()?;
        if ["/pod-identity-associations", "/addons", "/access-entries"]
            .iter()
            .any(|p| uri.path().contains(p))
        {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            request.set_uri(format!("http://{}{path}", self.addr))?;
        }
        Ok(())
    }
}

/// Reads one request (`Content-Length` bodies only, as the SDK sends), answers, closes.
async fn serve(mut conn: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let body: Value =
        serde_json::from_slice(&data[head_end..head_end + length]).unwrap_or(Value::Null);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let (status, code, answer) = answer(&mut state.lock().unwrap(), method, target, &body);
    let text = answer.to_string();
    let mut response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        text.len()
    );
    if let Some(code) = code {
        response.push_str(&format!("x-amzn-errortype: {code}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&text);
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}

fn not_found(what: &str) -> (u16, Option<&'static str>, Value) {
    (
        404,
        Some("ResourceNotFoundException"),
        json!({"message": format!("{what} not found")}),
    )
}

fn answer(
    state: &mut State,
    method: &str,
    target: &str,
    body: &Value,
) -> (u16, Option<&'static str>, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["clusters", cluster, "pod-identity-associations"]) => {
            let found: Vec<Value> = state
                .associations
                .iter()
                .filter(|(c, a)| {
                    c == cluster
                        && query
                            .get("namespace")
                            .is_none_or(|n| a["namespace"] == n.as_str())
                        && query
                            .get("serviceAccount")
                            .is_none_or(|s| a["serviceAccount"] == s.as_str())
                })
                .map(|(_, a)| {
                    let mut summary = a.clone();
                    let map = summary.as_object_mut().unwrap();
                    map.remove("roleArn");
                    map.remove("tags");
                    summary
                })
                .collect();
            (200, None, json!({"associations": found}))
        }
        ("POST", ["clusters", cluster, "pod-identity-associations"]) => {
            let (ns, sa) = (
                body["namespace"].as_str().unwrap_or_default(),
                body["serviceAccount"].as_str().unwrap_or_default(),
            );
            if state
                .associations
                .iter()
                .any(|(c, a)| c == cluster && a["namespace"] == ns && a["serviceAccount"] == sa)
            {
                return (
                    409,
                    Some("ResourceInUseException"),
                    json!({"message": "Association already exists"}),
                );
            }
            let a = association(
                state,
                cluster,
                ns,
                sa,
                body["roleArn"].as_str().unwrap_or_default(),
                body.get("tags").cloned().unwrap_or(json!({})),
            );
            state.associations.push(((*cluster).to_owned(), a.clone()));
            (200, None, json!({"association": a}))
        }
        (method, ["clusters", cluster, "pod-identity-associations", id]) => {
            let Some(i) = state
                .associations
                .iter()
                .position(|(c, a)| c == cluster && a["associationId"] == *id)
            else {
                return not_found("association");
            };
            match method {
                "GET" => (200, None, json!({"association": state.associations[i].1})),
                "POST" => {
                    state.associations[i].1["roleArn"] = body["roleArn"].clone();
                    (200, None, json!({"association": state.associations[i].1}))
                }
                "DELETE" => {
                    let (_, a) = state.associations.remove(i);
                    (200, None, json!({"association": a}))
                }
                _ => (405, None, json!({})),
            }
        }
        ("GET", ["clusters", cluster, "addons"]) => {
            let names: Vec<&Value> = state
                .addons
                .iter()
                .filter(|((c, _), _)| c == cluster)
                .map(|(_, a)| &a["addonName"])
                .collect();
            (200, None, json!({"addons": names}))
        }
        ("POST", ["clusters", cluster, "addons"]) => {
            let name = body["addonName"].as_str().unwrap_or_default().to_owned();
            let addon = json!({
                "addonName": name,
                "clusterName": cluster,
                "status": "ACTIVE",
                "addonVersion": body.get("addonVersion").cloned().unwrap_or(json!("v1.3.0-eksbuild.1")),
                "tags": body.get("tags").cloned().unwrap_or(json!({})),
            });
            state
                .addons
                .insert(((*cluster).to_owned(), name), addon.clone());
            (200, None, json!({"addon": addon}))
        }
        (method, ["clusters", cluster, "addons", name]) => {
            let key = ((*cluster).to_owned(), (*name).to_owned());
            match (method, state.addons.get(&key).cloned()) {
                (_, None) => not_found("addon"),
                ("GET", Some(a)) => (200, None, json!({"addon": a})),
                ("DELETE", Some(a)) => {
                    state.addons.remove(&key);
                    (200, None, json!({"addon": a}))
                }
                _ => (405, None, json!({})),
            }
        }
        ("GET", ["clusters", cluster, "access-entries"]) => {
            let principals: Vec<&Value> = state
                .access_entries
                .iter()
                .filter(|((c, _), _)| c == cluster)
                .map(|(_, e)| &e["principalArn"])
                .collect();
            (200, None, json!({"accessEntries": principals}))
        }
        ("POST", ["clusters", cluster, "access-entries"]) => {
            let principal = body["principalArn"].as_str().unwrap_or_default().to_owned();
            let key = ((*cluster).to_owned(), principal.clone());
            if state.access_entries.contains_key(&key) {
                return (
                    409,
                    Some("ResourceInUseException"),
                    json!({"message": "The specified access entry resource is already in use on this cluster."}),
                );
            }
            let entry = access_entry(
                cluster,
                &principal,
                body.get("kubernetesGroups").unwrap_or(&json!([])),
                body.get("tags").cloned().unwrap_or(json!({})),
            );
            state.access_entries.insert(key, entry.clone());
            (200, None, json!({"accessEntry": entry}))
        }
        (method, ["clusters", cluster, "access-entries", principal]) => {
            let key = ((*cluster).to_owned(), decoded(principal));
            match (method, state.access_entries.get(&key).cloned()) {
                (_, None) => not_found("access entry"),
                ("GET", Some(e)) => (200, None, json!({"accessEntry": e})),
                ("DELETE", Some(_)) => {
                    state.access_entries.remove(&key);
                    state.access_policies.remove(&key);
                    (200, None, json!({}))
                }
                _ => (405, None, json!({})),
            }
        }
        (
            "POST",
            [
                "clusters",
                cluster,
                "access-entries",
                principal,
                "access-policies",
            ],
        ) => {
            let key = ((*cluster).to_owned(), decoded(principal));
            if !state.access_entries.contains_key(&key) {
                return not_found("access entry");
            }
            let policy = body["policyArn"].as_str().unwrap_or_default().to_owned();
            let policies = state.access_policies.entry(key.clone()).or_default();
            if !policies.contains(&policy) {
                policies.push(policy.clone());
            }
            (
                200,
                None,
                json!({
                    "clusterName": cluster,
                    "principalArn": key.1,
                    "associatedAccessPolicy": {"policyArn": policy, "accessScope": body["accessScope"]},
                }),
            )
        }
        _ => (
            404,
            None,
            json!({"message": format!("the fake does not serve {method} {path}")}),
        ),
    }
}
