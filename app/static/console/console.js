// The console's only script: charts from JSON data blocks (ECharts, vendored) and the rule builder's
// add/remove buttons. No figure is computed here: every number arrives from the server as it is shown.
(function () {
  "use strict";

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function yuan(fen) {
    // Axis labels only: fen as yuan text without floating point (the server sends integers).
    var sign = fen < 0 ? "-" : "";
    var abs = Math.abs(fen);
    var cents = String(abs % 100);
    return sign + "¥" + Math.floor(abs / 100) + "." + (cents.length < 2 ? "0" + cents : cents);
  }

  var builders = {
    daily: function (d, labels) {
      return {
        tooltip: { trigger: "axis" },
        legend: { data: [labels.cost, labels.gmv] },
        xAxis: { type: "category", data: d.days },
        yAxis: { type: "value", axisLabel: { formatter: yuan } },
        series: [
          { name: labels.cost, type: "bar", data: d.cost_fen },
          { name: labels.gmv, type: "line", data: d.gmv_driven_fen }
        ]
      };
    },
    funnel: function (d, labels) {
      return {
        tooltip: { trigger: "item" },
        series: [{
          type: "funnel", sort: "none", left: "10%", width: "80%",
          data: [
            { name: labels.issued, value: d.funnel[0] },
            { name: labels.claimed, value: d.funnel[1] },
            { name: labels.redeemed, value: d.funnel[2] }
          ]
        }]
      };
    },
    coupons: function (d, labels) {
      // Per stock (or per channel): counts on the left axis, money on the right.
      return {
        tooltip: { trigger: "axis" },
        legend: { data: [labels.coupons_issued, labels.claimed, labels.coupons_redeemed, labels.cost, labels.gmv] },
        xAxis: { type: "category", data: d.names },
        yAxis: [
          { type: "value", minInterval: 1 },
          { type: "value", axisLabel: { formatter: yuan } }
        ],
        series: [
          { name: labels.coupons_issued, type: "bar", data: d.issued },
          { name: labels.claimed, type: "bar", data: d.claimed },
          { name: labels.coupons_redeemed, type: "bar", data: d.redeemed },
          { name: labels.cost, type: "line", yAxisIndex: 1, data: d.cost_fen },
          { name: labels.gmv, type: "line", yAxisIndex: 1, data: d.gmv_fen }
        ]
      };
    },
    pool: function (d) {
      // Shares grabbed / not grabbed / spent (counts), and their money (the third: GMV driven).
      var l = data("pool-labels") || { names: [], count: "", fen: "" };
      return {
        tooltip: { trigger: "axis" },
        legend: { data: [l.count, l.fen] },
        xAxis: { type: "category", data: l.names },
        yAxis: [
          { type: "value", minInterval: 1 },
          { type: "value", axisLabel: { formatter: yuan } }
        ],
        series: [
          { name: l.count, type: "bar", data: d.counts },
          { name: l.fen, type: "bar", yAxisIndex: 1, data: d.fen }
        ]
      };
    },
    shares: function (d) {
      var l = data("shares-labels") || { opens: "", grabs: "" };
      return {
        tooltip: { trigger: "axis" },
        legend: { data: [l.opens, l.grabs] },
        xAxis: { type: "category", data: d.sharers },
        yAxis: { type: "value", minInterval: 1 },
        series: [
          { name: l.opens, type: "bar", data: d.opens },
          { name: l.grabs, type: "bar", data: d.grabs }
        ]
      };
    },
    dryrun: function (d, labels) {
      return {
        tooltip: { trigger: "axis" },
        legend: { data: [labels.recorded, labels.would_be] },
        xAxis: { type: "category", data: d.names },
        yAxis: { type: "value", minInterval: 1 },
        series: [
          { name: labels.recorded, type: "bar", data: d.was },
          { name: labels.would_be, type: "bar", data: d.would_be }
        ]
      };
    },
    replay: function (d, labels) {
      return {
        tooltip: { trigger: "axis" },
        legend: { data: [labels.sim_cost, labels.sim_gmv, labels.live_cost, labels.live_gmv] },
        xAxis: { type: "category", data: d.days },
        yAxis: { type: "value", axisLabel: { formatter: yuan } },
        series: [
          { name: labels.sim_cost, type: "bar", data: d.simulated_cost_fen },
          { name: labels.sim_gmv, type: "line", data: d.simulated_gmv_fen },
          { name: labels.live_cost, type: "bar", data: d.live_cost_fen },
          { name: labels.live_gmv, type: "line", data: d.live_gmv_fen }
        ]
      };
    }
  };

  function charts() {
    if (typeof window.echarts === "undefined") { return; }
    var labels = data("chart-labels") || {};
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = data(el.getAttribute("data-source"));
      var build = builders[el.getAttribute("data-chart")];
      if (!source || !build) { return; }
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(build(source, labels));
      el.setAttribute("data-rendered", "1");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  function ruleBuilder() {
    var rules = document.getElementById("rules");
    var add = document.getElementById("add-rule");
    if (!rules || !add) { return; }
    add.addEventListener("click", function () {
      var kind = document.getElementById("add-rule-kind").value;
      var template = document.getElementById("rule-template-" + kind);
      var index = Number(rules.getAttribute("data-next-index"));
      rules.setAttribute("data-next-index", String(index + 1));
      var html = template.innerHTML.split("__i__").join(String(index));
      var holder = document.createElement("div");
      holder.innerHTML = html;
      while (holder.firstElementChild) { rules.appendChild(holder.firstElementChild); }
    });
    rules.addEventListener("click", function (event) {
      var target = event.target;
      if (target instanceof Element && target.hasAttribute("data-remove-rule")) {
        var block = target.closest("fieldset.rule");
        if (block) { block.remove(); }
      }
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function progress() {
    var el = document.querySelector("[data-export-pending]");
    if (el) { window.setTimeout(function () { window.location.reload(); }, 1500); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    charts();
    ruleBuilder();
    confirmations();
    progress();
  });
})();
