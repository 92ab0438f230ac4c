// The console's only script: refresh the live part of a page, and show a
// node's details on click. No framework, nothing vendored.
(function () {
  const live = document.getElementById("live");
  function bind() {
    const data = document.getElementById("node-details");
    const out = document.getElementById("details");
    if (!data || !out) return;
    const details = JSON.parse(data.textContent || "{}");
    document.querySelectorAll("#dag .node").forEach(function (g) {
      const show = function () {
        const n = details[g.dataset.node];
        out.hidden = false;
        out.textContent = g.dataset.node + "\n" + JSON.stringify(n, null, 2);
      };
      g.addEventListener("click", show);
      g.addEventListener("keydown", function (e) { if (e.key === "Enter") show(); });
    });
  }
  bind();
  if (!live || !live.dataset.refresh) return;
  const every = parseInt(live.dataset.refresh, 10);
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", "1");
  setInterval(function () {
    // Not while someone types into a form.
    if (document.activeElement && document.activeElement.tagName === "INPUT") return;
    fetch(url, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null) return;
      const open = document.getElementById("details");
      const wasOpen = open && !open.hidden ? open.textContent : null;
      live.innerHTML = html;
      bind();
      if (wasOpen) { const d = document.getElementById("details"); d.hidden = false; d.textContent = wasOpen; }
    }).catch(function () {});
  }, every);
})();
