// MaskingSampler front end: pick the fate of every token of x (not selected / [MASK] / random /
// unchanged) with a seeded PRNG, show the corrupted input x̄ and the labels, and count the fates
// over many resamples. mlmcourse/widgets/prng.py implements the same steps, so a kernel user
// sees exactly the same fates for a seed.

export const NOT_SELECTED = 0;
export const MASKED = 1;
export const RANDOM = 2;
export const UNCHANGED = 3;
const FATE_NAMES = ["not selected", "masked", "random", "unchanged"];

/** mulberry32: a small 32-bit PRNG; returns a function giving floats in [0, 1). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a) >>> 0;
    t = ((t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t) >>> 0;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function isSpecial(token) {
  return /^\[[A-Z]+\]$/.test(token);
}

/** Fates of `draws` successive resamples (each a list of fates, one per token), and for each
 *  the replacement-pool index of the random tokens. Every token uses three PRNG draws per
 *  resample (select?, which fate?, which random word?) whatever the probabilities are. */
export function sampleFates(nTokens, special, settings, draws) {
  const next = mulberry32(settings.seed);
  const all = [];
  for (let d = 0; d < draws; d++) {
    const fates = [];
    const picks = [];
    for (let i = 0; i < nTokens; i++) {
      const u = next();
      const v = next();
      const w = next();
      let fate = NOT_SELECTED;
      if (!special[i] && u < settings.mlm_probability) {
        if (v < settings.mask_prob) fate = MASKED;
        else if (v < settings.mask_prob + settings.random_prob) fate = RANDOM;
        else fate = UNCHANGED;
      }
      fates.push(fate);
      picks.push(w);
    }
    all.push({ fates, picks });
  }
  return all;
}

/** x̄ and the labels for one resample; `pool` is the list of possible random replacements. */
export function corrupt(tokens, fates, picks, pool) {
  const corrupted = tokens.map((tok, i) => {
    if (fates[i] === MASKED) return "[MASK]";
    if (fates[i] === RANDOM) return pool[Math.floor(picks[i] * pool.length)];
    return tok;
  });
  const labels = tokens.map((tok, i) => (fates[i] === NOT_SELECTED ? "-100" : tok));
  return { corrupted, labels };
}

