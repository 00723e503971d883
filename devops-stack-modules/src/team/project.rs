//! A team's Argo CD AppProject, deny by default, with its roles and sync windows.

use croner::parser::{CronParser, Seconds, Year};
use devops_stack_core::Validation;
use devops_stack_core::argocd::{GroupKind, ProjectRole, SyncWindow as ArgoSyncWindow};
use serde::Serialize;

/// What a group of the team may do, in Argo CD and in the team's namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessRole {
    /// Sees the team's Applications, their logs and the workloads of its namespaces.
    Viewer,
    /// A viewer who may also sync Applications, run their actions (restart), delete pods and
    /// restart workloads: in Argo CD (`sync`, `action/*`, `delete/*/Pod/*/*`) and in the team's
    /// namespaces alike.
    Deployer,
    /// Everything on the team's Applications and on the workloads of its namespaces, except the
    /// namespaces' ResourceQuota, LimitRange and NetworkPolicies (read-only for every role).
    /// Shells into pods go through Kubernetes (`pods/exec`): the stack's Argo CD has no web
    /// terminal.
    Admin,
}

impl AccessRole {
    /// The role's name: the Argo CD project role and the Kubernetes Role.
    pub fn name(self) -> &'static str {
        match self {
            AccessRole::Viewer => "viewer",
            AccessRole::Deployer => "deployer",
            AccessRole::Admin => "admin",
        }
    }

    /// The Argo CD project role's policy lines, in the `proj:<project>:<role>` form. The
    /// object `<project>/*` matches the `<project>/<app>` and `<project>/<namespace>/<app>`
    /// forms Argo CD checks.
    pub fn policies(self, project: &str, role: &str) -> Vec<String> {
        let actions: &[(&str, &str)] = match self {
            AccessRole::Viewer => &[("applications", "get"), ("logs", "get")],
            // Argo CD 3 checks deleting one resource of an Application as
            // `delete/<group>/<kind>/<namespace>/<name>`: the deployer may delete pods, as its
            // Kubernetes Role allows.
            AccessRole::Deployer => &[
                ("applications", "get"),
                ("applications", "sync"),
                ("applications", "action/*"),
                ("applications", "delete/*/Pod/*/*"),
                ("logs", "get"),
            ],
            // No `exec, create`: the stack's Argo CD leaves its web terminal off
            // (`exec.enabled`), so such a grant would do nothing; admins exec through their
            // Kubernetes Role (`pods/exec`).
            AccessRole::Admin => &[
                ("applications", "*"),
                ("applicationsets", "get"),
                ("logs", "get"),
            ],
        };
        actions
            .iter()
            .map(|(resource, action)| {
                format!("p, proj:{project}:{role}, {resource}, {action}, {project}/*, allow")
            })
            .collect()
    }

    pub(super) fn project_role(
        self,
        project: &str,
        role: &str,
        groups: Vec<String>,
    ) -> ProjectRole {
        ProjectRole {
            name: role.to_owned(),
            description: Some(format!("{role} of the team's Applications")),
            policies: self.policies(project, role),
            groups,
            jwt_tokens: Vec::new(),
        }
    }
}

/// Whether a sync window allows or denies syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WindowKind {
    /// Syncs run only inside allow windows.
    Allow,
    /// No automated sync inside the window.
    Deny,
}

/// A sync window of the team's project, such as a production freeze.
///
/// ```
/// use devops_stack_modules::team::SyncWindow;
/// // no automated sync from Friday 18:00 for 62 hours, but people may still sync by hand
/// let freeze = SyncWindow::deny("0 18 * * 5", "62h").manual_sync(true).time_zone("Europe/Paris");
/// assert!(freeze.schedule_problem().is_none());
/// assert!(SyncWindow::deny("0 25 * * *", "1h").schedule_problem().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncWindow {
    kind: WindowKind,
    schedule: String,
    duration: String,
    manual_sync: bool,
    applications: Vec<String>,
    namespaces: Vec<String>,
    time_zone: Option<String>,
}

impl SyncWindow {
    /// A window in which syncs are allowed, opening on the five-field cron `schedule`, open
    /// for `duration` (`1h`, `30m`, `1h30m`).
    pub fn allow(schedule: impl Into<String>, duration: impl Into<String>) -> Self {
        SyncWindow::new(WindowKind::Allow, schedule.into(), duration.into())
    }

    /// A window in which syncs are denied.
    pub fn deny(schedule: impl Into<String>, duration: impl Into<String>) -> Self {
        SyncWindow::new(WindowKind::Deny, schedule.into(), duration.into())
    }

    fn new(kind: WindowKind, schedule: String, duration: String) -> Self {
        SyncWindow {
            kind,
            schedule,
            duration,
            manual_sync: false,
            applications: vec!["*".into()],
            namespaces: Vec::new(),
            time_zone: None,
        }
    }

