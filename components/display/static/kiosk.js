// The kiosk page: renders the display's state snapshot, live through Server-Sent Events.
// EventSource reconnects by itself after the display or the network drops; while it does,
// the page says "reconnecting" and dims. No polling, nothing loaded from other hosts.
(function () {
  "use strict";
  var body = document.body;
  var RECONNECT_MS = 3000;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function card(m) {
    var article = el("article", "card");
    article.dataset.itemId = m.item_id;
    article.dataset.category = m.category || "";
    var picture = el("div", "card-image");
    if (m.thumbnail_url) {
      var img = el("img");
      img.src = m.thumbnail_url;
      img.alt = m.title || "";
      img.onerror = function () { picture.replaceChild(el("div", "no-picture", "no picture"), img); };
      picture.appendChild(img);
    } else {
      picture.appendChild(el("div", "no-picture", "no picture"));
    }
    picture.appendChild(el("span", "rank", m.rank));
    article.appendChild(picture);
    var info = el("div", "card-body");
    info.appendChild(el("h2", "title", m.title));
    if (m.price) info.appendChild(el("div", "price", m.price));
    if (m.location) info.appendChild(el("div", "location", m.location));
    if (m.similarity_percent !== null && m.similarity_percent !== undefined) {
      var sim = el("div", "similarity");
      var bar = el("progress");
      bar.max = 100;
      bar.value = m.similarity_percent;
      sim.appendChild(bar);
      sim.appendChild(el("span", "percent", m.similarity_percent + "% similar"));
      info.appendChild(sim);
    }
    article.appendChild(info);
    return article;
  }

  function setPicture(img, empty, base64) {
    if (base64) {
      img.src = "data:image/jpeg;base64," + base64;
      img.hidden = false;
      empty.hidden = true;
    } else {
      img.hidden = true;
      empty.hidden = false;
    }
  }

  function render(state) {
    body.dataset.mode = state.mode;
    var current = state.mode === "idle" ? null : state.current;
    document.getElementById("idle").hidden = state.mode !== "idle";
    document.getElementById("no-match").hidden = state.mode !== "no_match";
    var cards = document.getElementById("cards");
    cards.replaceChildren.apply(cards, current ? current.matches.map(card) : []);
    cards.classList.toggle("two-rows", cards.children.length > 5);
    setPicture(document.getElementById("query-thumbnail"), document.getElementById("query-empty"),
               current && current.thumbnail);

    var history = document.getElementById("history");
    history.replaceChildren.apply(history, state.history.map(function (h) {
      var li = el("li", h.no_match ? "no-match" : "");
      li.title = h.no_match ? "no good match" : h.top_title;
      var src = h.thumbnail ? "data:image/jpeg;base64," + h.thumbnail : h.top_thumbnail_url;
      if (src) { var img = el("img"); img.src = src; img.alt = li.title; li.appendChild(img); }
      return li;
    }));

    var warnings = document.getElementById("warnings");
    warnings.replaceChildren.apply(warnings, state.warnings.map(function (w) { return el("div", "", w); }));
    warnings.hidden = state.warnings.length === 0;

    document.getElementById("index-version").textContent =
      state.index_version ? "catalog " + state.index_version : "catalog not loaded";
    var online = document.getElementById("online");
    online.textContent = state.online === true ? "online" : state.online === false ? "offline" : "cloud link unknown";
    online.className = "pill" + (state.online === true ? " good" : "");
    var detail = current && current.timings_ms && current.timings_ms.capture_to_publish;
    document.getElementById("footer-detail").textContent =
      (state.items ? state.items + " items in the catalog" : "") + (detail ? " \u00b7 answered in " + Math.round(detail) + " ms" : "");
  }

  function setLive(live) {
    body.dataset.live = live ? "true" : "false";
    var pill = document.getElementById("connection");
    pill.textContent = live ? "live" : "reconnecting\u2026";
    pill.className = "pill " + (live ? "good" : "bad");
  }

  function connect() {
    var source = new EventSource("/events");
    source.addEventListener("state", function (event) {
      setLive(true);
      try { render(JSON.parse(event.data)); } catch (err) { console.error("bad state event", err); }
    });
    source.onopen = function () { setLive(true); };
    source.onerror = function () {
      setLive(false);
      if (source.readyState === EventSource.CLOSED) {  // refused (e.g. 503): EventSource gives up, we do not
        source.close();
        setTimeout(connect, RECONNECT_MS);
      }
    };
  }

  render(JSON.parse(document.getElementById("initial-state").textContent));
  connect();
})();
