// LowestLossExplorer front end: several candidate distributions Pr_i(. | x̄) for one masked
// word; the reader picks the one they think has the lowest loss -log Pr_i(x_i | x̄), then sees
// every candidate's loss with the lowest one marked. Computed here: no kernel needed.

/** -log p[trueIndex] in nats, for each named candidate distribution. */
export function candidateLosses(candidates, trueIndex) {
  const out = {};
  for (const [name, p] of Object.entries(candidates)) out[name] = -Math.log(p[trueIndex]);
  return out;
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
  const candidates = model.get("candidates");
  const losses = candidateLosses(candidates, trueIndex);
  const names = Object.keys(candidates);
  const best = names.reduce((a, b) => (losses[b] < losses[a] ? b : a));

  const root = make("div", {
    class: "mlm-explorer mlm-lowest-loss-explorer", "data-true-index": String(trueIndex),
  });
  const form = make("fieldset");
  form.append(make(
    "legend", {},
    `Which output gives the lowest loss for the true word “${tokens[trueIndex]}”?`,
  ));
  const grid = make("div", { class: "mlm-candidates" });
  const cards = {};
  for (const name of names) {
    const card = make("div", {
      class: "mlm-candidate", "data-name": name, "data-probs": JSON.stringify(candidates[name]),
    });
    const id = `${uid}-${name.replace(/\W+/g, "_")}`;
    const radio = make("input", { type: "radio", name: uid, id, value: name });
    radio.addEventListener("change", () => {
      model.set("selected", name);
      model.save_changes();
    });
    const head = make("div");
    head.append(radio, " ", make("label", { for: id }, name));
    card.append(head);
    candidates[name].forEach((v, j) => {
      const row = make("div", { class: "mlm-row" });
      if (j === trueIndex) row.classList.add("mlm-true");
      const track = make("div", { class: "mlm-bar-track" });
      const bar = make("div", { class: "mlm-bar" });
      bar.style.width = `${(100 * v).toFixed(2)}%`;
      track.append(bar);
      row.append(
        make("span", { class: "mlm-token" }, j === trueIndex ? `${tokens[j]} (true)` : tokens[j]),
        track,
        make("span", { class: "mlm-num" }, v.toFixed(3)),
      );
      card.append(row);
    });
    const lossLine = make("div", { class: "mlm-candidate-loss", hidden: "" });
    card.append(lossLine);
    cards[name] = { card, radio, lossLine };
    grid.append(card);
  }
  form.append(grid);
  root.append(form);
  const summary = make("div", { class: "mlm-summary", "aria-live": "polite" });
  root.append(summary);
  el.append(root);

  function update() {
    const picked = model.get("selected");
    for (const name of names) {
      const { card, radio, lossLine } = cards[name];
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
  model.on("change:selected", update);
  update();
  return () => model.off("change:selected", update);
}

export default { render };
