//! Building, writing and opening the asset bank.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, GrayImage, ImageEncoder, RgbImage, RgbaImage};
use rayon::prelude::*;
use roadsynth_dataset::{Dataset, DatasetError, Projection, table};
use roadsynth_types::{Annotation, FrameId, FrameRecord, ImageFormat, TOOL_VERSION};
use serde::{Deserialize, Serialize};

use crate::mask::{BinaryMask, PixelRect, rasterize};
use crate::{AssetError, HeavierSide, Lighting, Viewpoint, measure_lighting, measure_viewpoint};

/// The asset table in a bank folder.
pub const ASSETS_FILE: &str = "assets.parquet";
/// The bank description in a bank folder, written after the table.
pub const BANK_FILE: &str = "bank.json";
/// Version of the bank layout (columns and `bank.json`). Bump it when a column changes meaning;
/// [`AssetBank::open`] refuses banks written with a newer one.
pub const FORMAT_VERSION: u32 = 1;

/// Frames cut in parallel at a time: enough to keep the cores busy, few enough that their image
/// bytes and decoded pixels stay small in memory.
const FRAMES_PER_CHUNK: usize = 32;

/// What [`AssetBank::build`] cuts out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// Classes to cut out, spelled as in the dataset. Empty: every class.
    pub classes: Vec<String>,
    /// Splits to read. Empty: every split.
    pub splits: Vec<String>,
    /// Masks with fewer pixels are skipped ([`SkipReason::TooSmall`]): a cut-out of a few pixels
    /// is mostly boundary and carries no usable appearance. 0: only empty masks are skipped.
    pub min_area_px: u64,
    /// Also cut out objects roadsynth generated. Off by default, so a bank built from an augmented
    /// dataset does not paste composites of composites.
    pub include_generated: bool,
}

/// Why an annotation of a selected class gave no asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The annotation has no instance mask (a plain box).
    NoMask,
    /// A COCO crowd region: several objects under one mask, not one object to cut out.
    Crowd,
    /// An ignore region (KITTI `DontCare`).
    Ignored,
    /// An object roadsynth generated, while [`BuildOptions::include_generated`] is off.
    Generated,
    /// The mask does not decode, or its RLE is for another image size.
    BadMask,
    /// The mask covers no pixel.
    EmptyMask,
    /// The mask has fewer pixels than [`BuildOptions::min_area_px`].
    TooSmall,
    /// The frame's image is missing or does not decode.
    BadImage,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoMask => "no_mask",
            SkipReason::Crowd => "crowd",
            SkipReason::Ignored => "ignored",
            SkipReason::Generated => "generated",
            SkipReason::BadMask => "bad_mask",
            SkipReason::EmptyMask => "empty_mask",
            SkipReason::TooSmall => "too_small",
            SkipReason::BadImage => "bad_image",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An annotation of a selected class that gave no asset, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub frame: FrameId,
    /// The frame's image name in its source dataset, for people to find it.
    pub image: String,
    /// Index of the annotation within the frame.
    pub annotation: u32,
    pub class: String,
    pub reason: SkipReason,
    pub detail: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (frame {}) annotation {} ({}): {}",
            self.image, self.frame, self.annotation, self.class, self.reason
        )?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// What a build did: frames read, assets per class and every annotation it skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    pub frames_read: u64,
    /// Frames that gave at least one asset.
    pub frames_used: u64,
    /// Annotations of the selected classes (each became an asset or a [`Skipped`]).
    pub candidates: u64,
    pub assets_per_class: BTreeMap<String, u64>,
    pub skipped: Vec<Skipped>,
}

impl BuildReport {
    pub fn assets(&self) -> u64 {
        self.assets_per_class.values().sum()
    }

    pub fn skipped_per_reason(&self) -> BTreeMap<SkipReason, u64> {
        let mut out = BTreeMap::new();
        for s in &self.skipped {
            *out.entry(s.reason).or_insert(0) += 1;
        }
        out
    }
}

