// The workbench's small behaviours: keyboard shortcuts, the help overlay, the page version that
// every save carries, and the code editor (tab, indent, save keys). No inline script anywhere:
// the Content-Security-Policy allows scripts from this site only.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // --- The version the page shows: one element (#version), updated out of band after each save;
  // every htmx request carries it, and plain forms get it copied in.
  function pageVersion() {
    var el = document.getElementById("version");
    return el ? el.dataset.version : null;
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var version = pageVersion();
    if (version) {
      event.detail.parameters.base_version = version;
    }
  });

  function syncVersionInputs() {
    var version = pageVersion();
    if (!version) return;
    document.querySelectorAll('input[name="base_version"]:not([data-fixed])').forEach(function (input) {
      input.value = version;
    });
  }
  document.addEventListener("htmx:afterSettle", syncVersionInputs);
  document.addEventListener("htmx:oobAfterSwap", syncVersionInputs);

  // Failures the server did not explain (it answers 403, 409 and 422 with an alert of its own):
  // say so, and that the change may not have been saved, instead of doing nothing. The message
  // shows in place too, beside the form or link that failed, until it succeeds.
  function showInPlace(elt, text) {
    var anchor = elt && (elt.closest("form, .seg-head, .decide-row, .tool-links") || elt);
    if (!anchor || !anchor.parentNode || !document.body.contains(anchor)) return;
    var note = anchor.nextElementSibling;
    if (!note || !note.classList.contains("inline-error")) {
      note = document.createElement("p");
      note.className = "inline-error";
      note.setAttribute("role", "alert");
      anchor.after(note);
    }
    note.textContent = text;
  }

  function clearInPlace(elt) {
    var anchor = elt && (elt.closest("form, .seg-head, .decide-row, .tool-links") || elt);
    var note = anchor && anchor.nextElementSibling;
    if (note && note.classList.contains("inline-error")) note.remove();
  }

  function showError(text) {
    var alerts = document.getElementById("alerts");
    if (!alerts) return;
    var alert = document.createElement("div");
    alert.className = "alert alert-error";
    alert.setAttribute("role", "alert");
    var message = document.createElement("span");
    message.textContent = text + " ";
    var reload = document.createElement("a");
    reload.href = "";
    reload.className = "reload";
    reload.textContent = "Reload";
    var close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    alert.append(message, reload, close);
    alerts.replaceChildren(alert);
  }
  function failed(event, text) {
    showError(text);
    showInPlace(event.detail.elt, text);
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (status === 403 || status === 409 || status === 422) return;
    failed(event, "The server failed (HTTP " + status + "): this action may not have been saved.");
  });
  document.addEventListener("htmx:sendError", function (event) {
    failed(event, "Could not reach the server: this action was not saved. Check the connection.");
  });
  document.addEventListener("htmx:timeout", function (event) {
    failed(event, "The server did not answer in time: this action may not have been saved.");
  });

  // A successful request clears earlier error messages.
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful && !event.detail.xhr.getResponseHeader("HX-Retarget")) {
      clearInPlace(event.detail.elt);
      var alerts = document.getElementById("alerts");
      if (alerts) alerts.querySelectorAll(".alert-error").forEach(function (a) { a.remove(); });
    }
  });

  document.addEventListener("click", function (event) {
    var reload = event.target.closest(".alert .reload");
    if (reload && !editorUnchanged() &&
        !window.confirm("Reloading discards the text in the editor. Reload anyway?")) {
      event.preventDefault();
      return;
    }
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      dismiss.closest(".alert").remove();
      return;
    }
    var close = event.target.closest("[data-close-panel]");
    if (close) {
      event.preventDefault();
      closePanel();
      return;
    }
    if (event.target.closest("[data-help]")) toggleHelp();
  });

  function closePanel() {
    var panel = document.getElementById("panel");
    if (panel && panel.firstElementChild) {
      panel.replaceChildren();
      return true;
    }
    return false;
  }

  function toggleHelp() {
    var help = document.getElementById("help");
    if (!help) return;
    if (help.open) help.close(); else help.showModal();
  }

  // Selects marked data-autosubmit submit their form on change (progress page).
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
  });

  // --- Keyboard shortcuts: elements carry data-key; the key clicks them (the same request as a
  // click), data-key-focus focuses an input instead.
  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]") !== null;
  }

  function visible(el) {
    return el.offsetParent !== null || el.tagName === "SUMMARY";
  }

  var flagIndex = -1;
  function goToFlag(step) {
    var marks = Array.prototype.filter.call(
      document.querySelectorAll("#segments mark.flag[id], #segments .flag-note[id]"),
      function (m) { return !m.classList.contains("flag-hint"); }
    );
    if (!marks.length) return;
    document.querySelectorAll("mark.flag.current").forEach(function (m) { m.classList.remove("current"); });
    flagIndex = (flagIndex + step + marks.length) % marks.length;
    var target = marks[flagIndex];
    target.classList.add("current");
    target.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    var help = document.getElementById("help");
    if (event.key === "Escape") {
      if (help && help.open) return; // the dialog closes itself
      var cancel = document.querySelector("[data-editor-cancel]");
      if (!typing(event.target) && cancel) {
        if (editorUnchanged() || window.confirm("Discard the changes in the editor?")) cancel.click();
        return;
      }
      if (!typing(event.target)) closePanel();
      return;
    }
    if (typing(event.target)) return;
    if (event.key === "?") {
      event.preventDefault();
      toggleHelp();
      return;
    }
    if (help && help.open) return;
    if (event.key === "e") {
      var seg = document.activeElement && document.activeElement.closest(".seg");
      var edit = seg && seg.querySelector("[data-edit]");
      if (edit) {
        event.preventDefault();
        edit.click();
      }
      return;
    }
    if (event.key === "f" || event.key === "F") {
      event.preventDefault();
      goToFlag(event.key === "f" ? 1 : -1);
      return;
    }
    var focusTarget = document.querySelector('[data-key-focus="' + CSS.escape(event.key) + '"]');
    if (focusTarget && visible(focusTarget)) {
      event.preventDefault();
      focusTarget.focus();
      return;
    }
    var target = Array.prototype.find.call(
      document.querySelectorAll('[data-key="' + CSS.escape(event.key) + '"]'),
      function (el) { return visible(el) && !el.disabled; }
    );
    if (!target) return;
    event.preventDefault();
    target.click();
    if (target.dataset.focus) {
      var focus = document.querySelector(target.dataset.focus);
      if (focus) window.setTimeout(function () { focus.focus(); }, 0);
    }
  });

  // --- The code editor: a textarea that indents like an editor.
  var INDENT = "    ";
  var original = new WeakMap();

  function editorUnchanged() {
    var area = document.querySelector("textarea[data-editor]");
    return !area || original.get(area) === area.value;
  }

  function initEditors(root) {
    (root || document).querySelectorAll("textarea[data-editor]").forEach(function (area) {
      if (original.has(area)) return;
      original.set(area, area.value);
      if (area.hasAttribute("autofocus")) {
        area.focus();
        area.setSelectionRange(0, 0);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { initEditors(); syncVersionInputs(); });
  document.addEventListener("htmx:load", function (event) { initEditors(event.detail.elt); });

  function insert(area, text) {
    // execCommand keeps the browser's own undo (Ctrl+Z) working; setRangeText is the fallback.
    var done = document.execCommand &&
      (text ? document.execCommand("insertText", false, text) : document.execCommand("delete"));
    if (!done) area.setRangeText(text, area.selectionStart, area.selectionEnd, "end");
  }

  function lineStart(value, position) {
    return value.lastIndexOf("\n", position - 1) + 1;
  }

  // Indent or dedent every line the selection touches; a caret stays where it was in its line.
  function shiftLines(area, dedent) {
    var value = area.value;
    var caret = area.selectionStart === area.selectionEnd ? area.selectionStart : null;
    var start = lineStart(value, area.selectionStart);
    var end = area.selectionEnd;
    if (end > start && value[end - 1] === "\n") end -= 1;
    var lineEnd = value.indexOf("\n", end);
    if (lineEnd < 0) lineEnd = value.length;
    var lines = value.slice(start, lineEnd).split("\n");
    var changed = lines.map(function (line) {
      if (!dedent) return INDENT + line;
      return line.slice(line[0] === "\t" ? 1 : line.match(/^ {0,4}/)[0].length);
    }).join("\n");
    area.setSelectionRange(start, lineEnd);
    insert(area, changed);
    if (caret === null) {
      area.setSelectionRange(start, start + changed.length);
    } else {
      var moved = Math.max(caret + changed.length - (lineEnd - start), start);
      area.setSelectionRange(moved, moved);
    }
  }

  document.addEventListener("keydown", function (event) {
    var area = event.target;
    if (!(area instanceof HTMLTextAreaElement) || !area.dataset.editor) return;
    var form = area.form;
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      var run = form.querySelector("[data-editor-run]");
      if (run) run.click();
      return;
    }
    if ((event.ctrlKey || event.metaKey) && (event.key === "s" || event.key === "S")) {
      event.preventDefault();
      form.querySelector("[data-editor-save]").click();
      return;
    }
    if (event.key === "Escape") {
      event.preventDefault();
      area.blur();
      return;
    }
    if (area.dataset.editor !== "code" || event.ctrlKey || event.metaKey || event.altKey) return;
    var value = area.value;
    var selectionStart = area.selectionStart;
    var selectionEnd = area.selectionEnd;
    if (event.key === "Tab") {
      event.preventDefault();
      if (event.shiftKey || selectionEnd > selectionStart) {
        shiftLines(area, event.shiftKey);
      } else {
        var column = selectionStart - lineStart(value, selectionStart);
        insert(area, INDENT.slice(column % INDENT.length));
      }
    } else if (event.key === "Enter") {
      event.preventDefault();
      var start = lineStart(value, selectionStart);
      var line = value.slice(start, selectionStart);
      var indent = line.match(/^[ \t]*/)[0];
      if (/:\s*(#.*)?$/.test(line)) indent += INDENT;
      insert(area, "\n" + indent);
    } else if (event.key === "Backspace" && selectionStart === selectionEnd) {
      var before = value.slice(lineStart(value, selectionStart), selectionStart);
      if (before.length && /^ +$/.test(before)) {
        event.preventDefault();
        var remove = before.length % INDENT.length || INDENT.length;
        area.setSelectionRange(selectionStart - remove, selectionStart);
        insert(area, "");
      }
    }
  });

  // --- LaTeX in the problem, the reasoning and the answer, typeset by KaTeX (served by this
  // site; katex.render builds DOM nodes, which the CSP allows). Math that does not parse stays
  // as its source. A bare \boxed{...} (how models give answers) is typeset too.
  var MATH_DELIMITERS = [
    { left: "$$", right: "$$", display: true },
    { left: "\\[", right: "\\]", display: true },
    { left: "\\(", right: "\\)", display: false },
    { left: "$", right: "$", display: false },
  ];
  var BOXED = "\\boxed{";

  function boxedEnd(text, start) {  // the index after the brace that closes \boxed{ at start
    var depth = 0;
    for (var i = start + BOXED.length - 1; i < text.length; i++) {
      if (text[i] === "\\") i++;
      else if (text[i] === "{") depth++;
      else if (text[i] === "}" && --depth === 0) return i + 1;
    }
    return -1;
  }

  function typesetBoxed(root) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode: function (node) {
        return node.parentElement.closest(".katex, code, pre, textarea")
          ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT;
      },
    });
    var nodes = [];
    while (walker.nextNode()) {
      if (walker.currentNode.data.indexOf(BOXED) >= 0) nodes.push(walker.currentNode);
    }
    nodes.forEach(function (node) {
      var start = node.data.indexOf(BOXED);
      while (start >= 0) {
        var end = boxedEnd(node.data, start);
        if (end < 0) return;
        var span = document.createElement("span");
        try {
          window.katex.render(node.data.slice(start, end), span, { throwOnError: true });
        } catch (error) {
          start = node.data.indexOf(BOXED, end);
          continue;
        }
        var rest = node.splitText(start);
        rest.data = rest.data.slice(end - start);
        rest.before(span);
        node = rest;
        start = node.data.indexOf(BOXED);
      }
    });
  }

  function typeset(root) {
    if (!window.katex || !window.renderMathInElement || !root.querySelectorAll) return;
    var blocks = Array.prototype.slice.call(root.querySelectorAll(".prose"));
    if (root.matches && root.matches(".prose")) blocks.push(root);
    blocks.forEach(function (block) {
      if (block.dataset.typeset) return;
      block.dataset.typeset = "1";
      window.renderMathInElement(block, {
        delimiters: MATH_DELIMITERS,
        throwOnError: true,
        errorCallback: function () {},  // the source stays as it was
        ignoredTags: ["script", "noscript", "style", "textarea", "pre", "code", "option"],
        ignoredClasses: ["katex"],
      });
      typesetBoxed(block);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { typeset(document.body); });
  document.addEventListener("htmx:load", function (event) { typeset(event.detail.elt); });
})();
