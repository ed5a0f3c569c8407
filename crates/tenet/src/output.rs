//! What commands print for the operator, on stdout (logs go to stderr).

use std::fmt::Display;
use std::io::Write;

/// Prints one line on stdout. A closed pipe (`tenet … | head`) is not an error.
pub fn say(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
