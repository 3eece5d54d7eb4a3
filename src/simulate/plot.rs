//! `--plot FILE.svg`: the run as one picture on a shared time axis: queue depth with
//! the watermarks, the level as coloured bands, the scale factor, the tokens all pods
//! granted against the provider's budget, desired and ready pods.

use super::budget::GrantSummary;
use super::canvas::{Area, DrawResult, FONT, Y_LABELS};
use super::fleet::GrantTrack;
use super::legend::{Swatch, legend_strip};
use super::model::{Run, Sample, Settings};
use super::report::{Summary, spec_row};
use crate::level::Level;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1100;
const RIGHT: u32 = 30;
/// Room above each panel for its legend strip.
const LEGEND: u32 = 30;
const OK_COLOR: RGBColor = RGBColor(46, 160, 67);
const SOFT_COLOR: RGBColor = RGBColor(230, 180, 0);
const HARD_COLOR: RGBColor = RGBColor(215, 48, 39);
const DEPTH_COLOR: RGBColor = RGBColor(31, 90, 180);
const SCRAPED_COLOR: RGBColor = RGBColor(140, 170, 215);
const DESIRED_COLOR: RGBColor = RGBColor(235, 110, 20);
const READY_COLOR: RGBColor = RGBColor(20, 20, 20);
const SCALE_COLOR: RGBColor = RGBColor(120, 60, 170);
const GREY: RGBColor = RGBColor(90, 90, 90);

/// Why the picture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    /// The cause is said in the message, so it is not also a `source`.
    #[error("cannot write --plot {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

fn draw_error<E: std::fmt::Display>(error: E) -> PlotError {
    PlotError::Draw(error.to_string())
}

fn level_color(level: Level) -> RGBColor {
    match level {
        Level::Ok => OK_COLOR,
        Level::Soft => SOFT_COLOR,
        Level::Hard => HARD_COLOR,
    }
}

/// Renders the run and writes it to `path`.
pub fn write(
    path: &Path,
    run: &Run,
    summary: &Summary,
    settings: &Settings,
) -> Result<(), PlotError> {
    let svg = render(run, summary, settings)?;
    std::fs::write(path, svg).map_err(|error| PlotError::Write {
        path: path.display().to_string(),
        error,
    })
}

