use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use roadsynth_dataset::{DatasetWriter, WriteOptions};
use roadsynth_formats::{LoadOptions, Scan, bdd100k, coco, kitti, load_all, yolo};
use roadsynth_types::{FrameRecord, Quarantined};

/// Exit status of a command that completed but quarantined some input.
pub const EXIT_QUARANTINED: u8 = 2;

/// The helper binary that decodes video. OpenCV is linked into it alone, so every other command
/// starts without loading OpenCV's ~240 shared libraries (about 130 ms here).
pub const VIDEO_HELPER: &str = crate::WORKER;

/// A video decoder: hands each kept frame (or quarantined item) of `clip` to the sink, in order.
pub type VideoDecoder<'a> = &'a dyn Fn(
    &Path,
    &str,
    u32,
    &mut dyn FnMut(Result<FrameRecord, Quarantined>) -> Result<()>,
) -> Result<()>;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Kitti,
    Coco,
    Yolo,
    Bdd100k,
    Video,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[arg(long, value_enum)]
    pub format: InputFormat,
    /// KITTI: the object folder (`image_2/`, `label_2/`, `calib/`). COCO, BDD100K: the JSON file.
    /// YOLO: data.yaml. Video: the clip.
    #[arg(long)]
    pub input: PathBuf,
    /// Dataset root to write a new version into (created if missing).
    #[arg(long)]
    pub output: PathBuf,
    /// Split the frames go to (YOLO takes its splits from data.yaml).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Folder image paths resolve against (COCO, BDD100K); default: the JSON's folder.
    #[arg(long)]
    pub images_root: Option<PathBuf>,
    /// Video: keep every Nth frame (1: all).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub every: u32,
    /// Fully decode every image to check it (slower); by default headers and end markers are checked.
    #[arg(long)]
    pub verify_decode: bool,
    /// Write only this input into the new version instead of carrying the dataset's other splits over.
    #[arg(long)]
    pub replace: bool,
}

/// Runs an ingest. Without a `video` decoder (the main binary), video input is handed to the
/// [`VIDEO_HELPER`] binary beside this one, with the same arguments.
pub fn run(args: &IngestArgs, video: Option<VideoDecoder<'_>>) -> Result<ExitCode> {
    if let (InputFormat::Video, None) = (args.format, video) {
        return run_video_helper(args);
    }
    // YOLO names its splits in data.yaml; the writer checks those as it meets them.
    if args.format != InputFormat::Yolo {
        roadsynth_dataset::check_split_name(&args.split)
            .with_context(|| format!("--split {:?}", args.split))?;
    }
    let started = Instant::now();
    let mut writer = DatasetWriter::create(
        &args.output,
        WriteOptions {
            carry_other_splits: !args.replace,
            ..WriteOptions::default()
        },
    )
    .with_context(|| format!("opening dataset {}", args.output.display()))?;

    let mut frames = 0u64;
    let mut annotations = 0u64;
    let mut write = |writer: &mut DatasetWriter, r: FrameRecord| -> Result<()> {
        frames += 1;
        annotations += r.annotations.len() as u64;
        writer.write(&r).context("writing frame")
    };

    if let (InputFormat::Video, Some(decode)) = (args.format, video) {
        let bar = spinner("decoding video");
        let summary = decode(&args.input, &args.split, args.every.max(1), &mut |item| {
            bar.inc(1);
            match item {
                Ok(record) => write(&mut writer, record),
                Err(q) => {
                    writer.quarantine(q);
                    Ok(())
                }
            }
        });
        bar.finish_and_clear();
        summary?;
    } else {
        let scan = scan(args)?;
        let Scan {
            frames: pending,
            quarantined,
        } = scan;
        for q in quarantined {
            writer.quarantine(q);
        }
        let bar = ProgressBar::new(pending.len() as u64).with_style(
            ProgressStyle::with_template(
                "{spinner} ingest [{bar:30}] {pos}/{len} frames {per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        load_all(
            pending,
            &LoadOptions {
                verify_decode: args.verify_decode,
            },
            64,
            |item| {
                bar.inc(1);
                match item {
                    Ok(record) => write(&mut writer, record),
                    Err(qs) => {
                        for q in qs {
                            writer.quarantine(q);
                        }
                        Ok(())
                    }
                }
            },
        )?;
        bar.finish_and_clear();
    }

    let quarantined: Vec<Quarantined> = writer.quarantined().to_vec();
    for q in &quarantined {
        tracing::warn!("quarantined {q}");
    }
    if frames == 0 {
        // A new version would replace the split with nothing: a broken input file must not cost
        // the data already there. Dropping the writer removes its staging folder.
        drop(writer);
        anyhow::bail!(
            "nothing ingested from {}: {}; {} is unchanged",
            args.input.display(),
            match quarantined.as_slice() {
                [] => "it has no frames".to_string(),
                [only] => format!("its only item was quarantined: {only}"),
                [first, rest @ ..] => format!(
                    "all {} items were quarantined, the first: {first}",
                    rest.len() + 1
                ),
            },
            args.output.display()
        );
    }
    let provenance = serde_json::json!({
        "operation": "ingest",
        "format": format!("{:?}", args.format).to_lowercase(),
        "input": args.input.display().to_string(),
        "split": args.split,
        "every": args.every,
    });
    let manifest = writer
        .commit(provenance)
        .context("committing dataset version")?;
    println!(
        "ingested {frames} frames, {annotations} annotations into {} version {} in {:.2}s; {} quarantined",
        args.output.display(),
        manifest.version,
        started.elapsed().as_secs_f64(),
        quarantined.len()
    );
    Ok(if quarantined.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_QUARANTINED)
    })
}

fn run_video_helper(args: &IngestArgs) -> Result<ExitCode> {
    let me = std::env::current_exe().context("locating the roadsynth binary")?;
    let helper = me.with_file_name(VIDEO_HELPER);
    let mut argv: Vec<std::ffi::OsString> =
        vec!["ingest".into(), "--format".into(), "video".into()];
    argv.extend(["--input".into(), args.input.clone().into_os_string()]);
    argv.extend(["--output".into(), args.output.clone().into_os_string()]);
    argv.extend(["--split".into(), args.split.clone().into()]);
    argv.extend(["--every".into(), args.every.to_string().into()]);
    if args.replace {
        argv.push("--replace".into());
    }
    let status = std::process::Command::new(&helper)
        .args(&argv)
        .status()
        .with_context(|| format!("running the video helper {}", helper.display()))?;
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .map_or(ExitCode::FAILURE, ExitCode::from))
}

fn scan(args: &IngestArgs) -> Result<Scan> {
    let input = &args.input;
    let ctx = || format!("reading {}", input.display());
    Ok(match args.format {
        InputFormat::Kitti => kitti::scan(input, &args.split).with_context(ctx)?,
        InputFormat::Coco => {
            coco::scan(input, args.images_root.as_deref(), &args.split).with_context(ctx)?
        }
        InputFormat::Yolo => yolo::scan(input, &args.split).with_context(ctx)?,
        InputFormat::Bdd100k => {
            bdd100k::scan(input, args.images_root.as_deref(), &args.split).with_context(ctx)?
        }
        InputFormat::Video => unreachable!("video is streamed, not scanned"),
    })
}

fn spinner(msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(msg);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {pos} frames {per_sec}")
            .expect("static template"),
    );
    bar
}
