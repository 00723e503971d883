//! Build-time validation: name rules shared by every module, and the collector modules report into.

use crate::error::ConfigError;

/// Checks a DNS-1123 label (a Kubernetes name such as a namespace): 1 to 63 characters of
/// lowercase letters, digits and `-`, starting and ending with a letter or digit.
///
/// Returns the problem as text, for a [`ConfigError`].
///
/// ```
/// use devops_stack_core::validate::dns_label;
/// assert!(dns_label("argocd").is_ok());
/// assert!(dns_label("Argo_CD").is_err());
/// ```
pub fn dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.len() > 63 {
        return Err(format!(
            "`{value}` is {} characters long, more than 63",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{value}` contains `{c}`; only lowercase letters, digits and `-` are allowed"
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(format!(
            "`{value}` must start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (a hostname or a Kubernetes object name): dot-separated
/// [`dns_label`]s, 253 characters at most.
pub fn dns_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.len() > 253 {
        return Err(format!(
            "`{value}` is {} characters long, more than 253",
            value.len()
        ));
    }
    for label in value.split('.') {
        dns_label(label).map_err(|e| {
            if label.is_empty() {
                format!(
                    "`{value}` has an empty label (two dots in a row, or a leading or trailing dot)"
                )
            } else {
                format!("in `{value}`: {e}")
            }
        })?;
    }
    Ok(())
}

/// Checks a base domain under which the stack's hostnames are made: a DNS subdomain of at least
/// two labels whose last label (the top-level domain) is not all digits.
///
/// ```
/// use devops_stack_core::validate::base_domain;
/// assert!(base_domain("example.com").is_ok());
/// assert!(base_domain("127-0-0-1.nip.io").is_ok());
/// assert!(base_domain("localhost").is_err());
/// assert!(base_domain("example..com").is_err());
/// ```
pub fn base_domain(value: &str) -> Result<(), String> {
    dns_subdomain(value)?;
    let labels: Vec<&str> = value.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "`{value}` has a single label; a base domain needs at least two, like `example.com`"
        ));
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "`{value}` ends in a numeric label; an IP address is not a base domain (try `<ip>.nip.io`)"
        ));
    }
    Ok(())
}

/// Checks an email address the way ACME servers and identity providers need it: one `@`, a
/// non-empty local part without spaces, and a domain that is a DNS subdomain with a dot.
pub fn email(value: &str) -> Result<(), String> {
    let Some((local, domain)) = value.split_once('@') else {
        return Err(format!("`{value}` has no `@`"));
    };
    if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(format!("`{value}` has an invalid part before `@`"));
    }
    let domain = domain.to_ascii_lowercase();
    if !domain.contains('.') {
        return Err(format!("`{value}` has a domain without a dot"));
    }
    dns_subdomain(&domain).map_err(|e| format!("the domain of `{value}` is invalid: {e}"))
}

/// Something a module offers to, or expects from, the rest of the stack, checked at build time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum Capability {
    /// An ingress controller serving an ingress class. At most one may be the cluster default,
    /// and two controllers may not claim the same class.
    IngressClass {
        /// The class name (`traefik`, `nginx`).
        name: String,
        /// Whether the controller marks its class as the cluster default.
        default: bool,
    },
    /// One of the stack's shared interfaces.
    Interface(Interface),
    /// A namespace the module deploys into. Platform modules may share a namespace; a team's
    /// namespace belongs to that team alone, so any other claim on it is an error.
    Namespace {
        /// The namespace.
        name: String,
        /// Who claims it.
        owner: NamespaceOwner,
    },
    /// An Argo CD Application the module creates, by name. Applications share Argo CD's
    /// namespace, so two modules naming one Application would overwrite each other: the
    /// stack refuses it.
    Application {
        /// The Application's name.
        name: String,
    },
    /// An Argo CD ApplicationSet the module creates, by name (unique like Applications).
    ApplicationSet {
        /// The ApplicationSet's name.
        name: String,
    },
}

/// Who claims a namespace, in a [`Capability::Namespace`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum NamespaceOwner {
    /// A platform component (Argo CD, an ingress controller, monitoring...).
    Platform,
    /// An application team, by name: the namespace is the team's alone.
    Team(String),
}

impl std::fmt::Display for NamespaceOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamespaceOwner::Platform => f.write_str("the platform"),
            NamespaceOwner::Team(t) => write!(f, "team `{t}`"),
        }
    }
}

/// Namespaces that belong to Kubernetes itself and that no team may claim.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The shared interfaces a module can need from the stack without holding a handle to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum Interface {
    /// A Kubernetes cluster.
    Cluster,
    /// An ingress controller (any [`Capability::IngressClass`] provides it).
    Ingress,
    /// An OIDC provider.
    Oidc,
    /// cert-manager cluster issuers.
    ClusterIssuers,
    /// Prometheus monitoring with its ServiceMonitor CRDs.
    Monitoring,
    /// Argo CD.
    ArgoCd,
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Interface::Cluster => "a cluster",
            Interface::Ingress => "an ingress controller",
            Interface::Oidc => "an OIDC provider",
            Interface::ClusterIssuers => "cluster issuers (cert-manager)",
            Interface::Monitoring => "monitoring (kube-prometheus-stack)",
            Interface::ArgoCd => "Argo CD",
        };
        f.write_str(s)
    }
}

