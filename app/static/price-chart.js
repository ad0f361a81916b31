// Draws /v1/predict-price as inline SVG: demand and revenue against the list price, the
// recommended price marked, the evidence's prices ticked, extrapolated points faded.
// No library and no network access beyond this app.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var chart = document.getElementById("chart");
  var W = 960, H = 420, M = { left: 60, right: 70, top: 20, bottom: 45 };

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(x, y, value, attrs, parent) {
    var node = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    node.textContent = value;
    return node;
  }
  function scale(d0, d1, r0, r1) {
    var span = (d1 - d0) || 1;
    return function (v) { return r0 + (v - d0) / span * (r1 - r0); };
  }
  function ticks(lo, hi, n) {
    var out = [];
    for (var i = 0; i <= n; i++) out.push(lo + (hi - lo) * i / n);
    return out;
  }

  function draw(data) {
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    var pts = data.prices;
    var x = scale(data.unitprice_min, data.unitprice_max, M.left, W - M.right);
    var qMax = Math.max.apply(null, pts.map(function (p) { return p.quantity; })) * 1.1 || 1;
    var sMax = Math.max.apply(null, pts.map(function (p) { return p.predicted_sales; })) * 1.1 || 1;
    var yq = scale(0, qMax, H - M.bottom, M.top), ys = scale(0, sMax, H - M.bottom, M.top);
    var lo = data.evidence_range[0], hi = data.evidence_range[1];
    if (data.unitprice_min < lo) el("rect", { "class": "extrapolated-band", x: M.left, y: M.top,
      width: Math.max(0, x(Math.min(lo, data.unitprice_max)) - M.left), height: H - M.top - M.bottom }, chart);
    if (data.unitprice_max > hi) el("rect", { "class": "extrapolated-band", x: x(Math.max(hi, data.unitprice_min)),
      y: M.top, width: Math.max(0, W - M.right - x(Math.max(hi, data.unitprice_min))),
      height: H - M.top - M.bottom }, chart);
    var axes = el("g", { "class": "axes", stroke: "#444" }, chart);
    el("line", { x1: M.left, y1: H - M.bottom, x2: W - M.right, y2: H - M.bottom }, axes);
    el("line", { x1: M.left, y1: M.top, x2: M.left, y2: H - M.bottom }, axes);
    el("line", { x1: W - M.right, y1: M.top, x2: W - M.right, y2: H - M.bottom }, axes);
    ticks(data.unitprice_min, data.unitprice_max, 6).forEach(function (v) {
      text(x(v), H - M.bottom + 16, "£" + v.toFixed(2), { "text-anchor": "middle" }, chart);
    });
    ticks(0, qMax, 5).forEach(function (v) { text(M.left - 6, yq(v) + 4, v.toFixed(1), { "text-anchor": "end", fill: "#1f77b4" }, chart); });
    ticks(0, sMax, 5).forEach(function (v) { text(W - M.right + 6, ys(v) + 4, "£" + v.toFixed(1), { fill: "#d62728" }, chart); });
    text((M.left + W - M.right) / 2, H - 8, "list price", { "text-anchor": "middle" }, chart);
    text(M.left, M.top - 6, "units per line", { fill: "#1f77b4" }, chart);
    text(W - M.right, M.top - 6, "revenue per line", { fill: "#d62728", "text-anchor": "end" }, chart);

    function line(cls, y, key) {
      el("polyline", { "class": cls, points: pts.map(function (p) { return x(p.unit_price) + "," + y(p[key]); }).join(" ") }, chart);
      var g = el("g", { "class": cls + "-points" }, chart);
      pts.forEach(function (p) {
        var c = el("circle", { "class": "point " + cls + "-point" + (p.extrapolated ? " extrapolated" : ""),
          cx: x(p.unit_price), cy: y(p[key]), r: 2.5 }, g);
        el("title", {}, c).textContent = "£" + p.unit_price.toFixed(2) + ": " + p[key].toFixed(3);
      });
    }
    line("demand", yq, "quantity");
    line("revenue", ys, "predicted_sales");
    data.evidence.prices.forEach(function (e) {
      if (e.price >= data.unitprice_min && e.price <= data.unitprice_max)
        el("line", { "class": "evidence-mark", x1: x(e.price), x2: x(e.price), y1: H - M.bottom, y2: H - M.bottom - 10 }, chart);
    });
    var r = data.optimal_unit_price;
    if (r >= data.unitprice_min && r <= data.unitprice_max) {
      el("line", { "class": "recommended", x1: x(r), x2: x(r), y1: M.top, y2: H - M.bottom }, chart);
      text(x(r) + 4, M.top + 12, "recommended £" + r.toFixed(2), {}, chart);
    }
    chart.setAttribute("data-points", String(pts.length));
    chart.setAttribute("data-stockcode", data.stockcode);
  }

  function show(data) {
    var flags = data.flags.map(function (f) { return '<span class="flag">' + f + "</span>"; }).join(" ");
    document.getElementById("summary").innerHTML =
      "<b>" + data.stockcode + "</b>, model <code>" + data.model_version + "</code>: recommended list price <b>£" +
      data.optimal_unit_price.toFixed(2) + "</b> (current £" + data.recommendation.current_price.toFixed(2) +
      "), " + data.recommendation.quantity.toFixed(2) + " units and £" + data.max_predicted_sales.toFixed(2) +
      " per line; " + data.evidence.list_price_changes + " list-price changes observed. " + flags;
    var body = document.querySelector("#evidence tbody");
    body.innerHTML = "";
    data.evidence.prices.forEach(function (e) {
      var row = body.insertRow();
      [e.price.toFixed(2), e.lines, e.weeks].forEach(function (v) { row.insertCell().textContent = v; });
    });
    draw(data);
  }

  function load(event) {
    if (event) event.preventDefault();
    var sc = document.getElementById("stockcode").value;
    var query = ["unitprice_min", "unitprice_max", "num_price_bins"].map(function (k) {
      var v = document.getElementById(k).value;
      return v ? k + "=" + encodeURIComponent(v) : null;
    }).filter(Boolean).join("&");
    var url = "v1/predict-price/" + encodeURIComponent(sc) + (query ? "?" + query : "");
    document.getElementById("error").textContent = "";
    fetch(url).then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (res) {
        if (!res.ok) throw new Error(res.body.error ? res.body.error.message : "request failed");
        show(res.body);
      })
      .catch(function (err) { document.getElementById("error").textContent = err.message; });
  }

  document.getElementById("controls").addEventListener("submit", load);
  document.getElementById("stockcode").addEventListener("change", load);
  load();
})();
