//! Object-centric crops and pixel-space compositing.
//!
//! Each object is generated in a crop around it (its box plus context) at the model's working
//! size, so a small object gets the model's full resolution and the `UNet` never sees the rest of
//! the frame. The result is pasted back in pixel space through a feathered alpha that is exactly 0
//! beyond a fixed distance of the object's mask: the VAE round trip changes every pixel of the
//! crop slightly, and compositing in pixel space with integer arithmetic is what keeps the rest of
//! the frame bit-exact.

use image::{GrayImage, RgbImage};
use serde::Serialize;

use crate::DiffusionError;

/// A pixel rectangle of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CropRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// An object's mask in frame pixels: `true` where the object is to be (re)generated.
#[derive(Debug, Clone)]
pub(crate) struct ObjectMask {
    pub width: u32,
    pub height: u32,
    pub bits: Vec<bool>,
    /// The tight pixel bounds of the mask and the box together: `[x0, y0, x1, y1)`.
    pub bounds: [u32; 4],
}

impl ObjectMask {
    /// The object's pixels: `mask > 127` when a mask is given (frame-sized), else the pixels whose
    /// centres lie in the box (`x0 <= x + 0.5 < x1`). The bounds cover the box as well, so a mask
    /// smaller than its box still gets the box's context.
    pub fn new(
        bbox: [f64; 4],
        mask: Option<&GrayImage>,
        width: u32,
        height: u32,
    ) -> Result<Self, DiffusionError> {
        let [x0, y0, x1, y1] = bbox;
        if !bbox.iter().all(|v| v.is_finite()) || x1 <= x0 || y1 <= y0 {
            return Err(DiffusionError::Request(format!(
                "box {bbox:?} is not a finite [x0, y0, x1, y1] with x1 > x0, y1 > y0"
            )));
        }
        let clamp = |v: f64, max: u32| v.clamp(0.0, f64::from(max));
        let bx0 = clamp(x0.floor(), width) as u32;
        let by0 = clamp(y0.floor(), height) as u32;
        let bx1 = clamp(x1.ceil(), width) as u32;
        let by1 = clamp(y1.ceil(), height) as u32;
        if bx1 <= bx0 || by1 <= by0 {
            return Err(DiffusionError::Request(format!(
                "box {bbox:?} lies outside the {width}x{height} image"
            )));
        }
        let (w, h) = (width as usize, height as usize);
        let mut bits = vec![false; w * h];
        match mask {
            Some(m) => {
                if m.dimensions() != (width, height) {
                    return Err(DiffusionError::Request(format!(
                        "object mask is {}x{}, the image {width}x{height}",
                        m.width(),
                        m.height()
                    )));
                }
                for (bit, p) in bits.iter_mut().zip(m.pixels()) {
                    *bit = p.0[0] > 127;
                }
            }
            None => {
                for y in by0..by1 {
                    let cy = f64::from(y) + 0.5;
                    if cy < y0 || cy >= y1 {
                        continue;
                    }
                    for x in bx0..bx1 {
                        let cx = f64::from(x) + 0.5;
                        if cx >= x0 && cx < x1 {
                            bits[y as usize * w + x as usize] = true;
                        }
                    }
                }
            }
        }
        let mut bounds = [bx0, by0, bx1, by1];
        let mut any = false;
        for y in 0..h {
            for x in 0..w {
                if bits[y * w + x] {
                    any = true;
                    bounds[0] = bounds[0].min(x as u32);
                    bounds[1] = bounds[1].min(y as u32);
                    bounds[2] = bounds[2].max(x as u32 + 1);
                    bounds[3] = bounds[3].max(y as u32 + 1);
                }
            }
        }
        if !any {
            return Err(DiffusionError::Request(format!(
                "object with box {bbox:?} covers no pixel (empty mask, or a box thinner than a pixel)"
            )));
        }
        Ok(Self {
            width,
            height,
            bits,
            bounds,
        })
    }

    fn get(&self, x: u32, y: u32) -> bool {
        self.bits[y as usize * self.width as usize + x as usize]
    }
}

/// The crop around an object: a square of side `max(w, h) * (1 + 2 * margin)` centred on the
/// object's bounds, at least wide enough for the feather ring (`2 * feather` on each side), shifted
/// to lie inside the frame. Where the frame is shorter than that square, the square shrinks to the
/// frame; only an object longer than the frame's short side gets a non-square crop (which the
/// model sees stretched to its square working size).
pub(crate) fn crop_rect(mask: &ObjectMask, context_margin: f64, feather: u32) -> CropRect {
    let [x0, y0, x1, y1] = mask.bounds;
    let (w, h) = (x1 - x0, y1 - y0);
    let long = w.max(h);
    let with_context = (f64::from(long) * (1.0 + 2.0 * context_margin.max(0.0))).ceil() as u32;
    let side = with_context.max(long + 4 * feather + 2);
    // Keep it square where the frame allows: a frame shorter than the side cuts both sides, unless
    // the object itself (with its feather ring) needs more along one axis.
    let square = side.min(mask.width).min(mask.height);
    let place = |lo: u32, hi: u32, extent: u32| {
        let len = square.max((hi - lo + 4 * feather + 2).min(extent));
        let centre2 = lo + hi; // twice the centre, to stay in integers
        let start = (i64::from(centre2) - i64::from(len)).div_euclid(2);
        let start = start.clamp(0, i64::from(extent - len)) as u32;
        (start, len)
    };
    let (x, width) = place(x0, x1, mask.width);
    let (y, height) = place(y0, y1, mask.height);
    CropRect {
        x,
        y,
        width,
        height,
    }
}

