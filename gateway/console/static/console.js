// The console's only script: local times beside UTC, "verify now" progress, the replay player.
// No library, nothing fetched from elsewhere; every request goes to this console.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    if (el.dataset.localised) continue;
    const when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) continue;
    const local = document.createElement("span");
    local.className = "local";
    local.textContent = when.toLocaleString() + " local";
    el.after(local);
    el.dataset.localised = "1";
  }
}

function csrf() {
  const field = document.querySelector("input[name=csrf_token]");
  return field ? field.value : "";
}

// ------------------------------------------------------------------ integrity: verify now

function verifyNow() {
  const form = document.getElementById("verify-form");
  if (!form) return;
  const box = document.getElementById("progress");
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const show = (p) => {
    box.hidden = false;
    bar.value = p.fraction || 0;
    text.textContent = p.state === "journal" ? `verifying the chain… ${Math.round((p.fraction || 0) * 100)}%`
      : p.state === "recordings" ? "checking the recordings…" : p.state;
  };
  const poll = async () => {
    const answer = await fetch("/integrity/progress", {credentials: "same-origin"});
    const p = await answer.json();
    show(p);
    if (p.state === "done" || p.state === "error") location.reload();
    else setTimeout(poll, 250);
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await fetch(form.action, {method: "POST", credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf()}});
    if (!answer.ok) { text.textContent = await answer.text(); box.hidden = false; return; }
    show(await answer.json());
    setTimeout(poll, 250);
  });
  if (box && !box.hidden) setTimeout(poll, 250);
}

// ------------------------------------------------------------------ the replay player

function element(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined && text !== null) el.textContent = text;
  return el;
}

function renderEvent(ev) {
  const box = element("div", "ev");
  box.dataset.kind = ev.type;
  const at = element("span", "meta", `[+${ev.t.toFixed(3)} s] `);
  if (ev.type === "statement") {
    box.append(at, element("span", "stmt", ev.sql));
    if (ev.denial) box.append(element("div", "denied",
      `DENIED ${ev.denial.sqlstate}: ${ev.denial.message}`));
  } else if (ev.type === "result") {
    if (ev.columns && ev.columns.length && ev.sample.length) {
      const table = element("table");
      const head = element("tr");
      for (const c of ev.columns) head.append(element("th", null, c.name));
      table.append(head);
      for (const row of ev.sample) {
        const tr = element("tr");
        for (const v of row) tr.append(element("td", null, v === null ? "NULL" : v));
        table.append(tr);
      }
      box.append(table);
    }
    if (ev.copy) box.append(element("div", "meta", `COPY ${ev.copy.direction}: ${ev.copy.bytes} bytes`));
    if (ev.error) box.append(element("div", "denied", `${ev.error.severity}:  ${ev.error.message}`));
    const shown = ev.sample.length < ev.rows ? ` (showing ${ev.sample.length} of ${ev.rows} rows)` : "";
    box.append(element("div", "meta", `${(ev.tags || []).join(", ") || "—"} · ${ev.rows} rows${shown} · ${(ev.duration_s * 1000).toFixed(1)} ms`));
  } else if (ev.type === "session") {
    box.append(at, element("span", "meta", `session of ${ev.identity} from ${ev.client} on ${ev.database}`));
  } else if (ev.type === "end") {
    box.append(at, element("span", "meta", `session ended (${ev.end}): ${ev.statements} statements, ${ev.refused} refused`));
  } else {
    box.append(at, element("span", "meta", ev.text || ev.type));
  }
  return box;
}

function clockText(s) {
  const m = Math.floor(s / 60), r = (s % 60).toFixed(1);
  return `${m}:${r.padStart(4, "0")}`;
}

function player() {
  const root = document.getElementById("player");
  if (!root) return;
  const session = root.dataset.session;
  const screen = document.getElementById("screen");
  const play = document.getElementById("play");
  const speed = document.getElementById("speed");
  const seek = document.getElementById("seek");
  const clock = document.getElementById("clock");
  const follow = document.getElementById("follow");
  const status = document.getElementById("status");
  const events = [];
  let next = 0, shown = 0, position = 0, playing = false, last = null, complete = false;

  const duration = () => events.length ? events[events.length - 1].t : 0;
  const draw = () => {
    while (shown < events.length && events[shown].t <= position) {
      screen.append(renderEvent(events[shown++]));
      screen.scrollTop = screen.scrollHeight;
    }
    const total = duration();
    clock.textContent = `${clockText(position)} / ${clockText(total)}`;
    if (document.activeElement !== seek) seek.value = total ? Math.round(1000 * position / total) : 0;
    root.dataset.shown = String(shown);
  };
  const jump = (to) => {
    position = to; shown = 0; screen.replaceChildren(); draw();
  };
  const tick = (now) => {
    if (!playing) return;
    if (last !== null) position += (now - last) / 1000 * Number(speed.value);
    last = now;
    if (position >= duration() && (complete || !follow.checked)) {
      position = duration(); draw();
      if (complete || !follow.checked) { stop(); status.textContent = complete ? "end of recording" : ""; return; }
    }
    draw();
    requestAnimationFrame(tick);
  };
  const start = () => { playing = true; last = null; play.textContent = "❚❚ Pause"; root.dataset.playing = "1"; requestAnimationFrame(tick); };
  const stop = () => { playing = false; play.textContent = "▶ Play"; root.dataset.playing = "0"; };
  const load = async () => {
    for (;;) {
      const answer = await fetch(`/sessions/${encodeURIComponent(session)}/events?from=${next}`,
        {credentials: "same-origin"});
      if (!answer.ok) { status.textContent = await answer.text(); return; }
      const page = await answer.json();
      events.push(...page.events);
      next = page.next;
      complete = page.complete;
      if (page.problem) status.textContent = page.problem;
      else if (page.check && !page.check.ok) status.textContent = `recording ${page.check.status}: ${page.check.message}`;
      if (!page.more) break;
    }
    root.dataset.loaded = String(events.length);
    draw();
  };
  play.addEventListener("click", () => {
    if (playing) { stop(); return; }
    if (position >= duration() && complete) jump(0);
    start();
  });
  seek.addEventListener("input", () => jump(duration() * seek.value / 1000));
  load().then(() => {
    const followLive = async () => {
      if (follow.checked && !complete) { await load(); if (playing) draw(); }
      if (!complete) setTimeout(followLive, 1000);
    };
    setTimeout(followLive, 1000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  verifyNow();
  player();
});
