//! Small float rasters over frame rectangles, the `OpenCV` calls on them (resize, blur, filters)
//! and their L\*a\*b\* conversion. Pixel work stays on crops the size of an object, never the frame.

use image::RgbImage;
use opencv::core::{self as cv, Mat, Size, ToInputArray, Vec4f};
use opencv::imgproc;
use opencv::prelude::*;
use roadsynth_assets::colour;
use roadsynth_types::BBox;
use serde::Serialize;

use crate::error::{CvContext, EngineError};

/// A pixel rectangle of a frame, `x0..x1` by `y0..y1`, ends exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PixelRect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl PixelRect {
    pub fn width(&self) -> u32 {
        self.x1.saturating_sub(self.x0)
    }

    pub fn height(&self) -> u32 {
        self.y1.saturating_sub(self.y0)
    }

    pub fn area(&self) -> usize {
        self.width() as usize * self.height() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }

    /// The pixels a box touches, widened by `margin` pixels on every side, clipped to a
    /// `width x height` frame.
    pub fn covering(b: &BBox, margin: f64, width: u32, height: u32) -> PixelRect {
        let clamp = |v: f64, hi: u32| v.clamp(0.0, f64::from(hi)) as u32;
        PixelRect {
            x0: clamp((b.x0 - margin).floor(), width),
            y0: clamp((b.y0 - margin).floor(), height),
            x1: clamp((b.x1 + margin).ceil(), width),
            y1: clamp((b.y1 + margin).ceil(), height),
        }
    }

    pub fn intersect(&self, other: &PixelRect) -> Option<PixelRect> {
        let r = PixelRect {
            x0: self.x0.max(other.x0),
            y0: self.y0.max(other.y0),
            x1: self.x1.min(other.x1),
            y1: self.y1.min(other.y1),
        };
        (!r.is_empty() && r.x0 < r.x1 && r.y0 < r.y1).then_some(r)
    }

    pub fn to_bbox(self) -> BBox {
        BBox::new(
            f64::from(self.x0),
            f64::from(self.y0),
            f64::from(self.x1),
            f64::from(self.y1),
        )
    }

    /// Index of frame pixel `(x, y)` in a row-major buffer over this rectangle.
    pub fn index(&self, x: u32, y: u32) -> usize {
        (y - self.y0) as usize * self.width() as usize + (x - self.x0) as usize
    }
}

/// One float channel over a rectangle, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl Plane {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0.0; width as usize * height as usize],
        }
    }

    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    pub fn to_mat(&self) -> Result<Mat, EngineError> {
        let m = Mat::new_rows_cols_with_data(self.height as i32, self.width as i32, &self.data)
            .cv("plane to Mat")?;
        m.try_clone().cv("plane to Mat")
    }

    pub fn from_mat(m: &Mat) -> Result<Self, EngineError> {
        let m = continuous(m)?;
        Ok(Self {
            width: m.cols() as u32,
            height: m.rows() as u32,
            data: m.data_typed::<f32>().cv("Mat to plane")?.to_vec(),
        })
    }
}

/// RGB floats (`0..=255`) over a rectangle, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbPlane {
    pub width: u32,
    pub height: u32,
    pub data: Vec<[f32; 3]>,
}

impl RgbPlane {
    /// The pixels of `rect` of an image.
    pub fn crop(image: &RgbImage, rect: PixelRect) -> Self {
        let mut data = Vec::with_capacity(rect.area());
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let p = image.get_pixel(x, y).0;
                data.push([f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]);
            }
        }
        Self {
            width: rect.width(),
            height: rect.height(),
            data,
        }
    }

    /// BT.601 luma, the grey level the sharpness and noise estimates use.
    pub fn luma(&self) -> Plane {
        Plane {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(|p| luma(*p)).collect(),
        }
    }
}

