// A billing run's admin page: choosing a date and time in the Execute form ticks "At" (and choosing "Now"
// clears the date), so what is submitted is what the admin sees. The page works without this file. The
// form is swapped in again while the run's results update, hence one listener on the document.
(function () {
  "use strict";

  function form(el) {
    return el && el.closest ? el.closest("form.run-execute") : null;
  }

  document.addEventListener("input", function (event) {
    var target = event.target;
    var owner = form(target);
    if (!owner || target.name !== "at" || !target.value) return;
    var at = owner.querySelector("input[name='when'][value='at']");
    if (at) at.checked = true;
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    var owner = form(target);
    if (!owner || target.name !== "when" || target.value !== "now") return;
    var when = owner.querySelector("input[name='at']");
    if (when) when.value = "";
  });
})();
