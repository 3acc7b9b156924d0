// Draw every Plotly figure on the page. Each chart container names the id of a
// <script type="application/json"> element (Django's json_script) holding the figure dict
// built by leaderboard/charts.py. The tables hold the same numbers, so pages work without this.
(function () {
  "use strict";

  function draw() {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    var narrow = window.matchMedia && window.matchMedia("(max-width: 40rem)").matches;
    document.querySelectorAll("[data-figure-id]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-figure-id"));
      if (!source) {
        return;
      }
      var figure = JSON.parse(source.textContent);
      var config = figure.config || {};
      var layout = figure.layout || {};
      if (narrow) {
        // Phone width: no toolbar over the plot, the legend under it, small margins.
        config = Object.assign({}, config, { displayModeBar: false });
        layout = Object.assign({}, layout, {
          margin: { l: 40, r: 8, t: 40, b: 40 },
          legend: Object.assign({}, layout.legend || {}, { orientation: "h", x: 0, y: -0.2, yanchor: "top" }),
        });
      }
      window.Plotly.newPlot(el, figure.data, layout, config).then(function () {
        el.setAttribute("data-rendered", "true");
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
