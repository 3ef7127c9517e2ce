// The page with JavaScript: the input for the chosen model's kind (photos, audio clips and
// recording, a text, features), uploads to /api/classify, no reloads; each card's "Why?"
// asks /api/explain and shows the answer (a heatmap over a photo, shaded words, a strip
// under a clip, a bar per feature).
// Without this file the form posts to / and the server renders the same cards.
// Data from the server or the user goes into the page as textContent or attributes, never
// as HTML: a class named "<script>" is just text.
"use strict";

document.documentElement.classList.replace("no-js", "js");

const HEALTH_POLL_MS = 3000;
const MAX_RECORD_SECONDS = 30;
const TITLE_CHARS = 60;
// What a card calls its input, by the form field it is sent in.
const NOUNS = { images: "photo", clips: "clip", text: "text", features: "input" };
const PANELS = ["image", "audio", "text", "features", "tensor"];
// The heatmap's largest side in canvas pixels: the photo's shape, not its size, matters.
const HEATMAP_SIDE = 640;
// Red where hiding a part lowers the score, blue where it raises it (as in app.css).
const LOWERS_RGB = [214, 39, 40];
const RAISES_RGB = [31, 119, 180];
const HEATMAP_ALPHA = 200; // of 255, for the strongest part: the photo stays visible

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  const modelSelect = document.getElementById("model");
  const heading = document.getElementById("heading");
  const classifyButton = document.getElementById("classify-button");
  const textBox = document.getElementById("text");
  const featureBox = document.getElementById("features");
  const tensorName = document.getElementById("tensor-name");
  const recordButton = document.getElementById("record");
  const recordLabel = document.getElementById("record-label");
  const recordStatus = document.getElementById("record-status");
  const formError = document.getElementById("form-error");
  const results = document.getElementById("results");
  const cards = document.getElementById("cards");
  const status = document.getElementById("status");
  const banner = document.getElementById("banner");
  const bannerText = document.getElementById("banner-text");
  const cardTemplate = document.getElementById("card-template");
  const predictionTemplate = document.getElementById("prediction-template");
  const featureTemplate = document.getElementById("feature-template");
  if (!form || !window.fetch || !window.FormData || !cardTemplate) return;

  const maxBytes = Number(form.dataset.maxBytes);
  const maxFiles = Number(form.dataset.maxFiles);
  let panel = "image";
  let last = null; // the last inputs classified, {panel, again}: sent again on a model change
  let previewUrls = [];
  let upload = 0; // answers to an upload that a newer one replaced are dropped
  let healthTimer = 0;
  let recording = null;
  let whyPanels = 0; // each "Why?" panel gets an id of its own, for aria-controls

  for (const [zoneId, inputId] of [
    ["dropzone", "images"],
    ["clip-dropzone", "clips"],
  ]) {
    dropZone(document.getElementById(zoneId), document.getElementById(inputId));
  }
  // A file dropped beside a zone would otherwise replace the page.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (panel === "text") classifyText(textBox.value);
    else if (panel === "features") classifyFeatures();
  });
  textBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit(classifyButton);
    }
  });
  if (modelSelect) {
    modelSelect.addEventListener("change", () => {
      showPanel();
      if (last && last.panel === panel) last.again();
    });
  }
  setUpRecording();
  showPanel();
  if (!banner.hidden) healthTimer = setTimeout(checkHealth, HEALTH_POLL_MS);

  // The drop zone is its picker's button: focusable, and Enter or Space opens the picker.
  function dropZone(zone, input) {
    zone.setAttribute("role", "button");
    zone.setAttribute("aria-labelledby", `${zone.id}-title`);
    zone.setAttribute("aria-describedby", `${zone.id}-hint`);
    zone.tabIndex = 0;
    input.tabIndex = -1;
    input.required = false;
    zone.addEventListener("click", (event) => {
      if (event.target !== input) input.click();
    });
    zone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        input.click();
      }
    });
    input.addEventListener("change", () => {
      const files = Array.from(input.files);
      input.value = ""; // so that choosing the same file again is a change too
      classifyFiles(files, input.name);
    });
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    }
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
    });
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      classifyFiles(Array.from(event.dataTransfer.files), input.name);
    });
  }

  // Shows the input the chosen model takes; a model whose kind is not known yet gets photos.
  function showPanel() {
    const option = modelSelect ? modelSelect.selectedOptions[0] : null;
    const source = option ? option.dataset : form.dataset;
    const kind = source.kind || "image";
    panel = PANELS.includes(kind) ? kind : "image";
    for (const element of form.querySelectorAll("[data-panel]")) {
      const shown = element.dataset.panel === panel;
      element.hidden = !shown;
      if (element.tagName === "FIELDSET") element.disabled = !shown;
      if (shown) heading.textContent = element.dataset.heading;
    }
    classifyButton.hidden = panel !== "text" && panel !== "features";
    if (panel === "features") featureFields(JSON.parse(source.features || "[]"));
    if (panel === "tensor" && modelSelect) tensorName.textContent = modelSelect.value;
    if (panel !== "audio" && recording) stopRecording(false);
    showFormError("");
  }

  // One field per feature, in the model's order; values typed for a name are kept.
  function featureFields(names) {
    const typed = new Map(
      Array.from(featureBox.querySelectorAll("input"), (i) => [i.name, i.value]),
    );
    const fields = names.map((name, i) => {
      const field = featureTemplate.content.firstElementChild.cloneNode(true);
      const label = slot(field, "label");
      const input = slot(field, "input");
      label.textContent = name;
      label.htmlFor = input.id = `feature-${i + 1}`;
      input.name = `feature.${name}`;
      input.value = typed.get(input.name) || "";
      return field;
    });
    featureBox.replaceChildren(...fields);
  }

  function classifyFiles(files, field) {
    if (!files.length) return;
    const noun = NOUNS[field];
    showFormError("");
    if (files.length > maxFiles) {
      showFormError(`Choose at most ${maxFiles} ${noun}s at a time.`);
      return;
    }
    const total = files.reduce((sum, file) => sum + file.size, 0);
    if (total > maxBytes) {
      showFormError(
        `These ${noun}s are ${formatMiB(total)} in all, over the limit of ` +
          `${form.dataset.maxText}: choose fewer or smaller files.`,
      );
      return;
    }
    const body = new FormData();
    for (const file of files) body.append(field, file, file.name);
    const items = files.map((file) => ({
      title: file.name,
      media: fileMedia(file, field),
      parts: [[field, file, file.name]],
    }));
    send(body, items, field, () => classifyFiles(files, field));
  }

  function classifyText(text) {
    if (!text.trim()) {
      showFormError("Type a text to classify.");
      return;
    }
    // As a file part: its bytes are the text's UTF-8, line breaks as typed (a plain form
    // field would have them turned into CRLF).
    const part = ["text", new Blob([text], { type: "text/plain;charset=utf-8" }), "text.txt"];
    const body = new FormData();
    body.append(...part);
    const title = textTitle(text);
    // The title shows a short text whole; a longer one is quoted in full above it.
    const media = title.endsWith("…”") ? { type: "quote", text } : { type: "" };
    send(body, [{ title, media, parts: [part] }], "text", () => classifyText(text));
  }

  function classifyFeatures() {
    const body = new FormData();
    const shown = [];
    const parts = [];
    for (const input of featureBox.querySelectorAll("input")) {
      body.append(input.name, input.value);
      parts.push([input.name, input.value]);
      shown.push(`${input.name.slice("feature.".length)} = ${input.value.trim()}`);
    }
    const media = { type: "quote", text: shown.join(" · ") };
    send(body, [{ title: "Features", media, parts }], "features", classifyFeatures);
  }

  async function send(body, items, field, again) {
    const mine = ++upload;
    const noun = NOUNS[field];
    last = { panel, again };
    showFormError("");
    clearCards();
    const itemCards = items.map(addCard);
    results.hidden = false;
    status.textContent = `Classifying ${plural(items.length, noun)}…`;
    const model = modelSelect ? modelSelect.value : "";
    if (modelSelect) body.append("model", model);
    let response;
    let payload;
    try {
      response = await fetch("/api/classify", {
        method: "POST",
        body,
        headers: { Accept: "application/json" },
      });
      payload = await response.json();
    } catch {
      if (mine !== upload) return;
      for (const card of itemCards) {
        showError(card, "The web app did not answer: check the connection and try again.", "");
      }
      status.textContent = "The upload failed.";
      return;
    }
    if (mine !== upload) return;

    if (!Array.isArray(payload.results)) {
      // The upload as a whole was refused (not readable, too large, a feature not a number).
      const message = payload.error || `The upload failed (HTTP ${response.status}).`;
      for (const card of itemCards) showError(card, message, "");
      status.textContent = message;
      return;
    }
    payload.results.forEach((result, i) => {
      if (!itemCards[i]) return;
      fill(itemCards[i], result);
      if (!result.error) setUpWhy(itemCards[i], items[i], model, result);
    });
    status.textContent = summary(payload.results, noun);
    if (payload.results.some((r) => r.status === 503)) checkHealth();
  }

  function fileMedia(file, field) {
    if (field === "images" && file.type.startsWith("image/")) return { type: "image", file };
    if (field === "clips") return { type: "audio", file };
    return { type: "none" };
  }

  function addCard(item) {
    const card = cardTemplate.content.firstElementChild.cloneNode(true);
    slot(card, "filename").textContent = item.title;
    const media = item.media;
    showMedia(card, media.type);
    if (media.type === "image" || media.type === "audio") {
      const url = URL.createObjectURL(media.file);
      previewUrls.push(url);
      const element = slot(card, media.type === "image" ? "preview" : "audio");
      element.addEventListener("error", () => showMedia(card, "none"), { once: true });
      if (media.type === "image") element.alt = `Preview of ${item.title}`;
      element.src = url;
    } else if (media.type === "quote") {
      slot(card, "quote").textContent = media.text;
    }
    card.setAttribute("aria-busy", "true");
    cards.append(card);
    return card;
  }

  function fill(card, result) {
    if (result.error) {
      showError(card, result.error, result.detail || "");
      return;
    }
    const rows = result.predictions.map((p) => {
      const row = predictionTemplate.content.firstElementChild.cloneNode(true);
      const pct = percent(p.score);
      slot(row, "name").textContent = p.name;
      slot(row, "score").textContent = pct;
      slot(row, "bar").setAttribute("width", pct);
      return row;
    });
    slot(card, "predictions").replaceChildren(...rows);
    slot(card, "model").textContent = result.model_name;
    slot(card, "version").textContent = String(result.model_version);
    slot(card, "elapsed").textContent = milliseconds(result.elapsed_ms);
    card.removeAttribute("aria-busy");
    card.dataset.state = "done";
  }

  // "Why?": a real button that shows and hides its panel; the first opening asks the
  // server why the card's top class, with the same input and model. With two classes or
  // more, a picker in the panel asks about another.
  function setUpWhy(card, item, model, result) {
    const button = slot(card, "why");
    const panel = slot(card, "why-panel");
    const predictions = result.predictions;
    if (!predictions.length) {
      button.hidden = true;
      return;
    }
    panel.id = `why-${++whyPanels}`;
    button.setAttribute("aria-controls", panel.id);
    const choice = document.createElement("select");
    choice.id = `${panel.id}-class`;
    choice.append(
      ...predictions.map((p) => new Option(`${p.name} (${percent(p.score)})`, p.name)),
    );
    if (predictions.length > 1) {
      const label = document.createElement("label");
      label.htmlFor = choice.id;
      label.textContent = "Class to explain";
      const box = slot(card, "why-class-box");
      box.replaceChildren(label, choice);
      box.hidden = false;
    }
    let asked = false;
    const ask = async () => {
      asked = true;
      const shown = await explain(card, item, model, choice.value);
      if (shown !== null) asked = shown;
    };
    choice.addEventListener("change", ask);
    button.addEventListener("click", () => {
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      panel.hidden = !open;
      card.classList.toggle("why-open", open);
      if (open && !asked) ask();
    });
  }

  // Returns whether the explanation is shown (false: the next opening asks again), or
  // null when a later question replaced this one.
  async function explain(card, item, model, className) {
    const mine = (card.whyAsked = (card.whyAsked || 0) + 1);
    const whyStatus = slot(card, "why-status");
    const view = slot(card, "why-view");
    card.dataset.why = "loading";
    view.replaceChildren();
    slot(card, "why-method").textContent = "";
    whyStatus.textContent = `Working out why “${className}”…`;
    const body = new FormData();
    for (const part of item.parts) body.append(...part);
    if (model) body.append("model", model);
    body.append("class", className);
    let response;
    let payload;
    try {
      response = await fetch("/api/explain", {
        method: "POST",
        body,
        headers: { Accept: "application/json" },
      });
      payload = await response.json();
    } catch {
      payload = { error: "The web app did not answer: check the connection and try again." };
    }
    if (mine !== card.whyAsked) return null;
    const result = Array.isArray(payload.results) ? payload.results[0] : null;
    if (!result || result.error) {
      card.dataset.why = "error";
      whyStatus.textContent =
        (result && result.error) || payload.error || `The explanation failed (HTTP ${response.status}).`;
      return false;
    }
    showExplanation(card, item, result);
    return true;
  }

  function showExplanation(card, item, result) {
    const parts = result.parts;
    const scale = Math.max(1e-6, ...parts.map((p) => Math.abs(p.weight)));
    const view = slot(card, "why-view");
    const what = {
      image: "part of the photo",
      text: "word",
      audio: "stretch of the clip",
      features: "feature",
    }[result.kind] || "part";
    slot(card, "why-status").textContent =
      `Why “${result.explained.name}” (${percent(result.explained.score)}): ` +
      `how much hiding each ${what} lowers its score.`;
    const shown = [];
    if (result.kind === "image") shown.push(heatmap(card, item, result, scale));
    else if (result.kind === "text") shown.push(shadedWords(parts, scale));
    else if (result.kind === "audio") shown.push(...strip(parts, scale));
    else shown.push(featureBars(parts, scale));
    view.replaceChildren(...shown, legend(scale));
    const took = `took ${milliseconds(result.elapsed_ms)}`;
    slot(card, "why-method").textContent = result.method ? `${result.method} · ${took}` : took;
    card.dataset.why = "done";
  }

  // The grid of weights drawn smooth, the photo's shape, over the preview (the canvas
  // sits in the preview's place and is fitted like it, so they line up at any size).
  function heatmap(card, item, result, scale) {
    const { rows, columns } = result.grid;
    const cells = document.createElement("canvas");
    cells.width = columns;
    cells.height = rows;
    const cellsContext = cells.getContext("2d");
    const pixels = cellsContext.createImageData(columns, rows);
    let strongest = result.parts[0];
    for (const part of result.parts) {
      const at = (part.row * columns + part.column) * 4;
      pixels.data.set(heatColour(part.weight / scale), at);
      if (part.weight > strongest.weight) strongest = part;
    }
    cellsContext.putImageData(pixels, 0, 0);
    const preview = slot(card, "preview");
    const width = (!preview.hidden && preview.naturalWidth) || columns;
    const height = (!preview.hidden && preview.naturalHeight) || rows;
    const fit = HEATMAP_SIDE / Math.max(width, height);
    const canvas = slot(card, "heatmap");
    canvas.width = Math.max(1, Math.round(width * fit));
    canvas.height = Math.max(1, Math.round(height * fit));
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = "high";
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(cells, 0, 0, canvas.width, canvas.height);
    canvas.setAttribute(
      "aria-label",
      `Heatmap over ${item.title}, ${rows} × ${columns} cells: hiding the cell in row ` +
        `${strongest.row + 1}, column ${strongest.column + 1} lowers the score most ` +
        `(${points(strongest.weight)} points)`,
    );
    canvas.hidden = false;
    const note = document.createElement("p");
    note.className = "why-note";
    note.textContent = `The heatmap over the photo: a grid of ${rows} × ${columns} parts.`;
    return note;
  }

  function shadedWords(parts, scale) {
    const words = document.createElement("p");
    words.className = "why-words";
    parts.forEach((part, i) => {
      const word = weighted("span", part.weight, scale, part.word);
      word.className += " why-word";
      word.textContent = part.word;
      word.append(hiddenText(` (${points(part.weight)})`));
      words.append(word);
      if (i < parts.length - 1) words.append(" ");
    });
    return words;
  }

  // One cell per window, as wide as the window is long, under the player.
  function strip(parts, scale) {
    const cells = document.createElement("ol");
    cells.className = "why-strip";
    cells.setAttribute("aria-label", "The clip, window by window");
    for (const part of parts) {
      const span = `${seconds(part.start)}–${seconds(part.end)} s`;
      const cell = weighted("li", part.weight, scale, span);
      cell.className += " why-cell";
      cell.style.setProperty("flex-grow", String(Math.max(part.end - part.start, 0.001)));
      cell.append(hiddenText(`${span}: ${points(part.weight)} points`));
      cells.append(cell);
    }
    const axis = document.createElement("p");
    axis.className = "why-axis";
    axis.setAttribute("aria-hidden", "true");
    const first = parts.length ? parts[0].start : 0;
    const last = parts.length ? parts[parts.length - 1].end : 0;
    for (const text of [`${seconds(first)} s`, `${seconds(last)} s`]) {
      const tick = document.createElement("span");
      tick.textContent = text;
      axis.append(tick);
    }
    return [cells, axis];
  }

  function featureBars(parts, scale) {
    const list = document.createElement("ul");
    list.className = "why-features";
    for (const part of parts) {
      const row = document.createElement("li");
      const name = document.createElement("span");
      name.className = "why-feature-name";
      name.textContent = part.name;
      const track = document.createElement("span");
      track.className = "why-track";
      track.setAttribute("aria-hidden", "true");
      const fill = weighted("span", part.weight, scale, part.name);
      fill.className += " why-fill";
      track.append(fill);
      const value = document.createElement("span");
      value.className = "why-value";
      value.textContent = points(part.weight);
      row.append(name, track, value);
      list.append(row);
    }
    return list;
  }

  // Blue, clear, red: what the colours mean, with the strongest weight as the scale.
  function legend(scale) {
    const box = document.createElement("div");
    box.className = "why-legend";
    const bar = document.createElement("span");
    bar.className = "why-legend-bar";
    bar.setAttribute("aria-hidden", "true");
    const labels = document.createElement("span");
    labels.className = "why-legend-labels";
    const most = (scale * 100).toFixed(1);
    for (const text of [`−${most}`, "0", `+${most}`]) {
      const label = document.createElement("span");
      label.textContent = text;
      labels.append(label);
    }
    const caption = document.createElement("p");
    caption.className = "why-legend-caption";
    caption.textContent =
      "Hiding a part: red lowers the score, blue raises it (in percentage points).";
    box.append(bar, labels, caption);
    return box;
  }

  // An element shaded by its weight: red lowers the score when hidden, blue raises it.
  function weighted(tag, weight, scale, name) {
    const element = document.createElement(tag);
    const strength = Math.min(1, Math.abs(weight) / scale);
    element.className = weight > 0 ? "lowers" : weight < 0 ? "raises" : "neutral";
    element.style.setProperty("--strength", strength.toFixed(3));
    element.title = `${name}: ${effect(weight)}`;
    element.dataset.weight = String(weight);
    return element;
  }

  function hiddenText(text) {
    const span = document.createElement("span");
    span.className = "visually-hidden";
    span.textContent = text;
    return span;
  }

  function showError(card, message, detail) {
    slot(card, "error").textContent = message;
    slot(card, "detail").textContent = detail;
    slot(card, "detail-box").hidden = !detail;
    card.removeAttribute("aria-busy");
    card.dataset.state = "error";
  }

  // type: image, audio, quote, none ("No preview") or "" (no media box at all).
  function showMedia(card, type) {
    card.dataset.media = type;
    slot(card, "preview").hidden = type !== "image";
    slot(card, "audio").hidden = type !== "audio";
    slot(card, "quote").hidden = type !== "quote";
    slot(card, "no-preview").hidden = type !== "none";
  }

  function clearCards() {
    for (const url of previewUrls) URL.revokeObjectURL(url);
    previewUrls = [];
    cards.replaceChildren();
  }

  function showFormError(message) {
    formError.textContent = message;
    formError.hidden = !message;
  }

  // Recording: the microphone through an AudioWorklet, 16-bit mono WAV, sent as a clip.
  // Browsers allow it only on HTTPS pages and on localhost.
  function setUpRecording() {
    const can =
      window.isSecureContext &&
      navigator.mediaDevices &&
      navigator.mediaDevices.getUserMedia &&
      window.AudioContext &&
      window.AudioWorkletNode;
    if (!can) {
      recordStatus.textContent = window.isSecureContext
        ? "This browser cannot record audio here; upload a clip instead."
        : "Recording needs the page on HTTPS (or localhost); upload a clip instead.";
      return;
    }
    recordButton.hidden = false;
    recordButton.addEventListener("click", () => {
      if (recording) stopRecording(true);
      else startRecording();
    });
  }

  async function startRecording() {
    showFormError("");
    recordButton.disabled = true;
    let stream;
    let context;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false },
      });
      context = new AudioContext();
      await context.audioWorklet.addModule(recordButton.dataset.worklet);
    } catch (error) {
      if (stream) for (const track of stream.getTracks()) track.stop();
      if (context) context.close();
      recordButton.disabled = false;
      showFormError(
        error && error.name === "NotAllowedError"
          ? "The browser was not allowed to use the microphone."
          : `The microphone could not be used: ${error && error.message}`,
      );
      return;
    }
    const node = new AudioWorkletNode(context, "pyserving-recorder");
    const chunks = [];
    const done = new Promise((resolve) => {
      node.port.onmessage = (event) => {
        if (event.data === "stopped") resolve();
        else chunks.push(event.data);
      };
    });
    // Connected to the output (it writes silence), so the browser keeps pulling samples.
    context.createMediaStreamSource(stream).connect(node);
    node.connect(context.destination);
    const started = performance.now();
    const timer = setInterval(() => {
      const seconds = (performance.now() - started) / 1000;
      recordStatus.textContent = `Recording… ${Math.floor(seconds)} s of ${MAX_RECORD_SECONDS}`;
      if (seconds >= MAX_RECORD_SECONDS) stopRecording(true);
    }, 250);
    recording = { stream, context, node, chunks, done, timer };
    recordButton.disabled = false;
    recordButton.classList.add("recording");
    recordLabel.textContent = "Stop";
    recordStatus.textContent = `Recording… 0 s of ${MAX_RECORD_SECONDS}`;
  }

  async function stopRecording(classify) {
    const r = recording;
    recording = null;
    clearInterval(r.timer);
    recordButton.classList.remove("recording");
    recordLabel.textContent = "Record";
    for (const track of r.stream.getTracks()) track.stop();
    r.node.port.postMessage("stop");
    await r.done;
    await r.context.close();
    const samples = joined(r.chunks);
    if (!classify) {
      recordStatus.textContent = "";
      return;
    }
    if (!samples.length) {
      recordStatus.textContent = "";
      showFormError("The microphone gave no sound: try again.");
      return;
    }
    const seconds = samples.length / r.context.sampleRate;
    recordStatus.textContent = `Recorded ${seconds.toFixed(1)} s.`;
    const wav = new File([encodeWav(samples, r.context.sampleRate)], "recording.wav", {
      type: "audio/wav",
    });
    classifyFiles([wav], "clips");
  }

  // Asks /healthz; shows why the model server cannot be used, and asks again until it can.
  // When it comes back, the page asks again what each model takes.
  async function checkHealth() {
    clearTimeout(healthTimer);
    const wasDown = !banner.hidden;
    let reason = "";
    try {
      const response = await fetch("/healthz", { cache: "no-store" });
      if (!response.ok) reason = (await response.json()).reason || `HTTP ${response.status}`;
    } catch {
      reason = "The web app is not reachable.";
    }
    bannerText.textContent = reason;
    banner.hidden = !reason;
    if (reason) healthTimer = setTimeout(checkHealth, HEALTH_POLL_MS);
    else if (wasDown) refreshModels();
  }

  async function refreshModels() {
    let models;
    try {
      const response = await fetch("/api/models", { cache: "no-store" });
      models = (await response.json()).models;
    } catch {
      return;
    }
    if (!Array.isArray(models)) return;
    if (!modelSelect) {
      const [model] = models;
      if (model) Object.assign(form.dataset, modelData(model));
    } else {
      for (const model of models) {
        // A version label's choice is "name/label", shown with the version it names.
        const value = model.label ? `${model.name}/${model.label}` : model.name;
        const option = Array.from(modelSelect.options).find((o) => o.value === value);
        if (!option) continue;
        Object.assign(option.dataset, modelData(model));
        option.disabled = model.kind === "tensor";
        const title = model.label ? `${value.replace("/", " · ")} (version ${model.version})` : value;
        option.textContent = title + (option.disabled ? " (not a classifier: use predict)" : "");
      }
    }
    showPanel();
  }

  function modelData(model) {
    return { kind: model.kind || "", features: JSON.stringify(model.features || []) };
  }

  function slot(element, name) {
    return element.querySelector(`[data-slot="${name}"]`);
  }
});

