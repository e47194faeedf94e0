//! Linear-time filters: box means by running sums (any radius, same cost), the guided filter built
//! from them, a Gaussian approximated by three box passes, pooling and bilinear resampling.

/// A sample type the box filter can accumulate in `f64`.
pub trait Sample: Copy + Default {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl Sample for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Sample for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// `1 / count` of a clamped window of radius `r` at each of `n` positions.
fn inverse_counts(n: usize, r: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let lo = i.saturating_sub(r);
            let hi = (i + r).min(n - 1);
            1.0 / (hi - lo + 1) as f64
        })
        .collect()
}

/// Mean over a `(2 rx + 1) x (2 ry + 1)` window clipped to the image (normalised by the pixels
/// actually inside), for `c` interleaved channels. Running sums in `f64`: O(1) per pixel whatever
/// the radius, and exact enough that a constant image comes back unchanged.
pub fn box_mean<T: Sample>(
    src: &[T],
    w: usize,
    h: usize,
    c: usize,
    rx: usize,
    ry: usize,
) -> Vec<T> {
    let stride = w * c;
    if w == 0 || h == 0 || src.len() != stride * h {
        return src.to_vec();
    }
    if c == 1 {
        return box_mean_1(src, w, h, rx, ry);
    }
    let mut tmp = vec![T::default(); src.len()];
    let inv_x = inverse_counts(w, rx);
    let mut acc = vec![0.0f64; c];
    for (row, out) in src.chunks_exact(stride).zip(tmp.chunks_exact_mut(stride)) {
        acc.fill(0.0);
        for px in row[..(rx.min(w - 1) + 1) * c].chunks_exact(c) {
            for (a, v) in acc.iter_mut().zip(px) {
                *a += v.to_f64();
            }
        }
        for x in 0..w {
            let inv = inv_x[x];
            for k in 0..c {
                out[x * c + k] = T::from_f64(acc[k] * inv);
            }
            if x + rx + 1 < w {
                let add = (x + rx + 1) * c;
                for k in 0..c {
                    acc[k] += row[add + k].to_f64();
                }
            }
            if x >= rx {
                let sub = (x - rx) * c;
                for k in 0..c {
                    acc[k] -= row[sub + k].to_f64();
                }
            }
        }
    }
    let mut out = vec![T::default(); src.len()];
    let inv_y = inverse_counts(h, ry);
    let mut acc = vec![0.0f64; stride];
    for row in tmp[..(ry.min(h - 1) + 1) * stride].chunks_exact(stride) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v.to_f64();
        }
    }
    for y in 0..h {
        let inv = inv_y[y];
        for (o, a) in out[y * stride..(y + 1) * stride].iter_mut().zip(&acc) {
            *o = T::from_f64(a * inv);
        }
        if y + ry + 1 < h {
            let add = &tmp[(y + ry + 1) * stride..(y + ry + 2) * stride];
            for (a, v) in acc.iter_mut().zip(add) {
                *a += v.to_f64();
            }
        }
        if y >= ry {
            let sub = &tmp[(y - ry) * stride..(y - ry + 1) * stride];
            for (a, v) in acc.iter_mut().zip(sub) {
                *a -= v.to_f64();
            }
        }
    }
    out
}