/// The region the model regenerates, in crop pixels: the object's mask dilated by `feather`
/// (Chebyshev), so the generated content covers every pixel the alpha fully replaces.
pub(crate) fn model_mask(mask: &ObjectMask, crop: CropRect, feather: u32) -> Vec<bool> {
    let (cw, ch) = (crop.width as usize, crop.height as usize);
    let inside: Vec<bool> = (0..ch)
        .flat_map(|y| (0..cw).map(move |x| (x, y)))
        .map(|(x, y)| mask.get(crop.x + x as u32, crop.y + y as u32))
        .collect();
    dilate(&inside, cw, ch, feather as usize)
}

/// Square (Chebyshev) dilation by `r`, separable.
fn dilate(bits: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    if r == 0 {
        return bits.to_vec();
    }
    // Any set bit within `r` of `i` along a line of `len`, from the line's prefix counts.
    let near = |prefix: &[u32], i: usize, len: usize| {
        prefix[(i + r + 1).min(len)] > prefix[i.saturating_sub(r)]
    };
    let mut rows = vec![false; w * h];
    for y in 0..h {
        let prefix = prefix_counts(bits[y * w..(y + 1) * w].iter().copied());
        for x in 0..w {
            rows[y * w + x] = near(&prefix, x, w);
        }
    }
    let mut out = vec![false; w * h];
    for x in 0..w {
        let prefix = prefix_counts((0..h).map(|y| rows[y * w + x]));
        for y in 0..h {
            out[y * w + x] = near(&prefix, y, h);
        }
    }
    out
}

fn prefix_counts(bits: impl Iterator<Item = bool>) -> Vec<u32> {
    let mut prefix = vec![0_u32];
    for b in bits {
        let last = prefix[prefix.len() - 1];
        prefix.push(last + u32::from(b));
    }
    prefix
}

/// The compositing alpha over the crop as an exact fraction `num / den` per pixel: the mean of
/// the dilated mask over the `(2r + 1)^2` window (clipped to the crop). It is exactly 1 on the
/// object's mask (every window pixel is in the dilation) and exactly 0 from `2r + 1` pixels out.
pub(crate) struct Alpha {
    pub num: Vec<u32>,
    pub den: Vec<u32>,
}

pub(crate) fn feather_alpha(dilated: &[bool], w: usize, h: usize, r: usize) -> Alpha {
    // 2-D prefix sums of the dilated mask.
    let stride = w + 1;
    let mut sums = vec![0_u32; stride * (h + 1)];
    for y in 0..h {
        let mut row = 0_u32;
        for x in 0..w {
            row += u32::from(dilated[y * w + x]);
            sums[(y + 1) * stride + x + 1] = sums[y * stride + x + 1] + row;
        }
    }
    let mut num = vec![0; w * h];
    let mut den = vec![0; w * h];
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
            let count = sums[y1 * stride + x1] + sums[y0 * stride + x0]
                - sums[y0 * stride + x1]
                - sums[y1 * stride + x0];
            num[y * w + x] = count;
            den[y * w + x] = ((y1 - y0) * (x1 - x0)) as u32;
        }
    }
    Alpha { num, den }
}

