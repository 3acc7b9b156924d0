"""Plotly figure dicts, built by pure functions from selector outputs (no I/O, no Django).

Pages embed the dict with ``json_script``; ``static/js/leaderboard/charts.js`` hands it to the
locally served plotly.js. The dicts use only JSON types.
"""

from __future__ import annotations

from typing import Any

from .selectors.leaderboard import Board, Breakdown

#: A quiet, colour-blind-friendly qualitative palette (Okabe-Ito, then greys).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#999999",
    "#666666",
)
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 13, "color": "#1b1f24"}


def suite_bar_figure(board: Board, *, max_methods: int = 10) -> dict[str, Any]:
    """The paper's Figure 6: one group of bars per metric, one bar per ranked method.

    Bar height is the mean over the suite's categories; the error bar is the population standard
    deviation across categories, drawn as an asymmetric bar cut at the metric's range
    (``clipped_error``): a metric in [0, 1] never gets a bar above 1 or below 0, and the hover
    text gives the uncut standard deviation. Only the first ``max_methods`` ranked methods are
    drawn (in rank order, so the legend reads like the table).
    """
    if max_methods < 1:
        raise ValueError(f"max_methods must be at least 1, got {max_methods}")
    x = [m.short_name for m in board.metrics]
    data = []
    for i, row in enumerate(board.rows[:max_methods]):
        means = [round(row.metrics[m.key].mean, 6) for m in board.metrics]
        stds = [round(row.metrics[m.key].std, 6) for m in board.metrics]
        bars = [clipped_error(row.metrics[m.key].mean, row.metrics[m.key].std, m.low, m.high) for m in board.metrics]
        data.append(
            {
                "type": "bar",
                "name": row.method.name,
                "x": x,
                "y": means,
                "customdata": stds,
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [round(up, 6) for up, _ in bars],
                    "arrayminus": [round(down, 6) for _, down in bars],
                    "visible": True,
                    "thickness": 1.2,
                    "width": 3,
                },
                "marker": {"color": PALETTE[i % len(PALETTE)]},
                "hovertemplate": "%{x}: mean %{y:.3f}, sd across categories %{customdata:.3f}<extra>"
                + row.method.name
                + "</extra>",
            }
        )
    return {
        "data": data,
        "layout": {
            "barmode": "group",
            "bargap": 0.25,
            "bargroupgap": 0.05,
            "font": FONT,
            "height": 420,
            "margin": {"l": 52, "r": 12, "t": 12, "b": 24},
            "yaxis": {
                "range": [0, 1.05],
                "title": {"text": "mean (bars: sd, cut to [0, 1])"},
                "gridcolor": "#e3e6ea",
                "zeroline": False,
            },
            "xaxis": {"fixedrange": True},
            "legend": {"orientation": "h", "x": 0, "y": -0.1, "yanchor": "top"},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
        },
        "config": {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]},
    }


def clipped_error(mean: float, std: float, low: float, high: float) -> tuple[float, float]:
    """The (up, down) lengths of an error bar of ``std`` around ``mean``, cut at ``[low, high]``.

    ``mean + up <= high`` and ``mean - down >= low`` always hold (both lengths >= 0), so a bar
    never claims values the metric cannot take; where it is cut, the bar ends at the bound.
    """
    if std < 0:
        raise ValueError(f"a standard deviation cannot be negative, got {std}")
    return max(0.0, min(std, high - mean)), max(0.0, min(std, mean - low))


