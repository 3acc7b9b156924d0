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

    Bar height is the mean over the suite's categories, the error bar the population standard
    deviation across categories. Only the first ``max_methods`` ranked methods are drawn (in
    rank order, so the legend reads like the table).
    """
    if max_methods < 1:
        raise ValueError(f"max_methods must be at least 1, got {max_methods}")
    x = [m.short_name for m in board.metrics]
    data = []
    for i, row in enumerate(board.rows[:max_methods]):
        means = [round(row.metrics[m.key].mean, 6) for m in board.metrics]
        stds = [round(row.metrics[m.key].std, 6) for m in board.metrics]
        data.append(
            {
                "type": "bar",
                "name": row.method.name,
                "x": x,
                "y": means,
                "error_y": {"type": "data", "array": stds, "visible": True, "thickness": 1.2, "width": 3},
                "marker": {"color": PALETTE[i % len(PALETTE)]},
                "hovertemplate": "%{x}: %{y:.3f} ± %{error_y.array:.3f}<extra>" + row.method.name + "</extra>",
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
                "title": {"text": "mean ± std"},
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