/// One cut-out object with its cues. The table columns are described in the crate docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// Stable id, see [`Asset::id_for`].
    pub id: String,
    pub class: String,
    pub source_frame: FrameId,
    pub source_split: String,
    pub source_image: String,
    /// Index of the annotation within its frame.
    pub source_annotation: u32,
    /// Top-left pixel of the cut-out in the source image.
    pub source_x: u32,
    pub source_y: u32,
    /// Size of the source image, so the engine can relate the object's size to its frame.
    pub source_width: u32,
    pub source_height: u32,
    /// Size of the cut-out: the tight box of the mask.
    pub width: u32,
    pub height: u32,
    /// Mask pixels, equal to the cut-out's pixels with alpha 255.
    pub mask_area_px: u64,
    /// The mask reaches an edge of the image, so the object is probably cut off by the frame.
    pub touches_border: bool,
    /// Fraction of the cut-out's box covered by other instances' masks (any class, crowd regions
    /// included) and not by its own: a proxy for how much of the object was hidden behind or
    /// beside others, since COCO masks do not overlap.
    pub occluded_fraction: f64,
    pub viewpoint: Viewpoint,
    /// Lighting over the mask, by [`measure_lighting`] with the alpha as weight.
    pub lighting: Lighting,
    /// The cut-out: the source RGB of the box, unchanged also outside the mask (so matting
    /// refinement can look past COCO's coarse polygon edges), alpha = mask x 255; PNG.
    #[serde(with = "serde_bytes")]
    pub rgba_png: Vec<u8>,
}

impl Asset {
    /// The id of the asset cut from annotation `annotation` of frame `frame`: 128-bit BLAKE3 (hex)
    /// of `"{frame}:{annotation}"`. Frame ids are hashes of the image bytes, so the id survives
    /// re-ingests and rebuilds as long as the image and its annotation order do.
    pub fn id_for(frame: &FrameId, annotation: u32) -> String {
        let hash = blake3::hash(format!("{frame}:{annotation}").as_bytes());
        hash.to_hex()[..32].to_string()
    }

    /// Decodes the cut-out.
    pub fn rgba(&self) -> Result<RgbaImage, AssetError> {
        let png_error = |source| AssetError::Png {
            id: self.id.clone(),
            source,
        };
        let image = image::load_from_memory_with_format(&self.rgba_png, image::ImageFormat::Png)
            .map_err(png_error)?
            .into_rgba8();
        if image.dimensions() != (self.width, self.height) {
            return Err(png_error(image::ImageError::Parameter(
                image::error::ParameterError::from_kind(
                    image::error::ParameterErrorKind::DimensionMismatch,
                ),
            )));
        }
        Ok(image)
    }
}

/// `bank.json`: how the bank was built and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankInfo {
    pub format_version: u32,
    pub tool_version: String,
    /// Version folder name of the source dataset (`v0001-1a2b3c4d`), which names its content.
    pub source_dataset_version: String,
    pub options: BuildOptions,
    pub assets: u64,
    pub assets_per_class: BTreeMap<String, u64>,
    /// Skipped annotations per [`SkipReason`] (its snake-case name).
    pub skipped_per_reason: BTreeMap<String, u64>,
}

/// Cut-outs of a dataset's instance masks with their cues.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetBank {
    info: BankInfo,
    assets: Vec<Asset>,
}

