//! Rerun recordings of whole pipeline runs: per augmented frame the original and augmented image,
//! real and generated boxes, the edit mask, the placement geometry and weather maps; at evaluation
//! predictions against ground truth; training loss and AP as scalars.
//!
//! A run can be long (thousands of frames) and a viewer keeps everything it receives, so the
//! recording bounds what it sends: images go encoded (JPEG for frames and weather maps, PNG for
//! masks), and per-stream [`RateLimit`]s keep every k-th frame up to a maximum count and, for live
//! viewers, no more than one frame per interval. Boxes, lines and scalars are small and always go.
//!
//! The types are those of `roadsynth-types` (and `image` pixels): callers convert their stage
//! outputs, so this crate stays independent of the engine and stage crates.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use image::GrayImage;
use rerun::external::re_uri::{ProxyUri, RedapUri};
use rerun::{
    AnnotationContext, Boxes2D, EncodedImage, EntityPath, EntityPathPart, LineStrips2D,
    RecordingStream, RecordingStreamBuilder, Rgba32, Scalars,
};
use roadsynth_types::{Annotation, BBox};

use crate::encode::{self, ImageRef, ViewerImage};
use crate::{BAND_COLOUR, HORIZON_COLOUR, InspectError, PLANNED_COLOUR, REAL_COLOUR};

/// Colour of detector predictions at evaluation.
pub const PREDICTED_COLOUR: [u8; 3] = [235, 70, 235];
/// Colour of ignore regions and crowd boxes (neither hit nor miss at evaluation).
pub const IGNORED_COLOUR: [u8; 3] = [150, 150, 150];
/// Opacity of the edit-mask overlay: enough to see what was edited, little enough to see through.
pub const MASK_ALPHA: u8 = 110;

/// Entity paths of a run recording, so that callers and readers need not spell them.
pub mod paths {
    pub const ORIGINAL: &str = "augment/original";
    pub const AUGMENTED: &str = "augment/augmented";
    pub const REAL_BOXES: &str = "augment/augmented/real";
    pub const GENERATED_BOXES: &str = "augment/augmented/generated";
    pub const EDIT_MASK: &str = "augment/augmented/edit_mask";
    pub const HORIZON: &str = "augment/augmented/horizon";
    pub const DEPTH_BANDS: &str = "augment/augmented/depth_bands";
    /// Parent of `augment/weather/<name>` (colour-mapped map) and `.../<name>/range`
    /// (the `[low, high]` the colours span).
    pub const WEATHER: &str = "augment/weather";
    pub const EVAL_IMAGE: &str = "eval/image";
    pub const GROUND_TRUTH: &str = "eval/image/ground_truth";
    pub const PREDICTIONS: &str = "eval/image/predictions";
    /// Parent of every [`super::RunRecording::log_scalar`] path.
    pub const METRICS: &str = "metrics";
}

/// Timelines of a run recording. Each kind of data has its own, because augmented frames,
/// evaluated frames and training steps count different things.
pub mod timelines {
    pub const FRAME: &str = "frame";
    pub const EVAL_FRAME: &str = "eval_frame";
    pub const STEP: &str = "step";
}

/// Which frames of a stream reach the viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Log frames whose sequence number is a multiple of `every` (1: all). By sequence number
    /// rather than call order, so parallel workers log the same frames on every run.
    pub every: u64,
    /// Stop logging frames after this many (`None`: no cap). This is what bounds the viewer's
    /// memory on a long run.
    pub max_frames: Option<u64>,
    /// At most one frame per interval of wall-clock time (`None`: no limit), for a live viewer
    /// watching a fast run.
    pub min_interval: Option<Duration>,
}

impl RateLimit {
    /// Every frame, no cap: for short runs and tests.
    pub const ALL: Self = Self {
        every: 1,
        max_frames: None,
        min_interval: None,
    };
}

