//! Plain-text layouts for people: tables with aligned columns, and
//! key/value blocks for one resource. Rendering returns a string so the
//! layouts are tested without a terminal.

/// Rows under a header, each column as wide as its widest cell, two spaces
/// between columns; the last column is not padded, so no line ends in spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = w.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One resource as `KEY  value` lines, the keys aligned.
pub fn pairs(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in fields {
        let line = format!("{key:<width$}  {value}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let rows = vec![
            vec!["default".to_owned(), "ACTIVE".to_owned(), "12".to_owned()],
            vec!["a".to_owned(), "INACTIVE".to_owned(), "0".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "STATUS", "RUNNING"], &rows),
            "NAME     STATUS    RUNNING\n\
             default  ACTIVE    12\n\
             a        INACTIVE  0\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header_and_empty_last_cells_leave_no_spaces() {
        assert_eq!(table(&["TASK", "REASON"], &[]), "TASK  REASON\n");
        let rows = vec![vec!["abc".to_owned(), String::new()]];
        assert_eq!(table(&["TASK", "REASON"], &rows), "TASK  REASON\nabc\n");
    }

    #[test]
    fn wide_characters_count_once() {
        let rows = vec![vec!["é".to_owned(), "x".to_owned()]];
        assert_eq!(table(&["N", "V"], &rows), "N  V\né  x\n");
    }

    #[test]
    fn pairs_align_their_keys() {
        assert_eq!(
            pairs(&[("TASK", "abc".to_owned()), ("STOP CODE", String::new())]),
            "TASK       abc\nSTOP CODE\n"
        );
    }
}
