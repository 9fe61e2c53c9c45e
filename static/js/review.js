// Review queue keyboard shortcuts. Loaded with every htmx swap of the page, bound once.
(function () {
  if (window.icon2ReviewKeys) return;
  window.icon2ReviewKeys = true;
  var busy = false;
  // htmx wires up swapped-in forms only when they settle; a fast key press must not beat it
  // (the form would submit natively and reload the page).
  function ready(el) { if (window.htmx && el) window.htmx.process(el.closest("form") || el); return el; }
  document.addEventListener("htmx:beforeRequest", function () { busy = true; });
  document.addEventListener("htmx:afterSwap", function () { busy = false; });
  document.addEventListener("htmx:afterRequest", function () { busy = false; });
  document.addEventListener("htmx:responseError", function () { busy = false; });

  function openEdit(side) {
    var form = document.querySelector("[data-edit-form=" + side + "]");
    if (!form) return;
    form.hidden = false;
    var text = document.querySelector("[data-text=" + side + "]");
    if (text) text.hidden = true;
    var area = form.querySelector("textarea");
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }
  function closeEdit(form) {
    form.hidden = true;
    var text = document.querySelector("[data-text=" + form.getAttribute("data-edit-form") + "]");
    if (text) text.hidden = false;
  }
  document.addEventListener("click", function (event) {
    var edit = event.target.closest("[data-edit]");
    if (edit) openEdit(edit.getAttribute("data-edit"));
    var cancel = event.target.closest("[data-edit-cancel]");
    if (cancel) closeEdit(cancel.closest("form"));
  });
  var KEYS = { "1": "left", ArrowLeft: "left", "2": "right", ArrowRight: "right", t: "tie", b: "both_bad", s: "skip" };
  document.addEventListener("keydown", function (event) {
    if (!document.getElementById("review-main")) return;
    var target = event.target;
    var typing = target.matches && target.matches("textarea, input, select");
    if (typing) {
      var form = target.closest("form[data-edit-form]");
      if (event.key === "Escape") {
        if (form) closeEdit(form);
        target.blur();
        event.preventDefault();
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        ready(form || target.form).requestSubmit();
        event.preventDefault();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || busy) return;
    var choice = KEYS[event.key];
    if (choice) {
      var button = document.querySelector("#verdict-form [data-key=" + choice + "]");
      if (button) { ready(button).click(); event.preventDefault(); }
    } else if (event.key === "u") {
      var undo = document.querySelector("#undo-form button:not([disabled])");
      if (undo) { ready(undo).click(); event.preventDefault(); }
    } else if (event.key === "e" || event.key === "r") {
      openEdit(event.key === "e" ? "left" : "right");
      event.preventDefault();
    } else if (event.key === "n") {
      var rationale = document.getElementById("rationale");
      if (rationale) { rationale.focus(); event.preventDefault(); }
    }
  });
})();
