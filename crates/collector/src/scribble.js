/*! Scribble browser tracker, served by the collector at /scribble.js.
 *
 *   <script src="https://collector.example/scribble.js" data-write-key="KEY" async></script>
 *
 * Records site_visit (also on single-page-app navigation), form_submit and outbound_click, and
 * exposes scribble.track / identify / alias / consent / flush. Events wait in localStorage and go
 * to the collector in batches: every few seconds, and with navigator.sendBeacon when the page is
 * hidden. A failed send stays queued and is retried later, also on the next page. Do Not Track
 * (or Global Privacy Control) turns it off; scribble.consent(false) stops it and forgets the
 * queue and the ids. Options (data- attributes on the script tag): data-endpoint (the collector's
 * origin, default: where the script came from), data-require-consent (record nothing until
 * scribble.consent(true)).
 */
(function (win, doc) {
  'use strict';
  var script = doc.currentScript || doc.querySelector('script[data-write-key]');
  var pending = win.scribble;
  if (!script || (pending && pending.loaded)) return;

  var KEY = script.getAttribute('data-write-key');
  var ENDPOINT = (script.getAttribute('data-endpoint') || new URL(script.src, location.href).origin)
    + '/v1/events?key=' + encodeURIComponent(KEY);
  var QUEUE = 'scribble_queue', ANON = 'scribble_anonymous_id', USER = 'scribble_user_id',
    CONSENT = 'scribble_consent';
  var BATCH = 50, MAX_QUEUED = 500, INTERVAL = 5000;
  var nav = navigator;
  var memory = {};

  function load(name) {
    try { return localStorage.getItem(name); } catch (e) { return memory[name] || null; }
  }
  function save(name, value) {
    try {
      if (value == null) localStorage.removeItem(name); else localStorage.setItem(name, value);
    } catch (e) { memory[name] = value; }
  }

  function uuid() {
    if (win.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16)), h = [];
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    for (var i = 0; i < 16; i++) h.push((b[i] + 256).toString(16).slice(1));
    h = h.join('');
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join('-');
  }

  var doNotTrack = nav.doNotTrack == '1' || win.doNotTrack == '1' || nav.globalPrivacyControl === true;
  var consentGiven = load(CONSENT);
  function enabled() {
    if (doNotTrack) return false;
    if (consentGiven == 'no') return false;
    return consentGiven == 'yes' || !script.hasAttribute('data-require-consent');
  }

  function anonymousId() {
    var id = load(ANON);
    if (!id) { id = uuid(); save(ANON, id); }
    return id;
  }

  function queued() {
    try { return JSON.parse(load(QUEUE) || '[]'); } catch (e) { return []; }
  }

  var timer = null, sending = false, failures = 0;

  function enqueue(event) {
    if (!enabled()) return;
    event.event_id = uuid();
    event.timestamp = new Date().toISOString();
    event.anonymous_id = anonymousId();
    var user = load(USER);
    if (user && !event.user_id) event.user_id = user;
    var queue = queued();
    queue.push(event);
    save(QUEUE, JSON.stringify(queue.slice(-MAX_QUEUED)));
    if (queue.length >= BATCH) flush(); else schedule(INTERVAL);
  }

  function schedule(delay) {
    if (!timer) timer = setTimeout(function () { timer = null; flush(); }, delay);
  }

  // Takes the sent events out of the stored queue (others may have been added meanwhile).
  function forget(batch) {
    var sent = {};
    batch.forEach(function (event) { sent[event.event_id] = 1; });
    save(QUEUE, JSON.stringify(queued().filter(function (event) { return !sent[event.event_id]; })));
  }

  // Sends the oldest batch. The body is text/plain JSON with the key in the URL: a "simple"
  // request, so no CORS preflight, and the same shape sendBeacon can send. Event ids make a
  // repeated send harmless: the store keeps each id once.
  function flush(closing) {
    if (!enabled()) return;
    var batch = queued().slice(0, BATCH);
    if (!batch.length || (sending && !closing)) return;
    var body = JSON.stringify({ batch: batch });
    if (closing && nav.sendBeacon && nav.sendBeacon(ENDPOINT, body)) return forget(batch);
    sending = true;
    fetch(ENDPOINT, {
      method: 'POST', body: body, keepalive: true, credentials: 'omit',
      headers: { 'Content-Type': 'text/plain' },
    }).then(function (response) {
      // A refusal of the events themselves (4xx other than 408/429) would be refused again.
      var status = response.status;
      if (response.ok || (status >= 400 && status < 500 && status != 408 && status != 429)) {
        failures = 0;
        forget(batch);
        return true;
      }
    }, function () {}).then(function (done) {
      sending = false;
      if (!done) failures++;
      if (queued().length) schedule(done ? 0 : Math.min(60000, 1000 * Math.pow(2, failures)));
    });
  }

  var lastUrl = null;
  function page(properties) {
    var url = location.href;
    var props = {
      url: url, path: location.pathname, referrer: lastUrl || doc.referrer, title: doc.title,
    };
    for (var name in properties) props[name] = properties[name];
    lastUrl = url;
    enqueue({ touchpoint: 'site_visit', channel: 'web', properties: props });
  }
  function navigated() {
    if (location.href != lastUrl) page();
  }

  var api = {
    loaded: true,
    track: function (touchpoint, properties) {
      enqueue({ touchpoint: touchpoint, properties: properties || {} });
    },
    identify: function (userId, traits) {
      if (!userId || !enabled()) return;
      save(USER, String(userId));
      enqueue({ type: 'identify', user_id: String(userId), traits: traits || {} });
    },
    alias: function (previousId, userId) {
      userId = userId || load(USER);
      if (previousId && userId) enqueue({ type: 'alias', user_id: String(userId), previous_id: String(previousId) });
    },
    consent: function (given) {
      consentGiven = given ? 'yes' : 'no';
      save(CONSENT, consentGiven);
      if (!given) { save(QUEUE, null); save(ANON, null); save(USER, null); }
    },
    page: page,
    flush: function () { flush(); },
    anonymousId: function () { return enabled() ? anonymousId() : null; },
  };
  win.scribble = api;

  ['pushState', 'replaceState'].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      navigated();
      return result;
    };
  });
  win.addEventListener('popstate', navigated);

  doc.addEventListener('submit', function (event) {
    var form = event.target;
    enqueue({ touchpoint: 'form_submit', properties: {
      form: form.getAttribute('name') || form.id || '', action: form.action || '', path: location.pathname,
    } });
  }, true);

  doc.addEventListener('click', function (event) {
    var link = event.target.closest && event.target.closest('a[href]');
    if (!link || !/^https?:$/.test(link.protocol) || link.host == location.host) return;
    enqueue({ touchpoint: 'outbound_click', channel: 'web', properties: {
      url: link.href, text: (link.textContent || '').trim().slice(0, 100), path: location.pathname,
    } });
    flush(true);
  }, true);

  function hidden() { flush(true); }
  doc.addEventListener('visibilitychange', function () { if (doc.visibilityState == 'hidden') hidden(); });
  win.addEventListener('pagehide', hidden);

  // Calls made before the script loaded: window.scribble = [['track', 'x', {...}], ...].
  if (pending && pending.length) pending.forEach(function (call) { api[call[0]].apply(api, call.slice(1)); });
  page();
  flush();
})(window, document);