// 16-bit PCM mono WAV of `samples` (floats in [-1, 1]) at `rate` Hz, as an ArrayBuffer.
function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const ascii = (offset, text) => {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  };
  ascii(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // the size of this chunk
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // one channel
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return view.buffer;
}

function joined(chunks) {
  const all = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return all;
}

// A text as a card's title: its start, on one line, in quotes (as the server writes it).
function textTitle(text) {
  let line = text.replace(/\s+/g, " ").trim();
  if (line.length > TITLE_CHARS) line = `${line.slice(0, TITLE_CHARS - 1).trimEnd()}…`;
  return `“${line}”`;
}

// A weight (a change in probability) in percentage points, signed: "+12.3", "−0.4".
function points(weight) {
  const value = weight * 100;
  const sign = value >= 0.05 ? "+" : value <= -0.05 ? "−" : "";
  return `${sign}${Math.abs(value).toFixed(1)}`;
}

function effect(weight) {
  if (Math.abs(weight * 100) < 0.05) return "hiding it changes the score by less than 0.1 points";
  const verb = weight > 0 ? "lowers" : "raises";
  return `hiding it ${verb} the score by ${Math.abs(weight * 100).toFixed(1)} points`;
}

// RGBA for a weight scaled to [-1, 1]: clear at 0, red or blue as it grows.
function heatColour(scaled) {
  const [r, g, b] = scaled >= 0 ? LOWERS_RGB : RAISES_RGB;
  return [r, g, b, Math.round(Math.min(1, Math.abs(scaled)) * HEATMAP_ALPHA)];
}

function seconds(value) {
  return value.toFixed(value < 10 ? 2 : 1).replace(/\.?0+$/, "") || "0";
}

function percent(score) {
  return `${Math.min(Math.max(score * 100, 0), 100).toFixed(1)}%`;
}

function milliseconds(value) {
  return `${value >= 10 ? value.toFixed(0) : value.toFixed(1)} ms`;
}

function formatMiB(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function summary(results, noun) {
  const failed = results.filter((r) => r.error).length;
  const done = results.length - failed;
  if (!failed) return `Classified ${plural(done, noun)}.`;
  if (!done) {
    return results.length === 1
      ? `The ${noun} could not be classified.`
      : `None of the ${results.length} ${noun}s could be classified.`;
  }
  return `Classified ${done} of ${results.length} ${noun}s; ${failed} could not be classified.`;
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
