//! The trained head: a per-anchor MLP over the frozen backbone's raw output, with its loss,
//! gradients and `AdamW`, written with `ndarray` matrix products.
//!
//! Why by hand rather than in a training framework (`burn`): the head is three dense layers on a
//! `3549 x 88` matrix per frame (about 10k weights). Measured over `CamVid` train on 2 cores, a
//! frame costs about 13 ms to decode and letterbox, 13 ms in the backbone and 13 ms in the head
//! (features, target assignment, forward, backward, loss), so a framework could shorten only
//! part of the last third of an epoch that already takes 15 to 30 s against a 120 s budget,
//! while adding a few hundred crates to the build. Single-threaded `matrixmultiply` products
//! summed in a fixed order also make a run bitwise reproducible.

use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};
use rand::Rng;

use crate::backbone::{Anchor, RAW, STRIDES};
use crate::weights::{Tensor, TensorFile};

/// Input features per anchor: the backbone's box (4), objectness and 80 class logits (81), and
/// a one-hot of the output level (3).
pub(crate) const FEATURES: usize = 4 + 81 + STRIDES.len();
/// Logits are divided by this (before standardisation, which rescales anyway) to keep the
/// statistics' sums small.
const LOGIT_SCALE: f32 = 8.0;
/// Probabilities are clamped to this range before taking logits. YOLOX's class probabilities
/// are a sigmoid of a linear map of a 64-channel feature, so their logits carry that feature
/// (80 views of 64 values); clamping at 1e-6 would flatten most background anchors, which sit
/// at logits of -10 to -20, while the far tail (underflowing probabilities) only adds outliers.
/// The high end is the largest `f32` below 1.
const PROBABILITY_MIN: f32 = 1e-12;
const PROBABILITY_MAX: f32 = 1.0 - f32::EPSILON / 2.0;
/// Initial objectness and class probability: the usual detector prior, so that the first steps
/// are not spent pushing thousands of background anchors down.
const PRIOR: f32 = 0.01;

/// The head's feature matrix of one frame: one row per anchor.
pub(crate) fn features(raw: &Array2<f32>, anchors: &[Anchor]) -> Array2<f32> {
    let mut x = Array2::<f32>::zeros((anchors.len(), FEATURES));
    for ((mut row, values), anchor) in x.outer_iter_mut().zip(raw.outer_iter()).zip(anchors) {
        row[0] = values[0];
        row[1] = values[1];
        row[2] = values[2].clamp(-10.0, 10.0);
        row[3] = values[3].clamp(-10.0, 10.0);
        for i in 4..RAW {
            let p = values[i].clamp(PROBABILITY_MIN, PROBABILITY_MAX);
            row[i] = (p / (1.0 - p)).ln() / LOGIT_SCALE;
        }
        row[RAW + anchor.level] = 1.0;
    }
    x
}

/// Per-feature standardisation, fitted once on the training split before the first step and saved
/// with the weights. The features mix box offsets near 0..1 with logits down to -30, and the
/// one-hot level columns; a dense layer learns far better from inputs of zero mean and unit
/// spread than from that mixture.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Standardize {
    pub mean: Array1<f32>,
    pub scale: Array1<f32>,
}

impl Standardize {
    /// Fits to feature matrices (the mean and the inverse standard deviation of each column;
    /// a constant column is only centred).
    #[cfg(test)]
    pub fn fit<'a>(samples: impl IntoIterator<Item = &'a Array2<f32>>) -> Self {
        let mut fit = StandardizeFit::default();
        for x in samples {
            fit.add(x);
        }
        fit.finish()
    }

    pub fn apply(&self, x: &mut Array2<f32>) {
        for mut row in x.outer_iter_mut() {
            Zip::from(&mut row)
                .and(&self.mean)
                .and(&self.scale)
                .for_each(|v, &m, &s| *v = (*v - m) * s);
        }
    }

    pub fn tensors(&self) -> Vec<Tensor> {
        vec![
            Tensor {
                name: "input.mean".into(),
                shape: vec![FEATURES],
                data: self.mean.to_vec(),
            },
            Tensor {
                name: "input.scale".into(),
                shape: vec![FEATURES],
                data: self.scale.to_vec(),
            },
        ]
    }

    pub fn from_file(file: &TensorFile) -> Result<Self, String> {
        let read = |name: &str| {
            let tensor = file
                .get(name)
                .ok_or_else(|| format!("no tensor {name:?}"))?;
            if tensor.shape == [FEATURES] {
                Ok(Array1::from(tensor.data.clone()))
            } else {
                Err(format!(
                    "tensor {name:?} has shape {:?}; expected [{FEATURES}]",
                    tensor.shape
                ))
            }
        };
        Ok(Self {
            mean: read("input.mean")?,
            scale: read("input.scale")?,
        })
    }
}

