//! ONNX models through ONNX Runtime (ort): the runtime, loaded once, the drivable-area segmentation model, the COCO object detector and the VOC vehicle and animal segmenter.
//!
//! This is the only crate that links `ort`. ONNX Runtime is loaded at run time from the shared
//! library that `ORT_DYLIB_PATH` names (`scripts/env.sh` points it at the one pip's
//! `onnxruntime==1.31.1` ships); without the variable, [`runtime_library_path`] asks `python3`
//! where that package is, as `scripts/env.sh` does. The runtime is initialised once per process.
//!
//! [`DrivableAreaModel`] runs `TwinLiteNet` (`../shared/models/twinlitenet`) and implements
//! `roadsynth-geometry`'s [`DrivableSegmenter`](roadsynth_geometry::DrivableSegmenter), so
//! geometry uses it without depending on ONNX Runtime.
//!
//! [`CocoDetector`] runs `YOLOX`-nano (`../shared/models/yolox-nano`), a COCO-80 detector: which
//! objects a frame shows, and, through [`CocoDetector::detect_region`], whether an inserted
//! object reads as its class. [`VehicleSegmenter`] runs `DeepLabv3` on PASCAL VOC
//! (`../shared/models/deeplabv3-mobilenetv2-voc`): per-pixel masks of vehicles and animals in a
//! box, for cutting objects out of real photos.

mod detector;
mod drivable;
mod error;
mod runtime;
mod segmenter;
mod session;

pub use detector::{
    COCO_ANIMALS, COCO_CLASSES, COCO_VEHICLES, CocoDetector, DetectOptions, Detection, box_iou,
    is_coco_animal, is_coco_vehicle,
};
pub use drivable::DrivableAreaModel;
pub use error::ModelError;
pub use runtime::{ORT_DYLIB_ENV, init_runtime, runtime, runtime_library_path};
pub use segmenter::{
    VOC_ANIMALS, VOC_BACKGROUND, VOC_BICYCLE, VOC_BIRD, VOC_BUS, VOC_CAR, VOC_CAT, VOC_CLASSES,
    VOC_COW, VOC_DOG, VOC_HORSE, VOC_MOTORBIKE, VOC_PERSON, VOC_SHEEP, VOC_VEHICLES,
    VehicleSegmenter,
};
pub use session::{open as open_session, ort_error, run_f32};
