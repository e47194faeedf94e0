//! The stored form of canonical frames: one Parquet row per frame, annotations nested.
//!
//! The row structs here are the wire form; the canonical types stay in `roadsynth-types`. The Arrow
//! schema is derived from these structs (`serde_arrow`), so the two can never drift apart, and it is
//! stamped with [`SCHEMA_VERSION`] in the Parquet key-value metadata and the manifest.
//!
//! Free attributes are stored as JSON text (`attributes_json`): their keys differ per dataset, and
//! every reader (`polars`, `pyarrow`, `DuckDB`) can decode JSON, where a map type is read unevenly.

use std::sync::{Arc, OnceLock};

use arrow_schema::{FieldRef, Schema, SchemaRef};
use roadsynth_types::{
    Annotation, Attributes, BBox, Camera, Frame, FrameId, FrameRecord, ImageFormat, Kitti3d, Mask,
    Origin, Provenance, ProvenanceStep, QuarantineKind, Quarantined, Rle, RleCounts,
    SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::DatasetError;

/// Parquet key-value metadata key holding the schema version.
pub const SCHEMA_VERSION_KEY: &str = "roadsynth.schema_version";

/// Columns holding encoded image bytes; a reader can skip them.
pub const BYTE_COLUMNS: [&str; 2] = ["image", "semantic_label"];

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FrameRow {
    pub frame_id: String,
    pub split: String,
    pub source_uri: String,
    pub image_name: String,
    pub image_format: String,
    pub width: u32,
    pub height: u32,
    pub camera: Option<CameraRow>,
    pub semantic_label_name: Option<String>,
    pub sequence: Option<String>,
    pub timestamp_ms: Option<f64>,
    pub attributes_json: String,
    pub provenance: ProvenanceRow,
    pub annotations: Vec<AnnotationRow>,
    #[serde(default, with = "serde_bytes")]
    pub image: Option<Vec<u8>>,
    #[serde(default, with = "serde_bytes")]
    pub semantic_label: Option<Vec<u8>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CameraRow {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub projection: Option<Vec<f64>>,
    pub height_m: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProvenanceRow {
    pub source_format: String,
    pub parent: Option<String>,
    pub steps: Vec<StepRow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StepRow {
    pub operation: String,
    pub scenario: Option<String>,
    pub seed: Option<u64>,
    pub params_json: String,
    pub tool_version: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AnnotationRow {
    pub class: String,
    pub bbox: BoxRow,
    pub truncated: Option<f32>,
    pub occluded: Option<u8>,
    pub crowd: bool,
    pub ignore: bool,
    pub attributes_json: String,
    pub mask: Option<MaskRow>,
    pub kitti: Option<KittiRow>,
    pub origin: OriginRow,
}

/// Pixel `xyxy`, the convention of [`BBox`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BoxRow {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

/// Exactly one of `polygons`, `rle_runs`, `rle_string` is set; `rle_size` is `[height, width]`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MaskRow {
    pub polygons: Option<Vec<Vec<f64>>>,
    pub rle_size: Option<Vec<u32>>,
    pub rle_runs: Option<Vec<u32>>,
    pub rle_string: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KittiRow {
    pub alpha: f64,
    pub dimensions_hwl: Vec<f64>,
    pub location_xyz: Vec<f64>,
    pub rotation_y: f64,
    pub score: Option<f64>,
}

/// `kind` is `real` or `generated`; the other fields are set for generated annotations.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OriginRow {
    pub kind: String,
    pub operation: Option<String>,
    pub scenario: Option<String>,
    pub seed: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct QuarantineRow {
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub split: String,
    pub kind: String,
    pub reason: String,
}

fn tracing_options() -> TracingOptions {
    TracingOptions::default()
        .strings_as_large_utf8(false)
        .bytes_as_large_binary(true)
}

fn schema_of<'de, T: Deserialize<'de>>(cell: &'static OnceLock<SchemaRef>) -> SchemaRef {
    cell.get_or_init(|| {
        let fields = Vec::<FieldRef>::from_type::<T>(tracing_options())
            .expect("the row structs are plain data and always trace to a schema");
        let metadata = [(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string())].into();
        Arc::new(Schema::new_with_metadata(fields, metadata))
    })
    .clone()
}

/// Arrow schema of the frames table.
pub fn frames_schema() -> SchemaRef {
    static CELL: OnceLock<SchemaRef> = OnceLock::new();
    schema_of::<FrameRow>(&CELL)
}

/// Arrow schema of the quarantine table.
pub fn quarantine_schema() -> SchemaRef {
    static CELL: OnceLock<SchemaRef> = OnceLock::new();
    schema_of::<QuarantineRow>(&CELL)
}

fn attributes_to_json(a: &Attributes) -> String {
    serde_json::to_string(a).expect("JSON values always serialise")
}

fn attributes_from_json(s: &str, what: &str) -> Result<Attributes, DatasetError> {
    if s.is_empty() {
        return Ok(Attributes::new());
    }
    serde_json::from_str(s)
        .map_err(|e| DatasetError::Corrupt(format!("{what} attributes_json: {e}")))
}

impl FrameRow {
    /// The row of a record given up by its owner: the encoded image and labels move into the row
    /// instead of being copied (a generated frame's PNG is about a megabyte).
    pub fn from_owned_record(mut r: FrameRecord) -> Self {
        let (image, semantic_label) = (r.image.take(), r.semantic_label.take());
        Self {
            image,
            semantic_label,
            ..Self::from_record(&r)
        }
    }

    pub fn from_record(r: &FrameRecord) -> Self {
        let f = &r.frame;
        FrameRow {
            frame_id: f.id.as_str().to_string(),
            split: f.split.clone(),
            source_uri: f.source_uri.clone(),
            image_name: f.image_name.clone(),
            image_format: f.image_format.as_str().to_string(),
            width: f.width,
            height: f.height,
            camera: f.camera.map(|c| CameraRow {
                fx: c.fx,
                fy: c.fy,
                cx: c.cx,
                cy: c.cy,
                projection: c.projection.map(|p| p.to_vec()),
                height_m: c.height_m,
            }),
            semantic_label_name: f.semantic_label.clone(),
            sequence: f.sequence.clone(),
            timestamp_ms: f.timestamp_ms,
            attributes_json: attributes_to_json(&f.attributes),
            provenance: ProvenanceRow {
                source_format: f.provenance.source_format.clone(),
                parent: f.provenance.parent.as_ref().map(|p| p.as_str().to_string()),
                steps: f
                    .provenance
                    .steps
                    .iter()
                    .map(|s| StepRow {
                        operation: s.operation.clone(),
                        scenario: s.scenario.clone(),
                        seed: s.seed,
                        params_json: s.params.to_string(),
                        tool_version: s.tool_version.clone(),
                    })
                    .collect(),
            },
            annotations: r
                .annotations
                .iter()
                .map(AnnotationRow::from_annotation)
                .collect(),
            image: r.image.clone(),
            semantic_label: r.semantic_label.clone(),
        }
    }

    pub fn into_record(self) -> Result<FrameRecord, DatasetError> {
        let what = format!("frame {}", self.frame_id);
        let image_format = ImageFormat::parse(&self.image_format).ok_or_else(|| {
            DatasetError::Corrupt(format!(
                "{what}: unknown image_format {:?}",
                self.image_format
            ))
        })?;
        let camera = match self.camera {
            None => None,
            Some(c) => Some(Camera {
                fx: c.fx,
                fy: c.fy,
                cx: c.cx,
                cy: c.cy,
                projection: match c.projection {
                    None => None,
                    Some(p) => Some(<[f64; 12]>::try_from(p.as_slice()).map_err(|_| {
                        DatasetError::Corrupt(format!("{what}: projection must have 12 values"))
                    })?),
                },
                height_m: c.height_m,
            }),
        };
        let steps = self
            .provenance
            .steps
            .into_iter()
            .map(|s| {
                Ok(ProvenanceStep {
                    params: serde_json::from_str(&s.params_json)
                        .map_err(|e| DatasetError::Corrupt(format!("{what}: params_json: {e}")))?,
                    operation: s.operation,
                    scenario: s.scenario,
                    seed: s.seed,
                    tool_version: s.tool_version,
                })
            })
            .collect::<Result<Vec<_>, DatasetError>>()?;
        let annotations = self
            .annotations
            .into_iter()
            .map(|a| a.into_annotation(&what))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FrameRecord {
            frame: Frame {
                attributes: attributes_from_json(&self.attributes_json, &what)?,
                id: FrameId::from_stored(self.frame_id),
                split: self.split,
                source_uri: self.source_uri,
                image_name: self.image_name,
                image_format,
                width: self.width,
                height: self.height,
                camera,
                semantic_label: self.semantic_label_name,
                sequence: self.sequence,
                timestamp_ms: self.timestamp_ms,
                provenance: Provenance {
                    source_format: self.provenance.source_format,
                    parent: self.provenance.parent.map(FrameId::from_stored),
                    steps,
                },
            },
            annotations,
            image: self.image,
            semantic_label: self.semantic_label,
        })
    }
}

impl AnnotationRow {
    fn from_annotation(a: &Annotation) -> Self {
        AnnotationRow {
            class: a.class.clone(),
            bbox: BoxRow {
                x0: a.bbox.x0,
                y0: a.bbox.y0,
                x1: a.bbox.x1,
                y1: a.bbox.y1,
            },
            truncated: a.truncated,
            occluded: a.occluded,
            crowd: a.crowd,
            ignore: a.ignore,
            attributes_json: attributes_to_json(&a.attributes),
            mask: a.mask.as_ref().map(|m| match m {
                Mask::Polygons(p) => MaskRow {
                    polygons: Some(p.clone()),
                    rle_size: None,
                    rle_runs: None,
                    rle_string: None,
                },
                Mask::Rle(Rle { size, counts }) => MaskRow {
                    polygons: None,
                    rle_size: Some(size.to_vec()),
                    rle_runs: match counts {
                        RleCounts::Runs(r) => Some(r.clone()),
                        RleCounts::Compressed(_) => None,
                    },
                    rle_string: match counts {
                        RleCounts::Compressed(s) => Some(s.clone()),
                        RleCounts::Runs(_) => None,
                    },
                },
            }),
            kitti: a.kitti.map(|k| KittiRow {
                alpha: k.alpha,
                dimensions_hwl: k.dimensions_hwl.to_vec(),
                location_xyz: k.location_xyz.to_vec(),
                rotation_y: k.rotation_y,
                score: k.score,
            }),
            origin: match &a.origin {
                Origin::Real => OriginRow {
                    kind: "real".into(),
                    operation: None,
                    scenario: None,
                    seed: None,
                },
                Origin::Generated {
                    operation,
                    scenario,
                    seed,
                } => OriginRow {
                    kind: "generated".into(),
                    operation: Some(operation.clone()),
                    scenario: Some(scenario.clone()),
                    seed: Some(*seed),
                },
            },
        }
    }

    fn into_annotation(self, what: &str) -> Result<Annotation, DatasetError> {
        let corrupt =
            |m: &str| DatasetError::Corrupt(format!("{what}: annotation {}: {m}", self.class));
        let mask = match self.mask {
            None => None,
            Some(MaskRow {
                polygons: Some(p), ..
            }) => Some(Mask::Polygons(p)),
            Some(MaskRow {
                rle_size: Some(size),
                rle_runs,
                rle_string,
                ..
            }) => {
                let size = <[u32; 2]>::try_from(size.as_slice())
                    .map_err(|_| corrupt("rle_size needs 2 values"))?;
                let counts = match (rle_runs, rle_string) {
                    (Some(r), None) => RleCounts::Runs(r),
                    (None, Some(s)) => RleCounts::Compressed(s),
                    _ => {
                        return Err(corrupt(
                            "RLE mask needs exactly one of rle_runs, rle_string",
                        ));
                    }
                };
                Some(Mask::Rle(Rle { size, counts }))
            }
            Some(_) => return Err(corrupt("mask has neither polygons nor RLE")),
        };
        let kitti = match self.kitti {
            None => None,
            Some(k) => Some(Kitti3d {
                alpha: k.alpha,
                dimensions_hwl: <[f64; 3]>::try_from(k.dimensions_hwl.as_slice())
                    .map_err(|_| corrupt("dimensions_hwl needs 3 values"))?,
                location_xyz: <[f64; 3]>::try_from(k.location_xyz.as_slice())
                    .map_err(|_| corrupt("location_xyz needs 3 values"))?,
                rotation_y: k.rotation_y,
                score: k.score,
            }),
        };
        let origin = match (
            self.origin.kind.as_str(),
            self.origin.operation,
            self.origin.scenario,
            self.origin.seed,
        ) {
            ("real", ..) => Origin::Real,
            ("generated", Some(operation), Some(scenario), Some(seed)) => Origin::Generated {
                operation,
                scenario,
                seed,
            },
            (kind, ..) => return Err(corrupt(&format!("bad origin {kind:?}"))),
        };
        Ok(Annotation {
            attributes: attributes_from_json(&self.attributes_json, what)?,
            class: self.class,
            bbox: BBox::new(self.bbox.x0, self.bbox.y0, self.bbox.x1, self.bbox.y1),
            truncated: self.truncated,
            occluded: self.occluded,
            crowd: self.crowd,
            ignore: self.ignore,
            mask,
            kitti,
            origin,
        })
    }
}

impl QuarantineRow {
    pub fn from_item(q: &Quarantined) -> Self {
        QuarantineRow {
            file: q.file.clone(),
            line: q.line,
            column: q.column,
            split: q.split.clone(),
            kind: q.kind.as_str().to_string(),
            reason: q.reason.clone(),
        }
    }

    pub fn into_item(self) -> Result<Quarantined, DatasetError> {
        let kind = QuarantineKind::parse(&self.kind).ok_or_else(|| {
            DatasetError::Corrupt(format!("quarantine: unknown kind {:?}", self.kind))
        })?;
        Ok(Quarantined {
            file: self.file,
            line: self.line,
            column: self.column,
            split: self.split,
            kind,
            reason: self.reason,
        })
    }
}
