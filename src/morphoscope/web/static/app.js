/* morphoscope web app. Hand-written, no dependencies, works offline.
 *
 * The server keeps each image's raw predictions. What the page draws and how its slider works
 * follow what a result holds (its `kind` and `threshold_kind`), never the model's task:
 * - objects with a *score* threshold: the page downloads, once per image, the label image of
 *   *every* object (labels.bin) and the table of every object with its score, class and
 *   measurements (objects); thresholds, class toggles, counts, the table and the plots are then
 *   computed here, instantly, without running the model again;
 * - objects with a *probability* threshold: the server re-makes the objects at each threshold,
 *   so the page asks for labels.bin and objects again when the slider stops;
 * - classes (one probability per class for the whole image): no objects, labels or masks.
 * The overlay is one RGBA bitmap of the image's size, rebuilt when a setting changes, and drawn
 * with the image through one canvas transform: zoom and pan cost two drawImage calls whatever
 * the number of objects.
 */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const PALETTE = [[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178],
    [213, 94, 0], [204, 121, 167], [255, 255, 255]];
  const classRGB = (k) => PALETTE[(Math.max(k, 1) - 1) % PALETTE.length];
  const classCSS = (k) => `rgb(${classRGB(k).join(",")})`;
  const IMAGE_EXT = [".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"];
  const THICK_BELOW = 0.6; // below this zoom, outlines are drawn two pixels wide

  const S = {
    info: null, models: [], examples: [], modelId: null, defs: {},
    images: [], current: null, nextKey: 1,
    threshold: 0.5, classVisible: {}, style: "outline", opacity: 0.4, pixelSize: null, pixelSizeError: null,
    diameter: null, diameterError: null,
    scope: "image", tab: "table", sort: { col: null, dir: -1 },
    hover: 0, selected: 0,
    view: { s: 1, tx: 0, ty: 0, fitted: true },
  };
  const stats = { overlayMs: [], frameMs: [], frames: 0 };
  window.__morphoscope = { state: S, stats, draw: () => requestDraw() };

  // ------------------------------------------------------------------------------------------
  // server calls
  // ------------------------------------------------------------------------------------------
  async function api(url, opts = {}) {
    let resp;
    try {
      resp = await fetch(url, opts);
    } catch (err) {
      setServerStatus("down");
      throw new Error("The morphoscope server does not answer. Is it still running?");
    }
    if (!resp.ok) {
      let msg = `${resp.status} ${resp.statusText}`;
      try { const j = await resp.json(); if (j.detail) msg = detailText(j.detail); } catch (e) { /* not JSON */ }
      if (resp.status === 401) needToken();
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return resp;
  }
  /** An error's detail: one sentence, or FastAPI's list of validation errors. */
  function detailText(detail) {
    if (!Array.isArray(detail)) return String(detail);
    return detail.map((d) => {
      const where = (d.loc || []).filter((p) => !["body", "query", "path", "files"].includes(p) && typeof p !== "number").join(".");
      return where && !String(d.msg).startsWith(where) ? `${where}: ${d.msg}` : d.msg;
    }).join("; ");
  }
  let tokenShown = false;
  function needToken() {
    if (tokenShown) return;
    tokenShown = true;
    toast("This server needs its access token", "Open the address that morphoscope serve printed when it started (it ends in ?token=…).", "error", 0);
  }
  const getJSON = async (url, opts) => (await api(url, opts)).json();
  const postJSON = (url, body) => getJSON(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });

  function uploadFile(file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const form = new FormData();
      form.append("files", file, file.name);
      xhr.open("POST", "/api/uploads");
      xhr.responseType = "json";
      xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total); };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response[0]);
        else {
          if (xhr.status === 401) needToken();
          const err = new Error((xhr.response && xhr.response.detail && detailText(xhr.response.detail)) || `upload failed (${xhr.status})`);
          err.status = xhr.status;
          reject(err);
        }
      };
      xhr.onerror = () => reject(new Error("The upload was interrupted: is the server still running?"));
      xhr.send(form);
    });
  }

  // ------------------------------------------------------------------------------------------
  // small helpers
  // ------------------------------------------------------------------------------------------
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "style") node.style.cssText = v;  // CSSOM: allowed by the page's CSP, a style attribute is not
      else if (k === "html") node.innerHTML = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function fmt(v, col) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e7 && (!col || /^(label|area|area_convex|bbox_.*|objects|count)(_px2)?$/.test(col))) return String(v);
    const a = Math.abs(v);
    if (col === "score" || col === "probability") return v.toFixed(3);
    if (a >= 1e5) return v.toExponential(3);
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    return v.toPrecision(3);
  }
  function unitOf(col) {
    if (/_um2$/.test(col)) return "µm²";
    if (/_px2$/.test(col)) return "px²";
    if (/_um$/.test(col)) return "µm";
    if (/_px$/.test(col)) return "px";
    if (/_deg$/.test(col)) return "°";
    return "";
  }
  function prettyCol(col) {
    if (col === "label") return "#";
    const base = col.replace(/_(um2|px2|um|px|deg)$/, "").replace(/_ch(\d+)$/, " (ch $1)");
    const name = base.replace(/_/g, " ");
    const u = unitOf(col);
    return u ? `${name} (${u})` : name;
  }
  function baseName(col) { return col.replace(/_(um2|px2|um|px|deg)$/, "").replace(/_ch\d+$/, ""); }
  const debounce = (fn, ms) => { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; };
  function throttleRAF(fn) {
    let queued = false;
    return () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; fn(); }); } };
  }
  const current = () => S.images.find((e) => e.key === S.current) || null;
  const model = () => S.models.find((m) => m.id === S.modelId) || null;
  /** A result of objects (labels, masks, a table of objects), rather than of whole-image classes. */
  const hasObjects = (e) => e.kind === "objects";
  /** Objects thresholded by score: the page applies any threshold itself to the base labels. */
  const liveThreshold = (e) => hasObjects(e) && e.thresholdKind === "score";
  /** Objects thresholded by probability: the server re-makes them at each threshold. */
  const serverThreshold = (e) => hasObjects(e) && e.thresholdKind === "probability";
  const THRESHOLD_NAMES = { score: "Score threshold", probability: "Probability threshold" };
  const THRESHOLD_WORDS = { score: "score", probability: "probability" };

  function toast(title, message, kind = "info", ms = 9000) {
    const t = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
      el("div", {}, el("b", {}, title), message ? document.createTextNode(message) : null),
      el("button", { class: "icon-btn", title: "Dismiss", onclick: () => t.remove() }, "×"));
    $("toasts").append(t);
    if (ms) setTimeout(() => t.remove(), ms);
    while ($("toasts").children.length > 4) $("toasts").firstChild.remove();
    return t;
  }
  function setServerStatus(kind, text) {
    const n = $("server-status");
    n.className = `server-status ${kind}`;
    n.textContent = text || { ok: "ready", busy: "working", down: "server not reachable" }[kind] || "";
  }

  // ------------------------------------------------------------------------------------------
  // start-up
  // ------------------------------------------------------------------------------------------
  async function init() {
    bindUI();
    try {
      S.info = await getJSON("/api");
      setServerStatus("ok");
    } catch (err) {
      toast("Cannot reach the server", err.message, "error", 0);
      return;
    }
    const lim = S.info.limits;
    $("dz-limits").textContent = `PNG, JPEG, TIFF (8/16-bit, stacks) · up to ${lim.max_upload_mb} MB, ` +
      `${(lim.max_pixels / 1e6).toFixed(lim.max_pixels < 1e7 ? 1 : 0)} megapixels`;
    const [models, examples, defs] = await Promise.all([
      getJSON("/api/models").catch(() => []),
      getJSON("/api/examples").catch(() => []),
      getJSON("/api/measurements/definitions").catch(() => []),
    ]);
    S.models = models;
    S.examples = examples;
    for (const d of defs) S.defs[d.name] = d;
    renderModels();
    renderExamples();
    const params = new URLSearchParams(location.search);
    if (params.get("job")) {  // ?job=ID[,ID...]: show finished jobs (e.g. made from Python)
      for (const id of params.get("job").split(",").filter(Boolean)) await openJob(id);
    }
    updateAll();
  }

  function renderModels() {
    const sel = $("model-select");
    sel.innerHTML = "";
    if (!S.models.length) {
      sel.append(el("option", {}, "No model installed"));
      sel.disabled = true;
      $("model-card").innerHTML = '<div class="hint">Start the server with <code>--model path/to/model_best.pt</code>.</div>';
      return;
    }
    for (const m of S.models) sel.append(el("option", { value: m.id, title: `${m.name} (${m.task})` }, m.name));
    S.modelId = (S.models.find((m) => m.default) || S.models[0]).id;
    sel.value = S.modelId;
    applyModelDefaults();
  }

  const METRIC_NAMES = {
    "f1@0.5": "F1 @ IoU 0.5", "precision@0.5": "precision", "recall@0.5": "recall", "ap@0.5": "AP @ IoU 0.5",
    "mean_ap@0.5:0.95": "AP @ .5:.95", ap: "AP", ap50: "AP50",
    "ap@[.5:.95]": "AP", miou: "mean IoU", iou: "IoU", dice: "Dice", accuracy: "accuracy",
    macro_f1: "macro F1", micro_f1: "micro F1",
  };
  function renderModelCard() {
    const m = model();
    const card = $("model-card");
    card.innerHTML = "";
    if (!m) return;
    card.append(el("div", { class: "row" }, el("span", { class: "badge task" }, m.task),
      m.backbone ? el("span", { class: "badge" }, m.backbone) : null,
      el("span", { class: "badge" }, m.source === "shipped" ? "shipped" : "checkpoint")));
    const cls = el("div", { class: "row" }, el("span", { class: "muted" }, "classes:"));
    m.classes.forEach((c, i) => cls.append(el("span", { class: "badge", style: `background:${classCSS(i + 1)}33` }, c)));
    card.append(cls);
    if (m.description) card.append(el("p", { class: "model-desc", id: "model-description" }, m.description));
    if (m.trained_on) card.append(el("div", { class: "hint", id: "model-trained-on" }, el("b", {}, "Trained on: "), m.trained_on));
    const order = Object.keys(METRIC_NAMES);
    const keys = Object.keys(m.metrics || {}).filter((k) => !["epoch", "images", "seconds"].includes(k) && typeof m.metrics[k] === "number");
    const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
    keys.sort((a, b) => rank(a) - rank(b));
    if (keys.length) {
      const grid = el("div", { class: "metrics", title: "validation metrics stored with the model" });
      for (const k of keys.slice(0, 6)) {
        const v = m.metrics[k];
        grid.append(el("div", { class: "metric" }, el("b", {}, Math.abs(v) <= 1 ? v.toFixed(3) : fmt(v)),
          el("span", {}, METRIC_NAMES[k] || k)));
      }
      const n = m.metrics.images ? ` (${m.metrics.images} images${m.metrics.epoch !== undefined ? `, epoch ${m.metrics.epoch}` : ""})` : "";
      card.append(el("div", { class: "hint" }, `Validation${n}`), grid);
    } else {
      card.append(el("div", { class: "hint" }, "No validation metrics stored with this model."));
    }
  }

  function applyModelDefaults() {
    const m = model();
    if (!m) return;
    S.threshold = typeof m.threshold === "number" ? m.threshold : 0.5;  // the model's own, as morphoscope predict uses it
    S.classVisible = {};
    m.classes.forEach((_, i) => { S.classVisible[i + 1] = true; });
    $("threshold").value = S.threshold;
    $("diameter-field").hidden = !m.diameter;
    renderModelCard();
  }

  function renderExamples() {
    const box = $("example-list");
    box.innerHTML = "";
    $("examples").hidden = !S.examples.length;
    $("empty-example").hidden = !S.examples.length;
    for (const ex of S.examples.slice(0, 6)) {
      box.append(el("button", {
        class: "example", type: "button", title: `${ex.file}: ${ex.description} (${ex.width}×${ex.height}, ${ex.dtype})`,
        "data-example": ex.name, onclick: () => addExample(ex),
      }, el("img", { src: ex.preview_url, alt: "", loading: "lazy" }), el("span", {}, ex.name)));
    }
  }

  // ------------------------------------------------------------------------------------------
  // images: add, upload, run, poll, load
  // ------------------------------------------------------------------------------------------
  function newEntry(name) {
    const e = {
      key: S.nextKey++, name, status: "uploading", progress: 0, stage: "", error: null, upload: null,
      jobId: null, slice: 0, gen: 0, result: null, kind: null, thresholdKind: null, classNames: [], started: Date.now(),
    };
    S.images.push(e);
    selectImage(e.key, true);  // the newest image is the one shown
    renderImageList();
    fitView();
    updateAll();
    return e;
  }

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    const lim = S.info ? S.info.limits : null;
    for (const f of files) {
      const ext = (f.name.match(/\.[^.]+$/) || [""])[0].toLowerCase();
      if (!IMAGE_EXT.includes(ext)) {
        toast(`${f.name} was not added`, `It is not an image file this app reads (${IMAGE_EXT.join(", ")}).`, "error");
        continue;
      }
      const e = newEntry(f.name);
      if (lim && f.size > lim.max_upload_mb * 1048576) {
        failEntry(e, `The file is ${(f.size / 1048576).toFixed(1)} MB; this server accepts up to ${lim.max_upload_mb} MB.`);
        continue;
      }
      e.stage = "uploading";
      uploadFile(f, (p) => { e.progress = p; e.stage = `uploading ${Math.round(p * 100)}%`; renderEntryStatus(e); })
        .then((info) => uploaded(e, info))
        .catch((err) => failEntry(e, err.message));
    }
  }

  async function addExample(ex) {
    const e = newEntry(ex.file);
    e.stage = "loading the example";
    renderEntryStatus(e);
    try {
      uploaded(e, await postJSON(`/api/examples/${encodeURIComponent(ex.name)}`, {}));
    } catch (err) {
      failEntry(e, err.message);
    }
  }

  function uploaded(e, info) {
    e.upload = info;
    e.name = info.name;
    e.slice = info.pages > 1 ? Math.floor(info.pages / 2) : 0;
    e.preview = loadImage(`${info.preview_url}?slice=${e.slice}`, () => { if (e.key === S.current) { fitView(); requestDraw(); } });
    renderImageList();
    if (e.key === S.current) updateAll();
    run(e);
  }

  function loadImage(src, onload) {
    const img = new Image();
    img.decoding = "async";
    img.onload = () => { img.ready = true; onload && onload(img); };
    img.src = src;
    return img;
  }

  async function run(e) {
    if (!e.upload) return;
    if (!S.modelId) { failEntry(e, "No model is installed on this server: start it with --model CHECKPOINT."); return; }
    const gen = ++e.gen;
    if (e.jobId) { api(`/api/jobs/${e.jobId}`, { method: "DELETE" }).catch(() => {}); }
    Object.assign(e, { status: "queued", progress: 0, stage: "starting", error: null, jobId: null, result: null,
      kind: null, thresholdKind: null, labels: null, objects: null, started: Date.now(), modelId: S.modelId });
    renderEntryStatus(e);
    if (e.key === S.current) updateAll();
    const body = { inputs: [{ upload_id: e.upload.upload_id, slice: e.slice }], model: S.modelId };
    if (S.pixelSize) body.pixel_size = S.pixelSize;
    const m = model();
    if (S.diameter && m && m.diameter) body.diameter = S.diameter;
    for (let attempt = 0; ; attempt++) {
      try {
        const st = await postJSON("/api/jobs", body);
        if (gen !== e.gen) return;
        e.jobId = st.job_id;
        break;
      } catch (err) {
        if (gen !== e.gen) return;
        if (err.status === 429 && attempt < 120) {
          e.stage = "the server is busy; waiting for a free place in the queue";
          renderEntryStatus(e);
          await new Promise((r) => setTimeout(r, 2000));
          continue;
        }
        failEntry(e, err.message);
        return;
      }
    }
    poll(e, gen);
  }

  async function poll(e, gen) {
    while (gen === e.gen) {
      let st;
      try {
        st = await getJSON(`/api/jobs/${e.jobId}`);
      } catch (err) {
        if (gen === e.gen) failEntry(e, err.message);
        return;
      }
      if (gen !== e.gen) return;
      e.status = st.status === "done" ? "loading" : st.status;
      e.progress = st.progress;
      e.stage = st.status === "queued" ? `waiting in the queue${st.queue_position > 1 ? ` (${st.queue_position - 1} ahead)` : ""}` : st.stage;
      renderEntryStatus(e);
      setServerStatus("busy");
      if (st.status === "done") { await loadResult(e, st, gen); return; }
      if (st.status === "failed" || st.status === "cancelled") { failEntry(e, st.error || `the job was ${st.status}`); return; }
      await new Promise((r) => setTimeout(r, 400));
    }
  }

  async function openJob(jobId) {
    try {
      const st = await getJSON(`/api/jobs/${encodeURIComponent(jobId)}`);
      if (st.status !== "done") { toast("That job has no results", st.error || st.status, "error"); return; }
      if (!S.models.find((m) => m.id === st.model)) {
        S.models.push({ id: st.model, name: st.model, task: st.task, kind: st.kind, threshold_kind: st.threshold_kind,
          threshold: st.score_threshold, classes: st.classes, metrics: {}, source: "job" });
        $("model-select").append(el("option", { value: st.model }, st.model));
      }
      S.modelId = st.model;
      $("model-select").value = st.model;
      $("model-select").disabled = false;
      applyModelDefaults();
      S.threshold = st.score_threshold;
      $("threshold").value = S.threshold;
      for (const im of st.images) {
        const e = newEntry(im.name);
        e.jobId = st.job_id;
        e.modelId = st.model;
        e.status = "loading";
        const single = { ...st, images: [im] };
        loadResult(e, single, e.gen);
      }
    } catch (err) {
      toast("Cannot open that job", err.message, "error");
    }
  }

  async function loadResult(e, st, gen) {
    const im = st.images[0];
    e.result = im;
    e.kind = im.kind;
    e.thresholdKind = im.threshold_kind;
    e.classNames = st.classes;
    e.jobThreshold = st.score_threshold;
    e.stage = "loading the results";
    renderEntryStatus(e);
    try {
      const out = im.outputs;
      const imgP = new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = () => reject(new Error("the result image could not be loaded"));
        img.src = out.image;
      });
      const labP = out.labels_bin ? fetchLabels(e) : null;
      const objP = out.objects ? getJSON(objectsURL(e)) : getJSON(`/api/jobs/${e.jobId}/measurements`);
      const [img, lab, objs] = await Promise.all([imgP, labP, objP]);
      if (gen !== e.gen) return;
      e.img = img;
      e.W = im.width;
      e.H = im.height;
      if (lab) setLabels(e, lab);
      setObjects(e, objs);
      if (e.labels) computeEdges(e);
      e.overlayKey = null;
      e.status = "done";
      e.stage = "";
      e.elapsed = (Date.now() - e.started) / 1000;
    } catch (err) {
      if (gen === e.gen) failEntry(e, `The results could not be loaded: ${err.message}`);
      return;
    }
    setServerStatus("ok");
    renderImageList();
    if (e.key === S.current) { fitView(); }
    updateAll();
  }

  function fetchLabels(e) {
    const url = e.result.outputs.labels_bin + (serverThreshold(e) ? `?threshold=${S.threshold}` : "");
    return api(url).then(async (r) => ({ buf: await r.arrayBuffer(), dtype: r.headers.get("X-Dtype") }));
  }
  function setLabels(e, lab) {
    const T = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array }[lab.dtype] || Uint32Array;
    const labels = new T(lab.buf);
    if (labels.length !== e.W * e.H) throw new Error("the label image has the wrong size");
    e.labels = labels;
  }

  function objectsURL(e) {
    const p = new URLSearchParams();
    if (!liveThreshold(e)) p.set("threshold", S.threshold);
    if (S.pixelSize) p.set("pixel_size", S.pixelSize);
    const q = p.toString();
    return e.result.outputs.objects + (q ? `?${q}` : "");
  }

  /** Index the objects table: per object id (= value in labels.bin) its row, score and class. */
  function setObjects(e, objs) {
    e.objects = objs;
    e.col = {};
    objs.columns.forEach((c, i) => { e.col[c] = i; });
    const rows = objs.rows;
    if (hasObjects(e)) {
      let n = 0;
      for (const r of rows) n = Math.max(n, r[e.col.label]);
      const cnt = liveThreshold(e) && e.result && e.result.n_detections != null ? e.result.n_detections : n;
      n = Math.max(n, cnt);
      e.nObj = n;
      e.score = new Float32Array(n + 1);
      e.cls = new Int32Array(n + 1);
      e.row = new Int32Array(n + 1).fill(-1);
      const names = e.classNames;
      rows.forEach((r, i) => {
        const id = r[e.col.label];
        e.row[id] = i;
        e.score[id] = r[e.col.score];
        const c = names.indexOf(r[e.col.class]);
        e.cls[id] = c >= 0 ? c + 1 : 1;
      });
      e.labelAt = new Int32Array(n + 1);
      e.bbox = new Int32Array(4 * (n + 1));  // row0, col0, row1, col1 (exclusive) per object
      for (let id = 1; id <= n; id++) {
        const r = rows[e.row[id]];
        if (!r) continue;
        e.bbox.set([r[e.col.bbox_row_min], r[e.col.bbox_col_min], r[e.col.bbox_row_max], r[e.col.bbox_col_max]], 4 * id);
      }
      e.line = null;
    }
  }

  function failEntry(e, message) {
    e.status = "error";
    const prefix = `${e.name}: `;
    e.error = message.startsWith(prefix) ? message.slice(prefix.length) : message;
    message = e.error;
    e.gen++;
    renderImageList();
    if (e.key === S.current) updateAll();
    toast(`${e.name}`, message, "error");
    setServerStatus("ok");
  }

  function removeEntry(e) {
    e.gen++;
    if (e.jobId) api(`/api/jobs/${e.jobId}`, { method: "DELETE" }).catch(() => {});
    S.images = S.images.filter((x) => x !== e);
    if (S.current === e.key) S.current = S.images.length ? S.images[S.images.length - 1].key : null;
    S.selected = 0;
    renderImageList();
    fitView();
    updateAll();
  }

  function selectImage(key, quiet) {
    if (S.current === key) return;
    S.current = key;
    S.hover = 0;
    S.selected = 0;
    hideInspector();
    if (!quiet) { renderImageList(); fitView(); updateAll(); }
  }

  // ------------------------------------------------------------------------------------------
  // the image list
  // ------------------------------------------------------------------------------------------
  function entryStatusText(e) {
    if (e.status === "error") return e.error;
    if (e.status === "done") {
      if (!hasObjects(e)) return (e.result.predicted || []).join(", ") || `most likely ${topClass(e)}`;
      const found = countFound(e), shown = countVisible(e);
      const what = e.classNames.length === 1 ? pluralize(e.classNames[0], found) : pluralize("object", found);
      return `${found} ${what} found${shown !== found ? ` · ${shown} shown` : ""}` +
        `${e.result && e.result.warnings && e.result.warnings.length ? " · ⚠ check" : ""}` +
        `${e.upload && e.upload.pages > 1 ? ` · slice ${e.slice + 1}/${e.upload.pages}` : ""}`;
    }
    const secs = Math.round((Date.now() - e.started) / 1000);
    return `${e.stage || e.status}${secs >= 2 && e.status !== "uploading" ? ` · ${secs} s` : ""}`;
  }
  function pluralize(word, n) {
    if (n === 1) return word;
    if (/us$/.test(word)) return word.replace(/us$/, "i");
    if (/(s|x|ch|sh)$/.test(word)) return word + "es";
    if (/[^aeiou]y$/.test(word)) return word.slice(0, -1) + "ies";
    return word + "s";
  }
  function renderImageList() {
    const ul = $("image-list");
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest(".image-item");
    const focusKey = focused ? Number(focused.dataset.key) : null;
    ul.innerHTML = "";
    for (const e of S.images) {
      const thumb = el("div", { class: "thumb" });
      const src = e.img ? e.img.src : (e.preview ? e.preview.src : null);
      if (src) thumb.style.backgroundImage = `url("${src}")`;
      const busy = !["done", "error"].includes(e.status);
      const status = el("div", { class: "status" });
      if (busy) status.append(el("span", { class: "spinner" }));
      status.append(document.createTextNode(entryStatusText(e)));
      const meta = el("div", { class: "meta" }, el("div", { class: "title", title: e.name }, e.name), status);
      if (busy) meta.append(el("div", { class: "mini-bar" }, el("div", { style: `width:${Math.round(100 * Math.max(e.progress, 0.04))}%` })));
      const li = el("li", {
        class: `image-item ${e.key === S.current ? "current" : ""} ${e.status === "error" ? "error" : ""}`,
        "data-key": e.key, "data-status": e.status, onclick: () => selectImage(e.key),
        role: "option", "aria-selected": e.key === S.current ? "true" : "false",
        tabindex: e.key === S.current ? "0" : "-1", onkeydown: (ev) => listKey(ev, e),
      }, thumb, meta, el("button", {
        class: "icon-btn", title: "Remove this image", "aria-label": `remove ${e.name}`,
        onclick: (ev) => { ev.stopPropagation(); removeEntry(e); },
      }, "×"));
      e.li = li;
      ul.append(li);
    }
    if (focusKey !== null) { const again = S.images.find((x) => x.key === focusKey); if (again && again.li) again.li.focus(); }
  }
  /** Keys on the image list: arrows move and show, Enter shows, Delete removes. */
  function listKey(ev, e) {
    const i = S.images.indexOf(e);
    let next = null;
    if (ev.key === "ArrowDown") next = S.images[Math.min(i + 1, S.images.length - 1)];
    else if (ev.key === "ArrowUp") next = S.images[Math.max(i - 1, 0)];
    else if (ev.key === "Home") next = S.images[0];
    else if (ev.key === "End") next = S.images[S.images.length - 1];
    else if (ev.key === "Enter" || ev.key === " ") next = e;
    else if (ev.key === "Delete" || ev.key === "Backspace") {
      ev.preventDefault();
      const after = S.images[i + 1] || S.images[i - 1];
      removeEntry(e);
      if (after && after.li) after.li.focus();
      return;
    } else return;
    ev.preventDefault();
    if (next) { selectImage(next.key); if (next.li) next.li.focus(); }
  }
  function renderEntryStatus(e) {
    if (!e.li || !e.li.isConnected) { renderImageList(); }
    else {
      const st = e.li.querySelector(".status");
      if (st) {
        st.innerHTML = "";
        if (!["done", "error"].includes(e.status)) st.append(el("span", { class: "spinner" }));
        st.append(document.createTextNode(entryStatusText(e)));
      }
      const bar = e.li.querySelector(".mini-bar > div");
      if (bar) bar.style.width = `${Math.round(100 * Math.max(e.progress, 0.04))}%`;
      e.li.dataset.status = e.status;
    }
    if (e.key === S.current) renderProgress();
  }
  setInterval(() => { for (const e of S.images) if (!["done", "error"].includes(e.status)) renderEntryStatus(e); }, 1000);

  // ------------------------------------------------------------------------------------------
  // thresholds and counts
  // ------------------------------------------------------------------------------------------
  const thr32 = () => Math.fround(S.threshold);
  /** Score thresholds: score >= threshold here; other thresholds: applied by the server. */
  function visibleObject(e, id) {
    return id > 0 && (!liveThreshold(e) || e.score[id] >= thr32()) && S.classVisible[e.cls[id]] !== false;
  }
  /** Label numbers at the threshold, as in the downloaded label TIFF (score order, 1..n). */
  function updateLabelNumbers(e) {
    if (!e.score || !hasObjects(e)) return;
    const t = liveThreshold(e) ? thr32() : -1;
    let n = 0;
    for (let k = 1; k <= e.nObj; k++) e.labelAt[k] = e.score[k] >= t ? ++n : 0;
    e.nAbove = n;
  }
  function countVisible(e, byClass) {
    const counts = {};
    let total = 0;
    if (hasObjects(e) && e.score) {
      const t = liveThreshold(e) ? thr32() : -1;
      for (let k = 1; k <= e.nObj; k++) {
        if (e.row[k] < 0 || e.score[k] < t) continue;
        const c = e.cls[k];
        counts[c] = (counts[c] || 0) + 1;
        if (S.classVisible[c] !== false) total++;
      }
    }
    return byClass ? counts : total;
  }
  /** Objects at the threshold, whatever classes are hidden. */
  function countFound(e) {
    const counts = countVisible(e, true);
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }
  function topClass(e) {
    const p = e.result && e.result.probabilities;
    if (!p) return "";
    const best = Object.entries(p).sort((a, b) => b[1] - a[1])[0];
    return best ? `${best[0]} (${best[1].toFixed(2)})` : "";
  }

  /** Results whose objects the server re-makes at each threshold: ask again once the slider stops. */
  const refetchAtThreshold = debounce(() => {
    for (const e of S.images) {
      if (e.status === "done" && serverThreshold(e)) {
        const gen = e.gen;
        Promise.all([fetchLabels(e), getJSON(objectsURL(e))]).then(([lab, o]) => {
          if (gen !== e.gen) return;
          setLabels(e, lab);
          setObjects(e, o);
          computeEdges(e);
          e.overlayKey = null;
          e.styleKey = null;
          S.hover = 0;
          S.selected = 0;
          hideInspector();
          updateAll();
        }).catch((err) => toast("Cannot update the objects", err.message, "error"));
      }
    }
  }, 250);

  // ------------------------------------------------------------------------------------------
  // the overlay bitmap
  // ------------------------------------------------------------------------------------------
  /** Outline pixels: 1 = inner boundary of an object (a 4-neighbour has another value),
   * 2 = the ring inside it (used for two-pixel outlines when zoomed out). */
  function computeEdges(e) {
    const W = e.W, H = e.H, L = e.labels;
    const E = new Uint8Array(W * H);
    for (let y = 0; y < H; y++) {
      const row = y * W;
      for (let x = 0; x < W; x++) {
        const i = row + x, l = L[i];
        if (!l) continue;
        if ((x > 0 && L[i - 1] !== l) || (x < W - 1 && L[i + 1] !== l) ||
            (y > 0 && L[i - W] !== l) || (y < H - 1 && L[i + W] !== l)) E[i] = 1;
      }
    }
    for (let y = 0; y < H; y++) {
      const row = y * W;
      for (let x = 0; x < W; x++) {
        const i = row + x;
        if (E[i] || !L[i]) continue;
        if ((x > 0 && E[i - 1] === 1) || (x < W - 1 && E[i + 1] === 1) ||
            (y > 0 && E[i - W] === 1) || (y < H - 1 && E[i + W] === 1)) E[i] = 2;
      }
    }
    e.edge = E;
  }

  function overlayKey(e) {
    const thick = S.view.s < THICK_BELOW;
    return [e.gen, S.threshold, S.style, S.opacity, JSON.stringify(S.classVisible), thick].join("|");
  }
  /** What changes every pixel's colour: a new style, opacity or outline width. */
  function styleKey(e) {
    return [e.gen, S.style, S.opacity, S.view.s < THICK_BELOW].join("|");
  }
  const pack = (rgb, a) => ((a << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]) >>> 0;
  function alphas() {
    const fillA = S.style === "fill" ? Math.round(S.opacity * 255) : S.style === "both" ? Math.round(S.opacity * 200) : 0;
    const lineA = S.style === "none" ? 0 : (S.style === "fill" ? fillA : 255);
    return [lineA, fillA];
  }

  /**
   * The overlay bitmap. A new style repaints every pixel; a new threshold or class toggle only
   * repaints the objects whose visibility changed, inside their bounding boxes, so moving the
   * slider costs in proportion to the objects crossing it.
   */
  function buildOverlay(e) {
    if (!e.labels) return;
    const key = overlayKey(e);
    if (e.overlayKey === key) return;
    const t0 = performance.now();
    if (!e.overlay || e.overlay.width !== e.W || e.overlay.height !== e.H) {
      e.overlay = document.createElement("canvas");
      e.overlay.width = e.W;
      e.overlay.height = e.H;
      e.octx = e.overlay.getContext("2d");
      e.odata = e.octx.createImageData(e.W, e.H);
      e.out32 = new Uint32Array(e.odata.data.buffer);
      e.styleKey = null;
    }
    const out = e.out32, L = e.labels, E = e.edge, W = e.W;
    const maxEdge = S.view.s < THICK_BELOW ? 2 : 1;
    const [lineA, fillA] = alphas();
    {
      const n = e.nObj + 1, line = new Uint32Array(n), fill = new Uint32Array(n);
      if (S.style !== "none") {
        for (let k = 1; k < n; k++) {
          if (!visibleObject(e, k)) continue;
          const rgb = classRGB(e.cls[k]);
          line[k] = pack(rgb, lineA);
          fill[k] = pack(rgb, fillA);
        }
      }
      const sk = styleKey(e);
      let changed = null;
      if (e.styleKey === sk && e.line) {
        changed = [];
        for (let k = 1; k < n; k++) if (line[k] !== e.line[k] || fill[k] !== e.fill[k]) changed.push(k);
        if (changed.length > n / 4) changed = null;
      }
      if (changed) {
        const bb = e.bbox, ctx2 = e.octx, few = changed.length <= 400;
        let x0 = W, y0 = e.H, x1 = 0, y1 = 0;
        for (const k of changed) {
          const by0 = bb[4 * k], bx0 = bb[4 * k + 1], by1 = bb[4 * k + 2], bx1 = bb[4 * k + 3];
          if (by1 <= by0) continue;
          const lk = line[k], fk = fill[k];
          for (let y = by0; y < by1; y++) {
            for (let i = y * W + bx0, end = y * W + bx1; i < end; i++) {
              if (L[i] !== k) continue;
              const ed = E[i];
              out[i] = ed !== 0 && ed <= maxEdge ? lk : fk;
            }
          }
          if (few) ctx2.putImageData(e.odata, 0, 0, bx0, by0, bx1 - bx0, by1 - by0);
          else { x0 = Math.min(x0, bx0); y0 = Math.min(y0, by0); x1 = Math.max(x1, bx1); y1 = Math.max(y1, by1); }
        }
        if (!few && x1 > x0) ctx2.putImageData(e.odata, 0, 0, x0, y0, x1 - x0, y1 - y0);
      } else {
        for (let i = 0, len = L.length; i < len; i++) {
          const l = L[i];
          if (l === 0) { out[i] = 0; continue; }
          const ed = E[i];
          out[i] = ed !== 0 && ed <= maxEdge ? line[l] : fill[l];
        }
        e.octx.putImageData(e.odata, 0, 0);
      }
      e.line = line;
      e.fill = fill;
      e.styleKey = sk;
    }
    e.overlayKey = key;
    e.hl = {};
    stats.overlayMs.push(performance.now() - t0);
    if (stats.overlayMs.length > 200) stats.overlayMs.shift();
  }

  /** A small canvas with one object's outline, for hover and selection highlights. */
  function highlightCanvas(e, id, colour) {
    e.hl = e.hl || {};
    const key = `${id}|${colour}`;
    if (e.hl[key]) return e.hl[key];
    const r = e.objects.rows[e.row[id]];
    const c = e.col;
    const y0 = r[c.bbox_row_min], x0 = r[c.bbox_col_min], y1 = r[c.bbox_row_max], x1 = r[c.bbox_col_max];
    const w = x1 - x0 + 2, h = y1 - y0 + 2;
    const cv = document.createElement("canvas");
    cv.width = w; cv.height = h;
    const ctx = cv.getContext("2d");
    const data = ctx.createImageData(w, h);
    const o32 = new Uint32Array(data.data.buffer);
    const L = e.labels, W = e.W, H = e.H;
    const [cr, cg, cb] = colour;
    const line = ((255 << 24) | (cb << 16) | (cg << 8) | cr) >>> 0;
    const fill = ((60 << 24) | (cb << 16) | (cg << 8) | cr) >>> 0;
    for (let y = Math.max(y0 - 1, 0); y < Math.min(y1 + 1, H); y++) {
      for (let x = Math.max(x0 - 1, 0); x < Math.min(x1 + 1, W); x++) {
        const i = y * W + x;
        if (L[i] !== id) continue;
        const edge = x === 0 || y === 0 || x === W - 1 || y === H - 1 || L[i - 1] !== id || L[i + 1] !== id || L[i - W] !== id || L[i + W] !== id;
        o32[(y - y0 + 1) * w + (x - x0 + 1)] = edge ? line : fill;
      }
    }
    ctx.putImageData(data, 0, 0);
    const out = { canvas: cv, x: x0 - 1, y: y0 - 1 };
    e.hl[key] = out;
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // the viewer: drawing, zoom, pan, hover, click
  // ------------------------------------------------------------------------------------------
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const viewer = $("viewer");

  function displayedImage(e) {
    if (!e) return null;
    if (e.img && e.status === "done") return e.img;
    if (e.preview && e.preview.ready) return e.preview;
    if (e.img) return e.img;
    return null;
  }
  function imageSize(e) {
    if (!e) return null;
    if (e.W) return [e.W, e.H];
    if (e.upload) return [e.upload.width, e.upload.height];
    return null;
  }

  function fitView() {
    const e = current();
    const size = imageSize(e);
    if (!size) return;
    const cw = viewer.clientWidth, ch = viewer.clientHeight;
    const s = Math.min(cw / size[0], ch / size[1]) * 0.96;
    S.view = { s, tx: (cw - size[0] * s) / 2, ty: (ch - size[1] * s) / 2, fitted: true };
    updateZoomLabel();
    requestDraw();
  }
  function zoomAt(factor, mx, my) {
    const e = current();
    const size = imageSize(e);
    if (!size) return;
    const v = S.view;
    const fit = Math.min(viewer.clientWidth / size[0], viewer.clientHeight / size[1]);
    const s = Math.min(64, Math.max(fit * 0.25, v.s * factor));
    const ix = (mx - v.tx) / v.s, iy = (my - v.ty) / v.s;
    v.tx = mx - ix * s;
    v.ty = my - iy * s;
    v.s = s;
    v.fitted = false;
    updateZoomLabel();
    requestDraw();
  }
  function zoomTo(s) {
    const cw = viewer.clientWidth, ch = viewer.clientHeight;
    zoomAt(s / S.view.s, cw / 2, ch / 2);
  }
  function updateZoomLabel() { $("zoom-level").textContent = `${Math.round(S.view.s * 100)}%`; }

  function draw() {
    const t0 = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const cw = viewer.clientWidth, ch = viewer.clientHeight;
    if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
      canvas.width = Math.round(cw * dpr);
      canvas.height = Math.round(ch * dpr);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const e = current();
    const img = displayedImage(e);
    if (!img) return;
    const v = S.view;
    ctx.setTransform(v.s * dpr, 0, 0, v.s * dpr, v.tx * dpr, v.ty * dpr);
    ctx.imageSmoothingEnabled = v.s < 2;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(img, 0, 0);
    if (e.status === "done" && e.labels) {
      buildOverlay(e);
      ctx.imageSmoothingEnabled = v.s < 1;
      if (S.style !== "none") ctx.drawImage(e.overlay, 0, 0);
      ctx.imageSmoothingEnabled = false;
      if (e.objects && e.row) {
        for (const [id, colour] of [[S.hover, [255, 255, 255]], [S.selected, [255, 221, 0]]]) {
          if (id > 0 && e.row[id] >= 0 && visibleObject(e, id)) {
            const h = highlightCanvas(e, id, colour);
            ctx.drawImage(h.canvas, h.x, h.y);
          }
        }
      }
    }
    stats.frames++;
    stats.frameMs.push(performance.now() - t0);
    if (stats.frameMs.length > 300) stats.frameMs.shift();
  }
  const requestDraw = throttleRAF(draw);

  function imageCoords(ev) {
    const r = canvas.getBoundingClientRect();
    const mx = ev.clientX - r.left, my = ev.clientY - r.top;
    return { mx, my, x: Math.floor((mx - S.view.tx) / S.view.s), y: Math.floor((my - S.view.ty) / S.view.s) };
  }
  function objectAt(e, x, y) {
    if (!e || e.status !== "done" || !e.labels || x < 0 || y < 0 || x >= e.W || y >= e.H) return 0;
    const l = e.labels[y * e.W + x];
    return e.row && visibleObject(e, l) ? l : 0;
  }

  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    canvas.setPointerCapture(ev.pointerId);
    drag = { x: ev.clientX, y: ev.clientY, tx: S.view.tx, ty: S.view.ty, moved: false };
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (drag) {
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) > 3) { drag.moved = true; canvas.classList.add("panning"); hideTooltip(); }
      if (drag.moved) {
        S.view.tx = drag.tx + dx;
        S.view.ty = drag.ty + dy;
        S.view.fitted = false;
        requestDraw();
      }
      return;
    }
    hoverAt(ev);
  });
  canvas.addEventListener("pointerup", (ev) => {
    if (!drag) return;
    const wasDrag = drag.moved;
    drag = null;
    canvas.classList.remove("panning");
    if (!wasDrag) {
      const e = current();
      const { x, y } = imageCoords(ev);
      selectObject(objectAt(e, x, y), false);
    }
  });
  canvas.addEventListener("pointerleave", () => { if (!drag) { S.hover = 0; hideTooltip(); requestDraw(); $("viewer-info").textContent = ""; } });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const { mx, my } = imageCoords(ev);
    const f = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0018));
    zoomAt(f, mx, my);
  }, { passive: false });
  canvas.addEventListener("dblclick", (ev) => { const { mx, my } = imageCoords(ev); zoomAt(2, mx, my); });

  function hoverAt(ev) {
    const e = current();
    const { mx, my, x, y } = imageCoords(ev);
    const info = $("viewer-info");
    const size = imageSize(e);
    if (size && x >= 0 && y >= 0 && x < size[0] && y < size[1]) {
      let txt = `x ${x}  y ${y}`;
      info.textContent = txt;
    } else info.textContent = "";
    const id = objectAt(e, x, y);
    canvas.classList.toggle("over-object", id > 0);
    if (id !== S.hover) { S.hover = id; requestDraw(); }
    if (id > 0) showTooltip(e, id, mx, my); else hideTooltip();
  }

  const TOOLTIP_COLS = ["score", "area", "circularity", "solidity", "eccentricity", "axis_major_length", "intensity_mean"];
  function objectRow(e, id) { return e.objects.rows[e.row[id]]; }
  function showTooltip(e, id, mx, my) {
    const tt = $("tooltip");
    const r = objectRow(e, id);
    const rows = [];
    for (const want of TOOLTIP_COLS) {
      const col = e.objects.columns.find((c) => c === want || baseName(c) === want);
      if (col) rows.push(`<tr><td>${esc(prettyCol(col))}</td><td>${esc(fmt(r[e.col[col]], col))}</td></tr>`);
    }
    const k = e.cls[id];
    tt.innerHTML = `<div class="tt-head"></div><table>${rows.join("")}</table>`;
    tt.firstChild.append(el("span", { class: "swatch", style: `background:${classCSS(k)}` }), `${e.classNames[k - 1] || "object"} #${e.labelAt[id]}`);
    tt.hidden = false;
    const vw = viewer.clientWidth, vh = viewer.clientHeight;
    const w = tt.offsetWidth, h = tt.offsetHeight;
    let left = mx + 16, top = my + 16;
    if (left + w > vw - 6) left = mx - w - 12;
    if (top + h > vh - 6) top = my - h - 12;
    tt.style.left = `${Math.max(4, left)}px`;
    tt.style.top = `${Math.max(4, top)}px`;
  }
  function hideTooltip() { $("tooltip").hidden = true; }

  function selectObject(id, center, entry) {
    const e = entry || current();
    if (entry && entry.key !== S.current) { S.current = entry.key; renderImageList(); fitView(); updateAll(); }
    S.selected = id;
    if (id > 0) {
      showInspector(e, id);
      if (center) centerOn(e, id);
    } else hideInspector();
    requestDraw();
    renderTable();
  }
  function centerOn(e, id) {
    const r = objectRow(e, id);
    const c = e.col;
    const cy = (r[c.bbox_row_min] + r[c.bbox_row_max]) / 2, cx = (r[c.bbox_col_min] + r[c.bbox_col_max]) / 2;
    const v = S.view;
    const size = Math.max(r[c.bbox_row_max] - r[c.bbox_row_min], r[c.bbox_col_max] - r[c.bbox_col_min], 8);
    const want = Math.min(viewer.clientWidth, viewer.clientHeight) / (size * 4);
    if (v.s < want) v.s = Math.min(want, 16);
    v.tx = viewer.clientWidth / 2 - cx * v.s;
    v.ty = viewer.clientHeight / 2 - cy * v.s;
    v.fitted = false;
    updateZoomLabel();
    requestDraw();
  }
  function showInspector(e, id) {
    const r = objectRow(e, id);
    const k = e.cls[id];
    $("inspector-title").replaceChildren(el("span", { class: "cls-dot", style: `background:${classCSS(k)}` }), `${e.classNames[k - 1] || "object"} #${e.labelAt[id]}`);
    const body = [];
    const cols = e.objects.columns.filter((c) => !["image", "label", "class"].includes(c));
    const last = cols.filter((c) => LAST_COLS.includes(c));
    for (const col of [...cols.filter((c) => !last.includes(c)), ...last]) {
      const d = S.defs[baseName(col)];
      body.push(`<tr title="${d ? esc(d.formula) : ""}"><td>${esc(prettyCol(col))}</td><td>${esc(fmt(r[e.col[col]], col))}</td></tr>`);
    }
    $("inspector-body").innerHTML = `<table>${body.join("")}</table>`;
    $("inspector").hidden = false;
  }
  function hideInspector() { $("inspector").hidden = true; }

  // ------------------------------------------------------------------------------------------
  // sidebar panels
  // ------------------------------------------------------------------------------------------
  function renderDisplayPanel() {
    const e = current();
    const m = model();
    // what the shown result holds, or (before it exists) what the chosen model's results hold
    const known = e && e.kind;
    const kind = known ? e.kind : (m && m.kind) || "objects";
    const thresholdKind = known ? e.thresholdKind : (m ? m.threshold_kind : "score");
    $("threshold-name").textContent = THRESHOLD_NAMES[thresholdKind] || "Threshold";
    $("threshold-value").textContent = S.threshold.toFixed(2);
    $("threshold").closest("label").hidden = kind !== "objects" || !THRESHOLD_NAMES[thresholdKind];
    $("style-group").closest(".field").hidden = $("opacity").closest("label").hidden = kind !== "objects";  // nothing to draw
    const box = $("class-toggles");
    box.innerHTML = "";
    const names = (e && e.classNames.length ? e.classNames : (m ? m.classes : []));
    const counts = e && e.status === "done" ? countVisible(e, true) : {};
    if (kind === "classes" && e && e.result && e.result.probabilities) {
      for (const [i, c] of names.entries()) {
        const p = e.result.probabilities[c] || 0;
        const on = (e.result.predicted || []).includes(c);
        box.append(el("div", { class: "class-toggle", style: "grid-template-columns:14px 1fr auto" },
          el("span", { class: "swatch", style: `background:${classCSS(i + 1)};opacity:${on ? 1 : 0.3}` }),
          el("span", {}, c, el("div", { class: "mini-bar" }, el("div", { style: `width:${Math.round(p * 100)}%;background:${classCSS(i + 1)}` }))),
          el("span", { class: "count" }, p.toFixed(2))));
      }
      $("shown-count").textContent = `predicted: ${(e.result.predicted || []).join(", ") || "no class above its threshold"}`;
      return;
    }
    names.forEach((c, i) => {
      const k = i + 1;
      const cb = el("input", { type: "checkbox", "data-class": k });
      cb.checked = S.classVisible[k] !== false;
      cb.addEventListener("change", () => { S.classVisible[k] = cb.checked; S.selected = cb.checked ? S.selected : 0; onDisplayChange(); });
      box.append(el("label", { class: "class-toggle", title: `show or hide ${c}` }, cb,
        el("span", { class: "swatch", style: `background:${classCSS(k)}` }), el("span", {}, c),
        el("span", { class: "count" }, counts[k] !== undefined ? String(counts[k]) : "")));
    });
    const sc = $("shown-count");
    if (e && e.status === "done" && hasObjects(e)) {
      const shown = countVisible(e), found = countFound(e);
      const word = THRESHOLD_WORDS[e.thresholdKind];
      const at = word ? ` at ${word} ≥ ${S.threshold.toFixed(2)}` : "";
      sc.replaceChildren(el("b", { "data-testid": "found" }, String(found)), ` found${at}`,
        liveThreshold(e) ? ` (of ${e.nObj} detections)` : "", el("br"),
        el("b", { "data-testid": "shown" }, String(shown)), " shown",
        shown !== found ? ` (${found - shown} in hidden classes)` : "");
      sc.dataset.shown = shown;
      sc.dataset.found = found;
    } else sc.textContent = "";
  }

  function renderStackPanel() {
    const e = current();
    const show = !!(e && e.upload && e.upload.pages > 1);
    $("stack-panel").hidden = !show;
    if (!show) return;
    const s = $("slice");
    s.max = e.upload.pages - 1;
    if (document.activeElement !== s) s.value = e.slice;
    $("slice-value").textContent = `${Number(s.value) + 1} / ${e.upload.pages}`;
  }

  function renderMeasurePanel() {
    const e = current();
    const fromFile = e && e.upload && e.upload.pixel_size_um;
    const inp = $("pixel-size");
    inp.placeholder = fromFile ? `${fromFile.toPrecision(4)} (file)` : "pixels";
    if (S.pixelSizeError) return;  // the refusal stays until the field is corrected
    $("pixel-size-hint").textContent = S.pixelSize ? `${S.pixelSize} µm per pixel: lengths in µm, areas in µm².`
      : fromFile ? "Pixel size read from the file; type another to override." : "Leave empty to measure in pixels.";
  }

  /** The diameter field's hint: what the model used for the image shown (given or estimated). */
  function renderDiameterHint() {
    if (S.diameterError) return;  // the refusal stays until the field is corrected
    const e = current(), sc = e && e.status === "done" && e.result && e.result.scale;
    let text = S.diameter ? `Objects ${S.diameter} px across: each image is rescaled to the model's size.`
      : "Leave empty: the model estimates it in each image.";
    if (sc && sc.diameter) {
      const how = sc.scale_from === "estimate" ? "estimated" : "given";
      text += ` This image: ${sc.diameter.toFixed(1)} px (${how}), scaled ×${sc.scale.toPrecision(3)}.`;
    }
    $("diameter-hint").textContent = text;
  }

  /** The diameter field: a positive number of pixels (decimal comma allowed), or empty for the
   * model's own estimate. */
  function parseDiameter(text) {
    const t = text.trim().replace(/\s+/g, "").replace(/px$/i, "").replace(/^(\d*),(\d+)$/, "$1.$2");
    if (t === "") return { value: null };
    const v = /^(\d+\.?\d*|\.\d+)$/.test(t) ? Number(t) : NaN;
    const lim = S.info ? S.info.limits : {};
    const lo = lim.diameter_min_px || 2, hi = lim.diameter_max_px || 2000;
    if (!(v >= lo && v <= hi)) return { error: `“${text}” is not an object diameter; type the objects' typical width in pixels (${lo} to ${hi}), or leave it empty.` };
    return { value: v };
  }

  /** The pixel-size field: a decimal point or a decimal comma ("0,65" is 0.65); anything else,
   * or a value no microscope gives, is refused in words rather than read as something else. */
  function parsePixelSize(text) {
    const t = text.trim().replace(/\s+/g, "").replace(/(µm|um|μm)$/i, "");
    if (t === "") return { value: null };
    let norm = t;
    if (/^\d*,\d+$/.test(t)) norm = t.replace(",", ".");
    else if (t.includes(",")) return { error: `“${text}” has a comma that is not a decimal comma; type e.g. 0.65 or 0,65.` };
    const v = /^(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(norm) ? Number(norm) : NaN;
    if (!(v > 0) || !Number.isFinite(v)) return { error: `“${text}” is not a pixel size; type a positive number of µm per pixel (e.g. 0.65), or leave it empty.` };
    const lim = S.info ? S.info.limits : {};
    const lo = lim.pixel_size_min_um || 1e-4, hi = lim.pixel_size_max_um || 1e3;
    if (v < lo || v > hi) return { error: `${v} µm per pixel is outside what microscopes give (${lo} to ${hi} µm); check the value.` };
    return { value: v };
  }

  function dlLink(label, href, title, filename) {
    const icon = '<svg viewBox="0 0 24 24"><path d="M12 4v11m0 0l-4-4m4 4l4-4M5 19h14"/></svg>';
    const a = el("a", { class: `dl ${href ? "" : "disabled"}`, href: href || "#", title: title || label, download: filename || "" });
    a.innerHTML = `${icon}<span>${esc(label)}</span>`;
    return a;
  }
  function renderDownloads() {
    const e = current();
    const box = $("dl-image"), all = $("dl-all");
    box.innerHTML = "";
    all.innerHTML = "";
    const ok = e && e.status === "done";
    const q = new URLSearchParams({ threshold: S.threshold });
    if (S.pixelSize) q.set("pixel_size", S.pixelSize);
    const what = ok ? THRESHOLD_WORDS[e.thresholdKind] : null;
    $("dl-threshold").textContent = ok && hasObjects(e) && what ? `(${what} ≥ ${S.threshold.toFixed(2)})` : "";
    const out = ok ? e.result.outputs : {};
    if (!ok || hasObjects(e)) {
      box.append(dlLink("Labels (TIFF)", out.labels_tif && `${out.labels_tif}?threshold=${S.threshold}`, "label image: 0 = background, 1..n = objects"));
      const vis = Object.keys(S.classVisible).filter((k) => S.classVisible[k] !== false).join(",");
      const style = S.style === "none" ? "outline" : S.style;
      box.append(dlLink("Overlay (PNG)", out.overlay_png && `${out.overlay_png}?threshold=${S.threshold}&style=${style}&classes=${vis}`, "the image with the objects drawn as shown"));
      if (ok && out.masks) {
        for (const [c, url] of Object.entries(out.masks)) box.append(dlLink(`Mask: ${c}`, `${url}?threshold=${S.threshold}`, `binary mask of ${c} (0/255 PNG)`));
      } else box.append(dlLink("Masks (PNG)", null));
    }
    box.append(dlLink("Table (CSV)", out.measurements_csv && `${out.measurements_csv}?${q}`, "one row per object"));
    const jobs = S.images.filter((x) => x.status === "done" && x.modelId === S.modelId && x.jobId).map((x) => x.jobId);
    const uniq = [...new Set(jobs)];
    const jq = uniq.length ? `jobs=${uniq.join(",")}&${q}` : null;
    all.append(dlLink("Table (CSV)", jq && `/api/results/measurements?format=csv&${jq}`, "all images' objects in one table"));
    all.append(dlLink("Report (HTML)", jq && `/api/results/report.html?${jq}`, "summary, plots and overlays in one file"));
    all.append(dlLink("Everything (ZIP)", jq && `/api/results/outputs.zip?${jq}`, "labels, masks, overlays, table, COCO JSON and report"));
    if (!e || e.kind !== "classes") all.append(dlLink("COCO (JSON)", jq && `/api/results/predictions.json?${jq}`, "predictions.json as morphoscope predict writes it"));
  }

  function renderProgress() {
    const e = current();
    const box = $("viewer-progress");
    const errBox = $("viewer-error");
    $("viewer-empty").hidden = S.images.length > 0;
    if (!e) { box.hidden = true; errBox.hidden = true; return; }
    if (e.status === "error") {
      box.hidden = true;
      errBox.hidden = false;
      errBox.innerHTML = `<b>${esc(e.name)} could not be processed</b>${esc(e.error)}`;
      return;
    }
    errBox.hidden = true;
    const busy = !["done", "error"].includes(e.status);
    box.hidden = !busy;
    if (!busy) return;
    const title = { uploading: "Uploading", queued: "Waiting for the model", running: "Segmenting", loading: "Loading the results" }[e.status] || "Working";
    $("progress-title").textContent = `${title} · ${e.name}`;
    const secs = Math.round((Date.now() - e.started) / 1000);
    $("progress-stage").textContent = `${e.stage || ""}${secs >= 1 ? ` · ${secs} s` : ""}`;
    const bar = $("progress-fill").parentElement;
    const indeterminate = (e.status === "running" || e.status === "queued") && e.progress < 0.05;
    bar.classList.toggle("indeterminate", indeterminate);
    $("progress-fill").style.width = `${Math.round(100 * Math.max(e.progress, 0.03))}%`;
  }

  // ------------------------------------------------------------------------------------------
  // table, plots, summary
  // ------------------------------------------------------------------------------------------
  const ROW_H = 26;
  const FIRST_COLS = ["label", "image", "class", "score"];
  const LAST_COLS = ["touches_border", "pixel_size_um", "centroid_row", "centroid_col", "bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max"];

  /** Rows shown: visible objects of the current image or of all images. */
  function tableRows() {
    const entries = S.scope === "all" ? S.images.filter((e) => e.status === "done") : [current()].filter((e) => e && e.status === "done");
    const rows = [];
    for (const e of entries) {
      if (!e.objects) continue;
      if (hasObjects(e)) {
        for (let id = 1; id <= e.nObj; id++) if (e.row[id] >= 0 && visibleObject(e, id)) rows.push({ e, id, r: e.objects.rows[e.row[id]] });
      } else {
        e.objects.rows.forEach((r, i) => rows.push({ e, id: i + 1, r }));
      }
    }
    return rows;
  }
  function tableColumns(rows) {
    const e = rows.length ? rows[0].e : current();
    if (!e || !e.objects) return [];
    const cols = e.objects.columns.filter((c) => !(c === "image" && S.scope !== "all"));
    const first = FIRST_COLS.filter((c) => cols.includes(c));
    const last = LAST_COLS.filter((c) => cols.includes(c));
    return [...first, ...cols.filter((c) => !first.includes(c) && !last.includes(c)), ...last];
  }
  function cellValue(row, col) {
    if (col === "label" && row.e.labelAt) return row.e.labelAt[row.id];
    const i = row.e.col[col];
    return i === undefined ? null : row.r[i];
  }

  let tableState = { rows: [], cols: [] };
  function renderTable() {
    if (S.tab !== "table") return;
    const rows = tableRows();
    const cols = tableColumns(rows);
    if (S.sort.col && cols.includes(S.sort.col)) {
      const c = S.sort.col, d = S.sort.dir;
      rows.sort((a, b) => {
        const va = cellValue(a, c), vb = cellValue(b, c);
        if (va === null || va === undefined) return 1;
        if (vb === null || vb === undefined) return -1;
        if (typeof va === "number" && typeof vb === "number") return (va - vb) * d;
        return String(va).localeCompare(String(vb)) * d;
      });
    }
    tableState = { rows, cols };
    const thead = $("data-table").tHead;
    const focusCol = document.activeElement && document.activeElement.tagName === "TH" && thead.contains(document.activeElement)
      ? document.activeElement.dataset.col : null;
    thead.innerHTML = "";
    const tr = el("tr");
    for (const c of cols) {
      const d = S.defs[baseName(c)];
      const num = rows.length && typeof cellValue(rows[0], c) === "number";
      const sortBy = () => { S.sort = { col: c, dir: S.sort.col === c ? -S.sort.dir : (num ? -1 : 1) }; renderTable(); };
      const th = el("th", {
        class: `${num ? "" : "text"} ${S.sort.col === c ? "sorted" : ""}`, "data-col": c, tabindex: "0", scope: "col",
        "aria-sort": S.sort.col === c ? (S.sort.dir > 0 ? "ascending" : "descending") : "none",
        title: d ? `${d.formula}\nrange: ${d.range}` : c === "label" ? "label in the downloaded label image (at this threshold)" : c,
        onclick: sortBy,
        onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(); } },
      }, prettyCol(c));
      if (S.sort.col === c) th.append(el("span", { class: "arrow", "aria-hidden": "true" }, S.sort.dir > 0 ? "▲" : "▼"));
      tr.append(th);
    }
    thead.append(tr);
    if (focusCol) { const th = thead.querySelector(`th[data-col="${CSS.escape(focusCol)}"]`); if (th) th.focus(); }
    $("table-empty").hidden = rows.length > 0;
    $("table-empty").textContent = S.images.some((e) => e.status === "done") ? "No objects above the threshold." : "Results appear here once an image has been segmented.";
    const n = $("tab-table");
    n.innerHTML = `Objects <span class="n">${rows.length}</span>`;
    renderTableRows(true);
  }
  function renderTableRows(force) {
    const wrap = $("table-wrap");
    const { rows, cols } = tableState;
    const first = Math.max(0, Math.floor(wrap.scrollTop / ROW_H) - 10);
    const count = Math.ceil(wrap.clientHeight / ROW_H) + 20;
    const last = Math.min(rows.length, first + count);
    if (!force && tableState.first === first && tableState.last === last) return;
    tableState.first = first;
    tableState.last = last;
    const tbody = $("data-table").tBodies[0];
    const focusId = document.activeElement && document.activeElement.tagName === "TR" && tbody.contains(document.activeElement)
      ? document.activeElement.dataset.id : null;
    const frag = document.createDocumentFragment();
    const spacer = (h) => { const t = el("tr", { class: "spacer" }, el("td", { colspan: cols.length || 1, style: `height:${h}px` })); return t; };
    frag.append(spacer(first * ROW_H));
    const cur = current();
    for (let i = first; i < last; i++) {
      const row = rows[i];
      const trow = el("tr", { "data-id": row.id, class: row.e === cur && row.id === S.selected ? "selected" : "", tabindex: "0" });
      for (const c of cols) {
        const v = cellValue(row, c);
        if (c === "class") {
          const k = row.e.classNames.indexOf(v) + 1;
          trow.append(el("td", { class: "text" }, el("span", { class: "cls-dot", style: `background:${classCSS(k)}` }), String(v)));
        } else trow.append(el("td", { class: typeof v === "number" ? "" : "text" }, fmt(v, c)));
      }
      if (row.e.row) {
        trow.addEventListener("click", () => selectObject(row.id, true, row.e));
        trow.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); selectObject(row.id, true, row.e); }
          else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
            ev.preventDefault();
            const to = ev.key === "ArrowDown" ? trow.nextElementSibling : trow.previousElementSibling;
            if (to && !to.classList.contains("spacer")) to.focus();
          }
        });
        trow.addEventListener("mouseenter", () => { if (row.e === current()) { S.hover = row.id; requestDraw(); } });
      }
      frag.append(trow);
    }
    frag.append(spacer((rows.length - last) * ROW_H));
    tbody.replaceChildren(frag);
    if (focusId) { const tr = tbody.querySelector(`tr[data-id="${CSS.escape(focusId)}"]`); if (tr) tr.focus(); }
  }
  $("table-wrap").addEventListener("scroll", () => renderTableRows(false), { passive: true });
  $("table-wrap").addEventListener("mouseleave", () => { S.hover = 0; requestDraw(); });

  function numericColumns(rows) {
    const cols = tableColumns(rows).filter((c) => !["label", "image", "class", "touches_border", "pixel_size_um", "bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max"].includes(c));
    return cols.filter((c) => rows.some((r) => typeof cellValue(r, c) === "number"));
  }
  function fillSelect(sel, cols, preferred) {
    const prev = sel.value;
    sel.innerHTML = "";
    for (const c of cols) sel.append(el("option", { value: c }, prettyCol(c)));
    const pick = cols.includes(prev) ? prev : cols.find((c) => baseName(c) === preferred) || cols[0];
    if (pick) sel.value = pick;
  }

  function renderPlots() {
    if (S.tab !== "plots") return;
    const rows = tableRows();
    const cols = numericColumns(rows);
    fillSelect($("hist-col"), cols, "area");
    fillSelect($("scatter-x"), cols, "area");
    fillSelect($("scatter-y"), cols, "circularity");
    drawHistogram($("hist-canvas"), rows, $("hist-col").value);
    drawScatter($("scatter-canvas"), rows, $("scatter-x").value, $("scatter-y").value);
  }

  function niceTicks(lo, hi, n = 5) {
    if (!(hi > lo)) { hi = lo + 1; }
    const span = hi - lo, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
    return ticks;
  }
  function setupCanvas(cv) {
    const dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth, h = cv.clientHeight;
    cv.width = Math.max(1, Math.round(w * dpr));
    cv.height = Math.max(1, Math.round(h * dpr));
    const c = cv.getContext("2d");
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, w, h);
    c.font = "11px system-ui, sans-serif";
    return { c, w, h };
  }
  function axes(c, box, xt, yt, xlab, ylab, xmap, ymap) {
    c.strokeStyle = "#d0d5dd"; c.fillStyle = "#667085"; c.lineWidth = 1;
    c.beginPath(); c.moveTo(box.l, box.t); c.lineTo(box.l, box.b); c.lineTo(box.r, box.b); c.stroke();
    c.textAlign = "center"; c.textBaseline = "top";
    for (const t of xt) { const x = xmap(t); c.fillText(fmtTick(t), x, box.b + 4); c.beginPath(); c.moveTo(x, box.b); c.lineTo(x, box.b + 3); c.stroke(); }
    c.textAlign = "right"; c.textBaseline = "middle";
    for (const t of yt) { const y = ymap(t); c.fillText(fmtTick(t), box.l - 5, y); c.strokeStyle = "#f0f2f5"; c.beginPath(); c.moveTo(box.l + 1, y); c.lineTo(box.r, y); c.stroke(); c.strokeStyle = "#d0d5dd"; }
    c.fillStyle = "#344054"; c.textAlign = "center"; c.textBaseline = "bottom";
    c.fillText(xlab, (box.l + box.r) / 2, box.b + 32);
    c.save(); c.translate(12, (box.t + box.b) / 2); c.rotate(-Math.PI / 2); c.textBaseline = "top"; c.fillText(ylab, 0, 0); c.restore();
  }
  function fmtTick(t) { const a = Math.abs(t); return a >= 1e4 ? t.toExponential(1) : a >= 100 ? t.toFixed(0) : +t.toPrecision(3) + ""; }

  function drawHistogram(cv, rows, col) {
    const { c, w, h } = setupCanvas(cv);
    if (!col || !rows.length) { c.fillStyle = "#98a2b3"; c.textAlign = "center"; c.fillText("no objects", w / 2, h / 2); return; }
    const byClass = {};
    let lo = Infinity, hi = -Infinity, n = 0;
    const all = [];
    for (const r of rows) {
      const v = cellValue(r, col);
      if (typeof v !== "number" || !isFinite(v)) continue;
      const k = r.e.classNames.indexOf(cellValue(r, "class")) + 1 || 1;
      (byClass[k] = byClass[k] || []).push(v);
      all.push(v);
      lo = Math.min(lo, v); hi = Math.max(hi, v); n++;
    }
    if (!n) return;
    if (hi === lo) { hi = lo + 1; }
    const nb = Math.min(40, Math.max(8, Math.round(Math.sqrt(n) * 1.5)));
    const box = { l: 46, r: w - 12, t: 14, b: h - 40 };
    const counts = {};
    let top = 0;
    const stack = new Array(nb).fill(0);
    for (const [k, vals] of Object.entries(byClass)) {
      const cnt = new Array(nb).fill(0);
      for (const v of vals) cnt[Math.min(nb - 1, Math.floor((v - lo) / (hi - lo) * nb))]++;
      counts[k] = cnt;
      cnt.forEach((x, i) => { stack[i] += x; });
    }
    top = Math.max(...stack);
    const xmap = (v) => box.l + (v - lo) / (hi - lo) * (box.r - box.l);
    const ymap = (v) => box.b - v / top * (box.b - box.t);
    axes(c, box, niceTicks(lo, hi), niceTicks(0, top, 4).filter((t) => Number.isInteger(t)), prettyCol(col), "objects", xmap, ymap);
    const base = new Array(nb).fill(0);
    const bw = (box.r - box.l) / nb;
    for (const [k, cnt] of Object.entries(counts)) {
      c.fillStyle = classCSS(+k);
      cnt.forEach((x, i) => {
        if (!x) return;
        const y0 = ymap(base[i]), y1 = ymap(base[i] + x);
        c.fillRect(box.l + i * bw + 0.5, y1, Math.max(1, bw - 1), y0 - y1);
        base[i] += x;
      });
    }
    all.sort((a, b) => a - b);
    const med = all[Math.floor(all.length / 2)];
    c.strokeStyle = "#1c2230"; c.setLineDash([4, 3]); c.beginPath(); c.moveTo(xmap(med), box.t); c.lineTo(xmap(med), box.b); c.stroke(); c.setLineDash([]);
    c.fillStyle = "#1c2230"; c.textAlign = "right"; c.textBaseline = "top";
    c.fillText(`n = ${n}   median ${fmt(med, col)}`, box.r, 0);
  }

  let scatterPts = [];
  function drawScatter(cv, rows, xc, yc) {
    const { c, w, h } = setupCanvas(cv);
    scatterPts = [];
    if (!xc || !yc || !rows.length) { c.fillStyle = "#98a2b3"; c.textAlign = "center"; c.fillText("no objects", w / 2, h / 2); return; }
    const pts = [];
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const r of rows) {
      const x = cellValue(r, xc), y = cellValue(r, yc);
      if (typeof x !== "number" || typeof y !== "number" || !isFinite(x) || !isFinite(y)) continue;
      pts.push({ x, y, r });
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    if (!pts.length) return;
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) y1 = y0 + 1;
    const px = (x1 - x0) * 0.04, py = (y1 - y0) * 0.06;
    x0 -= px; x1 += px; y0 -= py; y1 += py;
    const box = { l: 50, r: w - 12, t: 12, b: h - 40 };
    const xmap = (v) => box.l + (v - x0) / (x1 - x0) * (box.r - box.l);
    const ymap = (v) => box.b - (v - y0) / (y1 - y0) * (box.b - box.t);
    axes(c, box, niceTicks(x0, x1), niceTicks(y0, y1, 4), prettyCol(xc), prettyCol(yc), xmap, ymap);
    const cur = current();
    c.globalAlpha = pts.length > 2000 ? 0.45 : 0.75;
    for (const p of pts) {
      const k = p.r.e.classNames.indexOf(cellValue(p.r, "class")) + 1 || 1;
      c.fillStyle = classCSS(k);
      const sx = xmap(p.x), sy = ymap(p.y);
      c.beginPath(); c.arc(sx, sy, 2.6, 0, 2 * Math.PI); c.fill();
      scatterPts.push({ sx, sy, row: p.r });
    }
    c.globalAlpha = 1;
    const sel = pts.find((p) => p.r.e === cur && p.r.id === S.selected);
    if (sel) { c.strokeStyle = "#1c2230"; c.lineWidth = 2; c.beginPath(); c.arc(xmap(sel.x), ymap(sel.y), 6, 0, 2 * Math.PI); c.stroke(); }
  }
  $("scatter-canvas").addEventListener("click", (ev) => {
    const r = ev.currentTarget.getBoundingClientRect();
    const mx = ev.clientX - r.left, my = ev.clientY - r.top;
    let best = null, bd = 64;
    for (const p of scatterPts) { const d = (p.sx - mx) ** 2 + (p.sy - my) ** 2; if (d < bd) { bd = d; best = p; } }
    if (best && best.row.e.row) { selectObject(best.row.id, true, best.row.e); renderPlots(); }
  });
  for (const id of ["hist-col", "scatter-x", "scatter-y"]) $(id).addEventListener("change", renderPlots);

  const SUMMARY_COLS = ["area", "circularity", "solidity", "eccentricity", "aspect_ratio", "intensity_mean"];
  function renderSummary() {
    if (S.tab !== "summary") return;
    const entries = S.scope === "all" ? S.images.filter((e) => e.status === "done") : [current()].filter((e) => e && e.status === "done");
    const rows = tableRows().filter((r) => entries.includes(r.e));
    const table = $("summary-table");
    table.tHead.innerHTML = "";
    table.tBodies[0].innerHTML = "";
    if (!entries.length) return;
    const sample = entries[0];
    if (!hasObjects(sample)) {
      renderTableLike(table, ["image", "class", "probability"], entries.map((e) => [e.name, topClass(e), ""]));
      return;
    }
    const cols = sample.objects ? SUMMARY_COLS.map((b) => sample.objects.columns.find((c) => baseName(c) === b && !/_ch[1-9]/.test(c))).filter(Boolean) : [];
    const groups = new Map();
    for (const e of entries) for (const [i, cname] of e.classNames.entries()) if (S.classVisible[i + 1] !== false) groups.set(`${e.key}|${cname}`, { e, cname, rows: [] });
    for (const r of rows) { const g = groups.get(`${r.e.key}|${cellValue(r, "class")}`); if (g) g.rows.push(r); }
    const median = (a) => { if (!a.length) return null; a.sort((x, y) => x - y); const m = a.length >> 1; return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2; };
    const out = [];
    for (const g of groups.values()) {
      const line = [g.e.name, g.cname, g.rows.length];
      for (const c of cols) line.push(median(g.rows.map((r) => cellValue(r, c)).filter((v) => typeof v === "number" && isFinite(v))));
      out.push(line);
    }
    renderTableLike(table, ["image", "class", "objects", ...cols.map((c) => `median ${prettyCol(c)}`)], out);
  }
  function renderTableLike(table, head, rows) {
    const tr = el("tr");
    head.forEach((h, i) => tr.append(el("th", { class: i < 2 ? "text" : "" }, h)));
    table.tHead.append(tr);
    for (const r of rows) {
      const row = el("tr");
      r.forEach((v, i) => row.append(el("td", { class: i < 2 ? "text" : "" }, fmt(v))));
      table.tBodies[0].append(row);
    }
  }

  // ------------------------------------------------------------------------------------------
  // updates
  // ------------------------------------------------------------------------------------------
  /** What may make the shown result wrong (e.g. an image unlike the model's training data). */
  function renderWarnings() {
    const e = current();
    const list = (e && e.status === "done" && e.result && e.result.warnings) || [];
    const box = $("viewer-warning");
    box.hidden = !list.length;
    box.replaceChildren(...(list.length ? [el("b", {}, "Check this result"), el("ul", {}, ...list.map((w) => el("li", {}, w)))] : []));
  }
  function updateAll() {
    for (const e of S.images) updateLabelNumbers(e);
    renderWarnings();
    renderDisplayPanel();
    renderStackPanel();
    renderMeasurePanel();
    renderDiameterHint();
    renderDownloads();
    renderProgress();
    renderTable();
    renderPlots();
    renderSummary();
    updateTabCount();
    requestDraw();
  }
  function updateTabCount() {
    $("tab-table").innerHTML = `Objects <span class="n">${tableRows().length}</span>`;
  }
  const updateTables = debounce(() => { renderTable(); renderPlots(); renderSummary(); renderDownloads(); renderImageList(); updateTabCount(); }, 120);
  function onDisplayChange() {
    const e = current();
    for (const x of S.images) updateLabelNumbers(x);
    if (e && S.selected && !(e.row && visibleObject(e, S.selected))) { S.selected = 0; hideInspector(); }
    renderDisplayPanel();
    requestDraw();
    updateTables();
  }

  // ------------------------------------------------------------------------------------------
  // UI bindings
  // ------------------------------------------------------------------------------------------
  function bindUI() {
    const input = $("file-input");
    $("dropzone").addEventListener("click", () => input.click());
    $("dropzone").addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); input.click(); } });
    $("empty-choose").addEventListener("click", () => input.click());
    $("empty-example").addEventListener("click", () => { if (S.examples.length) addExample(S.examples[0]); });
    input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });

    let depth = 0;
    const hasFiles = (ev) => ev.dataTransfer && Array.from(ev.dataTransfer.types || []).includes("Files");
    window.addEventListener("dragenter", (ev) => { if (!hasFiles(ev)) return; ev.preventDefault(); depth++; $("drop-overlay").hidden = false; $("dropzone").classList.add("over"); });
    window.addEventListener("dragover", (ev) => { if (!hasFiles(ev)) return; ev.preventDefault(); ev.dataTransfer.dropEffect = "copy"; });
    window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) { $("drop-overlay").hidden = true; $("dropzone").classList.remove("over"); } });
    window.addEventListener("drop", (ev) => {
      ev.preventDefault();
      depth = 0;
      $("drop-overlay").hidden = true;
      $("dropzone").classList.remove("over");
      if (ev.dataTransfer && ev.dataTransfer.files.length) addFiles(ev.dataTransfer.files);
    });

    $("model-select").addEventListener("change", (ev) => {
      S.modelId = ev.target.value;
      applyModelDefaults();
      S.selected = 0;
      hideInspector();
      for (const e of S.images) if (e.upload) run(e);
      updateAll();
    });
    const thr = $("threshold");
    const onThr = throttleRAF(() => {
      S.threshold = Number(thr.value);
      $("threshold-value").textContent = S.threshold.toFixed(2);
      onDisplayChange();
      if (S.images.some(serverThreshold)) refetchAtThreshold();
    });
    thr.addEventListener("input", onThr);
    for (const b of $("style-group").querySelectorAll("button")) {
      b.addEventListener("click", () => {
        S.style = b.dataset.style;
        for (const x of $("style-group").querySelectorAll("button")) x.classList.toggle("on", x === b);
        onDisplayChange();
      });
    }
    $("opacity").addEventListener("input", throttleRAF(() => {
      S.opacity = Number($("opacity").value);
      $("opacity-value").textContent = `${Math.round(S.opacity * 100)}%`;
      if (S.style === "outline") { S.style = "both"; for (const x of $("style-group").querySelectorAll("button")) x.classList.toggle("on", x.dataset.style === "both"); }
      onDisplayChange();
    }));
    const slice = $("slice");
    const runSlice = debounce((e) => run(e), 450);
    slice.addEventListener("input", () => {
      const e = current();
      if (!e || !e.upload) return;
      e.slice = Number(slice.value);
      $("slice-value").textContent = `${e.slice + 1} / ${e.upload.pages}`;
      e.img = null;
      e.labels = null;
      e.preview = loadImage(`${e.upload.preview_url}?slice=${e.slice}`, () => requestDraw());
      e.status = "queued";
      e.stage = "waiting for the slice";
      renderProgress();
      runSlice(e);
    });
    $("diameter").addEventListener("change", () => {
      const inp = $("diameter"), hint = $("diameter-hint");
      const { value, error } = parseDiameter(inp.value);
      S.diameterError = error || null;
      inp.setAttribute("aria-invalid", error ? "true" : "false");
      hint.classList.toggle("error", !!error);
      if (error) { hint.textContent = `${error} Images keep ${S.diameter ? `${S.diameter} px` : "the automatic estimate"}.`; return; }
      if (value !== null) inp.value = String(value);
      if (value === S.diameter) { updateAll(); return; }
      S.diameter = value;
      for (const e of S.images) if (e.upload) run(e);  // the model runs again at the new size
      updateAll();
    });
    $("pixel-size").addEventListener("change", () => {
      const inp = $("pixel-size"), hint = $("pixel-size-hint");
      const { value, error } = parsePixelSize(inp.value);
      S.pixelSizeError = error || null;
      inp.setAttribute("aria-invalid", error ? "true" : "false");
      hint.classList.toggle("error", !!error);
      if (error) { hint.textContent = `${error} Measurements still use ${S.pixelSize ? `${S.pixelSize} µm per pixel` : "pixels"}.`; return; }
      if (value !== null) inp.value = String(value);  // shown as it is read: 0,65 becomes 0.65
      S.pixelSize = value;
      for (const e of S.images) {
        if (e.status !== "done" || !e.result.outputs.objects) continue;
        const gen = e.gen;
        getJSON(objectsURL(e)).then((o) => { if (gen === e.gen) { setObjects(e, o); updateAll(); } })
          .catch((err) => toast("Cannot re-measure", err.message, "error"));
      }
      updateAll();
    });
    for (const t of document.querySelectorAll(".tab")) {
      t.addEventListener("click", () => {
        S.tab = t.dataset.tab;
        for (const x of document.querySelectorAll(".tab")) x.classList.toggle("on", x === t);
        $("pane-table").hidden = S.tab !== "table";
        $("pane-plots").hidden = S.tab !== "plots";
        $("pane-summary").hidden = S.tab !== "summary";
        renderTable(); renderPlots(); renderSummary();
      });
    }
    for (const b of $("scope-group").querySelectorAll("button")) {
      b.addEventListener("click", () => {
        S.scope = b.dataset.scope;
        for (const x of $("scope-group").querySelectorAll("button")) x.classList.toggle("on", x === b);
        renderTable(); renderPlots(); renderSummary(); updateTabCount();
      });
    }
    $("zoom-in").addEventListener("click", () => zoomAt(1.5, viewer.clientWidth / 2, viewer.clientHeight / 2));
    $("zoom-out").addEventListener("click", () => zoomAt(1 / 1.5, viewer.clientWidth / 2, viewer.clientHeight / 2));
    $("zoom-fit").addEventListener("click", fitView);
    $("zoom-level").addEventListener("click", () => zoomTo(1));
    $("fullscreen").addEventListener("click", toggleFullscreen);
    $("inspector-close").addEventListener("click", () => selectObject(0));
    $("help-button").addEventListener("click", () => $("help-dialog").showModal());
    document.addEventListener("fullscreenchange", () => setTimeout(() => { if (S.view.fitted) fitView(); else requestDraw(); }, 50));
    new ResizeObserver(() => { if (S.view.fitted) fitView(); else requestDraw(); renderTableRows(true); renderPlots(); }).observe(viewer);
    window.addEventListener("keydown", (ev) => {
      const tag = (ev.target && ev.target.tagName) || "";
      if (["INPUT", "SELECT", "TEXTAREA"].includes(tag) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.target.closest && ev.target.closest("#image-list, #data-table, dialog")) return;  // they use the arrows
      const cx = viewer.clientWidth / 2, cy = viewer.clientHeight / 2;
      const PAN = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] }[ev.key];
      if (PAN) {  // the view moves with the arrow, as in map viewers: a tenth of it a press, a half with Shift
        const step = (ev.shiftKey ? 0.5 : 0.1) * Math.min(viewer.clientWidth, viewer.clientHeight);
        S.view.tx += PAN[0] * step;
        S.view.ty += PAN[1] * step;
        S.view.fitted = false;
        requestDraw();
      } else if (ev.key === "+" || ev.key === "=") zoomAt(1.5, cx, cy);
      else if (ev.key === "-") zoomAt(1 / 1.5, cx, cy);
      else if (ev.key === "0") fitView();
      else if (ev.key === "1") zoomTo(1);
      else if (ev.key === "f" || ev.key === "F") toggleFullscreen();
      else if (ev.key === "Escape") selectObject(0);
      else return;
      ev.preventDefault();
    });
  }
  function toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else viewer.requestFullscreen().catch((err) => toast("Full screen is not available", err.message, "error"));
  }

  init();
})();
