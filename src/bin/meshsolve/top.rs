//! `meshsolve top`: a live view of the namespace on the terminal — one row per
//! worker (slots busy, solvers, licence pools, jobs done and failed) and the
//! jobs running or waiting on them. Redrawn every interval as workers come and
//! go; `q`, Esc or Ctrl-C leaves it and gives the terminal back as it was.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use meshsolve::client::Mesh;
use meshsolve::protocol::{JobPhase, WorkerAd, WorkerJobs, WorkerStatus};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use crate::args::MeshConfig;

/// One worker as last seen.
struct Seen {
    ad: WorkerAd,
    status: Result<WorkerStatus, String>,
    jobs: Option<WorkerJobs>,
}

pub(crate) async fn top(m: &MeshConfig, interval: Duration) -> anyhow::Result<u8> {
    if !std::io::stdout().is_terminal() {
        return Err(crate::cli::Usage(
            "meshsolve top draws on a terminal; in scripts use `meshsolve ps --json` or `meshsolve workers --json`"
                .into(),
        )
        .into());
    }
    let mesh = Mesh::connect(m.client.clone()).await?;
    let mut terminal = ratatui::try_init()?;
    let shown = run(&mesh, &mut terminal, interval.max(Duration::from_millis(100))).await;
    ratatui::restore();
    mesh.close().await;
    shown?;
    Ok(0)
}

async fn run(mesh: &Mesh, terminal: &mut DefaultTerminal, interval: Duration) -> anyhow::Result<()> {
    let ns = mesh.namespace().to_string();
    loop {
        let mut ads = mesh.workers();
        ads.sort_by(|a, b| a.instance.cmp(&b.instance));
        let seen: Vec<Seen> = join_all(ads.into_iter().map(|ad| async move {
            let (status, jobs) = tokio::join!(mesh.status(&ad), mesh.jobs(&ad, false));
            Seen { ad, status: status.map_err(|e| e.to_string()), jobs: jobs.ok() }
        }))
        .await;
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        terminal.draw(|f| draw(f, &ns, &seen, &at))?;
        // Keys until the next refresh.
        let next = Instant::now() + interval;
        while Instant::now() < next {
            if event::poll(Duration::ZERO)? {
                if let Event::Key(k) = event::read()? {
                    let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press
                        && (ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc))
                    {
                        return Ok(());
                    }
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}

fn draw(f: &mut Frame, ns: &str, seen: &[Seen], at: &str) {
    let [head, workers, jobs] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(seen.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(f.area());
    let (busy, slots) = seen.iter().fold((0, 0), |(b, s), w| match &w.status {
        Ok(st) => (b + st.busy, s + st.slots),
        Err(_) => (b, s + w.ad.slots),
    });
    let all_jobs: Vec<(&str, &meshsolve::protocol::JobView)> = seen
        .iter()
        .flat_map(|w| {
            w.jobs.iter().flat_map(move |j| j.jobs.iter().map(move |v| (w.ad.instance.as_str(), v)))
        })
        .collect();
    let running = all_jobs.iter().filter(|(_, j)| j.phase == JobPhase::Running).count();
    let waiting = all_jobs.len() - running;
    let title = format!(
        "meshsolve top — namespace {ns} — {} worker(s), {busy}/{slots} slots busy, {running} running, {waiting} waiting — {at} — q quits",
        seen.len()
    );
    f.render_widget(Paragraph::new(Line::from(title).style(Style::new().add_modifier(Modifier::BOLD))), head);

    let bold = Style::new().add_modifier(Modifier::BOLD);
    let header =
        Row::new(["WORKER", "ADDRESS", "BUSY", "SOLVERS", "POOLS", "DONE", "FAILED", "STATE"]).style(bold);
    let rows = seen.iter().map(|w| {
        let solvers =
            w.ad.solvers.iter().map(|s| format!("{} {}", s.name, s.version)).collect::<Vec<_>>().join(", ");
        let (busy, done, failed, state, pools) = match &w.status {
            Ok(st) => (
                format!("{}/{}", st.busy, st.slots),
                st.done.to_string(),
                st.failed.to_string(),
                if st.draining { "draining".to_string() } else { "ok".to_string() },
                st.pools
                    .iter()
                    .map(|p| format!("{}@{} ({} seats)", p.solver, p.server, p.size))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Err(e) => ("?".into(), "?".into(), "?".into(), format!("unreachable: {e}"), String::new()),
        };
        Row::new([
            Cell::from(w.ad.instance.clone()),
            Cell::from(w.ad.best_addr().map(|a| a.to_string()).unwrap_or_default()),
            Cell::from(busy),
            Cell::from(solvers),
            Cell::from(pools),
            Cell::from(done),
            Cell::from(failed),
            Cell::from(state),
        ])
    });
    let name_width =
        seen.iter().map(|w| w.ad.instance.chars().count()).max().unwrap_or(6).clamp(6, 40) as u16;
    let widths = [
        Constraint::Length(name_width + 1),
        Constraint::Length(22),
        Constraint::Length(6),
        Constraint::Fill(3),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    f.render_widget(
        Table::new(rows, widths).header(header).block(Block::bordered().title(" workers ")),
        workers,
    );

    let header = Row::new(["JOB", "MODEL", "SOLVER", "CLIENT", "TRY", "PHASE", "SECONDS"]).style(bold);
    let rows = all_jobs.iter().map(|(w, j)| {
        Row::new([
            format!("{w}:{}", j.id),
            j.model.clone(),
            j.solver.clone(),
            j.client.clone(),
            if j.attempt > 0 { j.attempt.to_string() } else { "-".into() },
            match j.phase {
                JobPhase::Running => "running".to_string(),
                JobPhase::Queued => "waiting".to_string(),
                JobPhase::Done => "done".to_string(),
                JobPhase::Failed => "failed".to_string(),
            },
            format!("{:.1}", j.seconds),
        ])
    });
    let widths = [
        Constraint::Length(name_width + 6),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(2),
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let title = if all_jobs.is_empty() { " jobs: none running ".to_string() } else { " jobs ".to_string() };
    f.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), jobs);
}
