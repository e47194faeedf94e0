//! A dataset's own statistics of a class, to refine the scenario's priors where the class exists.

use std::collections::BTreeMap;

use roadsynth_scenario::settings::ObjectClass;
use roadsynth_types::Annotation;

/// Depth and height statistics of one class in a dataset (from KITTI-style 3D labels).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassStats {
    /// The dataset's class name, matched case-insensitively against a scenario class or label.
    pub class: String,
    pub samples: usize,
    /// Mean and standard deviation of ln(depth in metres).
    pub ln_depth_mean: f64,
    pub ln_depth_std: f64,
    pub height_mean: f64,
    pub height_std: f64,
}

/// Fewer labelled objects than this leave the priors alone.
pub const MIN_SAMPLES: usize = 10;

impl ClassStats {
    pub fn matches(&self, class: &ObjectClass) -> bool {
        self.class.eq_ignore_ascii_case(&class.name)
            || self.class.eq_ignore_ascii_case(&class.label)
    }

    /// Replaces the prior's moments by the data's when there is enough data.
    pub fn refine(
        &self,
        mu: &mut f64,
        sigma: &mut f64,
        height_mean: &mut f64,
        height_std: &mut f64,
    ) {
        if self.samples < MIN_SAMPLES {
            return;
        }
        *mu = self.ln_depth_mean;
        *sigma = self.ln_depth_std.max(1e-3);
        *height_mean = self.height_mean;
        *height_std = self.height_std;
    }
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Per-class statistics of every annotation with 3D fields (real ones only).
pub fn class_stats_from_annotations<'a>(
    annotations: impl IntoIterator<Item = &'a Annotation>,
) -> Vec<ClassStats> {
    let mut stats = ClassStatsBuilder::default();
    stats.add(annotations);
    stats.finish()
}

/// [`class_stats_from_annotations`] one frame at a time: it keeps two numbers per usable
/// annotation, never the annotations.
#[derive(Debug, Clone, Default)]
pub struct ClassStatsBuilder {
    /// Per class: ln(depth) and height of each usable annotation.
    by_class: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
}

impl ClassStatsBuilder {
    pub fn add<'a>(&mut self, annotations: impl IntoIterator<Item = &'a Annotation>) {
        for a in annotations {
            if let (Some(k), true) = (a.kitti, a.origin.is_real() && !a.ignore) {
                let z = k.location_xyz[2];
                if z > 0.5 && k.dimensions_hwl[0] > 0.0 {
                    let e = self.by_class.entry(a.class.clone()).or_default();
                    e.0.push(z.ln());
                    e.1.push(k.dimensions_hwl[0]);
                }
            }
        }
    }

    pub fn finish(self) -> Vec<ClassStats> {
        self.by_class
            .into_iter()
            .map(|(class, (ln_z, h))| {
                let (ln_depth_mean, ln_depth_std) = mean_std(&ln_z);
                let (height_mean, height_std) = mean_std(&h);
                ClassStats {
                    class,
                    samples: ln_z.len(),
                    ln_depth_mean,
                    ln_depth_std,
                    height_mean,
                    height_std,
                }
            })
            .collect()
    }
}
