//! report.html: one self-contained file (inline CSS, inline SVG plots, images as `data:` URIs)
//! that opens the same anywhere, offline, and can be attached or archived as is.

use std::fmt::Write;
use std::io::Cursor;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::ReportError;
use crate::metrics::{Figure, Figures, MetricsFile};
use crate::model::{Arm, BoxKind, Example, Experiment};
use crate::plots::{self, BarGroup};
use crate::tables::{self, Table};

const CSS: &str = r"
body { font-family: sans-serif; margin: 24px; color: #222; background: #fff; max-width: 1240px; }
h1 { font-size: 26px; margin: 0 0 4px 0; }
h2 { font-size: 20px; margin: 28px 0 8px 0; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px 0; }
p.meta { color: #555; margin: 0 0 12px 0; }
.legend { display: flex; gap: 18px; margin: 8px 0 12px 0; font-size: 14px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: -1px; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plots svg { border: 1px solid #e4e4e4; }
table { border-collapse: collapse; margin: 6px 0 14px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; }
td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
.examples { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
.examples figure { margin: 0; }
.examples svg { width: 100%; height: auto; display: block; background: #000; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; }
ul { margin: 4px 0; }
";

/// Text as HTML character data or an attribute value.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, t: &Table) {
    out.push_str("<table>\n<tr>");
    for h in &t.header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn legend(out: &mut String, arms: &[Arm]) {
    out.push_str("<div class=\"legend\">");
    for a in arms {
        let _ = write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            a.css(),
            a.as_str()
        );
    }
    out.push_str("<span>whiskers: bootstrap interval over test images; dots: seeds</span></div>\n");
}

/// The bar groups of one test set: all classes first, then each class.
fn bar_groups<'a>(
    m: &'a MetricsFile,
    test_set: &str,
    pick: fn(&Figures) -> &Figure,
) -> Vec<BarGroup<'a>> {
    let arm_sets: Vec<_> = tables::arms(m)
        .into_iter()
        .filter_map(|a| Some((a, m.arms.get(a.as_str())?.test_sets.get(test_set)?)))
        .collect();
    let mut groups = vec![BarGroup {
        label: "all classes".to_string(),
        bars: arm_sets
            .iter()
            .map(|(a, t)| (*a, pick(&t.overall)))
            .collect(),
    }];
    if let Some(info) = m.test_sets.get(test_set) {
        for class in info.classes.keys() {
            groups.push(BarGroup {
                label: class.to_string(),
                bars: arm_sets
                    .iter()
                    .filter_map(|(a, t)| Some((*a, pick(t.classes.get(class)?))))
                    .collect(),
            });
        }
    }
    groups
}

fn pr_section(
    out: &mut String,
    e: &Experiment,
    test_set: &str,
    classes: &[&str],
) -> Result<(), ReportError> {
    let mut drawn = String::new();
    for class in classes {
        let mut curves = Vec::new();
        for arm in Arm::ALL {
            let mut first = true;
            for p in e
                .pr_curves
                .iter()
                .filter(|p| p.test_set == test_set && p.arm == arm && p.curve.class == *class)
            {
                curves.push((arm, first, &p.curve));
                first = false;
            }
        }
        let Some((_, _, c)) = curves.first() else {
            continue;
        };
        let title = format!("{class} (IoU {:.2})", c.iou);
        drawn.push_str(&plots::pr_curves(&title, &curves)?);
    }
    if !drawn.is_empty() {
        out.push_str("<h3>Precision-recall per class</h3>\n<div class=\"plots\">\n");
        out.push_str(&drawn);
        out.push_str("</div>\n");
    }
    Ok(())
}

/// The colour and dash pattern of a box on an example.
fn box_style(kind: BoxKind) -> (String, &'static str) {
    match kind {
        BoxKind::GroundTruth => ("#FFFFFF".to_string(), "6 4"),
        BoxKind::Inserted => ("#E0119D".to_string(), "none"),
        BoxKind::Detection(arm) => (arm.css(), "none"),
    }
}

/// One example: the frame as a `data:` URI under an SVG with its boxes, in the frame's pixel
/// coordinates so the boxes need no scaling.
fn example(e: &Experiment, x: &Example) -> Result<String, ReportError> {
    let bad = |reason: String| ReportError::Image {
        run_id: e.run_id.clone(),
        caption: x.caption.clone(),
        reason,
    };
    let reader = image::ImageReader::new(Cursor::new(&x.image))
        .with_guessed_format()
        .map_err(|err| bad(err.to_string()))?;
    let mime = match reader.format() {
        Some(image::ImageFormat::Png) => "image/png",
        Some(image::ImageFormat::Jpeg) => "image/jpeg",
        other => return Err(bad(format!("format {other:?}, not PNG or JPEG"))),
    };
    let (w, h) = reader
        .into_dimensions()
        .map_err(|err| bad(err.to_string()))?;
    let stroke = (f64::from(w) / 320.0).max(2.0);
    let font = (f64::from(w) / 50.0).max(12.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">\
         <image href=\"data:{mime};base64,{}\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\"/>",
        esc(&x.caption),
        STANDARD.encode(&x.image)
    );
    for b in &x.boxes {
        let (colour, dash) = box_style(b.kind);
        let [x0, y0, x1, y1] = b.bbox;
        let _ = write!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
             stroke=\"{colour}\" stroke-width=\"{stroke:.1}\" stroke-dasharray=\"{dash}\"/>",
            (x1 - x0).max(0.0),
            (y1 - y0).max(0.0)
        );
        if !b.label.is_empty() {
            let _ = write!(
                svg,
                "<text x=\"{x0:.1}\" y=\"{:.1}\" font-size=\"{font:.1}\" fill=\"{colour}\" \
                 stroke=\"#000\" stroke-width=\"{:.1}\" paint-order=\"stroke\">{}</text>",
                (y0 - stroke).max(font),
                font / 6.0,
                esc(&b.label)
            );
        }
    }
    svg.push_str("</svg>");
    Ok(format!(
        "<figure>{svg}<figcaption>{}</figcaption></figure>\n",
        esc(&x.caption)
    ))
}

pub(crate) fn render(m: &MetricsFile, e: &Experiment) -> Result<String, ReportError> {
    let arms = tables::arms(m);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&m.name)
    );
    let _ = writeln!(
        out,
        "<h1>{}</h1>\n<p class=\"meta\">run {}, created {}</p>",
        esc(&m.name),
        esc(&m.run_id),
        esc(&m.created_at)
    );
    legend(&mut out, &arms);

    out.push_str("<h2>Summary</h2>\n");
    table(&mut out, &tables::summary(m));
    if !m.deltas.is_empty() {
        table(&mut out, &tables::summary_deltas(m));
    }

    for (name, info) in m.test_sets.iter() {
        let _ = writeln!(
            out,
            "<h2>Test set {}</h2>\n<p class=\"meta\">{} images, {} objects; ground truth: {}</p>",
            esc(name),
            info.images,
            info.objects,
            esc(&info.ground_truth)
        );
        out.push_str("<div class=\"plots\">\n");
        out.push_str(&plots::bars(
            &format!("AP50 per class: {name}"),
            "AP50",
            &bar_groups(m, name, |f| &f.ap50),
        )?);
        out.push_str(&plots::bars(
            &format!("AP (IoU 0.50:0.95) per class: {name}"),
            "AP",
            &bar_groups(m, name, |f| &f.ap),
        )?);
        out.push_str("</div>\n");
        let classes: Vec<&str> = info.classes.keys().collect();
        pr_section(&mut out, e, name, &classes)?;
        out.push_str("<h3>AP50 per class</h3>\n");
        table(&mut out, &tables::per_class(m, name, |f| &f.ap50));
        out.push_str("<h3>AP (IoU 0.50:0.95) per class</h3>\n");
        table(&mut out, &tables::per_class(m, name, |f| &f.ap));
        let slices = tables::per_slice(m, name, |f| &f.ap50);
        if !slices.rows.is_empty() {
            out.push_str("<h3>AP50 per slice (all classes)</h3>\n");
            table(&mut out, &slices);
        }
        for d in m.deltas.iter().filter(|d| d.test_set == name) {
            let _ = writeln!(out, "<h3>{} - {}</h3>", d.b, d.a);
            table(&mut out, &tables::deltas(d));
        }
    }

    if !e.examples.is_empty() {
        out.push_str(
            "<h2>Examples</h2>\n<p class=\"meta\">dashed white: ground truth; magenta: \
             inserted objects; arm colours: that arm's detections</p>\n\
             <div class=\"examples\">\n",
        );
        for x in &e.examples {
            out.push_str(&example(e, x)?);
        }
        out.push_str("</div>\n");
    }

    out.push_str("<h2>What was compared</h2>\n<ul>\n");
    for note in &m.notes {
        let _ = writeln!(out, "<li>{}</li>", esc(note));
    }
    out.push_str(
        "<li>Figures: COCO AP50 and AP (IoU 0.50:0.95), area all, 100 detections per image, \
         from roadsynth-eval. Deltas: b - a of the arms' means over seeds, with paired \
         bootstrap intervals.</li>\n</ul>\n",
    );
    out.push_str("<h2>Models</h2>\n");
    table(&mut out, &tables::models(m));
    out.push_str("<h2>Caveats</h2>\n<ul>\n");
    for c in &m.caveats {
        let _ = writeln!(out, "<li>{}</li>", esc(c));
    }
    out.push_str("</ul>\n</body>\n</html>\n");
    Ok(out)
}
