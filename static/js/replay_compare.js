/* The compare page: the replay player (player.js) steps through two aligned runs; the table's selected
row and the aligned step's view (title, diff, both states) follow.

The server renders every aligned step's view (templates/replay/compare.html): the selected one in
#pair-view, each other one in a <template data-position> that this script swaps in.
*/
(function () {
  "use strict";
  var view = document.getElementById("pair-view");
  var table = document.getElementById("pairs");
  var views = {}; /* position -> the <template> holding its view */
  Array.prototype.forEach.call(document.querySelectorAll("template.pair-view"), function (t) {
    views[t.getAttribute("data-position")] = t;
  });
  var shown = parseInt(view.getAttribute("data-position"), 10);
  var kept = document.createElement("template");
  Array.prototype.forEach.call(view.childNodes, function (n) { kept.content.appendChild(n.cloneNode(true)); });
  views[shown] = kept;
  var last = table.querySelectorAll("tbody tr").length - 1;

  function render(current) {
    if (current !== shown && views[current]) {
      view.replaceChildren(views[current].content.cloneNode(true));
      view.setAttribute("data-position", String(current));
      shown = current;
    }
    Array.prototype.forEach.call(table.querySelectorAll("tbody tr"), function (row) {
      var selected = parseInt(row.getAttribute("data-position"), 10) === current;
      row.classList.toggle("selected", selected);
      if (selected) { row.setAttribute("aria-current", "step"); row.scrollIntoView({ block: "nearest" }); }
      else row.removeAttribute("aria-current");
    });
  }

  var player = window.CMOPlayer.create({
    first: function () { return 0; },
    last: function () { return last; },
    current: shown,
    label: function (at, end) { return "Aligned step " + at + " of " + end; },
    render: render
  });

  table.addEventListener("click", function (ev) {
    var link = ev.target.closest("a[data-go]");
    if (!link) return;
    ev.preventDefault();
    player.go(parseInt(link.getAttribute("data-go"), 10));
  });
})();
