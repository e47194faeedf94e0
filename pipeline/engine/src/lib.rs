//! Generative engine: renders planned insertions and vehicle edits (exemplar compositing, naive paste, diffusion inpainting) with edit masks, tight boxes and provenance, and filters them with a detector.
//!
//! # Insertions
//!
//! [`InsertionEngine::insert`] takes a frame ([`FrameInput`]: pixels, annotations, optional
//! semantic labels) and the [`PlanRow`](roadsynth_placement::PlanRow)s of one frame variant, and
//! returns an [`InsertOutcome`]: the new frame, the input annotations plus one generated
//! annotation per kept object (origin `Generated`, the tight box of its visible rendered alpha,
//! its instance mask, the asset, the substitution and harmonisation in its attributes, `depth_m`
//! from the plan), a full-frame edit mask, a report per planned object and a
//! [`ProvenanceStep`](roadsynth_types::ProvenanceStep).
//!
//! The backends ([`InsertBackend`]) each render an object as a layer against the input frame:
//!
//! - [`ExemplarCompositor`] (the default): a real cut-out from the asset bank, chosen by class
//!   (through the documented [`SUBSTITUTIONS`] for classes COCO lacks), aspect and lighting, fitted
//!   to the planned box with a bounded anisotropic scale, harmonised toward the local light
//!   (partial L\*a\*b\* transfer), blurred and noised to match its surroundings, blended (feather,
//!   Poisson, or `auto` by measurement) with a contact shadow.
//! - [`NaivePaste`]: the same kind of cut-out with plain alpha, nothing else: the baseline.
//! - [`DiffusionInserter`]: Stable Diffusion inpainting of the box (`roadsynth-diffusion`).
//!
//! Layers compose far to near; nearer existing objects stay in front where their instance masks
//! or semantic-label pixels say they are (never a rectangle cut from a box). Every pixel outside
//! the edit mask is the input's, bit for bit. Each object's random choices come from a `ChaCha8`
//! stream of its plan row's seed, so the same rows give the same bytes.
//!
//! A [`QualityFilter`] (the COCO detector: [`DetectorFilter`]) judges each kept object in the
//! composed frame; a rejected one is rendered again from another cut-out at the same place (up
//! to [`InsertConfig::max_attempts`] renders), else dropped and the frame re-composed without it,
//! with every verdict in the report.
//!
//! # Vehicle edits
//!
//! [`VehicleEditor::edit`] repaints vehicles an
//! [`EditVehicles`](roadsynth_scenario::EditVehicles) operation selects: a mask inside the box
//! (the VOC segmenter, `GrabCut` without it), body pixels recoloured in `OKLab` keeping shading,
//! windows, tyres, lights and highlights (or masked diffusion image-to-image), and a check that
//! the re-segmented vehicle still has the same shape; pixels outside the masks are unchanged.

#![allow(
    clippy::many_single_char_names,
    reason = "pixel code names its coordinates and sizes x, y, w, h, as the papers do"
)]

mod blend;
mod compose;
mod diffusion;
mod error;
mod exemplar;
mod filter;
mod frame;
mod harmonise;
mod insert;
mod library;
mod naive;
mod raster;
mod seamless;
mod texture;
mod vehicle;

pub use blend::{BlendMeasure, BlendMode, PoissonConfig};
pub use diffusion::{DiffusionInsertConfig, DiffusionInserter};
pub use error::EngineError;
pub use exemplar::{ExemplarCompositor, ExemplarConfig, MIN_RENDER_HEIGHT_PX, ShadowConfig};
pub use filter::{DetectorFilter, FilterClasses, FilterConfig, Inserted, QualityFilter, Verdict};
pub use frame::{FrameInput, PixelSource, SemanticObjects};
pub use harmonise::{Harmonisation, HarmoniseConfig, LabStats};
pub use insert::{
    InsertBackend, InsertConfig, InsertOutcome, InsertionEngine, InsertionReport, InsertionStatus,
    RejectedRender,
};
pub use library::{
    Exemplar, ExemplarLibrary, Fit, SUBSTITUTIONS, SelectionConfig, Tier, bank_classes_for,
    normalise_class, source_classes,
};
pub use naive::{NaiveConfig, NaivePaste};
pub use raster::PixelRect;
pub use texture::TextureConfig;
pub use vehicle::{
    DiffusionEditConfig, EditOutcome, MaskSource, VehicleEditConfig, VehicleEditReport,
    VehicleEditStatus, VehicleEditor,
};
