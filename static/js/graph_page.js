(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var handle = window.CMODiagram.draw(document.getElementById("diagram"), data);
  window.CMODiagram.highlight(handle, { visited: [], current: data.entry, taken: [] });
})();
