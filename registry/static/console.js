// Small conveniences over pages that work without script: copy buttons,
// confirmation of destructive actions, pages that follow a rollout, and the
// labelling queue's keyboard shortcuts.
(function () {
  "use strict";

  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var el = document.getElementById(b.getAttribute("data-copy"));
      if (!el) return;
      var text = el.textContent;
      var done = function () { b.textContent = "Copied"; b.setAttribute("data-copied", text); };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, done);
      } else {
        done();
      }
    });
  });

  document.querySelectorAll("button[data-confirm]").forEach(function (b) {
    b.addEventListener("click", function (e) {
      if (!window.confirm(b.getAttribute("data-confirm"))) e.preventDefault();
    });
  });

  var refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    var secs = parseInt(refresh.getAttribute("data-refresh"), 10) || 5;
    setTimeout(function () { window.location.reload(); }, secs * 1000);
  }

  var queue = document.querySelectorAll(".queue .sample");
  if (queue.length) {
    var at = 0;
    var focus = function (i) {
      if (i < 0 || i >= queue.length) return;
      queue[at].classList.remove("focus");
      at = i;
      queue[at].classList.add("focus");
      queue[at].focus();
    };
    queue.forEach(function (s, i) {
      s.addEventListener("click", function (e) { if (e.target.tagName !== "INPUT") focus(i); });
    });
    queue[0].classList.add("focus");
    document.addEventListener("keydown", function (e) {
      var typing = e.target && e.target.tagName === "INPUT" && e.target.type !== "checkbox";
      if (typing) {
        if (e.key === "Escape") { e.target.blur(); queue[at].focus(); }
        return; // Enter in a label field submits the form
      }
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      var s = queue[at];
      var input = s.querySelector("input.label");
      switch (e.key) {
        case "j": focus(at + 1); break;
        case "k": focus(at - 1); break;
        case "a":
          input.value = s.getAttribute("data-answer");
          s.classList.add("done");
          focus(at + 1);
          break;
        case "c": input.focus(); input.select(); break;
        case "x":
          var box = s.querySelector("input[type=checkbox]");
          box.checked = !box.checked;
          break;
        case "Enter": document.getElementById("save").click(); break;
        default: return;
      }
      e.preventDefault();
    });
  }
})();