/// Resamples a `CV_32FC4` matrix (see [`Premultiplied::resized_from_rgba`]).
fn resize_mat(
    m: &(impl MatTraitConst + ToInputArray),
    width: u32,
    height: u32,
) -> Result<Premultiplied, EngineError> {
    let shrink =
        i64::from(width) <= i64::from(m.cols()) && i64::from(height) <= i64::from(m.rows());
    let mut out = Mat::default();
    imgproc::resize(
        m,
        &mut out,
        Size::new(width as i32, height as i32),
        0.0,
        0.0,
        if shrink {
            imgproc::INTER_AREA
        } else {
            imgproc::INTER_LINEAR
        },
    )
    .cv("resize")?;
    Premultiplied::from_mat(&out)
}

pub fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

fn continuous(m: &Mat) -> Result<Mat, EngineError> {
    if m.is_continuous() {
        m.try_clone().cv("Mat clone")
    } else {
        let mut c = Mat::default();
        m.copy_to(&mut c).cv("Mat copy")?;
        Ok(c)
    }
}

/// Premultiplied RGBA floats: colour times alpha (`0..=255`) and alpha (`0..=1`). Resampling and
/// blurring premultiplied keeps the colour of the pixels around a cut-out (its source background)
/// out of its edges.
#[derive(Debug, Clone, PartialEq)]
pub struct Premultiplied {
    pub width: u32,
    pub height: u32,
    pub data: Vec<[f32; 4]>,
}

impl Premultiplied {
    /// A cut-out (mirrored when `flip`), premultiplied and resampled to `width x height`: area
    /// averaging when shrinking (no aliasing of fur and edges), bilinear when enlarging. The
    /// full-resolution premultiplied cut-out is written straight into the matrix `OpenCV`
    /// resamples: cut-outs are often ten times the size they are drawn at.
    pub fn resized_from_rgba(
        image: &image::RgbaImage,
        flip: bool,
        width: u32,
        height: u32,
    ) -> Result<Self, EngineError> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        // Written once, in order: no zero-filled matrix to overwrite. An empty cut-out has no
        // rows (`resize` then reports it).
        let mut px: Vec<Vec4f> = Vec::with_capacity(w * h);
        for row_in in image.as_raw().chunks_exact(4 * w.max(1)) {
            px.extend((0..w).map(|x| {
                let sx = if flip { w - 1 - x } else { x };
                let p = &row_in[4 * sx..4 * sx + 4];
                let a = f32::from(p[3]) / 255.0;
                Vec4f::from([
                    f32::from(p[0]) * a,
                    f32::from(p[1]) * a,
                    f32::from(p[2]) * a,
                    a,
                ])
            }));
        }
        let m = Mat::new_rows_cols_with_data(h as i32, w as i32, &px).cv("RGBA to Mat")?;
        resize_mat(&m, width, height)
    }

    fn to_mat(&self) -> Result<Mat, EngineError> {
        let px: Vec<Vec4f> = self.data.iter().map(|&p| Vec4f::from(p)).collect();
        let m = Mat::new_rows_cols_with_data(self.height as i32, self.width as i32, &px)
            .cv("RGBA to Mat")?;
        m.try_clone().cv("RGBA to Mat")
    }

    fn from_mat(m: &Mat) -> Result<Self, EngineError> {
        let m = continuous(m)?;
        Ok(Self {
            width: m.cols() as u32,
            height: m.rows() as u32,
            data: m
                .data_typed::<Vec4f>()
                .cv("Mat to RGBA")?
                .iter()
                .map(|v| v.0)
                .collect(),
        })
    }

    /// Gaussian blur of colour and alpha together.
    pub fn blurred(&self, sigma: f64) -> Result<Self, EngineError> {
        if sigma <= 0.0 {
            return Ok(self.clone());
        }
        let mut out = Mat::default();
        imgproc::gaussian_blur(
            &self.to_mat()?,
            &mut out,
            Size::new(0, 0),
            sigma,
            sigma,
            cv::BORDER_CONSTANT,
        )
        .cv("blur")?;
        Self::from_mat(&out)
    }

    pub fn alpha(&self) -> Plane {
        Plane {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(|p| p[3]).collect(),
        }
    }

    /// Straight (un-premultiplied) colour; transparent pixels are black.
    pub fn colour(&self) -> RgbPlane {
        RgbPlane {
            width: self.width,
            height: self.height,
            data: self
                .data
                .iter()
                .map(|p| {
                    if p[3] > 1e-4 {
                        [p[0] / p[3], p[1] / p[3], p[2] / p[3]].map(|c| c.clamp(0.0, 255.0))
                    } else {
                        [0.0; 3]
                    }
                })
                .collect(),
        }
    }
}