function make(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

let counter = 0;
const SLIDERS = [
  ["mlm_probability", "selection probability", 0, 1, 0.01],
  ["mask_prob", "share → [MASK]", 0, 1, 0.05],
  ["random_prob", "share → random word", 0, 1, 0.05],
];

function render({ model, el }) {
  const uid = `mlm-ms-${++counter}`;
  const tokens = model.get("tokens");
  const special = tokens.map(isSpecial);
  const root = make("div", { class: "mlm-explorer mlm-masking-sampler" });
  root.append(make("h4", {}, "Corrupting x into x̄"));
  const inputs = {};
  for (const [key, label, min, max, step] of SLIDERS) {
    const row = make("div", { class: "mlm-row" });
    const id = `${uid}-${key}`;
    const input = make("input", {
      type: "range", id, min: String(min), max: String(max), step: String(step),
      "data-key": key,
    });
    input.value = String(model.get(key));
    const out = make("output", { for: id, class: "mlm-num" });
    input.addEventListener("input", () => {
      model.set(key, Number(input.value));
      model.save_changes();
    });
    row.append(make("label", { for: id }, label), input, out);
    root.append(row);
    inputs[key] = { input, out };
  }
  const buttons = make("div");
  const once = make("button", { type: "button", class: "mlm-resample" }, "Resample");
  const many = make("button", { type: "button", class: "mlm-resample-100" }, "Resample ×100");
  const bump = (n) => {
    model.set("draws", model.get("draws") + n);
    model.save_changes();
  };
  once.addEventListener("click", () => bump(1));
  many.addEventListener("click", () => bump(100));
  buttons.append(once, many);
  root.append(buttons);

  const rowX = make("div", { class: "mlm-tokens", "aria-label": "original x" });
  const rowXbar = make("div", { class: "mlm-tokens mlm-corrupted", "aria-label": "corrupted x̄" });
  const rowLabels = make("div", { class: "mlm-tokens mlm-labels", "aria-label": "labels" });
  root.append(
    make("div", {}, "x (original):"), rowX,
    make("div", {}, "x̄ (corrupted input, what the model sees):"), rowXbar,
    make("div", {}, "labels (-100 = not in A(x), never in the loss):"), rowLabels,
  );
  const stats = make("div", { class: "mlm-summary", "aria-live": "polite" });
  root.append(stats);
  el.append(root);

  function update() {
    const settings = {
      seed: model.get("seed"),
      mlm_probability: model.get("mlm_probability"),
      mask_prob: model.get("mask_prob"),
      random_prob: model.get("random_prob"),
    };
    for (const [key, { input, out }] of Object.entries(inputs)) {
      if (Number(input.value) !== settings[key]) input.value = String(settings[key]);
      out.textContent = settings[key].toFixed(2);
    }
    const draws = Math.max(1, model.get("draws"));
    Object.assign(root.dataset, { draws: String(draws), ...settings });
    const all = sampleFates(tokens.length, special, settings, draws);
    const last = all[all.length - 1];
    const pool = model.get("replacements");
    const { corrupted, labels } = corrupt(tokens, last.fates, last.picks, pool);
    const cell = (text, fate, note) => {
      const span = make("span", { class: `mlm-tok mlm-fate-${fate}`, "data-fate": String(fate) });
      span.append(text);
      if (note) span.append(make("small", {}, note));
      return span;
    };
    rowX.replaceChildren(...tokens.map((t, i) => cell(t, last.fates[i], "")));
    rowXbar.replaceChildren(
      ...corrupted.map((t, i) => cell(t, last.fates[i], last.fates[i] ? FATE_NAMES[last.fates[i]] : "")),
    );
    rowLabels.replaceChildren(...labels.map((t, i) => cell(t, last.fates[i], "")));

    const counts = [0, 0, 0, 0];
    let eligible = 0;
    for (const { fates } of all) {
      fates.forEach((f, i) => {
        if (!special[i]) eligible += 1;
        counts[f] += 1;
      });
    }
    const selected = counts[1] + counts[2] + counts[3];
    const pct = (n, d) => (d ? (100 * n / d).toFixed(1) : "—");
    const table = make("table", { class: "mlm-counts" });
    table.innerHTML = "<caption>Over all resamples so far, with the current settings</caption>"
      + "<tr><th></th><th>count</th><th>observed %</th><th>expected %</th></tr>";
    const line = (name, n, d, expected) => {
      const tr = make("tr");
      tr.append(make("td", {}, name), make("td", {}, String(n)),
        make("td", { class: "mlm-observed" }, pct(n, d)),
        make("td", {}, (100 * expected).toFixed(1)));
      table.append(tr);
    };
    line("selected (of eligible tokens)", selected, eligible, settings.mlm_probability);
    const rest = Math.max(0, 1 - settings.mask_prob - settings.random_prob);
    line("→ [MASK] (of selected)", counts[1], selected, Math.min(1, settings.mask_prob));
    line("→ random (of selected)", counts[2], selected,
      Math.min(settings.random_prob, 1 - Math.min(1, settings.mask_prob)));
    line("→ unchanged (of selected)", counts[3], selected, rest);
    stats.replaceChildren(make("div", {}, `Resamples: ${draws}, seed ${settings.seed}`), table);
  }
  const keys = ["draws", "seed", "mlm_probability", "mask_prob", "random_prob"];
  for (const key of keys) model.on(`change:${key}`, update);
  update();
  return () => keys.forEach((key) => model.off(`change:${key}`, update));
}

export default { render };
