// The page with JavaScript: drop zone, previews, uploads to /api/classify, no reloads.
// Without this file the form posts to / and the server renders the same cards.
// Data from the server or the user goes into the page as textContent or attributes, never
// as HTML: a class named "<script>" is just text.
"use strict";

document.documentElement.classList.replace("no-js", "js");

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("images");
  const dropzone = document.getElementById("dropzone");
  const modelSelect = document.getElementById("model");
  const formError = document.getElementById("form-error");
  const results = document.getElementById("results");
  const cards = document.getElementById("cards");
  const status = document.getElementById("status");
  const banner = document.getElementById("banner");
  const bannerText = document.getElementById("banner-text");
  const cardTemplate = document.getElementById("card-template");
  const predictionTemplate = document.getElementById("prediction-template");
  if (!form || !window.fetch || !window.FormData || !cardTemplate) return;

  const maxBytes = Number(form.dataset.maxBytes);
  const maxFiles = Number(form.dataset.maxFiles);
  const HEALTH_POLL_MS = 3000;
  let lastFiles = [];
  let previewUrls = [];
  let upload = 0; // answers to an upload that a newer one replaced are dropped
  let healthTimer = 0;

  // The drop zone is the picker's button: focusable, and Enter or Space opens the picker.
  dropzone.setAttribute("role", "button");
  dropzone.setAttribute("aria-labelledby", "dropzone-title");
  dropzone.setAttribute("aria-describedby", "dropzone-hint");
  dropzone.tabIndex = 0;
  input.tabIndex = -1;
  input.required = false;

  dropzone.addEventListener("click", (event) => {
    if (event.target !== input) input.click();
  });
  dropzone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    const files = Array.from(input.files);
    input.value = ""; // so that choosing the same photo again is a change too
    classify(files);
  });

  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  }
  dropzone.addEventListener("dragleave", (event) => {
    if (!dropzone.contains(event.relatedTarget)) dropzone.classList.remove("dragging");
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    classify(Array.from(event.dataTransfer.files));
  });
  // A photo dropped beside the zone would otherwise replace the page.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (lastFiles.length) classify(lastFiles);
    else input.click();
  });
  if (modelSelect) {
    modelSelect.addEventListener("change", () => {
      if (lastFiles.length) classify(lastFiles);
    });
  }
  if (!banner.hidden) healthTimer = setTimeout(checkHealth, HEALTH_POLL_MS);

  async function classify(files) {
    if (!files.length) return;
    lastFiles = files;
    const mine = ++upload;
    showFormError("");
    if (files.length > maxFiles) {
      showFormError(`Choose at most ${maxFiles} photos at a time.`);
      return;
    }
    const total = files.reduce((sum, file) => sum + file.size, 0);
    if (total > maxBytes) {
      showFormError(
        `These photos are ${formatMiB(total)} in all, over the limit of ` +
          `${form.dataset.maxText}: choose fewer or smaller photos.`,
      );
      return;
    }

    clearCards();
    const fileCards = files.map(addCard);
    results.hidden = false;
    status.textContent = `Classifying ${plural(files.length, "photo")}…`;

    const body = new FormData();
    for (const file of files) body.append("images", file, file.name);
    if (modelSelect) body.append("model", modelSelect.value);
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
      for (const card of fileCards) {
        showError(card, "The web app did not answer: check the connection and try again.", "");
      }
      status.textContent = "The upload failed.";
      return;
    }
    if (mine !== upload) return;

    if (!Array.isArray(payload.results)) {
      // The upload as a whole was refused (not readable, too large).
      const message = payload.error || `The upload failed (HTTP ${response.status}).`;
      for (const card of fileCards) showError(card, message, "");
      status.textContent = message;
      return;
    }
    payload.results.forEach((result, i) => {
      if (fileCards[i]) fill(fileCards[i], result);
    });
    status.textContent = summary(payload.results);
    if (payload.results.some((r) => r.status === 503)) checkHealth();
  }

  function addCard(file) {
    const card = cardTemplate.content.firstElementChild.cloneNode(true);
    slot(card, "filename").textContent = file.name;
    const img = slot(card, "preview");
    img.alt = `Preview of ${file.name}`;
    if (file.type.startsWith("image/")) {
      const url = URL.createObjectURL(file);
      previewUrls.push(url);
      img.addEventListener("error", () => showPreview(card, false), { once: true });
      img.src = url;
      showPreview(card, true);
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

  function showError(card, message, detail) {
    slot(card, "error").textContent = message;
    slot(card, "detail").textContent = detail;
    slot(card, "detail-box").hidden = !detail;
    card.removeAttribute("aria-busy");
    card.dataset.state = "error";
  }

  function showPreview(card, shown) {
    slot(card, "preview").hidden = !shown;
    slot(card, "no-preview").hidden = shown;
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

  // Asks /healthz; shows why the model server cannot be used, and asks again until it can.
  async function checkHealth() {
    clearTimeout(healthTimer);
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
  }

  function slot(element, name) {
    return element.querySelector(`[data-slot="${name}"]`);
  }
});

function percent(score) {
  return `${Math.min(Math.max(score * 100, 0), 100).toFixed(1)}%`;
}

function milliseconds(value) {
  return `${value >= 10 ? value.toFixed(0) : value.toFixed(1)} ms`;
}

function formatMiB(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function summary(results) {
  const failed = results.filter((r) => r.error).length;
  const done = results.length - failed;
  if (!failed) return `Classified ${plural(done, "photo")}.`;
  if (!done) {
    return results.length === 1
      ? "The photo could not be classified."
      : `None of the ${results.length} photos could be classified.`;
  }
  return `Classified ${done} of ${results.length} photos; ${failed} could not be classified.`;
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
