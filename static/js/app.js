// Small progressive enhancements; every page works without them.
(function () {
  function syncRunForm(root) {
    var form = (root || document).querySelector("form[data-run-form]");
    if (!form) return;
    var checked = form.querySelector("input[name=instruction_source]:checked");
    var upload = checked && checked.value === "upload";
    form.querySelectorAll("[data-show-when]").forEach(function (el) {
      var rule = el.getAttribute("data-show-when");
      var show = rule === "upload" ? upload : rule === "synthesize" ? !upload : true;
      if (rule === "sampling") show = form.querySelector("input[name=do_sample]").checked;
      if (rule === "no-calibrate") show = !form.querySelector("input[name=calibrate]").checked;
      if (rule === "lora") show = form.querySelector("input[name=dpo_use_lora]").checked;
      if (rule === "review") show = form.querySelector("input[name=require_review]").checked;
      el.classList.toggle("dimmed", !show);
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.closest("form[data-run-form]")) syncRunForm();
  });
  document.addEventListener("DOMContentLoaded", function () { syncRunForm(); });
  document.addEventListener("htmx:afterSettle", function () { syncRunForm(); });
})();

// Live run pages: the WebSocket carries progress; when it drops, the page polls instead.
document.addEventListener("htmx:wsOpen", () => {
  window.icon2SocketOpen = true;
  const el = document.getElementById("live-indicator");
  if (el) el.textContent = "● live";
});
document.addEventListener("htmx:wsClose", () => {
  window.icon2SocketOpen = false;
  const el = document.getElementById("live-indicator");
  if (el) el.textContent = "reconnecting… (polling)";
});
// The run section is reloaded in place when the run changes; keep the indicator honest.
document.addEventListener("htmx:afterSettle", () => {
  const el = document.getElementById("live-indicator");
  if (el && window.icon2SocketOpen) el.textContent = "● live";
});
