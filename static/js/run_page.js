/* The run page: the replay player (player.js) moves the step inspector, the timeline and the diagram
highlighting; and the live socket.

The page is rendered with every step and event so far (and the last step index and event id);
the socket is opened with those numbers and sends only what is newer, so nothing is missed or repeated.
The step inspector is the server's (templates/runs/_step_inspector.html, one fragment per step).
*/
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var steps = data.steps.slice();
  var events = data.events.slice();
  var run = data.run;
  var lastEvent = data.last_event;
  var start = steps.length ? data.current : -1; /* the step the page was rendered at */
  var following = new URLSearchParams(window.location.search).get("step") === null;
  var verdicts = null; /* step index -> {status, label, cause}, once the run has been verified */

  var $ = function (id) { return document.getElementById(id); };
  var diagram = window.CMODiagram.draw($("diagram"), data.graph);

  function lastIndex() { return steps.length ? steps[steps.length - 1].index : -1; }
  /* a fork's own steps start after its fork step */
  function firstIndex() { return steps.length ? steps[0].index : 0; }
  function verdictBadge(index) {
    var v = verdicts && verdicts[index];
    if (!v) return null;
    return make("span", { "class": "vbadge vbadge-" + v.status, title: v.cause || v.label }, v.label);
  }
  function make(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function cell(row, text, cls) { var td = make("td", cls ? { "class": cls } : {}); if (text !== undefined) td.textContent = text; row.appendChild(td); return td; }

  /* --- inspector ------------------------------------------------------------- */
  /* The server renders the inspector (templates/runs/_step_inspector.html): the page came with the
     current step's, and a move fetches the new step's as a fragment. Committed steps never change, so
     fragments are kept (the last CACHE of them); the neighbours of the step shown are fetched ahead, so
     Play and the arrow keys swap without waiting. */
  var inspector = $("inspector");
  var fragmentUrl = inspector.getAttribute("data-fragment"); /* step 0's; the index is its next-to-last segment */
  var CACHE = 100;
  var fragments = new Map(); /* step index -> Promise of its HTML */
  var shown = steps.length ? start : null; /* the step whose inspector is in the page */
  var waiting = null; /* the timer of a fetch for a step not yet cached */
  if (shown !== null) fragments.set(shown, Promise.resolve(inspector.innerHTML));

  function fragment(index) {
    var cached = fragments.get(index);
    if (cached) { fragments.delete(index); fragments.set(index, cached); return cached; }
    var url = fragmentUrl.replace(/\/\d+\/inspector\/$/, "/" + index + "/inspector/");
    var loading = fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (response) {
      /* a redirect is the sign-in page: the session ended */
      if (response.redirected) throw new Error("signed out: reload the page to sign in again");
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
    loading.catch(function () { if (fragments.get(index) === loading) fragments.delete(index); });
    fragments.set(index, loading);
    while (fragments.size > CACHE) fragments.delete(fragments.keys().next().value);
    return loading;
  }
  function prefetchAround(index) {
    [index + 1, index - 1].forEach(function (i) {
      if (stepAt(i) && !fragments.has(i)) fragment(i).catch(function () {});
    });
  }
  function decorateInspector() {
    var title = $("step-title");
    if (!title || shown === null) return;
    Array.prototype.forEach.call(title.querySelectorAll(".vbadge"), function (b) {
      if (b.previousSibling && b.previousSibling.nodeType === 3) b.previousSibling.remove();
      b.remove();
    });
    var badge = verdictBadge(shown);
    if (badge) { title.appendChild(document.createTextNode(" ")); title.appendChild(badge); }
  }
  function swapInspector(index, html) {
    /* server-rendered, escaped by the template */
    inspector.innerHTML = html;
    shown = index;
    inspector.removeAttribute("aria-busy");
    decorateInspector();
    prefetchAround(index);
  }
  function showInspector(index) {
    clearTimeout(waiting);
    if (index === shown || !stepAt(index)) {
      inspector.removeAttribute("aria-busy");
      decorateInspector();
      if (index === shown) prefetchAround(index);
      return;
    }
    inspector.setAttribute("aria-busy", "true");
    function load() {
      fragment(index).then(function (html) {
        if (player.position() === index) swapInspector(index, html);
      }, function (err) {
        if (player.position() !== index) return;
        inspector.textContent = "";
        shown = null;
        inspector.removeAttribute("aria-busy");
        inspector.appendChild(make("p", { "class": "error", role: "alert", id: "step-title" },
          "Step " + index + " could not be loaded: " + (err.message || err) + "."));
      });
    }
    /* dragging the scrubber passes many steps: fetch only the one it stops at */
    if (fragments.has(index)) load(); else waiting = setTimeout(load, 80);
  }

  /* --- diagram --------------------------------------------------------------- */
  function renderDiagram() {
    var current = player.position();
    var upto = steps.filter(function (s) { return s.index <= current; });
    var visited = upto.map(function (s) { return s.node; });
    var taken = [];
    for (var i = 1; i < upto.length; i++) taken.push([upto[i - 1].node, upto[i].node]);
    var atEnd = current === lastIndex();
    var cur = upto.length ? upto[upto.length - 1].node : null;
    if (atEnd && run.status === "COMPLETED" && cur) { taken.push([cur, data.graph.end]); visited.push(data.graph.end); }
    window.CMODiagram.highlight(diagram, { visited: visited, current: cur, taken: taken });
  }

  /* --- timeline -------------------------------------------------------------- */
  function ms(iso) { return new Date(iso).getTime(); }
  function renderTimeline() {
    var box = $("timeline");
    box.textContent = "";
    box.classList.toggle("verified", verdicts !== null);
    var t0 = run.started_at ? ms(run.started_at) : (steps.length ? ms(steps[0].started_at) : ms(run.created_at));
    var t1 = t0 + 1;
    steps.forEach(function (s) { t1 = Math.max(t1, ms(s.started_at) + s.duration_ms); });
    events.forEach(function (e) { t1 = Math.max(t1, ms(e.at)); });
    if (run.finished_at) t1 = Math.max(t1, ms(run.finished_at));
    var span = t1 - t0;
    function pct(t) { return Math.max(0, Math.min(100, (100 * (t - t0)) / span)); }
    var rows = [];
    steps.forEach(function (s) { rows.push({ at: ms(s.started_at), kind: "step", step: s }); });
    var waitStart = null;
    events.forEach(function (e) {
      if (e.kind === "retry") rows.push({ at: ms(e.at), kind: "retry", event: e });
      if (e.to_status === "WAITING") waitStart = e;
      else if (e.to_status && waitStart) { rows.push({ at: ms(waitStart.at), kind: "wait", event: waitStart, until: ms(e.at) }); waitStart = null; }
    });
    if (waitStart) rows.push({ at: ms(waitStart.at), kind: "wait", event: waitStart, until: t1 });
    rows.sort(function (a, b) { return a.at - b.at; });
    rows.forEach(function (r) {
      var row = make("div", { role: "listitem", "class": "tl-row tl-" + r.kind });
      var label, left = pct(r.at), width;
      if (r.kind === "step") {
        label = r.step.index + " · " + r.step.node + (r.step.attempt > 1 ? " (attempt " + r.step.attempt + ")" : "");
        width = Math.max(0.6, pct(r.at + r.step.duration_ms) - left);
        var btn = make("button", { type: "button", "class": "tl-bar" + (r.step.index === player.position() ? " selected" : ""),
          "aria-label": "Step " + r.step.index + " " + r.step.node + ", " + r.step.duration_ms + " ms",
          style: "margin-left:" + left + "%;width:" + width + "%" });
        btn.addEventListener("click", function () { player.move(r.step.index); });
        row.appendChild(make("span", { "class": "tl-label" }, label));
        var track = make("span", { "class": "tl-track" }); track.appendChild(btn); row.appendChild(track);
        row.appendChild(make("span", { "class": "tl-value" }, r.step.duration_ms + " ms"));
        if (verdicts) { var vb = verdictBadge(r.step.index); var vc = make("span", { "class": "tl-verdict" }); if (vb) vc.appendChild(vb); row.appendChild(vc); }
      } else {
        label = r.kind === "retry" ? "retry of step " + r.event.step : "waiting";
        width = r.kind === "wait" ? Math.max(0.6, pct(r.until) - left) : 0.6;
        row.appendChild(make("span", { "class": "tl-label" }, label));
        var tr2 = make("span", { "class": "tl-track" });
        tr2.appendChild(make("span", { "class": "tl-bar", title: r.event.message || label, style: "margin-left:" + left + "%;width:" + width + "%" }));
        row.appendChild(tr2);
        row.appendChild(make("span", { "class": "tl-value" }, r.kind === "retry" ? (r.event.message || "").slice(0, 40) : Math.round(r.until - r.at) + " ms"));
        if (verdicts) row.appendChild(make("span", { "class": "tl-verdict" }));
      }
      box.appendChild(row);
    });
    if (!rows.length) box.appendChild(make("p", { "class": "muted" }, "No steps yet."));
  }

  /* --- events and header ----------------------------------------------------- */
  function addEventRow(e) {
    var row = make("tr");
    cell(row, String(e.id)); cell(row, e.at.slice(11, 23), "mono"); cell(row, e.kind);
    cell(row, e.to_status ? (e.from_status || "·") + " → " + e.to_status : "");
    cell(row, e.step === null || e.step === undefined ? "" : String(e.step)); cell(row, e.message); cell(row, e.actor);
    $("events").appendChild(row);
  }
  function fmtSeconds(v) {
    if (v === null || v === undefined) return "–";
    if (v < 1) return Math.round(v * 1000) + " ms";
    if (v < 120) return v.toFixed(2) + " s";
    return (v / 60).toFixed(1) + " min";
  }
  function renderHeader() {
    var badge = $("run-status").querySelector(".status");
    badge.textContent = run.status;
    badge.className = "status status-" + run.status.toLowerCase();
    var facts = $("run-facts");
    facts.querySelector("[data-fact=duration]").textContent = fmtSeconds(run.duration_seconds);
    facts.querySelector("[data-fact=queued]").textContent = fmtSeconds(run.queued_seconds);
    facts.querySelector("[data-fact=steps]").textContent = String(steps.length);
    facts.querySelector("[data-fact=node]").textContent = run.node || "–";
    $("run-error").hidden = !run.error; $("run-error").textContent = run.error || "";
    $("run-wait").hidden = run.status !== "WAITING"; $("run-wait").textContent = "Waiting: " + (run.wait_reason || "");
    var abort = $("abort-form");
    if (abort && run.terminal) abort.remove();
  }

  /* --- the player (static/js/player.js) --------------------------------------- */
  function stepAt(index) { for (var i = 0; i < steps.length; i++) if (steps[i].index === index) return steps[i]; return null; }
  function render(index, moved) {
    if (moved) following = index === lastIndex() && run.terminal === false;
    showInspector(index);
    renderDiagram();
    renderTimeline();
    var fork = $("fork-link");
    if (fork && lastIndex() >= 0) {
      fork.hidden = false;
      fork.href = fork.href.split("?")[0] + "?step=" + index;
      $("fork-step").textContent = String(index);
    }
  }
  var player = window.CMOPlayer.create({
    first: firstIndex,
    last: lastIndex,
    current: start,
    label: function (at, last) { return last < 0 ? "No steps yet" : "Step " + at + " of " + last; },
    render: render
  });

  /* Verification (replay_verify.js) sends the per-step verdicts; its step links move the player. */
  document.addEventListener("cmo:verdicts", function (ev) { verdicts = ev.detail; player.refresh(); });
  document.addEventListener("cmo:go", function (ev) { player.go(ev.detail); });

  /* --- live ------------------------------------------------------------------ */
  var delay = 500;
  function connect() {
    if (run.terminal) return;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + data.socket + "?step=" + lastIndex() + "&event=" + lastEvent +
      "&status=" + encodeURIComponent(run.status));
    var pinger = null;
    socket.onopen = function () {
      delay = 500;
      // Each ping asks for what is newer, so a broadcast lost on the way costs at most this long.
      pinger = setInterval(function () { socket.send(JSON.stringify({ type: "ping" })); }, 5000);
    };
    socket.onmessage = function (msg) {
      var m = JSON.parse(msg.data);
      if (m.type === "step" && m.step.index > lastIndex()) {
        steps.push(m.step);
        if (following || player.position() < 0) player.set(m.step.index);
      } else if (m.type === "event" && m.event.id > lastEvent) {
        events.push(m.event); lastEvent = m.event.id; addEventRow(m.event);
      } else if (m.type === "run") {
        run = m.run;
        renderHeader();
        player.refresh();
        if (run.terminal) socket.close();
      }
    };
    socket.onclose = function () {
      if (pinger) clearInterval(pinger);
      if (run.terminal) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  player.refresh();
  connect();
})();