/// What a run recording logs and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingConfig {
    pub augment: RateLimit,
    pub eval: RateLimit,
    /// JPEG quality (1 to 100) of re-encoded frames and weather maps.
    pub jpeg_quality: u8,
    /// Classes registered up front, so their annotation-context ids do not depend on which
    /// frame shows them first. Others are added as they appear.
    pub classes: Vec<String>,
}

impl Default for RecordingConfig {
    /// 300 augmented and 100 evaluated frames at JPEG 85: at KITTI size about 0.3 MB an augmented
    /// frame with its mask and one weather map, so about 100 MB in the viewer for any run length.
    fn default() -> Self {
        Self {
            augment: RateLimit {
                every: 1,
                max_frames: Some(300),
                min_interval: None,
            },
            eval: RateLimit {
                every: 1,
                max_frames: Some(100),
                min_interval: None,
            },
            jpeg_quality: 85,
            classes: Vec::new(),
        }
    }
}

/// A scalar map over the frame (fog transmission, particle opacity, ...), row-major.
#[derive(Debug, Clone, Copy)]
pub struct WeatherMap<'a> {
    /// One entity-path part: `augment/weather/<name>`.
    pub name: &'a str,
    pub width: u32,
    pub height: u32,
    pub data: &'a [f32],
    /// Values at the two ends of the colour map; `None`: this map's finite min and max. Give it
    /// when frames should be comparable (transmission is always `(0.0, 1.0)`).
    pub range: Option<(f32, f32)>,
}

/// One augmented frame with what made it.
#[derive(Debug, Clone, Copy)]
pub struct AugmentedFrame<'a> {
    pub original: ImageRef<'a>,
    pub augmented: ImageRef<'a>,
    /// Size of both images, in pixels; boxes and lines are in these coordinates.
    pub width: u32,
    pub height: u32,
    pub real: &'a [Annotation],
    pub generated: &'a [Annotation],
    /// Non-zero where the augmentation changed pixels; the frame's size.
    pub edit_mask: Option<&'a GrayImage>,
    pub horizon_row: Option<f64>,
    /// `(row, depth in metres)` of ground-plane depth bands.
    pub depth_bands: &'a [(f64, f64)],
    pub weather_maps: &'a [WeatherMap<'a>],
}

/// One detector prediction at evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction<'a> {
    pub class: &'a str,
    pub score: f64,
    pub bbox: BBox,
}

/// What a box is, for its annotation-context class and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BoxKind {
    Real,
    Generated,
    Predicted,
    /// Ignore regions (KITTI `DontCare`) and crowds.
    Ignored,
}

impl BoxKind {
    const ALL: [Self; 4] = [Self::Real, Self::Generated, Self::Predicted, Self::Ignored];

    pub fn colour(self) -> [u8; 3] {
        match self {
            Self::Real => REAL_COLOUR,
            Self::Generated => PLANNED_COLOUR,
            Self::Predicted => PREDICTED_COLOUR,
            Self::Ignored => IGNORED_COLOUR,
        }
    }

    /// The annotation-context label: the class name, marked unless real, so hovering a box in
    /// the viewer says both what and whose it is.
    pub fn label(self, class: &str) -> String {
        match self {
            Self::Real => class.to_owned(),
            Self::Generated => format!("{class} (generated)"),
            Self::Predicted => format!("{class} (predicted)"),
            Self::Ignored => format!("{class} (ignored)"),
        }
    }
}

/// Counts of what went to the recording, for a run's summary and for checking the bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordingStats {
    pub augmented_frames: u64,
    pub eval_frames: u64,
    /// Bytes of encoded images sent (frames, masks, maps): what the viewer's memory is mostly.
    pub image_bytes: u64,
}

#[derive(Debug)]
struct Gate {
    limit: RateLimit,
    logged: u64,
    last: Option<Instant>,
}

