// galtea-otel UI: live refresh, keyboard navigation, copy as JSON. No dependencies, nothing fetched from
// outside this origin. Every handler is defensive: a failed poll or copy is shown in the page, never thrown.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var body = document.body;
  var state = document.querySelector(".live-state");
  var lastHtml = null;
  var inFlight = false;

  function main() { return document.getElementById("main"); }
  function say(text, cls) {
    if (!state) return;
    state.textContent = text;
    body.classList.toggle("offline", cls === "offline");
    body.classList.toggle("live", cls === "live");
  }

  // --- live: fetch this page again, swap in what changed --------------------------------------------------
  function openDetails(root) {
    var open = [];
    root.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
    return open;
  }
  function restoreDetails(root, open, before) {
    var all = root.querySelectorAll("details");
    if (before === all.length) {
      all.forEach(function (d, i) { d.open = open.indexOf(i) >= 0 || d.classList.contains("failed"); });
    }
  }
  // The annotation form (ui --annotate) keeps what is being typed when a new turn swaps the page in.
  function formValues(root) {
    var form = root.querySelector("form.annotate");
    if (!form) return null;
    var values = {};
    form.querySelectorAll("input, select, textarea").forEach(function (f) {
      if (f.name && f.type !== "hidden") values[f.name] = f.value;
    });
    var active = document.activeElement;
    return { values: values, focus: active && form.contains(active) ? active.name : null };
  }
  function restoreForm(root, typed) {
    var form = root.querySelector("form.annotate");
    if (!form || !typed) return;
    form.querySelectorAll("input, select, textarea").forEach(function (f) {
      if (f.name && f.type !== "hidden" && Object.prototype.hasOwnProperty.call(typed.values, f.name)) {
        f.value = typed.values[f.name];
      }
    });
    if (typed.focus) {
      var again = form.querySelector("[name=\"" + typed.focus + "\"]");
      if (again) again.focus();
    }
  }
  function swap(doc) {
    var fresh = doc.getElementById("main");
    var current = main();
    if (!fresh || !current) return;
    if (current.dataset.view === "sessions") {
      var known = {};
      current.querySelectorAll("tr[data-href]").forEach(function (r) { known[r.dataset.href] = true; });
      var selected = current.querySelector("tr.selected");
      var selectedHref = selected ? selected.dataset.href : null;
      ["h1", ".table-area", ".pager"].forEach(function (sel) {
        var a = current.querySelector(sel), b = fresh.querySelector(sel);
        if (a && b) a.replaceWith(b);
      });
      current.querySelectorAll("tr[data-href]").forEach(function (r) {
        if (!known[r.dataset.href]) r.classList.add("fresh");
        if (r.dataset.href === selectedHref) r.classList.add("selected");
      });
    } else {
      var count = current.querySelectorAll("details").length;
      var open = openDetails(current);
      var scroll = window.scrollY;
      var typed = formValues(current);
      current.innerHTML = fresh.innerHTML;
      restoreDetails(current, open, count);
      restoreForm(current, typed);
      window.scrollTo(0, scroll);
    }
  }
  function poll() {
    if (inFlight || document.hidden) return;
    inFlight = true;
    fetch(window.location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        say("live", "live");
        if (html === lastHtml) return;
        var first = lastHtml === null;
        lastHtml = html;
        if (!first) swap(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () { say("offline: retrying", "offline"); })
      .then(function () { inFlight = false; });
  }
  if (body.dataset.live) {
    poll();
    window.setInterval(poll, POLL_MS);
    document.addEventListener("visibilitychange", poll);
  }

  // --- keyboard ------------------------------------------------------------------------------------------------
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-href]")); }
  function turns() { return Array.prototype.slice.call(document.querySelectorAll("section.turn")); }
  function move(list, step, cls) {
    if (!list.length) return;
    var at = list.findIndex(function (el) { return el.classList.contains(cls); });
    var next = Math.max(0, Math.min(list.length - 1, at < 0 ? 0 : at + step));
    list.forEach(function (el) { el.classList.remove(cls); el.removeAttribute("aria-current"); });
    list[next].classList.add(cls);
    list[next].setAttribute("aria-current", "true");
    list[next].scrollIntoView({ block: "nearest" });
    if (list[next].tagName === "SECTION") list[next].focus({ preventScroll: true });
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    var view = main() ? main().dataset.view : "";
    if (ev.key === "/") {
      var q = document.querySelector("input[name=q]");
      if (q) { ev.preventDefault(); q.focus(); q.select(); }
    } else if (ev.key === "j" || (ev.key === "ArrowDown" && view === "sessions")) {
      ev.preventDefault();
      if (view === "sessions") move(rows(), 1, "selected"); else move(turns(), 1, "current");
    } else if (ev.key === "k" || (ev.key === "ArrowUp" && view === "sessions")) {
      ev.preventDefault();
      if (view === "sessions") move(rows(), -1, "selected"); else move(turns(), -1, "current");
    } else if (ev.key === "Enter" && view === "sessions") {
      var row = document.querySelector("tr.selected");
      if (row) { ev.preventDefault(); window.location.href = row.dataset.href; }
    } else if (ev.key === "u" && view !== "sessions") {
      window.location.href = "/";
    } else if (ev.key === "c" && view === "session") {
      copyJson();
    }
  });
  document.addEventListener("click", function (ev) {
    var row = ev.target.closest && ev.target.closest("tr[data-href]");
    if (row && !ev.target.closest("a") && !window.getSelection().toString()) {
      window.location.href = row.dataset.href;
    }
    var button = ev.target.closest && ev.target.closest("[data-copy]");
    if (button) copyJson();
  });

  // --- copy as JSON --------------------------------------------------------------------------------------------
  function copyJson() {
    var data = document.getElementById("session-json");
    var note = document.querySelector(".copied");
    if (!data) return;
    var text = data.textContent;
    function done(ok) { if (note) note.textContent = ok ? "copied" : "select and copy: the browser refused"; }
    function fallback() {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      done(ok);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  }
})();
