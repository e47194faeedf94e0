//! Small Parquet tables beside datasets (plans, mask indexes): rows of a serde struct, written
//! atomically (temp file, then rename) so a reader never sees half a table.

use std::fs::File;
use std::path::Path;

use arrow_schema::{DataType, FieldRef, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};
use std::sync::Arc;

use crate::{DatasetError, IoContext};

/// Writes `rows` to `path` as one Parquet file, atomically.
pub fn write_table<T: Serialize + DeserializeOwned>(
    path: &Path,
    rows: &[T],
) -> Result<(), DatasetError> {
    let fields =
        Vec::<FieldRef>::from_type::<T>(TracingOptions::default().strings_as_large_utf8(false))?;
    let schema = Arc::new(Schema::new(fields));
    let batch = serde_arrow::to_record_batch(schema.fields(), &rows)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let file = File::create(&tmp).at(&tmp)?;
    // Binary columns hold encoded blobs (an asset bank's PNG cut-outs): a dictionary or min/max
    // statistics of them cost time to write and to read and gain nothing.
    let mut properties = WriterProperties::builder();
    for field in schema.fields() {
        if matches!(field.data_type(), DataType::Binary | DataType::LargeBinary) {
            let path = ColumnPath::from(field.name().as_str());
            properties = properties
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties.build())).at(&tmp)?;
    writer.write(&batch).at(&tmp)?;
    let file = writer.into_inner().at(&tmp)?;
    file.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}

/// Reads every row of a table written by [`write_table`] (or any Parquet file with matching columns).
pub fn read_table<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, DatasetError> {
    let file = File::open(path).at(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .at(path)?
        .build()
        .at(path)?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.at(path)?;
        out.extend(serde_arrow::from_record_batch::<Vec<T>>(&batch)?);
    }
    Ok(out)
}
