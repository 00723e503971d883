//! A live display of a run's [`Event`]s: on a terminal, one line per module with its state, its
//! elapsed time and what it is doing or waiting for (the object named by its last progress
//! message), redrawn in place with [`indicatif`]; elsewhere (CI, a pipe, a log file) the plain
//! event lines of [`Event`]'s `Display`.
//!
//! ```no_run
//! use devops_stack::progress::{Progress, Style};
//! # async fn run(stack: devops_stack::BuiltStack) -> devops_stack::Result<()> {
//! let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
//! let display = Progress::new(Style::detect()).spawn(rx);
//! let report = stack.apply(&devops_stack::RunOptions::new().events(tx)).await;
//! display.await.ok(); // the display ends when the run drops its event sender
//! # report.map(drop)
//! # }
//! ```

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::{Event, Step};

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Style {
    /// One live line per module, redrawn in place.
    Live,
    /// One line per event, as [`Event`]'s `Display` writes it.
    Plain,
}

impl Style {
    /// [`Style::Live`] when standard error is a terminal and `CI` is not set; [`Style::Plain`]
    /// otherwise.
    pub fn detect() -> Style {
        if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            Style::Live
        } else {
            Style::Plain
        }
    }
}

/// Shows a run's events; see the [module documentation](self).
#[derive(Debug)]
pub struct Progress {
    style: Style,
    target: Option<ProgressDrawTarget>,
}

impl Progress {
    /// A display in `style`; live lines are drawn on standard error.
    pub fn new(style: Style) -> Progress {
        Progress {
            style,
            target: None,
        }
    }

    /// Draws live lines on `target` instead (a hidden or in-memory target in tests).
    #[must_use]
    pub fn draw_target(mut self, target: ProgressDrawTarget) -> Progress {
        self.target = Some(target);
        self
    }

    /// Shows every event `events` receives until the run drops its sender.
    pub fn spawn(self, events: UnboundedReceiver<Event>) -> JoinHandle<()> {
        tokio::spawn(self.show(events))
    }

    /// Shows every event until the sender is dropped.
    pub async fn show(self, mut events: UnboundedReceiver<Event>) {
        if self.style == Style::Plain {
            while let Some(event) = events.recv().await {
                println!("{event}");
            }
            return;
        }
        let mut lines = Lines::new(self.target.unwrap_or_else(ProgressDrawTarget::stderr));
        while let Some(event) = events.recv().await {
            lines.update(&event);
        }
        lines.finish();
    }
}

/// The live lines, one per module.
struct Lines {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    running: ProgressStyle,
    done: ProgressStyle,
}

impl Lines {
    fn new(target: ProgressDrawTarget) -> Lines {
        let running = ProgressStyle::with_template("{spinner} {prefix:<28} {elapsed:>5} {msg}")
            .expect("a valid template");
        let done = ProgressStyle::with_template("  {prefix:<28} {msg}").expect("a valid template");
        Lines {
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            running,
            done,
        }
    }

    fn bar(&mut self, module: &str) -> &ProgressBar {
        if !self.bars.contains_key(module) {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(self.running.clone());
            bar.set_prefix(module.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bars.insert(module.to_owned(), bar);
        }
        &self.bars[module]
    }

    fn update(&mut self, event: &Event) {
        let done = self.done.clone();
        match event {
            Event::Started { module, step, .. } => {
                let bar = self.bar(module);
                bar.reset_elapsed();
                bar.set_message(format!("{}…", verb(*step)));
            }
            Event::Progress {
                module, message, ..
            } => self.bar(module).set_message(message.clone()),
            Event::Finished {
                module,
                step,
                duration,
                ..
            } => {
                let bar = self.bar(module);
                bar.set_style(done);
                bar.finish_with_message(format!("✔ {step} done in {:.1}s", duration.as_secs_f64()));
            }
            Event::Failed {
                module,
                step,
                duration,
                error,
                ..
            } => {
                let bar = self.bar(module);
                bar.set_style(done);
                bar.finish_with_message(format!(
                    "✘ {step} failed after {:.1}s: {error}",
                    duration.as_secs_f64()
                ));
            }
            Event::Skipped { module, reason, .. } => {
                let bar = self.bar(module);
                bar.set_style(done);
                bar.finish_with_message(format!("– skipped: {reason}"));
            }
            _ => {}
        }
    }

    fn finish(self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

fn verb(step: Step) -> &'static str {
    match step {
        Step::Plan => "planning",
        Step::Read => "reading",
        Step::Apply => "applying",
        Step::Destroy => "destroying",
        Step::Preflight => "checking",
        _ => "running",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_lines_follow_each_modules_events() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ms = Duration::from_millis;
        let events = [
            Event::Started {
                module: "eks".into(),
                step: Step::Apply,
                elapsed: ms(0),
            },
            Event::Started {
                module: "argocd".into(),
                step: Step::Apply,
                elapsed: ms(1),
            },
            Event::Progress {
                module: "argocd".into(),
                step: Step::Apply,
                elapsed: ms(2),
                message: "waiting for apps/v1 Deployment argocd/argocd-server to be ready".into(),
            },
            Event::Finished {
                module: "eks".into(),
                step: Step::Apply,
                elapsed: ms(3),
                duration: ms(3),
            },
        ];
        let mut lines = Lines::new(ProgressDrawTarget::hidden());
        for e in &events {
            lines.update(e);
        }
        assert_eq!(lines.bars.len(), 2, "one line per module");
        assert!(lines.bars["eks"].is_finished());
        assert!(lines.bars["eks"].message().starts_with("✔ apply done"));
        assert!(!lines.bars["argocd"].is_finished());
        assert_eq!(
            lines.bars["argocd"].message(),
            "waiting for apps/v1 Deployment argocd/argocd-server to be ready"
        );
        lines.update(&Event::Failed {
            module: "argocd".into(),
            step: Step::Apply,
            elapsed: ms(9),
            duration: ms(8),
            error: "boom".into(),
        });
        assert!(
            lines.bars["argocd"]
                .message()
                .contains("failed after 0.0s: boom")
        );
        // The display task ends when the sender goes.
        let task = Progress::new(Style::Live)
            .draw_target(ProgressDrawTarget::hidden())
            .spawn(rx);
        tx.send(events[0].clone()).unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
