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
    document.querySelectorAll('input[name="base_version"]').forEach(function (input) {
      input.value = version;
    });
  }
  document.addEventListener("htmx:afterSettle", syncVersionInputs);
  document.addEventListener("htmx:oobAfterSwap", syncVersionInputs);

  // Failures the server did not explain (it answers 403, 409 and 422 with an alert of its own):
  // say so, and that the change may not have been saved, instead of doing nothing.
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
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (status === 403 || status === 409 || status === 422) return;
    showError("The server failed (HTTP " + status + "): this action may not have been saved.");
  });
  document.addEventListener("htmx:sendError", function () {
    showError("Could not reach the server: this action was not saved. Check the connection.");
  });
  document.addEventListener("htmx:timeout", function () {
    showError("The server did not answer in time: this action may not have been saved.");
  });

  // A successful request clears earlier error messages.
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful && !event.detail.xhr.getResponseHeader("HX-Retarget")) {
      var alerts = document.getElementById("alerts");
      if (alerts) alerts.querySelectorAll(".alert-error").forEach(function (a) { a.remove(); });
    }
  });

  document.addEventListener("click", function (event) {
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
})();
