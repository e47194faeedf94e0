//! Encodings of what a run recording logs: every picture goes to the viewer compressed, because a
//! viewer holds everything it is sent, and raw RGB (or `f32` maps) of a few hundred frames would
//! be gigabytes where JPEG and PNG are tens of megabytes.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, GrayImage, ImageEncoder, ImageFormat, RgbImage};

use crate::InspectError;

/// A frame as the caller has it: encoded bytes as stored in a dataset (JPEG, PNG), or pixels.
#[derive(Debug, Clone, Copy)]
pub enum ImageRef<'a> {
    /// A whole encoded image file (JPEG, PNG, or anything the `image` crate decodes).
    Encoded(&'a [u8]),
    Rgb(&'a RgbImage),
}

/// An image ready for `EncodedImage`: its bytes and media type.
#[derive(Debug)]
pub(crate) struct ViewerImage {
    pub bytes: Vec<u8>,
    pub media_type: &'static str,
}

pub(crate) const JPEG: &str = "image/jpeg";
pub(crate) const PNG: &str = "image/png";

fn jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).write_image(
        rgb,
        width,
        height,
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// A frame as the viewer gets it: JPEG passes through untouched (re-encoding would only lose
/// quality), anything else is decoded and re-encoded as JPEG at `quality` (a KITTI PNG of
/// 1242x375 is about 900 KB; as JPEG at 85 about 100 KB).
pub(crate) fn viewer_jpeg(
    image: ImageRef<'_>,
    quality: u8,
    what: &str,
) -> Result<(ViewerImage, u32, u32), InspectError> {
    let image_err = |source| InspectError::Image {
        what: what.to_owned(),
        source,
    };
    let rgb = match image {
        ImageRef::Encoded(bytes) => {
            let format = image::guess_format(bytes).map_err(image_err)?;
            if format == ImageFormat::Jpeg {
                // Dimensions come from the header alone, so a pass-through costs no decode.
                let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
                    .into_dimensions()
                    .map_err(image_err)?;
                return Ok((
                    ViewerImage {
                        bytes: bytes.to_vec(),
                        media_type: JPEG,
                    },
                    w,
                    h,
                ));
            }
            image::load_from_memory_with_format(bytes, format)
                .map_err(image_err)?
                .into_rgb8()
        }
        ImageRef::Rgb(rgb) => rgb.clone(),
    };
    let bytes = jpeg(rgb.as_raw(), rgb.width(), rgb.height(), quality).map_err(image_err)?;
    Ok((
        ViewerImage {
            bytes,
            media_type: JPEG,
        },
        rgb.width(),
        rgb.height(),
    ))
}

/// An edit mask as a transparent overlay: `colour` at `alpha` where the mask is non-zero, clear
/// elsewhere. PNG, because a two-valued image compresses to a few KB losslessly while a raw
/// segmentation image costs a byte per pixel per frame.
pub(crate) fn mask_overlay(
    mask: &GrayImage,
    colour: [u8; 3],
    alpha: u8,
) -> Result<ViewerImage, InspectError> {
    let mut rgba = Vec::with_capacity(mask.as_raw().len() * 4);
    for &m in mask.as_raw() {
        if m == 0 {
            rgba.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            rgba.extend_from_slice(&[colour[0], colour[1], colour[2], alpha]);
        }
    }
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&rgba, mask.width(), mask.height(), ExtendedColorType::Rgba8)
        .map_err(|source| InspectError::Image {
            what: "edit mask".to_owned(),
            source,
        })?;
    Ok(ViewerImage {
        bytes: out,
        media_type: PNG,
    })
}

/// Matplotlib's viridis at nine stops: perceptually uniform and readable by colour-blind people,
/// so a smooth weather map reads as smooth.
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// Viridis colour of `t` in `[0, 1]` (clamped).
pub(crate) fn viridis(t: f32) -> [u8; 3] {
    let pos = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let stop = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let frac = pos - stop as f32;
    let (below, above) = (VIRIDIS[stop], VIRIDIS[stop + 1]);
    [0, 1, 2].map(|c| (below[c] + (above[c] - below[c]) * frac).round() as u8)
}

/// The range a map is coloured over: the given one, else the finite values' min and max; a flat
/// or empty range widens to one unit so every value still gets a colour.
pub(crate) fn map_range(data: &[f32], given: Option<(f32, f32)>) -> (f32, f32) {
    let (lo, hi) = given.unwrap_or_else(|| {
        data.iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    });
    if lo.is_finite() && hi.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo, lo + 1.0)
    } else {
        (0.0, 1.0)
    }
}

/// A scalar map colour-mapped over `range` and JPEG-encoded. Non-finite values are black, outside
/// the colour map, so holes in a map stay visible. JPEG rather than PNG: the maps are smooth, and
/// JPEG keeps a 1242x375 map near 30 KB where raw `f32` would be 1.8 MB a frame.
pub(crate) fn colour_mapped(
    width: u32,
    height: u32,
    data: &[f32],
    range: (f32, f32),
    quality: u8,
    what: &str,
) -> Result<ViewerImage, InspectError> {
    let (lo, hi) = range;
    let mut rgb = Vec::with_capacity(data.len() * 3);
    for &v in data {
        if v.is_finite() {
            rgb.extend_from_slice(&viridis((v - lo) / (hi - lo)));
        } else {
            rgb.extend_from_slice(&[0, 0, 0]);
        }
    }
    let bytes = jpeg(&rgb, width, height, quality).map_err(|source| InspectError::Image {
        what: what.to_owned(),
        source,
    })?;
    Ok(ViewerImage {
        bytes,
        media_type: JPEG,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_middle() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(0.5), [33, 144, 141]);
        assert_eq!(viridis(-3.0), viridis(0.0));
        // Halfway between the first two stops.
        assert_eq!(viridis(0.0625), [70, 23, 103]);
    }

    #[test]
    fn range_ignores_non_finite_and_widens_flat_maps() {
        assert_eq!(map_range(&[0.2, f32::NAN, 0.8], None), (0.2, 0.8));
        assert_eq!(map_range(&[0.5, 0.5], None), (0.5, 1.5));
        assert_eq!(map_range(&[f32::NAN], None), (0.0, 1.0));
        assert_eq!(map_range(&[5.0], Some((0.0, 1.0))), (0.0, 1.0));
    }
}
