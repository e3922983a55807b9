/* The start form: choosing another graph reloads the form for it (a plain GET, so it also works without this). */
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
    // A choice made before this deferred script ran (a slow page, or the browser restoring the form on Back)
    // fired no listener: the form would show one graph's input under another graph's name.
    var chosen = select.options[select.selectedIndex];
    var rendered = Array.prototype.some.call(select.options, function (o) { return o.defaultSelected; });
    if (rendered && chosen && !chosen.defaultSelected) select.form.submit();
  });
})();
