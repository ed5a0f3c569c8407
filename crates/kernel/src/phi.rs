//! Protected health information in a box that will not print itself.
//!
//! `Phi<T>` is how structured PHI travels between the vault and the API. Its `Debug`
//! and `Display` print `[redacted]`, so a stray `tracing::info!(?patient)` or an error
//! message built with `format!` cannot leak a name. Reading the value is explicit:
//! `expose()`. This type must never implement `Serialize` implicitly through a
//! derive on a struct that is logged.

use std::fmt;

/// A PHI value. `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The plaintext. Call only where the value leaves through an audited path.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Phi<U> {
        Phi(f(self.0))
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Phi<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_never_prints_its_value() {
        let name = Phi::new("Canary McCanaryface".to_owned());
        assert_eq!(format!("{name:?} {name}"), "[redacted] [redacted]");
        assert_eq!(name.expose(), "Canary McCanaryface");
    }
}
