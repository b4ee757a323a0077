// keybridge console: progressive only — every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A form that asks the centre says so while it waits, and cannot be sent twice.
  document.querySelectorAll("button[data-busy]").forEach(function (b) {
    b.form.addEventListener("submit", function (e) {
      if (e.submitter && e.submitter !== b) return;
      b.disabled = true;
      b.textContent = b.dataset.busy;
      var p = b.form.querySelector(".progress");
      if (p) p.hidden = false;
    });
  });

  // Live regions (keys, sessions, devices): fetched again and replaced when the server says
  // something changed (server-sent events on /events), so a plug, an unplug or a session
  // opened elsewhere shows without a reload. A refresh waits while a form in the region has
  // focus. Without an event stream (too many open, or none in the browser) the page polls.
  var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live][id]"));
  if (!regions.length) return;
  var pending = false;
  var busy = false;
  function focused() {
    return regions.some(function (r) {
      return r.contains(document.activeElement) && document.activeElement !== document.body;
    });
  }
  function refresh() {
    if (busy || focused()) { pending = true; return; }
    busy = true;
    pending = false;
    fetch(location.pathname + location.search, {
      credentials: "same-origin", cache: "no-store", headers: { "X-KB-Refresh": "1" }
    })
      .then(function (r) {
        // The session ended (logged out elsewhere, idle, a password change): say so by
        // showing the login page rather than a page that no longer changes.
        if (r.redirected && new URL(r.url).pathname === "/login") location.assign("/login");
        return r.ok && !r.redirected ? r.text() : null;
      })
      .then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        regions.forEach(function (r) {
          var fresh = doc.getElementById(r.id);
          if (fresh) r.innerHTML = fresh.innerHTML;
        });
      })
      .catch(function () {})
      .then(function () { busy = false; if (pending) refresh(); });
  }
  document.addEventListener("focusout", function () { if (pending) setTimeout(refresh, 0); });
  var polling = null;
  function poll() { if (!polling) polling = setInterval(refresh, 5000); }
  if (!window.EventSource) { poll(); return; }
  var events = new EventSource("/events");
  events.addEventListener("change", refresh);
  events.addEventListener("open", function () {
    if (polling) { clearInterval(polling); polling = null; }
  });
  events.addEventListener("error", function () {
    // Closed for good: the session ended (204; the refresh then goes to the login page), or
    // too many streams are open (503): poll while the page lives.
    if (events.readyState === EventSource.CLOSED) { refresh(); poll(); }
  });
  window.addEventListener("pagehide", function () { events.close(); });
});