/// Running sums for [`Standardize`], in `f64`, added in a fixed order.
#[derive(Debug, Clone)]
pub(crate) struct StandardizeFit {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: f64,
}

impl Default for StandardizeFit {
    fn default() -> Self {
        Self {
            sum: vec![0.0; FEATURES],
            sum_sq: vec![0.0; FEATURES],
            count: 0.0,
        }
    }
}

impl StandardizeFit {
    pub fn add(&mut self, x: &Array2<f32>) {
        for row in x.outer_iter() {
            for (j, &v) in row.iter().enumerate() {
                self.sum[j] += f64::from(v);
                self.sum_sq[j] += f64::from(v) * f64::from(v);
            }
            self.count += 1.0;
        }
    }

    pub fn finish(&self) -> Standardize {
        let count = self.count.max(1.0);
        let mean: Array1<f32> = self.sum.iter().map(|s| (s / count) as f32).collect();
        let scale = self
            .sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, q)| {
                let variance = (q / count - (s / count).powi(2)).max(0.0);
                if variance > 1e-6 {
                    (1.0 / variance.sqrt()) as f32
                } else {
                    1.0
                }
            })
            .collect();
        Standardize { mean, scale }
    }
}

/// The head's weights (or, with the same shapes, their gradients or `AdamW`'s moments). Output
/// columns: objectness, one logit per class, then the box refinement `dx, dy, dw, dh`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Head {
    pub w1: Array2<f32>,
    pub b1: Array1<f32>,
    pub w2: Array2<f32>,
    pub b2: Array1<f32>,
    pub w3: Array2<f32>,
    pub b3: Array1<f32>,
}

/// What the backward pass needs of a forward pass.
#[derive(Debug)]
pub(crate) struct Activations {
    z1: Array2<f32>,
    a1: Array2<f32>,
    z2: Array2<f32>,
    a2: Array2<f32>,
    pub out: Array2<f32>,
}

const NAMES: [&str; 6] = ["w1", "b1", "w2", "b2", "w3", "b3"];

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn silu(z: f32) -> f32 {
    z * sigmoid(z)
}

fn silu_grad(z: f32) -> f32 {
    let s = sigmoid(z);
    s * (1.0 + z * (1.0 - s))
}

impl Head {
    /// Output width for `classes` classes.
    pub fn outputs(classes: usize) -> usize {
        1 + classes + 4
    }

    pub fn zeros(hidden: usize, classes: usize) -> Self {
        let out = Self::outputs(classes);
        Self {
            w1: Array2::zeros((FEATURES, hidden)),
            b1: Array1::zeros(hidden),
            w2: Array2::zeros((hidden, hidden)),
            b2: Array1::zeros(hidden),
            w3: Array2::zeros((hidden, out)),
            b3: Array1::zeros(out),
        }
    }

    /// Fresh weights: He-uniform hidden layers, a small output layer whose box refinement starts
    /// near zero (the backbone's own box) and whose objectness and class biases start at the
    /// prior.
    pub fn init(hidden: usize, classes: usize, rng: &mut impl Rng) -> Self {
        let mut head = Self::zeros(hidden, classes);
        let mut fill = |w: &mut Array2<f32>, bound: f32| {
            w.mapv_inplace(|_| rng.random_range(-bound..bound));
        };
        fill(&mut head.w1, (6.0 / FEATURES as f32).sqrt());
        fill(&mut head.w2, (6.0 / hidden as f32).sqrt());
        fill(&mut head.w3, 0.01);
        let prior = -((1.0 - PRIOR) / PRIOR).ln();
        for v in head.b3.iter_mut().take(1 + classes) {
            *v = prior;
        }
        head
    }

    pub fn forward_train(&self, x: &ArrayView2<'_, f32>) -> Activations {
        let z1 = x.dot(&self.w1) + &self.b1;
        let a1 = z1.mapv(silu);
        let z2 = a1.dot(&self.w2) + &self.b2;
        let a2 = z2.mapv(silu);
        let out = a2.dot(&self.w3) + &self.b3;
        Activations {
            z1,
            a1,
            z2,
            a2,
            out,
        }
    }

