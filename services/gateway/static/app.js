// AI Portraits — the page (#10). Plain ES module, no build step, nothing from other origins.
//
// Flow: choose a photo → POST /v1/portraits (multipart) → live progress from the event stream
// (/v1/portraits/<id>/events; polling GET /v1/portraits/<id> only if the stream fails, and the page says so) →
// the portrait, its style and the reason, a download link, "Delete now" and a countdown to its automatic
// deletion. With consent, the gallery id and withdraw token from the 202 are kept in this tab's sessionStorage
// (gone when the tab closes; a reload keeps them so the owner can still withdraw), never sent anywhere but
// DELETE /v1/gallery/<id>.

const $ = (id) => document.getElementById(id);

const STAGES = [
  ["queued", "Waiting in the queue"],
  ["fetch", "Fetching your photo"],
  ["decode", "Reading your photo"],
  ["detect", "Finding your face"],
  ["frame", "Framing the portrait"],
  ["select", "Choosing a style"],
  ["generate", "Painting"],
  ["finish", "Varnishing and framing"],
];
const STAGE_INDEX = Object.fromEntries(STAGES.map(([name], index) => [name, index]));

const FAMILY_WORDS = { oil: "Oil", watercolor: "Watercolour", ink: "Ink" };

// One human sentence per error code: the gateway's (services/gateway/errors.py CODES) and the jobs' own.
const MESSAGES = {
  bad_request: "Something in that request was not understood. Please reload the page and try again.",
  missing_image: "Please choose a photo first.",
  empty_upload: "That file is empty. Please choose another photo.",
  unknown_style: "That style is not available any more. Please pick another one.",
  invalid_strength: "That strength is not available. Please reload the page and try again.",
  invalid_share: "The gallery choice was not understood. Please reload the page and try again.",
  invalid_callback_url: "The notification address is not a valid web address.",
  callback_url_refused: "The notification address is not allowed.",
  webhooks_disabled: "Notifications are switched off on this server.",
  too_many_fields: "That form had more parts than an upload needs. Please reload the page and try again.",
  not_found: "This portrait no longer exists: it was deleted or it expired.",
  method_not_allowed: "The page asked the server for something it does not do. Please reload the page.",
  upload_timeout: "Your photo took too long to arrive. Please check your connection and try again.",
  too_large: "That file is too large. Please choose a smaller photo.",
  image_too_large: "That photo has too many pixels for us to paint. Please choose a smaller one.",
  uri_too_long: "That address is too long. Please reload the page.",
  unsupported_type: "That file is not a photo we can read. Please use a JPEG, PNG, WebP or HEIC image.",
  corrupt_image: "That photo seems to be damaged or incomplete. Please try another one.",
  image_too_small: "That photo is too small to paint. Please use a larger one (at least 128 pixels on its short side).",
  rate_limited: "You have sent many photos in a short time. Please wait a little and try again.",
  headers_too_large: "Your browser sent too much with the request. Please reload the page.",
  internal_error: "Something went wrong on our side. It has been logged; please try again.",
  not_implemented: "Your browser sent the photo in a way we do not accept. Please try another browser.",
  unavailable: "The studio is busy or briefly unavailable. Please try again in a few seconds.",
  overloaded: "So many portraits are waiting that yours could not be painted before we must delete your photo, so we did not take it.",
  invalid_token: "This withdraw key does not match that gallery portrait.",
  cross_site_request: "Your browser sent this from another website, so we refused it. Please use this page directly.",
  // Jobs that failed (GET /v1/portraits/<id> "error.code").
  no_face: "We could not find a face in this photo. Please try one where your face is clearly visible and turned towards the camera.",
  face_too_small: "Your face is too small in this photo. Please move closer, or crop the photo around your face.",
  source_expired: "Your photo was deleted before it could be painted (we keep it only briefly). Please upload it again.",
  source_unreadable: "Your stored photo could not be read. Please upload it again.",
  timeout: "Painting took too long and was stopped. Please try another photo.",
  worker_lost: "This photo stopped the painter several times. Please try another photo.",
  engine_error: "The painter could not finish this portrait. Please try another photo.",
  models_unavailable: "The painter is not ready yet. Please try again in a minute.",
  device_unavailable: "The painter is not ready yet. Please try again in a minute.",
  network: "We could not reach the server. Please check your connection and try again.",
};

const POLL_MS = 2000;
const STORE_JOB = "portraits.job";          // {id, gallery: gid|null, deletesAt: ms|null}
const STORE_SHARED = "portraits.shared";    // [{id: gid, token}]

