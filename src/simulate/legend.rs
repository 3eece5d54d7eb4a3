//! The legend strip above each panel of `--plot`: swatches and labels in one row,
//! outside the data, in pixel coordinates.

use super::canvas::{Area, DrawResult, FONT, Y_LABELS};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// How a legend entry is drawn.
pub(super) enum Swatch {
    Line(RGBColor, u32),
    Dashed(RGBColor),
    Fill(RGBAColor),
    Span,
}

/// One row of legend entries above a panel, outside the data.
pub(super) fn legend_strip(area: &Area, entries: &[(&str, Swatch)]) -> DrawResult {
    let mut x = Y_LABELS as i32 + 6;
    let y = 15;
    let font = (FONT, 14).into_font().color(&BLACK);
    for (label, swatch) in entries {
        match swatch {
            Swatch::Line(color, width) => area.draw(&PathElement::new(
                [(x, y), (x + 22, y)],
                color.stroke_width(*width),
            ))?,
            Swatch::Dashed(color) => {
                for dash in [0, 9, 18] {
                    area.draw(&PathElement::new(
                        [(x + dash, y), (x + dash + 5, y)],
                        color.stroke_width(1),
                    ))?;
                }
            }
            Swatch::Fill(color) => area.draw(&Rectangle::new(
                [(x, y - 7), (x + 22, y + 7)],
                color.filled(),
            ))?,
            Swatch::Span => {
                area.draw(&PathElement::new(
                    [(x, y), (x + 22, y)],
                    BLACK.stroke_width(2),
                ))?;
                for end in [x, x + 22] {
                    area.draw(&PathElement::new(
                        [(end, y - 5), (end, y + 5)],
                        BLACK.stroke_width(2),
                    ))?;
                }
            }
        }
        area.draw(&Text::new(
            (*label).to_owned(),
            (x + 28, y),
            font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        // An estimate of the text's width: SVG leaves the real one to the viewer.
        x += 28 + (label.len() as f64 * 6.8) as i32 + 24;
    }
    Ok(())
}
