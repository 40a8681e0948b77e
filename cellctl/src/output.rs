//! Rendering of command results.

use std::io::Write as _;

use serde_json::Value;

use crate::cli::Output;

/// Prints `value` as pretty JSON, or calls `text` to render it for humans.
///
/// A closed stdout (`cellctl status | head`) is not an error worth a panic: the reader has
/// what it wanted.
pub fn print(format: Output, value: &Value, text: impl FnOnce(&Value) -> String) {
    let rendered = match format {
        Output::Json => {
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()) + "\n"
        }
        Output::Text => text(value),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(rendered.as_bytes());
    let _ = stdout.flush();
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}