    pub fn forward(&self, x: &ArrayView2<'_, f32>) -> Array2<f32> {
        self.forward_train(x).out
    }

    /// Adds the gradients of one frame, given the loss's gradient by the outputs, to `grads`.
    pub fn backward(
        &self,
        x: &ArrayView2<'_, f32>,
        acts: &Activations,
        d_out: &Array2<f32>,
        grads: &mut Head,
    ) {
        grads.w3 += &acts.a2.t().dot(d_out);
        grads.b3 += &d_out.sum_axis(Axis(0));
        let mut d2 = d_out.dot(&self.w3.t());
        Zip::from(&mut d2)
            .and(&acts.z2)
            .for_each(|d, &z| *d *= silu_grad(z));
        grads.w2 += &acts.a1.t().dot(&d2);
        grads.b2 += &d2.sum_axis(Axis(0));
        let mut d1 = d2.dot(&self.w2.t());
        Zip::from(&mut d1)
            .and(&acts.z1)
            .for_each(|d, &z| *d *= silu_grad(z));
        grads.w1 += &x.t().dot(&d1);
        grads.b1 += &d1.sum_axis(Axis(0));
    }

    fn slices(&self) -> [&[f32]; 6] {
        let c = "weights are contiguous";
        [
            self.w1.as_slice().expect(c),
            self.b1.as_slice().expect(c),
            self.w2.as_slice().expect(c),
            self.b2.as_slice().expect(c),
            self.w3.as_slice().expect(c),
            self.b3.as_slice().expect(c),
        ]
    }

    fn slices_mut(&mut self) -> [&mut [f32]; 6] {
        let c = "weights are contiguous";
        [
            self.w1.as_slice_mut().expect(c),
            self.b1.as_slice_mut().expect(c),
            self.w2.as_slice_mut().expect(c),
            self.b2.as_slice_mut().expect(c),
            self.w3.as_slice_mut().expect(c),
            self.b3.as_slice_mut().expect(c),
        ]
    }

    fn shapes(&self) -> [Vec<usize>; 6] {
        [
            self.w1.shape().to_vec(),
            self.b1.shape().to_vec(),
            self.w2.shape().to_vec(),
            self.b2.shape().to_vec(),
            self.w3.shape().to_vec(),
            self.b3.shape().to_vec(),
        ]
    }

    /// The tensors, named `prefix` + `w1` ... `b3`.
    pub fn tensors(&self, prefix: &str) -> Vec<Tensor> {
        NAMES
            .iter()
            .zip(self.slices())
            .zip(self.shapes())
            .map(|((name, data), shape)| Tensor {
                name: format!("{prefix}{name}"),
                shape,
                data: data.to_vec(),
            })
            .collect()
    }

    /// Reads `prefix` + `w1` ... `b3` from a file into a head of the given size.
    pub fn from_file(
        file: &TensorFile,
        prefix: &str,
        hidden: usize,
        classes: usize,
    ) -> Result<Self, String> {
        let mut head = Self::zeros(hidden, classes);
        let shapes = head.shapes();
        for ((name, target), shape) in NAMES.iter().zip(head.slices_mut()).zip(shapes) {
            let full = format!("{prefix}{name}");
            let tensor = file
                .get(&full)
                .ok_or_else(|| format!("no tensor {full:?}"))?;
            if tensor.shape != shape {
                return Err(format!(
                    "tensor {full:?} has shape {:?}; the configuration needs {shape:?}",
                    tensor.shape
                ));
            }
            target.copy_from_slice(&tensor.data);
        }
        Ok(head)
    }
}

/// `AdamW`'s state: first and second moments and the step count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Adam {
    pub m: Head,
    pub v: Head,
    pub step: u64,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

impl Adam {
    pub fn new(hidden: usize, classes: usize) -> Self {
        Self {
            m: Head::zeros(hidden, classes),
            v: Head::zeros(hidden, classes),
            step: 0,
        }
    }

