//! Layers and their composition: every backend renders an insertion as a layer (colour, write
//! weight, object coverage and a shadow over a rectangle of the frame), computed from the input
//! frame alone. Composition stacks the kept layers far to near, keeps nearer existing objects in
//! front, and writes the edit mask; pixels it does not touch are copied from the input, so the
//! background is bit-exact by construction, and dropping a layer (the filter) re-composes the
//! rest unchanged.

use image::{GrayImage, RgbImage};
use roadsynth_types::{BBox, Mask, Rle, RleCounts};

use crate::frame::{ExistingObjects, PixelSource};
use crate::raster::{PixelRect, to_u8};

/// One rendered insertion.
#[derive(Debug, Clone)]
pub struct Layer {
    pub rect: PixelRect,
    /// Colour written, `0..=255`, row-major over `rect`.
    pub rgb: Vec<[f32; 3]>,
    /// Write weight `0..=1` (the object's alpha; for Poisson blending the whole cloned region).
    pub alpha: Vec<f32>,
    /// The object's coverage `0..=1`: what the tight box, the instance mask and the occlusion of
    /// farther objects follow.
    pub cover: Vec<f32>,
    /// Darkening `0..=1` of what lies below, applied before the object (the contact shadow).
    pub shadow: Vec<f32>,
    /// The object's foot row: layers compose far (small) to near (large).
    pub foot_v: f64,
}

impl Layer {
    pub fn empty(rect: PixelRect, foot_v: f64) -> Self {
        let n = rect.area();
        Self {
            rect,
            rgb: vec![[0.0; 3]; n],
            alpha: vec![0.0; n],
            cover: vec![0.0; n],
            shadow: vec![0.0; n],
            foot_v,
        }
    }
}

/// How a composed layer came out.
#[derive(Debug, Clone)]
pub struct Placed {
    /// Visible coverage over the layer's rectangle, after nearer existing and inserted objects.
    pub visible: Vec<f32>,
    /// Pixels with visible coverage >= 0.5 and with coverage >= 0.5.
    pub visible_px: usize,
    pub covered_px: usize,
    /// Nearer existing objects overlapping the layer, by where their pixels came from; `None`
    /// for those without pixels (a box alone cuts no holes).
    pub occluders: Vec<(usize, Option<PixelSource>)>,
}

impl Placed {
    pub fn visible_fraction(&self) -> f64 {
        if self.covered_px == 0 {
            0.0
        } else {
            self.visible_px as f64 / self.covered_px as f64
        }
    }
}

/// The composed frame.
#[derive(Debug, Clone)]
pub struct Composite {
    pub image: RgbImage,
    /// 0 where `image` is the input bit for bit; elsewhere `ceil(255 x weight)` of the largest
    /// write weight or shadow applied there.
    pub edit_mask: GrayImage,
    /// One per layer, in the order given.
    pub placed: Vec<Placed>,
}

/// Weights below this change no 8-bit pixel; they are dropped so the mask says exactly where
/// pixels may differ.
const MIN_WEIGHT: f32 = 1.0 / 512.0;

