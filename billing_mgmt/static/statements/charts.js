// Draws every chart of a page with Chart.js (vendored), from the data the server put in json_script blocks.
//
// A chart is a <canvas data-chart="ID"> whose data is the JSON in <script id="ID" type="application/json">:
//   {kind: "bar" | "pie" | "line", labels: [...], datasets: [{label, data: ["12.50", ...], color | colors}],
//    currency, locale, unit}
// Amounts arrive as exact decimal strings; they become numbers here only to be drawn. The canvas carries the
// chart's summary as its aria-label, and a data table sits beside it: this file only adds the picture.
// Charts are drawn on load and again after every htmx swap; old Chart instances are destroyed first.
(function () {
  "use strict";

  if (window.BillingCharts) return; // loaded twice (a page and a fragment): one listener is enough

  var GRID = "#e8ecf1";
  var TEXT = "#556070";

  function reducedMotion() {
    return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  }

  function numberFormat(spec, options) {
    try {
      return new Intl.NumberFormat(spec.locale || "en-US", options);
    } catch (error) {
      return new Intl.NumberFormat("en-US", options);
    }
  }

  function formatter(spec) {
    if (spec.currency) {
      var money = numberFormat(spec, { style: "currency", currency: spec.currency });
      var compact = numberFormat(spec, {
        style: "currency", currency: spec.currency, notation: "compact", maximumFractionDigits: 1,
      });
      return { full: money.format, axis: compact.format };
    }
    var plain = numberFormat(spec, { maximumFractionDigits: 3 });
    var short = numberFormat(spec, { notation: "compact", maximumFractionDigits: 1 });
    var unit = spec.unit ? " " + spec.unit : "";
    return {
      full: function (value) { return plain.format(value) + unit; },
      axis: function (value) { return short.format(value); },
    };
  }

  function toNumbers(values) {
    return values.map(function (value) { return value === null ? null : Number(value); });
  }

  function config(spec) {
    var format = formatter(spec);
    var base = {
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion() ? false : { duration: 350 },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: function (item) {
              var value = spec.kind === "pie" ? item.parsed : item.parsed.y;
              return " " + item.dataset.label + ": " + format.full(value);
            },
          },
        },
      },
    };

    if (spec.kind === "pie") {
      var set = spec.datasets[0] || { data: [], colors: [] };
      base.plugins.legend = { display: true, position: "right", labels: { boxWidth: 12, boxHeight: 12, color: TEXT } };
      base.plugins.tooltip.callbacks.label = function (item) {
        return " " + item.label + ": " + format.full(item.parsed);
      };
      return {
        type: "pie",
        data: {
          labels: spec.labels,
          datasets: [{ label: set.label, data: toNumbers(set.data), backgroundColor: set.colors, borderColor: "#fff", borderWidth: 2 }],
        },
        options: base,
      };
    }

    var stacked = spec.kind === "bar";
    var datasets = spec.datasets.map(function (set) {
      var dataset = { label: set.label, data: toNumbers(set.data), backgroundColor: set.color, borderColor: set.color };
      if (spec.kind === "bar") {
        dataset.borderRadius = 2;
        dataset.maxBarThickness = 28;
      } else {
        dataset.backgroundColor = set.color + "22";
        dataset.fill = true;
        dataset.tension = 0.25;
        dataset.pointRadius = 2.5;
        dataset.borderWidth = 2;
        dataset.spanGaps = false;
      }
      return dataset;
    });
    base.interaction = { mode: "index", intersect: false };
    base.scales = {
      x: { stacked: stacked, grid: { display: false }, ticks: { color: TEXT, maxRotation: 0, autoSkipPadding: 8 } },
      y: {
        stacked: stacked,
        beginAtZero: true,
        grid: { color: GRID },
        border: { display: false },
        ticks: { color: TEXT, callback: function (value) { return format.axis(value); } },
      },
    };
    if (stacked && datasets.length > 1) {
      base.plugins.tooltip.callbacks.footer = function (items) {
        var total = items.reduce(function (sum, item) { return sum + (item.parsed.y || 0); }, 0);
        return "Total: " + format.full(total);
      };
    }
    return { type: spec.kind, data: { labels: spec.labels, datasets: datasets }, options: base };
  }

  function destroyDetached() {
    Object.values(window.Chart.instances || {}).forEach(function (chart) {
      if (!chart.canvas || !chart.canvas.isConnected) chart.destroy();
    });
  }

  function draw(root) {
    if (!window.Chart) return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = TEXT;
    destroyDetached();
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      var spec;
      try {
        spec = JSON.parse(source.textContent);
      } catch (error) {
        return; // the data table beside the canvas still holds the numbers
      }
      var previous = Chart.getChart(canvas);
      if (previous) previous.destroy();
      new Chart(canvas, config(spec));
      canvas.dataset.chartDrawn = "true";
    });
  }

  window.BillingCharts = { draw: draw };

  // Scripts that arrive in an htmx swap (the account page's lazy part) load without a set order: Chart.js
  // may come after this file. Wait for it (a few seconds at most) before the first drawing.
  function drawWhenReady(root, tries) {
    if (window.Chart) return draw(root);
    if ((tries || 0) < 200) setTimeout(function () { drawWhenReady(root, (tries || 0) + 1); }, 25);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { drawWhenReady(document); });
  } else {
    drawWhenReady(document);
  }
  // htmx restores a page from its history cache as HTML: the canvases come back blank.
  document.addEventListener("htmx:historyRestore", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.elt;
    draw(target && target.querySelectorAll ? target : document);
  });
  // The account page loads the charts' section lazily, swapped into its card out of band (htmx:afterSettle
  // then names the part's loader, not the card).
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail && event.detail.target;
    draw(target && target.querySelectorAll ? target : document);
  });
})();
