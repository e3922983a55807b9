/* The graph diagram: @dagrejs/dagre lays the graph out, this draws it as SVG and highlights a run's path.

Composition: a static fan-out (a node whose edges for one label lead to several nodes: graph.forks) gets a
fork bar under the node and its edges dashed; a join node (graph.joins) a bar over it and a tag with its mode
("join: all", "join: first 2"); on a run page, fanouts(handle, list) adds a count badge ("×50, ≤10 at once")
to the nodes a dynamic fan-out started. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function nodeLabel(name, end) { return name === end ? "END" : name; }

  /* Draw ``graph`` ({nodes, edges, entry, end}) into ``svg``; returns a handle for highlight(). */
  function draw(svg, graph) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 36, ranksep: 44, edgesep: 16, marginx: 12, marginy: 12 });
    var names = graph.nodes.concat([graph.end]);
    names.forEach(function (n) {
      var label = nodeLabel(n, graph.end);
      g.setNode(n, { label: label, width: Math.max(64, 16 + 8.2 * label.length), height: 34 });
    });
    graph.edges.forEach(function (e, i) {
      var label = e.label || "";
      g.setEdge(e.from, e.to, { label: label, width: label ? 8 + 6.6 * label.length : 0, height: label ? 16 : 0, labelpos: "c" }, "e" + i);
    });
    dagre.layout(g);
    var size = g.graph();
    svg.setAttribute("viewBox", "-4 -4 " + Math.ceil(size.width + 56) + " " + Math.ceil(size.height + 8));
    svg.setAttribute("preserveAspectRatio", "xMidYMin meet");
    svg.style.maxHeight = Math.min(460, Math.ceil(size.height * 1.2)) + "px";
    var defs = el("defs", {}, svg);
    ["plain", "taken"].forEach(function (kind) {
      var marker = el("marker", { id: "arrow-" + kind + "-" + svg.id, viewBox: "0 0 10 10", refX: "9", refY: "5",
        markerUnits: "userSpaceOnUse", markerWidth: "10", markerHeight: "10", orient: "auto-start-reverse" }, defs);
      el("path", { d: "M0,0 L10,5 L0,10 z", "class": "arrow-" + kind }, marker);
    });
    var handle = { svg: svg, nodes: {}, edges: [], layout: {}, size: size, extra: [], forked: {} };
    var forked = {}; /* "from\u0000to" -> true for the edges of a static fan-out */
    (graph.forks || []).forEach(function (f) {
      f.to.forEach(function (t) { forked[f.from + "\u0000" + t] = true; });
      handle.forked[f.from] = true;
    });
    g.edges().forEach(function (ref) {
      var data = g.edge(ref);
      var d, lx = data.x, ly = data.y + 4, anchor = "middle";
      if (ref.v === ref.w) {
        // A self-loop: an arc on the node's right side (dagre's self-edge points zig-zag when drawn as lines).
        var n = g.node(ref.v), x = n.x + n.width / 2, y = n.y;
        d = "M" + x + "," + (y - 8) + " C" + (x + 46) + "," + (y - 34) + " " + (x + 46) + "," + (y + 34) + " " + (x + 2) + "," + (y + 9);
        lx = x + 40; ly = y + 4; anchor = "start";
      } else {
        var pts = data.points;
        d = "M" + pts[0].x + "," + pts[0].y;
        for (var i = 1; i < pts.length; i++) d += " L" + pts[i].x + "," + pts[i].y;
      }
      var group = el("g", { "class": "edge" + (forked[ref.v + "\u0000" + ref.w] ? " edge-fork" : "") }, svg);
      var path = el("path", { d: d, "marker-end": "url(#arrow-plain-" + svg.id + ")" }, group);
      if (data.label) {
        var t = el("text", { x: lx, y: ly, "text-anchor": anchor, "class": "edge-label" }, group);
        t.textContent = data.label;
      }
      handle.edges.push({ from: ref.v, to: ref.w, label: data.label, group: group, path: path });
    });
    names.forEach(function (n) {
      var data = g.node(n);
      var group = el("g", { "class": "node" + (n === graph.end ? " node-end" : "") + (n === graph.entry ? " node-entry" : ""),
        transform: "translate(" + (data.x - data.width / 2) + "," + (data.y - data.height / 2) + ")" }, svg);
      el("rect", { width: data.width, height: data.height, rx: n === graph.end ? 17 : 6 }, group);
      var text = el("text", { x: data.width / 2, y: data.height / 2 + 5, "text-anchor": "middle" }, group);
      text.textContent = data.label;
      var title = el("title", {}, group);
      title.textContent = data.label;
      handle.nodes[n] = group;
      handle.layout[n] = { x: data.x, y: data.y, width: data.width, height: data.height };
    });
    Object.keys(handle.forked).forEach(function (n) { if (handle.layout[n]) forkBar(handle, n, "fork-bar"); });
    var joins = graph.joins || {};
    Object.keys(joins).forEach(function (n) {
      var box = handle.layout[n];
      if (!box) return;
      el("rect", { "class": "join-bar", x: box.x - box.width * 0.35, y: box.y - box.height / 2 - 7, width: box.width * 0.7, height: 4, rx: 1 }, svg);
      var j = joins[n];
      var tag = tagAt(handle, box.x + box.width / 2 + 6, box.y, j.label, "join-tag");
      var title = el("title", {}, tag);
      title.textContent = j.label + (j.errors === "collect" ? ", collecting branch errors" : ", a failed branch fails it") +
        (j.reducers && Object.keys(j.reducers).length ? "; reducers: " + Object.keys(j.reducers).map(function (k) { return k + " " + j.reducers[k]; }).join(", ") : "");
      handle.nodes[n].classList.add("node-join");
    });
    fit(handle);
    return handle;
  }

  function forkBar(handle, n, cls) {
    var box = handle.layout[n];
    if (handle.svg.querySelector("." + cls + "[data-node='" + CSS.escape(n) + "']")) return;
    var bar = el("rect", { "class": cls, x: box.x - box.width * 0.35, y: box.y + box.height / 2 + 3, width: box.width * 0.7, height: 4, rx: 1 }, handle.svg);
    bar.setAttribute("data-node", n);
  }

  /* A small labelled box whose left edge is at (x, y - 8); it widens the drawing to fit. */
  function tagAt(handle, x, y, text, cls) {
    var w = 10 + 6.4 * text.length;
    var g = el("g", { "class": cls, transform: "translate(" + x + "," + (y - 8) + ")" }, handle.svg);
    el("rect", { width: w, height: 16, rx: 8 }, g);
    var t = el("text", { x: w / 2, y: 12, "text-anchor": "middle" }, g);
    t.textContent = text;
    handle.extra.push({ right: x + w, top: y - 8 });
    return g;
  }

  /* The viewBox holds the layout and every marker drawn beside it. */
  function fit(handle) {
    var size = handle.size;
    var right = size.width + 56, top = -4;
    handle.extra.forEach(function (e) { right = Math.max(right, e.right + 8); top = Math.min(top, e.top - 4); });
    handle.svg.setAttribute("viewBox", "-4 " + top + " " + Math.ceil(right + 4) + " " + Math.ceil(size.height + 8 - top - 4));
  }

  /* list: [{node, starts, branches, limit, dynamic, badge}] (a run's fan-outs); a dynamic one gets a count badge
     on each node it started, the latest fan-out of a node winning; its edges are drawn as a fan-out's. */
  function fanouts(handle, list) {
    Array.prototype.forEach.call(handle.svg.querySelectorAll(".fanout-badge"), function (b) { b.remove(); });
    handle.extra = handle.extra.filter(function (e) { return !e.badge; });
    var latest = {};
    (list || []).forEach(function (f) {
      if (!f.dynamic) return;
      (f.starts || []).forEach(function (n) { latest[n] = f; });
      if (handle.layout[f.node]) forkBar(handle, f.node, "fork-bar");
      handle.edges.forEach(function (e) {
        if (e.from === f.node && (f.starts || []).indexOf(e.to) >= 0) e.group.classList.add("edge-fork");
      });
    });
    Object.keys(latest).forEach(function (n) {
      var box = handle.layout[n], f = latest[n];
      if (!box) return;
      var tag = tagAt(handle, box.x + box.width / 2 - 6, box.y - box.height / 2 + 2, f.badge, "fanout-badge");
      tag.setAttribute("data-node", n);
      var title = el("title", {}, tag);
      title.textContent = "fan-out at step " + f.step + ": " + f.branches + " branches" + (f.limit ? ", at most " + f.limit + " at once" : "") + ", joining at " + f.join;
      handle.extra[handle.extra.length - 1].badge = true;
    });
    fit(handle);
  }

  /* hl: {visited: [names], current: name|null, taken: [[from, to], ...]} */
  function highlight(handle, hl) {
    var visited = {};
    (hl.visited || []).forEach(function (n) { visited[n] = true; });
    Object.keys(handle.nodes).forEach(function (n) {
      var g = handle.nodes[n];
      g.classList.toggle("visited", !!visited[n]);
      g.classList.toggle("current", n === hl.current);
    });
    var taken = {};
    (hl.taken || []).forEach(function (pair) { taken[pair[0] + "\u0000" + pair[1]] = true; });
    handle.edges.forEach(function (e) {
      var on = !!taken[e.from + "\u0000" + e.to];
      e.group.classList.toggle("taken", on);
      e.path.setAttribute("marker-end", "url(#arrow-" + (on ? "taken" : "plain") + "-" + handle.svg.id + ")");
    });
  }

  window.CMODiagram = { draw: draw, highlight: highlight, fanouts: fanouts };
})();
