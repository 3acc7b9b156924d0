// Live progress for a submission or benchmark-run page: poll its JSON status endpoint and
// update the status block in place; reload once when the job finishes so results appear.
// Without JavaScript the page still shows the status as of its rendering.
(function () {
  "use strict";

  var box = document.getElementById("job-status");
  if (!box || box.getAttribute("data-finished") === "true") {
    return;
  }
  var url = box.getAttribute("data-status-url");
  var delay = 2000;

  function set(field, text) {
    var el = box.querySelector('[data-field="' + field + '"]');
    if (el) {
      el.textContent = text;
    }
  }

  function render(doc) {
    set("status_display", doc.status_display);
    set("progress_pct", Math.round(100 * doc.progress) + "%");
    set("progress_message", doc.progress_message || "");
    var bar = box.querySelector("progress");
    if (bar) {
      bar.value = doc.progress;
    }
    var status = box.querySelector('[data-field="status_display"]');
    if (status) {
      status.className = "status status-" + doc.status;
    }
    var err = box.querySelector('[data-field="error_message"]');
    if (err) {
      err.hidden = !doc.error_message;
      err.textContent = doc.error_message ? "Failed: " + doc.error_message : "";
    }
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (doc) {
        render(doc);
        if (doc.is_finished) {
          window.location.reload();
          return;
        }
        delay = 2000;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000); // back off while the server is unreachable
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, delay);
})();