/// Gaussian blur of a plane (`BORDER_REFLECT_101`).
#[cfg(test)]
pub fn blur_plane(p: &Plane, sigma: f64) -> Result<Plane, EngineError> {
    if sigma <= 0.0 {
        return Ok(p.clone());
    }
    let mut out = Mat::default();
    imgproc::gaussian_blur(
        &p.to_mat()?,
        &mut out,
        Size::new(0, 0),
        sigma,
        sigma,
        cv::BORDER_REFLECT_101,
    )
    .cv("blur")?;
    Plane::from_mat(&out)
}

/// A 3x3 filter of a plane, border replicated.
pub fn filter3(p: &Plane, kernel: [f32; 9]) -> Result<Plane, EngineError> {
    let k = Mat::new_rows_cols_with_data(3, 3, &kernel).cv("kernel")?;
    let mut out = Mat::default();
    imgproc::filter_2d(
        &p.to_mat()?,
        &mut out,
        cv::CV_32F,
        &k,
        cv::Point::new(-1, -1),
        0.0,
        cv::BORDER_REPLICATE,
    )
    .cv("filter2D")?;
    Plane::from_mat(&out)
}

/// CIE L\*a\*b\* (D65) of sRGB floats `0..=255`, by [`roadsynth_assets::colour`]: L `0..=100`,
/// the same conversion `roadsynth_assets::measure_lighting` measures with.
pub fn rgb_to_lab(p: &RgbPlane) -> RgbPlane {
    let mut data: Vec<[f32; 3]> = p.data.iter().map(|c| c.map(|v| v / 255.0)).collect();
    colour::lab_from_srgb(&mut data);
    RgbPlane {
        width: p.width,
        height: p.height,
        data,
    }
}

/// sRGB floats `0..=255` of CIE L\*a\*b\* (the inverse of [`rgb_to_lab`]), clipped to the gamut.
pub fn lab_to_rgb(mut p: RgbPlane) -> RgbPlane {
    colour::srgb_from_lab(&mut p.data);
    for v in p.data.as_flattened_mut() {
        *v *= 255.0;
    }
    p
}

/// `0..=255` float to the nearest byte.
pub fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_rect_clips_and_rounds_outwards() {
        let r = PixelRect::covering(&BBox::new(10.5, -3.0, 20.2, 30.0), 1.0, 25, 25);
        assert_eq!(
            r,
            PixelRect {
                x0: 9,
                y0: 0,
                x1: 22,
                y1: 25
            }
        );
        assert_eq!(r.index(9, 0), 0);
        assert_eq!(r.index(10, 1), 14);
    }

    #[test]
    fn lab_round_trip_is_close() {
        let p = RgbPlane {
            width: 3,
            height: 1,
            data: vec![
                [200.0, 30.0, 40.0],
                [10.0, 120.0, 240.0],
                [128.0, 128.0, 128.0],
            ],
        };
        let lab = rgb_to_lab(&p);
        // sRGB 128 grey is L* 53.59.
        assert!((lab.data[2][0] - 53.59).abs() < 0.01, "{:?}", lab.data[2]);
        let back = lab_to_rgb(lab);
        for (a, b) in p.data.iter().zip(&back.data) {
            for c in 0..3 {
                assert!((a[c] - b[c]).abs() < 0.01, "{a:?} vs {b:?}");
            }
        }
    }
}
