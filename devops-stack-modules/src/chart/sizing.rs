//! How many replicas of a component run and what each requests: [`Sizing`], and the
//! `replicas` and `resources` setters of every chart whose spec has one ([`Sizable`]).

use std::collections::BTreeMap;

use devops_stack_core::Validation;
use serde::Serialize;
use serde_json::Value;

use super::Chart;
use super::values::to_json;

/// Compute resources of a container: requests and limits by resource name (`cpu`, `memory`).
///
/// ```
/// use devops_stack_modules::Resources;
/// let r = Resources::new().request("cpu", "100m").request("memory", "128Mi").limit("memory", "256Mi");
/// assert_eq!(r.to_value()["limits"]["memory"], "256Mi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resources {
    /// Requests, like `cpu: 100m`.
    pub requests: BTreeMap<String, String>,
    /// Limits, like `memory: 256Mi`.
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    /// No requests and no limits.
    pub fn new() -> Self {
        Resources::default()
    }

    /// Requests `quantity` of `resource`.
    #[must_use]
    pub fn request(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.requests.insert(resource.into(), quantity.into());
        self
    }

    /// Limits `resource` to `quantity`.
    #[must_use]
    pub fn limit(mut self, resource: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.limits.insert(resource.into(), quantity.into());
        self
    }

    /// The Kubernetes `resources` object.
    pub fn to_value(&self) -> Value {
        to_json(self)
    }

    /// Small defaults for a controller: 100m CPU and `memory` requested, `memory` × 2 as limit.
    pub(crate) fn small(memory_mi: u32) -> Self {
        Resources::new()
            .request("cpu", "100m")
            .request("memory", format!("{memory_mi}Mi"))
            .limit("memory", format!("{}Mi", memory_mi * 2))
    }
}

/// How many replicas of a component run and what each requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    /// The number of replicas.
    pub replicas: u32,
    /// The compute resources of each.
    pub resources: Resources,
}

impl Sizing {
    /// `replicas` replicas, each with `resources`.
    pub fn new(replicas: u32, resources: Resources) -> Self {
        Sizing {
            replicas,
            resources,
        }
    }

    /// Refuses zero replicas (a spec calls it from its
    /// [`validate_more`](super::ChartSpec::validate_more)).
    pub fn validate(&self, v: &mut Validation) {
        if self.replicas == 0 {
            v.error("replicas", "is 0", "run at least one replica");
        }
    }
}

/// A chart spec with a [`Sizing`]: its [`Chart`] gets the `replicas` and `resources` setters.
pub trait Sizable {
    /// The spec's sizing, for the setters to change.
    fn sizing(&mut self) -> &mut Sizing;
}

impl<C: Sizable> Chart<C> {
    /// The number of replicas (the default is in the module's documentation).
    #[must_use]
    pub fn replicas(mut self, n: u32) -> Self {
        self.spec.sizing().replicas = n;
        self
    }

    /// The compute resources (the default is in the module's documentation).
    #[must_use]
    pub fn resources(mut self, resources: Resources) -> Self {
        self.spec.sizing().resources = resources;
        self
    }
}
