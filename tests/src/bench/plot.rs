//! PNG plots with plotters' bitmap backend; text with the DejaVu font
//! embedded by the `dejavu` crate (no system fonts needed).

use std::{path::Path, sync::Once};

use anyhow::{Result, anyhow};
use plotters::{prelude::*, style::FontStyle};

/// One line of a chart: (x, median, min, max) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64, f64)>,
    /// Drawn dashed-looking (thin, no markers): baselines.
    pub baseline: bool,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// Logarithmic x axis.
    pub log_x: bool,
    pub series: Vec<Series>,
}

/// Distinguishable on white (ColorBrewer Set1 and Dark2 picks).
const PALETTE: [RGBColor; 10] = [
    RGBColor(228, 26, 28),
    RGBColor(55, 126, 184),
    RGBColor(77, 175, 74),
    RGBColor(152, 78, 163),
    RGBColor(255, 127, 0),
    RGBColor(166, 86, 40),
    RGBColor(231, 41, 138),
    RGBColor(27, 158, 119),
    RGBColor(128, 128, 0),
    RGBColor(0, 0, 128),
];

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| ())
            .expect("the embedded DejaVu font");
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// Draws `charts` side by side into one PNG at `path`.
pub fn draw(path: &Path, charts: &[Chart]) -> Result<()> {
    fonts();
    let width = 900 * charts.len() as u32;
    let root = BitMapBackend::new(path, (width, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((1, charts.len()));
    for (area, chart) in areas.iter().zip(charts) {
        draw_one(area, chart)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_one(area: &DrawingArea<BitMapBackend, plotters::coord::Shift>, c: &Chart) -> Result<()> {
    let xs = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (xmin, xmax) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    // Room above the medians for the legend; spread bars may be clipped.
    let ymax = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        * 1.7;
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(c.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80);
    let palette = |i: usize| PALETTE[i % PALETTE.len()].to_rgba();
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(c.x_desc)
                .x_label_formatter(&|x| super::thousands(x.round() as u64))
                .y_label_formatter(&|y| format!("{y}"))
                .y_desc(c.y_desc)
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 15))
                .draw()
                .map_err(err)?;
            for (i, s) in c.series.iter().enumerate() {
                let color = if s.baseline {
                    let grey = [0u8, 110, 170][i % 3];
                    RGBColor(grey, grey, grey).to_rgba()
                } else {
                    palette(i)
                };
                let width = if s.baseline { 1 } else { 2 };
                let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(width)))
                    .map_err(err)?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if !s.baseline {
                    chart
                        .draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(err)?;
                    // Spread: min..max as a vertical bar.
                    chart
                        .draw_series(s.points.iter().map(|&(x, _, lo, hi)| {
                            PathElement::new(
                                vec![(x, lo), (x, hi.min(ymax))],
                                color.stroke_width(1),
                            )
                        }))
                        .map_err(err)?;
                }
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }};
    }
    if c.log_x {
        body!(
            builder
                .build_cartesian_2d((xmin * 0.7..xmax * 1.4).log_scale(), 0.0..ymax)
                .map_err(err)?
        );
    } else {
        let pad = (xmax - xmin).max(1.0) * 0.05;
        body!(
            builder
                .build_cartesian_2d(xmin - pad..xmax + pad, 0.0..ymax)
                .map_err(err)?
        );
    }
    Ok(())
}
