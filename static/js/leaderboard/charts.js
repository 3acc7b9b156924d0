// Draw every Plotly figure on the page. Each chart container names the id of a
// <script type="application/json"> element (Django's json_script) holding the figure dict
// built by leaderboard/charts.py. The tables hold the same numbers, so pages work without this.
(function () {
  "use strict";

  function draw() {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    document.querySelectorAll("[data-figure-id]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-figure-id"));
      if (!source) {
        return;
      }
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(el, figure.data, figure.layout, figure.config || {}).then(function () {
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