const state = {
  file: null,
  previewUrl: null,
  styles: new Map(),   // name → {title, family, description}
  families: new Map(), // family → description of its styles
  job: null,           // {id, gallery, deletesAt}
  source: null,        // EventSource
  pollTimer: null,
  countdownTimer: null,
  stage: "queued",
  galleryCursor: null,
};

// ------------------------------------------------------------------------------------------------ helpers

function message(code, fallback) {
  return MESSAGES[code] || fallback || "Something went wrong. Please try again.";
}

async function apiError(response) {
  let code = "internal_error";
  let text = null;
  try {
    const body = await response.json();
    code = body.error?.code || code;
    text = body.error?.message || null;
  } catch {
    code = response.status >= 500 ? "unavailable" : "bad_request";
  }
  let sentence = message(code, text);
  const retry = Number(response.headers.get("Retry-After"));
  if ((code === "rate_limited" || code === "unavailable" || code === "overloaded") && retry > 0) {
    sentence += ` You can try again in ${retry} second${retry === 1 ? "" : "s"}.`;
  }
  return { code, sentence };
}

function readStore(key, fallback) {
  try {
    const value = sessionStorage.getItem(key);
    return value ? JSON.parse(value) : fallback;
  } catch {
    return fallback; // storage off (private mode): memory only
  }
}

function writeStore(key, value) {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* memory only */
  }
}

function sharedTokens() {
  return readStore(STORE_SHARED, []);
}

function forgetShared(gid) {
  writeStore(STORE_SHARED, sharedTokens().filter((entry) => entry.id !== gid));
}

function show(section) {
  for (const id of ["compose", "progress", "result", "gone"]) $(id).hidden = id !== section;
}

function focusHeading(id) {
  const heading = $(id);
  if (heading) heading.focus({ preventScroll: false });
}

function showError(sentence, { offerRetry = false } = {}) {
  $("error-text").textContent = sentence;
  $("error-again").hidden = !offerRetry;
  $("error").hidden = false;
  $("error").scrollIntoView({ block: "nearest" });
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

function styleTitle(name) {
  return state.styles.get(name)?.title || (name ? name.replace(/-/g, " ") : "");
}

function clock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

function resultTtlMs() {
  const seconds = Number(document.querySelector('meta[name="portraits:result-ttl-seconds"]')?.content);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
}

// --------------------------------------------------------------------------------------------- the form

async function loadStyles() {
  const select = $("style");
  try {
    const response = await fetch("/v1/styles");
    if (!response.ok) return; // "auto" alone still works
    const doc = await response.json();
    const families = document.createElement("optgroup");
    families.label = "A kind of painting";
    for (const family of doc.families) {
      families.append(new Option(`Any ${FAMILY_WORDS[family.name]?.toLowerCase() || family.name} painting`, family.name));
      state.families.set(family.name, family.styles.map((s) => s.title).join(", "));
    }
    select.append(families);
    for (const family of doc.families) {
      const group = document.createElement("optgroup");
      group.label = `${FAMILY_WORDS[family.name] || family.name} styles`;
      for (const style of family.styles) {
        state.styles.set(style.name, style);
        group.append(new Option(style.title, style.name));
      }
      select.append(group);
    }
  } catch {
    /* offline: "auto" alone */
  }
}

function describeStyle() {
  const value = $("style").value;
  const help = $("style-help");
  if (value === "auto") {
    help.textContent = "The painter looks at the light and colours of your photo and picks a style that suits it, and says why.";
  } else if (state.families.has(value)) {
    help.textContent = `The painter picks one of: ${state.families.get(value)}.`;
  } else {
    help.textContent = state.styles.get(value)?.description || "";
  }
}

function choose(file) {
  if (!file) return;
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file); // stays in the browser: blob: is allowed by the CSP's img-src
  const preview = $("preview");
  preview.src = state.previewUrl;
  preview.alt = "The photo you chose";
  preview.hidden = false;
  $("photo-name").textContent = `Chosen: ${file.name}`;
  clearError();
}

function wireDropZone() {
  const drop = $("drop");
  const stop = (event) => {
    event.preventDefault();
    event.stopPropagation();
  };
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      stop(event);
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (event) => {
      stop(event);
      drop.classList.remove("dragging");
    });
  }
  drop.addEventListener("drop", (event) => choose(event.dataTransfer?.files?.[0]));
  // The label opens the file picker on click; Enter/Space reach the (visually hidden) input itself.
  $("photo").addEventListener("change", (event) => choose(event.target.files[0]));
  // A file the browser cannot show (not an image, or HEIC) keeps its name but no broken preview.
  $("preview").addEventListener("error", () => {
    $("preview").hidden = true;
  });
}