impl Gate {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            logged: 0,
            last: None,
        }
    }

    fn admit(&mut self, seq: u64) -> bool {
        if !seq.is_multiple_of(self.limit.every)
            || self.limit.max_frames.is_some_and(|m| self.logged >= m)
        {
            return false;
        }
        let now = Instant::now();
        if let (Some(gap), Some(last)) = (self.limit.min_interval, self.last)
            && now.duration_since(last) < gap
        {
            return false;
        }
        self.logged += 1;
        self.last = Some(now);
        true
    }

    /// Gives back an admission whose frame failed before it was logged.
    fn release(&mut self) {
        self.logged = self.logged.saturating_sub(1);
    }
}

/// An augmented frame's pictures, encoded for the viewer.
#[derive(Debug)]
struct EncodedFrame<'a> {
    images: Vec<(&'static str, ViewerImage)>,
    mask: Option<ViewerImage>,
    /// `(name, colour-mapped map, range of the colours)`.
    maps: Vec<(&'a str, ViewerImage, (f32, f32))>,
}

#[derive(Debug, Default)]
struct ClassTable {
    ids: BTreeMap<(String, BoxKind), u16>,
    /// `(id, label, kind)` in id order: the annotation context.
    entries: Vec<(u16, String, BoxKind)>,
}

impl ClassTable {
    /// The id of `(class, kind)`, and whether it is new (the context must be logged again).
    fn id(&mut self, class: &str, kind: BoxKind) -> Result<(u16, bool), InspectError> {
        if let Some(&id) = self.ids.get(&(class.to_owned(), kind)) {
            return Ok((id, false));
        }
        // Id 0 is the viewer's "no class".
        let id = u16::try_from(self.entries.len() + 1)
            .map_err(|_| InspectError::Config(format!("more than {} box classes", u16::MAX - 1)))?;
        self.ids.insert((class.to_owned(), kind), id);
        self.entries.push((id, kind.label(class), kind));
        Ok((id, true))
    }

    fn context(&self) -> AnnotationContext {
        AnnotationContext::new(
            self.entries
                .iter()
                .map(|(id, label, kind)| (*id, label.as_str(), rgba(kind.colour())))
                .collect::<Vec<_>>(),
        )
    }
}

#[derive(Debug)]
struct State {
    augment: Gate,
    eval: Gate,
    classes: ClassTable,
    /// Weather maps logged on the last augmented frame, to clear those a later frame lacks.
    weather_shown: BTreeSet<String>,
    stats: RecordingStats,
}

/// A Rerun recording of a pipeline run, to an `.rrd` file, a live viewer, or both.
///
/// Methods take `&self` and may be called from several threads; each call stamps its own
/// timeline, so concurrent frames do not borrow each other's time.
#[derive(Debug)]
pub struct RunRecording {
    stream: RecordingStream,
    /// Where it goes, for error messages.
    target: String,
    jpeg_quality: u8,
    state: Mutex<State>,
}

fn rgba(c: [u8; 3]) -> Rgba32 {
    Rgba32::from_rgb(c[0], c[1], c[2])
}

/// How long to wait for a viewer's TCP port before giving up on it.
const VIEWER_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `rerun+http://host:port/proxy` from that or from a bare `host:port`.
fn viewer_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("rerun+http://{addr}/proxy")
    }
}

/// Checks that a viewer listens at `url` and returns its endpoint. Rerun's gRPC sink retries an
/// absent viewer for ever and blocks logging once its queue fills, so a mistyped `--connect`
/// would hang a run; this turns it into an error at the start.
fn probe_viewer(url: &str) -> Result<ProxyUri, InspectError> {
    let err = |message: String| InspectError::Viewer {
        url: url.to_owned(),
        message,
    };
    let parsed: RedapUri = url.parse().map_err(|e| err(format!("{e}")))?;
    let RedapUri::Proxy(proxy) = parsed else {
        return Err(err(
            "not a proxy endpoint (expected rerun+http://host:port/proxy)".to_owned(),
        ));
    };
    let host_port = format!("{}:{}", proxy.origin.format_host(), proxy.origin.port);
    let addrs: Vec<_> = host_port
        .to_socket_addrs()
        .map_err(|e| err(format!("resolving {host_port}: {e}")))?
        .collect();
    let mut last = format!("{host_port} resolves to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, VIEWER_PROBE_TIMEOUT) {
            Ok(_) => return Ok(proxy),
            Err(e) => last = format!("no viewer listening at {a}: {e}"),
        }
    }
    Err(err(last))
}

