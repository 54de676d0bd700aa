/* The book's own script: inline maths wider than its column (it cannot break across lines)
 * becomes a line of its own that scrolls sideways, like a wide display equation, instead of being
 * cut off at the screen's edge (phone widths). mlmcourse.css styles `mjx-container.mlm-wide-inline`.
 * Only the text (`article`), not the sidebars. Measured once MathJax has typeset the page, and again
 * when the window's width changes.
 */
(() => {
  const WIDE = "mlm-wide-inline";

  // the width of the text column an inline element sits in: its nearest block's content box
  function columnWidth(element) {
    let block = element.parentElement;
    while (block && getComputedStyle(block).display.startsWith("inline")) {
      block = block.parentElement;
    }
    if (!block) return Infinity;
    const style = getComputedStyle(block);
    return block.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  }

  function markWideInlineMaths() {
    const inline = document.querySelectorAll('article mjx-container:not([display="true"])');
    inline.forEach((box) => box.classList.remove(WIDE));
    inline.forEach((box) => {
      const math = box.querySelector("mjx-math");
      if (math && math.getBoundingClientRect().width > columnWidth(box) + 1) {
        box.classList.add(WIDE);
      }
    });
  }

  async function whenTypeset() {
    if (!document.querySelector(".math")) return;
    for (let i = 0; i < 200 && !(window.MathJax && window.MathJax.startup
        && window.MathJax.startup.promise); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (!(window.MathJax && window.MathJax.startup)) return;
    await window.MathJax.startup.promise;
    markWideInlineMaths();
    let width = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth !== width) {
        width = window.innerWidth;
        markWideInlineMaths();
      }
    });
  }

  if (document.readyState === "loading") {  // Sphinx loads this script in the page's head
    document.addEventListener("DOMContentLoaded", whenTypeset);
  } else {
    whenTypeset();
  }
})();
