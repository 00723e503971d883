//! A team's namespaces: each with a ResourceQuota, a LimitRange and a baseline NetworkPolicy
//! the team cannot change, and the Kubernetes Roles and RoleBindings of the team's groups.

use std::collections::BTreeMap;

use devops_stack_core::Validation;
use serde::Serialize;
use serde_json::{Value, json};

use super::AccessRole;

/// A namespace of a team, created by the platform before any of the team's apps syncs.
///
/// ```
/// use devops_stack_modules::team::{NetworkBaseline, Quota, TeamNamespace};
/// let ns = TeamNamespace::new("shop-prod")
///     .quota(Quota::default().hard("requests.cpu", "8"))
///     .network(NetworkBaseline::AllowAll);
/// assert_eq!(ns.name(), "shop-prod");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamNamespace {
    name: String,
    quota: Quota,
    limits: Limits,
    network: NetworkBaseline,
}

impl TeamNamespace {
    /// The namespace `name`, with the default [`Quota`], [`Limits`] and
    /// [`NetworkBaseline::IngressAndSameNamespace`].
    pub fn new(name: impl Into<String>) -> Self {
        TeamNamespace {
            name: name.into(),
            quota: Quota::default(),
            limits: Limits::default(),
            network: NetworkBaseline::default(),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Another quota.
    #[must_use]
    pub fn quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    /// Other container limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Another baseline network policy.
    #[must_use]
    pub fn network(mut self, network: NetworkBaseline) -> Self {
        self.network = network;
        self
    }

    pub(super) fn validate(&self, v: &mut Validation, field: &str) {
        for (key, quantity) in &self.quota.hard {
            v.check(
                &format!("{field}.quota.{key}"),
                quantity_check(quantity),
                "use a Kubernetes quantity such as `500m`, `2`, `512Mi` or `10Gi`",
            );
        }
        for (what, map) in [
            ("default_request", &self.limits.default_request),
            ("default_limit", &self.limits.default_limit),
            ("max", &self.limits.max),
        ] {
            for (key, quantity) in map {
                v.check(
                    &format!("{field}.limits.{what}.{key}"),
                    quantity_check(quantity),
                    "use a Kubernetes quantity such as `500m`, `2`, `512Mi` or `10Gi`",
                );
            }
        }
        if let NetworkBaseline::Custom(spec) = &self.network
            && !spec.is_object()
        {
            v.error(
                format!("{field}.network"),
                "the custom policy is not an object",
                "give a NetworkPolicy `spec` as a JSON object, like `json!({\"policyTypes\": [\"Ingress\"]})`",
            );
        }
    }

    /// The Namespace, ResourceQuota, LimitRange and NetworkPolicy.
    pub(super) fn objects(
        &self,
        labels: &BTreeMap<String, String>,
        ingress_namespace: Option<&str>,
    ) -> Vec<Value> {
        let ns = &self.name;
        let meta = |name: &str| json!({"name": name, "namespace": ns, "labels": labels});
        let mut objects = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}),
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("team-quota"),
                "spec": {"hard": self.quota.hard}}),
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta("team-limits"),
                "spec": {"limits": [{"type": "Container", "default": self.limits.default_limit,
                    "defaultRequest": self.limits.default_request, "max": self.limits.max}]}}),
        ];
        let spec = match &self.network {
            NetworkBaseline::IngressAndSameNamespace => {
                let mut from = vec![json!({"podSelector": {}})];
                if let Some(ingress) = ingress_namespace {
                    from.push(json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ingress}}}));
                }
                Some(
                    json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": from}]}),
                )
            }
            NetworkBaseline::AllowAll => None,
            NetworkBaseline::Custom(spec) => Some(spec.clone()),
        };
        if let Some(spec) = spec {
            objects.push(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": meta("team-baseline"), "spec": spec}),
            );
        }
        objects
    }
}

/// A namespace's ResourceQuota: hard limits by resource name.
///
/// The default: `requests.cpu` 4, `requests.memory` 8Gi, `limits.cpu` 8, `limits.memory` 16Gi,
/// 50 pods, 10 PersistentVolumeClaims with 100Gi in total, and no Service of type LoadBalancer
/// or NodePort (apps publish through the platform's ingress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Hard limits (`requests.cpu: 4`).
    pub hard: BTreeMap<String, String>,
}

impl Default for Quota {
    fn default() -> Self {
        Quota::none()
            .hard("requests.cpu", "4")
            .hard("requests.memory", "8Gi")
            .hard("limits.cpu", "8")
            .hard("limits.memory", "16Gi")
            .hard("pods", "50")
            .hard("persistentvolumeclaims", "10")
            .hard("requests.storage", "100Gi")
            .hard("services.loadbalancers", "0")
            .hard("services.nodeports", "0")
    }
}

