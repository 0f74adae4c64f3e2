// Draw-a-digit page: Pointer Events drawing (mouse, touch, pen), undo/clear, debounced live
// prediction, probability bars, the 28x28 view the model saw, and photo upload. In number
// mode the canvas is wide, /api/read answers, and each digit's box and probability are shown.
// After a digit's answer the user may say it is right or give the right digit (buttons or
// keys 0-9): the 28x28 view, the answer and the label go to /api/feedback.
"use strict";

const canvas = document.getElementById("pad");
const ctx = canvas.getContext("2d");
const $ = (id) => document.getElementById(id);
const strokes = [];  // each stroke: [{x, y}, ...] in canvas pixels; redrawn on undo
let current = null;
let timer = null;
let requestId = 0;
let note = "";  // said after the answer: how an uploaded photo was shrunk
let mode = "digit";  // or "number"
let answered = null;  // the digit answer on screen, which a verdict refers to
const overlay = $("overlay").getContext("2d");
const SIZES = { digit: [280, 280], number: [840, 280] };  // canvas px per mode

// A brush about as thick, relative to the digit, as MNIST's pen: round ends, soft edge.
const BRUSH = { width: 18, blur: 2 };

function resetCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}

function drawStroke(points) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = BRUSH.width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.shadowColor = "#000";
  ctx.shadowBlur = BRUSH.blur;
  ctx.beginPath();
  ctx.moveTo(points[0].x, points[0].y);
  for (const p of points.slice(1)) ctx.lineTo(p.x, p.y);
  if (points.length === 1) ctx.lineTo(points[0].x + 0.1, points[0].y);
  ctx.stroke();
}

function redraw() {
  resetCanvas();
  strokes.forEach(drawStroke);
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  current = [point(event)];
  strokes.push(current);
  redraw();
});

canvas.addEventListener("pointermove", (event) => {
  if (!current) return;
  for (const e of event.getCoalescedEvents ? event.getCoalescedEvents() : [event]) {
    current.push(point(e));
  }
  redraw();
  schedulePrediction(150);
});

function endStroke() {
  if (!current) return;
  current = null;
  schedulePrediction(0);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function undo() {
  strokes.pop();
  redraw();
  strokes.length ? schedulePrediction(0) : showEmpty();
}

function clearAll() {
  strokes.length = 0;
  redraw();
  showEmpty();
}

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape" || event.key === "Delete") {
    clearAll();
  } else if (/^[0-9]$/.test(event.key) && answered && !event.ctrlKey && !event.metaKey) {
    sendVerdict(Number(event.key));
  }
});

function schedulePrediction(delay) {
  clearTimeout(timer);
  timer = setTimeout(() => {
    note = "";
    send(JSON.stringify({ image: canvas.toDataURL("image/png") }), { "Content-Type": "application/json" });
  }, delay);
}

async function send(body, headers) {
  const id = ++requestId;
  try {
    const endpoint = mode === "number" ? "/api/read" : "/api/predict";
    const response = await fetch(endpoint, { method: "POST", body, headers });
    const result = await response.json();
    if (id !== requestId) return;  // a newer drawing is on its way
    if (!response.ok) showError(result.error || response.statusText);
    else mode === "number" ? showNumber(result) : show(result);
  } catch (error) {
    if (id === requestId) showError(String(error));
  }
}

