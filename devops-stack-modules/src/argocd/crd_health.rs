//! Argo CD's health check for CRDs, as the modules configure it in `argocd-cm`.

/// The `argocd-cm` key of Argo CD's health check for CRDs, which the modules replace.
pub const CRD_HEALTH_KEY: &str =
    "resource.customizations.health.apiextensions.k8s.io_CustomResourceDefinition";

/// Argo CD's health check for CRDs, as the modules configure it: upstream's (3.4), except that a
/// CRD whose names the API server accepted is Healthy before its `Established` condition shows.
///
/// Upstream's check reports such a CRD Degraded ("CRD is not established"), and Argo CD's
/// cluster cache can keep that early copy of a CRD its Application just created: the
/// Application then stays Degraded although the CRD is established (argoproj/argo-cd#25084 and
/// #26346; seen here on a real Argo CD in the project's test environment, two CRDs of three
/// left Degraded for minutes by one sync). The API server sets `Established` right after
/// `NamesAccepted` unless the names conflict, which stays Degraded, as do a non-structural
/// schema and a CRD being deleted (Progressing).
pub const CRD_HEALTH: &str = r#"local hs = {}
if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "CRD is terminating"
  return hs
end
local accepted = false
local established = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in pairs(obj.status.conditions) do
    if c.type == "Terminating" and c.status == "True" then
      hs.status = "Progressing"
      hs.message = "CRD is terminating: " .. (c.message or "")
      return hs
    end
    if c.type == "NamesAccepted" and c.status == "False" then
      hs.status = "Degraded"
      hs.message = "CRD names have not been accepted: " .. (c.message or "")
      return hs
    end
    if c.type == "NonStructuralSchema" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = "Schema violations found: " .. (c.message or "")
      return hs
    end
    if c.type == "NamesAccepted" and c.status == "True" then accepted = true end
    if c.type == "Established" and c.status == "True" then established = true end
  end
end
if established then
  hs.status = "Healthy"
  hs.message = "CRD is established"
elseif accepted then
  hs.status = "Healthy"
  hs.message = "CRD names are accepted; the API server establishes it next"
else
  hs.status = "Progressing"
  hs.message = "Waiting for the API server to accept the CRD's names"
end
return hs
"#;
