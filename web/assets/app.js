// clipd's page: keeps the camera tiles, their states and the events fresh.
// Plain JavaScript, no build step; everything else is rendered by the
// server. Text from the daemon goes into the page as textContent only.
"use strict";

(function () {
  const FRAME_MS = 1000;
  const STATES_MS = 2000;
  const EVENTS_MS = 5000;

  // An expired login (a new token) sends the page back to the login form.
  function checkAuth(resp) {
    if (resp.status === 401) {
      location.assign("/login");
      throw new Error("login needed");
    }
    return resp;
  }

  function localTime(el) {
    const d = new Date(el.dateTime);
    if (el.dateTime && !isNaN(d)) {
      el.textContent = d.toLocaleString();
      el.title = el.dateTime;
    }
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(localTime);
  }

  function timeElement(iso) {
    const t = document.createElement("time");
    t.dateTime = iso || "";
    t.textContent = iso ? "" : "–";
    localTime(t);
    return t;
  }

  // Each tile fetches its camera's newest frame about once a second,
  // never two at a time, and not while the page is hidden.
  function refreshFrames() {
    document.querySelectorAll("img.live").forEach(function (img) {
      let busy = false;
      let shown = null;
      img.addEventListener("load", function () {
        if (shown && shown !== img.src) {
          URL.revokeObjectURL(shown);
        }
        shown = img.src.startsWith("blob:") ? img.src : null;
      });
      setInterval(async function () {
        if (busy || document.hidden) {
          return;
        }
        busy = true;
        try {
          const resp = checkAuth(await fetch(img.dataset.src, { cache: "no-store", credentials: "same-origin" }));
          if (!resp.ok) {
            img.classList.add("stale");
            return;
          }
          const blob = await resp.blob();
          img.src = URL.createObjectURL(blob);
          img.classList.remove("stale");
        } catch (e) {
          img.classList.add("stale");
        } finally {
          busy = false;
        }
      }, FRAME_MS);
    });
  }

  async function refreshStates() {
    let cams;
    try {
      cams = await checkAuth(await fetch("/api/cameras", { cache: "no-store", credentials: "same-origin" })).json();
    } catch (e) {
      return;
    }
    for (const cam of cams) {
      const tile = document.querySelector('article.camera[data-camera="' + CSS.escape(cam.name) + '"]');
      if (!tile) {
        continue;
      }
      const fps = tile.querySelector(".fps");
      if (fps) {
        fps.textContent = cam.fps.toFixed(1) + " fps";
      }
      for (const t of cam.targets) {
        const li = tile.querySelector('li[data-region="' + CSS.escape(t.region) + '"]');
        if (!li) {
          continue;
        }
        li.querySelector(".label").textContent = t.state.label || "unknown";
        const since = li.querySelector(".since time");
        since.dateTime = t.state.since && !t.state.since.startsWith("0001-") ? t.state.since : "";
        localTime(since);
      }
    }
  }

  async function refreshEvents() {
    let events;
    try {
      events = await checkAuth(await fetch("/api/events", { cache: "no-store", credentials: "same-origin" })).json();
    } catch (e) {
      return;
    }
    const list = document.querySelector("ol.events");
    if (!list) {
      return;
    }
    const items = events.map(function (ev) {
      const li = document.createElement("li");
      if (ev.snapshot_url) {
        const a = document.createElement("a");
        a.href = ev.snapshot_url;
        const img = document.createElement("img");
        img.src = ev.snapshot_url;
        img.alt = "snapshot of " + ev.camera;
        a.appendChild(img);
        li.appendChild(a);
      }
      const span = function (cls, text) {
        const s = document.createElement("span");
        s.className = cls;
        s.textContent = text;
        return s;
      };
      li.append(span("target", ev.camera + (ev.region ? "/" + ev.region : "")), " ");
      if (ev.previous) {
        li.append(span("prev", ev.previous), " → ");
      }
      li.append(span("label", ev.label), " ", span("score", ev.score.toFixed(3)), " ", timeElement(ev.time));
      return li;
    });
    if (items.length === 0) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "No event yet.";
      items.push(li);
    }
    list.replaceChildren.apply(list, items);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    refreshFrames();
    setInterval(refreshStates, STATES_MS);
    setInterval(refreshEvents, EVENTS_MS);
  });
})();
