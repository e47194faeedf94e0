//! report.md: the numbers as tables, for reading in a terminal, a pull request or a diff between
//! two runs.

use std::fmt::Write;

use crate::metrics::{Figures, MetricsFile};
use crate::tables::{self, Table};

/// A cell's text safe inside a Markdown table row.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn table(out: &mut String, t: &Table) {
    let row = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    out.push_str(&row(&t.header));
    let rule: Vec<&str> = (0..t.header.len())
        .map(|i| if i == 0 { "---" } else { "--:" })
        .collect();
    let _ = writeln!(out, "| {} |", rule.join(" | "));
    for r in &t.rows {
        out.push_str(&row(r));
    }
    out.push('\n');
}

/// A line of free text as one Markdown paragraph line (no accidental headings or tables).
fn line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

pub(crate) fn render(m: &MetricsFile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", line(&m.name));
    let _ = writeln!(
        out,
        "Run `{}`, created {}. Every number here is in `metrics.json` (with each seed's value); \
         `report.html` has the plots.\n",
        line(&m.run_id),
        line(&m.created_at)
    );

    out.push_str("## What was compared\n\n");
    for (arm, a) in m.arms.iter() {
        let seeds: Vec<String> = a.models.iter().map(|s| s.seed.to_string()).collect();
        let _ = writeln!(
            out,
            "- **{arm}**: {} model{} (seed{} {})",
            a.models.len(),
            if a.models.len() == 1 { "" } else { "s" },
            if a.models.len() == 1 { "" } else { "s" },
            seeds.join(", ")
        );
    }
    out.push_str(
        "- Figures: COCO AP50 (`IoU` 0.5) and AP (`IoU` 0.50:0.95), area all, 100 detections \
         per image, computed by roadsynth-eval (pycocotools' numbers); \"all classes\" is COCO's \
         mean over classes.\n",
    );
    out.push_str(
        "- Deltas are `b - a` of the arms' means over seeds; their intervals are paired \
         bootstrap intervals (both models re-scored on the same resampled test images).\n",
    );
    for note in &m.notes {
        let _ = writeln!(out, "- {}", line(note));
    }
    out.push('\n');

    out.push_str("## Summary\n\n");
    table(&mut out, &tables::summary(m));
    if !m.deltas.is_empty() {
        table(&mut out, &tables::summary_deltas(m));
    }

    for (name, info) in m.test_sets.iter() {
        let _ = writeln!(out, "## Test set `{}`\n", line(name));
        let _ = writeln!(
            out,
            "{} images, {} objects; ground truth: {}.\n",
            info.images,
            info.objects,
            line(&info.ground_truth)
        );
        out.push_str("### AP50 per class\n\n");
        table(&mut out, &tables::per_class(m, name, |f: &Figures| &f.ap50));
        out.push_str("### AP (IoU 0.50:0.95) per class\n\n");
        table(&mut out, &tables::per_class(m, name, |f: &Figures| &f.ap));
        let slices = tables::per_slice(m, name, |f: &Figures| &f.ap50);
        if !slices.rows.is_empty() {
            out.push_str("### AP50 per slice (all classes)\n\n");
            table(&mut out, &slices);
        }
        for d in m.deltas.iter().filter(|d| d.test_set == name) {
            let _ = writeln!(out, "### {} - {}\n", d.b, d.a);
            table(&mut out, &tables::deltas(d));
        }
    }

    out.push_str("## Models\n\n");
    table(&mut out, &tables::models(m));

    out.push_str("## Caveats\n\n");
    for c in &m.caveats {
        let _ = writeln!(out, "- {}", line(c));
    }
    out
}
