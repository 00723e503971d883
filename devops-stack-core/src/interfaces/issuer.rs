use serde::Serialize;

/// The kinds of cluster issuer a certificate module can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IssuerKind {
    /// A self-signed CA made in the cluster (for tests and private clusters).
    SelfSignedCa,
    /// Let's Encrypt's staging ACME server (untrusted certificates, generous rate limits).
    LetsEncryptStaging,
    /// Let's Encrypt's production ACME server.
    LetsEncryptProduction,
}

/// A cert-manager `ClusterIssuer` that ingresses can get certificates from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterIssuer {
    /// The issuer's name.
    pub name: String,
    /// Its kind.
    pub kind: IssuerKind,
}

/// A module output that provides cluster issuers (cert-manager).
pub trait IssuerProvider {
    /// The issuer of `kind`, if enabled.
    fn issuer(&self, kind: IssuerKind) -> Option<ClusterIssuer>;
}