/// Stacks `layers` over `image`, farthest first.
pub fn compose(
    image: &RgbImage,
    layers: &[&Layer],
    existing: &mut ExistingObjects<'_>,
) -> Composite {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    let mut mask = GrayImage::new(w, h);
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by(|&a, &b| {
        layers[a]
            .foot_v
            .total_cmp(&layers[b].foot_v)
            .then(a.cmp(&b))
    });
    let mut placed: Vec<Placed> = layers
        .iter()
        .map(|l| Placed {
            visible: vec![0.0; l.rect.area()],
            visible_px: 0,
            covered_px: 0,
            occluders: Vec::new(),
        })
        .collect();
    let mut done: Vec<usize> = Vec::new();
    for &li in &order {
        let layer = layers[li];
        let r = layer.rect;
        let mut occ = vec![0u8; r.area()];
        for index in existing.nearer_than(layer.foot_v, &r) {
            match existing.pixels(index) {
                Some(px) => {
                    placed[li].occluders.push((index, Some(px.source)));
                    if let Some(common) = px.rect.intersect(&r) {
                        for y in common.y0..common.y1 {
                            for x in common.x0..common.x1 {
                                if px.bits[px.rect.index(x, y)] != 0 {
                                    occ[r.index(x, y)] = 1;
                                }
                            }
                        }
                    }
                }
                None => placed[li].occluders.push((index, None)),
            }
        }
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                let i = r.index(x, y);
                if occ[i] != 0 {
                    continue;
                }
                let a = if layer.alpha[i] < MIN_WEIGHT {
                    0.0
                } else {
                    layer.alpha[i].min(1.0)
                };
                let s = if layer.shadow[i] < MIN_WEIGHT {
                    0.0
                } else {
                    layer.shadow[i].min(1.0)
                };
                placed[li].visible[i] = layer.cover[i];
                if a == 0.0 && s == 0.0 {
                    continue;
                }
                let px = out.get_pixel_mut(x, y);
                for (channel, &colour) in px.0.iter_mut().zip(&layer.rgb[i]) {
                    let below = f32::from(*channel) * (1.0 - s);
                    *channel = to_u8(a * colour + (1.0 - a) * below);
                }
                let weight = (a.max(s) * 255.0).ceil().clamp(1.0, 255.0) as u8;
                let m = mask.get_pixel_mut(x, y);
                m.0[0] = m.0[0].max(weight);
                // This layer hides what it covers of the farther layers already down.
                let c = layer.cover[i];
                if c > 0.0 {
                    for &fi in &done {
                        let f = layers[fi].rect;
                        if x >= f.x0 && x < f.x1 && y >= f.y0 && y < f.y1 {
                            placed[fi].visible[f.index(x, y)] *= 1.0 - c;
                        }
                    }
                }
            }
        }
        done.push(li);
    }
    for (p, l) in placed.iter_mut().zip(layers) {
        p.visible_px = p.visible.iter().filter(|&&v| v >= 0.5).count();
        p.covered_px = l.cover.iter().filter(|&&v| v >= 0.5).count();
    }
    // The guarantee, whatever the arithmetic above did: untouched pixels are the input's. Only
    // pixels inside a layer's rectangle were written at all.
    for layer in layers {
        let r = layer.rect;
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                if mask.get_pixel(x, y).0[0] == 0 {
                    out.put_pixel(x, y, *image.get_pixel(x, y));
                }
            }
        }
    }
    Composite {
        image: out,
        edit_mask: mask,
        placed,
    }
}

/// Coverage from which a pixel counts toward an object's box: a quarter, so that thin parts (legs,
/// ears) that shrinking leaves partly transparent are still inside the box, while the feather's
/// faint outer fringe is not.
pub const BOX_COVERAGE: f32 = 0.25;

