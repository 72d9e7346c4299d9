// The siamgan page: uploads photos one by one, polls their progress, compares and downloads.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const cards = new Map();   // job id -> card element
const waiting = [];        // [file, card, settings] not uploaded yet
let config = {styles: [], max_upload_bytes: Infinity};
let uploading = false;
let timer = null;

async function init() {
  config = await (await fetch("/api/config")).json();
  const select = $("#style");
  for (const style of config.styles) {
    select.add(new Option(style.name, style.name));
  }
  if (!config.styles.length) {
    select.add(new Option("no styles found", ""));
    select.disabled = true;
  }
  select.addEventListener("change", styleDefaults);
  styleDefaults();
  for (const id of ["scale", "palette", "detail"]) {
    $("#" + id).addEventListener("input", () => showValue(id));
  }
  showValue("scale");
  const files = $("#files");
  files.addEventListener("change", () => { add(files.files); files.value = ""; });
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    add(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter") files.click(); });
  await poll();  // photos of this session, if the page was reloaded
  document.body.dataset.ready = Math.round(performance.now());  // ms, for timing
}

function currentStyle() {
  return config.styles.find((s) => s.name === $("#style").value);
}

function styleDefaults() {
  const style = currentStyle();
  const palette = $("#palette");
  palette.disabled = !style || style.palette === null;
  palette.value = style && style.palette !== null ? style.palette : 0;
  $("#detail").value = style ? style.detail : 0.5;
  showValue("palette");
  showValue("detail");
}

function showValue(id) {
  const input = $("#" + id);
  $(`#${id}-out`).textContent = input.disabled ? "none in this style" : input.value;
}

function settings() {
  const values = {style: $("#style").value, scale: $("#scale").value,
                  detail: $("#detail").value, format: $("#format").value};
  if (!$("#palette").disabled) values.palette = $("#palette").value;
  return values;
}

function add(files) {
  for (const file of files) {
    const card = newCard(file.name);
    if (file.size > config.max_upload_bytes) {
      const mb = (n) => Number((n / 2 ** 20).toPrecision(3));
      fail(card, `${file.name} is ${mb(file.size)} MB, more than the ` +
        `${mb(config.max_upload_bytes)} MB limit; start ` +
        "`siamgan serve --max-upload-mb N` to allow larger files");
      continue;
    }
    waiting.push([file, card, settings()]);
  }
  upload();
}

async function upload() {
  if (uploading) return;
  uploading = true;
  while (waiting.length) {
    const [file, card, values] = waiting.shift();
    const query = new URLSearchParams({name: file.name, ...values});
    try {
      const response = await fetch("/api/jobs?" + query, {method: "POST", body: file});
      const data = await response.json();
      if (!response.ok) {
        fail(card, data.error);
        continue;
      }
      cards.set(data.id, card);
      update(card, data);
    } catch (e) {
      fail(card, `${file.name}: upload failed (${e.message})`);
    }
    schedule();
  }
  uploading = false;
}

function newCard(name) {
  const card = $("#card").content.firstElementChild.cloneNode(true);
  $(".name", card).textContent = name;
  $(".status", card).textContent = "uploading…";
  $(".remove", card).addEventListener("click", () => remove(card));
  $("#photos").prepend(card);
  return card;
}

function fail(card, message) {
  card.dataset.state = "failed";
  $(".status", card).textContent = "failed";
  $(".error", card).textContent = message;
}

async function remove(card) {
  const id = card.dataset.id;
  if (id) {
    const response = await fetch("/api/jobs/" + id, {method: "DELETE"});
    if (!response.ok) return;  // being painted: it stays
    cards.delete(id);
  }
  card.remove();
}

function schedule() {
  if (timer === null) timer = setTimeout(poll, 400);
}

async function poll() {
  timer = null;
  let busy = uploading;
  try {
    const {jobs} = await (await fetch("/api/jobs")).json();
    for (const job of jobs) {
      if (!cards.has(job.id)) {
        if (uploading) continue;  // its upload's answer brings its card
        cards.set(job.id, newCard(job.name));
      }
      update(cards.get(job.id), job);
      busy ||= job.state === "queued" || job.state === "running";
    }
  } catch (e) {
    busy = true;  // the server is busy or restarting: try again
  }
  if (busy) schedule();
}

function update(card, job) {
  card.dataset.id = job.id;
  if (card.dataset.state === job.state && job.state !== "running") return;
  card.dataset.state = job.state;
  const status = $(".status", card);
  const bar = $("progress", card);
  if (job.state === "queued") {
    status.textContent = `waiting (${job.style})`;
  } else if (job.state === "running") {
    const done = job.height ? job.rows / job.height : 0;
    bar.value = done;
    status.textContent = job.height ? `painting… ${Math.round(100 * done)} %` : "reading…";
  } else if (job.state === "failed") {
    fail(card, job.error);
  } else if (job.state === "done") {
    status.textContent = `done in ${job.seconds} s (${job.style})`;
    $(".warnings", card).textContent = job.warnings.join("; ");
    showResult(card, job);
  }
}

function showResult(card, job) {
  const compare = $(".compare", card);
  const base = "/api/jobs/" + job.id;
  $(".before", compare).src = base + "/before";
  $(".after", compare).src = base + "/after";
  const link = $(".download", compare);
  link.href = base + "/result";
  link.download = job.output;
  link.textContent = "Download " + job.output;
  const frame = $(".frame", compare);
  const split = $(".split", compare);
  const setSplit = (value) => {
    split.value = value;
    frame.style.setProperty("--split", value + "%");
  };
  split.addEventListener("input", () => setSplit(split.value));
  frame.addEventListener("pointermove", (e) => {
    if (!e.buttons || compare.classList.contains("zoom")) return;
    const box = frame.getBoundingClientRect();
    setSplit(Math.max(0, Math.min(100, (100 * (e.clientX - box.left)) / box.width)));
  });
  const toggle = $(".toggle", compare);
  toggle.addEventListener("click", () => {
    const before = compare.classList.toggle("before-only");
    toggle.textContent = before ? "Show after" : "Show before";
  });
  const zoom = $(".zoom", compare);
  zoom.addEventListener("click", () => {
    const on = compare.classList.toggle("zoom");
    zoom.textContent = on ? "Fit" : "Zoom 100 %";
  });
  compare.hidden = false;
}

init();