/// Where a recording goes.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    File(&'a Path),
    Viewer(&'a str),
    Both(&'a Path, &'a str),
}

impl RunRecording {
    /// Records to an `.rrd` file at `path` (its folder must exist).
    pub fn create(
        application: &str,
        path: &Path,
        config: &RecordingConfig,
    ) -> Result<Self, InspectError> {
        Self::open(application, Target::File(path), config)
    }

    /// Streams to a live viewer at `addr` (`rerun+http://host:port/proxy` or `host:port`; a
    /// viewer started with `rerun` listens at `127.0.0.1:9876`). Fails when nothing listens there.
    pub fn connect(
        application: &str,
        addr: &str,
        config: &RecordingConfig,
    ) -> Result<Self, InspectError> {
        Self::open(application, Target::Viewer(addr), config)
    }

    /// Records to `path` and streams to the viewer at `addr`: one recording, both places.
    pub fn create_and_connect(
        application: &str,
        path: &Path,
        addr: &str,
        config: &RecordingConfig,
    ) -> Result<Self, InspectError> {
        Self::open(application, Target::Both(path, addr), config)
    }

    fn open(
        application: &str,
        target: Target<'_>,
        config: &RecordingConfig,
    ) -> Result<Self, InspectError> {
        for (name, limit) in [("augment", config.augment), ("eval", config.eval)] {
            if limit.every == 0 {
                return Err(InspectError::Config(format!(
                    "{name} rate limit: `every` must be at least 1"
                )));
            }
        }
        if !(1..=100).contains(&config.jpeg_quality) {
            return Err(InspectError::Config(format!(
                "JPEG quality {} is outside 1..=100",
                config.jpeg_quality
            )));
        }
        let app = rerun::ApplicationId::try_new(application)
            .map_err(|e| InspectError::Config(format!("application id `{application}`: {e}")))?;
        let builder = RecordingStreamBuilder::new(app);
        let (stream, target) = match target {
            Target::File(path) => {
                let target = path.display().to_string();
                let stream = builder.save(path).map_err(|e| recording_err(&target, &e))?;
                (stream, target)
            }
            Target::Viewer(addr) => {
                let url = viewer_url(addr);
                probe_viewer(&url)?;
                let stream = builder
                    .connect_grpc_opts(url.as_str())
                    .map_err(|e| recording_err(&url, &e))?;
                (stream, url)
            }
            Target::Both(path, addr) => {
                let url = viewer_url(addr);
                let proxy = probe_viewer(&url)?;
                let target = format!("{} and {url}", path.display());
                let file =
                    rerun::sink::FileSink::new(path).map_err(|e| recording_err(&target, &e))?;
                let stream = builder
                    .set_sinks((file, rerun::sink::GrpcSink::new(proxy)))
                    .map_err(|e| recording_err(&target, &e))?;
                (stream, target)
            }
        };
        let mut classes = ClassTable::default();
        for class in &config.classes {
            for kind in BoxKind::ALL {
                classes.id(class, kind)?;
            }
        }
        let recording = Self {
            stream,
            target,
            jpeg_quality: config.jpeg_quality,
            state: Mutex::new(State {
                augment: Gate::new(config.augment),
                eval: Gate::new(config.eval),
                classes,
                weather_shown: BTreeSet::new(),
                stats: RecordingStats::default(),
            }),
        };
        {
            let state = recording.lock();
            recording.log_context(&state)?;
        }
        Ok(recording)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters that are still valid numbers.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn err(&self, e: &dyn std::fmt::Display) -> InspectError {
        recording_err(&self.target, e)
    }

    fn log(
        &self,
        path: impl Into<EntityPath>,
        data: &impl rerun::AsComponents,
    ) -> Result<(), InspectError> {
        self.stream.log(path, data).map_err(|e| self.err(&e))
    }

    fn log_context(&self, state: &State) -> Result<(), InspectError> {
        self.stream
            .log_static("/", &state.classes.context())
            .map_err(|e| self.err(&e))
    }

    fn log_image(
        &self,
        state: &mut State,
        path: impl Into<EntityPath>,
        image: ViewerImage,
        overlay: bool,
    ) -> Result<(), InspectError> {
        state.stats.image_bytes += image.bytes.len() as u64;
        let mut archetype =
            EncodedImage::from_file_contents(image.bytes).with_media_type(image.media_type);
        if overlay {
            // Above the frame (images draw at -10 by default), below boxes and lines; opaque,
            // because the PNG's own alpha does the blending.
            archetype = archetype.with_draw_order(-5.0).with_opacity(1.0);
        }
        self.log(path, &archetype)
    }

    /// Boxes with annotation-context class ids (registering new classes) and optional labels.
    fn boxes(
        &self,
        state: &mut State,
        items: impl Iterator<Item = (String, BoxKind, BBox)>,
        labels: Option<Vec<String>>,
    ) -> Result<Boxes2D, InspectError> {
        let (mut mins, mut sizes, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        let mut context_changed = false;
        for (class, kind, b) in items {
            let (id, new) = state.classes.id(&class, kind)?;
            context_changed |= new;
            mins.push((b.x0 as f32, b.y0 as f32));
            sizes.push((b.width() as f32, b.height() as f32));
            ids.push(id);
        }
        if context_changed {
            self.log_context(state)?;
        }
        let boxes = Boxes2D::from_mins_and_sizes(mins, sizes).with_class_ids(ids);
        Ok(match labels {
            Some(l) => boxes.with_labels(l),
            None => boxes,
        })
    }

    fn encode_augmented<'a>(
        &self,
        frame: &AugmentedFrame<'a>,
    ) -> Result<EncodedFrame<'a>, InspectError> {
        let (w, h) = (frame.width, frame.height);
        let mut images = Vec::new();
        for (path, image, what) in [
            (paths::ORIGINAL, frame.original, "original image"),
            (paths::AUGMENTED, frame.augmented, "augmented image"),
        ] {
            let (encoded, iw, ih) = encode::viewer_jpeg(image, self.jpeg_quality, what)?;
            if (iw, ih) != (w, h) {
                return Err(InspectError::Size {
                    what: what.to_owned(),
                    expected: (w, h),
                    got: (iw, ih),
                });
            }
            images.push((path, encoded));
        }
        let mask = match frame.edit_mask {
            Some(m) if m.dimensions() != (w, h) => {
                return Err(InspectError::Size {
                    what: "edit mask".to_owned(),
                    expected: (w, h),
                    got: m.dimensions(),
                });
            }
            Some(m) => Some(encode::mask_overlay(m, PLANNED_COLOUR, MASK_ALPHA)?),
            None => None,
        };
        let mut maps = Vec::new();
        for map in frame.weather_maps {
            if map.name.is_empty() {
                return Err(InspectError::Config(
                    "weather map without a name".to_owned(),
                ));
            }
            let expected = map.width as usize * map.height as usize;
            if map.data.len() != expected {
                return Err(InspectError::Config(format!(
                    "weather map `{}`: {} values for {}x{}",
                    map.name,
                    map.data.len(),
                    map.width,
                    map.height
                )));
            }
            let range = encode::map_range(map.data, map.range);
            let what = format!("weather map `{}`", map.name);
            let image = encode::colour_mapped(
                map.width,
                map.height,
                map.data,
                range,
                self.jpeg_quality,
                &what,
            )?;
            maps.push((map.name, image, range));
        }
        Ok(EncodedFrame { images, mask, maps })
    }

