//! The live view of `hail status` on a terminal: the rows of `status_view`
//! redrawn after every refresh, full screen, until q, Esc or Ctrl-C (or
//! SIGINT, SIGTERM, SIGHUP).
//!
//! The terminal is put back (raw mode off, main screen, cursor shown) on
//! every way out: a guard restores it when `run` returns — normally or with
//! an error — and ratatui's panic hook restores it before a panic message
//! is printed. A refresh that fails keeps the last rows on screen and says
//! why, as `k9s` does, and the next refresh tries again.

use std::io;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::api_cmd::{human, now_secs};
use crate::client::Client;
use crate::status_cmd::{gather, StatusArgs};
use crate::status_view::{
    cluster_cells, delivery_cells, service_cells, snapshot, task_cells, CpuRates, Snapshot,
    CLUSTER_HEADER, DELIVERY_HEADER, SERVICE_HEADER, TASK_HEADER,
};

/// What the person at the terminal asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Quit,
    /// Refresh now instead of at the next tick.
    Refresh,
    /// The terminal changed size: draw again.
    Redraw,
}

/// The input a terminal event means, if any: q, Q, Esc and Ctrl-C quit
/// (raw mode turns Ctrl-C into a key, not a signal), r refreshes.
pub fn input_of(event: &Event) -> Option<Input> {
    match event {
        Event::Key(KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            ..
        }) => match code {
            KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Some(Input::Quit),
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => Some(Input::Quit),
            KeyCode::Char('r' | 'R') => Some(Input::Refresh),
            _ => None,
        },
        Event::Resize(..) => Some(Input::Redraw),
        _ => None,
    }
}

/// What the screen shows between refreshes.
#[derive(Debug, Default)]
pub struct Screen {
    pub endpoint: String,
    pub interval: Duration,
    pub snapshot: Option<Snapshot>,
    /// Why the last refresh failed, if it did.
    pub error: Option<String>,
}

/// Puts the terminal back when dropped, however `run` ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
        let _ = ratatui::crossterm::execute!(io::stdout(), ratatui::crossterm::cursor::Show);
    }
}

pub async fn run(client: &Client, args: &StatusArgs) -> anyhow::Result<()> {
    // Signals first: nothing to undo if they cannot be set up.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    // The guard exists before the terminal changes, so a failure half way
    // through entering raw mode and the alternate screen is undone too.
    let _restore = Restore;
    let mut terminal = ratatui::try_init()?;
    let (tx, mut inputs) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("status-keys".into())
        .spawn(move || read_inputs(&tx))?;

    let mut screen = Screen {
        endpoint: client.endpoint().to_owned(),
        interval: args.interval,
        ..Screen::default()
    };
    let mut rates = CpuRates::default();
    loop {
        // Refresh, still answering keys and signals while the calls run.
        let refresh = gather(client, &args.clusters);
        tokio::pin!(refresh);
        let answers = loop {
            tokio::select! {
                answers = &mut refresh => break answers,
                input = inputs.recv() => match input {
                    Some(Input::Quit) | None => return Ok(()),
                    Some(_) => {
                        terminal.draw(|f| draw(f, &screen, now_secs()))?;
                    }
                },
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                _ = hangup.recv() => return Ok(()),
            };
        };
        match answers {
            Ok(answers) => {
                let now = now_secs();
                let rates_now = rates.observe(&answers.stats);
                screen.snapshot = Some(snapshot(&answers, &rates_now, now));
                screen.error = None;
            }
            Err(e) => screen.error = Some(format!("{e:#}")),
        }
        terminal.draw(|f| draw(f, &screen, now_secs()))?;

        let next = Instant::now() + args.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => break,
                input = inputs.recv() => match input {
                    Some(Input::Quit) | None => return Ok(()),
                    Some(Input::Refresh) => break,
                    Some(Input::Redraw) => {
                        terminal.draw(|f| draw(f, &screen, now_secs()))?;
                    }
                },
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                _ = hangup.recv() => return Ok(()),
            };
        }
    }
}

/// Reads terminal events on a thread of its own (crossterm's reads block)
/// until the view is gone. A terminal that cannot be read ends the view.
fn read_inputs(tx: &mpsc::Sender<Input>) {
    while !tx.is_closed() {
        let event = match event::poll(Duration::from_millis(200)) {
            Ok(false) => continue,
            Ok(true) => event::read(),
            Err(e) => Err(e),
        };
        let input = match event {
            Ok(e) => input_of(&e),
            Err(_) => Some(Input::Quit),
        };
        if let Some(input) = input {
            if tx.blocking_send(input).is_err() || input == Input::Quit {
                return;
            }
        }
    }
}

