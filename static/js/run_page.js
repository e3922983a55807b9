/* The run page: replay player, step inspector, timeline, diagram highlighting and the live socket.

The page is rendered with every step and event so far (and the last step index and event id);
the socket is opened with those numbers and sends only what is newer, so nothing is missed or repeated.
*/
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var steps = data.steps.slice();
  var events = data.events.slice();
  var run = data.run;
  var lastEvent = data.last_event;
  var current = steps.length ? data.current : -1;
  var following = new URLSearchParams(window.location.search).get("step") === null;
  var playing = null;
  var verdicts = null; /* step index -> {status, label, cause}, once the run has been verified */

  var $ = function (id) { return document.getElementById(id); };
  var scrubber = $("scrubber"), position = $("step-position");
  var prevBtn = $("prev-step"), nextBtn = $("next-step"), playBtn = $("play"), pauseBtn = $("pause");
  var diagram = window.CMODiagram.draw($("diagram"), data.graph);

  function lastIndex() { return steps.length ? steps[steps.length - 1].index : -1; }
  /* a fork's own steps start after its fork step */
  function firstIndex() { return steps.length ? steps[0].index : 0; }
  function verdictBadge(index) {
    var v = verdicts && verdicts[index];
    if (!v) return null;
    return make("span", { "class": "vbadge vbadge-" + v.status, title: v.cause || v.label }, v.label);
  }
  function pretty(v) { return JSON.stringify(v === undefined ? null : v, null, 2); }
  function make(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function cell(row, text, cls) { var td = make("td", cls ? { "class": cls } : {}); if (text !== undefined) td.textContent = text; row.appendChild(td); return td; }
  function preCell(row, value, cls) { var td = cell(row); td.appendChild(make("pre", { "class": "mono" + (cls ? " " + cls : "") }, value)); return td; }

  /* --- inspector ------------------------------------------------------------- */
  function renderInspector(step) {
    var box = $("inspector");
    box.textContent = "";
    if (!step) { box.appendChild(make("p", { "class": "muted", id: "step-title" }, "No step has been committed yet.")); return; }
    var title = make("h3", { id: "step-title" }, "Step " + step.index + " · " + step.node + (step.attempt > 1 ? " · attempt " + step.attempt : ""));
    var badge = verdictBadge(step.index);
    if (badge) { title.appendChild(document.createTextNode(" ")); title.appendChild(badge); }
    box.appendChild(title);
    var meta = make("p", { "class": "muted", id: "step-meta" }, step.duration_ms + " ms" + (step.edge ? " · edge " + step.edge : "") + (step.error ? " · " + step.error : ""));
    box.appendChild(meta);
    var grid = make("div", { "class": "grid2" });
    function section(id, title, content) {
      var s = make("section", { "aria-labelledby": "h-" + id });
      s.appendChild(make("h4", { id: "h-" + id }, title));
      s.appendChild(content);
      grid.appendChild(s);
    }
    section("state", "State after the step", make("pre", { "class": "mono json", id: "step-state" }, pretty(step.state)));
    var diff = make("table", { "class": "diff", id: "step-diff" });
    var head = make("thead"); var hr = make("tr");
    ["Change", "Path", "Before", "After"].forEach(function (h) { hr.appendChild(make("th", { scope: "col" }, h)); });
    head.appendChild(hr); diff.appendChild(head);
    var body = make("tbody");
    if (!step.diff.length) { var r0 = make("tr"); var c0 = cell(r0, "No change.", "muted"); c0.colSpan = 4; body.appendChild(r0); }
    step.diff.forEach(function (d) {
      var row = make("tr", { "class": "diff-" + d.op });
      cell(row, d.op); cell(row, d.path, "mono");
      cell(row, d.op === "added" || d.op === "appended" ? "" : pretty(d.old), "mono");
      cell(row, d.op === "removed" ? "" : pretty(d.new), "mono");
      body.appendChild(row);
    });
    diff.appendChild(body);
    section("diff", "Diff against the previous step", diff);
    section("input", "Input", make("pre", { "class": "mono json", id: "step-input" }, pretty(step.input)));
    section("output", "Output", make("pre", { "class": "mono json", id: "step-output" }, pretty(step.output)));
    box.appendChild(grid);

    var acts = make("section", { "aria-labelledby": "h-acts" });
    acts.appendChild(make("h4", { id: "h-acts" }, "Activities"));
    var table = make("table", { "class": "activities", id: "step-activities" });
    var th = make("thead"); var tr = make("tr");
    ["#", "Type", "Status", "Request", "Response / error", "Duration"].forEach(function (h) { tr.appendChild(make("th", { scope: "col" }, h)); });
    th.appendChild(tr); table.appendChild(th);
    var tb = make("tbody");
    if (!step.activities.length) { var r1 = make("tr"); var c1 = cell(r1, "No activities in this step.", "muted"); c1.colSpan = 6; tb.appendChild(r1); }
    step.activities.forEach(function (a) {
      var row = make("tr");
      cell(row, String(a.seq)); cell(row, a.type); cell(row, a.status);
      preCell(row, pretty(a.request));
      if (a.error) preCell(row, a.error, "error"); else preCell(row, pretty(a.response));
      cell(row, a.duration_ms + " ms");
      tb.appendChild(row);
    });
    table.appendChild(tb); acts.appendChild(table); box.appendChild(acts);

    var hs = make("section", { "aria-labelledby": "h-hashes" });
    hs.appendChild(make("h4", { id: "h-hashes" }, "Hashes (SHA-256 of canonical JSON)"));
    var dl = make("dl", { "class": "hashes mono", id: "step-hashes" });
    ["input", "state", "output"].forEach(function (k) { dl.appendChild(make("dt", {}, k)); dl.appendChild(make("dd", {}, step.hashes[k])); });
    hs.appendChild(dl); box.appendChild(hs);
  }

  /* --- diagram --------------------------------------------------------------- */
  function renderDiagram() {
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
        var btn = make("button", { type: "button", "class": "tl-bar" + (r.step.index === current ? " selected" : ""),
          "aria-label": "Step " + r.step.index + " " + r.step.node + ", " + r.step.duration_ms + " ms",
          style: "margin-left:" + left + "%;width:" + width + "%" });
        btn.addEventListener("click", function () { go(r.step.index); });
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

  /* --- the player ------------------------------------------------------------ */
  function stepAt(index) { for (var i = 0; i < steps.length; i++) if (steps[i].index === index) return steps[i]; return null; }
  function render(updateUrl) {
    var last = lastIndex();
    scrubber.min = String(firstIndex());
    scrubber.max = String(Math.max(last, 0));
    scrubber.disabled = last < 0;
    scrubber.value = String(Math.max(current, 0));
    position.textContent = last < 0 ? "No steps yet" : "Step " + current + " of " + last;
    prevBtn.disabled = current <= firstIndex();
    nextBtn.disabled = current >= last;
    renderInspector(stepAt(current));
    renderDiagram();
    renderTimeline();
    var fork = $("fork-link");
    if (fork && last >= 0) {
      fork.hidden = false;
      fork.href = fork.href.split("?")[0] + "?step=" + current;
      $("fork-step").textContent = String(current);
    }
    if (updateUrl) {
      var url = new URL(window.location.href);
      url.searchParams.set("step", String(current));
      window.history.replaceState(null, "", url);
    }
  }
  function go(index) {
    var last = lastIndex();
    if (last < 0) return;
    current = Math.max(firstIndex(), Math.min(last, index));
    following = current === last && run.terminal === false;
    render(true);
  }
  function stop() {
    if (playing !== null) { clearInterval(playing); playing = null; }
    playBtn.disabled = false; pauseBtn.disabled = true;
  }
  prevBtn.addEventListener("click", function () { stop(); go(current - 1); });
  nextBtn.addEventListener("click", function () { stop(); go(current + 1); });
  scrubber.addEventListener("input", function () { stop(); go(parseInt(scrubber.value, 10)); });
  playBtn.addEventListener("click", function () {
    if (current >= lastIndex()) go(0);
    playBtn.disabled = true; pauseBtn.disabled = false; pauseBtn.focus();
    playing = setInterval(function () {
      if (current >= lastIndex()) { stop(); playBtn.focus(); return; }
      go(current + 1);
    }, 700);
  });
  pauseBtn.addEventListener("click", function () { stop(); playBtn.focus(); });
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.altKey || ev.ctrlKey || ev.metaKey || (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable))) return;
    if (ev.key === "ArrowRight") { stop(); go(current + 1); ev.preventDefault(); }
    else if (ev.key === "ArrowLeft") { stop(); go(current - 1); ev.preventDefault(); }
  });

  /* Verification (replay_verify.js) sends the per-step verdicts; its step links move the player. */
  document.addEventListener("cmo:verdicts", function (ev) { verdicts = ev.detail; render(false); });
  document.addEventListener("cmo:go", function (ev) { stop(); go(ev.detail); });

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
        if (following || current < 0) current = m.step.index;
      } else if (m.type === "event" && m.event.id > lastEvent) {
        events.push(m.event); lastEvent = m.event.id; addEventRow(m.event);
      } else if (m.type === "run") {
        run = m.run;
        renderHeader();
        render(false);
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

  render(false);
  connect();
})();
