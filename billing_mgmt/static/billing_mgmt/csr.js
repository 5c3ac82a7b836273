// CSR pages: small progressive enhancements on top of server-rendered HTML and htmx.
// Every page works without this file.
(function () {
  "use strict";

  // "/" focuses the account search box (unless the user is typing somewhere).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var tag = target && target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    var box = document.querySelector("[data-search-box]");
    if (box) {
      event.preventDefault();
      box.focus();
      box.select();
    }
  });

  // Tell assistive technology that a region is loading while htmx fetches its new content.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail && event.detail.target;
    if (target) target.setAttribute("aria-busy", "true");
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var target = event.detail && event.detail.target;
    if (target) target.removeAttribute("aria-busy");
  });

  // A failed fragment request must not fail silently: say so inside the region that asked.
  document.addEventListener("htmx:responseError", function (event) {
    var target = event.detail && event.detail.target;
    if (!target) return;
    var note = document.createElement("p");
    note.className = "alert alert--error";
    note.setAttribute("role", "alert");
    note.textContent = "This part of the page could not be loaded (" + event.detail.xhr.status + "). Reload the page to try again.";
    target.replaceChildren(note);
  });
})();
