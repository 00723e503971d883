//! The fleet's view of a plan or a diff: wave by wave, spoke by spoke, what would change, and
//! where spokes that run the same modules differ from each other (their settings, or drift on
//! one cluster that the others do not have).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use devops_stack_core::Plan;
use devops_stack_core::k8s::{DiffAction, StackDiff};
use serde::Serialize;
use serde_json::Value;

use super::FleetHandles;

/// One spoke's part of a plan or diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpokeChanges {
    /// The spoke.
    pub spoke: String,
    /// Its wave, if the fleet has waves.
    pub wave: Option<String>,
    /// Per module (its id without the spoke's prefix), what would change: one line per object
    /// and field (`update apps/v1 Deployment x/y: spec.replicas: 1 -> 2`).
    pub modules: BTreeMap<String, Vec<String>>,
}

/// A field of one module that is not the same on every spoke that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpokeDifference {
    /// The module (its id without the spoke's prefix).
    pub module: String,
    /// The object, its name without the spoke's prefix (`argoproj.io/v1alpha1 Application
    /// argocd/{spoke}-traefik`).
    pub object: String,
    /// The field's path.
    pub path: String,
    /// The value on each spoke (`-` where it has none).
    pub values: BTreeMap<String, String>,
    /// Whether the difference is in what is live (drift of one cluster from the others) rather
    /// than in what the definition renders (the spokes' settings).
    pub live: bool,
}

/// The fleet's view of a plan or a diff ([`FleetHandles::plan_report`],
/// [`FleetHandles::diff_report`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetReport {
    /// Spoke by spoke, in wave order (spokes without a wave last).
    pub spokes: Vec<SpokeChanges>,
    /// Where spokes that run the same module differ.
    pub differences: Vec<SpokeDifference>,
}

/// `path -> value` of every leaf of `v` (values with `{spoke}` for the spoke's name).
fn leaves(prefix: &str, v: &Value, spoke: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, spoke, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), v, spoke, out);
            }
        }
        other => {
            let text = match other {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            out.insert(prefix.to_owned(), generic(&text, spoke));
        }
    }
}

/// Fields that name the spoke itself: where it is, and who owns what there.
fn identity(path: &str) -> bool {
    path.ends_with("destination.server")
        || path.ends_with("destination.name")
        || path.contains("devops-stack.io/module")
}

impl FleetHandles {
    /// The spoke whose module `id` is, and the module's id without the prefix.
    fn split<'a>(&'a self, id: &'a str) -> Option<(&'a str, &'a str)> {
        self.order
            .iter()
            .map(|(s, _)| s.as_str())
            .filter_map(|s| {
                id.strip_prefix(s)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .map(|m| (s, m))
            })
            .max_by_key(|(s, _)| s.len())
    }

    fn empty(&self) -> Vec<SpokeChanges> {
        self.order
            .iter()
            .map(|(spoke, wave)| SpokeChanges {
                spoke: spoke.clone(),
                wave: wave.clone(),
                modules: BTreeMap::new(),
            })
            .collect()
    }

    /// Where spokes differ, from `path -> value` of each (module, object) per spoke.
    fn differences(
        &self,
        fields: BTreeMap<(String, String), BTreeMap<String, BTreeMap<String, String>>>,
        live: bool,
    ) -> Vec<SpokeDifference> {
        let mut out = Vec::new();
        for ((module, object), by_spoke) in fields {
            if by_spoke.len() < 2 {
                continue;
            }
            let mut paths: Vec<&String> = by_spoke.values().flat_map(BTreeMap::keys).collect();
            paths.sort();
            paths.dedup();
            for path in paths.into_iter().filter(|p| !identity(p)) {
                let values: BTreeMap<String, String> = by_spoke
                    .iter()
                    .map(|(s, f)| {
                        let missing = if live { "(as rendered)" } else { "-" };
                        (
                            s.clone(),
                            f.get(path).cloned().unwrap_or_else(|| missing.into()),
                        )
                    })
                    .collect();
                if values.values().any(|v| Some(v) != values.values().next()) {
                    out.push(SpokeDifference {
                        module: module.clone(),
                        object: object.clone(),
                        path: path.clone(),
                        values,
                        live,
                    });
                }
            }
        }
        out
    }

    /// The fleet's view of an offline plan: each spoke's modules (what they would create) and
    /// the fields their rendered objects differ in from spoke to spoke (the spokes' settings).
    pub fn plan_report(&self, plan: &Plan) -> FleetReport {
        let mut spokes = self.empty();
        let mut fields: BTreeMap<(String, String), BTreeMap<String, BTreeMap<String, String>>> =
            BTreeMap::new();
        for m in &plan.modules {
            let Some((spoke, module)) = self.split(&m.id) else {
                continue;
            };
            let mut lines = Vec::new();
            for r in &m.resources {
                let r = serde_json::to_value(r).unwrap_or_default();
                let object = &r["object"];
                if object.is_null() {
                    lines.push(format!(
                        "create {} {}",
                        r["kind"].as_str().unwrap_or("-"),
                        r["name"].as_str().unwrap_or("-")
                    ));
                    continue;
                }
                let name = describe(object, spoke);
                lines.push(format!("create {}", name.replace("{spoke}", spoke)));
                let mut flat = BTreeMap::new();
                leaves("", object, spoke, &mut flat);
                fields
                    .entry((module.to_owned(), name))
                    .or_default()
                    .insert(spoke.to_owned(), flat);
            }
            if let Some(s) = spokes.iter_mut().find(|s| s.spoke == spoke) {
                s.modules.insert(module.to_owned(), lines);
            }
        }
        FleetReport {
            spokes,
            differences: self.differences(fields, false),
        }
    }

    /// The fleet's view of a diff against what is live: each spoke's changes field by field, and
    /// the fields whose live values differ from spoke to spoke where the definition renders
    /// them the same (drift between clusters, not only against the code).
    pub fn diff_report(&self, diff: &StackDiff) -> FleetReport {
        let mut spokes = self.empty();
        let mut fields: BTreeMap<(String, String), BTreeMap<String, BTreeMap<String, String>>> =
            BTreeMap::new();
        for m in &diff.modules {
            let Some((spoke, module)) = self.split(&m.module) else {
                continue;
            };
            let mut lines = Vec::new();
            for o in &m.diff.objects {
                let object = o.object.to_string();
                let live = fields
                    .entry((module.to_owned(), generic(&object, spoke)))
                    .or_default()
                    .entry(spoke.to_owned())
                    .or_default();
                for c in &o.changes {
                    let show =
                        |v: &Option<Value>| v.as_ref().map_or("-".to_owned(), |v| v.to_string());
                    // the live value where the definition renders the same everywhere
                    live.insert(c.path.clone(), generic(&show(&c.before), spoke));
                    if o.action != DiffAction::Unchanged {
                        lines.push(format!(
                            "{} {object}: {}: {} -> {}",
                            action(&o.action),
                            c.path,
                            show(&c.before),
                            show(&c.after)
                        ));
                    }
                }
                if o.changes.is_empty() && !matches!(o.action, DiffAction::Unchanged) {
                    lines.push(format!("{} {object}", action(&o.action)));
                }
            }
            // a module's objects on the hub and on the spoke come as two entries
            if !lines.is_empty()
                && let Some(s) = spokes.iter_mut().find(|s| s.spoke == spoke)
            {
                s.modules
                    .entry(module.to_owned())
                    .or_default()
                    .extend(lines);
            }
        }
        FleetReport {
            spokes,
            differences: self.differences(fields, true),
        }
    }
}

