//! # hourlake-repl
//!
//! `hourlake sql`: the analysts' REPL, over a lake folder or a Flight SQL server.
//!
//! Line editing with persistent history, statements over several lines ended by `;`,
//! tab completion of keywords, tables and columns, backslash commands (`\d`, `\d NAME`,
//! `\timing`, `\format`, `\q`, `\help`), Ctrl-C cancelling the running query, and a
//! spinner with rows and elapsed time for slow queries. Without a terminal (or with
//! `-c`) it runs a script and exits non-zero if a statement failed.

mod backend;
mod editor;
mod output;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use futures::StreamExt;
use hourlake_sql::script::split_statements;
use indicatif::{ProgressBar, ProgressStyle};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::Editor;
use thiserror::Error;

pub use backend::Backend;
pub use output::{OutputFormat, UnknownFormat};

use editor::SqlHelper;
use hourlake_query::ApiError;

/// What can go wrong in the REPL; shown to the user, who goes on.
#[derive(Debug, Error)]
pub enum ReplError {
    /// The statement failed (parse, plan, guard, limits).
    #[error("{}: {}", .0.code, .0.message)]
    Query(#[from] ApiError),
    /// The server could not be reached.
    #[error("cannot connect to {0}")]
    Connect(String),
    /// The server answered with an error.
    #[error("{0}")]
    Flight(String),
    /// A backslash command was misused.
    #[error("{0}")]
    Usage(String),
    /// `\format` named no format.
    #[error(transparent)]
    Format(#[from] output::UnknownFormat),
    /// Reading input or writing output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Line editing failed.
    #[error(transparent)]
    Readline(#[from] ReadlineError),
}

impl From<ArrowError> for ReplError {
    fn from(e: ArrowError) -> ReplError {
        ReplError::Flight(flight_message(&e.to_string()))
    }
}

impl From<FlightError> for ReplError {
    fn from(e: FlightError) -> ReplError {
        match e {
            FlightError::Tonic(status) => ReplError::Flight(status.message().to_string()),
            other => ReplError::Flight(flight_message(&other.to_string())),
        }
    }
}

/// The server's message inside an Arrow/tonic error text, without the wrapping.
fn flight_message(text: &str) -> String {
    match text.find("message: \"") {
        Some(i) => {
            let rest = &text[i + 10..];
            rest.split("\", details").next().unwrap_or(rest).to_string()
        }
        None => text.to_string(),
    }
}

/// Settings of one REPL run.
#[derive(Debug, Clone)]
pub struct ReplOptions {
    /// Run this text (statements and backslash commands) and exit.
    pub command: Option<String>,
    /// The output format to start with.
    pub format: OutputFormat,
    /// Where history is kept (interactive only); `None`: no history file.
    pub history: Option<PathBuf>,
}

const HELP: &str = "\
Statements end with `;` and may span lines. Ctrl-C cancels a running query; Ctrl-D quits.
  \\d              list tables and views
  \\d NAME         columns of table or view NAME
  \\timing         show how long each statement took (toggle)
  \\format FORMAT  table | csv | json | vertical
  \\help, \\?       this text
  \\q              quit
";

/// A REPL session over one backend.
pub struct Repl {
    backend: Backend,
    format: OutputFormat,
    timing: bool,
    interactive: bool,
    names: Arc<RwLock<Vec<String>>>,
    runtime: tokio::runtime::Handle,
}

/// Runs the REPL (interactive on a terminal, else a script from `-c` or stdin). Call it
/// from a blocking thread of a Tokio runtime (`spawn_blocking`). Returns whether every
/// statement succeeded.
pub fn run(backend: Backend, options: ReplOptions) -> Result<bool, ReplError> {
    let interactive = options.command.is_none() && std::io::stdin().is_terminal();
    let mut repl = Repl {
        backend,
        format: options.format,
        timing: false,
        interactive,
        names: Arc::new(RwLock::new(Vec::new())),
        runtime: tokio::runtime::Handle::current(),
    };
    match options.command {
        Some(text) => repl.script(&text),
        None if !interactive => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            repl.script(&text)
        }
        None => repl.interactive(options.history),
    }
}

/// What a backslash command asks for.
enum Next {
    Continue,
    Quit,
}

impl Repl {
    fn interactive(&mut self, history: Option<PathBuf>) -> Result<bool, ReplError> {
        self.learn_names();
        let mut editor: Editor<SqlHelper, FileHistory> = Editor::new()?;
        editor.set_helper(Some(SqlHelper::new(self.names.clone())));
        if let Some(path) = &history {
            // A missing history file is normal the first time.
            let _ = editor.load_history(path);
        }
        println!("hourlake SQL — statements end with `;`, \\help for commands, \\q to quit.");
        loop {
            match editor.readline("hourlake> ") {
                Ok(input) => {
                    if input.trim().is_empty() {
                        continue;
                    }
                    let _ = editor.add_history_entry(input.as_str());
                    if let Some(path) = &history {
                        if let Err(e) = editor.save_history(path) {
                            eprintln!("warning: cannot save history to {}: {e}", path.display());
                        }
                    }
                    if let Next::Quit = self.input(&input) {
                        break;
                    }
                }
                // Ctrl-C at the prompt discards the line, as in psql.
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    fn script(&mut self, text: &str) -> Result<bool, ReplError> {
        let mut ok = true;
        let mut pending = String::new();
        for line in text.lines() {
            if pending.trim().is_empty() && line.trim_start().starts_with('\\') {
                match self.command(line.trim()) {
                    Ok(Next::Quit) => return Ok(ok),
                    Ok(Next::Continue) => {}
                    Err(e) => {
                        eprintln!("ERROR: {e}");
                        ok = false;
                    }
                }
                continue;
            }
            pending.push_str(line);
            pending.push('\n');
            let (statements, rest) = split_statements(&pending);
            for statement in statements {
                ok &= self.statement(&statement);
            }
            pending = rest.map(|r| r + "\n").unwrap_or_default();
        }
        // A last statement without `;`.
        if !pending.trim().is_empty() {
            ok &= self.statement(pending.trim());
        }
        Ok(ok)
    }

    /// One editor input: a backslash command or complete statements.
    fn input(&mut self, input: &str) -> Next {
        if input.trim_start().starts_with('\\') {
            return match self.command(input.trim()) {
                Ok(next) => next,
                Err(e) => {
                    eprintln!("ERROR: {e}");
                    Next::Continue
                }
            };
        }
        let (statements, rest) = split_statements(input);
        for statement in &statements {
            self.statement(statement);
        }
        if let Some(rest) = rest {
            // The editor only hands over complete input; an open quote still gets here.
            eprintln!("ERROR: unterminated quote or comment in: {rest}");
        }
        Next::Continue
    }

    fn command(&mut self, line: &str) -> Result<Next, ReplError> {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or("");
        let argument = words.collect::<Vec<_>>().join(" ");
        let argument = argument.trim_end_matches(';').trim();
        match name {
            "\\q" | "\\quit" => return Ok(Next::Quit),
            "\\?" | "\\h" | "\\help" => print!("{HELP}"),
            "\\timing" => {
                self.timing = match argument {
                    "on" => true,
                    "off" => false,
                    _ => !self.timing,
                };
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            "\\format" | "\\f" => {
                if argument.is_empty() {
                    println!("Output format is {:?}.", self.format);
                } else {
                    self.format = argument.parse()?;
                    println!("Output format is {:?}.", self.format);
                }
            }
            "\\d" if argument.is_empty() => {
                self.show(
                    "SELECT table_schema AS schema, table_name AS name, table_type AS type \
                     FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' ORDER BY 1, 2",
                )?;
            }
            "\\d" => {
                let quoted = argument.replace('\'', "''");
                let found = self.show(&format!(
                    "SELECT column_name AS column, data_type AS type, is_nullable AS nullable \
                     FROM information_schema.columns WHERE table_name = '{quoted}' \
                     ORDER BY ordinal_position"
                ))?;
                if found == 0 {
                    return Err(ReplError::Usage(format!(
                        "no table or view named {argument:?}"
                    )));
                }
            }
            other => {
                return Err(ReplError::Usage(format!(
                    "unknown command {other}; \\help lists the commands"
                )))
            }
        }
        Ok(Next::Continue)
    }

    /// Runs a catalog query and prints it as a table; returns the row count.
    fn show(&mut self, sql: &str) -> Result<usize, ReplError> {
        let backend = &mut self.backend;
        let batches = self.runtime.block_on(backend.collect(sql))?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 0 {
            let schema = batches[0].schema();
            print!(
                "{}",
                output::render(output::OutputFormat::Table, &schema, &batches)?
            );
        }
        Ok(rows)
    }

    /// Reads table and column names for completion.
    fn learn_names(&mut self) {
        let sql = "SELECT DISTINCT table_name AS name FROM information_schema.columns \
                   UNION SELECT DISTINCT column_name FROM information_schema.columns";
        let backend = &mut self.backend;
        let Ok(batches) = self.runtime.block_on(backend.collect(sql)) else {
            return;
        };
        let mut names = Vec::new();
        for batch in &batches {
            let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8);
            if let Ok(column) = column {
                if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
                    names.extend(strings.iter().flatten().map(str::to_string));
                }
            }
        }
        if let Ok(mut known) = self.names.write() {
            *known = names;
        }
    }

    /// Runs one statement and prints its result or error; returns whether it succeeded.
    fn statement(&mut self, sql: &str) -> bool {
        let started = Instant::now();
        let spinner = if self.interactive {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let backend = &mut self.backend;
        let progress = spinner.clone();
        let outcome = self.runtime.block_on(async move {
            let run = async {
                let rows = backend.query(sql).await?;
                let schema = rows.schema;
                let mut stream = rows.stream;
                let mut batches = Vec::new();
                let mut count = 0usize;
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut shown = false;
                loop {
                    tokio::select! {
                        next = stream.next() => match next {
                            None => break,
                            Some(batch) => {
                                let batch = batch?;
                                count += batch.num_rows();
                                batches.push(batch);
                            }
                        },
                        _ = tick.tick() => {
                            // Slow queries only: a spinner with rows so far and time.
                            if started.elapsed() > Duration::from_millis(500) {
                                if !shown {
                                    progress.enable_steady_tick(Duration::from_millis(100));
                                    shown = true;
                                }
                                progress.set_message(format!(
                                    "{count} rows, {:.1} s (Ctrl-C cancels)",
                                    started.elapsed().as_secs_f64()
                                ));
                            }
                        }
                    }
                }
                Ok::<_, ReplError>((schema, batches, count))
            };
            tokio::select! {
                result = run => Some(result),
                _ = tokio::signal::ctrl_c() => None,
            }
        });
        spinner.finish_and_clear();
        let elapsed = started.elapsed();
        let ok = match outcome {
            None => {
                eprintln!("Cancelled.");
                false
            }
            Some(Err(e)) => {
                eprintln!("ERROR: {e}");
                false
            }
            Some(Ok((schema, batches, count))) => {
                match output::render(self.format, &schema, &batches) {
                    Ok(text) => {
                        let mut stdout = std::io::stdout().lock();
                        let _ = stdout.write_all(text.as_bytes());
                        if self.format == OutputFormat::Table {
                            let _ = writeln!(
                                stdout,
                                "({count} row{})",
                                if count == 1 { "" } else { "s" }
                            );
                        }
                        let _ = stdout.flush();
                        true
                    }
                    Err(e) => {
                        eprintln!("ERROR: {e}");
                        false
                    }
                }
            }
        };
        if self.timing {
            println!("Time: {:.3} ms", elapsed.as_secs_f64() * 1000.0);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::flight_message;

    #[test]
    fn server_messages_are_unwrapped() {
        let text = "Ipc error: Can't execute: status: InvalidArgument, message: \"sql_parse: Expected: an expression\", details: [], metadata: {}";
        assert_eq!(flight_message(text), "sql_parse: Expected: an expression");
        assert_eq!(flight_message("plain"), "plain");
    }
}
