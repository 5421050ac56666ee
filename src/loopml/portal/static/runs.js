// Metric charts on the run and compare pages: uPlot over the JSON the page embeds.
// Without JavaScript each chart's table (under its "as a table" summary) shows the numbers.
(function () {
  "use strict";
  var PALETTE = ["#0a58ca", "#d63384", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#dc3545",
    "#0dcaf0", "#6c757d", "#ffc107"];
  function draw(container, chart) {
    var width = Math.max(300, container.clientWidth || 360);
    var series = [{ label: "step" }];
    var data = [chart.steps];
    chart.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2,
        dash: i >= PALETTE.length ? [6, 4] : undefined, spanGaps: true });
      data.push(s.values);
    });
    /* global uPlot */
    new uPlot({ width: width, height: 220, series: series,
      scales: { x: { time: false } }, axes: [{ label: "step" }, {}] }, data, container);
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (typeof uPlot === "undefined") { return; }
    document.querySelectorAll("[data-charts]").forEach(function (box) {
      var source = document.getElementById(box.getAttribute("data-charts"));
      if (!source) { return; }
      var charts = JSON.parse(source.textContent);
      box.querySelectorAll("[data-chart-index]").forEach(function (plot) {
        var chart = charts[Number(plot.getAttribute("data-chart-index"))];
        if (chart && chart.steps.length) { draw(plot, chart); }
      });
    });
  });
}());
