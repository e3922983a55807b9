/* The runs list: when any run changes status, re-render the table from the server (same filters and page). */
(function () {
  "use strict";
  var note = document.getElementById("live-note");
  var timer = null;
  var delay = 1000;

  function refresh() {
    timer = null;
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var box = document.getElementById("run-table");
        var tpl = document.createElement("template");
        tpl.innerHTML = html.trim();
        if (box && tpl.content.firstElementChild) box.replaceWith(tpl.content.firstElementChild);
        note.textContent = "Updated live at " + new Date().toLocaleTimeString();
      })
      .catch(function () { /* the next change refreshes again */ });
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/runs/");
    socket.onopen = function () { delay = 1000; note.textContent = "Live: rows update as runs progress."; };
    socket.onmessage = function (msg) {
      var data = JSON.parse(msg.data);
      if (data.type === "status" && timer === null) timer = setTimeout(refresh, 300);
    };
    socket.onclose = function () {
      note.textContent = "Live updates paused; reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
