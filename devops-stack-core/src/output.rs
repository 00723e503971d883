//! Module outputs as the stack keeps them: type-erased, with their JSON for plans and reports.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

/// A module's output with its type erased, and its serialized form for plans and reports.
#[derive(Clone)]
pub(crate) struct ErasedOutput {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) json: serde_json::Value,
}

pub(crate) fn erase<O: Serialize + Send + Sync + 'static>(output: O) -> ErasedOutput {
    let json = serde_json::to_value(&output)
        .unwrap_or_else(|e| serde_json::Value::String(format!("<unserializable: {e}>")));
    ErasedOutput {
        value: Arc::new(output),
        json,
    }
}

/// One slot per module: its output once produced, `None` when it is known not to exist.
pub(crate) type Outputs = Arc<[OnceLock<Option<ErasedOutput>>]>;

pub(crate) fn new_outputs(n: usize) -> Outputs {
    (0..n).map(|_| OnceLock::new()).collect()
}