async function submit(event) {
  event.preventDefault();
  clearError();
  if (!state.file) {
    showError(message("missing_image"));
    $("photo").focus();
    return;
  }
  const form = new FormData();
  form.append("image", state.file, state.file.name || "photo.jpg");
  form.append("style", $("style").value);
  if ($("share").checked) form.append("share", "true");
  const button = $("submit");
  button.disabled = true;
  button.textContent = "Sending your photo…";
  try {
    const response = await fetch("/v1/portraits", { method: "POST", body: form });
    if (response.status !== 202) {
      showError((await apiError(response)).sentence);
      return;
    }
    const accepted = await response.json();
    const gallery = accepted.gallery || null;
    if (gallery) writeStore(STORE_SHARED, [...sharedTokens(), { id: gallery.id, token: gallery.withdraw_token }]);
    state.job = { id: accepted.id, gallery: gallery ? gallery.id : null, deletesAt: null };
    writeStore(STORE_JOB, state.job);
    startProgress(accepted);
  } catch {
    showError(message("network"));
  } finally {
    button.disabled = false;
    button.textContent = "Paint my portrait";
  }
}

// ------------------------------------------------------------------------------------------------ progress

function startProgress(doc) {
  show("progress");
  $("transport").textContent = "";
  renderProgress(doc);
  focusHeading("progress-title");
  watch(state.job.id);
}

function renderProgress({ status, stage, queue_position: position }) {
  if (status === "queued") state.stage = "queued";
  else if (stage && stage in STAGE_INDEX) state.stage = stage;
  else if (status === "processing" && state.stage === "queued") state.stage = "fetch";
  const current = STAGE_INDEX[state.stage];
  const list = $("stages");
  list.replaceChildren(
    ...STAGES.map(([name, words], index) => {
      const item = document.createElement("li");
      item.textContent = words;
      item.className = index < current ? "done" : index === current ? "current" : "";
      if (index === current) item.setAttribute("aria-current", "step");
      return item;
    }),
  );
  let line = STAGES[current][1] + "…";
  if (state.stage === "queued" && Number.isInteger(position)) {
    line = position === 0 ? "You are next in the queue." :
      `Waiting in the queue: ${position} portrait${position === 1 ? "" : "s"} ahead of you.`;
  }
  $("status-line").textContent = line;
}

