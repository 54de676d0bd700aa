// KernelNote front end: a note shown only where no kernel answers (the static book). On render it
// asks the kernel for a reply; a live kernel answers and the note hides itself. It also marks the
// buttons and inputs of the enclosing explorer with data-lm-suppress-shortcuts, so that
// JupyterLab's notebook shortcuts leave their keys (Enter, arrows) to them.

const KEEP_KEYS = "data-lm-suppress-shortcuts";

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
  let observer = null;
  let tries = 0;
  const watch = () => {
    const box = el.closest(model.get("container"));
    if (!box) {
      if (++tries < 100) requestAnimationFrame(watch);
      return;
    }
    const mark = () => box.querySelectorAll(`button:not([${KEEP_KEYS}]), input:not([${KEEP_KEYS}])`)
      .forEach((n) => n.setAttribute(KEEP_KEYS, "true"));
    mark();
    observer = new MutationObserver(mark);
    observer.observe(box, { childList: true, subtree: true });
  };
  watch();
  return () => {
    model.off("msg:custom", hide);
    if (observer) observer.disconnect();
  };
}

export default { render };