    /// Whether people may still sync by hand inside a deny window (default false).
    #[must_use]
    pub fn manual_sync(mut self, on: bool) -> Self {
        self.manual_sync = on;
        self
    }

    /// Only these Applications (glob patterns; default all of the team's).
    #[must_use]
    pub fn applications(mut self, apps: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.applications = apps.into_iter().map(Into::into).collect();
        self
    }

    /// Only Applications deploying to these namespaces (default all of the team's).
    #[must_use]
    pub fn namespaces(mut self, namespaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.applications.clear();
        self.namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// The time zone of the schedule (an IANA name; default UTC).
    #[must_use]
    pub fn time_zone(mut self, tz: impl Into<String>) -> Self {
        self.time_zone = Some(tz.into());
        self
    }

    /// What is wrong with the cron schedule, if anything: five fields (minute, hour, day of
    /// month, month, day of week), as Argo CD reads them.
    pub fn schedule_problem(&self) -> Option<String> {
        CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&self.schedule)
            .err()
            .map(|e| {
                format!(
                    "`{}` is not a five-field cron expression: {e}",
                    self.schedule
                )
            })
    }

    pub(super) fn validate(&self, v: &mut Validation, field: &str) {
        if let Some(problem) = self.schedule_problem() {
            v.error(
                format!("{field}.schedule"),
                problem,
                "write minute, hour, day of month, month and day of week, like `0 18 * * 5` (Fridays at 18:00)",
            );
        }
        v.check(
            &format!("{field}.duration"),
            duration_check(&self.duration),
            "write a duration of hours and minutes, like `1h`, `30m` or `62h`",
        );
    }

    pub(super) fn to_argocd(&self) -> ArgoSyncWindow {
        ArgoSyncWindow {
            kind: match self.kind {
                WindowKind::Allow => "allow",
                WindowKind::Deny => "deny",
            }
            .into(),
            schedule: self.schedule.clone(),
            duration: self.duration.clone(),
            applications: self.applications.clone(),
            namespaces: self.namespaces.clone(),
            clusters: Vec::new(),
            manual_sync: self.manual_sync,
            time_zone: self.time_zone.clone(),
        }
    }
}

/// Checks a Go duration of hours, minutes and seconds (`1h30m`), as Argo CD parses it.
fn duration_check(d: &str) -> Result<(), String> {
    let mut rest = d;
    let mut total = 0u64;
    if rest.is_empty() {
        return Err("is empty".into());
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let unit = rest[digits..].chars().next();
        let (n, unit) = match (rest[..digits].parse::<u64>(), unit) {
            (Ok(n), Some(u @ ('h' | 'm' | 's'))) => (n, u),
            _ => return Err(format!("`{d}` is not a duration")),
        };
        total += n * if unit == 'h' {
            3600
        } else if unit == 'm' {
            60
        } else {
            1
        };
        rest = &rest[digits + 1..];
    }
    if total == 0 {
        return Err(format!("`{d}` is zero"));
    }
    Ok(())
}

/// Namespaced kinds a team's Applications may not create or change: the guards the platform
/// puts in each team namespace, and unless `rbac` RBAC Roles and RoleBindings (a RoleBinding to
/// the `admin` or `cluster-admin` ClusterRole would let the team change its own guards).
pub(super) fn denied_kinds(rbac: bool) -> Vec<GroupKind> {
    let mut kinds = vec![
        ("", "ResourceQuota"),
        ("", "LimitRange"),
        ("networking.k8s.io", "NetworkPolicy"),
    ];
    if !rbac {
        kinds.extend([
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
        ]);
    }
    kinds
        .into_iter()
        .map(|(group, kind)| GroupKind {
            group: group.into(),
            kind: kind.into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert!(duration_check("1h").is_ok());
        assert!(duration_check("1h30m").is_ok());
        assert!(duration_check("90s").is_ok());
        for bad in ["", "1", "h", "1d", "0h", "1h-", "1.5h"] {
            assert!(duration_check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crons() {
        for ok in ["0 18 * * 5", "*/15 * * * *", "0 0 1 1 *", "30 2 * * 1-5"] {
            assert!(
                SyncWindow::allow(ok, "1h").schedule_problem().is_none(),
                "{ok}"
            );
        }
        for bad in [
            "",
            "0 18 * *",
            "0 0 18 * * 5",
            "61 * * * *",
            "* * * 13 *",
            "x * * * *",
        ] {
            assert!(
                SyncWindow::allow(bad, "1h").schedule_problem().is_some(),
                "{bad}"
            );
        }
    }

    #[test]
    fn policies_use_the_project_role_form() {
        let p = AccessRole::Deployer.policies("shop", "deployer");
        assert!(p.contains(&"p, proj:shop:deployer, applications, sync, shop/*, allow".to_owned()));
        assert!(
            !AccessRole::Viewer
                .policies("shop", "viewer")
                .iter()
                .any(|l| l.contains("sync"))
        );
    }
}
