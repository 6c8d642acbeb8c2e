//! `metaward sql "…"`: analysts' read-only SQL over a data directory's store, printed as a
//! table (or JSON lines). Safe while a server runs on the same directory: the query has its
//! own read-only connection (docs/sql.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use store::analytics::{SqlLimits, SqlValue, query_read_only};

#[derive(Args)]
pub struct SqlArgs {
    /// One read-only SELECT (see docs/sql.md for the schema)
    query: String,
    /// Data directory of the server [default: ./metaward-data]
    #[arg(long, env = "METAWARD_DATA")]
    data: Option<PathBuf>,
    /// Rows to return at most
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Milliseconds the query may run
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Print one JSON object per row instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let data = args
        .data
        .unwrap_or_else(|| crate::config::DEFAULT_DATA.into());
    let path = data.join("metaward.sqlite");
    anyhow::ensure!(
        path.exists(),
        "no store at {} (run the server with --data {} first)",
        path.display(),
        data.display()
    );
    let limits = SqlLimits {
        max_rows: args.limit.max(1),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
    };
    let result = query_read_only(&path, &args.query, limits).context("the query failed")?;
    if args.json {
        for row in &result.rows {
            let object: serde_json::Map<String, serde_json::Value> = result
                .columns
                .iter()
                .cloned()
                .zip(row.iter().map(server::api::sql_cell_json))
                .collect();
            println!("{}", serde_json::Value::Object(object));
        }
    } else {
        print!("{}", table(&result.columns, &result.rows));
    }
    eprintln!(
        "{} row{}{} in {:.1} ms",
        result.rows.len(),
        if result.rows.len() == 1 { "" } else { "s" },
        if result.truncated {
            " (truncated: more exist; raise --limit)"
        } else {
            ""
        },
        result.elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn text(cell: &SqlValue) -> String {
    match cell {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(v) => v.to_string(),
        SqlValue::Real(v) => v.to_string(),
        SqlValue::Text(v) => v.clone(),
        SqlValue::Blob(len) => format!("<{len} bytes>"),
    }
}

/// Columns padded to their widest cell, a rule under the header.
fn table(columns: &[String], rows: &[Vec<SqlValue>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(text).collect())
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: &[String]| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(value, width)| format!("{value:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_columns_to_their_widest_cell() {
        let table = table(
            &["id".into(), "value".into()],
            &[
                vec![SqlValue::Text("p1".into()), SqlValue::Real(97.5)],
                vec![SqlValue::Text("patient-2".into()), SqlValue::Null],
            ],
        );
        assert_eq!(
            table,
            "id         value\n---------  -----\np1         97.5\npatient-2  NULL\n"
        );
    }
}
