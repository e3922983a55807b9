/* Confirmation for destructive buttons (Abort, approving a high or critical request).
 *
 * A submit button with data-confirm asks in a dialog; OK ticks the form's confirm box (or sets its
 * hidden confirm field to "yes") and lets the post go. Without this script the server asks instead:
 * Abort goes to a confirmation page, and an approval without the box ticked is refused saying so. */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || !button.dataset.confirm) return;
    var box = event.target.querySelector("[name=confirm]");
    if (box && (box.type === "checkbox" ? box.checked : box.value === "yes")) return;
    if (!window.confirm(button.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    if (box && box.type === "checkbox") box.checked = true;
    else if (box) box.value = "yes";
  }, true);
})();
