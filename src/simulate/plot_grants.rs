//! The `--plot` panel of the pods' side: the tokens all pods granted each second,
//! summed, against the provider's budget, with the worst window marked.

use super::canvas::{Area, DrawResult, FONT};
use super::legend::{Swatch, legend_strip};
use super::plot::Plot;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const GRANTED_COLOR: RGBColor = RGBColor(0, 130, 140);
const BUDGET_COLOR: RGBColor = RGBColor(120, 60, 170);

impl Plot<'_> {
    /// The tokens all pods granted each second against the provider's budget, and
    /// the window where the grants came closest to (or went over) it.
    pub(super) fn grants_panel(&self, area: &Area) -> DrawResult {
        let Some((track, summary)) = self.grants else {
            return Ok(());
        };
        let at = |values: &[f64], i: usize| values.get(i).copied().unwrap_or(0.0);
        let peak = track.granted.iter().copied().fold(track.rate, f64::max);
        let top = peak * 1.3;
        let mut chart = self.chart(area, top, false)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .y_labels(4)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(format!("{} tokens/s", track.provider))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        self.backdrop(&mut chart, top)?;
        chart.draw_series(DashedLineSeries::new(
            self.steps_at(|i| at(&track.accrued, i)),
            6,
            4,
            BUDGET_COLOR.stroke_width(2),
        ))?;
        chart.draw_series(LineSeries::new(
            self.steps_at(|i| at(&track.granted, i)),
            GRANTED_COLOR.stroke_width(2),
        ))?;
        if let Some(worst) = summary
            .windows
            .iter()
            .find(|w| w.window_seconds == summary.window_seconds)
        {
            let (start, end) = (
                self.x(worst.at_seconds),
                self.x(worst.at_seconds + worst.window_seconds),
            );
            let y = top * 0.88;
            chart.draw_series(LineSeries::new(
                [(start, y), (end, y)],
                BLACK.stroke_width(2),
            ))?;
            for x in [start, end] {
                chart.draw_series(LineSeries::new(
                    [(x, y - top * 0.06), (x, y + top * 0.06)],
                    BLACK.stroke_width(2),
                ))?;
            }
            let label = if summary.exceeded {
                format!(
                    "worst {} s window: {:.0} tokens granted, budget {:.0}: OVER BUDGET by {:.0} (+{:.1}%)",
                    worst.window_seconds,
                    worst.granted,
                    worst.budget,
                    worst.overshoot_tokens,
                    worst.overshoot_percent
                )
            } else {
                format!(
                    "closest {} s window: {:.0} tokens granted, budget {:.0} ({:.1}%): never over budget",
                    worst.window_seconds,
                    worst.granted,
                    worst.budget,
                    100.0 + worst.overshoot_percent
                )
            };
            // Right of the bracket, or left of it past the middle of the run.
            let (x, anchor) = if end < self.end * 0.5 {
                (end + self.end * 0.004, HPos::Left)
            } else {
                (start - self.end * 0.004, HPos::Right)
            };
            chart.draw_series(std::iter::once(Text::new(
                label,
                (x, y),
                (FONT, 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(anchor, VPos::Center)),
            )))?;
        }
        legend_strip(
            area,
            &[
                (
                    "tokens granted per second, summed over all pods",
                    Swatch::Line(GRANTED_COLOR, 2),
                ),
                (
                    "provider budget: rate x scale (a window also allows one burst x scale)",
                    Swatch::Dashed(BUDGET_COLOR),
                ),
            ],
        )
    }
}