/// [`box_mean`] of one channel, without the per-channel inner loops.
fn box_mean_1<T: Sample>(src: &[T], w: usize, h: usize, rx: usize, ry: usize) -> Vec<T> {
    let mut tmp = vec![0.0f64; src.len()];
    let inv_x = inverse_counts(w, rx);
    let first = rx.min(w - 1) + 1;
    for (row, out) in src.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
        let mut acc = 0.0f64;
        for v in &row[..first] {
            acc += v.to_f64();
        }
        for x in 0..w {
            out[x] = acc * inv_x[x];
            if x + rx + 1 < w {
                acc += row[x + rx + 1].to_f64();
            }
            if x >= rx {
                acc -= row[x - rx].to_f64();
            }
        }
    }
    let mut out = vec![T::default(); src.len()];
    let inv_y = inverse_counts(h, ry);
    let mut acc = vec![0.0f64; w];
    for row in tmp[..(ry.min(h - 1) + 1) * w].chunks_exact(w) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    for y in 0..h {
        let inv = inv_y[y];
        for (o, a) in out[y * w..(y + 1) * w].iter_mut().zip(&acc) {
            *o = T::from_f64(a * inv);
        }
        if y + ry + 1 < h {
            for (a, v) in acc.iter_mut().zip(&tmp[(y + ry + 1) * w..(y + ry + 2) * w]) {
                *a += v;
            }
        }
        if y >= ry {
            for (a, v) in acc.iter_mut().zip(&tmp[(y - ry) * w..(y - ry + 1) * w]) {
                *a -= v;
            }
        }
    }
    out
}

/// [`box_mean`] of `N` interleaved `f64` channels stored as arrays (one pass for several
/// quantities, as the guided filter needs), radius `r` both ways.
fn box_mean_n<const N: usize>(src: &[[f64; N]], w: usize, h: usize, r: usize) -> Vec<[f64; N]> {
    if w == 0 || h == 0 || src.len() != w * h {
        return src.to_vec();
    }
    let add = |acc: &mut [f64; N], v: &[f64; N]| {
        for k in 0..N {
            acc[k] += v[k];
        }
    };
    let sub = |acc: &mut [f64; N], v: &[f64; N]| {
        for k in 0..N {
            acc[k] -= v[k];
        }
    };
    let mut tmp = vec![[0.0f64; N]; src.len()];
    let inv_x = inverse_counts(w, r);
    let first = r.min(w - 1) + 1;
    for (row, out) in src.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
        let mut acc = [0.0f64; N];
        for v in &row[..first] {
            add(&mut acc, v);
        }
        for x in 0..w {
            out[x] = acc.map(|a| a * inv_x[x]);
            if x + r + 1 < w {
                add(&mut acc, &row[x + r + 1]);
            }
            if x >= r {
                sub(&mut acc, &row[x - r]);
            }
        }
    }
    let mut out = vec![[0.0f64; N]; src.len()];
    let inv_y = inverse_counts(h, r);
    let mut acc = vec![[0.0f64; N]; w];
    for row in tmp[..(r.min(h - 1) + 1) * w].chunks_exact(w) {
        for (a, v) in acc.iter_mut().zip(row) {
            add(a, v);
        }
    }
    for y in 0..h {
        let inv = inv_y[y];
        for (o, a) in out[y * w..(y + 1) * w].iter_mut().zip(&acc) {
            *o = a.map(|v| v * inv);
        }
        if y + r + 1 < h {
            for (a, v) in acc.iter_mut().zip(&tmp[(y + r + 1) * w..(y + r + 2) * w]) {
                add(a, v);
            }
        }
        if y >= r {
            for (a, v) in acc.iter_mut().zip(&tmp[(y - r) * w..(y - r + 1) * w]) {
                sub(a, v);
            }
        }
    }
    out
}

/// Box radius of each of three passes whose composition approximates a Gaussian of `sigma`
/// (variance of a box of width `b` is `(b^2 - 1) / 12`).
pub fn box_radius_for_sigma(sigma: f32) -> usize {
    let width = (4.0 * sigma * sigma + 1.0).sqrt();
    (((width - 1.0) / 2.0).round().max(0.0)) as usize
}

/// A Gaussian blur of standard deviation about `sigma`, as three box passes.
pub fn gaussian_blur(src: &[f32], w: usize, h: usize, c: usize, sigma: f32) -> Vec<f32> {
    let r = box_radius_for_sigma(sigma);
    if r == 0 {
        return src.to_vec();
    }
    let once = box_mean(src, w, h, c, r, r);
    let twice = box_mean(&once, w, h, c, r, r);
    box_mean(&twice, w, h, c, r, r)
}

