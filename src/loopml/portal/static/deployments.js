// The deployment page's charts: uPlot over the usage series embedded in the page as JSON.
// Without JavaScript the same figures are in the table below the charts.
(function () {
  "use strict";
  function draw(id, data, series, range) {
    var box = document.getElementById(id);
    if (!box || typeof uPlot === "undefined") { return; }
    var width = Math.max(box.clientWidth || 360, 300);
    // Every point drawn as a dot, besides the line: a burst inside one minute, with empty
    // minutes on both sides, has no segment to draw and showed nothing (issue 55).
    series.forEach(function (s) { s.points = { show: true, size: 5, fill: s.stroke }; });
    var opts = {
      title: box.getAttribute("data-title"),
      width: width,
      height: 200,
      series: [{}].concat(series),
      // The axis spans the period shown, whatever the points in it.
      scales: { x: { time: true, range: function () { return range; } } },
      axes: [{}, {}]
    };
    box.uplot = new uPlot(opts, data, box);
  }
  // The snippets as tabs (one shown at a time); without JavaScript all four are shown.
  function tabs(list) {
    var buttons = Array.prototype.slice.call(list.querySelectorAll("[role=tab]"));
    function pick(chosen, focus) {
      buttons.forEach(function (b) {
        var on = b === chosen;
        b.setAttribute("aria-selected", on ? "true" : "false");
        b.tabIndex = on ? 0 : -1;
        document.getElementById(b.getAttribute("aria-controls")).hidden = !on;
      });
      if (focus) { chosen.focus(); }
    }
    buttons.forEach(function (b, i) {
      b.addEventListener("click", function () { pick(b, false); });
      b.addEventListener("keydown", function (e) {
        var step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
        if (step) { pick(buttons[(i + step + buttons.length) % buttons.length], true); }
      });
    });
    list.hidden = false;
    pick(buttons[0], false);
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll(".tabs [role=tablist]"), tabs);
    var source = document.getElementById("usage-data");
    if (!source) { return; }
    var d = JSON.parse(source.textContent);
    var range = [d.min, d.max];
    draw("chart-rps", [d.t, d.rps], [{ label: "req/s", stroke: "#0a58ca" }], range);
    draw("chart-errors", [d.t, d.errors], [{ label: "errors", stroke: "#b42318" }], range);
    draw("chart-latency", [d.t, d.p50, d.p95, d.p99], [
      { label: "p50", stroke: "#1a7f37" },
      { label: "p95", stroke: "#8a5a00" },
      { label: "p99", stroke: "#b42318" }
    ], range);
  });
}());
