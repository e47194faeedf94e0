//! What `roadsynth augment --shard i/N` does beyond the stage itself: progress lines for the
//! driver that runs it (`ray/driver.py`), and a test-only switch that kills a shard's first
//! attempt mid-way, so that a test can check that a retry still commits the same bytes.
//!
//! The worker calls [`ShardProgress::variant_written`] from the stage's variant observer; this
//! module does not name the stage's types, so `roadsynth` (which must not link OpenCV) stays free
//! of `roadsynth-stages`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use roadsynth_dataset::shard::ShardId;

/// `<shard index>:<variants>:<marker file>`: the first attempt of that shard (the marker file
/// does not exist yet) creates the marker, then kills itself and its parent process (the Ray
/// worker running the task) with SIGKILL right after writing that many variants. Tests only.
pub const KILL_ENV: &str = "ROADSYNTH_TEST_KILL_SHARD";

/// Seconds between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct KillSwitch {
    after_variants: u64,
    marker: PathBuf,
}

impl KillSwitch {
    fn from_env(shard: ShardId) -> Option<Self> {
        let spec = std::env::var(KILL_ENV).ok()?;
        let mut fields = spec.splitn(3, ':');
        let index: u32 = fields.next()?.parse().ok()?;
        let after_variants: u64 = fields.next()?.parse().ok()?;
        let marker = PathBuf::from(fields.next()?);
        (index == shard.index && after_variants > 0).then_some(Self {
            after_variants,
            marker,
        })
    }

    /// On the first attempt only: records what was on disk, then SIGKILLs this process and its
    /// parent. Never returns then.
    fn fire(&self, shard: ShardId, shards_dir: &Path) {
        let Ok(mut marker) = std::fs::File::create_new(&self.marker) else {
            return;
        };
        let staged = staged_bytes(shards_dir, shard);
        let _ = writeln!(
            marker,
            "shard {shard} killed after {} variants with {staged} bytes of its output on disk",
            self.after_variants
        );
        let _ = marker.sync_all();
        eprintln!(
            "shard {shard}: {KILL_ENV}: killing this attempt after {} variants ({staged} bytes written)",
            self.after_variants
        );
        let mut pids = vec![std::process::id().to_string()];
        // Never init (an orphaned worker's parent): only the task process that started us.
        let parent = std::os::unix::process::parent_id();
        if parent > 1 {
            pids.insert(0, parent.to_string());
        }
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .status();
        // `kill` signals its own caller too; wait for the signal rather than go on writing.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Bytes in this process's unfinished shard folders (`.tmp-shard-…-<pid>-…`).
fn staged_bytes(shards_dir: &Path, shard: ShardId) -> u64 {
    fn size(path: &Path) -> u64 {
        match std::fs::read_dir(path) {
            Ok(entries) => entries.flatten().map(|e| size(&e.path())).sum(),
            Err(_) => std::fs::metadata(path).map_or(0, |m| m.len()),
        }
    }
    let prefix = format!(".tmp-{}-{}-", shard.dir_name(), std::process::id());
    std::fs::read_dir(shards_dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| size(&e.path()))
            .sum()
    })
}

/// What a shard reports as it writes: a progress line on stderr at most every two seconds (and for
/// the first variant), and the test-only kill switch ([`KILL_ENV`]).
#[derive(Debug)]
pub struct ShardProgress {
    shard: ShardId,
    shards_dir: PathBuf,
    kill: Option<KillSwitch>,
    started: Instant,
    state: Mutex<(u64, Option<Instant>)>,
}

impl ShardProgress {
    pub fn new(shard: ShardId, shards_dir: PathBuf) -> Self {
        Self {
            kill: KillSwitch::from_env(shard),
            shard,
            shards_dir,
            started: Instant::now(),
            state: Mutex::new((0, None)),
        }
    }

    /// One more variant written, of the input item at `sequence`.
    pub fn variant_written(&self, sequence: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (variants, last) = &mut *state;
        *variants += 1;
        if last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
            *last = Some(Instant::now());
            eprintln!(
                "progress: shard {}: {variants} variants written, at input item {sequence} ({:.1} s)",
                self.shard,
                self.started.elapsed().as_secs_f64()
            );
        }
        if let Some(kill) = &self.kill
            && *variants == kill.after_variants
        {
            kill.fire(self.shard, &self.shards_dir);
        }
    }
}