/// Mean pooling by `s x s` blocks (the last ones ragged) of one channel, into `f64`.
pub fn pool_mean(src: &[f32], w: usize, h: usize, s: usize) -> (Vec<f64>, usize, usize) {
    let (lw, lh) = (w.div_ceil(s), h.div_ceil(s));
    let mut out = vec![0.0f64; lw * lh];
    for (y, row) in src.chunks_exact(w).enumerate() {
        let dst = &mut out[(y / s) * lw..(y / s + 1) * lw];
        for (d, block) in dst.iter_mut().zip(row.chunks(s)) {
            let mut acc = 0.0f32;
            for v in block {
                acc += v;
            }
            *d += f64::from(acc);
        }
    }
    for ly in 0..lh {
        let rows = (h.min((ly + 1) * s) - ly * s) as f64;
        for lx in 0..lw {
            let cols = (w.min((lx + 1) * s) - lx * s) as f64;
            out[ly * lw + lx] /= rows * cols;
        }
    }
    (out, lw, lh)
}

/// Bilinear sampling positions from a low-resolution grid (cell centres at `(i + 0.5) s - 0.5`)
/// to `n` full-resolution positions: `(i0, i1, weight of i1)`.
pub fn upsample_taps(n: usize, low: usize, s: usize) -> Vec<(usize, usize, f32)> {
    (0..n)
        .map(|x| {
            let u = (x as f64 + 0.5) / s as f64 - 0.5;
            if u <= 0.0 || low == 1 {
                return (0, 0, 0.0);
            }
            let i0 = (u.floor() as usize).min(low - 1);
            let i1 = (i0 + 1).min(low - 1);
            let f = if i1 == i0 {
                0.0
            } else {
                (u - i0 as f64) as f32
            };
            (i0, i1, f)
        })
        .collect()
}

/// The coefficients of a guided filter (He, Sun, Tang 2010/2013), `q = a I + b`, computed from
/// inputs reduced by `s` (block means or one sample per block; the "fast guided filter", He and Sun 2015: the linear coefficients are
/// smooth, so they are computed at low resolution and upsampled; the output still follows the
/// full-resolution guide's edges). `s = 1` is the exact filter. The low-resolution work is in
/// `f64`, so a constant input comes back unchanged to about 1e-7.
#[derive(Debug, Clone)]
pub struct GuidedCoefficients {
    mean_ab: Vec<[f64; 2]>,
    lw: usize,
    xt: Vec<(usize, usize, f32)>,
    yt: Vec<(usize, usize, f32)>,
}

