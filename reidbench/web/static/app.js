// Polls the server for the job table, the device panel and new log bytes; no outside scripts.
(function () {
  "use strict";
  async function refresh(id, url) {
    const el = document.getElementById(id);
    if (!el) return;
    try {
      const r = await fetch(url, { cache: "no-store" });
      if (r.ok) el.innerHTML = await r.text();
    } catch (e) { /* server restarting: try again next time */ }
  }
  if (document.getElementById("jobs-body")) {
    setInterval(function () {
      refresh("jobs-body", "/fragment/jobs" + window.location.search);
      refresh("devices", "/fragment/devices");
    }, 1000);
  }
  const log = document.getElementById("log");
  if (log) {
    let offset = 0;
    const follow = document.getElementById("follow");
    async function tail() {
      try {
        const r = await fetch(log.dataset.url + "?offset=" + offset, { cache: "no-store" });
        if (r.ok) {
          const text = await r.text();
          offset = parseInt(r.headers.get("X-Log-Offset") || "0", 10);
          const status = r.headers.get("X-Job-Status");
          if (status) document.getElementById("job-status").textContent = status;
          if (text) {
            log.appendChild(document.createTextNode(text));
            if (follow.checked) log.scrollTop = log.scrollHeight;
          }
        }
      } catch (e) { /* retry */ }
      setTimeout(tail, 700);
    }
    tail();
  }
})();
