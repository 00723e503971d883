//! How a module publishes its UIs: through the stack's ingress controller, with TLS from a
//! cluster issuer.

use std::collections::BTreeMap;

use devops_stack_core::interfaces::{ClusterIssuer, Ingress};
use devops_stack_core::{Context, Input, Needs};
use serde_json::{Value, json};

use crate::error::Result;

/// The ingress controller and the TLS issuer a module publishes its UIs through.
#[derive(Debug, Clone)]
pub(crate) struct Exposure {
    pub(crate) ingress: Input<Ingress>,
    pub(crate) issuer: Option<Input<ClusterIssuer>>,
}

impl Exposure {
    pub(crate) fn new(ingress: Input<Ingress>) -> Self {
        Exposure {
            ingress,
            issuer: None,
        }
    }

    pub(crate) fn needs(&self, n: &mut Needs) {
        n.add(&self.ingress).add(&self.issuer);
    }

    pub(crate) fn resolve(&self, ctx: &Context) -> Result<IngressSettings> {
        let ingress = ctx.get(&self.ingress)?;
        let issuer = match &self.issuer {
            Some(i) => Some(ctx.get(i)?),
            None => None,
        };
        Ok(IngressSettings {
            class_name: ingress.class_name.clone(),
            annotations: ingress.annotations_for(issuer.as_ref()),
            tls: issuer.is_some(),
        })
    }
}

/// How to write one ingress: class, annotations (with the issuer's), and whether to ask for TLS.
#[derive(Debug, Clone)]
pub(crate) struct IngressSettings {
    pub(crate) class_name: String,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) tls: bool,
}

impl IngressSettings {
    /// The `tls` list of an ingress for `host` (empty without an issuer); cert-manager writes
    /// the certificate to the secret `<app>-tls`.
    pub(crate) fn tls_list(&self, app: &str, host: &str) -> Value {
        if self.tls {
            json!([{"secretName": format!("{app}-tls"), "hosts": [host]}])
        } else {
            json!([])
        }
    }

    /// The scheme of the published URL.
    pub(crate) fn url(&self, host: &str) -> String {
        format!("{}://{host}", if self.tls { "https" } else { "http" })
    }
}
