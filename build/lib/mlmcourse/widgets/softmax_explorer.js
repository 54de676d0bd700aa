// SoftmaxExplorer front end: drag the logits z_j and the temperature T, watch
// Pr_i(. | x̄) = softmax(z / T), the true token's probability Pr_i(x_i | x̄) and the loss -log of it.
// Everything is computed here, so the explorer also works in the static book with no kernel.

/** softmax(z / T), with the maximum subtracted first (same as mlmcourse.distribution.softmax). */
export function softmax(logits, temperature) {
  const z = logits.map((v) => v / temperature);
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** -log p in nats (the per-token cross-entropy against the one-hot p_i^gold). */
export function tokenLoss(probs, trueIndex) {
  return -Math.log(probs[trueIndex]);
}

function make(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

let counter = 0;

function slider(id, label, value, min, max, step) {
  const row = make("div", { class: "mlm-row" });
  const lab = make("label", { for: id }, label);
  const input = make("input", {
    type: "range", id, min: String(min), max: String(max), step: String(step),
  });
  input.value = String(value);
  const out = make("output", { for: id, class: "mlm-num" }, Number(value).toFixed(2));
  row.append(lab, input, out);
  return { row, input, out };
}

function render({ model, el }) {
  const uid = `mlm-sx-${++counter}`;
  const tokens = model.get("tokens");
  const trueIndex = model.get("true_index");
  const root = make("div", {
    class: "mlm-explorer mlm-softmax-explorer", role: "group", "data-true-index": String(trueIndex),
  });
  root.setAttribute("aria-label", "Softmax explorer: logits, temperature and the loss");
  root.append(make("h4", {}, "Logits z_j → Pr_i(· | x̄) = softmax(z / T)"));

  const logits = model.get("logits");
  const lo = Math.min(-6, Math.floor(Math.min(...logits)));
  const hi = Math.max(6, Math.ceil(Math.max(...logits)));
  const logitSliders = tokens.map((tok, j) => {
    const s = slider(`${uid}-z${j}`, `logit z(${tok})`, logits[j], lo, hi, 0.1);
    s.input.classList.add("mlm-logit");
    s.input.dataset.index = String(j);
    s.input.addEventListener("input", () => {
      const z = model.get("logits").slice();
      z[j] = Number(s.input.value);
      model.set("logits", z);
      model.save_changes();
    });
    root.append(s.row);
    return s;
  });
  const temp = slider(`${uid}-t`, "temperature T", model.get("temperature"), 0.1, 5, 0.05);
  temp.input.classList.add("mlm-temperature");
  temp.input.addEventListener("input", () => {
    model.set("temperature", Number(temp.input.value));
    model.save_changes();
  });
  root.append(temp.row);

  const dist = make("div", { class: "mlm-distribution", role: "list" });
  dist.setAttribute("aria-label", "predicted distribution");
  const bars = tokens.map((tok, j) => {
    const row = make("div", { class: "mlm-row", role: "listitem" });
    if (j === trueIndex) row.classList.add("mlm-true");
    const name = make("span", { class: "mlm-token" }, j === trueIndex ? `${tok} (true)` : tok);
    const track = make("div", { class: "mlm-bar-track" });
    const bar = make("div", { class: "mlm-bar" });
    track.append(bar);
    const out = make("output", { class: "mlm-prob", "data-token": tok });
    row.append(name, track, out);
    dist.append(row);
    return { bar, out };
  });
  root.append(dist);

  const summary = make("div", { class: "mlm-summary", "aria-live": "polite" });
  const pTrue = make("strong", { class: "mlm-true-prob" });
  const loss = make("strong", { class: "mlm-loss" });
  summary.append(
    `Pr_i(x_i | x̄) for the true token “${tokens[trueIndex]}”: `, pTrue,
    make("br"), "Loss −log Pr_i(x_i | x̄) = ", loss, " nats",
  );
  root.append(summary);
  el.append(root);

  function update() {
    const z = model.get("logits");
    const t = model.get("temperature");
    const p = softmax(z, t);
    z.forEach((v, j) => {
      const s = logitSliders[j];
      if (Number(s.input.value) !== v) s.input.value = String(v);
      s.input.dataset.value = String(v); // exact state (the slider snaps to its step)
      s.out.textContent = v.toFixed(2);
    });
    if (Number(temp.input.value) !== t) temp.input.value = String(t);
    temp.input.dataset.value = String(t);
    temp.out.textContent = t.toFixed(2);
    p.forEach((v, j) => {
      bars[j].bar.style.width = `${(100 * v).toFixed(2)}%`;
      bars[j].out.textContent = v.toFixed(3);
    });
    pTrue.textContent = p[trueIndex].toFixed(3);
    loss.textContent = tokenLoss(p, trueIndex).toFixed(3);
  }
  model.on("change:logits", update);
  model.on("change:temperature", update);
  update();
  return () => {
    model.off("change:logits", update);
    model.off("change:temperature", update);
  };
}

export default { render };