    /// Logs one augmented frame at `seq` on the `frame` timeline, if the augment rate limit admits
    /// it; returns whether it did. Entities a frame lacks (mask, horizon, a weather map) are
    /// cleared, so the viewer never shows one frame's mask over another.
    pub fn log_augmented(
        &self,
        seq: u64,
        frame: &AugmentedFrame<'_>,
    ) -> Result<bool, InspectError> {
        if !self.lock().augment.admit(seq) {
            return Ok(false);
        }
        // Encoding runs outside the lock so that parallel workers encode in parallel; everything
        // is encoded and checked before anything is logged, so a bad input leaves no half-logged
        // frame and gives its admission back.
        let encoded = match self.encode_augmented(frame) {
            Ok(e) => e,
            Err(e) => {
                self.lock().augment.release();
                return Err(e);
            }
        };
        let EncodedFrame { images, mask, maps } = encoded;
        let mut state = self.lock();
        self.stream.reset_time();
        self.stream
            .set_time_sequence(timelines::FRAME, i64::try_from(seq).unwrap_or(i64::MAX));
        for (path, image) in images {
            self.log_image(&mut state, path, image, false)?;
        }
        match mask {
            Some(m) => self.log_image(&mut state, paths::EDIT_MASK, m, true)?,
            None => self.log(paths::EDIT_MASK, &EncodedImage::clear_fields())?,
        }
        let real = self.boxes(
            &mut state,
            frame
                .real
                .iter()
                .map(|a| (a.class.clone(), real_kind(a), a.bbox)),
            None,
        )?;
        self.log(paths::REAL_BOXES, &real)?;
        let generated = self.boxes(
            &mut state,
            frame
                .generated
                .iter()
                .map(|a| (a.class.clone(), BoxKind::Generated, a.bbox)),
            None,
        )?;
        self.log(paths::GENERATED_BOXES, &generated)?;

        let width = frame.width as f32;
        match frame.horizon_row {
            Some(v0) => {
                let v0 = v0 as f32;
                self.log(
                    paths::HORIZON,
                    &LineStrips2D::new([[(0.0, v0), (width, v0)]])
                        .with_colors([rgba(HORIZON_COLOUR)]),
                )?;
            }
            None => self.log(paths::HORIZON, &LineStrips2D::clear_fields())?,
        }
        let bands = LineStrips2D::new(
            frame
                .depth_bands
                .iter()
                .map(|(row, _)| [(0.0, *row as f32), (width, *row as f32)]),
        )
        .with_labels(frame.depth_bands.iter().map(|(_, z)| format!("{z:.0} m")))
        .with_colors(frame.depth_bands.iter().map(|_| rgba(BAND_COLOUR)));
        self.log(paths::DEPTH_BANDS, &bands)?;

        let mut shown = BTreeSet::new();
        for (name, image, (lo, hi)) in maps {
            let base = weather_path(name);
            self.log_image(&mut state, base.clone(), image, false)?;
            self.log(
                base.join(&EntityPath::from_single_string("range")),
                &Scalars::new([f64::from(lo), f64::from(hi)]),
            )?;
            shown.insert(name.to_owned());
        }
        let stale: Vec<String> = state.weather_shown.difference(&shown).cloned().collect();
        for name in stale {
            let base = weather_path(&name);
            self.log(base.clone(), &EncodedImage::clear_fields())?;
            self.log(
                base.join(&EntityPath::from_single_string("range")),
                &Scalars::clear_fields(),
            )?;
        }
        state.weather_shown = shown;
        state.stats.augmented_frames += 1;
        Ok(true)
    }

