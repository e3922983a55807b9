/* The compare page's player: step through two aligned runs; the table, the diff and both states follow.

The page is rendered with the selected aligned step; this script re-renders the same parts from the
pairs in #compare-pairs (each: position, left, right, node, match, diff, left_state, right_state).
*/
(function () {
  "use strict";
  var pairs = JSON.parse(document.getElementById("compare-pairs").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var scrubber = $("scrubber"), position = $("step-position");
  var prevBtn = $("prev-step"), nextBtn = $("next-step"), playBtn = $("play"), pauseBtn = $("pause");
  var last = pairs.length - 1;
  var current = parseInt(scrubber.value, 10) || 0;
  var playing = null;

  function pretty(v) { return JSON.stringify(v === undefined ? null : v, null, 2); }
  function make(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function dash(v) { return v === null || v === undefined ? "–" : String(v); }

  function renderDiff(diff) {
    var body = $("pair-diff").querySelector("tbody");
    body.textContent = "";
    if (!diff.length) {
      var empty = make("tr"); var td = make("td", { "class": "muted" }, "No difference."); td.colSpan = 4;
      empty.appendChild(td); body.appendChild(empty); return;
    }
    diff.forEach(function (d) {
      var row = make("tr", { "class": "diff-" + d.op });
      row.appendChild(make("td", {}, d.op));
      row.appendChild(make("td", { "class": "mono" }, d.path));
      var before = make("td", { "class": "mono" }), after = make("td", { "class": "mono" });
      if (d.op === "added") before.appendChild(make("span", { "class": "muted" }, "absent")); else before.textContent = pretty(d.before);
      if (d.op === "removed") after.appendChild(make("span", { "class": "muted" }, "absent")); else after.textContent = pretty(d.after);
      row.appendChild(before); row.appendChild(after);
      body.appendChild(row);
    });
  }

  function render() {
    var p = pairs[current];
    scrubber.value = String(current);
    position.textContent = "Aligned step " + current + " of " + last;
    prevBtn.disabled = current <= 0;
    nextBtn.disabled = current >= last;
    $("pair-title").textContent = "Aligned step " + p.position + " · " + p.node;
    var what = p.match ? "same state" : p.left === null ? "only in the right run" : p.right === null ? "only in the left run" : "the states differ";
    $("pair-meta").textContent = "left step " + dash(p.left) + ", right step " + dash(p.right) + " · " + what;
    renderDiff(p.diff);
    $("left-state").textContent = p.left === null ? "(no step)" : pretty(p.left_state);
    $("right-state").textContent = p.right === null ? "(no step)" : pretty(p.right_state);
    Array.prototype.forEach.call($("pairs").querySelectorAll("tbody tr"), function (row) {
      var selected = parseInt(row.getAttribute("data-position"), 10) === current;
      row.classList.toggle("selected", selected);
      if (selected) { row.setAttribute("aria-current", "step"); row.scrollIntoView({ block: "nearest" }); }
      else row.removeAttribute("aria-current");
    });
    var url = new URL(window.location.href);
    url.searchParams.set("step", String(current));
    window.history.replaceState(null, "", url);
  }
  function go(index) { current = Math.max(0, Math.min(last, index)); render(); }
  function stop() {
    if (playing !== null) { clearInterval(playing); playing = null; }
    playBtn.disabled = false; pauseBtn.disabled = true;
  }

  prevBtn.addEventListener("click", function () { stop(); go(current - 1); });
  nextBtn.addEventListener("click", function () { stop(); go(current + 1); });
  scrubber.addEventListener("input", function () { stop(); go(parseInt(scrubber.value, 10)); });
  playBtn.addEventListener("click", function () {
    if (current >= last) go(0);
    playBtn.disabled = true; pauseBtn.disabled = false; pauseBtn.focus();
    playing = setInterval(function () {
      if (current >= last) { stop(); playBtn.focus(); return; }
      go(current + 1);
    }, 700);
  });
  pauseBtn.addEventListener("click", function () { stop(); playBtn.focus(); });
  $("pairs").addEventListener("click", function (ev) {
    var link = ev.target.closest("a[data-go]");
    if (!link) return;
    ev.preventDefault(); stop(); go(parseInt(link.getAttribute("data-go"), 10));
  });
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    /* form fields keep their keys (the scrubber moves itself and fires "input") */
    if (ev.altKey || ev.ctrlKey || ev.metaKey || (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable))) return;
    if (ev.key === "ArrowRight") { stop(); go(current + 1); ev.preventDefault(); }
    else if (ev.key === "ArrowLeft") { stop(); go(current - 1); ev.preventDefault(); }
  });
})();