function stopWatching() {
  if (state.source) {
    state.source.close();
    state.source = null;
  }
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

function watch(id) {
  stopWatching();
  if (!("EventSource" in window)) {
    fallBackToPolling(id);
    return;
  }
  const source = new EventSource(`/v1/portraits/${encodeURIComponent(id)}/events`);
  state.source = source;
  let failures = 0;
  const parse = (event) => {
    failures = 0;
    try {
      return JSON.parse(event.data || "{}");
    } catch {
      return {};
    }
  };
  source.addEventListener("stage", (event) => renderProgress({ status: "processing", stage: parse(event).stage }));
  source.addEventListener("queue_position", (event) => {
    renderProgress({ status: "queued", queue_position: parse(event).queue_position });
  });
  source.addEventListener("done", (event) => {
    stopWatching();
    finished(parse(event));
  });
  source.addEventListener("failed", (event) => {
    stopWatching();
    failed(parse(event));
  });
  source.addEventListener("deleted", () => {
    stopWatching();
    gone("This portrait was deleted or has expired. Nothing of it is kept.");
  });
  source.addEventListener("error", () => {
    // The browser reconnects by itself (sending Last-Event-ID); a refused stream, or one that keeps failing,
    // is replaced by polling, and the page says so.
    failures += 1;
    if (source.readyState === EventSource.CLOSED || failures >= 3) {
      if (state.source === source) fallBackToPolling(id);
    }
  });
}

function fallBackToPolling(id) {
  stopWatching();
  $("transport").textContent = "Live updates are unavailable, so this page checks for news every 2 seconds.";
  poll(id);
}

async function poll(id) {
  if (!state.job || state.job.id !== id) return;
  let retry = true;
  try {
    const response = await fetch(`/v1/portraits/${encodeURIComponent(id)}`, { cache: "no-store" });
    if (response.status === 404) {
      retry = false;
      gone("This portrait was deleted or has expired. Nothing of it is kept.");
    } else if (response.ok) {
      const doc = await response.json();
      if (doc.status === "done") {
        retry = false;
        finished(doc);
      } else if (doc.status === "failed") {
        retry = false;
        failed(doc);
      } else {
        renderProgress(doc);
      }
    }
  } catch {
    /* a blip: try again */
  }
  if (retry && state.job && state.job.id === id) state.pollTimer = setTimeout(() => poll(id), POLL_MS);
}

function failed(doc) {
  const code = doc.error?.code || "engine_error";
  state.job = null;
  writeStore(STORE_JOB, null);
  show("compose");
  showError(message(code, doc.error?.message), { offerRetry: true });
  $("error-again").focus();
}

// ------------------------------------------------------------------------------------------------ result

function finished(doc) {
  if (!state.job) return;
  if (!state.job.deletesAt) {
    // The janitor deletes the portrait `result_ttl` after it was painted, which was just now; a reload keeps the
    // first estimate. Without the setting, the download link's own expiry (never later than the deletion).
    const ttl = resultTtlMs();
    state.job.deletesAt = ttl ? Date.now() + ttl : Date.parse(doc.expires_at);
    writeStore(STORE_JOB, state.job);
  }
  const title = styleTitle(doc.style);
  const image = $("portrait");
  image.src = doc.result_url;
  image.alt = `Your portrait, painted in the ${title} style`;
  $("style-name").textContent = title;
  $("family-name").textContent = FAMILY_WORDS[doc.family] || doc.family || "";
  const reason = doc.reason || "";
  $("reason").textContent = reason ? reason.charAt(0).toUpperCase() + reason.slice(1).replace(/([^.!?])$/, "$1.") : "";
  const download = $("download");
  download.href = `/portraits/${encodeURIComponent(doc.id)}/download`;
  download.setAttribute("download", `portrait-${doc.style || "painted"}.jpg`);
  const shared = Boolean(state.job.gallery && sharedTokens().some((entry) => entry.id === state.job.gallery));
  $("shared").hidden = !shared;
  $("withdraw").hidden = !shared;
  $("shared-text").textContent = SHARED_TOMORROW;
  show("result");
  tick();
  clearInterval(state.countdownTimer);
  state.countdownTimer = setInterval(tick, 1000);
  focusHeading("result-title");
}

function tick() {
  if (!state.job?.deletesAt) return;
  const left = state.job.deletesAt - Date.now();
  if (left <= 0) {
    gone("Your portrait was deleted automatically, as promised. Nothing of it is kept.");
    return;
  }
  $("countdown").textContent = clock(left);
  const at = new Date(state.job.deletesAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  $("countdown-at").textContent = `(at ${at})`;
}

async function deleteNow() {
  if (!state.job) return;
  const button = $("delete");
  button.disabled = true;
  try {
    const response = await fetch(`/v1/portraits/${encodeURIComponent(state.job.id)}`, { method: "DELETE" });
    // 200 instead of 204 when a shared portrait's gallery copy stays (#25): `gone` says so from what the tab knows.
    if (response.ok || response.status === 404) {
      gone("Your portrait is deleted. Your photo was deleted before that. Nothing of them is kept.");
    } else {
      showError((await apiError(response)).sentence);
    }
  } catch {
    showError(message("network"));
  } finally {
    button.disabled = false;
  }
}

function gone(text) {
  stopWatching();
  clearInterval(state.countdownTimer);
  const galleryNote = state.job?.gallery && sharedTokens().some((e) => e.id === state.job.gallery)
    ? " Its copy in the public gallery stays until you withdraw it (see the gallery below) or it expires." : "";
  state.job = null;
  writeStore(STORE_JOB, null);
  $("portrait").removeAttribute("src");
  $("gone-text").textContent = text + galleryNote;
  show("gone");
  focusHeading("gone-title");
}

async function withdraw(gid, button) {
  const entry = sharedTokens().find((e) => e.id === gid);
  if (!entry) return;
  button.disabled = true;
  try {
    const response = await fetch(`/v1/gallery/${encodeURIComponent(gid)}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${entry.token}` },
    });
    if (response.status === 204 || response.status === 404) {
      forgetShared(gid);
      if (state.job?.gallery === gid) {
        $("shared-text").textContent = "Withdrawn: your portrait is no longer in the gallery.";
        $("withdraw").hidden = true;
      }
      $("gallery-status").textContent = "Your portrait was withdrawn from the gallery.";
      await loadGallery(true);
    } else {
      showError((await apiError(response)).sentence);
    }
  } catch {
    showError(message("network"));
  } finally {
    button.disabled = false;
  }
}

