//! What the `roadsynth` binary and its `roadsynth-video` helper share: the ingest command.

pub mod ingest_cmd;
