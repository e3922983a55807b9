/* The navigation's approvals badge, live on every page but the inbox (approvals.js keeps it there).
 *
 * It listens on the inbox's socket (/ws/approvals/), whose every message carries the number of
 * requests waiting, and reconnects with backoff; the server-rendered number stands until then. */
(function () {
  "use strict";
  var badges = document.querySelectorAll("[data-approvals-badge]");
  if (!badges.length || document.getElementById("approval-list")) return;
  var delay = 1000;

  function setCount(count) {
    badges.forEach(function (badge) {
      badge.textContent = String(count);
      badge.classList.toggle("nav-badge-zero", count === 0);
    });
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/approvals/");
    socket.onopen = function () { delay = 1000; };
    socket.onmessage = function (msg) {
      var data = JSON.parse(msg.data);
      if (typeof data.count === "number") setCount(data.count);
    };
    socket.onclose = function (event) {
      if (event.code === 4401 || event.code === 4403) return;  // signed out or no role: nothing to follow
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  connect();
})();