impl Quota {
    /// A quota without limits (add them with [`Quota::hard`]).
    pub fn none() -> Self {
        Quota {
            hard: BTreeMap::new(),
        }
    }

    /// Sets the hard limit of `resource` to `quantity`.
    #[must_use]
    pub fn hard(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.hard.insert(resource.into(), quantity.into());
        self
    }
}

/// A namespace's LimitRange for containers: defaults for containers that set no resources, and
/// maxima.
///
/// The default: requests 100m CPU and 128Mi memory, limits 500m CPU and 512Mi memory, at most
/// 2 CPUs and 4Gi memory per container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Requests of containers that set none.
    pub default_request: BTreeMap<String, String>,
    /// Limits of containers that set none.
    pub default_limit: BTreeMap<String, String>,
    /// The most a container may ask for.
    pub max: BTreeMap<String, String>,
}

impl Default for Limits {
    fn default() -> Self {
        let map = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_owned(), cpu.to_owned()),
                ("memory".to_owned(), memory.to_owned()),
            ])
        };
        Limits {
            default_request: map("100m", "128Mi"),
            default_limit: map("500m", "512Mi"),
            max: map("2", "4Gi"),
        }
    }
}

/// The baseline NetworkPolicy of a team namespace (named `team-baseline`; the team's roles
/// cannot change it).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NetworkBaseline {
    /// Deny all ingress except from pods of the same namespace and from the ingress
    /// controller's namespace (when the team is given one). The default.
    #[default]
    IngressAndSameNamespace,
    /// No baseline policy: all traffic allowed.
    AllowAll,
    /// A policy of your own: the NetworkPolicy's `spec`.
    Custom(Value),
}

/// Checks a Kubernetes quantity: a decimal number with an optional suffix.
fn quantity_check(q: &str) -> Result<(), String> {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E",
    ];
    let number = SUFFIXES.iter().find_map(|s| q.strip_suffix(s)).unwrap_or(q);
    let (int, frac) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if digits(int) && digits(frac) {
        Ok(())
    } else {
        Err(format!("`{q}` is not a Kubernetes quantity"))
    }
}

/// The Kubernetes side of an access role: the Role it binds in each team namespace.
pub(super) fn role_rules(role: AccessRole) -> Value {
    let read = ["get", "list", "watch"];
    let write = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    // What every role may read: the workloads and the namespace's own limits.
    let mut rules = vec![
        json!({"apiGroups": [""], "resources": ["pods", "pods/log", "services", "endpoints", "configmaps",
            "persistentvolumeclaims", "serviceaccounts", "events", "resourcequotas", "limitranges"], "verbs": read}),
        json!({"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "verbs": read}),
        json!({"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": read}),
        json!({"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": read}),
        json!({"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": read}),
        json!({"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": read}),
    ];
    match role {
        AccessRole::Viewer => {}
        AccessRole::Deployer => rules.extend([
            // restart (rollout restart patches the pod template) and delete stuck pods
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}),
            json!({"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["patch"]}),
            json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete"]}),
        ]),
        AccessRole::Admin => rules.extend([
            json!({"apiGroups": [""], "resources": ["pods", "services", "endpoints", "configmaps", "secrets",
                "persistentvolumeclaims", "serviceaccounts"], "verbs": write}),
            json!({"apiGroups": [""], "resources": ["pods/exec", "pods/portforward", "pods/attach"], "verbs": ["create", "get"]}),
            json!({"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets",
                "deployments/scale", "statefulsets/scale"], "verbs": write}),
            json!({"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": write}),
            json!({"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": write}),
            json!({"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": write}),
            json!({"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": write}),
        ]),
    }
    Value::Array(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "0.5", "512Mi", "10Gi", "1k", "0"] {
            assert!(quantity_check(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1.", "Mi", "one", "1 Gi", "1GB", "-1"] {
            assert!(quantity_check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_role_may_write_the_namespace_limits() {
        for role in [AccessRole::Viewer, AccessRole::Deployer, AccessRole::Admin] {
            for rule in role_rules(role).as_array().unwrap() {
                let resources: Vec<&str> = rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let writes = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v != "get" && v != "list" && v != "watch");
                for guarded in ["resourcequotas", "limitranges", "networkpolicies"] {
                    assert!(
                        !(writes && resources.contains(&guarded)),
                        "{role:?} may write {guarded}"
                    );
                }
                assert!(
                    rule["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r != "*"),
                    "no wildcard"
                );
            }
        }
    }
}
