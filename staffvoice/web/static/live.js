// The broadcasts page, live while sending: follows /app/broadcasts/live (Server-Sent Events
// with each sending broadcast's counts) and writes the new figures and progress bars in place.
// The status line (role="status", read out politely) says how far sending has got, at most
// every few seconds, and when it has finished. Without this script the page offers a reload.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!status || !window.EventSource) {
    return;
  }
  var SAY_EVERY_MS = 5000;
  var said = 0;
  var latest = {};
  var source = new EventSource(status.getAttribute("data-stream"));

  function card(id) {
    var cards = document.querySelectorAll("[data-broadcast]");
    for (var i = 0; i < cards.length; i++) {
      if (cards[i].getAttribute("data-broadcast") === id) {
        return cards[i];
      }
    }
    return null;
  }

  function show(f) {
    var el = card(f.id);
    if (!el) {
      return;
    }
    var cells = el.querySelectorAll("[data-figure]");
    for (var i = 0; i < cells.length; i++) {
      var name = cells[i].getAttribute("data-figure");
      if (name === "state") {
        cells[i].textContent = f.state.charAt(0).toUpperCase() + f.state.slice(1);
      } else if (Object.prototype.hasOwnProperty.call(f, name)) {
        cells[i].textContent = String(f[name]);
      }
    }
    var track = el.querySelector(".chart-track");
    var bar = el.querySelector(".chart-bar");
    if (track && bar) {
      var share = f.total ? f.settled / f.total : 1;
      bar.setAttribute("width", (Number(track.getAttribute("width")) * share).toFixed(1));
    }
  }

  function summary() {
    var parts = [];
    for (var id in latest) {
      var f = latest[id];
      var el = card(id);
      var title = el ? el.querySelector("h2").textContent : "A broadcast";
      parts.push(title + ": " + f.settled + " of " + f.total + " settled (" + f.percent + "%).");
    }
    return parts.join(" ");
  }

  source.addEventListener("progress", function (e) {
    var f = JSON.parse(e.data);
    latest[f.id] = f;
    show(f);
    var now = Date.now();
    if (now - said >= SAY_EVERY_MS || f.state !== "sending") {
      said = now;
      status.textContent = summary();
    }
  });
  source.addEventListener("done", function () {
    source.close();
    status.textContent = "Sending has finished. " + summary();
  });
  source.addEventListener("stopped", function () {
    source.close();  // signed out, or no longer in the change team
    status.textContent = "Live figures stopped. Reload the page for the latest figures.";
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      status.textContent = "Live figures stopped. Reload the page for the latest figures.";
    }
  });
})();
