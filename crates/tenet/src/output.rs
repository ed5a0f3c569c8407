//! What commands print for the operator, on stdout (logs go to stderr).

use std::fmt::Display;
use std::io::Write;

/// Prints one line on stdout. A closed pipe (`tenet … | head`) is not an error.
pub fn say(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Tells the operator something on stderr that is not the command's output: a
/// one-time secret's heading, or why one input of many was refused. Never PHI: the
/// callers pass ids, counts and error locations only.
pub fn tell(line: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
