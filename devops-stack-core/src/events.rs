//! What a run tells while it runs: an [`Event`] for each module step that starts, reports
//! progress, finishes, fails or is skipped.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::step::Step;

/// Where events go; a closed or absent receiver is fine.
#[derive(Clone, Default)]
pub(crate) struct EventSink(Option<UnboundedSender<Event>>);

impl EventSink {
    pub(crate) fn to(tx: UnboundedSender<Event>) -> Self {
        EventSink(Some(tx))
    }

    pub(crate) fn send(&self, event: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(event);
        }
    }
}

/// Something that happened during a run. `elapsed` is the time since the run started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A module's step started.
    Started {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
    },
    /// A module reported progress.
    Progress {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// What it said.
        message: String,
    },
    /// A module's step succeeded.
    Finished {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// How long the step took.
        duration: Duration,
    },
    /// A module's step failed, timed out or was cancelled.
    Failed {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// How long the step ran.
        duration: Duration,
        /// The error.
        error: String,
    },
    /// A module's step was not run.
    Skipped {
        /// The module.
        module: String,
        /// The step.
        step: Step,
        /// Since the run started.
        elapsed: Duration,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Event {
    /// One progress line: `[  12.3s] eks: apply finished in 11.9s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (module, step, elapsed) = match self {
            Event::Started {
                module,
                step,
                elapsed,
            }
            | Event::Progress {
                module,
                step,
                elapsed,
                ..
            }
            | Event::Finished {
                module,
                step,
                elapsed,
                ..
            }
            | Event::Failed {
                module,
                step,
                elapsed,
                ..
            }
            | Event::Skipped {
                module,
                step,
                elapsed,
                ..
            } => (module, step, elapsed),
        };
        write!(f, "[{:>7.1}s] {module}: ", elapsed.as_secs_f64())?;
        match self {
            Event::Started { .. } => write!(f, "{step} started"),
            Event::Progress { message, .. } => f.write_str(message),
            Event::Finished { duration, .. } => {
                write!(f, "{step} finished in {:.1}s", duration.as_secs_f64())
            }
            Event::Failed {
                duration, error, ..
            } => {
                write!(
                    f,
                    "{step} FAILED after {:.1}s: {error}",
                    duration.as_secs_f64()
                )
            }
            Event::Skipped { reason, .. } => write!(f, "{step} skipped: {reason}"),
        }
    }
}
