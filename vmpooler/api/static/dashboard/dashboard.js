// The vmpooler dashboard: polls the service's JSON routes and draws plain SVG. No libraries, no
// network beyond this service. Layout and numbers follow the original vmpooler dashboard.
(function () {
  "use strict";

  // Uncaught errors are written into the page (#script-errors) so that they can be seen, and
  // checked by the browser test, even where no console is open.
  var errorList = document.getElementById("script-errors");
  function recordError(message) {
    var item = document.createElement("li");
    item.textContent = String(message);
    errorList.appendChild(item);
    errorList.hidden = false;
  }
  window.addEventListener("error", function (event) { recordError(event.message); });
  window.addEventListener("unhandledrejection", function (event) { recordError(event.reason); });

  var params = new URLSearchParams(window.location.search);
  var REFRESH_MS = Math.max(1, Number(params.get("refresh")) || 5) * 1000;
  var POINTS = 500;        // points across the running and capacity charts, one per refresh
  var HISTORY_REPEAT = 8;  // the running history has one point per minute; the original draws each 8 times
  var URLS = {
    capacity: "/dashboard/stats/vmpooler/pool",
    pools: "/api/v1/vm",
    running: "/dashboard/stats/vmpooler/running",
    status: "/api/v1/status",
    summary: "/api/v1/summary",
    health: "/healthcheck?details"
  };
  var PALETTE = ["#3778b0", "#e8803a", "#4a9c48", "#c94040", "#8767b5", "#8a5a4e", "#d672b8", "#7d7d7d",
                 "#b3b533", "#37b4c4", "#9bbbe0", "#f2b37e", "#93cf8a", "#f29595", "#c0addb", "#c49b92"];
  var SVG_NS = "http://www.w3.org/2000/svg";
  var STATUS_COLORS = [[25, "#d84830"], [50, "#f0a800"], [Infinity, "#78a830"]];
  var NUMBERS = [
    ["clone_total", "cloned today", function (s) { return s.clone.count.total; }],
    ["clone_average", "clone time avg", function (s) { return s.clone.duration.average + "s"; }],
    ["capacity", "capacity pct", function (s) { return s.capacity.percent + "%"; }],
    ["total", "total # of VMs", function (s) { return s.queue.total; }],
    ["ready", "ready & waiting", function (s) { return s.queue.ready; }],
    ["cloning", "being cloned", function (s) { return s.queue.cloning; }],
    ["booting", "booting up", function (s) { return s.queue.booting; }],
    ["running", "running tests", function (s) { return s.queue.running; }],
    ["completed", "waiting to die", function (s) { return s.queue.completed; }]
  ];

  var series = { capacity: {}, running: [] };
  var last = null;
  var ticks = 0;

  // --- small SVG helpers ------------------------------------------------------------------------
  function el(tag, attrs, parent, content) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (content !== undefined) { node.textContent = String(content); }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function html(tag, className, parent, content) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (content !== undefined) { node.textContent = String(content); }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function chart(container, height) {
    container.textContent = "";
    var width = Math.max(container.clientWidth, 120);
    var svg = el("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height }, container);
    return { svg: svg, width: width, height: height };
  }

  function linear(d0, d1, r0, r1) {
    return function (value) { return d1 === d0 ? r0 : r0 + (value - d0) / (d1 - d0) * (r1 - r0); };
  }

  function round(value) { return Math.round(value * 10) / 10; }

  // An area between ``top`` and ``bottom`` (arrays of y values) over the x positions ``xs``.
  function areaPath(xs, top, bottom) {
    if (!xs.length) { return ""; }
    var parts = xs.map(function (x, i) { return (i ? "L" : "M") + round(x) + "," + round(top[i]); });
    for (var i = xs.length - 1; i >= 0; i--) { parts.push("L" + round(xs[i]) + "," + round(bottom[i])); }
    return parts.join("") + "Z";
  }

  function linePath(xs, ys) {
    return xs.map(function (x, i) { return (i ? "L" : "M") + round(x) + "," + round(ys[i]); }).join("");
  }

  function verticalGrid(svg, width, height, count) {
    var grid = el("g", { "class": "grid" }, svg);
    for (var i = 1; i < count; i++) {  // the inner lines: the edges are the chart's border
      var x = round(i * (width - 1) / count) + 0.5;
      el("line", { x1: x, x2: x, y1: 0, y2: height }, grid);
    }
  }

  function noData(frame, message) {
    el("text", { "class": "empty", x: frame.width / 2, y: frame.height / 2, "text-anchor": "middle" }, frame.svg,
       message);
  }

  // x positions of ``n`` points, the newest at the right edge, one slot of POINTS per point
  function rightAligned(n, width) {
    var x = linear(0, POINTS - 1, 4, width - 4);
    var xs = [];
    for (var i = 0; i < n; i++) { xs.push(x(POINTS - n + i)); }
    return xs;
  }

  // --- data -------------------------------------------------------------------------------------
  function FetchError(message) { this.message = message; }

  function getJSON(url) {
    return fetch(url, { cache: "no-store", headers: { Accept: "application/json" } }).then(function (response) {
      if (!response.ok) { throw new FetchError(url + " answered " + response.status); }
      return response.json();
    }, function (error) { throw new FetchError(url + ": " + error.message); });
  }

  // /healthcheck answers 503 while the service cannot work: its body is wanted then too
  function getHealth() {
    return fetch(URLS.health, { cache: "no-store", headers: { Accept: "application/json" } }).then(function (response) {
      return response.json();
    }, function (error) { throw new FetchError(URLS.health + ": " + error.message); });
  }

  function isoDay(date) { return date.toISOString().slice(0, 10); }

  function load(first) {
    var from = new Date();
    from.setUTCDate(from.getUTCDate() - 6);  // the service counts days in UTC
    var history = first ? "?history=1" : "";
    return Promise.all([getJSON(URLS.capacity + history), getJSON(URLS.pools), getJSON(URLS.running + history),
                        getJSON(URLS.status), getJSON(URLS.summary + "?from=" + isoDay(from)), getHealth()])
      .then(function (answers) {
        return { capacity: answers[0], pools: answers[1].slice().sort(), running: answers[2], status: answers[3],
                 summary: answers[4], health: answers[5] };
      });
  }

  function platforms(data) { return Object.keys(data.running).sort(); }

  function color(data, platform) {
    return PALETTE[platforms(data).indexOf(platform) % PALETTE.length];
  }

  function keepLast(list) { while (list.length > POINTS) { list.shift(); } }

  function remember(data) {
    data.pools.forEach(function (pool) {
      var entry = data.capacity[pool];
      if (!entry) { return; }
      if (entry.history) { series.capacity[pool] = entry.history.slice(0, -1); }
      var values = series.capacity[pool] = series.capacity[pool] || [];
      values.push(entry.ready);
      keepLast(values);
    });
    var names = platforms(data);
    var withHistory = names.filter(function (name) { return data.running[name].history; });
    if (withHistory.length) {
      series.running = [];
      var length = data.running[withHistory[0]].history.length;
      for (var i = 0; i < length - 1; i++) {
        var point = {};
        withHistory.forEach(function (name) { point[name] = data.running[name].history[i]; });
        for (var r = 0; r < HISTORY_REPEAT; r++) { series.running.push(point); }
      }
    }
    var now = {};
    names.forEach(function (name) { now[name] = data.running[name].running; });
    series.running.push(now);
    keepLast(series.running);
  }

  // --- drawing ----------------------------------------------------------------------------------
  function drawNumbers(status) {
    var box = document.getElementById("dashboard-numbers");
    box.textContent = "";
    NUMBERS.forEach(function (number) {
      var item = html("div", "number", box);
      item.dataset.number = number[0];
      html("span", "value", item, number[2](status));
      html("span", "label", item, number[1]);
    });
  }

  function drawRunning(data) {
    var frame = chart(document.getElementById("dashboard-running"), 160);
    var names = platforms(data);
    var points = series.running;
    var totals = points.map(function (point) {
      return names.reduce(function (sum, name) { return sum + (point[name] || 0); }, 0);
    });
    var y = linear(0, Math.max(1, Math.max.apply(null, totals)), frame.height - 1, 8);
    var xs = rightAligned(points.length, frame.width);
    verticalGrid(frame.svg, frame.width, frame.height, 12);
    var below = points.map(function () { return 0; });
    names.forEach(function (name) {
      var above = points.map(function (point, i) { return below[i] + (point[name] || 0); });
      el("path", { "class": "area", "data-platform": name, fill: color(data, name), opacity: 0.6,
                   d: areaPath(xs, above.map(y), below.map(y)) }, frame.svg);
      below = above;
    });
    el("text", { "class": "axis", x: 4, y: 12 }, frame.svg, "max " + Math.max.apply(null, totals));
    if (!names.length) { noData(frame, "no pools"); }
    drawLegend(data, names);
  }

  function drawLegend(data, names) {
    var legend = document.getElementById("dashboard-legend");
    legend.textContent = "";
    names.forEach(function (name) {
      var item = html("li", "", legend);
      item.dataset.major = name;
      html("span", "swatch", item).style.background = color(data, name);
      html("span", "name", item, name);
      html("span", "count", item, data.running[name].running);
    });
  }

  function drawDaily(container, daily, layers) {
    var frame = chart(container, 100);
    var top = Math.max(1, Math.max.apply(null, layers.map(function (layer) {
      return Math.max.apply(null, daily.map(layer.value));
    })));
    var x = linear(0, Math.max(1, daily.length - 1), 0, frame.width);
    var y = linear(0, top, frame.height - 14, 12);
    verticalGrid(frame.svg, frame.width, frame.height - 14, Math.max(1, daily.length - 1));
    var xs = daily.map(function (day, i) { return x(i); });
    layers.forEach(function (layer) {
      var values = daily.map(layer.value);
      el("path", { "class": "area", fill: layer.color, opacity: 0.55,
                   d: areaPath(xs, values.map(y), values.map(function () { return y(0); })) }, frame.svg);
    });
    el("text", { "class": "axis", x: 2, y: 10 }, frame.svg,
       "max " + round(top) + (layers[0].unit || "") + "  " + layers.map(function (l) { return l.name; }).join(" / "));
    [0, daily.length - 1].forEach(function (i) {
      el("text", { "class": "axis", x: i ? frame.width - 2 : 2, y: frame.height - 2,
                   "text-anchor": i ? "end" : "start" }, frame.svg, daily[i].date.slice(5));
    });
  }

  function drawPlatforms(data) {
    var frame = chart(document.getElementById("weekly-platforms"), 100);
    var names = platforms(data);
    var perPool = (data.summary.clone.count.pool) || {};
    var counts = names.map(function (name) {
      return data.pools.reduce(function (sum, pool) {
        return sum + (pool.split("-")[0] === name && perPool[pool] ? perPool[pool].total : 0);
      }, 0);
    });
    var y = linear(0, Math.max(1, Math.max.apply(null, counts)), frame.height - 14, 4);
    var width = frame.width / Math.max(1, names.length);
    names.forEach(function (name, i) {
      var bar = el("g", { "data-platform": name }, frame.svg);
      el("rect", { x: round(i * width) + 1, y: round(y(counts[i])), width: Math.max(1, round(width) - 2),
                   height: round(frame.height - 14 - y(counts[i])), fill: color(data, name), opacity: 0.6 }, bar);
      el("text", { "class": "axis", x: round(i * width + width / 2), y: frame.height - 2, "text-anchor": "middle" },
         bar, name + " " + counts[i]);
    });
    if (!names.length) { noData(frame, "no pools"); }
  }

  function capacityColor(percent) {
    for (var i = 0; i < STATUS_COLORS.length; i++) {
      if (percent < STATUS_COLORS[i][0]) { return STATUS_COLORS[i][1]; }
    }
    return STATUS_COLORS[STATUS_COLORS.length - 1][1];
  }

  function drawPool(box, width, pool, size, values, domain) {
    var height = 56;
    var ready = values[values.length - 1];
    var percent = size ? Math.floor(ready / size * 100) : 0;
    var svg = el("svg", { "class": "pool", width: width, height: height, viewBox: "0 0 " + width + " " + height,
                          "data-pool": pool, "data-ready": ready, "data-size": size }, box);
    var y = linear(0, Math.max(size, 1), height - 2, 26);
    var xs = rightAligned(values.length, width);
    var tint = capacityColor(percent);
    verticalGrid(svg, width, height, 4);
    el("path", { "class": "area", fill: tint, opacity: 0.45,
                 d: areaPath(xs, values.map(y), values.map(function () { return height - 2; })) }, svg);
    el("path", { "class": "line", stroke: tint, "stroke-width": 1.5, d: linePath(xs, values.map(y)) }, svg);
    el("text", { "class": "pool-name", x: 8, y: 14 }, svg, pool);
    if (domain) { el("text", { "class": "pool-domain", x: width - 8, y: 14, "text-anchor": "end" }, svg, "." + domain); }
    el("text", { "class": "pool-pct", x: 8, y: 27 }, svg, percent + "%");
    el("text", { "class": "pool-count", x: 48, y: 27 }, svg, "(" + ready + "/" + size + ")");
  }

  function drawPools(data) {
    var box = document.getElementById("dashboard-pool");
    box.textContent = "";
    var probe = html("div", "", box);  // one grid cell, to learn how wide a pool's chart may be
    var width = Math.max(probe.clientWidth, 120);
    box.removeChild(probe);
    data.pools.forEach(function (pool) {
      var entry = data.capacity[pool];
      if (entry) { drawPool(box, width, pool, entry.size, series.capacity[pool], entry.domain); }
    });
  }

  function draw(data) {
    drawNumbers(data.status);
    drawRunning(data);
    var daily = data.summary.daily;
    drawDaily(document.getElementById("weekly-clones"), daily, [
      { name: "clones", color: "seagreen", value: function (day) { return day.clone.count.total; } }]);
    drawDaily(document.getElementById("weekly-times"), daily, [
      { name: "boot", color: "crimson", unit: "s", value: function (day) { return day.boot.duration.average; } },
      { name: "clone", color: "gold", unit: "s", value: function (day) { return day.clone.duration.average; } }]);
    drawPlatforms(data);
    drawPools(data);
    drawHealth(data.health);
  }

  // the queue health (3.8.1's, from /healthcheck?details): healthy, degraded or unhealthy, and why
  function drawHealth(health) {
    var box = document.getElementById("queue-health");
    var queues = health && health.queue_health;
    box.textContent = queues ? "queues " + queues.status : "";
    box.dataset.status = queues ? queues.status : "";
    box.title = queues ? queues.reasons.join("\n") : "";
  }

  // --- the refresh loop -------------------------------------------------------------------------
  function showConnection(message) {
    document.getElementById("connection").textContent = message;
  }

  function tick() {
    load(last === null).then(function (data) {
      remember(data);
      last = data;
      draw(data);
      showConnection("");
      ticks += 1;
      document.body.dataset.ticks = ticks;
      document.body.dataset.updated = new Date().toISOString();
    }).catch(function (error) {
      if (!(error instanceof FetchError)) {
        setTimeout(function () { throw error; });  // a bug of this script: let it be seen
        return;
      }
      showConnection("cannot reach the service (" + error.message + "); retrying");
    }).then(function () { setTimeout(tick, REFRESH_MS); });
  }

  window.addEventListener("resize", function () { if (last) { draw(last); } });
  tick();
})();
