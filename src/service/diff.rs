//! The readable field-by-field difference carried by optimistic-lock conflicts.

use std::fmt::Write as _;

/// Collects `field: stored → attempted` lines for fields whose values differ.
#[derive(Default)]
pub struct Diff {
    lines: Vec<String>,
}

impl Diff {
    /// Adds a line when `stored` and `attempted` differ.
    pub fn field<T: PartialEq + std::fmt::Debug>(
        &mut self,
        name: &str,
        stored: &T,
        attempted: &T,
    ) -> &mut Self {
        if stored != attempted {
            let mut line = String::new();
            let _ = write!(line, "{name}: {stored:?} -> {attempted:?}");
            self.lines.push(line);
        }
        self
    }

    /// The lines joined by newlines, or a note that only the version moved.
    #[must_use]
    pub fn render(&self, attempted_version: &str, stored_version: &str) -> String {
        let mut out = format!("version: {attempted_version} (yours) vs {stored_version} (stored)");
        if self.lines.is_empty() {
            out.push_str("\nno field of your update differs from the stored values");
        } else {
            for line in &self.lines {
                out.push('\n');
                out.push_str(line);
            }
        }
        out
    }
}
