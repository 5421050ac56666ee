// The portal's own script: the theme switch and copy buttons. Pages read without it.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("loopml-theme"); } catch (e) { /* private mode */ }
  if (saved === "dark" || saved === "light") { root.setAttribute("data-theme", saved); }
  function say(button, source, label, note) {
    var box = document.getElementById(source.id + "-note");
    if (box) { box.textContent = note; }
    button.textContent = label;
  }
  function copied(button, source) {
    say(button, source, "Copied", "Copied.");
    setTimeout(function () { say(button, source, "Copy", ""); }, 1500);
  }
  // Without the Clipboard API (plain HTTP on a host other than localhost is not a secure
  // context, so navigator.clipboard is undefined there) the snippet is selected and copied
  // the old way; where even that is refused it stays selected for Ctrl+C.
  function fallback(button, source) {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    if (done) { copied(button, source); } else { say(button, source, "Copy", "Selected: press Ctrl+C to copy."); }
  }
  function copy(button, source) {
    if (!navigator.clipboard || !navigator.clipboard.writeText) { fallback(button, source); return; }
    navigator.clipboard.writeText(source.textContent).then(
      function () { copied(button, source); },
      function () { fallback(button, source); }
    );
  }
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var dark = root.getAttribute("data-theme") === "dark" ||
          (root.getAttribute("data-theme") === "auto" && window.matchMedia("(prefers-color-scheme: dark)").matches);
        var next = dark ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try { localStorage.setItem("loopml-theme", next); } catch (e) { /* private mode */ }
      });
    }
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (source) { copy(button, source); }
      });
    });
  });
}());
