/* The approvals inbox, live: rows arrive and leave without a reload, and the navigation badge follows.
 *
 * The socket (/ws/approvals/) sends ids only. A new waiting request's row is fetched from
 * /approvals/<id>/row/ (rendered for this user, with its CSRF token) and put in its place: highest
 * risk first, then the soonest to expire. On (re)connect the socket sends the inbox's ids; if they
 * differ from the page's, the whole list is fetched again. Messages that arrive while that fetch is
 * in flight are held and applied after it, so none is lost. */
(function () {
  "use strict";
  var note = document.getElementById("live-note");
  var delay = 1000;
  var refreshing = false;
  var held = [];
  var gone = {};  // ids that left the inbox: a row fetched before it left must not come back

  function list() { return document.getElementById("approval-list"); }
  function rows() { return Array.prototype.slice.call(list().querySelectorAll("article[data-approval]")); }
  function rowOf(id) { return document.getElementById("approval-" + id); }

  function say(text) { note.textContent = text; }

  function setCount(count) {
    document.querySelectorAll("[data-approvals-badge]").forEach(function (badge) {
      badge.textContent = String(count);
      badge.classList.toggle("nav-badge-zero", count === 0);
    });
    var tab = document.getElementById("waiting-count");
    if (tab) tab.textContent = String(count);
    list().dataset.count = String(count);
  }

  function updateEmpty() {
    var empty = document.getElementById("approvals-empty");
    if (empty) empty.hidden = rows().length > 0;
  }

  function key(el) {
    return [-Number(el.dataset.rank), Number(el.dataset.expires), Number(el.dataset.approval)];
  }

  function before(a, b) {
    for (var i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) return a[i] < b[i];
    }
    return false;
  }

  function insertSorted(el) {
    var k = key(el);
    var next = rows().find(function (other) { return before(k, key(other)); });
    if (next) next.before(el);
    else {
      var last = rows().pop();
      if (last) last.after(el);
      else document.getElementById("approvals-empty").after(el);
    }
  }

  function remove(id, why) {
    gone[id] = true;
    var el = rowOf(id);
    if (!el) return;
    el.remove();
    updateEmpty();
    say("Request #" + id + " left the inbox" + (why ? " (" + why + ")" : "") + " at " + new Date().toLocaleTimeString() + ".");
  }

  function fetchText(url) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); });
  }

  function parse(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    return tpl.content.firstElementChild;
  }

  function add(id) {
    if (rowOf(id) || gone[id]) return;
    fetchText("/approvals/" + id + "/row/")
      .then(function (html) {
        var el = parse(html);
        if (!el || rowOf(id) || gone[id]) return;
        insertSorted(el);
        updateEmpty();
        say("Request #" + id + " arrived at " + new Date().toLocaleTimeString() + ".");
      })
      .catch(function () { /* 404: it was decided before we asked; nothing to show */ });
  }

  function refreshList() {
    refreshing = true;
    fetchText(window.location.pathname + "?partial=1")
      .then(function (html) {
        var el = parse(html);
        if (el) list().replaceWith(el);
        setCount(Number(list().dataset.count));
      })
      .catch(function () { /* the next message or reconnect tries again */ })
      .then(function () {
        refreshing = false;
        var pending = held;
        held = [];
        pending.forEach(apply);
      });
  }

  function apply(data) {
    if (refreshing) { held.push(data); return; }
    if (typeof data.count === "number") setCount(data.count);
    if (data.type === "snapshot") {
      var shown = rows().map(function (el) { return Number(el.dataset.approval); });
      if (shown.join(",") !== data.ids.join(",")) refreshList();
    } else if (data.type === "changed") {
      if (data.waiting) add(data.id);
      else remove(data.id, data.status);
    } else if (data.type === "run_finished") {
      rows().forEach(function (el) {
        if (Number(el.dataset.run) === data.run_id) remove(el.dataset.approval, "its run finished");
      });
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/approvals/");
    socket.onopen = function () { delay = 1000; say("Live: requests arrive and leave as they happen."); };
    socket.onmessage = function (msg) { apply(JSON.parse(msg.data)); };
    socket.onclose = function () {
      say("Live updates paused; reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  if (list()) connect();
})();
