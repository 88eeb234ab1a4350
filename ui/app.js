// The dashboard's live updates: the server pushes the changes (server-sent
// events on /ui/events) and the page fetches its fragment again, rendered
// by the server, at most one fetch at a time. Nothing else runs here.
(function () {
  "use strict";
  var root = document.getElementById("live");
  var status = document.getElementById("status");
  if (!root) {
    if (status) status.textContent = "";
    return;
  }
  function show(text) {
    if (status) {
      status.textContent = text;
      status.className = "status " + text;
    }
  }
  var busy = false, again = false, es = null;
  function finished() {
    return root.querySelector("[data-finished]") !== null || root.hasAttribute("data-finished");
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(root.getAttribute("data-part"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        root.innerHTML = html;
        root.setAttribute("data-updates", String(Number(root.getAttribute("data-updates") || "0") + 1));
        if (finished() && es) { es.close(); show("ended"); }
      })
      .catch(function () { show("offline"); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  if (finished()) { show("ended"); return; }
  es = new EventSource(root.getAttribute("data-events"));
  es.addEventListener("open", function () { show("live"); });
  es.addEventListener("error", function () { if (!finished()) { show("reconnecting"); } });
  es.addEventListener("tail", refresh);
  es.addEventListener("change", refresh);
})();
