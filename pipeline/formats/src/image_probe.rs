//! Cheap checks of encoded images: format, size and completeness without decoding the pixels.
//!
//! A full decode is several times slower than reading and hashing the file, and ingest must stay
//! within about twice the cost of a copy. A truncated file (the common failure: an interrupted
//! download or copy) is caught structurally instead: a JPEG must end with its end-of-image marker
//! and a PNG with its `IEND` chunk. [`decode_check`] does the full decode when asked for.

use std::io::Cursor;

use image::ImageReader;
use roadsynth_types::ImageFormat;

const JPEG_START: [u8; 3] = [0xFF, 0xD8, 0xFF];
const JPEG_END: [u8; 2] = [0xFF, 0xD9];
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// The `IEND` chunk is always these 12 bytes: zero length, type, CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// Why image bytes are not a usable JPEG or PNG.
#[derive(Debug, thiserror::Error)]
pub enum ImageProbeError {
    #[error("empty file")]
    Empty,
    #[error("not a JPEG or PNG: starts with {0:02x?}")]
    UnknownFormat(Vec<u8>),
    #[error("truncated JPEG: it does not end with the end-of-image marker FFD9")]
    TruncatedJpeg,
    #[error("truncated PNG: it does not end with the IEND chunk")]
    TruncatedPng,
    #[error("unreadable {} header: {source}", .format.as_str())]
    Header {
        format: ImageFormat,
        #[source]
        source: image::ImageError,
    },
    #[error("{} does not decode: {source}", .format.as_str())]
    Decode {
        format: ImageFormat,
        #[source]
        source: image::ImageError,
    },
}

/// Format, width and height of an encoded image, after checking that the file is complete.
pub fn probe(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), ImageProbeError> {
    let format = detect_complete(bytes)?;
    let (width, height) = reader(bytes, format)
        .into_dimensions()
        .map_err(|source| ImageProbeError::Header { format, source })?;
    Ok((format, width, height))
}

/// Checks what [`probe`] checks, then decodes every pixel.
pub fn decode_check(bytes: &[u8]) -> Result<(), ImageProbeError> {
    let format = detect_complete(bytes)?;
    reader(bytes, format)
        .decode()
        .map_err(|source| ImageProbeError::Decode { format, source })?;
    Ok(())
}

/// The format by magic bytes, once the file is known to end where that format ends.
fn detect_complete(bytes: &[u8]) -> Result<ImageFormat, ImageProbeError> {
    if bytes.is_empty() {
        Err(ImageProbeError::Empty)
    } else if bytes.starts_with(&JPEG_START) {
        // Some writers pad the file with zeros after the end marker.
        let content_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if bytes[..content_end].ends_with(&JPEG_END) {
            Ok(ImageFormat::Jpeg)
        } else {
            Err(ImageProbeError::TruncatedJpeg)
        }
    } else if bytes.starts_with(&PNG_SIGNATURE) {
        if bytes.ends_with(&PNG_IEND) {
            Ok(ImageFormat::Png)
        } else {
            Err(ImageProbeError::TruncatedPng)
        }
    } else {
        Err(ImageProbeError::UnknownFormat(
            bytes.iter().take(8).copied().collect(),
        ))
    }
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let format = match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
    };
    ImageReader::with_format(Cursor::new(bytes), format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_with_zero_padding_after_the_end_marker_is_complete() {
        let bytes = [0xFF, 0xD8, 0xFF, 0xE0, 0x01, 0xFF, 0xD9, 0, 0, 0];
        assert!(matches!(detect_complete(&bytes), Ok(ImageFormat::Jpeg)));
        assert!(matches!(
            detect_complete(&bytes[..5]),
            Err(ImageProbeError::TruncatedJpeg)
        ));
    }

    #[test]
    fn unknown_and_empty_bytes_are_rejected() {
        assert!(matches!(
            detect_complete(b"GIF89a..."),
            Err(ImageProbeError::UnknownFormat(_))
        ));
        assert!(matches!(detect_complete(&[]), Err(ImageProbeError::Empty)));
    }
}
