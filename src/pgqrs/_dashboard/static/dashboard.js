// pgqrs dashboard: live refresh, confirmations, select-all. No dependencies.
(function () {
  "use strict";

  // Live refresh: re-fetch this page and swap the element marked data-refresh.
  function startLive(el) {
    var seconds = parseInt(el.getAttribute("data-refresh"), 10) || 5;
    var status = document.querySelector(".live");
    function tick() {
      if (document.hidden || el.contains(document.activeElement) && document.activeElement !== document.body) {
        return;
      }
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (!r.ok) { throw new Error(String(r.status)); }
          return r.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(el.id);
          if (fresh) { el.replaceChildren.apply(el, Array.prototype.slice.call(fresh.childNodes)); }
          if (status) { status.classList.remove("stale"); }
        })
        .catch(function () { if (status) { status.classList.add("stale"); } });
    }
    window.setInterval(tick, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(startLive);

    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });

    document.querySelectorAll("[data-select-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        var table = box.closest("table");
        table.querySelectorAll("tbody input[type=checkbox]").forEach(function (b) { b.checked = box.checked; });
      });
    });
  });
})();
