/* The run page: the replay player (player.js) moves the step inspector, the timeline and the diagram
highlighting; and the live socket.

The page is rendered with every step and event so far (and the last step index and event id);
the socket is opened with those numbers and sends only what is newer, so nothing is missed or repeated.
The step inspector is the server's (templates/runs/_step_inspector.html, one fragment per step).

A run that spawned branches or children has a timeline of lanes, rendered by the server
(templates/runs/_lanes.html, re-fetched while what it shows is active). Its player can follow a lane
(?lane= in the address): this run's steps (positions are step indexes, as for any run), "all" (this run's
steps and its branches' in commit order) or one branch (its trace id); on those lanes a position is the
place in the lane's sequence, and a branch step's inspector is that branch run's own fragment.
*/
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var steps = data.steps.slice();
  var events = data.events.slice();
  var run = data.run;
  var own = run.trace_id;
  var lastEvent = data.last_event;
  var params = new URLSearchParams(window.location.search);
  var following = params.get("step") === null;
  var verdicts = null; /* step index -> {status, label, cause}, once the run has been verified */
  var waitsByEvent = {};
  (data.waits || []).forEach(function (w) { waitsByEvent[w.event_id] = w; });

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
  function stepAt(index) { for (var i = 0; i < steps.length; i++) if (steps[i].index === index) return steps[i]; return null; }

  /* --- lanes: what the player follows ------------------------------------------ */
  var lanesMode = !!data.lanes;
  var lanesData = readLanesData();
  var order = lanesData.order;
  var lane = ""; /* "": this run's steps; "all": commit order; else a branch's trace id */
  var laneSeq = null; /* the sequence of the lane followed ("all" or a branch), cached */
  function readLanesData() {
    var node = $("lanes-data");
    var parsed = node ? JSON.parse(node.textContent) : null;
    return parsed || { order: [], order_cut: false, choices: [], fanouts: [] };
  }
  function knownLane(value) {
    if (value === "all") return order.length > 0;
    for (var i = 0; i < order.length; i++) if (order[i].trace_id === value && value !== own) return true;
    return false;
  }
  function seq() {
    if (laneSeq === null) laneSeq = lane === "all" ? order : order.filter(function (o) { return o.trace_id === lane; });
    return laneSeq;
  }
  function firstPos() { return lane === "" ? firstIndex() : 0; }
  function lastPos() { return lane === "" ? lastIndex() : seq().length - 1; }
  function itemAt(pos) {
    if (lane === "") {
      var s = stepAt(pos);
      return s ? { trace_id: own, index: pos, node: s.node, branch: null, spawn_step: null } : null;
    }
    return seq()[pos] || null;
  }
  function keyOf(item) { return item ? item.trace_id + ":" + item.index : null; }
  function describe(item) {
    if (!item) return "";
    return item.trace_id === own ? "this run, step " + item.index : "branch " + item.branch + ", step " + item.index;
  }
  function positionOf(trace, index) {
    if (lane === "") return trace === own && stepAt(index) ? index : null;
    var q = seq();
    for (var i = 0; i < q.length; i++) if (q[i].trace_id === trace && q[i].index === index) return i;
    return null;
  }

  var start = steps.length ? data.current : -1; /* the step the page was rendered at */
  var requested = params.get("lane");
  if (requested && knownLane(requested)) {
    lane = requested;
    var at = parseInt(params.get("step") || "0", 10);
    start = Math.max(0, Math.min(isNaN(at) ? 0 : at, seq().length - 1));
    following = false;
  }

  /* --- inspector ------------------------------------------------------------- */
  /* The server renders the inspector (templates/runs/_step_inspector.html): the page came with the
     current step's, and a move fetches the new step's as a fragment. Committed steps never change, so
     fragments are kept (the last CACHE of them); the neighbours of the step shown are fetched ahead, so
     Play and the arrow keys swap without waiting. A branch's step is its own run's fragment. */
  var inspector = $("inspector");
  var fragmentUrl = inspector.getAttribute("data-fragment"); /* step 0's of this run */
  var CACHE = 100;
  var fragments = new Map(); /* "trace:index" -> Promise of its HTML */
  var shown = steps.length ? { trace_id: own, index: data.current, branch: null } : null; /* the step in the page */
  var waiting = null; /* the timer of a fetch for a step not yet cached */
  if (shown !== null) fragments.set(keyOf(shown), Promise.resolve(inspector.innerHTML));

  function urlFor(item) {
    return fragmentUrl.replace(/\/runs\/[^\/]+\/steps\/\d+\/inspector\/$/,
      "/runs/" + encodeURIComponent(item.trace_id) + "/steps/" + item.index + "/inspector/");
  }
  function fragment(item) {
    var key = keyOf(item);
    var cached = fragments.get(key);
    if (cached) { fragments.delete(key); fragments.set(key, cached); return cached; }
    var loading = fetch(urlFor(item), { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (response) {
      /* a redirect is the sign-in page: the session ended */
      if (response.redirected) throw new Error("signed out: reload the page to sign in again");
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
    loading.catch(function () { if (fragments.get(key) === loading) fragments.delete(key); });
    fragments.set(key, loading);
    while (fragments.size > CACHE) fragments.delete(fragments.keys().next().value);
    return loading;
  }
  function prefetchAround(pos) {
    [pos + 1, pos - 1].forEach(function (p) {
      var item = itemAt(p);
      if (item && !fragments.has(keyOf(item))) fragment(item).catch(function () {});
    });
  }
  function decorateInspector() {
    var title = $("step-title");
    if (!title || shown === null) return;
    Array.prototype.forEach.call(title.querySelectorAll(".vbadge"), function (b) {
      if (b.previousSibling && b.previousSibling.nodeType === 3) b.previousSibling.remove();
      b.remove();
    });
    var badge = shown.trace_id === own ? verdictBadge(shown.index) : null;
    if (badge) { title.appendChild(document.createTextNode(" ")); title.appendChild(badge); }
  }
  function swapInspector(item, pos, html) {
    /* server-rendered, escaped by the template */
    inspector.innerHTML = html;
    shown = item;
    inspector.removeAttribute("aria-busy");
    decorateInspector();
    prefetchAround(pos);
  }
  function showInspector(pos) {
    clearTimeout(waiting);
    var item = itemAt(pos);
    var key = keyOf(item);
    if (!item || key === keyOf(shown)) {
      inspector.removeAttribute("aria-busy");
      decorateInspector();
      if (item) prefetchAround(pos);
      return;
    }
    inspector.setAttribute("aria-busy", "true");
    function load() {
      fragment(item).then(function (html) {
        if (keyOf(itemAt(player.position())) === key) swapInspector(item, pos, html);
      }, function (err) {
        if (keyOf(itemAt(player.position())) !== key) return;
        inspector.textContent = "";
        shown = null;
        inspector.removeAttribute("aria-busy");
        var what = item.trace_id === own ? "Step " + item.index : "Step " + item.index + " of branch " + item.branch;
        inspector.appendChild(make("p", { "class": "error", role: "alert", id: "step-title" },
          what + " could not be loaded: " + (err.message || err) + "."));
      });
    }
    /* dragging the scrubber passes many steps: fetch only the one it stops at */
    if (fragments.has(key)) load(); else waiting = setTimeout(load, 80);
  }

  /* --- diagram --------------------------------------------------------------- */
  function fanoutNode(step) {
    for (var i = 0; i < lanesData.fanouts.length; i++) if (lanesData.fanouts[i].step === step) return lanesData.fanouts[i].node;
    return null;
  }
  /* The path of the lane followed up to its position: per run, its nodes in order; a branch starts from the
     node that fanned it out. */
  function pathsUpTo(current) {
    var runs = {}, names = [], cur = null;
    function add(trace, node) { if (!runs[trace]) { runs[trace] = []; names.push(trace); } runs[trace].push(node); }
    if (lane === "") {
      steps.forEach(function (s) { if (s.index <= current) { add(own, s.node); cur = s.node; } });
      /* past a fan-out, its branches ran from their start nodes to the join */
      lanesData.fanouts.forEach(function (f) {
        if (current <= f.step) return;
        f.starts.forEach(function (n, i) { var key = "fanout " + f.step + " " + i; add(key, f.node); add(key, n); add(key, f.join); });
      });
      return { runs: runs, names: names, current: cur };
    }
    var q = seq().slice(0, current + 1);
    if (lane !== "all" && q.length) {
      steps.forEach(function (s) { if (s.index <= q[0].spawn_step) add(own, s.node); });
    }
    q.forEach(function (item) {
      if (item.trace_id !== own && !runs[item.trace_id]) {
        var from = fanoutNode(item.spawn_step);
        if (from) add(item.trace_id, from);
      }
      add(item.trace_id, item.node);
      cur = item.node;
    });
    return { runs: runs, names: names, current: cur };
  }
  function renderDiagram() {
    var current = player.position();
    var paths = pathsUpTo(current);
    var visited = [], taken = [];
    paths.names.forEach(function (trace) {
      var nodes = paths.runs[trace];
      nodes.forEach(function (n) { visited.push(n); });
      for (var i = 1; i < nodes.length; i++) taken.push([nodes[i - 1], nodes[i]]);
    });
    var cur = paths.current;
    if (lane === "" && current === lastIndex() && run.status === "COMPLETED" && cur) { taken.push([cur, data.graph.end]); visited.push(data.graph.end); }
    window.CMODiagram.highlight(diagram, { visited: visited, current: cur, taken: taken });
  }
  window.CMODiagram.fanouts(diagram, lanesData.fanouts);

  /* --- timeline -------------------------------------------------------------- */
  function ms(iso) { return new Date(iso).getTime(); }
  function clock(iso) { return new Date(iso).toISOString().slice(11, 19) + " UTC"; }
  function renderLanes() {
    var box = $("timeline");
    var item = itemAt(player.position());
    Array.prototype.forEach.call(box.querySelectorAll(".lane-step"), function (b) {
      var trace = b.getAttribute("data-trace"), index = parseInt(b.getAttribute("data-index"), 10);
      b.classList.toggle("selected", !!item && item.trace_id === trace && item.index === index);
      var v = trace === own && verdicts && verdicts[index];
      b.classList.toggle("vb-match", !!v && v.status === "match");
      b.classList.toggle("vb-mismatch", !!v && v.status === "mismatch");
    });
    Array.prototype.forEach.call(box.querySelectorAll(".lane"), function (row) {
      var trace = row.getAttribute("data-trace");
      row.classList.toggle("followed", lane !== "all" && trace === (lane || own));
    });
  }
  function renderTimeline() {
    if (lanesMode) { renderLanes(); return; }
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
      else if (e.to_status && waitStart) { rows.push({ at: ms(waitStart.at), kind: "wait", event: waitStart, until: ms(e.at), open: false }); waitStart = null; }
    });
    if (waitStart) {
      /* a wait still open lasts until now */
      if (run.status === "WAITING") { t1 = Math.max(t1, Date.now()); span = t1 - t0; }
      rows.push({ at: ms(waitStart.at), kind: "wait", event: waitStart, until: t1, open: true });
    }
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
        /* a wait says what it waits for (a timer until when, a signal by name), from the page's data */
        var info = r.kind === "wait" ? waitsByEvent[r.event.id] : null;
        label = r.kind === "retry" ? "retry of step " + r.event.step : (info ? info.label : (r.event.message || "waiting"));
        width = r.kind === "wait" ? Math.max(0.6, pct(r.until) - left) : 0.6;
        if (info) row.classList.add("tl-wait-" + info.kind);
        row.appendChild(make("span", { "class": "tl-label", title: info ? info.title : label }, label));
        var tr2 = make("span", { "class": "tl-track" });
        tr2.appendChild(make("span", { "class": "tl-bar", title: (info ? info.title : r.event.message) || label, style: "margin-left:" + left + "%;width:" + width + "%" }));
        row.appendChild(tr2);
        var value = r.kind === "retry" ? (r.event.message || "").slice(0, 40) : fmtSeconds(Math.max(0, r.until - r.at) / 1000);
        if (r.kind === "wait" && r.open && info && info.until) value = "until " + clock(info.until);
        row.appendChild(make("span", { "class": "tl-value" }, value));
        if (verdicts) row.appendChild(make("span", { "class": "tl-verdict" }));
      }
      box.appendChild(row);
    });
    if (!rows.length) box.appendChild(make("p", { "class": "muted" }, "No steps yet."));
  }
  $("timeline").addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest(".lane-step") : null;
    if (!b) return;
    moveTo(b.getAttribute("data-trace"), parseInt(b.getAttribute("data-index"), 10));
  });

  /* --- following a lane ------------------------------------------------------ */
  var laneSelect = $("lane-select");
  function setLane(value, item) {
    lane = value;
    laneSeq = null;
    if (laneSelect) laneSelect.value = value;
    var pos = item ? positionOf(item.trace_id, item.index) : null;
    player.go(pos === null ? (lane === "" ? lastIndex() : 0) : pos);
  }
  /* a step in the timeline: the lane followed goes there; a step of another lane switches to that lane */
  function moveTo(trace, index) {
    var pos = positionOf(trace, index);
    if (pos !== null) { player.move(pos); return; }
    if (trace === own) { setLane("", { trace_id: trace, index: index }); return; }
    if (knownLane(trace)) { setLane(trace, { trace_id: trace, index: index }); return; }
    window.location.href = urlFor({ trace_id: trace, index: index }).replace(/steps\/\d+\/inspector\/$/, "?step=" + index);
  }
  function fillChoices() {
    if (!lanesData.choices.length) return;
    if (!laneSelect) {
      /* the run fanned out after the page was rendered */
      laneSelect = make("select", { id: "lane-select" });
      var label = make("label", { "for": "lane-select", "class": "scrub-label" }, "Follow");
      var before = document.querySelector(".player .controls label[for=scrubber]");
      before.parentNode.insertBefore(label, before);
      before.parentNode.insertBefore(laneSelect, before);
      laneSelect.addEventListener("change", onLaneChange);
    }
    var wanted = JSON.stringify(lanesData.choices);
    if (laneSelect.getAttribute("data-choices") === wanted) return;
    laneSelect.setAttribute("data-choices", wanted);
    var keep = lane;
    laneSelect.textContent = "";
    laneSelect.appendChild(make("option", { value: "" }, "this run's steps"));
    laneSelect.appendChild(make("option", { value: "all" }, "all steps, in commit order"));
    lanesData.choices.forEach(function (c) { laneSelect.appendChild(make("option", { value: c.trace_id }, c.label)); });
    laneSelect.value = keep;
  }
  function onLaneChange() {
    var value = laneSelect.value;
    if (value !== "" && !knownLane(value)) { laneSelect.value = lane; return; }
    setLane(value, shown);
  }
  if (laneSelect) {
    laneSelect.addEventListener("change", onLaneChange);
    laneSelect.setAttribute("data-choices", JSON.stringify(lanesData.choices));
  }

  /* --- live lanes ------------------------------------------------------------ */
  var lanesTimer = null, lanesBusy = false, lanesAgain = false;
  function scheduleLanes(delayMs) {
    clearTimeout(lanesTimer);
    lanesTimer = setTimeout(refreshLanes, delayMs);
  }
  function refreshLanes() {
    if (lanesBusy) { lanesAgain = true; return; }
    lanesBusy = true;
    fetch(data.lanes_url, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (response) {
      if (response.redirected || !response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      var box = $("timeline");
      var closed = Array.prototype.map.call(box.querySelectorAll("details.lane-group:not([open])"), function (d) { return d.id; });
      var top = box.scrollTop, left = box.scrollLeft;
      if (!lanesMode) { lanesMode = true; box.textContent = ""; box.removeAttribute("role"); box.className = "timeline timeline-lanes"; }
      /* server-rendered, escaped by the template */
      box.innerHTML = html;
      closed.forEach(function (id) { var d = $(id); if (d) d.open = false; });
      box.scrollTop = top; box.scrollLeft = left;
      var item = itemAt(player.position());
      lanesData = readLanesData();
      order = lanesData.order;
      laneSeq = null;
      /* the step shown stays shown: a lane's sequence may have grown around it */
      if (lane !== "" && item) { var pos = positionOf(item.trace_id, item.index); if (pos !== null) player.set(pos); }
      fillChoices();
      window.CMODiagram.fanouts(diagram, lanesData.fanouts);
      player.refresh();
    }).catch(function () { /* the next change asks again */ }).finally(function () {
      lanesBusy = false;
      var el = $("lanes");
      if (lanesAgain) { lanesAgain = false; scheduleLanes(200); }
      else if (el && el.getAttribute("data-active") === "1") scheduleLanes(2500);
    });
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
  /* Verify re-executes the committed steps: there is something to verify from the first one on
     (a page rendered before it had a step gets it live; one verifying keeps its button busy) */
  function enableVerify() {
    var verify = $("verify-button");
    if (verify && steps.length && verify.getAttribute("aria-busy") !== "true") verify.disabled = false;
  }
  function renderHeader() {
    var badge = $("run-status").querySelector(".status");
    badge.textContent = run.status;
    badge.className = "status status-" + run.status.toLowerCase();
    var facts = $("run-facts");
    facts.querySelector("[data-fact=duration]").textContent = fmtSeconds(run.duration_seconds);
    facts.querySelector("[data-fact=queued]").textContent = fmtSeconds(run.queued_seconds);
    var count = facts.querySelector("[data-fact=steps]");
    count.textContent = String(run.steps);
    if (run.inherited) count.appendChild(make("span", { "class": "muted" }, " (" + run.inherited + " from the parent)"));
    enableVerify();
    facts.querySelector("[data-fact=node]").textContent = run.node || "–";
    var tokens = facts.querySelector("[data-fact=tokens]");
    if (tokens) { tokens.textContent = String(run.tokens || 0); facts.querySelector("[data-fact=cost]").textContent = (run.cost_usd || 0).toFixed(6); }
    $("run-error").hidden = !run.error; $("run-error").textContent = run.error || "";
    $("run-wait").hidden = run.status !== "WAITING"; $("run-wait").textContent = "Waiting: " + (run.wait_reason || "");
    var abort = $("abort-form");
    if (abort && run.terminal) abort.remove();
    /* a signal form is for a run that waits: once it moves on, the form would only be refused */
    var signal = $("signal-card");
    if (signal && run.status !== "WAITING") signal.hidden = true;
  }

  /* --- the player (static/js/player.js) --------------------------------------- */
  function render(pos, moved) {
    if (moved) {
      following = lane === "" && pos === lastIndex() && run.terminal === false;
      var url = new URL(window.location.href);
      if (lane) url.searchParams.set("lane", lane); else url.searchParams.delete("lane");
      window.history.replaceState(null, "", url);
    }
    showInspector(pos);
    renderDiagram();
    renderTimeline();
    var fork = $("fork-link");
    var item = itemAt(pos);
    if (fork && item) {
      fork.hidden = false;
      fork.href = fork.href.replace(/\/runs\/[^\/]+\/fork\/.*$/, "/runs/" + encodeURIComponent(item.trace_id) + "/fork/?step=" + item.index);
      fork.title = item.trace_id === own ? "" : "fork branch " + item.branch + "'s run at its step " + item.index;
      $("fork-step").textContent = String(item.index);
    }
  }
  var player = window.CMOPlayer.create({
    first: firstPos,
    last: lastPos,
    current: start,
    label: function (at, last) {
      if (last < firstPos()) return "No steps yet";
      if (lane === "") {
        return "Step " + at + " of steps " + firstPos() + " to " + last +
          (run.inherited ? " (0 to " + (run.inherited - 1) + " in the parent)" : "");
      }
      var item = itemAt(at);
      if (lane === "all") return (at + 1) + " of " + (last + 1) + " in commit order · " + describe(item);
      return "Branch " + (item ? item.branch : "?") + ": step " + (item ? item.index : at) + " of " + seq()[last].index;
    },
    render: render
  });

  /* Verification (replay_verify.js) sends the per-step verdicts; its step links move the player. */
  document.addEventListener("cmo:verdicts", function (ev) { verdicts = ev.detail; player.refresh(); });
  document.addEventListener("cmo:go", function (ev) {
    if (lane !== "") setLane("", { trace_id: own, index: ev.detail }); else player.go(ev.detail);
  });

  /* --- live ------------------------------------------------------------------ */
  /* A streamed model call's text so far (runs.activities.llm): shown while the call runs; its record
     arrives with the step, so the panel goes once the step is committed or the call is done. */
  var liveTimer = null;
  function showLive(m) {
    var panel = $("llm-live");
    if (!panel) return;
    panel.hidden = false;
    $("llm-live-where").textContent = "(step " + m.step + ", call #" + m.seq + (m.done ? ", complete" : "") + ")";
    $("llm-live-text").textContent = (m.offset ? "…" : "") + m.text;
    if (liveTimer) clearTimeout(liveTimer);
    liveTimer = setTimeout(function () { panel.hidden = true; }, m.done ? 4000 : 60000);
  }
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
        enableVerify();
        if (lane === "" && (following || player.position() < 0)) player.set(m.step.index);
        if (lanesMode) scheduleLanes(300);
      } else if (m.type === "event" && m.event.id > lastEvent) {
        events.push(m.event); lastEvent = m.event.id; addEventRow(m.event);
        /* a fan-out, or a wait for child runs, is when the lanes appear */
        if (lanesMode || m.event.kind === "fanout" || /child runs/.test(m.event.message || "")) scheduleLanes(300);
      } else if (m.type === "llm") {
        showLive(m);
      } else if (m.type === "run") {
        run = m.run;
        renderHeader();
        player.refresh();
        if (lanesMode) scheduleLanes(300);
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
  if (lanesMode && $("lanes") && $("lanes").getAttribute("data-active") === "1") scheduleLanes(2500);
  connect();
})();