function reset() {
  stopWatching();
  clearInterval(state.countdownTimer);
  clearError();
  state.job = null;
  writeStore(STORE_JOB, null);
  state.file = null;
  $("upload").reset();
  $("preview").hidden = true;
  $("preview").removeAttribute("src");
  $("photo-name").textContent = "";
  describeStyle();
  show("compose");
  $("photo").focus();
}

// ------------------------------------------------------------------------------------------------ gallery

// A day's shared portraits join the gallery together after midnight UTC, so none can be matched with the moment
// its painting finished (#25): the page says when to look, instead of looking for it now.
const SHARED_TOMORROW = "Your portrait joins the public gallery tomorrow (after midnight UTC), together with "
  + "every portrait shared today and in no particular order.";
const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });

function galleryItem(item, mine) {
  const li = document.createElement("li");
  li.dataset.id = item.id;
  const figure = document.createElement("figure");
  const image = document.createElement("img");
  image.src = item.image_url;
  image.loading = "lazy";
  image.alt = `A portrait in the ${styleTitle(item.style)} style`;
  const caption = document.createElement("figcaption");
  const style = document.createElement("span");
  style.textContent = `${styleTitle(item.style)}${item.family ? ` · ${FAMILY_WORDS[item.family] || item.family}` : ""}`;
  const day = document.createElement("span");
  day.className = "day";
  const date = new Date(`${item.day}T00:00:00Z`);
  day.textContent = Number.isNaN(date.getTime()) ? item.day : dayFormat.format(date);
  caption.append(style, day);
  figure.append(image, caption);
  li.append(figure);
  if (mine) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "quiet mine";
    button.textContent = "Withdraw mine";
    button.addEventListener("click", () => withdraw(item.id, button));
    li.append(button);
  }
  return li;
}

async function loadGallery(reset = false) {
  const status = $("gallery-status");
  const list = $("gallery-items");
  const more = $("gallery-more");
  if (reset) state.galleryCursor = null;
  const query = new URLSearchParams({ limit: "12" });
  if (state.galleryCursor) query.set("cursor", state.galleryCursor);
  try {
    const response = await fetch(`/v1/gallery?${query}`, { cache: "no-store" });
    if (response.status === 404) {
      status.textContent = "The gallery is not open yet.";
      more.hidden = true;
      return;
    }
    if (!response.ok) {
      status.textContent = (await apiError(response)).sentence;
      return;
    }
    const page = await response.json();
    const mine = new Set(sharedTokens().map((entry) => entry.id));
    const items = page.items.map((item) => galleryItem(item, mine.has(item.id)));
    if (reset) list.replaceChildren(...items);
    else list.append(...items);
    state.galleryCursor = page.next_cursor;
    more.hidden = !page.next_cursor;
    if (!list.children.length) status.textContent = "No portraits have been shared yet.";
    else if (status.textContent === "No portraits have been shared yet.") status.textContent = "";
  } catch {
    status.textContent = message("network");
  }
}

// ------------------------------------------------------------------------------------------------ start

async function resume() {
  // A reload during or after a painting picks it up again (this tab only).
  const saved = readStore(STORE_JOB, null);
  if (!saved?.id) return;
  state.job = saved;
  try {
    const response = await fetch(`/v1/portraits/${encodeURIComponent(saved.id)}`, { cache: "no-store" });
    if (!response.ok) {
      state.job = null;
      writeStore(STORE_JOB, null);
      return;
    }
    const doc = await response.json();
    if (doc.status === "done") finished(doc);
    else if (doc.status === "failed") failed(doc);
    else startProgress(doc);
  } catch {
    state.job = null;
  }
}

async function main() {
  wireDropZone();
  $("upload").addEventListener("submit", submit);
  $("style").addEventListener("change", describeStyle);
  $("delete").addEventListener("click", deleteNow);
  $("withdraw").addEventListener("click", (event) => withdraw(state.job?.gallery, event.currentTarget));
  for (const id of ["again", "again-gone", "error-again"]) $(id).addEventListener("click", reset);
  $("gallery-more").addEventListener("click", () => loadGallery(false));
  await loadStyles();
  await resume();
  await loadGallery(true);
}

main();
