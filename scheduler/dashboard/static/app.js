// Babelfish dashboard: polls api/state and redraws. Plain DOM, no framework,
// no innerHTML: every figure from the server goes in as text.
"use strict";

(function () {
  const PHASES = ["Pending", "Admitted", "Running", "Restarting", "Preempted", "Succeeded", "Failed"];
  const qpsHistory = [];
  let pollMillis = 2000;
  let lastOK = 0;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const dash = "–";
  const num = (v, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? dash : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? dash : num(v) + "%");
  function gib(mib) { return mib === null || mib === undefined ? dash : (mib / 1024).toFixed(1); }
  function seconds(s) {
    if (s === null || s === undefined) return dash;
    return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms" : s.toFixed(2) + " s";
  }
  function ago(iso) {
    if (!iso) return dash;
    const d = (Date.now() - Date.parse(iso)) / 1000;
    if (d < 90) return Math.max(0, Math.round(d)) + "s ago";
    if (d < 5400) return Math.round(d / 60) + "m ago";
    if (d < 129600) return Math.round(d / 3600) + "h ago";
    return Math.round(d / 86400) + "d ago";
  }
  function bar(cls) {
    return el("div", { class: "bar " + (cls || "") }, el("span", {}));
  }
  function setBar(b, fraction) {
    const w = fraction === null || fraction === undefined ? 0 : Math.max(0, Math.min(1, fraction)) * 100;
    b.firstChild.style.width = w.toFixed(1) + "%";
    return b;
  }
  function showError(section, errors) {
    const p = document.getElementById("err-" + section);
    const msg = errors && errors[section];
    p.hidden = !msg;
    p.textContent = msg ? "could not load: " + msg : "";
  }

  function renderGPUs(nodes) {
    const root = document.getElementById("gpus");
    const out = [];
    let total = 0, unhealthy = 0, utilSum = 0, utilN = 0;
    for (const n of nodes) {
      const tiles = [];
      for (const g of n.gpus || []) {
        total++;
        if (!g.healthy) unhealthy++;
        if (g.utilPct !== null && g.utilPct !== undefined) { utilSum += g.utilPct; utilN++; }
        const memFrac = g.memUsedMiB != null && g.memTotalMiB ? g.memUsedMiB / g.memTotalMiB : null;
        tiles.push(el("div", {
            class: "gpu" + (g.healthy ? "" : " unhealthy"), "data-node": n.name, "data-index": String(g.index),
            title: (g.uuid || "") + (g.pods && g.pods.length ? "\nheld by " + g.pods.join(", ") : ""),
          },
          el("div", { class: "head" }, el("span", {}, "GPU " + g.index), el("span", { class: "health" }, g.healthy ? "healthy" : "unhealthy")),
          el("div", { class: "row" }, el("span", { class: "muted" }, "util"), el("span", { class: "util" }, pct(g.utilPct))),
          setBar(bar(), g.utilPct == null ? null : g.utilPct / 100),
          el("div", { class: "row" }, el("span", { class: "muted" }, "mem GiB"), el("span", { class: "mem" }, gib(g.memUsedMiB) + " / " + gib(g.memTotalMiB))),
          setBar(bar("mem"), memFrac),
          el("div", { class: "row" },
            el("span", { class: "temp" + (g.tempC >= 80 ? " hot" : "") }, num(g.tempC) + " °C"),
            el("span", { class: "power muted" }, num(g.powerW) + " W")),
          g.healthy ? null : el("div", { class: "reason" }, g.reason || "unhealthy"),
          g.pods && g.pods.length ? el("div", { class: "muted pods" }, g.pods.join(", ")) : null,
        ));
      }
      const model = (n.gpus && n.gpus.length && n.gpus[0].model) || "";
      out.push(el("div", { class: "node", "data-node": n.name },
        el("h3", {}, n.name + " ", el("span", { class: "muted" }, (n.gpus || []).length + " × " + model)),
        el("div", { class: "gpu-grid" }, tiles)));
    }
    if (nodes.length === 0) out.push(el("p", { class: "muted" }, "No GPU reported."));
    root.replaceChildren(...out);
    document.getElementById("sum-gpus").textContent = String(total);
    document.getElementById("sum-unhealthy").textContent = String(unhealthy);
    document.getElementById("sum-util").textContent = utilN ? (utilSum / utilN).toFixed(0) + "%" : dash;
  }

  function renderJobs(jobs) {
    const counts = {};
    for (const j of jobs) counts[j.phase] = (counts[j.phase] || 0) + 1;
    document.getElementById("phases").replaceChildren(...PHASES.filter((p) => counts[p]).map((p) =>
      el("span", { class: "phase phase-" + p, "data-phase": p }, p + " " + counts[p])));
    document.getElementById("sum-queued").textContent = String((counts.Pending || 0) + (counts.Admitted || 0) + (counts.Preempted || 0));
    document.getElementById("sum-running").textContent = String((counts.Running || 0) + (counts.Restarting || 0));
    const rows = jobs.map((j) => {
      const id = (j.namespace ? j.namespace + "/" : "") + j.name;
      const progress = j.steps ? j.step + " / " + j.steps + " (" + Math.floor((100 * j.step) / j.steps) + "%)" : String(j.step);
      return el("tr", { "data-job": id },
        el("td", { title: j.message || "" }, id),
        el("td", {}, j.queue || dash),
        el("td", {}, el("span", { class: "phase phase-" + j.phase }, j.phase || "Pending")),
        el("td", {}, j.workers + " × " + j.gpusPerWorker),
        el("td", { class: "progress" }, progress),
        el("td", { class: "loss" }, num(j.loss, 3)),
        el("td", {}, (j.nodes || []).join(", ") || dash));
    });
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No training job.")));
    document.querySelector("#jobs tbody").replaceChildren(...rows);
  }

  function renderReleases(releases) {
    const rows = releases.map((r) => el("tr", { "data-release": r.model + "/" + r.release },
      el("td", {}, r.model),
      el("td", { class: r.current ? "current" : "" }, String(r.release) + (r.current ? " (current)" : "")),
      el("td", {}, r.source || dash),
      el("td", {}, r.metric == null ? dash : (r.metricName ? r.metricName + " " : "") + num(r.metric, 3)),
      el("td", { title: r.created || "" }, ago(r.created))));
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "No release yet.")));
    document.querySelector("#releases tbody").replaceChildren(...rows);
  }

  function renderServing(s) {
    const dl = document.getElementById("serving");
    if (!s) { dl.replaceChildren(); return; }
    const kv = [
      ["QPS", num(s.qps, 1), "qps"], ["p99 latency", seconds(s.p99Seconds), "p99"],
      ["Errors", (100 * (s.errorRatio || 0)).toFixed(2) + "%", "errors"], ["Replicas", String(s.replicas), "replicas"],
      ["Model", (s.model || dash) + (s.release ? " release " + s.release : ""), "release"],
    ];
    dl.replaceChildren(...kv.flatMap(([k, v, id]) => [el("dt", {}, k), el("dd", { "data-key": id }, v)]));
    document.getElementById("sum-qps").textContent = num(s.qps, 1);
    document.getElementById("sum-p99").textContent = seconds(s.p99Seconds);
    qpsHistory.push(s.qps || 0);
    if (qpsHistory.length > 90) qpsHistory.shift();
    const max = Math.max(1, ...qpsHistory);
    const pts = qpsHistory.map((v, i) => (i * 300 / 89).toFixed(1) + "," + (38 - (36 * v) / max).toFixed(1));
    document.querySelector("#qps-spark polyline").setAttribute("points", pts.join(" "));
  }

  async function poll() {
    const status = document.getElementById("status");
    try {
      const resp = await fetch("api/state", { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const st = await resp.json();
      pollMillis = st.pollMillis || pollMillis;
      document.title = st.title;
      document.getElementById("title").textContent = st.title;
      renderGPUs(st.nodes || []);
      renderJobs(st.jobs || []);
      renderReleases(st.releases || []);
      renderServing(st.serving);
      for (const s of ["gpus", "jobs", "releases", "serving"]) showError(s, st.errors);
      lastOK = Date.now();
      status.className = "status";
      status.textContent = "updated " + new Date(st.generatedAt).toLocaleTimeString() + ", every " + (pollMillis / 1000) + " s";
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    } catch (err) {
      status.className = "status stale";
      status.textContent = "stale" + (lastOK ? " since " + new Date(lastOK).toLocaleTimeString() : "") + ": " + err.message;
    } finally {
      setTimeout(poll, pollMillis);
    }
  }

  poll();
})();