    /// Logs one evaluated frame at `seq` on the `eval_frame` timeline, if the eval rate limit
    /// admits it: the image, ground truth (ignore regions and crowds grey) and predictions
    /// labelled with their scores. Returns whether it did.
    pub fn log_detections(
        &self,
        seq: u64,
        image: ImageRef<'_>,
        ground_truth: &[Annotation],
        predictions: &[Prediction<'_>],
    ) -> Result<bool, InspectError> {
        if !self.lock().eval.admit(seq) {
            return Ok(false);
        }
        let encoded = match encode::viewer_jpeg(image, self.jpeg_quality, "evaluated image") {
            Ok((e, _, _)) => e,
            Err(e) => {
                self.lock().eval.release();
                return Err(e);
            }
        };
        let mut state = self.lock();
        self.stream.reset_time();
        self.stream.set_time_sequence(
            timelines::EVAL_FRAME,
            i64::try_from(seq).unwrap_or(i64::MAX),
        );
        self.log_image(&mut state, paths::EVAL_IMAGE, encoded, false)?;
        let gt = self.boxes(
            &mut state,
            ground_truth
                .iter()
                .map(|a| (a.class.clone(), real_kind(a), a.bbox)),
            None,
        )?;
        self.log(paths::GROUND_TRUTH, &gt)?;
        let predicted = self.boxes(
            &mut state,
            predictions
                .iter()
                .map(|p| (p.class.to_owned(), BoxKind::Predicted, p.bbox)),
            Some(
                predictions
                    .iter()
                    .map(|p| format!("{} {:.2}", p.class, p.score))
                    .collect(),
            ),
        )?;
        self.log(paths::PREDICTIONS, &predicted)?;
        state.stats.eval_frames += 1;
        Ok(true)
    }

    /// Logs `value` at `metrics/<path>` (`train/loss`, `eval/AP50/car`, ...) at `step` on the
    /// `step` timeline. Not rate-limited: a scalar is a few bytes.
    pub fn log_scalar(&self, path: &str, step: u64, value: f64) -> Result<(), InspectError> {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Err(InspectError::Config("empty scalar path".to_owned()));
        }
        self.stream.reset_time();
        self.stream
            .set_time_sequence(timelines::STEP, i64::try_from(step).unwrap_or(i64::MAX));
        self.log(
            EntityPath::from_single_string(paths::METRICS).join(&EntityPath::from(path)),
            &Scalars::single(value),
        )
    }

