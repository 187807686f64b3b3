"use strict";
// The control centre's figures: header tiles, the city map (drawn from the registry's lat/lon, no
// tiles, nothing from the internet), the device panel with its chart (vendored uPlot), the flood
// board and the lighting rate by road. Registry and alert text is untrusted: it only ever goes
// into the page as textContent or attribute values, never as markup.
(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const SEV_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
  const CLASS_ZH = { expressway: "快速路", main: "主干路", secondary: "次干路", branch: "支路" };
  const TREND = { rising: "↑ 上涨 rising", steady: "→ 平稳 steady", receding: "↓ 回落 receding" };
  const RULES_ZH = {
    lamp_dark: "路灯不亮", lamp_day_burning: "白天亮灯", lamp_power_abnormal: "功率异常",
    lamp_voltage_abnormal: "电压异常", lamp_power_factor_low: "功率因数低", lamp_fault: "灯具故障",
    cabinet_outage: "配电箱停电", device_offline: "设备离线", water_level: "积水超限",
    water_rising_fast: "水位快速上涨", sensor_stuck: "传感器数值不变", battery_low: "电池电量低",
  };

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  async function getJSON(url) {
    // The page keeps the operator's token for this tab (http.read_token_required needs it on reads).
    const t = sessionStorage.getItem("streetwatch.token");
    const headers = t ? { "Authorization": `Bearer ${t}` } : {};
    const r = await fetch(url, { cache: "no-store", headers });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }
  const fmt = (v, suffix = "") => (v == null ? "—" : `${v}${suffix}`);
  const pct = (v) => (v == null ? "—" : `${Number(v).toFixed(1)}%`); // rates carry one decimal

  // ---- header tiles ---------------------------------------------------------------------------
  function setTile(id, value, state) {
    const tile = $(id);
    tile.querySelector("b").textContent = value;
    tile.classList.remove("good", "bad", "warn");
    if (state) tile.classList.add(state);
  }

  async function loadOverview() {
    const o = await getJSON("/api/kpi/overview");
    const rate = o.lighting.rate;
    setTile("kpi-lighting", pct(rate), rate == null ? "" : o.lighting.worst_roads.some((r) => r.ok === false) ? "bad" : "good");
    const list = $("kpi-worst");
    list.replaceChildren(...o.lighting.worst_roads.map((r) => el("li", { class: r.ok === false ? "below" : "" },
      `${r.road} ${pct(r.rate)} / ${pct(r.target)}`)));
    setTile("kpi-online", pct(o.online.rate), o.online.rate != null && o.online.rate < 95 ? "warn" : "good");
    $("kpi-online-n").textContent = `${o.online.online}/${o.online.devices}`;
    setTile("kpi-open", String(o.open_alerts.total), o.open_alerts.by_severity.critical ? "bad" : o.open_alerts.total ? "warn" : "good");
    const sev = o.open_alerts.by_severity;
    $("kpi-open-sev").textContent = `紧急 ${sev.critical} · 重要 ${sev.major} · 次要 ${sev.minor} · 提示 ${sev.warning}`;
    setTile("kpi-flood", String(o.in_flood), o.in_flood ? "bad" : "good");
    setTile("kpi-overdue", String(o.overdue), o.overdue ? "bad" : "good");
  }

  // ---- the map --------------------------------------------------------------------------------
  const devices = new Map();    // id -> device (from /api/devices)
  const dots = new Map();       // id -> <circle>
  const openAlerts = new Map(); // device -> Map(alert id -> severity)
  const view = { x: 0, y: 0, w: 1000, h: 600 };
  let home = { ...view };
  let selected = null;

  function project(list) {
    const placed = list.filter((d) => Number.isFinite(d.lat) && Number.isFinite(d.lon));
    if (!placed.length) return () => null;
    const lat0 = placed.reduce((s, d) => s + d.lat, 0) / placed.length;
    const k = Math.cos((lat0 * Math.PI) / 180);
    // Equirectangular around the city's mean latitude: metres-true enough for one city.
    return (d) => (Number.isFinite(d.lat) && Number.isFinite(d.lon) ? [d.lon * k * 111320, -d.lat * 110540] : null);
  }

  function setView() { $("map").setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`); }

  function drawMap(items) {
    const map = $("map");
    const roadsG = $("map-roads");
    const dotsG = $("map-dots");
    roadsG.replaceChildren();
    dotsG.replaceChildren();
    dots.clear();
    const proj = project(items);
    const pts = [];
    for (const d of items) {
      const p = proj(d);
      d._xy = p;
      if (p) pts.push(p);
    }
    if (!pts.length) return;
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = Math.max(x1 - x0, y1 - y0, 200) * 0.06;
    x0 -= pad; x1 += pad; y0 -= pad; y1 += pad;
    const box = map.getBoundingClientRect();
    const aspect = box.width && box.height ? box.width / box.height : 16 / 9;
    let w = x1 - x0;
    let h = y1 - y0;
    if (w / h < aspect) { const nw = h * aspect; x0 -= (nw - w) / 2; w = nw; } else { const nh = w / aspect; y0 -= (nh - h) / 2; h = nh; }
    Object.assign(view, { x: x0, y: y0, w, h });
    home = { ...view };
    setView();
    const unit = w / 400; // dot size and line width in map units, so they look alike at any extent
    // Roads: a line through the road's lamps, ordered along the road's longer extent.
    const byRoad = new Map();
    for (const d of items) {
      if (d.kind !== "lamp" || !d._xy || !d.road) continue;
      if (!byRoad.has(d.road)) byRoad.set(d.road, []);
      byRoad.get(d.road).push(d._xy);
    }
    for (const [road, list] of byRoad) {
      const sx = Math.max(...list.map((p) => p[0])) - Math.min(...list.map((p) => p[0]));
      const sy = Math.max(...list.map((p) => p[1])) - Math.min(...list.map((p) => p[1]));
      const axis = sx >= sy ? 0 : 1;
      list.sort((a, b) => a[axis] - b[axis]);
      const line = svg("polyline", { class: "road", points: list.map((p) => p.join(",")).join(" "), "stroke-width": unit * 3 });
      const title = svg("title");
      title.textContent = road;
      line.append(title);
      roadsG.append(line);
    }
    for (const d of items) {
      if (!d._xy) continue;
      const c = svg("circle", {
        class: "dev", cx: d._xy[0], cy: d._xy[1], r: unit * (d.kind === "lamp" ? 3 : 5),
        "stroke-width": unit * 1.2, "data-device": d.device, "data-kind": d.kind,
        "data-lat": d.lat, "data-lon": d.lon, tabindex: "0",
      });
      const title = svg("title");
      title.textContent = `${d.device} · ${d.road || ""} ${d.point || ""}`;
      c.append(title);
      dots.set(d.device, c);
      dotsG.append(c);
      paint(d.device);
    }
  }

  function paint(id) {
    const c = dots.get(id);
    const d = devices.get(id);
    if (!c || !d) return;
    const cls = ["dev"];
    if (d.kind === "waterlevel") {
      cls.push("water");
      if (d.level) cls.push(`l${d.level}`);
      if (!d.online) cls.push("offline");
    } else if (!d.online) cls.push("offline");
    else cls.push(d.lit === false ? "dark" : d.lit === true ? "lit" : "offline");
    // Its own alerts, and for a lamp its cabinet's (a cabinet_outage is raised on the cabinet).
    const sevs = [...(openAlerts.get(id)?.values() || [])];
    if (d.kind === "lamp" && d.cabinet) sevs.push(...(openAlerts.get(`cabinet:${d.cabinet}`)?.values() || []));
    if (sevs.length) {
      const worst = sevs.sort((a, b) => (SEV_RANK[a] ?? 9) - (SEV_RANK[b] ?? 9))[0];
      cls.push("alert", `sev-${worst}`);
      c.dataset.alert = worst;
    } else {
      delete c.dataset.alert;
    }
    if (selected === id) cls.push("selected");
    c.setAttribute("class", cls.join(" "));
    c.dataset.state = cls.slice(1).join(" ");
  }

  async function loadDevices(first) {
    const body = await getJSON("/api/devices");
    const before = new Set(devices.keys());
    for (const d of body.items) {
      devices.set(d.device, d);
      if (!openAlerts.has(d.device)) openAlerts.set(d.device, new Map());
    }
    const changed = first || body.items.length !== before.size || body.items.some((d) => !before.has(d.device));
    if (changed) drawMap(body.items);
    else for (const id of devices.keys()) paint(id);
    $("map").dataset.ready = "1";
  }

  async function loadOpenAlerts() {
    const body = await getJSON("/api/alerts?state=open&limit=1000");
    for (const m of openAlerts.values()) m.clear();
    for (const a of body.items || []) onAlert(a, false);
    for (const id of dots.keys()) paint(id);
  }

  // Every alert change from the page's live feed (the alert list dispatches `sw:alert`).
  function onAlert(a, live = true) {
    if (!a || !a.device) return;
    const key = a.kind === "cabinet" ? `cabinet:${a.device}` : a.device;
    if (!openAlerts.has(key)) openAlerts.set(key, new Map());
    const m = openAlerts.get(key);
    if (a.state === "closed") m.delete(a.id); else m.set(a.id, a.severity);
    if (!live) return;
    if (a.kind === "cabinet") {
      for (const d of devices.values()) if (d.cabinet === a.device) paint(d.device);
    } else {
      paint(a.device);
      if (selected === a.device) showAlerts(a.device);
    }
  }
  document.addEventListener("sw:alert", (ev) => onAlert(ev.detail));

  // zoom and pan: wheel / pinch-less buttons / drag
  function zoom(f, cx, cy) {
    const nx = cx - (cx - view.x) * f;
    const ny = cy - (cy - view.y) * f;
    Object.assign(view, { x: nx, y: ny, w: view.w * f, h: view.h * f });
    setView();
  }
  function toMap(ev) {
    const r = $("map").getBoundingClientRect();
    return [view.x + ((ev.clientX - r.left) / r.width) * view.w, view.y + ((ev.clientY - r.top) / r.height) * view.h];
  }
  function setupMap() {
    const map = $("map");
    map.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const [cx, cy] = toMap(ev);
      zoom(ev.deltaY > 0 ? 1.25 : 0.8, cx, cy);
    }, { passive: false });
    let drag = null;
    map.addEventListener("pointerdown", (ev) => {
      if (ev.target.closest(".dev")) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y };
      map.setPointerCapture(ev.pointerId);
      map.classList.add("dragging");
    });
    map.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const r = map.getBoundingClientRect();
      view.x = drag.vx - ((ev.clientX - drag.x) / r.width) * view.w;
      view.y = drag.vy - ((ev.clientY - drag.y) / r.height) * view.h;
      setView();
    });
    const end = () => { drag = null; map.classList.remove("dragging"); };
    map.addEventListener("pointerup", end);
    map.addEventListener("pointercancel", end);
    map.addEventListener("click", (ev) => {
      const c = ev.target.closest(".dev");
      if (c) openPanel(c.dataset.device);
    });
    map.addEventListener("keydown", (ev) => {
      const c = ev.target.closest(".dev");
      if (c && (ev.key === "Enter" || ev.key === " ")) openPanel(c.dataset.device);
    });
    $("zoom-in").addEventListener("click", () => zoom(0.7, view.x + view.w / 2, view.y + view.h / 2));
    $("zoom-out").addEventListener("click", () => zoom(1 / 0.7, view.x + view.w / 2, view.y + view.h / 2));
    $("zoom-home").addEventListener("click", () => { Object.assign(view, home); setView(); });
  }

  // ---- the device panel -----------------------------------------------------------------------
  let charts = [];

  function showAlerts(id) {
    const list = $("panel-alerts");
    getJSON(`/api/alerts?state=open&device=${encodeURIComponent(id)}&limit=50`).then((body) => {
      const items = body.items || [];
      list.replaceChildren(...(items.length ? items.map((a) => el("li", { "data-id": a.id },
        `${RULES_ZH[a.rule] || a.rule} (${a.severity}) · ${a.message}`)) : [el("li", {}, "无未关闭告警 · no open alerts")]));
    }).catch(() => {});
  }

  async function openPanel(id) {
    const d = devices.get(id);
    if (!d) return;
    const prev = selected;
    selected = id;
    if (prev) paint(prev);
    paint(id);
    const panel = $("panel");
    panel.hidden = false;
    panel.dataset.device = id;
    $("panel-title").textContent = `${d.device}`;
    const facts = [
      ["类型 Kind", d.kind === "lamp" ? "路灯 lamp" : "积水点 waterlogging point"],
      ["道路 Road", `${d.road || "—"}${d.road_class ? ` (${CLASS_ZH[d.road_class] || d.road_class})` : ""}`],
      [d.kind === "lamp" ? "配电箱 Cabinet" : "点位 Point", (d.kind === "lamp" ? d.cabinet : d.point) || "—"],
      ["位置 Place", d.lat != null ? `${d.lat}, ${d.lon}` : "—"],
      ["在线 Online", d.online ? "在线 online" : "离线 offline"],
      ["最后上报 Last seen", d.last_seen ? new Date(d.last_seen).toLocaleString("zh-CN") : "从未 never"],
    ];
    if (d.kind === "lamp") facts.push(["亮灯 Lit", d.lit == null ? "—" : d.lit ? "亮 lit" : "暗 dark"]);
    else facts.push(["水深 Depth", d.depth_cm == null ? "—" : `${d.depth_cm} cm (${d.level || 0}级)`]);
    $("panel-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    showAlerts(id);
    await drawCharts(d);
  }

  function lastNight() {
    // The night the figures call current: from local 16:00 of that evening to 09:00 the next day.
    const now = new Date();
    const start = new Date(now);
    if (now.getHours() < 12) start.setDate(start.getDate() - 1);
    start.setHours(16, 0, 0, 0);
    const end = new Date(start);
    end.setDate(end.getDate() + 1);
    end.setHours(9, 0, 0, 0);
    return [start.getTime(), Math.min(end.getTime(), Date.now())];
  }

  async function drawCharts(d) {
    for (const c of charts) c.destroy();
    charts = [];
    const box = $("panel-charts");
    box.replaceChildren();
    const [from, to] = d.kind === "lamp" ? lastNight() : [Date.now() - 86400000, Date.now()];
    const specs = d.kind === "lamp"
      ? [["power", "功率 Power (W)"], ["voltage", "电压 Voltage (V)"], ["on", "开关 On/off"]]
      : [["depth_cm", "水深 Depth (cm)"], ["rain_mm", "雨量 Rain (mm)"]];
    const width = Math.max(240, box.getBoundingClientRect().width || 320);
    for (const [field, label] of specs) {
      const wrap = el("div", { class: "chart", "data-field": field }, el("h3", {}, label));
      box.append(wrap);
      let s;
      try {
        s = await getJSON(`/api/series?device=${encodeURIComponent(d.device)}&field=${field}&from=${from}&to=${to}`);
      } catch (err) {
        wrap.append(el("p", {}, `无法加载 could not load: ${err.message}`));
        continue;
      }
      wrap.dataset.points = String(s.t.length);
      wrap.dataset.total = String(s.n.reduce((a, b) => a + b, 0));
      if (!s.t.length) { wrap.append(el("p", {}, "无数据 no readings")); continue; }
      const xs = s.t.map((t) => t / 1000);
      const series = [{}, { label: "均值 mean", stroke: "#4ea1ff", width: 1.5 }];
      const data = [xs, s.mean];
      if (field !== "on") {
        series.push({ label: "最小 min", stroke: "#2b5d99", width: 1 }, { label: "最大 max", stroke: "#2b5d99", width: 1 });
        data.push(s.min, s.max);
      }
      if (field === "depth_cm") {
        for (const [i, at] of (levelsOf(d) || []).entries()) {
          series.push({ label: `${i + 1}级 L${i + 1}`, stroke: ["#f2c230", "#ff8a1f", "#ff4d4f", "#b00020"][i] || "#ff4d4f", dash: [4, 4], width: 1, points: { show: false } });
          data.push(xs.map(() => at));
        }
      }
      const opts = {
        width, height: 150, series,
        axes: [{ stroke: "#8fa3c2", grid: { stroke: "#1c2740" } }, { stroke: "#8fa3c2", grid: { stroke: "#1c2740" } }],
        scales: { x: { time: true } },
      };
      charts.push(new window.uPlot(opts, data, wrap));
    }
  }

  const floodLevels = new Map();
  function levelsOf(d) { return floodLevels.get(d.device); }

  // ---- flood board and lighting by road -------------------------------------------------------
  async function loadFlood() {
    const f = await getJSON("/api/kpi/flood");
    const rows = f.points.map((p) => {
      floodLevels.set(p.device, p.levels);
      return el("tr", { "data-device": p.device, class: p.level >= 1 ? "below" : "" },
        el("td", {}, p.point || p.device), el("td", {}, p.road || "—"),
        el("td", { class: "num" }, p.depth_cm == null ? "—" : (Math.round(p.depth_cm * 10) / 10).toFixed(1)), el("td", { class: "num" }, String(p.level || 0)),
        el("td", { class: p.trend ? `trend-${p.trend}` : "" }, p.trend ? `${TREND[p.trend]} ${fmt(p.cm_per_10min)}` : "—"),
        el("td", { class: "num" }, fmt(p.rain_mm_1h)), el("td", { class: "num" }, fmt(p.battery, "%")),
        el("td", {}, p.above_level1_since ? new Date(p.above_level1_since).toLocaleTimeString("zh-CN") : "—"));
    });
    $("flood-rows").replaceChildren(...rows);
  }

  async function loadLighting() {
    const l = await getJSON("/api/kpi/lighting");
    $("lighting-when").textContent = `${l.date} · ${new Date(l.from).toLocaleTimeString("zh-CN")} → ${new Date(l.to).toLocaleTimeString("zh-CN")}`;
    $("lighting-rows").replaceChildren(...l.by_road.map((r) => el("tr", { "data-road": r.road },
      el("td", {}, r.road || "—"), el("td", {}, CLASS_ZH[r.road_class] || r.road_class || "—"),
      el("td", { class: "num" }, String(r.lamps)), el("td", { class: `num${r.ok === false ? " below" : ""}` }, pct(r.rate)),
      el("td", { class: "num" }, pct(r.target)))));
  }

  // ---- start ----------------------------------------------------------------------------------
  const safe = (fn) => () => fn().catch((err) => console.warn("figures:", err.message));
  setupMap();
  safe(loadOverview)();
  safe(loadLighting)();
  safe(loadFlood)();
  safe(async () => { await loadDevices(true); await loadOpenAlerts(); })();
  setInterval(safe(loadOverview), 30000);
  // The live feed brings every change; this catches what a reconnect's snapshot dropped silently.
  setInterval(safe(async () => { await loadDevices(false); await loadOpenAlerts(); }), 30000);
  setInterval(safe(loadFlood), 60000);
  setInterval(safe(loadLighting), 120000);
  window.addEventListener("resize", () => { if (devices.size) drawMap([...devices.values()]); });
})();