/// Collects one module's configuration problems and capabilities during [`Stack::build`](crate::Stack::build).
#[derive(Debug)]
pub struct Validation {
    module: String,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) provides: Vec<Capability>,
    pub(crate) requires: Vec<(Interface, String)>,
    pub(crate) groups: Vec<crate::interfaces::IdentityGroup>,
}

impl Validation {
    /// A collector for `module`.
    pub fn new(module: impl Into<String>) -> Self {
        Self {
            module: module.into(),
            errors: Vec::new(),
            provides: Vec::new(),
            requires: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// The module being validated.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// Records a problem with `field`, and how to fix it.
    pub fn error(
        &mut self,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> &mut Self {
        self.errors
            .push(ConfigError::new(Some(&self.module), field, problem, fix));
        self
    }

    /// Records the outcome of a check such as [`dns_label`] against `field`.
    pub fn check(
        &mut self,
        field: &str,
        outcome: Result<(), String>,
        fix: impl Into<String>,
    ) -> &mut Self {
        if let Err(problem) = outcome {
            self.error(field, problem, fix);
        }
        self
    }

    /// Checks that `value` is a DNS-1123 label (namespaces, release names).
    pub fn dns_label(&mut self, field: &str, value: &str) -> &mut Self {
        self.check(
            field,
            dns_label(value),
            "use 1-63 lowercase letters, digits or `-`, starting and ending with a letter or digit",
        )
    }

    /// Checks that `value` is a DNS-1123 subdomain (hostnames).
    pub fn dns_subdomain(&mut self, field: &str, value: &str) -> &mut Self {
        self.check(
            field,
            dns_subdomain(value),
            "use dot-separated lowercase labels of letters, digits or `-`, like `grafana.apps.example.com`",
        )
    }

    /// Declares something this module offers to the stack.
    pub fn provides(&mut self, capability: Capability) -> &mut Self {
        self.provides.push(capability);
        self
    }

    /// Declares that this module uses `group` (a team's access role): a group made from the
    /// handle of the stack's OIDC provider is then created by that provider, and a name the
    /// provider would refuse is reported on `field`.
    pub fn uses_group(
        &mut self,
        field: &str,
        group: &crate::interfaces::IdentityGroup,
    ) -> &mut Self {
        if let Some(problem) = group.problem() {
            self.error(
                field,
                format!(
                    "the OIDC provider would refuse the group `{}`: {problem}",
                    group.name()
                ),
                "give the group a name the provider accepts",
            );
        }
        self.groups.push(group.clone());
        self
    }

    /// Declares an interface this module needs somewhere in the stack, and why.
    pub fn requires(&mut self, interface: Interface, why: impl Into<String>) -> &mut Self {
        self.requires.push((interface, why.into()));
        self
    }

    /// The problems recorded so far.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(dns_label("a").is_ok());
        assert!(dns_label("a-1").is_ok());
        assert!(dns_label(&"a".repeat(63)).is_ok());
        assert!(
            dns_label(&"a".repeat(64))
                .unwrap_err()
                .contains("more than 63")
        );
        assert!(dns_label("").unwrap_err().contains("empty"));
        assert!(dns_label("-a").unwrap_err().contains("start and end"));
        assert!(dns_label("a.b").unwrap_err().contains("`.`"));
        assert!(dns_label("UPPER").unwrap_err().contains("`U`"));
    }

    #[test]
    fn subdomains_and_domains() {
        assert!(dns_subdomain("a.b-c.d").is_ok());
        assert!(dns_subdomain("a..b").unwrap_err().contains("empty label"));
        assert!(dns_subdomain(".a").unwrap_err().contains("empty label"));
        assert!(base_domain("example.com").is_ok());
        assert!(base_domain("com").unwrap_err().contains("single label"));
        assert!(base_domain("10.0.0.1").unwrap_err().contains("numeric"));
        assert!(base_domain("exa_mple.com").unwrap_err().contains("`_`"));
    }

    #[test]
    fn emails() {
        assert!(email("ops@example.com").is_ok());
        assert!(email("Ops.Team+acme@Example.COM").is_ok());
        assert!(email("ops.example.com").unwrap_err().contains("no `@`"));
        assert!(email("@example.com").is_err());
        assert!(
            email("ops@localhost")
                .unwrap_err()
                .contains("without a dot")
        );
        assert!(email("ops@exa mple.com").is_err());
    }

    #[test]
    fn collector_names_module_and_field() {
        let mut v = Validation::new("traefik");
        v.dns_label("namespace", "Bad_NS");
        let e = &v.errors()[0];
        assert_eq!(e.module.as_deref(), Some("traefik"));
        assert_eq!(e.field, "namespace");
        assert!(e.to_string().contains("fix:"));
    }
}
