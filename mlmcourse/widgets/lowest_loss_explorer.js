// LowestLossExplorer front end: several candidate distributions Pr_i^{W,θ}(. | x̄) for one selected
// position; the reader picks the one they think has the lowest loss -log Pr_i^{W,θ}(x_i | x̄), then sees
// every candidate's loss with the lowest one marked. Each candidate can be edited: its slider sets
// the true token's probability and rescales the other entries so that they still sum to 1.
// Computed here: no kernel needed.

/** -log p[trueIndex] in nats, for each named candidate distribution. */
export function candidateLosses(candidates, trueIndex) {
  const out = {};
  for (const [name, p] of Object.entries(candidates)) out[name] = -Math.log(p[trueIndex]);
  return out;
}

/** `p` with p[trueIndex] set to `value` and the other entries scaled to share 1 - value. */
export function withTrueProbability(p, trueIndex, value) {
  const rest = 1 - p[trueIndex];
  return p.map((v, j) => {
    if (j === trueIndex) return value;
    return rest > 0 ? (v * (1 - value)) / rest : (1 - value) / (p.length - 1);
  });
}

/** JupyterLab's notebook shortcuts (arrows, Enter...) skip elements marked like this, so the
 *  keys reach the explorer's sliders, buttons and radios. */
export function keepKeys(root) {
  root.querySelectorAll("input, button").forEach((n) => {
    n.setAttribute("data-lm-suppress-shortcuts", "true");
  });
}

function make(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

let counter = 0;

function render({ model, el }) {
  const uid = `mlm-ll-${++counter}`;
  const tokens = model.get("tokens");
  const trueIndex = model.get("true_index");
  const names = Object.keys(model.get("candidates"));

  const root = make("div", {
    class: "mlm-explorer mlm-lowest-loss-explorer", "data-true-index": String(trueIndex),
  });
  const form = make("fieldset");
  form.append(make(
    "legend", {},
    `Which output gives the lowest loss for the true word “${tokens[trueIndex]}”?`,
  ));
  form.append(make(
    "p", { class: "mlm-note" },
    "Pick one to see the losses. Each slider edits that output's probability of the true word "
    + "(the other words keep their proportions). All bars use the same scale: full width = 1.",
  ));
  const grid = make("div", { class: "mlm-candidates" });
  const cards = {};
  for (const name of names) {
    const card = make("div", { class: "mlm-candidate", "data-name": name });
    const id = `${uid}-${name.replace(/\W+/g, "_")}`;
    const radio = make("input", { type: "radio", name: uid, id, value: name });
    radio.addEventListener("change", () => {
      model.set("picked", name);
      model.save_changes();
    });
    const head = make("div");
    head.append(radio, " ", make("label", { for: id }, name));
    card.append(head);
    const rows = tokens.map((tok, j) => {
      const row = make("div", { class: "mlm-row" });
      if (j === trueIndex) row.classList.add("mlm-true");
      const track = make("div", { class: "mlm-bar-track" });
      const bar = make("div", { class: "mlm-bar" });
      track.append(bar);
      const num = make("span", { class: "mlm-num" });
      row.append(make("span", { class: "mlm-token" }, j === trueIndex ? `${tok} (true)` : tok),
        track, num);
      card.append(row);
      return { bar, num };
    });
    const editId = `${id}-edit`;
    const edit = make("input", {
      type: "range", id: editId, class: "mlm-edit", min: "0.01", max: "0.99", step: "0.01",
    });
    edit.addEventListener("input", () => {
      const all = { ...model.get("candidates") };
      all[name] = withTrueProbability(all[name], trueIndex, Number(edit.value));
      model.set("candidates", all);
      model.save_changes();
    });
    const editRow = make("div", { class: "mlm-row mlm-edit-row" });
    editRow.append(make("label", { for: editId }, `edit Pr(${tokens[trueIndex]})`), edit);
    card.append(editRow);
    const lossLine = make("div", { class: "mlm-candidate-loss", hidden: "" });
    card.append(lossLine);
    cards[name] = { card, radio, rows, edit, lossLine };
    grid.append(card);
  }
  form.append(grid);
  root.append(form);
  const summary = make("div", { class: "mlm-summary", "aria-live": "polite" });
  root.append(summary);
  keepKeys(root);
  el.append(root);

  function update() {
    const candidates = model.get("candidates");
    const losses = candidateLosses(candidates, trueIndex);
    const best = names.reduce((a, b) => (losses[b] < losses[a] ? b : a));
    const picked = model.get("picked");
    for (const name of names) {
      const { card, radio, rows, edit, lossLine } = cards[name];
      const p = candidates[name];
      card.dataset.probs = JSON.stringify(p);
      rows.forEach(({ bar, num }, j) => {
        bar.style.width = `${(100 * p[j]).toFixed(2)}%`;
        num.textContent = p[j].toFixed(3);
      });
      if (Math.abs(Number(edit.value) - p[trueIndex]) > 0.005) edit.value = String(p[trueIndex]);
      radio.checked = name === picked;
      card.classList.toggle("mlm-picked", name === picked);
      lossLine.hidden = !picked;
      lossLine.className = "mlm-candidate-loss";
      lossLine.textContent = `loss −log p = ${losses[name].toFixed(3)} nats`;
      if (name === best) {
        lossLine.classList.add("mlm-lowest");
        lossLine.textContent += " (lowest)";
      }
    }
    summary.replaceChildren();
    if (!picked) {
      summary.append(make("span", { class: "mlm-note" }, "Pick one to see its loss."));
      return;
    }
    const verdict = picked === best
      ? "That is the lowest loss."
      : `The lowest is “${best}” (${losses[best].toFixed(3)} nats): only the true word's probability counts.`;
    summary.append(
      `You picked “${picked}”: loss `,
      make("strong", { class: "mlm-loss" }, losses[picked].toFixed(3)),
      ` nats. ${verdict}`,
    );
  }
  model.on("change:picked", update);
  model.on("change:candidates", update);
  update();
  return () => {
    model.off("change:picked", update);
    model.off("change:candidates", update);
  };
}

export default { render };
