// keybridge console: progressive only — every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A form that asks the centre says so while it waits, and cannot be sent twice.
  document.querySelectorAll("button[data-busy]").forEach(function (b) {
    b.form.addEventListener("submit", function (e) {
      if (e.submitter && e.submitter !== b) return;
      b.disabled = true;
      b.textContent = b.dataset.busy;
    });
  });
  // Live lists (sessions, devices): the region is fetched again every few seconds and
  // replaced, so changes show without a reload; paused while a form in it has focus.
  var live = document.querySelector("[data-live]");
  if (live) {
    var every = Math.max(2, parseInt(live.dataset.live, 10) || 5) * 1000;
    setInterval(function () {
      if (live.contains(document.activeElement) && document.activeElement.tagName !== "BODY") return;
      fetch(location.pathname + location.search, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (text) {
          if (!text) return;
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.querySelector("[data-live]");
          if (fresh) live.innerHTML = fresh.innerHTML;
        })
        .catch(function () {});
    }, every);
  }
});
