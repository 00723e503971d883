//! The output ingress controllers share, so that swapping one for another changes one line.

use devops_stack_core::interfaces::{Ingress, IngressProvider};
use serde::Serialize;

/// What an ingress controller module (Traefik, ingress-nginx) outputs: its namespace and how to
/// publish through it. Implements [`IngressProvider`], so its handle is an `Input<Ingress>` for
/// every module that publishes a UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressController {
    /// The controller's namespace.
    pub namespace: String,
    /// How ingresses use it.
    pub ingress: Ingress,
}

impl IngressProvider for IngressController {
    fn ingress(&self) -> Ingress {
        self.ingress.clone()
    }
}

/// The settings both ingress controllers have.
#[derive(Debug, Clone)]
pub(crate) struct ControllerSettings {
    pub(crate) class_name: String,
    pub(crate) default_class: bool,
    pub(crate) service_type: String,
}

impl ControllerSettings {
    pub(crate) fn new(class_name: &str) -> Self {
        ControllerSettings {
            class_name: class_name.to_owned(),
            default_class: true,
            service_type: "LoadBalancer".into(),
        }
    }

    /// Checks the class name; declares the ingress class.
    pub(crate) fn validate(&self, v: &mut devops_stack_core::Validation) {
        v.dns_subdomain("class_name", &self.class_name);
        if !["LoadBalancer", "NodePort", "ClusterIP"].contains(&self.service_type.as_str()) {
            v.error(
                "service_type",
                format!("`{}` is not a Service type", self.service_type),
                "use `LoadBalancer`, `NodePort` or `ClusterIP`",
            );
        }
        v.provides(devops_stack_core::Capability::IngressClass {
            name: self.class_name.clone(),
            default: self.default_class,
        });
    }

    /// The output of a controller of `controller` in `namespace` whose TLS ingresses get
    /// `tls_annotations`.
    pub(crate) fn output(
        &self,
        namespace: &str,
        controller: &str,
        tls_annotations: &[(&str, &str)],
    ) -> IngressController {
        IngressController {
            namespace: namespace.to_owned(),
            ingress: Ingress {
                class_name: self.class_name.clone(),
                controller: controller.to_owned(),
                default_class: self.default_class,
                annotations: Default::default(),
                tls_annotations: tls_annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                load_balancer_hostname: None,
            },
        }
    }
}

/// The setters both ingress controllers have (their struct has a `controller` field).
macro_rules! controller_setters {
    ($t:ty) => {
        impl $t {
            /// Another ingress class name.
            #[must_use]
            pub fn class_name(mut self, name: impl Into<String>) -> Self {
                self.controller.class_name = name.into();
                self
            }

            /// The type of the controller's Service (default `LoadBalancer`; `NodePort` where no
            /// load balancer is available, since Argo CD reports a `LoadBalancer` Service without an
            /// address as progressing, and the apply waits for it).
            #[must_use]
            pub fn service_type(mut self, service_type: impl Into<String>) -> Self {
                self.controller.service_type = service_type.into();
                self
            }

            /// Whether the class is the cluster's default (default true).
            #[must_use]
            pub fn default_class(mut self, on: bool) -> Self {
                self.controller.default_class = on;
                self
            }
        }
    };
}

pub(crate) use controller_setters;