fn describe(object: &Value, spoke: &str) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let meta = &object["metadata"];
    let name = match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{}", s(&meta["name"])),
        None => s(&meta["name"]),
    };
    generic(
        &format!("{} {} {name}", s(&object["apiVersion"]), s(&object["kind"])),
        spoke,
    )
}

/// `text` with each occurrence of the spoke's name as a word (not inside a longer name: `dev`
/// in `dev-traefik`, not in `devops`) written `{spoke}`.
fn generic(text: &str, spoke: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(spoke) {
        let before = rest[..at].chars().next_back().or(out.chars().next_back());
        let after = rest[at + spoke.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(spoke);
        } else {
            out.push_str("{spoke}");
        }
        rest = &rest[at + spoke.len()..];
    }
    out.push_str(rest);
    out
}

fn action(a: &DiffAction) -> &'static str {
    match a {
        DiffAction::Create => "create",
        DiffAction::Update => "update",
        DiffAction::Delete => "delete",
        DiffAction::Adopt => "adopt",
        _ => "leave",
    }
}

impl FleetReport {
    /// Whether nothing would change on any spoke.
    pub fn is_empty(&self) -> bool {
        self.spokes.iter().all(|s| s.modules.is_empty())
    }

    /// The report as text: wave by wave, spoke by spoke, then the differences between spokes.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut wave = None;
        for s in &self.spokes {
            if s.wave != wave || out.is_empty() {
                wave = s.wave.clone();
                let _ = writeln!(
                    out,
                    "{}",
                    match &wave {
                        Some(w) => format!("wave `{w}`:"),
                        None => "spokes:".to_owned(),
                    }
                );
            }
            if s.modules.is_empty() {
                let _ = writeln!(out, "  spoke `{}`: no changes", s.spoke);
                continue;
            }
            let _ = writeln!(
                out,
                "  spoke `{}`: {} module(s) change",
                s.spoke,
                s.modules.len()
            );
            for (m, lines) in &s.modules {
                let _ = writeln!(out, "    {m}:");
                for l in lines {
                    let _ = writeln!(out, "      {l}");
                }
            }
        }
        if !self.differences.is_empty() {
            let _ = writeln!(out, "differences between spokes:");
            for d in &self.differences {
                let values: Vec<String> =
                    d.values.iter().map(|(s, v)| format!("{s}={v}")).collect();
                let _ = writeln!(
                    out,
                    "  {} {} {}: {}{}",
                    d.module,
                    d.object,
                    d.path,
                    values.join(", "),
                    if d.live { " (live)" } else { "" }
                );
            }
        }
        out
    }
}