/// Blends `generated` (crop-sized) into `image` at `crop` with `alpha`, in integers: a pixel with
/// alpha 0 is not written, one with alpha 1 takes the generated value, others
/// `round((orig * (den - num) + gen * num) / den)`. Raises `edit_mask` to `ceil(255 * alpha)` (at
/// least 1 wherever a pixel was written). Returns the number of pixels written.
pub(crate) fn composite(
    image: &mut RgbImage,
    edit_mask: &mut GrayImage,
    generated: &RgbImage,
    crop: CropRect,
    alpha: &Alpha,
) -> u64 {
    let cw = crop.width as usize;
    let mut written = 0;
    for (x, y, gen_pixel) in generated.enumerate_pixels() {
        let i = y as usize * cw + x as usize;
        let (num, den) = (alpha.num[i], alpha.den[i]);
        if num == 0 {
            continue;
        }
        written += 1;
        let (fx, fy) = (crop.x + x, crop.y + y);
        let pixel = image.get_pixel_mut(fx, fy);
        for (o, &g) in pixel.0.iter_mut().zip(&gen_pixel.0) {
            let blended = (u32::from(*o) * (den - num) + u32::from(g) * num + den / 2) / den;
            *o = blended as u8;
        }
        let code = (255 * num).div_ceil(den) as u8;
        let m = edit_mask.get_pixel_mut(fx, fy);
        m.0[0] = m.0[0].max(code);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(bbox: [f64; 4], w: u32, h: u32) -> Result<ObjectMask, DiffusionError> {
        ObjectMask::new(bbox, None, w, h)
    }

    #[test]
    fn box_mask_takes_pixels_whose_centres_are_inside() -> Result<(), DiffusionError> {
        let m = boxed([1.0, 1.0, 3.4, 2.6], 8, 8)?;
        let on: Vec<(u32, u32)> = (0..8)
            .flat_map(|y| (0..8).map(move |x| (x, y)))
            .filter(|&(x, y)| m.get(x, y))
            .collect();
        assert_eq!(on, vec![(1, 1), (2, 1), (1, 2), (2, 2)]);
        assert_eq!(m.bounds, [1, 1, 4, 3]);
        Ok(())
    }

    #[test]
    fn bad_boxes_are_rejected() {
        assert!(boxed([5.0, 5.0, 4.0, 9.0], 8, 8).is_err());
        assert!(boxed([10.0, 10.0, 12.0, 12.0], 8, 8).is_err());
        assert!(boxed([f64::NAN, 0.0, 1.0, 1.0], 8, 8).is_err());
        assert!(boxed([1.1, 1.1, 1.4, 1.4], 8, 8).is_err());
    }

    #[test]
    fn crop_is_a_square_with_context_inside_the_frame() -> Result<(), DiffusionError> {
        let m = boxed([90.0, 40.0, 110.0, 50.0], 200, 100)?;
        let c = crop_rect(&m, 0.5, 2);
        assert_eq!((c.width, c.height), (40, 40));
        assert_eq!((c.x, c.y), (80, 25));
        // Near the corner the square shifts inside the frame.
        let m = boxed([0.0, 0.0, 10.0, 10.0], 200, 100)?;
        let c = crop_rect(&m, 1.0, 2);
        assert_eq!(
            c,
            CropRect {
                x: 0,
                y: 0,
                width: 30,
                height: 30
            }
        );
        // The context square would be taller than the frame: it shrinks to the frame.
        let m = boxed([10.0, 0.0, 30.0, 100.0], 200, 100)?;
        let c = crop_rect(&m, 0.5, 2);
        assert_eq!(
            c,
            CropRect {
                x: 0,
                y: 0,
                width: 100,
                height: 100
            }
        );
        // An object wider than the frame is tall: the only non-square case.
        let m = boxed([0.0, 40.0, 150.0, 60.0], 200, 100)?;
        let c = crop_rect(&m, 0.5, 2);
        assert_eq!((c.width, c.height), (160, 100));
        Ok(())
    }

    #[test]
    fn alpha_is_one_on_the_mask_and_zero_beyond_twice_the_feather() {
        let (w, h, r) = (20, 20, 2);
        let mut bits = vec![false; w * h];
        for y in 8..12 {
            for x in 8..12 {
                bits[y * w + x] = true;
            }
        }
        let alpha = feather_alpha(&dilate(&bits, w, h, r), w, h, r);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                // Chebyshev distance to the square [8, 11]^2.
                let gap = |v: usize| 8_usize.saturating_sub(v).max(v.saturating_sub(11));
                let dist = gap(x).max(gap(y));
                if dist == 0 {
                    assert_eq!(alpha.num[i], alpha.den[i], "({x},{y})");
                }
                if dist > 2 * r {
                    assert_eq!(alpha.num[i], 0, "({x},{y})");
                } else {
                    assert!(alpha.num[i] > 0, "({x},{y})");
                }
            }
        }
    }

    #[test]
    fn composite_leaves_zero_alpha_pixels_alone() {
        let mut image = RgbImage::from_pixel(4, 1, image::Rgb([10, 20, 30]));
        let mut edit = GrayImage::new(4, 1);
        let generated = RgbImage::from_pixel(3, 1, image::Rgb([110, 120, 130]));
        let alpha = Alpha {
            num: vec![0, 1, 4],
            den: vec![4, 4, 4],
        };
        let crop = CropRect {
            x: 1,
            y: 0,
            width: 3,
            height: 1,
        };
        assert_eq!(
            composite(&mut image, &mut edit, &generated, crop, &alpha),
            2
        );
        assert_eq!(image.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(image.get_pixel(1, 0).0, [10, 20, 30]);
        assert_eq!(image.get_pixel(2, 0).0, [35, 45, 55]);
        assert_eq!(image.get_pixel(3, 0).0, [110, 120, 130]);
        assert_eq!(edit.as_raw(), &vec![0, 0, 64, 255]);
    }
}
