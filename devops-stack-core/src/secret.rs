//! Secret values that never show up in logs, `Debug`, plans or errors.

use std::fmt;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

/// The text a secret shows wherever it is printed or serialized.
pub const REDACTED: &str = "<redacted>";

/// A secret string (a password, client secret or token).
///
/// `Debug`, `Display` and `Serialize` all print [`REDACTED`]; the value is reachable only through
/// [`Secret::expose`], so every place that uses it is easy to find. The memory is zeroed on drop.
///
/// ```
/// use devops_stack_core::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
/// assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// A new random alphanumeric secret of `len` characters from the operating system's RNG.
    pub fn generate(len: usize) -> Self {
        let value: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(len)
            .map(char::from)
            .collect();
        Secret::new(value)
    }

    /// The secret value. Every call site is a place where the secret leaves its wrapper.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_random_and_hidden() {
        let a = Secret::generate(32);
        let b = Secret::generate(32);
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}{a}").contains(a.expose()));
    }
}
