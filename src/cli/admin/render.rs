//! How the admin commands print an answer: the API's JSON as it came (`--json`), or a
//! table of chosen fields, one row per object of `data`. Also where the CLI reads an
//! event in either API shape (`id` or the older `eventId`; `deliveryCount` or the older
//! `deliveries`), so it works against servers from before and after that rename.

use serde_json::Value;

use super::super::CliError;
use super::super::output::{hint, print};

/// The JSON (`json`), or a table of `columns` (JSON field names) of `value["data"]`.
pub fn show(json: bool, value: &Value, columns: &[&str]) -> Result<(), CliError> {
    if json {
        return print_json(value);
    }
    let rows: Vec<&Value> = match &value["data"] {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    print(table(columns, &rows))
}

/// A list page: `show`, then, in a table, where the next page starts (on stderr, so
/// the table alone goes down a pipe).
pub fn show_page(json: bool, value: &Value, columns: &[&str]) -> Result<(), CliError> {
    show(json, value, columns)?;
    if let (false, Some(next)) = (json, value["nextCursor"].as_str()) {
        hint(format_args!("more: add --cursor {next}"));
    }
    Ok(())
}

pub fn print_json(value: &Value) -> Result<(), CliError> {
    // Serialising a `Value` cannot fail: every map key is a string.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    print(format_args!("{text}\n"))
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart, headed by the field names.
pub fn table(columns: &[&str], rows: &[&Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.to_string()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

/// The columns of an event, as `event` names them.
pub const EVENT_COLUMNS: &[&str] = &["id", "eventType", "entityId", "deliveryCount", "createdAt"];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_columns_and_show_absent_values_as_dashes() {
        let rows = [
            json!({"id": "a", "name": "Acme", "n": 1}),
            json!({"id": "bbbb", "name": null, "n": [1, 2]}),
        ];
        let rows: Vec<&Value> = rows.iter().collect();
        assert_eq!(
            table(&["id", "name", "n"], &rows),
            "id    name  n\na     Acme  1\nbbbb  -     1,2\n"
        );
    }
}
