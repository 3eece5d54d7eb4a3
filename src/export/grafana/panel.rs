//! Grafana panel building blocks: targets on the datasource variable, thresholds,
//! time series and single-value panels, and the grid layout.

use crate::export::doc::{Doc, list, obj};

/// Grid width of a Grafana dashboard.
const GRID_COLUMNS: u32 = 24;

fn datasource_ref() -> Doc {
    obj! { "type": "prometheus", "uid": "${datasource}" }
}

/// A panel before layout: kind, title, width and height, and the Grafana fields.
pub(super) struct Panel {
    width: u32,
    height: u32,
    body: Doc,
}

fn targets(queries: &[(String, &str)]) -> Vec<Doc> {
    queries
        .iter()
        .zip('A'..='Z')
        .map(|((expr, legend), ref_id)| {
            obj! {
                "datasource": datasource_ref(),
                "refId": ref_id.to_string(),
                "expr": expr,
                "legendFormat": *legend,
                "range": true,
            }
        })
        .collect()
}

pub(super) fn step(color: &str, value: Option<f64>) -> Doc {
    obj! { "color": color, "value": value }
}

pub(super) fn thresholds(steps: Vec<Doc>) -> Doc {
    obj! { "mode": "absolute", "steps": steps }
}

pub(super) fn base_thresholds() -> Doc {
    thresholds(vec![step("green", None)])
}

pub(super) fn reduce_last() -> Doc {
    obj! { "calcs": list!["lastNotNull"], "fields": "", "values": false }
}

fn panel(kind: &str, title: &str, description: String, queries: &[(String, &str)]) -> Doc {
    obj! {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource_ref(),
        "targets": targets(queries),
    }
}

/// A time series panel; `defaults` are its `fieldConfig.defaults`.
pub(super) fn timeseries(
    title: &str,
    description: String,
    queries: &[(String, &str)],
    defaults: Doc,
    width: u32,
) -> Panel {
    let mut body = panel("timeseries", title, description, queries);
    body.push(
        "fieldConfig",
        obj! { "defaults": defaults, "overrides": list![] },
    );
    body.push(
        "options",
        obj! {
            "legend": obj! { "displayMode": "list", "placement": "bottom", "showLegend": true },
            "tooltip": obj! { "mode": "multi", "sort": "none" },
        },
    );
    Panel {
        width,
        height: 8,
        body,
    }
}

/// `fieldConfig.defaults` of a time series: unit, lines, optional drawn thresholds.
pub(super) fn series_defaults(unit: &str, thresholds_drawn: Option<Doc>) -> Doc {
    let style = if thresholds_drawn.is_some() {
        "dashed"
    } else {
        "off"
    };
    obj! {
        "unit": unit,
        "min": 0u32,
        "color": obj! { "mode": "palette-classic" },
        "custom": obj! {
            "drawStyle": "line",
            "lineWidth": 2u32,
            "fillOpacity": 10u32,
            "showPoints": "never",
            "spanNulls": false,
            "thresholdsStyle": obj! { "mode": style },
        },
        "thresholds": thresholds_drawn.unwrap_or_else(base_thresholds),
    }
}

pub(super) fn single_value(
    kind: &str,
    title: &str,
    description: String,
    queries: &[(String, &str)],
    defaults: Doc,
    options: Doc,
) -> Panel {
    let mut body = panel(kind, title, description, queries);
    body.push(
        "fieldConfig",
        obj! { "defaults": defaults, "overrides": list![] },
    );
    body.push("options", options);
    Panel {
        width: 4,
        height: 8,
        body,
    }
}

pub(super) fn stat_options(color_mode: &str) -> Doc {
    obj! {
        "reduceOptions": reduce_last(),
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "auto",
    }
}

/// Assigns ids and grid positions, left to right, wrapping at the grid's width.
pub(super) fn layout(panels: Vec<Panel>) -> Vec<Doc> {
    let (mut x, mut y, mut row_height) = (0u32, 0u32, 0u32);
    panels
        .into_iter()
        .zip(1u32..)
        .map(|(panel, id)| {
            if x + panel.width > GRID_COLUMNS {
                x = 0;
                y += row_height;
                row_height = 0;
            }
            let mut body = obj! {
                "id": id,
                "gridPos": obj! { "h": panel.height, "w": panel.width, "x": x, "y": y },
            };
            if let (Doc::Map(entries), Doc::Map(fields)) = (&mut body, panel.body) {
                entries.extend(fields);
            }
            x += panel.width;
            row_height = row_height.max(panel.height);
            body
        })
        .collect()
}
