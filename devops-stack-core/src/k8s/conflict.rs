//! An existing object a module would have taken over, as errors name it.

use std::fmt;

use serde::Serialize;

/// An existing object a module would have taken over: what it is and who owns it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnershipConflict {
    /// The object, as `apiVersion Kind namespace/name`.
    pub object: String,
    /// Its ownership labels: `stack `a`, module `b``, or `no devops-stack labels`.
    pub owner: String,
    /// The field managers in its `managedFields`, with their operation.
    pub managers: Vec<String>,
}

impl fmt::Display for OwnershipConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.owner)?;
        if !self.managers.is_empty() {
            write!(f, "; field managers: {}", self.managers.join(", "))?;
        }
        Ok(())
    }
}
