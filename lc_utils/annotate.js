// The annotator's front end: it draws the view Python sends and reports clicks, drags and keys.
// Python turns canvas positions into image pixels, so the same operations run from code.
function render({ model, el }) {
  const set = (name, value) => { model.set(name, value); model.save_changes(); };
  const root = document.createElement("div");
  root.className = "lc-annotator";
  root.tabIndex = 0;
  const bar = document.createElement("div");
  bar.className = "lc-bar";
  const picker = document.createElement("select");
  picker.className = "lc-image";
  const classes = document.createElement("div");
  classes.className = "lc-classes";
  const tools = document.createElement("div");
  tools.className = "lc-tools";
  const button = (text, title, message) => {
    const b = document.createElement("button");
    b.textContent = text;
    b.title = title;
    b.addEventListener("click", () => { model.send(message); root.focus(); });
    tools.appendChild(b);
    return b;
  };
  button("undo", "undo the last change (z)", { type: "undo" });
  button("+", "zoom in (+)", { type: "zoom", factor: 2 });
  button("-", "zoom out (-)", { type: "zoom", factor: 0.5 });
  button("fit", "the whole image (0)", { type: "fit" });
  // live mode: the model's last layer learns from the clicks, after each one or on the l key
  const learnButton = button("learn", "refit the live head on the points now (l)", { type: "learn" });
  learnButton.className = "lc-learn";
  const auto = document.createElement("label");
  auto.className = "lc-auto";
  auto.title = "learn after every click";
  const autoBox = document.createElement("input");
  autoBox.type = "checkbox";
  autoBox.addEventListener("change", () => { set("auto_learn", autoBox.checked); root.focus(); });
  auto.append(autoBox, "learn automatically");
  tools.appendChild(auto);
  const showLive = () => {
    const live = model.get("live_mode");
    learnButton.style.display = live ? "" : "none";
    auto.style.display = live ? "" : "none";
    autoBox.checked = model.get("auto_learn");
  };
  const overlayPicker = document.createElement("select");
  overlayPicker.className = "lc-overlay";
  overlayPicker.title = "drawn over the image";
  tools.appendChild(overlayPicker);
  bar.append(picker, tools);
  const canvas = document.createElement("canvas");
  canvas.className = "lc-canvas";
  const status = document.createElement("div");
  status.className = "lc-status";
  root.append(bar, classes, canvas, status);
  el.appendChild(root);

  const image = new Image();
  const overlay = new Image();
  const draw = () => {
    const [h, w] = model.get("canvas_size");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    if (image.complete && image.naturalWidth) ctx.drawImage(image, 0, 0, w, h);
    if (model.get("overlay") !== "none" && overlay.complete && overlay.naturalWidth) {
      ctx.globalAlpha = 0.45;
      ctx.drawImage(overlay, 0, 0, w, h);
      ctx.globalAlpha = 1;
    }
    const [top, left, vh, vw] = model.get("view");
    const toX = (col) => ((col + 0.5 - left) * w) / vw;
    const toY = (row) => ((row + 0.5 - top) * h) / vh;
    const colours = model.get("classes").map((c) => c.color);
    for (const [row, col] of model.get("suggestions")) {
      ctx.beginPath();
      ctx.setLineDash([3, 3]);
      ctx.arc(toX(col), toY(row), 6, 0, 2 * Math.PI);
      ctx.strokeStyle = "white";
      ctx.lineWidth = 2;
      ctx.stroke();
      ctx.setLineDash([]);
    }
    for (const [row, col, label] of model.get("points")) {
      ctx.beginPath();
      ctx.arc(toX(col), toY(row), 5, 0, 2 * Math.PI);
      ctx.fillStyle = colours[label] || "magenta";
      ctx.fill();
      ctx.strokeStyle = "black";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  };
  image.onload = draw;
  overlay.onload = draw;

  const showClasses = () => {
    classes.replaceChildren();
    model.get("classes").forEach((c, i) => {
      const b = document.createElement("button");
      b.className = "lc-class" + (i === model.get("active_class") ? " lc-active" : "");
      b.dataset.index = String(i);
      const swatch = document.createElement("span");
      swatch.className = "lc-swatch";
      swatch.style.background = c.color;
      b.append(swatch, `${i + 1} ${c.name}`);
      b.addEventListener("click", () => { set("active_class", i); root.focus(); });
      classes.appendChild(b);
    });
  };
  const showImages = () => {
    picker.replaceChildren();
    model.get("image_ids").forEach((id, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = id;
      picker.appendChild(option);
    });
    picker.value = String(model.get("image_index"));
  };
  picker.addEventListener("change", () => set("image_index", Number(picker.value)));
  overlayPicker.addEventListener("change", () => set("overlay", overlayPicker.value));
  const showOverlays = () => {
    overlayPicker.replaceChildren();
    for (const name of ["none", ...model.get("overlays")]) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name === "none" ? "no overlay" : name;
      overlayPicker.appendChild(option);
    }
    overlayPicker.value = model.get("overlay");
    overlayPicker.style.display = model.get("overlays").length ? "" : "none";
  };

  // a press and release within a few pixels is a click; more is a drag that pans the view
  let press = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [((event.clientX - box.left) * canvas.width) / box.width,
            ((event.clientY - box.top) * canvas.height) / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => { press = at(event); root.focus(); });
  canvas.addEventListener("pointerup", (event) => {
    if (!press) return;
    const [x, y] = at(event);
    const [dx, dy] = [x - press[0], y - press[1]];
    if (Math.hypot(dx, dy) > 4) model.send({ type: "pan", dx: -dx, dy: -dy });
    else model.send({ type: "click", x: press[0], y: press[1] });
    press = null;
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [x, y] = at(event);
    model.send({ type: "zoom", factor: event.deltaY < 0 ? 1.25 : 0.8, x, y });
  });
  root.addEventListener("keydown", (event) => {
    const step = canvas.width / 4;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (/^[1-9]$/.test(event.key) && Number(event.key) <= model.get("classes").length) {
      set("active_class", Number(event.key) - 1);
    } else if (event.key === "z" || event.key === "Z") {
      model.send({ type: "undo" });
    } else if (event.key === "+" || event.key === "=") {
      model.send({ type: "zoom", factor: 2 });
    } else if (event.key === "-") {
      model.send({ type: "zoom", factor: 0.5 });
    } else if (event.key === "0") {
      model.send({ type: "fit" });
    } else if ((event.key === "l" || event.key === "L") && model.get("live_mode")) {
      model.send({ type: "learn" });
    } else if (moves[event.key]) {
      model.send({ type: "pan", dx: moves[event.key][0], dy: moves[event.key][1] });
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  });

  const load = () => { image.src = model.get("image_url"); };
  const loadOverlay = () => { overlay.src = model.get("overlay_url"); draw(); };
  const showStatus = () => {
    status.textContent = model.get("status");
    status.classList.toggle("lc-error", model.get("status").startsWith("error"));
  };
  model.on("change:image_url", load);
  model.on("change:overlay_url", loadOverlay);
  model.on("change:points", draw);
  model.on("change:suggestions", draw);
  model.on("change:overlay", () => { overlayPicker.value = model.get("overlay"); draw(); });
  model.on("change:overlays", showOverlays);
  model.on("change:active_class", showClasses);
  model.on("change:classes", showClasses);
  model.on("change:image_ids", showImages);
  model.on("change:image_index", showImages);
  model.on("change:status", showStatus);
  model.on("change:live_mode", showLive);
  model.on("change:auto_learn", showLive);
  showClasses();
  showImages();
  showStatus();
  showOverlays();
  showLive();
  load();
  loadOverlay();
}
export default { render };