impl GuidedCoefficients {
    /// From the guide and input reduced by `s` (`lw x lh`: block means as [`pool_mean`] gives,
    /// or one sample per block) of a `w x h` frame, the full-resolution radius `r` and
    /// regularisation `eps`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the filter's own parameters and sizes"
    )]
    pub fn new(
        guide: &[f64],
        p: &[f64],
        lw: usize,
        lh: usize,
        w: usize,
        h: usize,
        r: usize,
        eps: f64,
        s: usize,
    ) -> Self {
        let s = s.max(1);
        let rl = if s == 1 {
            r
        } else {
            ((r as f64 / s as f64).round() as usize).max(1)
        };
        // Means of I, p, I p and I^2 in one pass, then of a and b in another.
        let stack: Vec<[f64; 4]> = guide
            .iter()
            .zip(p)
            .map(|(&i, &q)| [i, q, i * q, i * i])
            .collect();
        let means = box_mean_n(&stack, lw, lh, rl);
        let ab: Vec<[f64; 2]> = means
            .iter()
            .map(|&[mi, mp, mip, mii]| {
                let cov = mip - mi * mp;
                let var = (mii - mi * mi).max(0.0);
                let a = cov / (var + eps);
                [a, mp - a * mi]
            })
            .collect();
        Self {
            mean_ab: box_mean_n(&ab, lw, lh, rl),
            lw,
            xt: upsample_taps(w, lw, s),
            yt: upsample_taps(h, lh, s),
        }
    }

    /// The low-resolution coefficients `(a, b)` interpolated to full-resolution row `y` (one
    /// entry per low-resolution column); [`Self::taps`] then interpolates along the row.
    pub fn row_low(&self, y: usize, scratch: &mut Vec<(f32, f32)>) {
        let lw = self.lw;
        let (y0, y1, fy) = self.yt[y];
        let fy = f64::from(fy);
        scratch.clear();
        for lx in 0..lw {
            let ([a0, b0], [a1, b1]) = (self.mean_ab[y0 * lw + lx], self.mean_ab[y1 * lw + lx]);
            scratch.push((
                (a0 * (1.0 - fy) + a1 * fy) as f32,
                (b0 * (1.0 - fy) + b1 * fy) as f32,
            ));
        }
    }

    /// Bilinear taps along a row: `(low column, next low column, weight of the next)`.
    pub fn taps(&self) -> &[(usize, usize, f32)] {
        &self.xt
    }

    /// The coefficients `a` and `b` of every pixel of full-resolution row `y` (bilinear).
    pub fn row(&self, y: usize, a: &mut [f32], b: &mut [f32], scratch: &mut Vec<(f32, f32)>) {
        self.row_low(y, scratch);
        for ((av, bv), &(x0, x1, fx)) in a.iter_mut().zip(b.iter_mut()).zip(&self.xt) {
            let (a0, b0) = scratch[x0];
            let (a1, b1) = scratch[x1];
            *av = a0 + (a1 - a0) * fx;
            *bv = b0 + (b1 - b0) * fx;
        }
    }
}

/// The guided filter of `p` with guide `guide` (one channel each, full resolution), radius `r`,
/// regularisation `eps`, subsampling `s` (see [`GuidedCoefficients`]).
pub fn guided_filter(
    guide: &[f32],
    p: &[f32],
    w: usize,
    h: usize,
    r: usize,
    eps: f64,
    s: usize,
) -> Vec<f32> {
    let s = s.max(1);
    let (gi, lw, lh) = pool_mean(guide, w, h, s);
    let (gp, _, _) = pool_mean(p, w, h, s);
    let coefficients = GuidedCoefficients::new(&gi, &gp, lw, lh, w, h, r, eps, s);
    let mut out = vec![0.0f32; w * h];
    let (mut a, mut b) = (vec![0.0f32; w], vec![0.0f32; w]);
    let mut scratch = Vec::with_capacity(lw);
    for y in 0..h {
        coefficients.row(y, &mut a, &mut b, &mut scratch);
        let g = &guide[y * w..(y + 1) * w];
        for (x, o) in out[y * w..(y + 1) * w].iter_mut().enumerate() {
            *o = a[x] * g[x] + b[x];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_mean_matches_a_direct_window_mean() {
        let (w, h) = (13, 7);
        let src: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 11) as f32).collect();
        let out = box_mean(&src, w, h, 1, 2, 3);
        for y in 0..h {
            for x in 0..w {
                let (mut sum, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(3)..=(y + 3).min(h - 1) {
                    for xx in x.saturating_sub(2)..=(x + 2).min(w - 1) {
                        sum += src[yy * w + xx];
                        n += 1.0;
                    }
                }
                assert!((out[y * w + x] - sum / n).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn guided_filter_keeps_a_constant_input() {
        let (w, h) = (37, 23);
        let guide: Vec<f32> = (0..w * h)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect();
        let p = vec![0.3125f32; w * h];
        for s in [1, 4] {
            let q = guided_filter(&guide, &p, w, h, 8, 1e-3, s);
            assert!(q.iter().all(|v| (v - 0.3125).abs() < 1e-6), "s = {s}");
        }
    }
}
