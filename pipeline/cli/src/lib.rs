//! What the `roadsynth` binary and its `roadsynth-video` helper share: the ingest command and
//! the orchestrator file that drives it.

pub mod ingest_cmd;
pub mod orchestrator;
