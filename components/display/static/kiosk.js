// The kiosk page: renders the display's state snapshot, live through Server-Sent Events.
// EventSource reconnects by itself after the display or the network drops; while it does,
// the page says "reconnecting" and dims. No polling, nothing loaded from other hosts.
(function () {
  "use strict";
  var body = document.body;
  var RECONNECT_MS = 3000;
  var MAX_CARDS = 10;  // kiosk.css shows at most ten
  var settings = {currency: "USD", locale: "en-US"};

  // A numeric catalog price in the display's currency and locale; any other text as written.
  function formatPrice(price) {
    var text = String(price).trim();
    if (!/^-?\d+(\.\d+)?$/.test(text)) return text;
    try {
      return new Intl.NumberFormat(settings.locale, {style: "currency", currency: settings.currency})
        .format(Number(text));
    } catch (err) {  // a locale or currency this browser does not know
      return text + " " + settings.currency;
    }
  }

  function formatDate(iso) {
    try {
      return new Intl.DateTimeFormat(settings.locale, {dateStyle: "medium", timeZone: "UTC"})
        .format(new Date(iso));
    } catch (err) {
      return iso.slice(0, 10);
    }
  }

  // Columns and rows of the cards grid: a single row of up to five on a landscape screen, two
  // or three columns on a portrait one; kiosk.css sizes the pictures so every row fits.
  function layoutCards() {
    var cards = document.getElementById("cards");
    var n = Math.min(cards.children.length, MAX_CARDS);
    var portrait = window.innerHeight > window.innerWidth;
    var cols = portrait ? (n <= 6 ? 2 : 3) : (n <= 5 ? Math.max(n, 3) : 5);
    cards.style.setProperty("--cols", cols);
    cards.style.setProperty("--rows", Math.max(1, Math.ceil(n / cols)));
  }

  // History tiles that do not fit whole in their box are hidden rather than cut.
  function fitHistory() {
    var history = document.getElementById("history");
    var box = history.getBoundingClientRect();
    [].forEach.call(history.children, function (li) { li.hidden = false; });
    [].forEach.call(history.children, function (li) {
      var r = li.getBoundingClientRect();
      li.hidden = r.bottom > box.bottom + 0.5 || r.right > box.right + 0.5;
    });
  }

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
    if (m.price) info.appendChild(el("div", "price", formatPrice(m.price)));
    if (m.location) info.appendChild(el("div", "location", m.location));
    if (m.also && m.also.length) info.appendChild(el("div", "also", "Also: " + m.also.join(", ")));
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
    settings = {currency: state.currency || "USD", locale: state.locale || "en-US"};
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
    document.getElementById("recent").hidden = state.history.length === 0;

    var notice = document.getElementById("notice");
    notice.textContent = state.notice || "";
    notice.hidden = !state.notice;

    var date = document.getElementById("catalog-date");
    date.textContent = state.catalog_date ? "Catalog of " + formatDate(state.catalog_date) : "";
    date.hidden = !state.catalog_date;
    var online = document.getElementById("online");
    online.textContent = state.online === true ? "Online" : "Offline";
    online.title = state.online === true ? "" : "Showing the catalog saved on this kiosk";
    online.hidden = state.online !== true && state.online !== false;  // no component reports a cloud link
    online.className = "pill" + (state.online === true ? " good" : "");
    var detail = current && current.timings_ms && current.timings_ms.capture_to_publish;
    document.getElementById("footer-detail").textContent = [
      state.items ? state.items + " items in the catalog" : "",
      detail ? "answered in " + Math.round(detail) + " ms" : "",
    ].filter(Boolean).join(" \u00b7 ");
    layoutCards();
    fitHistory();
  }

  function setLive(live) {
    body.dataset.live = live ? "true" : "false";
    var pill = document.getElementById("connection");
    pill.textContent = live ? "Live" : "Reconnecting\u2026";
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

  window.addEventListener("resize", function () { layoutCards(); fitHistory(); });
  render(JSON.parse(document.getElementById("initial-state").textContent));
  connect();
})();