/// The tight box of the pixels whose visible coverage reaches [`BOX_COVERAGE`].
pub fn tight_box(rect: &PixelRect, visible: &[f32]) -> Option<BBox> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for y in rect.y0..rect.y1 {
        for x in rect.x0..rect.x1 {
            if visible[rect.index(x, y)] >= BOX_COVERAGE {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
    }
    (x0 < x1).then(|| PixelRect { x0, y0, x1, y1 }.to_bbox())
}

/// The visible pixels (coverage >= 0.5) as a COCO uncompressed RLE over the whole frame
/// (column-major). Only the rectangle's pixels are looked at: the frame around it is whole runs.
pub fn visible_rle(rect: &PixelRect, visible: &[f32], width: u32, height: u32) -> Mask {
    /// Runs of equal values, the first of them outside.
    struct Runs {
        counts: Vec<u32>,
        current: bool,
        run: u32,
    }
    impl Runs {
        fn push(&mut self, inside: bool, n: u32) {
            if n == 0 {
                return;
            }
            if inside == self.current {
                self.run += n;
            } else {
                self.counts.push(self.run);
                self.current = inside;
                self.run = n;
            }
        }
    }
    let mut runs = Runs {
        counts: Vec::new(),
        current: false,
        run: 0,
    };
    // The rectangle's part inside the frame.
    let (x0, y0) = (rect.x0.min(width), rect.y0.min(height));
    let (x1, y1) = (rect.x1.clamp(x0, width), rect.y1.clamp(y0, height));
    runs.push(false, x0 * height);
    for x in x0..x1 {
        runs.push(false, y0);
        for y in y0..y1 {
            runs.push(visible[rect.index(x, y)] >= 0.5, 1);
        }
        runs.push(false, height - y1);
    }
    runs.push(false, (width - x1) * height);
    let mut counts = runs.counts;
    counts.push(runs.run);
    Mask::Rle(Rle {
        size: [height, width],
        counts: RleCounts::Runs(counts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameInput, SemanticObjects};
    use image::Luma;
    use roadsynth_types::Annotation;

    fn square(x0: u32, y0: u32, side: u32, colour: f32, foot_v: f64) -> Layer {
        let rect = PixelRect {
            x0,
            y0,
            x1: x0 + side,
            y1: y0 + side,
        };
        let mut l = Layer::empty(rect, foot_v);
        l.rgb.fill([colour; 3]);
        l.alpha.fill(1.0);
        l.cover.fill(1.0);
        l
    }

    #[test]
    fn nearer_layer_hides_the_farther_and_background_is_untouched() {
        let image = RgbImage::from_pixel(20, 20, image::Rgb([7, 8, 9]));
        let semantic = SemanticObjects::default();
        let frame = FrameInput::new(&image, &[]);
        let mut existing = ExistingObjects::new(frame, &semantic);
        let far = square(2, 2, 6, 100.0, 8.0);
        let near = square(5, 5, 6, 200.0, 11.0);
        // Given near first: order follows foot rows, not the slice.
        let c = compose(&image, &[&near, &far], &mut existing);
        assert_eq!(c.image.get_pixel(6, 6).0, [200; 3]);
        assert_eq!(c.image.get_pixel(3, 3).0, [100; 3]);
        assert_eq!(c.image.get_pixel(15, 15).0, [7, 8, 9]);
        assert_eq!(c.edit_mask.get_pixel(15, 15).0, [0]);
        assert_eq!(c.placed[0].visible_px, 36);
        assert_eq!(c.placed[1].visible_px, 36 - 9);
        assert_eq!(
            tight_box(&far.rect, &c.placed[1].visible),
            Some(BBox::new(2.0, 2.0, 8.0, 8.0))
        );
    }

    #[test]
    fn nearer_existing_object_stays_in_front_only_where_its_pixels_are() {
        let image = RgbImage::from_pixel(20, 20, image::Rgb([50, 50, 50]));
        // A nearer car whose semantic pixels fill only the left half of its box.
        let car = Annotation::real("car", BBox::new(0.0, 0.0, 10.0, 18.0));
        let mut labels = GrayImage::new(20, 20);
        for y in 0..18 {
            for x in 0..5 {
                labels.put_pixel(x, y, Luma([8]));
            }
        }
        let annotations = [car];
        let frame = FrameInput::new(&image, &annotations).with_semantic(Some(&labels));
        let semantic = SemanticObjects::default();
        let mut existing = ExistingObjects::new(frame, &semantic);
        let layer = square(2, 2, 8, 250.0, 10.0);
        let c = compose(&image, &[&layer], &mut existing);
        assert_eq!(c.image.get_pixel(3, 5).0, [50; 3], "car pixel stays");
        assert_eq!(
            c.image.get_pixel(7, 5).0,
            [250; 3],
            "not a rectangular hole"
        );
        assert_eq!(
            c.placed[0].occluders,
            vec![(0, Some(PixelSource::SemanticLabels))]
        );
    }

    #[test]
    fn rle_counts_cover_the_frame_column_major() {
        let rect = PixelRect {
            x0: 1,
            y0: 1,
            x1: 2,
            y1: 3,
        };
        let Mask::Rle(rle) = visible_rle(&rect, &[1.0, 1.0], 3, 4) else {
            panic!("rle")
        };
        let RleCounts::Runs(runs) = rle.counts else {
            panic!("runs")
        };
        assert_eq!(runs, vec![5, 2, 5]);
        assert_eq!(runs.iter().sum::<u32>(), 12);
    }

    /// The runs are those of a pixel-by-pixel walk of the whole frame, for rectangles inside the
    /// frame, at its edges and reaching past them, with holes in the coverage.
    #[test]
    fn rle_of_the_rectangle_alone_equals_the_walk_of_every_pixel() {
        use rand::{Rng, SeedableRng};
        let walk = |rect: &PixelRect, visible: &[f32], width: u32, height: u32| -> Vec<u32> {
            let (mut counts, mut current, mut run) = (Vec::new(), false, 0u32);
            for x in 0..width {
                for y in 0..height {
                    let inside = x >= rect.x0
                        && x < rect.x1
                        && y >= rect.y0
                        && y < rect.y1
                        && visible[rect.index(x, y)] >= 0.5;
                    if inside == current {
                        run += 1;
                    } else {
                        counts.push(run);
                        current = inside;
                        run = 1;
                    }
                }
            }
            counts.push(run);
            counts
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..300 {
            let (width, height) = (rng.random_range(1..12u32), rng.random_range(1..12u32));
            let (x0, y0) = (
                rng.random_range(0..width + 2),
                rng.random_range(0..height + 2),
            );
            let (x1, y1) = (
                x0 + rng.random_range(1..6u32),
                y0 + rng.random_range(1..6u32),
            );
            let rect = PixelRect { x0, y0, x1, y1 };
            let visible: Vec<f32> = (0..rect.width() * rect.height())
                .map(|_| rng.random_range(0.0..1.0))
                .collect();
            let Mask::Rle(rle) = visible_rle(&rect, &visible, width, height) else {
                panic!("rle")
            };
            let RleCounts::Runs(runs) = rle.counts else {
                panic!("runs")
            };
            assert_eq!(
                runs,
                walk(&rect, &visible, width, height),
                "{rect:?} in {width}x{height}"
            );
        }
    }
}