/// Most rows a section other than the tasks takes before the tasks' table
/// gets the rest of the screen.
const CLUSTER_ROWS: usize = 5;
const SERVICE_ROWS: usize = 8;
const DELIVERY_ROWS: usize = 6;

/// Rows plus borders and the header line.
fn height(rows: usize, most: usize) -> Constraint {
    Constraint::Length(rows.min(most) as u16 + 3)
}

pub fn draw(frame: &mut Frame, screen: &Screen, now: f64) {
    let empty = Snapshot {
        taken_at: now,
        clusters: Vec::new(),
        services: Vec::new(),
        tasks: Vec::new(),
        deliveries: Vec::new(),
        problems: Vec::new(),
    };
    let s = screen.snapshot.as_ref().unwrap_or(&empty);
    let [top, clusters, services, tasks, deliveries, bottom] = Layout::vertical([
        Constraint::Length(1),
        height(s.clusters.len(), CLUSTER_ROWS),
        height(s.services.len(), SERVICE_ROWS),
        Constraint::Min(4),
        height(s.deliveries.len(), DELIVERY_ROWS),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let mut title = vec![
        Span::styled("hail status", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  every {}",
            screen.endpoint,
            interval(screen.interval)
        )),
    ];
    match (&screen.snapshot, &screen.error) {
        (None, None) => title.push(Span::raw("  loading…")),
        (Some(s), None) => title.push(Span::raw(format!(
            "  updated {} ago",
            human(now - s.taken_at)
        ))),
        (_, Some(e)) => title.push(Span::styled(
            format!("  refresh failed: {e}"),
            Style::new().fg(Color::Red),
        )),
    }
    frame.render_widget(Paragraph::new(Line::from(title)), top);

    section(
        frame,
        clusters,
        "Clusters",
        &CLUSTER_HEADER,
        s.clusters
            .iter()
            .map(|c| (cluster_cells(c), status_style(&c.status)))
            .collect(),
    );
    section(
        frame,
        services,
        "Services",
        &SERVICE_HEADER,
        s.services
            .iter()
            .map(|r| {
                let behind = r.running < r.desired || r.deployments > 1;
                let style = if behind {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new()
                };
                (service_cells(r, now), style)
            })
            .collect(),
    );
    section(
        frame,
        tasks,
        "Tasks",
        &TASK_HEADER,
        s.tasks
            .iter()
            .map(|t| {
                let style = if t.health == "UNHEALTHY" {
                    Style::new().fg(Color::Red)
                } else {
                    status_style(&t.status)
                };
                (task_cells(t, now), style)
            })
            .collect(),
    );
    section(
        frame,
        deliveries,
        "Trigger deliveries",
        &DELIVERY_HEADER,
        s.deliveries
            .iter()
            .map(|d| (delivery_cells(d, now), status_style(&d.status)))
            .collect(),
    );

    let footer = match s.problems.first() {
        Some(p) => Line::from(Span::styled(
            format!("warning: {p}"),
            Style::new().fg(Color::Yellow),
        )),
        None => Line::from("q quit  r refresh"),
    };
    frame.render_widget(Paragraph::new(footer), bottom);
}

fn interval(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.1}s")
    }
}

/// Colours of the status words: settling yellow, done well green, failed red.
fn status_style(status: &str) -> Style {
    match status {
        "PROVISIONING" | "PENDING" | "ACTIVATING" | "QUEUED" | "RUNNING_PENDING" => {
            Style::new().fg(Color::Yellow)
        }
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "DRAINING" => {
            Style::new().fg(Color::Magenta)
        }
        "SUCCEEDED" => Style::new().fg(Color::Green),
        "DEAD" | "FAILED" | "STOPPED" | "INACTIVE" => Style::new().fg(Color::Red),
        _ => Style::new(),
    }
}

