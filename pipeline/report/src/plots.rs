//! The report's plots, drawn with plotters' SVG backend: integer coordinates and fixed fonts by
//! name, so that the same numbers always give the same bytes, and text left to the browser.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;
use crate::metrics::Figure;
use crate::model::{Arm, PrCurve};

const FONT: &str = "sans-serif";

fn colour(arm: Arm) -> RGBColor {
    let (r, g, b) = arm.rgb();
    RGBColor(r, g, b)
}

/// plotters' errors carry the backend's error type; the report only needs the message.
fn plot_err<E: std::fmt::Debug>(plot: &str) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot {
        plot: plot.to_string(),
        reason: format!("{e:?}"),
    }
}

/// An SVG document as an element for inline HTML: the namespace declaration is dropped (the HTML
/// parser puts `<svg>` in the SVG namespace anyway), so the page holds no URL at all.
fn inline(svg: &str) -> String {
    svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
}

/// One group of bars: a class (or all classes) and the figure of each arm.
pub(crate) struct BarGroup<'a> {
    pub(crate) label: String,
    pub(crate) bars: Vec<(Arm, &'a Figure)>,
}

/// Bars of each arm's mean per class, with whiskers for the bootstrap interval (the span of the
/// seeds' intervals with several seeds) and a dot for each seed when there is more than one.
pub(crate) fn bars(
    title: &str,
    y_label: &str,
    groups: &[BarGroup<'_>],
) -> Result<String, ReportError> {
    let (width, height) = (600_u32, 340_u32);
    let err = plot_err(title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let n = groups.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 17))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..n, 0.0..1.0)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(6)
            .y_desc(y_label)
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(&err)?;
        for (g, group) in groups.iter().enumerate() {
            let slots = group.bars.len().max(1) as f64;
            // The group spans [g + 0.1, g + 0.9]; each arm gets an equal slot of it.
            let slot = 0.8 / slots;
            for (i, (arm, f)) in group.bars.iter().enumerate() {
                let x0 = g as f64 + 0.1 + slot * i as f64 + slot * 0.08;
                let x1 = x0 + slot * 0.84;
                let mid = f64::midpoint(x0, x1);
                if let Some(mean) = f.mean {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x0, 0.0), (x1, mean)],
                            colour(*arm).filled(),
                        )))
                        .map_err(&err)?;
                }
                if let Some(iv) = f.interval {
                    let cap = slot * 0.2;
                    let style = BLACK.stroke_width(1);
                    chart
                        .draw_series([
                            PathElement::new(vec![(mid, iv.lower), (mid, iv.upper)], style),
                            PathElement::new(
                                vec![(mid - cap, iv.lower), (mid + cap, iv.lower)],
                                style,
                            ),
                            PathElement::new(
                                vec![(mid - cap, iv.upper), (mid + cap, iv.upper)],
                                style,
                            ),
                        ])
                        .map_err(&err)?;
                }
                if f.seeds.len() > 1 {
                    chart
                        .draw_series(f.seeds.iter().filter_map(|s| {
                            s.value
                                .map(|v| Circle::new((mid, v), 2, BLACK.mix(0.7).filled()))
                        }))
                        .map_err(&err)?;
                }
            }
            let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
            let size = if groups.len() > 8 { 10 } else { 13 };
            let style = (FONT, size)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(group.label.clone(), (px, py + 6), style))
                .map_err(&err)?;
        }
        root.present().map_err(&err)?;
    }
    Ok(inline(&svg))
}

/// One class's PR curves, a line per model, coloured by arm; the first seed of an arm solid, the
/// others fainter, so that seeds are visible without a legend per seed.
pub(crate) fn pr_curves(
    title: &str,
    curves: &[(Arm, bool, &PrCurve)],
) -> Result<String, ReportError> {
    let (width, height) = (380_u32, 300_u32);
    let err = plot_err(title);
    let mut svg = String::new();
    {
        let root: DrawingArea<SVGBackend<'_>, Shift> =
            SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..1.0, 0.0..1.02)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_desc("recall")
            .y_desc("precision")
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(&err)?;
        for (arm, first, curve) in curves {
            let alpha = if *first { 1.0 } else { 0.45 };
            let points: Vec<(f64, f64)> = curve
                .recall
                .iter()
                .copied()
                .zip(curve.precision.iter().copied())
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points,
                    colour(*arm).mix(alpha).stroke_width(2),
                ))
                .map_err(&err)?;
        }
        root.present().map_err(&err)?;
    }
    Ok(inline(&svg))
}
