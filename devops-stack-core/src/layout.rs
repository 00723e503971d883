//! What the executor runs: a validated stack's modules, their names and phases, and the graph.

use std::sync::Arc;

use crate::graph::Graph;
use crate::module::{ErasedModule, Phase};

/// A validated stack as the executor sees it.
pub(crate) struct Layout {
    pub(crate) name: Arc<str>,
    pub(crate) modules: Vec<Arc<dyn ErasedModule>>,
    pub(crate) names: Arc<[Arc<str>]>,
    pub(crate) phases: Vec<Phase>,
    pub(crate) graph: Graph,
    /// By module: the identity groups the stack's other modules name from its output, sorted.
    pub(crate) groups: Vec<Arc<[String]>>,
}