impl AssetBank {
    /// Cuts out every instance mask of `options.classes` in `options.splits`.
    ///
    /// An annotation that cannot give an asset (no mask, crowd, undecodable or empty mask, bad
    /// image) is skipped and listed in the report; only a dataset that cannot be read, or a split
    /// it does not have, stops the build.
    pub fn build(
        dataset: &Dataset,
        options: &BuildOptions,
    ) -> Result<(AssetBank, BuildReport), AssetError> {
        let dataset_error = |source| AssetError::Dataset {
            path: dataset.version_dir().to_path_buf(),
            source,
        };
        let manifest = dataset.manifest();
        if let Some(missing) = options
            .splits
            .iter()
            .find(|s| !manifest.splits.contains_key(s.as_str()))
        {
            return Err(dataset_error(DatasetError::NoSuchSplit(missing.clone())));
        }
        let splits: Vec<String> = manifest
            .split_names()
            .into_iter()
            .filter(|s| options.splits.is_empty() || options.splits.contains(s))
            .collect();
        let classes: BTreeSet<&str> = options.classes.iter().map(String::as_str).collect();
        let selected = |a: &Annotation| classes.is_empty() || classes.contains(a.class.as_str());

        let mut report = BuildReport::default();
        let mut assets = Vec::new();
        let mut chunk = Vec::with_capacity(FRAMES_PER_CHUNK);
        for split in &splits {
            for record in dataset
                .frames(split, Projection::Full)
                .map_err(dataset_error)?
            {
                let record = record.map_err(dataset_error)?;
                report.frames_read += 1;
                if record.annotations.iter().any(selected) {
                    chunk.push(record);
                }
                if chunk.len() == FRAMES_PER_CHUNK {
                    cut_chunk(&mut chunk, options, &selected, &mut assets, &mut report)?;
                }
            }
        }
        cut_chunk(&mut chunk, options, &selected, &mut assets, &mut report)?;

        for asset in &assets {
            *report
                .assets_per_class
                .entry(asset.class.clone())
                .or_insert(0) += 1;
        }
        for skipped in &report.skipped {
            tracing::debug!("skipped {skipped}");
        }
        tracing::info!(
            assets = assets.len(),
            skipped = report.skipped.len(),
            frames = report.frames_read,
            "built asset bank from {}",
            dataset.version_dir().display()
        );
        let info = BankInfo {
            format_version: FORMAT_VERSION,
            tool_version: TOOL_VERSION.to_string(),
            source_dataset_version: manifest.version.clone(),
            options: options.clone(),
            assets: assets.len() as u64,
            assets_per_class: report.assets_per_class.clone(),
            skipped_per_reason: report
                .skipped_per_reason()
                .into_iter()
                .map(|(reason, n)| (reason.as_str().to_string(), n))
                .collect(),
        };
        Ok((AssetBank { info, assets }, report))
    }

    pub fn info(&self) -> &BankInfo {
        &self.info
    }

