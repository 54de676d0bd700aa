// KernelNote front end: a note shown only where no kernel answers (the static book). On render it
// asks the kernel for a reply; a live kernel answers and the note hides itself. It also marks the
// enclosing explorer with data-lm-suppress-shortcuts, so JupyterLab leaves the keys (Enter, Space)
// to the explorer's buttons.

function render({ model, el }) {
  const note = document.createElement("p");
  note.className = "mlm-static-note";
  const em = document.createElement("em");
  em.textContent = model.get("text");
  note.append(em);
  el.append(note);
  const hide = (msg) => {
    if (msg && msg.kind === "live") note.hidden = true;
  };
  model.on("msg:custom", hide);
  try {
    model.send({ kind: "ping" });
  } catch (_error) {
    // no kernel (the static book): keep the note
  }
  let tries = 0;
  const mark = () => {
    const box = el.closest(model.get("container"));
    if (box) box.setAttribute("data-lm-suppress-shortcuts", "true");
    else if (++tries < 50) requestAnimationFrame(mark);
  };
  mark();
  return () => model.off("msg:custom", hide);
}

export default { render };
