// The dashboard's only script: pages that show changing state (an endpoint's deliveries, a
// delivery's attempts, a recovery, conversations) mark their <main data-live="ms">, and this
// reloads that part of the page in place while it is visible: when the server's event stream
// (/ui/live) says something changed, and every data-live ms in any case, for the changes it
// does not announce. Without the stream it polls every data-live ms; without JavaScript the
// pages work the same, with a reload.
(function () {
  const main = document.querySelector("main[data-live]");
  if (!main || !window.fetch || !window.DOMParser) return;
  const every = Math.max(1000, parseInt(main.dataset.live, 10) || 3000);
  let busy = false;
  async function refresh() {
    // Not while someone is using a control of the page, so focus and input are kept.
    const active = document.activeElement;
    if (busy || document.hidden || (active && active !== document.body && main.contains(active))) return;
    busy = true;
    try {
      const answer = await fetch(location.href, { headers: { "accept": "text/html" }, credentials: "same-origin" });
      if (!answer.ok || answer.redirected) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.querySelector("main[data-live]");
      if (fresh && fresh.innerHTML !== main.innerHTML) main.innerHTML = fresh.innerHTML;
    } catch (_) {
      // The next round tries again.
    } finally {
      busy = false;
    }
  }
  let poll = every;
  if (window.EventSource) {
    const events = new EventSource("/ui/live");
    events.addEventListener("change", refresh);
    // Announced changes come at once; the timer is only the safety net.
    events.addEventListener("open", function () { poll = Math.max(every, 10000); });
    events.addEventListener("error", function () { poll = every; });
  }
  (function tick() {
    setTimeout(function () { refresh().finally(tick); }, poll);
  })();
})();
