/* The graph diagram: @dagrejs/dagre lays the graph out, this draws it as SVG and highlights a run's path. */
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
    var handle = { svg: svg, nodes: {}, edges: [] };
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
      var group = el("g", { "class": "edge" }, svg);
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
    });
    return handle;
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

  window.CMODiagram = { draw: draw, highlight: highlight };
})();
