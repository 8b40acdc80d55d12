// Read-only views of one open notebook for the browser tests (installed as window.srlibTest).
// The tests act on the page with real menus, keys and clicks; this script only reads the
// notebook model (window.jupyterapp, exposed by --LabApp.expose_app_in_browser) and the DOM, and
// tags DOM elements with data-srlib-* attributes so that Playwright can find them again.
() => {
  const WIDGET_VIEW = "application/vnd.jupyter.widget-view+json";
  const app = window.jupyterapp;
  const panelFor = (path) => {
    for (const widget of app.shell.widgets("main")) {
      if (widget.context && widget.context.path === path) return widget;
    }
    return null;
  };
  const hash = (text) => {  // FNV-1a, enough to tell two images apart
    let value = 0x811c9dc5;
    for (let index = 0; index < text.length; index++) {
      value ^= text.charCodeAt(index);
      value = Math.imul(value, 0x01000193) >>> 0;
    }
    return text.length + ":" + value.toString(16);
  };
  const THUMBNAIL_PX = 24;
  const thumbnail = (image) => {  // the image shrunk to THUMBNAIL_PX x THUMBNAIL_PX, RGBA
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = THUMBNAIL_PX;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0, THUMBNAIL_PX, THUMBNAIL_PX);
    return context.getImageData(0, 0, THUMBNAIL_PX, THUMBNAIL_PX).data;
  };
  const SAME_FIGURE_LEVELS = 2;  // mean absolute difference per channel, out of 255
  const sameFigure = (image, other) => {
    if (image.src === other.src) return true;
    if (image.naturalWidth !== other.naturalWidth ||
        image.naturalHeight !== other.naturalHeight) return false;
    const [a, b] = [thumbnail(image), thumbnail(other)];
    let total = 0;
    for (let index = 0; index < a.length; index++) total += Math.abs(a[index] - b[index]);
    return total / a.length < SAME_FIGURE_LEVELS;
  };
  const runningCells = (panel) => {
    const found = [];
    const cells = panel.content.model.cells;
    for (let index = 0; index < cells.length; index++) {
      if (cells.get(index).type === "code" && cells.get(index).executionState === "running") {
        found.push(index);
      }
    }
    return found;
  };
  const CONTROL_BOX = ".widget-inline-hbox, .widget-toggle-buttons, .widget-checkbox";
  const clean = (node) => (node ? node.textContent.replace(/\u200b/g, "").trim() : "");
  const label = (element) => {  // the control's description
    const box = element.closest(CONTROL_BOX) || element;
    // a check box's .widget-label holds a zero-width space (indent), its description is beside
    return clean(box.querySelector(".widget-label")) ||
      clean(box.querySelector(".widget-label-basic")) ||
      element.getAttribute("title") || clean(box).slice(0, 40);
  };
  const dialogText = () => {
    const dialog = document.querySelector(".jp-Dialog");
    return dialog ? dialog.innerText.trim() : null;
  };

  window.srlibTest = {
    openState(path) {
      const panel = panelFor(path);
      const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
      return {
        dialog: dialogText(),
        ready: Boolean(panel && panel.context.isReady),
        kernel: kernel ? kernel.status : null,
      };
    },
    watchKernel(path) {  // remember every kernel status from now on, with the running cells
      const panel = panelFor(path);
      window.srlibTest.statuses = [];
      panel.sessionContext.statusChanged.connect((_, status) => {
        window.srlibTest.statuses.push({status, running: runningCells(panel)});
      });
    },
    state(path) {
      const panel = panelFor(path);
      if (!panel) return null;
      const cells = [];
      const model = panel.content.model;
      for (let index = 0; index < model.cells.length; index++) {
        const cell = model.cells.get(index);
        if (cell.type !== "code") continue;
        const source = cell.sharedModel.getSource();
        const errors = [];
        const widgets = [];
        let images = 0;  // outputs the kernel sent as an image (PNG, JPEG, SVG)
        for (let output = 0; output < cell.outputs.length; output++) {
          const item = cell.outputs.get(output);
          const mimes = Object.keys(item.data || {});
          if (mimes.some((mime) => mime.startsWith("image/"))) images++;
          if (item.type === "error") {
            const json = item.toJSON();
            errors.push({ename: json.ename, evalue: json.evalue});
          }
          if (item.data && item.data[WIDGET_VIEW]) widgets.push(output);
        }
        const timing = cell.getMetadata("execution") || {};  // recorded by recordTiming
        const seconds = (Date.parse(timing["shell.execute_reply"]) -
                         Date.parse(timing["iopub.execute_input"])) / 1000;
        cells.push({
          index, errors, widgets, images, seconds: Number.isFinite(seconds) ? seconds : null,
          line: (source.split("\n").find((text) => text.trim()) || "").trim().slice(0, 80),
          empty: source.trim() === "",
          count: cell.executionCount,
          running: cell.executionState === "running",
        });
      }
      const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
      return {
        total: model.cells.length, cells, kernel: kernel ? kernel.status : null,
        statuses: window.srlibTest.statuses || [],
        dialog: dialogText(),
      };
    },
    tagCell(path, index) {  // data-srlib-cell on the cell's node; scrolls it into view
      const node = panelFor(path).content.widgets[index].node;
      node.setAttribute("data-srlib-cell", String(index));
      node.scrollIntoView({block: "start"});
      return `[data-srlib-cell="${index}"]`;
    },
    describeWidget(path, index, output) {  // what one widget output shows, its controls tagged
      const cell = panelFor(path).content.widgets[index];
      const child = cell.outputArea.widgets[output];
      if (!child) return {rendered: false, text: "(no output element)", controls: [], other: []};
      const root = child.node;
      const id = `${index}-${output}`;
      // a drawn view is a .jupyter-widgets element inside the output; the output element itself
      // gets that class only for ipywidgets' "Error displaying widget" text
      const rendered = root.querySelector(".jp-OutputArea-output .jupyter-widgets") !== null;
      const controls = [];
      const tag = (element, kind, extra) => {
        const name = `${id}-${controls.length}`;
        element.setAttribute("data-srlib-control", name);
        controls.push({
          selector: `[data-srlib-control="${name}"]`, kind, description: label(element), ...extra,
        });
      };
      root.querySelectorAll(".noUi-target").forEach((slider) => {
        const handle = slider.querySelector(".noUi-handle");
        tag(handle, "slider", {
          value: parseFloat(handle.getAttribute("aria-valuenow")),
          max: parseFloat(handle.getAttribute("aria-valuemax")),
        });
      });
      root.querySelectorAll("select").forEach((select) => {
        tag(select, "select", {value: select.selectedIndex, options: select.options.length});
      });
      root.querySelectorAll(".widget-toggle-buttons").forEach((group) => {
        const other = group.querySelector("button:not(.mod-active)");
        if (other) tag(other, "toggle-buttons", {});
      });
      root.querySelectorAll("button.widget-toggle-button").forEach((button) => {
        if (!button.closest(".widget-toggle-buttons")) tag(button, "toggle-button", {});
      });
      root.querySelectorAll(".widget-checkbox input[type=checkbox]").forEach(
        (box) => tag(box, "checkbox", {}));
      root.querySelectorAll(".widget-radio-box").forEach((group) => {
        const other = group.querySelector("input[type=radio]:not(:checked)");
        if (other) tag(other, "radio", {});
      });
      // interact_manual's "Run Interact" button: pressed after each move
      const run = root.querySelector("button.widget-button:not(.widget-toggle-button)");
      if (run) run.setAttribute("data-srlib-run", id);
      const other = Array.from(root.querySelectorAll(
        ".widget-text input, .widget-textarea textarea, .widget-colorpicker, " +
        ".widget-datepicker, .widget-play")).map((element) => label(element));
      return {
        rendered, controls, other,
        run: run ? `[data-srlib-run="${id}"]` : null,
        text: rendered ? "" : root.innerText.trim().slice(0, 200),
      };
    },
    controlValue(selector) {
      const element = document.querySelector(selector);
      if (!element) return null;
      if (element.classList.contains("noUi-handle")) {
        // aria-valuenow is rounded to one decimal (0.15 reads 0.2): add the slider's readout
        const slider = element.closest(".widget-slider, .widget-hslider, .widget-vslider");
        const readout = slider && slider.querySelector(".widget-readout");
        return `${element.getAttribute("aria-valuenow")} ${readout ? readout.textContent : ""}`;
      }
      if (element.tagName === "SELECT") return String(element.selectedIndex);
      if (element.tagName === "INPUT") return String(element.checked);
      return String(element.classList.contains("mod-active"));
    },
    figure(path, index) {  // what the cell's outputs show: images, and the widget outputs' text
      const area = panelFor(path).content.widgets[index].outputArea.node;
      const images = Array.from(area.querySelectorAll("img")).map((image) => hash(image.src));
      area.querySelectorAll("svg").forEach((svg) => images.push(hash(svg.outerHTML)));
      const outputs = Array.from(area.querySelectorAll(".widget-output"));
      const text = outputs.map((element) => element.innerText).join("\n");
      // one widget output showing the same figure twice (displayed two ways: drawn twice, the
      // PNGs may differ by a few pixels, e.g. under a constrained layout)
      const repeated = outputs.some((element) => {
        const drawn = Array.from(element.querySelectorAll("img")).filter(
          (image) => image.complete && image.naturalWidth > 0);
        return drawn.some((image, first) => drawn.slice(first + 1).some((other) =>
          sameFigure(image, other)));
      });
      return {
        images, text: hash(text), repeated,
        traceback: /Traceback \(most recent call last\)/.test(text),
        tracebackText: text.slice(-1500),
      };
    },
    shownImages(path, index) {  // images the page draws in a cell's outputs
      const area = panelFor(path).content.widgets[index].outputArea.node;
      return area.querySelectorAll(
        ".jp-RenderedImage img, .jp-RenderedSVG img, .jp-RenderedSVG svg").length;
    },
    cellReferencing(path, address) {  // the cell whose outputs link to address, or -1
      const cells = panelFor(path).content.widgets;
      for (let index = 0; index < cells.length; index++) {
        const links = Array.from(cells[index].node.querySelectorAll("[src], [href]"));
        const found = links.some((element) =>
          [element.getAttribute("src"), element.getAttribute("href")].includes(address));
        if (found) return index;
      }
      return -1;
    },
    notebookHeight(path) {  // the height of all cells: the scrolling element's content
      const content = panelFor(path).content.node;
      const scroller = content.querySelector(".jp-WindowedPanel-outer") || content;
      return scroller.scrollHeight + content.getBoundingClientRect().top;
    },
  };
  return true;
}
