// Draws /v1/predict-price as inline SVG: weekly units (with their interval as a band) and weekly
// revenue against the list price — per line for models approved before the weekly response —,
// the recommended price marked, the evidence's prices ticked, extrapolated points faded.
// No library and no network access beyond this app.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var chart = document.getElementById("chart");
  // drawn in a 960 x 420 box that CSS scales to the page's width
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
    var weekly = pts.length > 0 && pts[0].weekly_units !== undefined;
    var units = weekly ? "weekly_units" : "quantity", sales = weekly ? "weekly_revenue" : "predicted_sales";
    var x = scale(data.unitprice_min, data.unitprice_max, M.left, W - M.right);
    var qMax = Math.max.apply(null, pts.map(function (p) { return weekly ? p.weekly_units_high : p.quantity; })) * 1.1 || 1;
    var sMax = Math.max.apply(null, pts.map(function (p) { return p[sales]; })) * 1.1 || 1;
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
    text(M.left, M.top - 6, weekly ? "units a week" : "units per line", { fill: "#1f77b4" }, chart);
    text(W - M.right, M.top - 6, weekly ? "revenue a week" : "revenue per line", { fill: "#d62728", "text-anchor": "end" }, chart);
    if (weekly) {
      var upper = pts.map(function (p) { return x(p.unit_price) + "," + yq(p.weekly_units_high); });
      var lower = pts.slice().reverse().map(function (p) { return x(p.unit_price) + "," + yq(p.weekly_units_low); });
      el("polygon", { "class": "demand-band", points: upper.concat(lower).join(" ") }, chart);
    }

    function line(cls, y, key) {
      el("polyline", { "class": cls, points: pts.map(function (p) { return x(p.unit_price) + "," + y(p[key]); }).join(" ") }, chart);
      var g = el("g", { "class": cls + "-points" }, chart);
      pts.forEach(function (p) {
        var c = el("circle", { "class": "point " + cls + "-point" + (p.extrapolated ? " extrapolated" : ""),
          cx: x(p.unit_price), cy: y(p[key]), r: 2.5 }, g);
        el("title", {}, c).textContent = "£" + p.unit_price.toFixed(2) + ": " + p[key].toFixed(3);
      });
    }
    line("demand", yq, units);
    line("revenue", ys, sales);
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

  var FLAG_TEXT = {
    insufficient_price_variation: "the list price never changed: its own data cannot tell how demand answers a price",
    extrapolated: "part of the range lies beyond the list prices the product was sold at"
  };
  function escape(value) {
    return String(value).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }

  function show(data) {
    var flags = data.flags.map(function (f) {
      return '<span class="flag" data-flag="' + escape(f) + '">' + escape(FLAG_TEXT[f] || f.replace(/_/g, " ")) + "</span>";
    }).join(" ");
    var rec = data.recommendation, html;
    if (rec.basis === "weekly") {
      var verb = rec.decision === "hold" ? "hold the list price at" : "move the list price to";
      html = "<b>" + escape(data.stockcode) + "</b>, model <code>" + escape(data.model_version) + "</code>: " + verb +
        " <b>£" + data.optimal_unit_price.toFixed(2) + "</b> (current £" + rec.current_price.toFixed(2) + "): " +
        rec.weekly_units.toFixed(0) + " units a week [" + rec.weekly_units_interval[0].toFixed(0) + ", " +
        rec.weekly_units_interval[1].toFixed(0) + "], £" + data.max_predicted_sales.toFixed(2) + " a week; best " +
        rec.objective + " gain " + rec.gain.toFixed(2) + " a week [" + rec.gain_interval[0].toFixed(2) + ", " +
        rec.gain_interval[1].toFixed(2) + "]. Elasticity " + rec.elasticity.toFixed(2) + " [" +
        rec.elasticity_interval[0].toFixed(2) + ", " + rec.elasticity_interval[1].toFixed(2) + "], learned at the " +
        escape(rec.elasticity_level) + " level. " + flags + "<ol class=\"reasons\">" +
        rec.reasons.map(function (r) { return "<li>" + escape(r) + "</li>"; }).join("") + "</ol>";
    } else {
      html = "<b>" + escape(data.stockcode) + "</b>, model <code>" + escape(data.model_version) + "</code>: recommended list price <b>£" +
        data.optimal_unit_price.toFixed(2) + "</b> (current £" + rec.current_price.toFixed(2) +
        "), " + rec.quantity.toFixed(2) + " units and £" + data.max_predicted_sales.toFixed(2) +
        " per line; " + data.evidence.list_price_changes + " list-price changes observed. " + flags;
    }
    document.getElementById("summary").innerHTML = html;
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
