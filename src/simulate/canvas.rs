//! What every part of `--plot` draws on: the SVG area, the font, the room left
//! of each panel for its y labels, and the result of a drawing step.

use plotters::coord::Shift;
use plotters::prelude::*;

pub(super) const FONT: &str = "sans-serif";
/// Room left of each panel for its y labels, so the three time axes line up.
pub(super) const Y_LABELS: u32 = 90;

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(super) type DrawResult = Result<(), Box<dyn std::error::Error>>;
