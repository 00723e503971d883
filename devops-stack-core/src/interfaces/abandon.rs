//! [`AbandonInCluster`]: the run option that lets a destroy go on when the cluster's API cannot
//! be reached.

use crate::context::Context;

/// Said on purpose by the user: the cluster is going away, so when its API cannot be reached
/// during a destroy, the objects inside it may be abandoned and the cloud resources are still
/// removed.
///
/// Without it, a destroy that cannot reach the cluster says so and stops, leaving everything in
/// place: deleting the cluster under objects that hold cloud resources (load balancers, volumes)
/// would leave those behind. Say it with
/// [`RunOptions::abandon_in_cluster`](crate::RunOptions::abandon_in_cluster); modules ask with
/// [`AbandonInCluster::is_set`]:
///
/// ```
/// use devops_stack_core::RunOptions;
/// let options = RunOptions::new().abandon_in_cluster();
/// assert!(options.abandons_in_cluster());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AbandonInCluster;

impl AbandonInCluster {
    /// How error messages name this option, so that the user can find it.
    pub const HINT: &'static str = "if the cluster is going away and the objects in it may be abandoned, destroy again with `RunOptions::abandon_in_cluster()` (the command line's `destroy --abandon-in-cluster`)";

    /// Whether the run of `ctx` carries the option.
    pub fn is_set(ctx: &Context) -> bool {
        ctx.abandon_in_cluster()
    }
}
