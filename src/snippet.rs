//! Source context for script errors: the offending line with a caret under the column, the
//! way rustc and uv show it, so an operator sees what is wrong without opening the file.
//!
//! Positions stay machine-readable everywhere (`file:line:col`); the snippet is an extra,
//! shown by `hybrid check`, a rejected reload and a failed document's record
//! (`error.snippet`).
//!
//! ```text
//!   |
//! 3 |     let x = doc.text +;
//!   |                       ^
//! ```

/// `file:line:col` split into its parts (the file may itself hold colons).
pub fn parse_location(location: &str) -> Option<(&str, usize, usize)> {
    let mut parts = location.rsplitn(3, ':');
    let col = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    Some((file, line, col))
}

/// Width a tab is drawn with.
const TAB: &str = "    ";

/// Line `line` (1-based) of `text` with a caret under character `col` (1-based); `None`
/// when the text has no such line.
pub fn render(text: &str, line: usize, col: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (line, col) = match line.checked_sub(1)? {
        // The end of the file (an unclosed block): after the last line.
        at if at == lines.len() && at > 0 => (at, lines[at - 1].chars().count() + 1),
        _ => (line, col),
    };
    let source = lines.get(line - 1)?;
    let shown = source.replace('\t', TAB);
    // What comes before the column, drawn as blanks of the same widths.
    let lead: String = source
        .chars()
        .take(col.saturating_sub(1))
        .map(|c| if c == '\t' { TAB } else { " " })
        .collect();
    let gutter = " ".repeat(line.to_string().len());
    Some(format!(
        "{gutter} |\n{line} | {}\n{gutter} | {lead}^",
        shown.trim_end()
    ))
}

/// The snippet for `location`, reading its file through `text_of` (which knows the bundle's
/// own copies, embedded modules, or the disk).
pub fn at(location: &str, text_of: impl Fn(&str) -> Option<String>) -> Option<String> {
    let (file, line, col) = parse_location(location)?;
    render(&text_of(file)?, line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_sits_under_the_column_also_after_tabs() {
        let text = "fn process(doc) {\n\tlet x = doc.text +;\n}\n";
        let shown = render(text, 2, 20).unwrap();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "  |");
        assert_eq!(lines[1], "2 |     let x = doc.text +;");
        // The caret is under the `;`, the 20th character, with the tab drawn 4 wide.
        assert_eq!(lines[2].find('^'), lines[1].find(';'));
        assert_eq!(render(text, 9, 1), None);
        // One past the last line is the end of the file: the caret follows the last line.
        let end = render(text, 4, 1).unwrap();
        assert!(end.starts_with("  |\n3 | }\n  |  ^"), "{end}");
        assert_eq!(render(text, 0, 1), None);
    }

    #[test]
    fn locations_split_from_the_right() {
        assert_eq!(
            parse_location("C:/p/s.rhai:3:7"),
            Some(("C:/p/s.rhai", 3, 7))
        );
        assert_eq!(parse_location("s.rhai"), None);
    }
}
