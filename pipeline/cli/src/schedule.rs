//! `roadsynth schedule`: a long-lived process that runs an orchestrator file at the times of its
//! cron schedule, in its time zone.
//!
//! Policy: runs never overlap (each takes the runs lock; a tick that finds it held is logged and
//! skipped). Ticks that pass while a run is going, or while no scheduler was running, are not
//! queued: with `missed: run_once` (the default) they cause one catch-up run as soon as possible,
//! with `missed: skip` the scheduler waits for the next tick. A failed run is logged in its ledger
//! and does not stop the scheduler. The file is re-read before every run, so edits take effect
//! without a restart (a file that no longer checks is logged and that tick skipped).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::orchestrator::{self, MissedRuns, Schedule};
use crate::run_cmd::{self, AugmentRunner};

/// Whether a tick of `schedule` fell in `(after, until]`.
pub fn tick_between(schedule: &Schedule, after: DateTime<Utc>, until: DateTime<Utc>) -> bool {
    schedule
        .cron
        .find_next_occurrence(&after.with_timezone(&schedule.time_zone), false)
        .is_ok_and(|t| t.with_timezone(&Utc) <= until)
}

fn last_run_start(config: &orchestrator::Orchestrator) -> Option<DateTime<Utc>> {
    run_cmd::ledgers(&config.runs_root)
        .ok()?
        .last()
        .and_then(|l| DateTime::parse_from_rfc3339(&l.started_at).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Runs `file` on its schedule until `max_runs` runs were attempted (forever without it).
pub fn run(file: &Path, max_runs: Option<u32>, augment: AugmentRunner<'_>) -> Result<ExitCode> {
    let config = orchestrator::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(schedule) = config.schedule.clone() else {
        anyhow::bail!(
            "{} has no `schedule:` section (cron, time_zone, missed)",
            file.display()
        );
    };
    let mut attempts = 0u32;
    let mut catch_up = schedule.missed == MissedRuns::RunOnce
        && last_run_start(&config).is_some_and(|last| tick_between(&schedule, last, Utc::now()));
    loop {
        if max_runs.is_some_and(|m| attempts >= m) {
            return Ok(ExitCode::SUCCESS);
        }
        if catch_up {
            tracing::info!("a scheduled run was missed: catching up once");
        } else {
            let now = Utc::now().with_timezone(&schedule.time_zone);
            let next = schedule
                .cron
                .find_next_occurrence(&now, false)
                .map_err(|e| anyhow::anyhow!("cron: {e}"))?;
            tracing::info!(next = %next, "waiting for the next scheduled run");
            let wait = (next.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default();
            std::thread::sleep(wait);
        }
        let started = Utc::now();
        attempts += 1;
        match orchestrator::load(file) {
            Err(e) => tracing::error!("{} no longer checks; run skipped:\n{e}", file.display()),
            Ok(config) => match run_cmd::run(&config, augment, &run_cmd::RunOptions::default()) {
                Ok(code) => tracing::info!(?code, "scheduled run finished"),
                Err(e) => tracing::error!("scheduled run failed: {e:#}"),
            },
        }
        catch_up =
            schedule.missed == MissedRuns::RunOnce && tick_between(&schedule, started, Utc::now());
    }
}
