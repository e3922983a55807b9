/* The start form: choosing another graph reloads the form for it (a plain GET, so it also works without this). */
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
