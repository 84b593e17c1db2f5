// daskstyle view: polls status.json, shows the chosen level (or the painting) as Deep Zoom
// tiles in OpenSeadragon, draws the loss, lists the previews. Same-origin requests carry
// the cookie the first page set, so no URL here holds the token.
"use strict";

const POLL_MS = 3000;
const viewer = OpenSeadragon({
  id: "viewer",
  prefixUrl: "static/images/",
  drawer: "canvas",
  showNavigator: true,
  maxZoomPixelRatio: 8,
  imageSmoothingEnabled: false,
  crossOriginPolicy: false,
  animationTime: 0.4,
});
const shown = { name: null, version: null, width: 0, height: 0 };
let chosen = null; // the image the user picked; null: follow the newest

function imageUrl(image) {
  return `${image.name}.dzi?v=${encodeURIComponent(image.version)}`;
}

function show(image) {
  const sameShape = shown.name === image.name && shown.width === image.width && shown.height === image.height;
  if (sameShape && shown.version === image.version) return;
  const old = viewer.world.getItemCount() ? viewer.world.getItemAt(0) : null;
  Object.assign(shown, image);
  if (!sameShape || !old) {
    viewer.open(imageUrl(image));
    return;
  }
  // the same level at a later step: load it over the older ones, then let them go
  viewer.addTiledImage({
    tileSource: imageUrl(image),
    success(event) {
      const item = event.item;
      const dropOlder = () => {
        while (viewer.world.getIndexOfItem(item) > 0) viewer.world.removeItem(viewer.world.getItemAt(0));
      };
      if (item.getFullyLoaded()) dropOlder(); else item.addOnceHandler("fully-loaded-change", dropOlder);
    },
  });
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "not known yet";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function progressLine(status) {
  if (status.kind === "painting") {
    const image = status.images[0];
    return `painting, ${image.width}×${image.height} px`;
  }
  if (status.waiting) return "waiting for the run to begin";
  if (status.finished) return `finished: ${status.levels.length} levels`;
  const running = status.levels.filter((level) => level.started && !level.done);
  const level = running.length ? running[0] : status.levels.filter((l) => l.started).pop();
  if (!level) return "starting";
  return `level ${level.level}/${status.levels.length}, ${level.width}×${level.height} px, ` +
    `step ${level.step} of at most ${level.max_iters} · ETA at most ${duration(status.eta_seconds)}`;
}

function buttons(status) {
  const nav = document.getElementById("images");
  nav.replaceChildren(...status.images.map((image) => {
    const button = document.createElement("button");
    button.textContent = image.name === "output" ? "painting" : image.name.replace("level/", "level ");
    button.className = image.name === shown.name ? "shown" : "";
    button.addEventListener("click", () => { chosen = image.name; refresh(); });
    return button;
  }));
}

function previews(status) {
  const box = document.getElementById("previews");
  const figures = (status.levels || []).filter((level) => level.preview).map((level) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `preview/${level.level}.png?v=${encodeURIComponent(level.version)}`;
    img.alt = `preview of level ${level.level}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `level ${level.level}: ${level.width}×${level.height}, ${level.step} steps`;
    figure.append(img, caption);
    figure.addEventListener("click", () => { chosen = `level/${level.level}`; refresh(); });
    return figure;
  });
  box.replaceChildren(...figures);
}

function drawLoss(status) {
  const canvas = document.getElementById("loss");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const rows = (status.loss || []).filter((row) => row[2] !== null && row[2] > 0);
  document.getElementById("loss-note").textContent = rows.length
    ? `${rows.length} steps; last loss ${rows[rows.length - 1][2].toPrecision(4)} (log scale)` : "";
  if (rows.length < 1) return;
  const logs = rows.map((row) => Math.log10(row[2]));
  const low = Math.min(...logs), high = Math.max(...logs) + 1e-9;
  const pad = 8, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  const x = (i) => pad + (rows.length === 1 ? w / 2 : (i * w) / (rows.length - 1));
  const y = (v) => pad + h - ((v - low) / (high - low || 1)) * h;
  const colours = ["#81a2be", "#b5bd68", "#de935f", "#b294bb", "#8abeb7", "#cc6666", "#f0c674"];
  for (let i = 0; i < rows.length; i++) {
    if (i > 0 && rows[i][0] !== rows[i - 1][0]) {
      context.strokeStyle = "#4d5057";
      context.beginPath(); context.moveTo(x(i), pad); context.lineTo(x(i), pad + h); context.stroke();
    }
  }
  context.lineWidth = 1.5;
  let previous = null;
  rows.forEach((row, i) => {
    context.strokeStyle = colours[(row[0] - 1) % colours.length];
    if (previous !== null && rows[i - 1][0] === row[0]) {
      context.beginPath(); context.moveTo(x(i - 1), y(previous)); context.lineTo(x(i), y(logs[i])); context.stroke();
    }
    context.fillStyle = context.strokeStyle;
    context.fillRect(x(i) - 1.5, y(logs[i]) - 1.5, 3, 3);
    previous = logs[i];
  });
}

let latest = null;
function render(status) {
  latest = status;
  document.getElementById("progress").textContent = progressLine(status);
  const images = status.images || [];
  if (images.length) {
    const image = images.find((item) => item.name === chosen) || images[images.length - 1];
    show(image);
  }
  buttons(status);
  previews(status);
  drawLoss(status);
}

function refresh() {
  if (latest) render(latest);
}

async function poll() {
  try {
    const answer = await fetch("status.json", { cache: "no-store" });
    if (answer.ok) render(await answer.json());
    else document.getElementById("progress").textContent = `the viewer answered ${answer.status}`;
  } catch (error) {
    document.getElementById("progress").textContent = "the viewer does not answer (has it stopped?)";
  }
  setTimeout(poll, POLL_MS);
}

window.daskstyleView = { viewer, shown, status: () => latest };
poll();