    /// Every asset, in dataset order (split, frame, annotation).
    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }

    /// The assets of one class, in bank order.
    pub fn of_class<'a>(&'a self, class: &'a str) -> impl Iterator<Item = &'a Asset> + 'a {
        self.assets.iter().filter(move |a| a.class == class)
    }

    pub fn len(&self) -> usize {
        self.assets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Writes `dir/assets.parquet`, then `dir/bank.json`, each atomically (temporary file, then
    /// rename); `dir` is created if missing.
    pub fn write(&self, dir: &Path) -> Result<(), AssetError> {
        std::fs::create_dir_all(dir).map_err(|source| AssetError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let table_path = dir.join(ASSETS_FILE);
        let rows: Vec<AssetRow> = self.assets.iter().map(AssetRow::from_asset).collect();
        table::write_table(&table_path, &rows).map_err(|source| AssetError::Table {
            path: table_path.clone(),
            source,
        })?;
        let info_path = dir.join(BANK_FILE);
        let mut text =
            serde_json::to_vec_pretty(&self.info).map_err(|source| AssetError::BankJson {
                path: info_path.clone(),
                source,
            })?;
        text.push(b'\n');
        write_atomically(&info_path, &text)
    }

    /// Opens a bank written by [`AssetBank::write`].
    pub fn open(dir: &Path) -> Result<AssetBank, AssetError> {
        let info_path = dir.join(BANK_FILE);
        let text = std::fs::read(&info_path).map_err(|source| AssetError::Io {
            path: info_path.clone(),
            source,
        })?;
        let json_error = |source| AssetError::BankJson {
            path: info_path.clone(),
            source,
        };
        // The version first: a newer layout may not parse as this one.
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(json_error)?;
        if let Some(found) = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .filter(|v| *v > u64::from(FORMAT_VERSION))
        {
            return Err(AssetError::FormatTooNew {
                path: info_path,
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let info: BankInfo = serde_json::from_value(value).map_err(json_error)?;

        let table_path = dir.join(ASSETS_FILE);
        let corrupt = |reason: String| AssetError::Corrupt {
            path: table_path.clone(),
            reason,
        };
        let rows: Vec<AssetRow> =
            table::read_table(&table_path).map_err(|source| AssetError::Table {
                path: table_path.clone(),
                source,
            })?;
        if rows.len() as u64 != info.assets {
            return Err(corrupt(format!(
                "{} rows, {BANK_FILE} lists {} assets",
                rows.len(),
                info.assets
            )));
        }
        let assets = rows
            .into_iter()
            .map(AssetRow::into_asset)
            .collect::<Result<Vec<_>, String>>()
            .map_err(corrupt)?;
        Ok(AssetBank { info, assets })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AssetError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AssetError::Io { path, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// Cuts the frames of `chunk` in parallel and appends their results in frame order.
fn cut_chunk(
    chunk: &mut Vec<FrameRecord>,
    options: &BuildOptions,
    selected: &(dyn Fn(&Annotation) -> bool + Sync),
    assets: &mut Vec<Asset>,
    report: &mut BuildReport,
) -> Result<(), AssetError> {
    let cuts: Vec<FrameCut> = chunk
        .par_iter()
        .map(|record| cut_frame(record, options, selected))
        .collect::<Result<_, _>>()?;
    chunk.clear();
    for cut in cuts {
        report.candidates += cut.candidates;
        report.frames_used += u64::from(!cut.assets.is_empty());
        assets.extend(cut.assets);
        report.skipped.extend(cut.skipped);
    }
    Ok(())
}

/// What one frame gave.
struct FrameCut {
    candidates: u64,
    assets: Vec<Asset>,
    skipped: Vec<Skipped>,
}

fn cut_frame(
    record: &FrameRecord,
    options: &BuildOptions,
    selected: &(dyn Fn(&Annotation) -> bool + Sync),
) -> Result<FrameCut, AssetError> {
    let frame = &record.frame;
    let mut out = FrameCut {
        candidates: 0,
        assets: Vec::new(),
        skipped: Vec::new(),
    };
    let skip = |index: usize, reason: SkipReason, detail: String| Skipped {
        frame: frame.id.clone(),
        image: frame.image_name.clone(),
        annotation: index as u32,
        class: record.annotations[index].class.clone(),
        reason,
        detail,
    };
    let mut wanted = Vec::new();
    for (index, annotation) in record.annotations.iter().enumerate() {
        if !selected(annotation) {
            continue;
        }
        out.candidates += 1;
        let reason = if annotation.crowd {
            SkipReason::Crowd
        } else if annotation.ignore {
            SkipReason::Ignored
        } else if !options.include_generated && !annotation.origin.is_real() {
            SkipReason::Generated
        } else if annotation.mask.is_none() {
            SkipReason::NoMask
        } else {
            wanted.push(index);
            continue;
        };
        out.skipped.push(skip(index, reason, String::new()));
    }
    if wanted.is_empty() {
        return Ok(out);
    }
    let rgb = match decode_image(record) {
        Ok(rgb) => rgb,
        Err(detail) => {
            out.skipped.extend(
                wanted
                    .into_iter()
                    .map(|index| skip(index, SkipReason::BadImage, detail.clone())),
            );
            return Ok(out);
        }
    };

    // Every instance mask of the frame, of any class, counts as a possible occluder.
    let mut covered = BinaryMask::new(frame.width, frame.height);
    let mut masks = Vec::with_capacity(wanted.len());
    for (index, annotation) in record.annotations.iter().enumerate() {
        let Some(mask) = &annotation.mask else {
            continue;
        };
        let rasterized = rasterize(mask, frame.width, frame.height);
        if let Ok(m) = &rasterized {
            covered.union_with(m);
        }
        if wanted.contains(&index) {
            masks.push((index, rasterized));
        }
    }
    for (index, rasterized) in masks {
        let mask = match rasterized {
            Ok(mask) => mask,
            Err(e) => {
                out.skipped
                    .push(skip(index, SkipReason::BadMask, e.to_string()));
                continue;
            }
        };
        let area = mask.area();
        let Some(rect) = mask.bounds() else {
            out.skipped
                .push(skip(index, SkipReason::EmptyMask, String::new()));
            continue;
        };
        if area < options.min_area_px {
            let detail = format!("{area} px, the minimum is {}", options.min_area_px);
            out.skipped.push(skip(index, SkipReason::TooSmall, detail));
            continue;
        }
        out.assets
            .push(cut_asset(record, index, &rgb, &mask, rect, area, &covered)?);
    }
    // In annotation order, however the reason was found.
    out.skipped.sort_by_key(|s| s.annotation);
    Ok(out)
}

fn decode_image(record: &FrameRecord) -> Result<RgbImage, String> {
    let frame = &record.frame;
    let bytes = record
        .image
        .as_deref()
        .ok_or_else(|| "the dataset returned no image bytes".to_string())?;
    let format = match frame.image_format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
    };
    let rgb = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| format!("image does not decode: {e}"))?
        .into_rgb8();
    if rgb.dimensions() != (frame.width, frame.height) {
        return Err(format!(
            "image decodes to {}x{}, the frame says {}x{}",
            rgb.width(),
            rgb.height(),
            frame.width,
            frame.height
        ));
    }
    Ok(rgb)
}

fn cut_asset(
    record: &FrameRecord,
    index: usize,
    rgb: &RgbImage,
    mask: &BinaryMask,
    rect: PixelRect,
    area: u64,
    covered: &BinaryMask,
) -> Result<Asset, AssetError> {
    let frame = &record.frame;
    let annotation = index as u32;
    let id = Asset::id_for(&frame.id, annotation);
    let (width, height) = (rect.width(), rect.height());
    let mut crop = RgbImage::new(width, height);
    let mut alpha = GrayImage::new(width, height);
    let mut rgba = RgbaImage::new(width, height);
    let mut occluded = 0u64;
    for y in 0..height {
        for x in 0..width {
            let (sx, sy) = (rect.x0 + x, rect.y0 + y);
            let own = mask.get(sx, sy);
            occluded += u64::from(!own && covered.get(sx, sy));
            let [r, g, b] = rgb.get_pixel(sx, sy).0;
            let a = if own { 255 } else { 0 };
            crop.put_pixel(x, y, image::Rgb([r, g, b]));
            alpha.put_pixel(x, y, image::Luma([a]));
            rgba.put_pixel(x, y, image::Rgba([r, g, b, a]));
        }
    }
    let mut rgba_png = Vec::new();
    PngEncoder::new(&mut rgba_png)
        .write_image(rgba.as_raw(), width, height, ExtendedColorType::Rgba8)
        .map_err(|source| AssetError::Png {
            id: id.clone(),
            source,
        })?;
    Ok(Asset {
        id,
        class: record.annotations[index].class.clone(),
        source_frame: frame.id.clone(),
        source_split: frame.split.clone(),
        source_image: frame.image_name.clone(),
        source_annotation: annotation,
        source_x: rect.x0,
        source_y: rect.y0,
        source_width: frame.width,
        source_height: frame.height,
        width,
        height,
        mask_area_px: area,
        touches_border: rect.x0 == 0
            || rect.y0 == 0
            || rect.x1 == frame.width
            || rect.y1 == frame.height,
        occluded_fraction: occluded as f64 / rect.area() as f64,
        viewpoint: measure_viewpoint(&alpha),
        lighting: measure_lighting(&crop, &alpha),
        rgba_png,
    })
}

/// A row of `assets.parquet`: [`Asset`] flattened, so every cue is its own column.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AssetRow {
    id: String,
    class: String,
    source_frame: String,
    source_split: String,
    source_image: String,
    source_annotation: u32,
    source_x: u32,
    source_y: u32,
    source_width: u32,
    source_height: u32,
    width: u32,
    height: u32,
    mask_area_px: u64,
    touches_border: bool,
    occluded_fraction: f64,
    aspect: f64,
    axis_angle_deg: f64,
    elongation: f64,
    centroid_offset_x: f64,
    centroid_offset_y: f64,
    heavier_side: String,
    lighting_weight: f64,
    l_mean: f64,
    a_mean: f64,
    b_mean: f64,
    l_std: f64,
    a_std: f64,
    b_std: f64,
    light_dx: f64,
    light_dy: f64,
    light_strength: f64,
    light_explained: f64,
    #[serde(with = "serde_bytes")]
    rgba_png: Vec<u8>,
}

impl AssetRow {
    fn from_asset(a: &Asset) -> Self {
        let (v, l) = (&a.viewpoint, &a.lighting);
        Self {
            id: a.id.clone(),
            class: a.class.clone(),
            source_frame: a.source_frame.as_str().to_string(),
            source_split: a.source_split.clone(),
            source_image: a.source_image.clone(),
            source_annotation: a.source_annotation,
            source_x: a.source_x,
            source_y: a.source_y,
            source_width: a.source_width,
            source_height: a.source_height,
            width: a.width,
            height: a.height,
            mask_area_px: a.mask_area_px,
            touches_border: a.touches_border,
            occluded_fraction: a.occluded_fraction,
            aspect: v.aspect,
            axis_angle_deg: v.axis_angle_deg,
            elongation: v.elongation,
            centroid_offset_x: v.centroid_offset_x,
            centroid_offset_y: v.centroid_offset_y,
            heavier_side: v.heavier_side.as_str().to_string(),
            lighting_weight: l.weight,
            l_mean: l.l_mean,
            a_mean: l.a_mean,
            b_mean: l.b_mean,
            l_std: l.l_std,
            a_std: l.a_std,
            b_std: l.b_std,
            light_dx: l.light_dx,
            light_dy: l.light_dy,
            light_strength: l.light_strength,
            light_explained: l.light_explained,
            rgba_png: a.rgba_png.clone(),
        }
    }

    fn into_asset(self) -> Result<Asset, String> {
        let heavier_side = HeavierSide::parse(&self.heavier_side).ok_or_else(|| {
            format!(
                "asset {}: heavier_side {:?} is not left, right or balanced",
                self.id, self.heavier_side
            )
        })?;
        Ok(Asset {
            id: self.id,
            class: self.class,
            source_frame: FrameId::from_stored(self.source_frame),
            source_split: self.source_split,
            source_image: self.source_image,
            source_annotation: self.source_annotation,
            source_x: self.source_x,
            source_y: self.source_y,
            source_width: self.source_width,
            source_height: self.source_height,
            width: self.width,
            height: self.height,
            mask_area_px: self.mask_area_px,
            touches_border: self.touches_border,
            occluded_fraction: self.occluded_fraction,
            viewpoint: Viewpoint {
                aspect: self.aspect,
                axis_angle_deg: self.axis_angle_deg,
                elongation: self.elongation,
                centroid_offset_x: self.centroid_offset_x,
                centroid_offset_y: self.centroid_offset_y,
                heavier_side,
            },
            lighting: Lighting {
                weight: self.lighting_weight,
                l_mean: self.l_mean,
                a_mean: self.a_mean,
                b_mean: self.b_mean,
                l_std: self.l_std,
                a_std: self.a_std,
                b_std: self.b_std,
                light_dx: self.light_dx,
                light_dy: self.light_dy,
                light_strength: self.light_strength,
                light_explained: self.light_explained,
            },
            rgba_png: self.rgba_png,
        })
    }
}
