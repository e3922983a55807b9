/* The run page's Verify button: POST the verify form, show the server-rendered report in the
Verification panel, and hand the per-step verdicts to the player (run_page.js) for its badges.
Without this script the form still works: the POST renders the report as a page of its own.
*/
(function () {
  "use strict";
  var form = document.getElementById("verify-form");
  var panel = document.getElementById("verify-panel");
  var result = document.getElementById("verify-result");
  if (!form || !panel || !result) return;
  var button = form.querySelector("button");

  function verdicts(root) {
    var map = {};
    Array.prototype.forEach.call(root.querySelectorAll("li[data-step]"), function (li) {
      var badge = li.querySelector(".vbadge");
      map[li.getAttribute("data-step")] = {
        status: li.getAttribute("data-status"),
        cause: li.getAttribute("data-cause"),
        label: badge ? badge.textContent : li.getAttribute("data-status")
      };
    });
    return map;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = "Verifying…";
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CMO-Fragment": "verify" },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) throw new Error("verification failed: HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      /* server-rendered, escaped by the template */
      result.innerHTML = html;
      panel.hidden = false;
      document.dispatchEvent(new CustomEvent("cmo:verdicts", { detail: verdicts(result) }));
    }).catch(function (err) {
      result.textContent = "";
      var p = document.createElement("p");
      p.className = "error"; p.setAttribute("role", "alert"); p.textContent = String(err.message || err);
      result.appendChild(p);
      panel.hidden = false;
    }).finally(function () {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = "Verify again";
    });
  });

  result.addEventListener("click", function (ev) {
    var link = ev.target.closest("a[data-go]");
    if (!link) return;
    ev.preventDefault();
    document.dispatchEvent(new CustomEvent("cmo:go", { detail: parseInt(link.getAttribute("data-go"), 10) }));
  });
})();
