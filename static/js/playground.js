// The playground: each probe panel opens its own WebSocket and shows the three responses as
// they grow. Messages are JSON: {"status", "outputs": {side: text so far}, "message", "error"}.
(function () {
  function connect(panel) {
    if (panel.dataset.connected) return;
    panel.dataset.connected = "1";
    var status = panel.querySelector("[data-probe-status]");
    var message = panel.querySelector("[data-probe-message]");
    var error = panel.querySelector("[data-probe-error]");
    var stale = panel.querySelector("[data-probe-stale]");
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + panel.dataset.probeSocket);
    var staleTimer = setTimeout(function () {
      if (panel.dataset.status === "queued" && stale) stale.hidden = false;
    }, 20000);
    socket.onmessage = function (event) {
      var data = JSON.parse(event.data);
      Object.keys(data.outputs || {}).forEach(function (side) {
        var pre = panel.querySelector('pre[data-side="' + side + '"]');
        if (pre && typeof data.outputs[side] === "string" && pre.textContent !== data.outputs[side]) {
          pre.textContent = data.outputs[side];
          panel.dataset.updates = String(Number(panel.dataset.updates || 0) + 1);
        }
      });
      if (data.status && data.status !== panel.dataset.status) {
        panel.dataset.status = data.status;
        status.className = "badge badge-" + data.status;
        status.textContent = {queued: "Queued", running: "Running", succeeded: "Done", failed: "Failed"}[data.status] || data.status;
        if (data.status !== "queued" && stale) stale.hidden = true;
      }
      if (message) message.textContent = data.status === "succeeded" ? "" : (data.message || "");
      if (data.error) { error.textContent = data.error; error.hidden = false; }
      if (data.status === "succeeded" || data.status === "failed") { clearTimeout(staleTimer); socket.close(); }
    };
    socket.onclose = function () {
      if (panel.dataset.status === "queued" || panel.dataset.status === "running") {
        if (message) message.textContent = "Connection lost; reload the page to see the result.";
      }
    };
  }
  function scan() {
    document.querySelectorAll(".probe[data-probe-socket]").forEach(function (panel) {
      if (panel.dataset.status === "queued" || panel.dataset.status === "running") connect(panel);
    });
  }
  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("htmx:afterSettle", scan);
})();