function buildBars() {
  const list = $("bars");
  for (let d = 0; d < 10; d++) {
    const item = document.createElement("li");
    item.innerHTML = `<span class="label">${d}</span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    list.appendChild(item);
  }
}

function setBars(probabilities) {
  const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  [...$("bars").children].forEach((item, d) => {
    const p = probabilities ? probabilities[d] : 0;
    item.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    item.querySelector(".value").textContent = probabilities ? `${(100 * p).toFixed(1)}%` : "";
    item.classList.toggle("top", d === best);
  });
}

function show(result) {
  // Unsure (the runner-up came close, by the model card's margin): say both, "1 or 7?".
  $("digit").textContent = result.unsure ? `${result.digit} or ${result.runner_up}?` : result.digit;
  $("digit").classList.toggle("unsure", Boolean(result.unsure));
  $("confidence").textContent = `${(100 * result.confidence).toFixed(1)}%`;
  $("status").textContent = `answered in ${result.latency_ms.toFixed(1)} ms${note}`;
  $("status").classList.remove("error");
  $("view").src = `data:image/png;base64,${result.view_png}`;
  setBars(result.probabilities);
  answered = result;
  $("verdict").hidden = false;
  $("thanks").textContent = "";
}

// A pseudonymous id, made here and kept in this browser only, so that one person's
// corrections can be counted (and deleted) together; nothing else identifies them.
function clientId() {
  let id = localStorage.getItem("digits-client-id");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("digits-client-id", id);
  }
  return id;
}

async function sendVerdict(label) {
  const result = answered;
  if (!result) return;
  const body = {
    client_id: clientId(), model_version: result.model_version, predicted: result.digit,
    label, probabilities: result.probabilities, view_png: result.view_png,
  };
  try {
    const response = await fetch("/api/feedback", {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
    });
    const reply = await response.json();
    if (answered !== result) return;
    $("thanks").textContent = response.ok ? `Thanks: saved as ${label}.` : reply.error;
    $("thanks").classList.toggle("error", !response.ok);
    if (response.ok) answered = null;  // one verdict per answer
  } catch (error) {
    $("thanks").textContent = String(error);
  }
}

function buildVerdict() {
  $("right").addEventListener("click", () => answered && sendVerdict(answered.digit));
  for (let d = 0; d < 10; d++) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = d;
    button.dataset.label = d;
    button.addEventListener("click", () => sendVerdict(d));
    $("labels").appendChild(button);
  }
}

function clearBoxes() {
  overlay.clearRect(0, 0, overlay.canvas.width, overlay.canvas.height);
  $("digits").replaceChildren();
}

// Each digit's box over the drawing and, under it, the digit with its probability. Boxes
// come in the posted image's pixels: the canvas's own for a drawing.
function showNumber(result) {
  hideVerdict();
  $("digit").textContent = result.number;
  $("digit").classList.toggle("unsure", Boolean(result.unsure));
  $("confidence").textContent = `${(100 * result.confidence).toFixed(1)}%`;
  $("status").textContent = `answered in ${result.latency_ms.toFixed(1)} ms${note}`;
  $("status").classList.remove("error");
  clearBoxes();
  overlay.lineWidth = 2;
  overlay.font = "bold 16px system-ui, sans-serif";
  for (const item of result.digits) {
    const [left, top, right, bottom] = item.box;
    // An unsure digit names its runner-up too, as a lone digit does: "0 or 6?".
    const said = item.unsure ? `${item.digit} or ${item.runner_up}?` : `${item.digit}`;
    overlay.strokeStyle = overlay.fillStyle = item.unsure ? "#c60" : "#2a6";
    overlay.strokeRect(left, top, right - left, bottom - top);
    overlay.fillText(`${said} ${(100 * item.confidence).toFixed(0)}%`, left, Math.max(14, top - 4));
    const entry = document.createElement("li");
    entry.classList.toggle("unsure", Boolean(item.unsure));
    entry.innerHTML = `<b>${said}</b>${(100 * item.confidence).toFixed(1)}%`;
    $("digits").appendChild(entry);
  }
}

function hideVerdict() {
  answered = null;
  $("verdict").hidden = true;
}

function showError(message) {
  hideVerdict();
  clearBoxes();
  $("digit").textContent = "?";
  $("digit").classList.remove("unsure");
  $("confidence").textContent = "";
  $("view").removeAttribute("src");
  $("status").textContent = message;
  $("status").classList.add("error");
  setBars(null);
}

function showEmpty() {
  hideVerdict();
  clearTimeout(timer);
  clearBoxes();
  requestId++;
  $("digit").textContent = "?";
  $("digit").classList.remove("unsure");
  $("confidence").textContent = "";
  $("status").textContent = "Waiting for a digit.";
  $("status").classList.remove("error");
  $("view").removeAttribute("src");
  setBars(null);
}

// A phone photo is 3-12 MB; the server reads 5 MB at most and the model needs a fraction of
// the pixels. Photos longer than this are shrunk here first (EXIF orientation applied).
const UPLOAD_LONG_SIDE = 2000;

async function shrunk(file) {
  if (!file.type.startsWith("image/") || typeof createImageBitmap !== "function") return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (error) {
    return file;  // not decodable here: the server says what is wrong with it
  }
  const scale = UPLOAD_LONG_SIDE / Math.max(bitmap.width, bitmap.height);
  if (scale >= 1) return file;
  const small = document.createElement("canvas");
  small.width = Math.round(bitmap.width * scale);
  small.height = Math.round(bitmap.height * scale);
  small.getContext("2d").drawImage(bitmap, 0, 0, small.width, small.height);
  const blob = await new Promise((resolve) => small.toBlob(resolve, "image/jpeg", 0.92));
  if (!blob) return file;
  note = ` (photo shrunk to ${small.width}×${small.height} px)`;
  return blob;
}

async function upload(file) {
  if (!file) return;
  clearAll();
  note = "";
  const form = new FormData();
  form.append("image", await shrunk(file), file.name);
  send(form, {});
}

$("file").addEventListener("change", (event) => upload(event.target.files[0]));
const drop = $("drop");
["dragenter", "dragover"].forEach((type) =>
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((type) =>
  drop.addEventListener(type, () => drop.classList.remove("over")));
drop.addEventListener("drop", (event) => { event.preventDefault(); upload(event.dataTransfer.files[0]); });

fetch("/api/model").then((r) => r.json()).then((card) => {
  const accuracy = card.test_accuracy ? `, MNIST test accuracy ${(100 * card.test_accuracy).toFixed(2)}%` : "";
  const number = card.store_version == null ? "" : `version ${card.store_version}, `;
  const version = card.model_version ? ` (${number}${card.model_version})` : "";
  $("model").textContent = `model: ${card.model_file || "?"}${version}${accuracy}`;
}).catch(() => {});

function setMode(next) {
  mode = next;
  document.body.classList.toggle("number-mode", mode === "number");
  const [width, height] = SIZES[mode];
  for (const c of [canvas, overlay.canvas]) [c.width, c.height] = [width, height];
  $("digit").textContent = "?";
  document.querySelector("h1").textContent = mode === "number" ? "Write a number" : "Draw a digit";
  $("hint-what").textContent = mode === "number" ? "a number, left to right," : "0–9";
  clearAll();
}
for (const input of document.querySelectorAll('input[name="mode"]')) {
  input.addEventListener("change", () => setMode(input.value));
}

buildBars();
buildVerdict();
resetCanvas();
showEmpty();
