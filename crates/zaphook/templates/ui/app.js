// The dashboard's only script: pages that show changing state (an endpoint's deliveries, a
// delivery's attempts) mark their <main data-live="ms">, and this reloads that part of the page
// in place while it is visible. Without JavaScript the pages work the same, with a reload.
(function () {
  const main = document.querySelector("main[data-live]");
  if (!main || !window.fetch || !window.DOMParser) return;
  const every = Math.max(1000, parseInt(main.dataset.live, 10) || 3000);
  async function refresh() {
    // Not while someone is using a control of the page, so focus and input are kept.
    const active = document.activeElement;
    if (document.hidden || (active && active !== document.body && main.contains(active))) return;
    try {
      const answer = await fetch(location.href, { headers: { "accept": "text/html" }, credentials: "same-origin" });
      if (!answer.ok || answer.redirected) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.querySelector("main[data-live]");
      if (fresh && fresh.innerHTML !== main.innerHTML) main.innerHTML = fresh.innerHTML;
    } catch (_) {
      // The next round tries again.
    }
  }
  setInterval(refresh, every);
})();
