// The broadcasts page, live while sending: follows /app/broadcasts/live (Server-Sent Events
// with each sending broadcast's counts) and writes the new figures and progress bars in place.
// The status line (role="status", read out politely) says how far sending has got, at most
// every few seconds, and when it has finished. Without this script the page offers a reload.
// The stream is read with fetch, not EventSource, so a refusal's status and Retry-After can be
// read: when too many streams are open (503) or this sign-in has too many (429), the script
// says so once, waits Retry-After (at most LONGEST_WAIT_S) and tries again by itself, up to
// MAX_TRIES times in a row before it asks for a reload.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!status || !window.fetch || !window.TextDecoder || !window.ReadableStream) {
    return;
  }
  var url = status.getAttribute("data-stream");
  var SAY_EVERY_MS = 5000;
  var MAX_TRIES = 5;  // refusals or failures in a row
  var LONGEST_WAIT_S = 120;
  var DEFAULT_WAIT_S = 30;  // a Retry-After that is missing or not a number of seconds
  var STOPPED = "Live figures stopped. Reload the page for the latest figures.";
  var reconnectMs = 5000;  // the stream's own "retry:" line sets it
  var failures = 0;
  var said = 0;
  var latest = {};

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

  function progress(f) {
    latest[f.id] = f;
    show(f);
    var now = Date.now();
    if (now - said >= SAY_EVERY_MS || f.state !== "sending") {
      said = now;
      status.textContent = summary();
    }
  }

  // One event from the stream; true when the stream has said its last word.
  function dispatch(name, data) {
    if (name === "progress") {
      progress(JSON.parse(data));
    } else if (name === "done") {
      // A card still shown as sending that the stream sent nothing about is stale (it is no
      // longer among the recent broadcasts the stream reads).
      var stale = false;
      var states = document.querySelectorAll("[data-figure=state]");
      for (var i = 0; i < states.length; i++) {
        stale = stale || states[i].textContent.trim() === "Sending";
      }
      status.textContent = ["Sending has finished.", summary(),
        stale ? "Reload the page for the final figures." : ""].filter(Boolean).join(" ");
      return true;
    } else if (name === "stopped") {
      status.textContent = STOPPED;  // signed out, or no longer in the change team
      return true;
    }
    return false;
  }

  // Another try after `ms`, unless there have been too many in a row.
  function later(ms) {
    failures += 1;
    if (failures > MAX_TRIES) {
      status.textContent = STOPPED;
      return false;
    }
    window.setTimeout(connect, ms);
    return true;
  }

  function waitSeconds(header) {
    var n = /^\s*\d+\s*$/.test(header || "") ? parseInt(header, 10) : DEFAULT_WAIT_S;
    return Math.min(Math.max(n, 1), LONGEST_WAIT_S);
  }

  function refused(resp) {
    var wait = waitSeconds(resp.headers.get("Retry-After"));
    var why = resp.status === 429
      ? "This sign-in already follows the live figures in other tabs or windows."
      : "The live figures are busy: too many pages are following them.";
    if (later(wait * 1000)) {
      status.textContent = why + " The figures shown are as they were; trying again in " +
        wait + (wait === 1 ? " second." : " seconds.");
    }
  }

  function read(reader) {
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          later(reconnectMs);  // the server ends a long stream; the figures carry on
          return;
        }
        buffer += decoder.decode(chunk.value, {stream: true});
        var blocks = buffer.split(/\r?\n\r?\n/);
        buffer = blocks.pop();
        for (var i = 0; i < blocks.length; i++) {
          var name = "message";
          var data = [];
          var lines = blocks[i].split(/\r?\n/);
          for (var j = 0; j < lines.length; j++) {
            var at = lines[j].indexOf(":");
            var field = at < 0 ? lines[j] : lines[j].slice(0, at);
            var value = at < 0 ? "" : lines[j].slice(at + 1).replace(/^ /, "");
            if (field === "event") {
              name = value;
            } else if (field === "data") {
              data.push(value);
            } else if (field === "retry" && /^\d+$/.test(value)) {
              reconnectMs = parseInt(value, 10);
            }
          }
          if (data.length && dispatch(name, data.join("\n"))) {
            reader.cancel();
            return;
          }
        }
        return pump();
      });
    }
    return pump();
  }

  // The stream, asked about every card still shown as sending: one that finished while no
  // stream was open (the page waited, or reconnected) comes first with its final figures.
  function streamUrl() {
    var ids = [];
    var cards = document.querySelectorAll("[data-broadcast]");
    for (var i = 0; i < cards.length; i++) {
      var state = cards[i].querySelector("[data-figure=state]");
      if (state && state.textContent.trim() === "Sending") {
        ids.push(cards[i].getAttribute("data-broadcast"));
      }
    }
    if (!ids.length) {
      return url;
    }
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "follow=" + encodeURIComponent(ids.join(","));
  }

  function connect() {
    window.fetch(streamUrl(), {credentials: "same-origin", cache: "no-store",
                       headers: {Accept: "text/event-stream"}})
      .then(function (resp) {
        if (resp.status === 429 || resp.status === 503) {
          refused(resp);
          return;
        }
        if (!resp.ok || !resp.body) {
          status.textContent = STOPPED;  // signed out (or no longer allowed): a reload says so
          return;
        }
        failures = 0;
        return read(resp.body.getReader());
      })
      .catch(function () {
        later(reconnectMs);  // the network or the server went away for a moment
      });
  }

  connect();
})();