    pub fn stats(&self) -> RecordingStats {
        self.lock().stats
    }

    /// Flushes everything to the file and the viewer, waiting at most `timeout` (a live viewer
    /// that went away would otherwise hold the run), then closes the recording (the file gets
    /// its footer). A flush error still closes the file with what it holds.
    pub fn finish(self, timeout: Duration) -> Result<RecordingStats, InspectError> {
        let stats = self.stats();
        let flushed = self
            .stream
            .flush_with_timeout(timeout)
            .map_err(|e| self.err(&e));
        // Dropping the last handle joins the sink threads, which write the file's footer.
        drop(self);
        flushed.map(|()| stats)
    }
}

fn recording_err(target: &str, e: &dyn std::fmt::Display) -> InspectError {
    InspectError::Recording {
        path: target.to_owned(),
        message: e.to_string(),
    }
}

/// Ignore regions and crowds are neither hits nor misses; they get their own colour.
fn real_kind(a: &Annotation) -> BoxKind {
    if a.ignore || a.crowd {
        BoxKind::Ignored
    } else {
        BoxKind::Real
    }
}

/// `augment/weather/<name>`, the name one part however it is spelt.
fn weather_path(name: &str) -> EntityPath {
    EntityPath::from(paths::WEATHER).join(&EntityPath::from(vec![EntityPathPart::new(name)]))
}