/// The SVG text of the picture.
pub fn render(run: &Run, summary: &Summary, settings: &Settings) -> Result<String, PlotError> {
    let samples = &run.samples;
    // One provider's grants: the first that feedback scales (or the first).
    let pick = run
        .grants
        .providers
        .iter()
        .position(|t| t.feedback)
        .unwrap_or(0);
    let grants = run.grants.providers.get(pick).zip(summary.grants.get(pick));
    let seconds = samples.len().max(1) as f64;
    // Minutes up to three hours, hours beyond: round numbers on the time axis.
    let (unit, unit_name) = if seconds > 3.0 * 3600.0 {
        (3600.0, "h")
    } else {
        (60.0, "min")
    };
    let plot = Plot {
        samples,
        summary,
        settings,
        grants,
        unit,
        unit_name,
        end: seconds / unit,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = format!(
            "mdp simulate: scenario {}  (capacity {}, Prometheus scrape {}s, HPA sync 15s, pod start-up {}s)",
            summary.scenario,
            settings.capacity,
            settings.scrape_interval.as_secs_f64(),
            settings.startup_delay.as_secs_f64()
        );
        let root = root
            .titled(&title, (FONT, 22).into_font().color(&BLACK))
            .map_err(draw_error)?;
        let (top, rest) = root.split_vertically(410);
        let (middle, rest) = rest.split_vertically(140);
        let (tokens, bottom) = rest.split_vertically(210);
        plot.depth_panel(&top).map_err(draw_error)?;
        plot.scale_panel(&middle).map_err(draw_error)?;
        plot.grants_panel(&tokens).map_err(draw_error)?;
        plot.replica_panel(&bottom).map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

pub(super) type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

pub(super) struct Plot<'a> {
    samples: &'a [Sample],
    summary: &'a Summary,
    settings: &'a Settings,
    /// The provider whose summed grants are drawn.
    pub(super) grants: Option<(&'a GrantTrack, &'a GrantSummary)>,
    /// Seconds per unit of the time axis.
    unit: f64,
    unit_name: &'static str,
    /// The end of the time axis, in units.
    pub(super) end: f64,
}

impl Plot<'_> {
    pub(super) fn x(&self, seconds: u64) -> f64 {
        seconds as f64 / self.unit
    }

    /// Runs of one level as (from, to, level).
    fn level_runs(&self) -> Vec<(f64, f64, Level)> {
        let mut runs: Vec<(f64, f64, Level)> = Vec::new();
        for s in self.samples {
            let (from, to) = (self.x(s.t), self.x(s.t + 1));
            match runs.last_mut() {
                Some(run) if run.2 == s.level => run.1 = to,
                _ => runs.push((from, to, s.level)),
            }
        }
        runs
    }

    /// A step line through `value` at each second, with only its corners kept.
    fn steps(&self, value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
        self.steps_at(|i| self.samples.get(i).map_or(0.0, &value))
    }

    /// A step line through `value(second)`.
    pub(super) fn steps_at(&self, value: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = Vec::new();
        for (i, s) in self.samples.iter().enumerate() {
            let (t, v) = (self.x(s.t), value(i));
            match points.last() {
                Some(&(_, last)) if last == v => {}
                Some(&(_, last)) => points.extend([(t, last), (t, v)]),
                None => points.push((t, v)),
            }
        }
        if let Some(&(_, last)) = points.last() {
            points.push((self.end, last));
        }
        points
    }

    /// A line through `value`, dropping the inner points of flat stretches.
    fn line(&self, value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
        let values: Vec<(f64, f64)> = self
            .samples
            .iter()
            .map(|s| (self.x(s.t), value(s)))
            .collect();
        let mut points = Vec::with_capacity(values.len());
        for (i, &(t, v)) in values.iter().enumerate() {
            let flat =
                i > 0 && i + 1 < values.len() && values[i - 1].1 == v && values[i + 1].1 == v;
            if !flat {
                points.push((t, v));
            }
        }
        points
    }

    /// Where each phase starts, with its name when the phase is wide enough to
    /// carry it (long scenarios of many short phases would print a smear).
    fn phase_starts(&self) -> Vec<(f64, Option<&str>)> {
        let pixels_per_second =
            f64::from(WIDTH - Y_LABELS - RIGHT) / (self.end * self.unit).max(1.0);
        self.summary
            .phases
            .iter()
            .map(|p| {
                let width = (p.end_seconds - p.start_seconds) as f64 * pixels_per_second;
                let fits = width >= p.name.len() as f64 * 8.0 + 10.0;
                (self.x(p.start_seconds), fits.then_some(p.name.as_str()))
            })
            .collect()
    }

    pub(super) fn chart<'a, 'b>(
        &self,
        area: &'a Area<'b>,
        top: f64,
        x_labels: bool,
    ) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
        let chart = ChartBuilder::on(area)
            .margin_right(RIGHT)
            .margin_top(LEGEND)
            .x_label_area_size(if x_labels { 45 } else { 0 })
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(0.0..self.end, 0.0..top)?;
        Ok(chart)
    }

    /// The level bands and the phase boundaries, behind everything else.
    pub(super) fn backdrop(&self, chart: &mut Chart<'_, '_>, top: f64) -> DrawResult {
        chart.draw_series(self.level_runs().into_iter().map(|(from, to, level)| {
            Rectangle::new(
                [(from, 0.0), (to, top)],
                level_color(level).mix(0.18).filled(),
            )
        }))?;
        let starts = self.phase_starts();
        // Past a few dozen phases the boundaries would only hide the bands.
        for (at, _) in starts
            .into_iter()
            .skip(1)
            .filter(|_| self.summary.phases.len() <= 40)
        {
            chart.draw_series(LineSeries::new([(at, 0.0), (at, top)], GREY.mix(0.5)))?;
        }
        Ok(())
    }

    fn depth_panel(&self, area: &Area) -> DrawResult {
        let capacity = self.settings.capacity as f64;
        let top = capacity * 1.08;
        let mut chart = self.chart(area, top, false)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("queue depth (messages)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        self.backdrop(&mut chart, top)?;
        let marks = self.settings.control.watermarks;
        let watermarks = [
            (marks.hard_at, "HARD at", HARD_COLOR),
            (marks.hard_release, "HARD release", HARD_COLOR),
            (marks.soft_at, "SOFT at", SOFT_COLOR),
            (marks.soft_release, "SOFT release", OK_COLOR),
        ];
        let label = (FONT, 13).into_font().color(&BLACK.mix(0.75));
        for (fraction, name, color) in watermarks {
            let y = fraction * capacity;
            chart.draw_series(DashedLineSeries::new(
                [(0.0, y), (self.end, y)],
                8,
                5,
                color.stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{name} {y:.0}"),
                (self.end * 0.995, y),
                label.clone().pos(Pos::new(HPos::Right, VPos::Bottom)),
            )))?;
        }
        let name_style = (FONT, 15).into_font().color(&BLACK);
        for (at, name) in self.phase_starts() {
            let Some(name) = name else { continue };
            chart.draw_series(std::iter::once(Text::new(
                name.to_owned(),
                (at + self.end * 0.005, top * 0.985),
                name_style.clone().pos(Pos::new(HPos::Left, VPos::Top)),
            )))?;
        }
        chart.draw_series(LineSeries::new(
            // While mdp withdraws the sample, the line holds the last one scraped.
            self.steps_at(|i| {
                self.samples[..=i.min(self.samples.len().saturating_sub(1))]
                    .iter()
                    .rev()
                    .find_map(|s| s.metric_depth)
                    .unwrap_or(0) as f64
            }),
            SCRAPED_COLOR.stroke_width(2),
        ))?;
        chart.draw_series(LineSeries::new(
            self.line(|s| s.depth as f64),
            DEPTH_COLOR.stroke_width(2),
        ))?;
        legend_strip(
            area,
            &[
                ("level OK", Swatch::Fill(OK_COLOR.mix(0.35))),
                ("SOFT", Swatch::Fill(SOFT_COLOR.mix(0.35))),
                ("HARD", Swatch::Fill(HARD_COLOR.mix(0.35))),
                ("store queue depth", Swatch::Line(DEPTH_COLOR, 2)),
                (
                    "depth in Prometheus (what KEDA sees)",
                    Swatch::Line(SCRAPED_COLOR, 2),
                ),
                ("mdp watermarks", Swatch::Dashed(GREY)),
            ],
        )
    }

    fn scale_panel(&self, area: &Area) -> DrawResult {
        let mut chart = self.chart(area, 1.1, false)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .y_labels(3)
            .y_label_formatter(&|v| format!("{v:.1}"))
            .y_desc("rate scale")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        self.backdrop(&mut chart, 1.1)?;
        chart.draw_series(LineSeries::new(
            self.steps(|s| s.scale),
            SCALE_COLOR.stroke_width(3),
        ))?;
        legend_strip(
            area,
            &[(
                "rate scale factor: the providers' share of their configured rate",
                Swatch::Line(SCALE_COLOR, 3),
            )],
        )
    }

    fn replica_panel(&self, area: &Area) -> DrawResult {
        let max = f64::from(self.settings.autoscale.max_replicas);
        let top = max + 1.8;
        let mut chart = self.chart(area, top, true)?;
        let unit_name = self.unit_name;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(14)
            .x_label_formatter(&|t| format!("{}", (t * 100.0).round() / 100.0))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(format!("time ({unit_name})"))
            .y_desc("pods")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        self.backdrop(&mut chart, top)?;
        self.spec_ranges(&mut chart)?;
        chart.draw_series(LineSeries::new(
            self.steps(|s| f64::from(s.desired)),
            DESIRED_COLOR.stroke_width(3),
        ))?;
        chart.draw_series(LineSeries::new(
            self.steps(|s| f64::from(s.ready)),
            READY_COLOR.stroke_width(2),
        ))?;
        self.timings(&mut chart, top)?;
        legend_strip(
            area,
            &[
                ("desired pods (HPA)", Swatch::Line(DESIRED_COLOR, 3)),
                ("ready pods", Swatch::Line(READY_COLOR, 2)),
                (
                    "replica-matrix pod range (end of phase)",
                    Swatch::Fill(BLACK.mix(0.15)),
                ),
                ("scale-up / scale-down time", Swatch::Span),
            ],
        )
    }

    /// The replica matrix's expected pod range over the second half of each phase with a replica-matrix name.
    fn spec_ranges(&self, chart: &mut Chart<'_, '_>) -> DrawResult {
        let boxes: Vec<_> = self
            .summary
            .phases
            .iter()
            .filter_map(|p| {
                let (_, low, high) = spec_row(&p.name)?;
                let from = self.x((p.start_seconds + p.end_seconds) / 2);
                Some(Rectangle::new(
                    [
                        (from, f64::from(low) - 0.25),
                        (self.x(p.end_seconds), f64::from(high) + 0.25),
                    ],
                    BLACK.mix(0.13).filled(),
                ))
            })
            .collect();
        chart.draw_series(boxes)?;
        Ok(())
    }

    /// Marks the scale-up and scale-down intervals with their length.
    fn timings(&self, chart: &mut Chart<'_, '_>, top: f64) -> DrawResult {
        let spans = [
            (
                self.summary.scale_up_from,
                self.summary.scale_up_seconds,
                "scale-up",
            ),
            (
                self.summary.scale_down_from,
                self.summary.scale_down_seconds,
                "scale-down",
            ),
        ];
        let style = (FONT, 14).into_font().color(&BLACK);
        // A label needs about 130 px; a later span starting sooner drops a row.
        let label_seconds = 130.0 * self.end * self.unit / f64::from(WIDTH - Y_LABELS - RIGHT);
        let mut y = top - 0.7;
        let mut free_from = 0.0;
        for (from, took, name) in spans {
            let (Some(from), Some(took)) = (from, took) else {
                continue;
            };
            if (from as f64) < free_from {
                y -= 1.0;
            }
            free_from = (from + took) as f64 + label_seconds;
            let (start, end) = (self.x(from), self.x(from + took));
            chart.draw_series(LineSeries::new(
                [(start, y), (end, y)],
                BLACK.stroke_width(2),
            ))?;
            for x in [start, end] {
                chart.draw_series(LineSeries::new(
                    [(x, y - 0.35), (x, y + 0.35)],
                    BLACK.stroke_width(2),
                ))?;
            }
            chart.draw_series(std::iter::once(Text::new(
                format!("{name} {took} s"),
                (end + self.end * 0.004, y),
                style.clone().pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::model::{simulate, tests::settings};
    use crate::simulate::report::summarize;
    use crate::simulate::scenario::{BuiltinScenario, Scenario};

    #[test]
    fn renders_every_part_as_svg_text() {
        let scenario = Scenario::builtin(BuiltinScenario::Matrix);
        let settings = settings();
        let run = simulate(&scenario, &settings).expect("valid");
        let summary = summarize(&scenario, &run, &settings);
        let svg = render(&run, &summary, &settings).expect("draws");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "scenario matrix",
            "queue depth (messages)",
            "SOFT at 5000",
            "HARD at 9000",
            "rate scale",
            "ready pods",
            "ibkr tokens/s",
            "summed over all pods",
            "never over budget",
            "time (min)",
            "overload",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        let down = summary.scale_down_seconds.expect("scales down");
        assert!(svg.contains(&format!("scale-down {down} s")));
    }
}