/// A titled table whose columns are as wide as their widest cell; the last
/// takes what is left, and ratatui cuts what does not fit.
fn section(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    header: &[&str],
    rows: Vec<(Vec<String>, Style)>,
) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for (cells, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last = widths.len().saturating_sub(1);
    let constraints: Vec<Constraint> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == last {
                Constraint::Fill(1)
            } else {
                Constraint::Length(*w as u16)
            }
        })
        .collect();
    let count = rows.len();
    let table = Table::new(
        rows.into_iter()
            .map(|(cells, style)| Row::new(cells).style(style)),
        constraints,
    )
    .header(Row::new(header.to_vec()).style(Style::new().add_modifier(Modifier::BOLD)))
    .column_spacing(2)
    .block(Block::bordered().title(format!(" {title} ({count}) ")));
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyEventState, MouseEvent, MouseEventKind};
    use ratatui::Terminal;

    use super::*;
    use crate::status_view::{ClusterRow, DeliveryRow, TaskRow};

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    #[test]
    fn q_esc_and_ctrl_c_quit() {
        assert_eq!(
            input_of(&key(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Input::Quit)
        );
        assert_eq!(
            input_of(&key(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Input::Quit)
        );
        assert_eq!(
            input_of(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Input::Quit)
        );
        assert_eq!(input_of(&key(KeyCode::Char('c'), KeyModifiers::NONE)), None);
        assert_eq!(
            input_of(&key(KeyCode::Char('r'), KeyModifiers::NONE)),
            Some(Input::Refresh)
        );
        assert_eq!(input_of(&Event::Resize(80, 24)), Some(Input::Redraw));
        let release = Event::Key(KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        });
        assert_eq!(input_of(&release), None);
        let mouse = Event::Mouse(MouseEvent {
            kind: MouseEventKind::Moved,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        });
        assert_eq!(input_of(&mouse), None);
    }

    fn screen_text(screen: &Screen, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, screen, 1000.0)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut out = String::new();
        for y in 0..height {
            for x in 0..width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_screen_shows_every_section_and_the_last_error() {
        let screen = Screen {
            endpoint: "http://127.0.0.1:4566".into(),
            interval: Duration::from_secs(1),
            snapshot: Some(Snapshot {
                taken_at: 998.0,
                clusters: vec![ClusterRow {
                    name: "default".into(),
                    status: "ACTIVE".into(),
                    active_services: Some(0),
                    running_tasks: Some(1),
                    pending_tasks: Some(0),
                }],
                services: Vec::new(),
                tasks: vec![TaskRow {
                    cluster: "default".into(),
                    task_arn: "arn:aws:ecs:us-east-1:0:task/default/0123456789abcdef".into(),
                    task_id: "0123456789abcdef".into(),
                    task_definition: "busy:1".into(),
                    group: "family:busy".into(),
                    status: "RUNNING".into(),
                    desired_status: "RUNNING".into(),
                    health: "-".into(),
                    started_at: Some(990.0),
                    cpu_percent: Some(24.9),
                    cpu_percent_of_limit: Some(99.6),
                    cpu_limit_units: Some(256),
                    memory_bytes: Some(1024 * 1024),
                    memory_limit_bytes: Some(512 * 1024 * 1024),
                }],
                deliveries: vec![DeliveryRow {
                    trigger: "thumbs".into(),
                    key: "in/a.mp4".into(),
                    task_id: None,
                    status: "QUEUED".into(),
                    attempts: Some(1),
                    updated_at: Some(995.0),
                    last_error: None,
                }],
                problems: Vec::new(),
            }),
            error: None,
        };
        let text = screen_text(&screen, 160, 30);
        assert!(
            text.contains("hail status  http://127.0.0.1:4566  every 1s  updated 2s ago"),
            "{text}"
        );
        assert!(text.contains(" Clusters (1) "), "{text}");
        assert!(text.contains(" Services (0) "), "{text}");
        assert!(text.contains(" Tasks (1) "), "{text}");
        assert!(text.contains(" Trigger deliveries (1) "), "{text}");
        assert!(text.contains("0123456789ab  busy:1"), "{text}");
        assert!(text.contains("24.9%  99.6%"), "{text}");
        assert!(text.contains("1MiB / 512MiB"), "{text}");
        assert!(text.contains("in/a.mp4"), "{text}");
        assert!(text.contains("q quit"), "{text}");

        let failed = Screen {
            error: Some("cannot reach http://127.0.0.1:4566".into()),
            ..screen
        };
        let text = screen_text(&failed, 160, 30);
        assert!(text.contains("refresh failed: cannot reach"), "{text}");
        // The last rows stay on screen.
        assert!(text.contains("24.9%"), "{text}");
        // A tiny terminal draws what fits without failing.
        screen_text(&failed, 20, 5);
    }
}
