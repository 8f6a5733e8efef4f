(function () {
  "use strict";
  // Polls status.json; when the report changed (its time aside), fetches the page's content
  // again and swaps it in. Ages ("Since") are counted on from their timestamps meanwhile,
  // as kubectl prints them.
  var main = document.getElementById("status");
  var stamp = document.getElementById("updated");
  var last = null;
  var busy = false;
  function key(r) {
    var c = Object.assign({}, r);
    delete c.time;
    return JSON.stringify(c);
  }
  function age(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 120) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 10) return m + "m" + (s % 60 ? (s % 60) + "s" : "");
    if (m < 180) return m + "m";
    var h = Math.floor(m / 60);
    if (h < 8) return h + "h" + (m % 60 ? (m % 60) + "m" : "");
    if (h < 48) return h + "h";
    var d = Math.floor(h / 24);
    if (h < 24 * 8) return d + "d" + (h % 24 ? (h % 24) + "h" : "");
    return d + "d";
  }
  function ages() {
    var now = Date.now();
    document.querySelectorAll("time[data-since]").forEach(function (t) {
      t.textContent = age(now - Date.parse(t.getAttribute("datetime")));
    });
  }
  function fail(e) {
    stamp.textContent = "not refreshed: " + e.message;
    stamp.className = "stale";
  }
  function tick() {
    if (busy) return;
    busy = true;
    fetch("status.json", { cache: "no-store" })
      .then(function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) throw new Error(body.error || "HTTP " + resp.status);
          return body;
        });
      })
      .then(function (r) {
        stamp.textContent = "read at " + r.time;
        stamp.className = "";
        var k = key(r);
        if (k === last) return null;
        return fetch("fragment", { cache: "no-store" })
          .then(function (resp) {
            if (!resp.ok) throw new Error("HTTP " + resp.status);
            return resp.text();
          })
          .then(function (html) {
            main.innerHTML = html;
            last = k;
          });
      })
      .catch(fail)
      .then(function () {
        ages();
        busy = false;
      });
  }
  tick();
  setInterval(tick, 2000);
})();