def cost_scatter_figure(board: Board) -> dict[str, Any] | None:
    """Accuracy versus inference time: one marker per ranked method with a measured inference time.

    x: inference time per test image in milliseconds (log axis; the mean over categories of the
    reproduced runs), y: the suite mean of a metric, chosen with the buttons above the chart
    (one set of y values per metric, switched by ``restyle``; the sort metric first). Hover text
    names the method, both values, the training time, the peak memory, the parameter count and
    the hardware. ``None`` when no ranked method has a measured inference time.
    """
    rows = [r for r in board.rows if r.cost is not None and r.cost.inference_ms_per_image]
    if not rows:
        return None
    metrics = sorted(board.metrics, key=lambda m: m.key != board.sort_metric)
    first = metrics[0]

    def hover(row) -> str:
        c = row.cost
        parts = [f"<b>{row.method.name}</b>", f"inference {c.inference_ms_per_image:.1f} ms / image"]
        if c.train_seconds is not None:
            parts.append(f"training {c.train_seconds:.1f} s / category")
        if c.peak_memory_mb is not None:
            parts.append(f"peak memory {c.peak_memory_mb:.0f} MiB")
        if c.params_total is not None:
            parts.append(f"{c.params_total:,} parameters ({c.params_trainable or 0:,} trainable)")
        if c.hardware:
            parts.append("on " + "; ".join(c.hardware))
        return "<br>".join(parts)

    x = [round(r.cost.inference_ms_per_image, 4) for r in rows]
    ys = {m.key: [round(r.metrics[m.key].mean, 6) for r in rows] for m in metrics}
    trace = {
        "type": "scatter",
        "mode": "markers+text",
        "x": x,
        "y": ys[first.key],
        "text": [r.method.name for r in rows],
        "textposition": "top center",
        "customdata": [hover(r) for r in rows],
        "hovertemplate": "%{customdata}<br>%{yaxis.title.text}: %{y:.3f}<extra></extra>",
        "marker": {"size": 11, "color": [PALETTE[i % len(PALETTE)] for i in range(len(rows))]},
    }
    buttons = [
        {
            "label": m.short_name,
            "method": "update",
            "args": [{"y": [ys[m.key]]}, {"yaxis.title.text": f"{m.short_name} (suite mean)"}],
        }
        for m in metrics
    ]
    return {
        "data": [trace],
        "layout": {
            "font": FONT,
            "height": 420,
            "margin": {"l": 60, "r": 12, "t": 48, "b": 52},
            "xaxis": {"type": "log", "title": {"text": "inference time per image (ms, log scale)"},
                      "gridcolor": "#e3e6ea"},
            "yaxis": {"range": [first.low - 0.02, first.high + 0.05], "gridcolor": "#e3e6ea", "zeroline": False,
                      "title": {"text": f"{first.short_name} (suite mean)"}},
            "updatemenus": [{"type": "buttons", "direction": "right", "x": 0, "y": 1.14, "xanchor": "left",
                             "yanchor": "top", "showactive": True, "buttons": buttons}],
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
        },
        "config": {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]},
    }  # fmt: skip


def breakdown_heatmap_figure(breakdown: Breakdown) -> dict[str, Any]:
    """Method x category heatmap of one metric; missing values are left blank (``null``)."""
    methods = breakdown.methods
    z = [
        [round(breakdown.values[c][m.id], 6) if m.id in breakdown.values[c] else None for c in breakdown.categories]
        for m in methods
    ]
    spec = breakdown.metric
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [c.partition("/")[2] or c for c in breakdown.categories],
                "y": [m.name for m in methods],
                "z": z,
                "zmin": spec.low,
                "zmax": spec.high,
                "colorscale": "Viridis",
                "reversescale": not spec.higher_is_better,
                "colorbar": {"title": {"text": spec.short_name}, "thickness": 12},
                "hovertemplate": "%{y} · %{x}: %{z:.3f}<extra></extra>",
                "hoverongaps": False,
            }
        ],
        "layout": {
            "font": FONT,
            "margin": {"l": 140, "r": 12, "t": 12, "b": 110},
            "xaxis": {"tickangle": -45, "automargin": True},
            "yaxis": {"autorange": "reversed", "automargin": True},
            "height": max(260, 60 + 26 * len(methods)),
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
        },
        "config": {"responsive": True, "displaylogo": False},
    }


def pl_iou_figure(curve: tuple[tuple[float, float], ...], *, iou_limit: float, pl: float) -> dict[str, Any]:
    """PL as a function of the IoU limit (the paper's PL_xx), from the IoUs a result stored.

    One line over ``curve`` (``selectors.localisation.pl_curve``: PL at each limit, from the stored
    IoUs, nothing re-measured) and a marker at the limit the leaderboard uses. The y axis is the
    metric's range, [0, 1].
    """
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "PL at this IoU limit",
                "x": [limit for limit, _ in curve],
                "y": [round(value, 6) for _, value in curve],
                "line": {"color": PALETTE[0], "width": 2},
                "marker": {"size": 7},
                "hovertemplate": "IoU limit %{x:.1f}: PL %{y:.3f}<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"the leaderboard's limit ({iou_limit:g})",
                "x": [iou_limit],
                "y": [round(pl, 6)],
                "marker": {"size": 13, "color": PALETTE[1], "symbol": "diamond"},
                "hovertemplate": "IoU limit %{x:.1f}: PL %{y:.3f} (ranked)<extra></extra>",
            },
        ],
        "layout": {
            "font": FONT,
            "height": 370,
            "margin": {"l": 56, "r": 12, "t": 12, "b": 92},
            "xaxis": {"title": {"text": "IoU limit (an anomaly counts as found above it)"}, "range": [0.05, 0.95],
                      "dtick": 0.1, "gridcolor": "#e3e6ea"},
            "yaxis": {"title": {"text": "PL (share of anomalies found)"}, "range": [0, 1.02], "gridcolor": "#e3e6ea",
                      "zeroline": False},
            "legend": {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
        },
        "config": {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]},
    }  # fmt: skip
