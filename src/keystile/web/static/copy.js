// The copy button of a key shown once: the only script of the dashboard and the portal. Without it (JavaScript
// off), the key stays selectable in its read-only field and the button stays hidden.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById("copy-status");
    if (!field) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { if (status) { status.textContent = "Copied to the clipboard."; } };
      var fallback = function () {
        field.focus();
        field.select();
        try { document.execCommand("copy"); done(); } catch (e) { if (status) { status.textContent = "Select the key and copy it."; } }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, fallback);
      } else {
        fallback();
      }
    });
  });
});