    /// One update with learning rate `lr`; weight decay (decoupled) applies to weights, not
    /// biases.
    pub fn update(&mut self, head: &mut Head, grads: &Head, lr: f32, weight_decay: f32) {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - BETA1.powi(t);
        let c2 = 1.0 - BETA2.powi(t);
        let grads = grads.slices();
        for (index, ((w, m), v)) in head
            .slices_mut()
            .into_iter()
            .zip(self.m.slices_mut())
            .zip(self.v.slices_mut())
            .enumerate()
        {
            let decay = if index % 2 == 0 { weight_decay } else { 0.0 };
            for (((w, m), v), &g) in w
                .iter_mut()
                .zip(m.iter_mut())
                .zip(v.iter_mut())
                .zip(grads[index])
            {
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                let update = (*m / c1) / ((*v / c2).sqrt() + EPSILON);
                *w -= lr * (update + decay * *w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The analytic gradient matches a finite difference of `sum(out * probe)`.
    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut head = Head::init(5, 2, &mut rng);
        head.w3.mapv_inplace(|_| rng.random_range(-0.5..0.5));
        let x = Array2::from_shape_fn((3, FEATURES), |_| rng.random_range(-1.0..1.0_f32));
        let probe =
            Array2::from_shape_fn((3, Head::outputs(2)), |_| rng.random_range(-1.0..1.0_f32));
        let objective = |h: &Head| f64::from((h.forward(&x.view()) * &probe).sum());
        let acts = head.forward_train(&x.view());
        let mut grads = Head::zeros(5, 2);
        head.backward(&x.view(), &acts, &probe, &mut grads);
        for (tensor, index) in [(0, 7), (1, 2), (2, 11), (3, 4), (4, 9), (5, 3)] {
            let h = 1e-2_f32;
            let mut plus = head.clone();
            plus.slices_mut()[tensor][index] += h;
            let mut minus = head.clone();
            minus.slices_mut()[tensor][index] -= h;
            let numeric = (objective(&plus) - objective(&minus)) / (2.0 * f64::from(h));
            let analytic = f64::from(grads.slices()[tensor][index]);
            assert!(
                (numeric - analytic).abs() < 2e-3 * (1.0 + analytic.abs()),
                "tensor {tensor} index {index}: numeric {numeric}, analytic {analytic}"
            );
        }
    }

    #[test]
    fn standardized_columns_have_zero_mean_and_unit_spread() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let samples: Vec<Array2<f32>> = (0..2)
            .map(|_| {
                let mut x = Array2::from_shape_fn((50, FEATURES), |(_, j)| {
                    j as f32 + rng.random_range(-2.0..2.0_f32) * (1.0 + j as f32)
                });
                x.column_mut(FEATURES - 1).fill(1.0);
                x
            })
            .collect();
        let standardize = Standardize::fit(&samples);
        let mut x = samples[0].clone();
        x.append(Axis(0), samples[1].view()).expect("same width");
        standardize.apply(&mut x);
        for j in 0..FEATURES {
            let column = x.column(j);
            let mean = column.mean().expect("rows");
            let spread = column.std(0.0);
            assert!(mean.abs() < 1e-3, "column {j}: mean {mean}");
            let want = if j == FEATURES - 1 { 0.0 } else { 1.0 };
            assert!((spread - want).abs() < 1e-3, "column {j}: spread {spread}");
        }
    }

    #[test]
    fn features_are_logits_and_level() {
        let anchors = crate::backbone::anchors(32);
        // 16 + 4 + 1 anchors; fill the last (stride 32).
        let mut raw = Array2::<f32>::zeros((anchors.len(), RAW));
        raw[[20, 4]] = 0.5;
        raw[[20, 5]] = 1.0;
        raw[[20, 6]] = 0.0;
        let x = features(&raw, &anchors);
        assert!(x[[20, 4]].abs() < 1e-6);
        // ln((1 - 2^-24) / 2^-24) and ln(1e-12).
        assert!(
            (x[[20, 5]] - 16.635_532 / LOGIT_SCALE).abs() < 1e-3,
            "{}",
            x[[20, 5]]
        );
        assert!(
            (x[[20, 6]] + 27.631_021 / LOGIT_SCALE).abs() < 1e-3,
            "{}",
            x[[20, 6]]
        );
        assert_eq!(
            x.row(20).iter().skip(RAW).copied().collect::<Vec<_>>(),
            [0.0, 0.0, 1.0]
        );
        assert_eq!(
            x.row(0).iter().skip(RAW).copied().collect::<Vec<_>>(),
            [1.0, 0.0, 0.0]
        );
    }
}
