// kanime's web page: builds the controls from /api/vocabulary and talks to the JSON API.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const COLORS = {
    blonde: "#f4d35e", brown: "#8b5a2b", black: "#26222e", blue: "#3b82f6", pink: "#f472b6",
    purple: "#a855f7", green: "#22c55e", red: "#ef4444", silver: "#c4c7ce", white: "#ffffff",
    orange: "#f97316", aqua: "#22d3ee", gray: "#9ca3af", yellow: "#facc15",
  };
  const HISTORY_LIMIT = 500;

  const state = {
    vocab: null,
    // The current noise: the vector (once known), the seed that made it (null when edited or
    // imported), where it came from, and how many times it was perturbed.
    current: { vector: null, noiseSeed: null, origin: null, perturbs: 0 },
    history: [],
    ends: { a: null, b: null },
    frames: [],
    frameIndex: 0,
    timer: null,
    busy: false,
    nextId: 1,
  };

  // --- small helpers ------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  async function api(path, body) {
    const init = body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    };
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      throw new Error((data && data.error) || `The server answered ${response.status}.`);
    }
    return data;
  }

  function setStatus(text, kind = "") {
    const status = $("status");
    status.textContent = text;
    status.className = `status ${kind}`;
  }

  function download(href, name) {
    const link = el("a", { href, download: name });
    document.body.append(link);
    link.click();
    link.remove();
  }

  function gaussian() {
    let u = 0;
    while (u === 0) u = Math.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
  }

  function randomSeed() {
    return Math.floor(Math.random() * 2 ** 31);
  }

  function clampInt(value, low, high, fallback) {
    const n = Number.parseInt(value, 10);
    return Number.isFinite(n) ? Math.min(high, Math.max(low, n)) : fallback;
  }

  // --- tag controls -------------------------------------------------------------------------

  function buildControls(vocab) {
    const selectors = $("selectors");
    const toggles = $("toggles");
    for (const control of vocab.controls) {
      const label = control.key.replaceAll("_", " ");
      if (control.kind === "selector") {
        const select = el("select", { id: `opt-${control.key}`, "data-key": control.key },
          el("option", { value: "random", text: "random" }),
          ...control.tags.map((tag) => el("option", { value: tag, text: tag })),
          el("option", { value: "none", text: "none" }));
        selectors.append(el("label", { class: "field" }, el("span", { text: label }), select));
      } else {
        const name = `opt-${control.key.replaceAll(" ", "-")}`;
        const options = ["off", "random", "on"].map((value) =>
          el("label", { title: `${control.key}: ${value}` },
            el("input", {
              type: "radio", name, value, "data-key": control.key, checked: value === "off",
              "aria-label": `${control.key} ${value}`,
            }),
            el("span", { text: value })));
        toggles.append(el("div", { class: "tri", role: "radiogroup", "aria-label": control.key },
          el("span", { class: "tri-name", text: label }),
          el("div", { class: "tri-options" }, ...options)));
      }
    }
  }

  function readOptions() {
    const options = {};
    for (const select of document.querySelectorAll("#selectors select")) {
      options[select.dataset.key] = select.value;
    }
    for (const input of document.querySelectorAll("#toggles input:checked")) {
      options[input.dataset.key] = input.value;
    }
    return options;
  }

  // Sets the controls from an options object; returns the entries it could not use.
  function writeOptions(options) {
    const ignored = [];
    for (const [key, value] of Object.entries(options)) {
      const select = document.querySelector(`#selectors select[data-key="${CSS.escape(key)}"]`);
      if (select) {
        if ([...select.options].some((o) => o.value === value)) select.value = value;
        else ignored.push(`${key}=${value}`);
        continue;
      }
      const radio = [...document.querySelectorAll("#toggles input")]
        .find((input) => input.dataset.key === key && input.value === value);
      if (radio) radio.checked = true;
      else ignored.push(`${key}=${value}`);
    }
    return ignored;
  }

  function setAll(selectorValue, toggleValue) {
    for (const select of document.querySelectorAll("#selectors select")) {
      select.value = selectorValue;
    }
    for (const input of document.querySelectorAll("#toggles input")) {
      input.checked = input.value === toggleValue;
    }
  }

  // The options that ask for exactly the tags of a character.
  function optionsOfTags(tags) {
    const options = {};
    for (const control of state.vocab.controls) {
      if (control.kind === "selector") {
        options[control.key] = control.tags.find((t) => tags.includes(t)) || "none";
      } else {
        options[control.key] = tags.includes(control.key) ? "on" : "off";
      }
    }
    return options;
  }

  // --- noise --------------------------------------------------------------------------------

  function noiseLabel(current) {
    if (current.vector === null && current.noiseSeed === null) return "new noise for every image";
    const origin = current.origin === null ? "noise of seed ?" : current.origin;
    const nudges = current.perturbs
      ? ` + ${current.perturbs} perturbation${current.perturbs > 1 ? "s" : ""}` : "";
    return `${origin}${nudges}`;
  }

  function showNoise() {
    const locked = $("lock").checked;
    const label = noiseLabel(state.current);
    const fresh = state.current.vector === null && state.current.noiseSeed === null;
    if (locked) $("noise-label").textContent = `locked: ${label}`;
    else $("noise-label").textContent = fresh ? label : `last: ${label}; new noise for every image`;
    const canvas = $("noise-print");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const vector = state.current.vector;
    if (!vector) return;
    const width = canvas.width / vector.length;
    vector.forEach((x, i) => {
      const v = Math.max(-1, Math.min(1, x / 2.5));
      const hue = v < 0 ? 250 : 340;
      ctx.fillStyle = `hsl(${hue} 75% ${96 - Math.abs(v) * 50}%)`;
      ctx.fillRect(i * width, 0, Math.ceil(width), canvas.height);
    });
  }

  function setCurrent(current) {
    state.current = current;
    showNoise();
  }

  function reroll() {
    const seed = randomSeed();
    setCurrent({ vector: null, noiseSeed: seed, origin: `seed ${seed}`, perturbs: 0 });
    $("lock").checked = true;
    return generate();
  }

  function perturb() {
    const { vector } = state.current;
    if (!vector) {
      setStatus("Generate a character first: there is no noise to perturb yet.", "error");
      return null;
    }
    const s = Number.parseFloat($("strength").value);
    const scale = 1 / Math.sqrt(1 + s * s);
    setCurrent({
      vector: vector.map((x) => (x + s * gaussian()) * scale),
      noiseSeed: null,
      origin: state.current.origin,
      perturbs: state.current.perturbs + 1,
    });
    $("lock").checked = true;
    return generate();
  }

  // --- generation ---------------------------------------------------------------------------

  function setBusy(busy) {
    state.busy = busy;
    for (const id of ["generate", "reroll", "perturb", "morph"]) {
      $(id).disabled = busy || (id === "morph" && !(state.ends.a && state.ends.b));
    }
  }

  async function generate() {
    if (state.busy) return;
    const limits = state.vocab.limits;
    const count = clampInt($("count").value, 1, limits.max_images, 1);
    $("count").value = count;
    const options = readOptions();
    const body = { count, options };
    const locked = $("lock").checked && (state.current.vector || state.current.noiseSeed !== null);
    if (locked) {
      if (state.current.noiseSeed !== null) body.noise_seed = state.current.noiseSeed;
      else body.noise = Array(count).fill(state.current.vector);
    }
    setBusy(true);
    setStatus(`Generating ${count} image${count > 1 ? "s" : ""}...`, "busy");
    try {
      const data = await api("/api/generate", body);
      const note = locked ? noiseLabel(state.current) : null;
      const records = data.images.map((image) => ({
        ...image, id: state.nextId++, options, noiseNote: note,
      }));
      if (!locked) {
        const first = records[0];
        setCurrent({
          vector: first.noise, noiseSeed: first.noise_seed, origin: `seed ${first.seed}`,
          perturbs: 0,
        });
      } else if (!state.current.vector) {
        setCurrent({ ...state.current, vector: records[0].noise });
      } else {
        showNoise();
      }
      showResults(records);
      addHistory(records);
      const ms = Math.round(data.model_ms);
      setStatus(`${records.length} image${records.length > 1 ? "s" : ""} in ${ms} ms.`);
    } catch (error) {
      setStatus(error.message, "error");
    } finally {
      setBusy(false);
    }
  }

  function tagList(tags) {
    if (!tags.length) return el("ul", { class: "tags" }, el("li", { class: "none", text: "no tags" }));
    return el("ul", { class: "tags" }, ...tags.map((tag) => {
      const color = /(hair|eyes)$/.test(tag) ? COLORS[tag.split(" ")[0]] : undefined;
      const dot = color ? el("i", { class: "dot" }) : null;
      if (dot) dot.style.setProperty("--dot", color);
      return el("li", {}, dot, tag);
    }));
  }

  function card(record) {
    const small = state.vocab.resolution < 96 ? "pixelated" : "";
    const description = record.tags.length ? record.tags.join(", ") : "no tags";
    let noteText = null;
    if (record.noise_seed === null) noteText = `noise: ${record.noiseNote || "custom"}`;
    else if (record.noise_seed !== record.seed) noteText = `noise of seed ${record.noise_seed}`;
    return el("figure", { class: `card ${small}`, "data-seed": record.seed, "data-id": record.id },
      el("img", { src: record.image, alt: `character, seed ${record.seed}: ${description}` }),
      el("figcaption", {},
        el("div", { class: "seed" }, "seed ", el("b", { class: "seed-value", text: String(record.seed) })),
        noteText ? el("div", { class: "noise-note", text: noteText }) : null,
        tagList(record.tags),
        el("div", { class: "actions" },
          el("a", {
            class: "button save", href: record.image, download: `kanime-seed-${record.seed}.png`,
            title: "Save this image as PNG", text: "Save PNG",
          }),
          el("button", {
            type: "button", class: "use", text: "Use",
            title: "Lock this character's noise and set the options to its tags",
            onclick: () => useCharacter(record),
          }),
          el("button", {
            type: "button", class: "pick-a", text: "A", title: "Start of the transition",
            onclick: () => setEnd("a", record),
          }),
          el("button", {
            type: "button", class: "pick-b", text: "B", title: "End of the transition",
            onclick: () => setEnd("b", record),
          }))));
  }

  function showResults(records) {
    $("results").replaceChildren(...records.map(card));
  }

  function useCharacter(record) {
    const origin = record.noise_seed !== null ? `seed ${record.noise_seed}`
      : (record.noiseNote || "custom noise");
    setCurrent({ vector: record.noise, noiseSeed: record.noise_seed, origin, perturbs: 0 });
    $("lock").checked = true;
    writeOptions(optionsOfTags(record.tags));
    showNoise();
    setStatus(`Using seed ${record.seed}: noise locked, options set to its tags.`);
  }

  // --- history ------------------------------------------------------------------------------

  function addHistory(records) {
    state.history.unshift(...records);
    state.history.length = Math.min(state.history.length, HISTORY_LIMIT);
    renderHistory();
  }

  function renderHistory() {
    const box = $("history");
    $("history-count").textContent = state.history.length ? `(${state.history.length})` : "";
    if (!state.history.length) {
      box.replaceChildren(el("p", { class: "empty muted", text: "The characters made in this visit appear here." }));
      return;
    }
    const small = state.vocab.resolution < 96 ? "pixelated" : null;
    box.replaceChildren(...state.history.map((record) => el("button", {
      type: "button", title: `seed ${record.seed}: ${record.tags.join(", ") || "no tags"}`,
      "data-id": record.id, onclick: () => { showResults([record]); },
    }, el("img", { src: record.image, alt: `seed ${record.seed}`, class: small }))));
  }

  // --- transition ---------------------------------------------------------------------------

  function setEnd(which, record) {
    state.ends[which] = record;
    const slot = $(`slot-${which}`);
    slot.replaceChildren(
      el("span", { class: "slot-name", text: which.toUpperCase() }),
      el("img", { src: record.image, alt: `seed ${record.seed}` }),
      el("p", {}, `seed ${record.seed}`, el("br"), el("span", { class: "muted", text: record.tags.join(", ") || "no tags" })));
    setBusy(state.busy);
  }

  async function morph() {
    const { a, b } = state.ends;
    if (!a || !b || state.busy) return;
    const frames = clampInt($("frames").value, 2, state.vocab.limits.max_frames, 12);
    $("frames").value = frames;
    const method = $("method").value;
    setBusy(true);
    setStatus(`Making ${frames} frames (${method})...`, "busy");
    try {
      const data = await api("/api/interpolate", {
        start: { noise: a.noise, tags: a.tags },
        end: { noise: b.noise, tags: b.tags },
        frames, method,
      });
      stop();
      state.frames = data.frames;
      state.framesName = `kanime-transition-${a.seed}-${b.seed}-${method}`;
      $("player").hidden = false;
      $("scrub").max = String(data.frames.length - 1);
      const small = state.vocab.resolution < 96;
      $("frame").classList.toggle("pixelated", small);
      $("filmstrip").replaceChildren(...data.frames.map((frame, i) => el("img", {
        src: frame.image, alt: `frame ${i}, t = ${frame.t}`, class: small ? "pixelated" : null,
        onclick: () => { stop(); showFrame(i); },
      })));
      showFrame(0);
      setStatus(`${data.frames.length} frames in ${Math.round(data.model_ms)} ms.`);
    } catch (error) {
      setStatus(error.message, "error");
    } finally {
      setBusy(false);
    }
  }

  function showFrame(i) {
    state.frameIndex = i;
    const frame = state.frames[i];
    $("frame").src = frame.image;
    $("scrub").value = String(i);
    $("frame-t").textContent = `t = ${frame.t.toFixed(2)}`;
    [...$("filmstrip").children].forEach((img, k) => img.classList.toggle("current", k === i));
  }

  function play() {
    if (state.timer) { stop(); return; }
    const fps = clampInt($("fps").value, 1, 30, 8);
    let direction = 1;
    $("play").textContent = "Pause";
    state.timer = setInterval(() => {
      const last = state.frames.length - 1;
      let next = state.frameIndex + direction;
      if (next > last || next < 0) { direction = -direction; next = state.frameIndex + direction; }
      showFrame(Math.max(0, Math.min(last, next)));
    }, 1000 / fps);
  }

  function stop() {
    clearInterval(state.timer);
    state.timer = null;
    $("play").textContent = "Play";
  }

  async function saveStrip() {
    if (!state.frames.length) return;
    const images = await Promise.all(state.frames.map(async (frame) => {
      const img = new Image();
      img.src = frame.image;
      await img.decode();
      return img;
    }));
    const size = images[0].naturalWidth;
    const canvas = el("canvas", { width: size * images.length, height: size });
    const ctx = canvas.getContext("2d");
    images.forEach((img, i) => ctx.drawImage(img, i * size, 0));
    canvas.toBlob((blob) => {
      const url = URL.createObjectURL(blob);
      download(url, `${state.framesName}.png`);
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    }, "image/png");
  }

  // --- export / import ----------------------------------------------------------------------

  function exportJson() {
    const data = {
      format: "kanime-character",
      version: 1,
      noise: state.current.vector,
      noise_seed: state.current.noiseSeed,
      origin: state.current.origin,
      perturbations: state.current.perturbs,
      options: readOptions(),
      count: clampInt($("count").value, 1, state.vocab.limits.max_images, 1),
    };
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    download(url, "kanime-character.json");
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setStatus("Exported the noise and the options.");
  }

  function importJson(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch (error) {
      throw new Error(`The file is not JSON: ${error.message}`);
    }
    if (!data || typeof data !== "object" || Array.isArray(data)) {
      throw new Error("The file must hold a JSON object exported by this page.");
    }
    const messages = [];
    if (data.options !== undefined) {
      if (!data.options || typeof data.options !== "object") throw new Error("`options` must be an object.");
      const ignored = writeOptions(data.options);
      if (ignored.length) messages.push(`ignored options: ${ignored.join(", ")}`);
    }
    if (data.noise !== undefined && data.noise !== null) {
      const n = state.vocab.latent_dim;
      const max = state.vocab.limits.max_noise;
      const good = Array.isArray(data.noise) && data.noise.length === n
        && data.noise.every((x) => typeof x === "number" && Number.isFinite(x) && Math.abs(x) <= max);
      if (!good) throw new Error(`\`noise\` must be a list of ${n} numbers in [-${max}, ${max}].`);
      const seed = Number.isSafeInteger(data.noise_seed) && data.noise_seed >= 0 ? data.noise_seed : null;
      setCurrent({
        vector: data.noise, noiseSeed: null,
        origin: typeof data.origin === "string" ? data.origin : seed !== null ? `seed ${seed}` : "imported noise",
        perturbs: Number.isSafeInteger(data.perturbations) ? data.perturbations : 0,
      });
      $("lock").checked = true;
      showNoise();
    }
    if (Number.isSafeInteger(data.count)) $("count").value = clampInt(data.count, 1, state.vocab.limits.max_images, 1);
    setStatus(`Imported${data.noise ? " the noise (locked) and" : ""} the options${messages.length ? `; ${messages.join("; ")}` : ""}.`);
  }

  // --- start --------------------------------------------------------------------------------

  async function start() {
    try {
      state.vocab = await api("/api/vocabulary");
    } catch (error) {
      $("model-info").textContent = `Could not load the generator: ${error.message}`;
      return;
    }
    const vocab = state.vocab;
    $("model-info").textContent = `${vocab.resolution}x${vocab.resolution} generator, ${vocab.tags.length} tags`;
    buildControls(vocab);
    setAll("random", "off");
    $("count").max = String(vocab.limits.max_images);
    $("frames").max = String(vocab.limits.max_frames);
    $("generate").addEventListener("click", generate);
    $("reroll").addEventListener("click", reroll);
    $("perturb").addEventListener("click", perturb);
    $("lock").addEventListener("change", showNoise);
    $("strength").addEventListener("input", () => { $("strength-value").textContent = $("strength").value; });
    $("all-random").addEventListener("click", () => setAll("random", "random"));
    $("all-off").addEventListener("click", () => setAll("none", "off"));
    $("export").addEventListener("click", exportJson);
    $("import").addEventListener("click", () => $("import-file").click());
    $("import-file").addEventListener("change", async () => {
      const file = $("import-file").files[0];
      $("import-file").value = "";
      if (!file) return;
      try {
        importJson(await file.text());
      } catch (error) {
        setStatus(error.message, "error");
      }
    });
    $("morph").addEventListener("click", morph);
    $("play").addEventListener("click", play);
    $("scrub").addEventListener("input", () => { stop(); showFrame(Number($("scrub").value)); });
    $("save-strip").addEventListener("click", saveStrip);
    $("save-frame").addEventListener("click", () => {
      const frame = state.frames[state.frameIndex];
      if (frame) download(frame.image, `${state.framesName}-${state.frameIndex}.png`);
    });
    $("clear-history").addEventListener("click", () => { state.history = []; renderHistory(); });
    document.addEventListener("keydown", (event) => {
      const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
      if (event.key === "g" && !typing && !event.ctrlKey && !event.metaKey) generate();
    });
    document.body.dataset.ready = "true";
    showNoise();
  }

  start();
})();
