// Small progressive enhancements; every page works without them.
// Behaviour comes from data attributes, never inline handlers: the Content-Security-Policy allows
// no inline script and no eval (htmx runs with allowEval off).
(function () {
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm") || (event.submitter && event.submitter.getAttribute("data-confirm"));
    if (message && !window.confirm(message)) event.preventDefault();
  });
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.hasAttribute && el.hasAttribute("data-submit-on-change") && el.form) el.form.submit();
  });
  document.addEventListener("input", function (event) {
    var el = event.target, id = el.getAttribute && el.getAttribute("data-mirror");
    var other = id && document.getElementById(id);
    if (other) other.value = el.value;
  });
  document.addEventListener("click", function (event) {
    var el = event.target.closest && event.target.closest("[data-select-on-click], [data-remove-closest]");
    if (!el) return;
    if (el.hasAttribute("data-select-on-click")) el.select();
    else {
      var gone = el.closest(el.getAttribute("data-remove-closest"));
      if (gone) gone.remove();
    }
  });
})();

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
  // Calibration follows the chosen model (on for any but the embedded one) until the box is touched.
  function calibrateFollowsModel(select) {
    var box = select.form && select.form.querySelector("input[name=calibrate]");
    if (!box || box.hasAttribute("data-touched")) return;
    var embedded = (select.getAttribute("data-embedded-models") || "").split(" ");
    box.checked = embedded.indexOf(select.value) === -1;
  }
  document.addEventListener("change", function (event) {
    if (!event.target.closest("form[data-run-form]")) return;
    if (event.target.name === "calibrate") event.target.setAttribute("data-touched", "");
    if (event.target.hasAttribute("data-embedded-models")) calibrateFollowsModel(event.target);
    syncRunForm();
  });
  document.addEventListener("DOMContentLoaded", function () { syncRunForm(); });
  document.addEventListener("htmx:afterSettle", function () { syncRunForm(); });
})();

// Live run pages, one path: a message on the run's socket (small JSON) only says "the run changed";
// #run-live then fetches itself (?live=1, one partial) with htmx. One fetch at a time, at most
// every 400 ms; events that arrive while one is out cause one more when it has settled. While the
// socket is down, #run-live polls every 4 s while the run works (data-working) and the socket
// reconnects with a backoff.
(function () {
  var socket = null, retries = 0, timer = null, guard = null, last = 0, dirty = false, inFlight = false;

  function live() { return document.getElementById("run-live"); }
  function indicate() {
    var el = document.getElementById("live-indicator");
    if (el) el.textContent = window.icon2SocketOpen ? "● live" : (socket ? "reconnecting… (polling)" : "");
  }
  function fire() {
    timer = null;
    var el = live();
    if (inFlight || !el || !window.htmx) return;
    dirty = false;
    inFlight = true;
    last = Date.now();
    guard = setTimeout(done, 10000);  // a fetch that never settles must not stop the page for good
    htmx.trigger(el, "icon2-run-changed");
  }
  function done() {
    clearTimeout(guard);
    inFlight = false;
    if (dirty) refresh();
  }
  function refresh() {
    dirty = true;
    if (timer || inFlight) return;
    timer = setTimeout(fire, Math.max(0, last + 400 - Date.now()));
  }
  function isLive(event) { return event.detail.elt && event.detail.elt.id === "run-live"; }
  document.addEventListener("htmx:afterSettle", function (event) {
    indicate();  // the swapped-in tabs carry an empty indicator
    if (isLive(event)) done();
  });
  document.addEventListener("htmx:responseError", function (event) { if (isLive(event)) done(); });
  document.addEventListener("htmx:sendError", function (event) { if (isLive(event)) done(); });

  function connect() {
    var el = live();
    if (!el || !el.dataset.socket || !window.WebSocket) return;
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + el.dataset.socket);
    socket.onopen = function () {
      window.icon2SocketOpen = true;
      retries = 0;
      indicate();
      refresh();  // whatever changed between the page's render and the socket's opening
    };
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (!event.snapshot) refresh();  // the snapshot is what the page was rendered from
    };
    socket.onclose = function () {
      window.icon2SocketOpen = false;
      indicate();
      setTimeout(connect, Math.min(10000, 500 * Math.pow(2, retries++)));
    };
  }
  document.addEventListener("DOMContentLoaded", connect);
  setInterval(function () {
    var el = live();
    if (el && el.dataset.working && !window.icon2SocketOpen) refresh();
  }, 4000);
})();
