//! A tiny aligned-table writer for the CLI's human output.
//!
//! Owns layout only: left-aligned columns separated by two spaces, padded to
//! the widest cell (counted in `char`s), no trailing whitespace, one `\n` per
//! row. It never decides what goes in a cell, and it does no I/O: callers get
//! a `String` back and print it themselves.

/// Rows of cells under a header, rendered with [`Table::render`].
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// Appends a row. A row shorter than the header leaves its last columns
    /// empty; a longer one widens the table.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as text, every line ending in `\n`.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            // Cells after the last non-empty one are not written at all, and
            // the last written cell is not padded: no trailing whitespace
            // that the cells themselves did not bring.
            let used = row.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1);
            for (i, cell) in row[..used].iter().enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                out.push_str(cell);
                if i + 1 < used {
                    let pad = widths[i] - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(["PARTITION", "REPLICAS"]);
        t.row(["0", "1,2,3"]);
        t.row(["10", "2,3"]);
        assert_eq!(
            t.render(),
            "PARTITION  REPLICAS\n0          1,2,3\n10         2,3\n"
        );
    }

    #[test]
    fn widths_count_chars_not_bytes_and_ragged_rows_work() {
        let mut t = Table::new(["A", "B", "C"]);
        t.row(["é", "x"]);
        t.row(["long", "y", "z"]);
        assert_eq!(t.render(), "A     B  C\né     x\nlong  y  z\n");
    }

    #[test]
    fn header_only() {
        assert_eq!(Table::new(["X"]).render(), "X\n");
        assert_eq!(Table::default().render(), "");
    }
}
