/* mdp dashboard: a live view of /api/v1/stream. No framework, no dependencies.
 * Server strings only ever reach the page through textContent / attributes. */
'use strict';

(function () {
  const WINDOW_S = 15 * 60;     // chart span
  const STALE_MS = 3000;        // no message for this long: show "reconnecting"
  const RESTART_MS = 10000;     // ...and after this long reopen the stream ourselves
  const GAP_S = 5;              // holes longer than this break the chart line
  const COALESCE_S = 0.5;       // live points closer than this share one chart point
  const LEVELS = ['ok', 'soft', 'hard'];

  const app = {
    state: null,          // last state object applied
    lastMsgAt: 0,         // Date.now() of the last state received
    startedAt: Date.now(),
    samples: [],          // chart points {t, queue_depth, level, scale}
    clockOffset: 0,       // server clock minus browser clock, seconds (from history)
    historyLoaded: false,
    es: null,
    openedAt: 0,
    retryMs: 1000,
    retryTimer: 0,
    pollTimer: 0,
    drawQueued: false,
    lastDrawAt: 0,
    hoverX: null,         // pointer x over the chart, px
  };

  const $ = (id) => document.getElementById(id);
  let svgNS = '';         // taken from the inline <svg>, so no URL is spelled out here

  /* ---------------- small helpers ---------------- */

  /* A finite number, or NaN. Numeric strings are accepted too. */
  function num(x) {
    if (typeof x === 'string' && x.trim() !== '') x = Number(x);
    return typeof x === 'number' && isFinite(x) ? x : NaN;
  }

  function levelOf(x) {
    const l = String(x == null ? '' : x).toLowerCase();
    return LEVELS.includes(l) ? l : 'unknown';
  }

  function levelLabel(l) {
    return l === 'unknown' ? '—' : l.toUpperCase();
  }

  function fmtInt(n) {
    n = num(n);
    if (isNaN(n)) return '—';
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function fmtDec(n) {
    n = num(n);
    if (isNaN(n)) return '—';
    if (Number.isInteger(n)) return fmtInt(n);
    const a = Math.abs(n);
    return n.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2);
  }

  function fmtRate(r) {
    return isNaN(num(r)) ? '—' : fmtDec(r) + '/s';
  }

  function fmtScale(s) {
    return isNaN(num(s)) ? '—' : num(s).toFixed(2) + '×';
  }

  function fmtPct(f) {
    f = num(f);
    if (isNaN(f)) return '—';
    const p = f * 100;
    return (Math.abs(p - Math.round(p)) < 0.05 ? Math.round(p) : p.toFixed(1)) + '%';
  }

  function fmtDuration(s) {
    s = num(s);
    if (isNaN(s)) return '—';
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 60) return Math.round(s) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.floor(s % 60) + ' s';
    const h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + (m % 60) + ' min';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }

  function fmtCompact(n) {
    if (n >= 1e6) return trimZero((n / 1e6).toFixed(1)) + 'M';
    if (n >= 1e3) return trimZero((n / 1e3).toFixed(1)) + 'k';
    return String(Math.round(n));
  }

  function trimZero(s) {
    return s.replace(/\.0$/, '');
  }

  function pad2(n) {
    return String(n).padStart(2, '0');
  }

  function fmtClock(tSec, withSeconds) {
    const d = new Date(tSec * 1000);
    const hm = pad2(d.getHours()) + ':' + pad2(d.getMinutes());
    return withSeconds ? hm + ':' + pad2(d.getSeconds()) : hm;
  }

  function setText(node, text) {
    if (node && node.textContent !== text) node.textContent = text;
  }

  function setAttr(node, name, value) {
    if (node && node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  function make(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  /* Digits stay plain in the text ("9500"); the CSS draws the group separators. */
  function setGroupedInt(node, n) {
    n = num(n);
    const key = isNaN(n) ? '' : String(Math.round(n));
    if (node.dataset.value === key && node.firstChild) return;
    node.dataset.value = key;
    if (!key) {
      node.textContent = '—';
      return;
    }
    const groups = fmtInt(n).split(',');
    node.replaceChildren(...groups.map((g, i) => make('span', i ? 'grp' : '', g)));
  }

  /* Overall scale: the top-level `scale` when the server sends one, else what the
   * feedback-driven providers run at, else the policy value for the level. */
  function currentScale(s) {
    if (!isNaN(num(s.scale))) return num(s.scale);
    const fed = (s.providers || []).find((p) => p && p.feedback !== false && !isNaN(num(p.scale)));
    if (fed) return num(fed.scale);
    const policy = s.thresholds && s.thresholds.scale;
    const v = policy ? num(policy[levelOf(s.level)]) : NaN;
    return isNaN(v) ? null : v;
  }

  /* ---------------- tables ---------------- */

  function headerLabels(table) {
    return Array.from(table.tHead ? table.tHead.rows[0].cells : [], (th) => th.textContent.trim());
  }

  function updateCell(td, spec, label) {
    const c = spec !== null && typeof spec === 'object' ? spec : { text: String(spec) };
    setAttr(td, 'class', c.cls || '');
    if (label) setAttr(td, 'data-label', label);
    if (c.title) setAttr(td, 'title', c.title);
    else td.removeAttribute('title');
    if (c.span) {
      let span = td.firstElementChild;
      if (!span) {
        span = make('span');
        td.replaceChildren(span);
      }
      setAttr(span, 'class', c.span);
      setText(span, c.text);
      return;
    }
    if (c.bar == null) {
      setText(td, c.text);
      return;
    }
    let val = td.querySelector('.val');
    if (!val) {
      val = make('span', 'val');
      val.append(make('span', 'bar'), make('span', 'txt'));
      td.replaceChildren(val);
    }
    const v = Math.max(0, Math.min(1, num(c.bar) || 0));
    val.firstChild.style.setProperty('--v', String(v));
    setText(val.lastChild, c.text);
  }

  /* Keyed update: rows are created once and then only their text changes. */
  function syncRows(table, items, keyOf, cellsOf, rowClass) {
    const tbody = table.tBodies[0];
    const labels = headerLabels(table);
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) old.set(tr.dataset.key, tr);
    items.forEach((item, i) => {
      const key = String(keyOf(item, i));
      const cells = cellsOf(item);
      let tr = old.get(key);
      old.delete(key);
      if (!tr || tr.cells.length !== cells.length) {
        if (tr) tr.remove();
        tr = make('tr');
        tr.dataset.key = key;
        cells.forEach(() => tr.append(make('td')));
      }
      cells.forEach((c, j) => updateCell(tr.cells[j], c, labels[j]));
      setAttr(tr, 'class', rowClass ? rowClass(item) : '');
      if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    });
    old.forEach((tr) => tr.remove());
    const empty = table.parentElement.querySelector('.empty');
    if (empty) empty.hidden = items.length > 0;
  }

  /* ---------------- render: one function per panel ---------------- */

  function renderLevel(s) {
    const lvl = levelOf(s.level);
    const badge = $('level');
    setText(badge, levelLabel(lvl));
    setAttr(badge, 'data-level', lvl);
    setAttr(badge.closest('.card'), 'data-level', lvl);

    const raw = levelOf(s.raw_level);
    let rawText = s.raw_level == null ? '—' : levelLabel(raw);
    if (s.raw_level != null && raw !== lvl) rawText += ' (held)';
    setText($('raw-level'), rawText);
    let scale = fmtScale(currentScale(s));
    if (!isNaN(num(s.target_scale)) && Math.abs(num(s.target_scale) - currentScale(s)) > 0.005) {
      scale += ' → ' + fmtScale(s.target_scale);
    }
    setText($('level-scale'), scale);
    setText($('flaps'), fmtInt(s.flaps_suppressed));
    const title = levelLabel(lvl) + ' · ' + fmtInt(s.queue_depth) + ' · mdp';
    if (document.title !== title) document.title = title;
  }

  function renderDepth(s) {
    const depth = num(s.queue_depth);
    const cap = num(s.capacity);
    const th = s.thresholds || {};
    setGroupedInt($('queue-depth'), depth);
    setText($('capacity'), fmtInt(cap));

    const util = cap > 0 ? depth / cap : NaN;
    $('util-fill').style.width = isNaN(util) ? '0' : Math.min(100, util * 100).toFixed(1) + '%';
    // Coloured by where the depth stands against the watermarks, not by the level
    // (which lags by the hysteresis and the relax hold).
    setAttr($('util-fill'), 'data-zone', depthZone(util, num(th.soft_watermark), num(th.hard_watermark)));
    placeMark($('mark-soft'), num(th.soft_watermark));
    placeMark($('mark-hard'), num(th.hard_watermark));

    let text = isNaN(util) ? 'capacity unknown' : fmtPct(util) + ' of capacity';
    if (!isNaN(num(th.soft_watermark)) && !isNaN(num(th.hard_watermark))) {
      text += ' · SOFT at ' + fmtPct(th.soft_watermark) + ', HARD at ' + fmtPct(th.hard_watermark);
    }
    // A store mdp cannot read is no empty queue: say so, with the last depth it reported.
    const blind = s.store_reachable === false;
    setAttr($('util-fill').closest('.card') || document.body, 'data-signal', blind ? 'lost' : 'ok');
    if (blind) {
      const last = (s.coordinators || []).filter(Boolean).map((c) => num(c.queue_size)).filter((v) => !isNaN(v));
      text = 'store unreachable: depth unknown' +
        (last.length ? ' (last reported ' + fmtInt(Math.max.apply(null, last)) + ', stale)' : ' (never reached)') +
        ' · level held, KEDA falls back';
    }
    setText($('util-text'), text);
  }

  /* Which side of the watermarks a depth fraction is on: ok, soft or hard. */
  function depthZone(util, soft, hard) {
    if (isNaN(util)) return 'ok';
    if (!isNaN(hard) && util >= hard) return 'hard';
    if (!isNaN(soft) && util >= soft) return 'soft';
    return 'ok';
  }

  function placeMark(mark, frac) {
    mark.hidden = isNaN(frac);
    if (!isNaN(frac)) mark.style.left = 'calc(' + (Math.min(1, frac) * 100).toFixed(1) + '% - 1px)';
  }

  /* How long the current level has held, from the chart samples. */
  function renderLevelAge(s) {
    const lvl = levelOf(s.level);
    const arr = app.samples;
    let i = arr.length - 1;
    while (i > 0 && arr[i - 1].level === lvl && arr[i].t - arr[i - 1].t <= GAP_S) i--;
    let text = '—';
    if (arr.length && arr[arr.length - 1].level === lvl) {
      const held = arr[arr.length - 1].t - arr[i].t;
      text = i === 0 && held >= WINDOW_S - 1 ? 'over 15 min' : fmtDuration(held);
    }
    setText($('level-age'), text);
  }

  function renderDepthFacts(s) {
    const since = serverNow() - WINDOW_S;
    const peak = app.samples.reduce((m, p) => (p.t >= since ? Math.max(m, p.queue_depth) : m), num(s.queue_depth) || 0);
    setText($('depth-peak'), fmtInt(peak));
    const cs = (s.coordinators || []).filter(Boolean);
    const stale = cs.filter((c) => c.stale).length;
    setText($('coord-count'), cs.length ? cs.length + (stale ? ' (' + stale + ' stale)' : ', none stale') : 'none yet');
  }

  function renderReplicas(s) {
    const a = s.autoscaler;
    const line = $('replica-trigger');
    $('trigger-details').hidden = !a || !(a.triggers || []).length;
    if (!a) {
      setText($('desired-replicas'), '—');
      setText($('desired-unit'), 'replicas wanted');
      setText(line, 'Not reported by this server version.');
      setText($('replica-reason'), '—');
      setText($('replica-bounds'), '—');
    } else {
      const want = num(a.desired_replicas);
      setText($('desired-replicas'), fmtInt(want));
      setText($('desired-unit'), want === 1 ? 'replica wanted' : 'replicas wanted');
      renderTriggerLine(line, a);
      setText($('replica-reason'), a.reason ? 'Why: ' + a.reason + (a.keda_version ? ' (KEDA ' + a.keda_version + ')' : '') : '—');
      setText($('replica-bounds'), fmtInt(a.min_replicas) + ' – ' + fmtInt(a.max_replicas));
      syncRows(
        $('trigger-rows').parentElement,
        a.triggers || [],
        (t, i) => (t && t.name) || i,
        (t) => [String(t.name || '?'), { text: fmtDec(t.value), cls: 'n' }, { text: fmtDec(t.threshold), cls: 'n' }, { text: fmtInt(t.desired), cls: 'n' }],
        (t) => (t.name === a.trigger ? 'active' : '')
      );
    }
    const r = s.replicas;
    setText($('replica-count'), r ? fmtInt(r.count) + (r.source ? ' (' + r.source + ')' : '') : '—');
    setText($('replica-share'), r ? fmtPct(r.share) + ' of each provider' : '—');
  }

  function renderTriggerLine(line, a) {
    const t = (a.triggers || []).find((x) => x && x.name === a.trigger);
    const key = JSON.stringify([a.trigger, t && t.value, t && t.threshold, t && t.desired, a.desired_replicas]);
    if (line.dataset.key === key) return;
    line.dataset.key = key;
    if (!a.trigger) {
      line.replaceChildren('No trigger above its threshold: holding at the minimum.');
      return;
    }
    const parts = ['Driven by ', make('strong', '', String(a.trigger))];
    if (t) {
      parts.push(': ' + fmtDec(t.value) + ' ÷ ' + fmtDec(t.threshold) + ' per replica → ' + fmtInt(t.desired));
      if (num(t.desired) !== num(a.desired_replicas)) parts.push(' (clamped to ' + fmtInt(a.desired_replicas) + ')');
    }
    line.replaceChildren(...parts);
  }

  function renderProviders(s) {
    syncRows(
      $('providers'),
      (s.providers || []).filter(Boolean),
      (p, i) => p.name || i,
      providerCells
    );
  }

  function providerCells(p) {
    let scale = fmtScale(p.scale);
    const target = num(p.target_scale);
    if (!isNaN(target) && Math.abs(target - num(p.scale)) > 0.005) scale += ' → ' + fmtScale(target);
    else if (num(p.scale) === 0 && p.feedback !== false) scale = 'paused';
    return [
      { text: String(p.name || '?'), cls: 'name' },
      { text: scale, cls: 'n scale', bar: p.scale },
      { text: fmtRate(p.base_rate), cls: 'n' },
      { text: fmtRate(p.effective_rate), cls: 'n' },
      { text: fmtDec(p.effective_burst) + ' / ' + fmtDec(p.burst), cls: 'n', title: 'effective / configured burst' },
      { text: fmtInt(p.tokens_granted), cls: 'n' },
      { text: fmtInt(p.requests_throttled), cls: 'n' },
      pacingCell(p.pacing),
      p.feedback === false ? 'off' : 'on',
    ];
  }

  /* A paced provider: the provider's own pushback factor (the lowest of the
   * provider-wide one and each class's), the leases held, and every rule in
   * force in the tooltip. A plain provider is one token bucket. */
  function pacingCell(pacing) {
    if (!pacing || typeof pacing !== 'object') return { text: 'bucket', cls: 'muted' };
    let factor = num(pacing.pushback_factor);
    let worst = '';
    const classes = pacing.class_factors && typeof pacing.class_factors === 'object' ? pacing.class_factors : {};
    for (const [name, value] of Object.entries(classes)) {
      if (num(value) < factor || isNaN(factor)) {
        factor = num(value);
        worst = name;
      }
    }
    let text = fmtScale(factor);
    if (worst) text += ' ' + worst;
    const open = num(pacing.leases_held);
    if (open > 0) text += ' · ' + fmtInt(open) + ' open';
    const rules = Array.isArray(pacing.rules) ? pacing.rules : [];
    const title = rules
      .filter(Boolean)
      .map((r) => String(r.name) + ' (' + String(r.scope) + '): ' + String(r.in_force) +
        (r.in_force !== r.limit ? ' of ' + String(r.limit) : ''))
      .join('\n');
    return { text, cls: factor < 1 ? 'n pushed' : 'n', title: 'provider pushback factor\n' + title };
  }

  function renderCoordinators(s) {
    syncRows(
      $('coordinators'),
      (s.coordinators || []).filter(Boolean),
      (c, i) => c.coordinator_id || i,
      coordinatorCells,
      (c) => (c.stale ? 'is-stale' : '')
    );
  }

  function coordinatorCells(c) {
    const lvl = levelOf(c.level);
    const util = num(c.utilization);
    let depth = fmtInt(c.queue_size) + ' / ' + fmtInt(c.capacity);
    if (!isNaN(util)) depth += ' · ' + fmtPct(util);
    let source = c.source ? String(c.source) : '—';
    if (c.reason) source += ' · ' + String(c.reason);
    return [
      { text: String(c.coordinator_id || '?'), cls: 'name' },
      { text: depth, cls: 'n' },
      { text: levelLabel(lvl), span: 'lvl lvl-' + lvl },
      { text: fmtDuration(c.age_seconds), cls: 'n' },
      { text: c.stale ? 'STALE' : 'no', cls: c.stale ? 'yes' : '' },
      source,
    ];
  }

  function renderThresholds(s) {
    const th = s.thresholds;
    if (!th) return;
    const cap = num(s.capacity);
    const at = (f) => fmtPct(f) + (cap > 0 && !isNaN(num(f)) ? ' (' + fmtInt(f * cap) + ')' : '');
    setText($('th-soft'), '≥ ' + at(th.soft_watermark));
    setText($('th-hard'), '≥ ' + at(th.hard_watermark));
    setText($('th-hard-release'), '< ' + at(th.hard_release));
    setText($('th-soft-release'), '< ' + at(th.soft_release));
    const sc = th.scale || {};
    setText($('th-scale'), [sc.ok, sc.soft, sc.hard].map((v) => (isNaN(num(v)) ? '—' : num(v).toFixed(2))).join(' / '));
    setText($('th-relax'), fmtDuration(th.relax_after_seconds));
    setText($('th-ramp'), num(th.recovery_ramp_seconds) > 0 ? fmtDuration(th.recovery_ramp_seconds) : 'off');
    setText($('th-stale'), th.stale_level ? levelLabel(levelOf(th.stale_level)) : '—');
    setText($('th-ttl'), num(th.feedback_ttl_seconds) > 0 ? fmtDuration(th.feedback_ttl_seconds) : 'off');
  }

  function renderFooter(s) {
    setText($('version'), s.version ? String(s.version) : '—');
    setText($('uptime'), fmtDuration(s.uptime_seconds));
    setText($('seq'), fmtInt(s.seq));
  }

  function applyState(s) {
    app.state = s;
    renderLevel(s);
    renderDepth(s);
    renderReplicas(s);
    renderProviders(s);
    renderCoordinators(s);
    renderThresholds(s);
    renderFooter(s);
    addSample(liveSample(s));
    renderDepthFacts(s);
    renderLevelAge(s);
    scheduleDraw();
  }

  /* ---------------- chart data ---------------- */

  function serverNow() {
    return Date.now() / 1000 + app.clockOffset;
  }

  function liveSample(s) {
    return { t: serverNow(), queue_depth: num(s.queue_depth), level: levelOf(s.level), scale: currentScale(s) };
  }

  function addSample(p) {
    if (isNaN(p.queue_depth)) return;
    const arr = app.samples;
    const last = arr[arr.length - 1];
    if (last && p.t < last.t) return;
    if (last && p.t - last.t < COALESCE_S && p.level === last.level) {
      last.queue_depth = p.queue_depth;
      last.scale = p.scale;
    } else {
      arr.push(p);
    }
    const cutoff = serverNow() - WINDOW_S - 60;
    let drop = 0;
    while (drop < arr.length && arr[drop].t < cutoff) drop++;
    if (drop) arr.splice(0, drop);
  }

  function normSample(x) {
    const scale = num(x && x.scale);
    return {
      t: num(x && x.t),
      queue_depth: num(x && x.queue_depth),
      level: levelOf(x && x.level),
      scale: isNaN(scale) ? null : scale,
    };
  }

  async function loadHistory() {
    let body;
    try {
      const r = await fetch('api/v1/history', { cache: 'no-store' });
      if (!r.ok) return;
      body = await r.json();
    } catch (e) {
      return; // older server or network trouble: the chart fills from the stream
    }
    const hist = (body && Array.isArray(body.samples) ? body.samples : [])
      .map(normSample)
      .filter((p) => !isNaN(p.t) && !isNaN(p.queue_depth))
      .sort((a, b) => a.t - b.t);
    if (!hist.length) return;
    const first = hist[0].t;
    const last = hist[hist.length - 1].t;
    if (!app.historyLoaded) {
      // Align live points with the server's clock if the two disagree noticeably.
      const skew = last - Date.now() / 1000;
      app.clockOffset = Math.abs(skew) > 5 ? skew : 0;
      app.samples.forEach((p) => { p.t += app.clockOffset; });
      app.historyLoaded = true;
    }
    const before = app.samples.filter((p) => p.t < first);
    const after = app.samples.filter((p) => p.t > last);
    app.samples = before.concat(hist, after);
    scheduleDraw();
  }

  /* ---------------- chart drawing (hand-made SVG) ---------------- */

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(svgNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  function scheduleDraw() {
    if (app.drawQueued) return;
    app.drawQueued = true;
    requestAnimationFrame(drawChart);
  }

  /* Split samples into runs without holes longer than GAP_S. */
  function splitRuns(pts) {
    const runs = [];
    let cur = [];
    pts.forEach((p, i) => {
      if (i && p.t - pts[i - 1].t > GAP_S) {
        runs.push(cur);
        cur = [];
      }
      cur.push(p);
    });
    if (cur.length) runs.push(cur);
    return runs;
  }

  function chartGeometry(box, pts) {
    const s = app.state || {};
    const cap = num(s.capacity) > 0 ? num(s.capacity) : 0;
    const maxDepth = pts.reduce((m, p) => Math.max(m, p.queue_depth), 0);
    const hasScale = pts.some((p) => p.scale != null);
    const maxScale = pts.reduce((m, p) => Math.max(m, p.scale == null ? 0 : p.scale), 1);
    const narrow = box.width < 520;
    const m = { l: narrow ? 38 : 48, r: narrow ? 8 : 14, t: 10, b: 24 };
    const laneH = hasScale ? (narrow ? 34 : 44) : 0;
    const laneGap = hasScale ? 12 : 0;
    const iw = Math.max(10, box.width - m.l - m.r);
    const ih = Math.max(10, box.height - m.t - m.b - laneH - laneGap);
    const laneTop = m.t + ih + laneGap;
    const step = niceStep(Math.max(cap, maxDepth, 10) / (ih < 170 ? 4 : 5));
    const yTop = Math.ceil(Math.max(cap, maxDepth, 10) / step) * step;
    const t1 = Math.max(serverNow(), pts.length ? pts[pts.length - 1].t : 0);
    const t0 = t1 - WINDOW_S;
    return {
      W: box.width, H: box.height, m, iw, ih, step, yTop, t0, t1, cap, hasScale, maxScale, narrow,
      laneTop, laneH, bottom: hasScale ? laneTop + laneH : m.t + ih,
      x: (t) => m.l + ((t - t0) / WINDOW_S) * iw,
      y: (v) => m.t + ih - (v / yTop) * ih,
      ys: (v) => laneTop + laneH - (v / maxScale) * laneH,
    };
  }

  /* Background bands in the level's colour, over the depth plot and the scale lane. */
  function drawBands(g, pts, G) {
    const out = svgEl('g', { class: 'bands' });
    let start = null;
    let level = null;
    let end = null;
    const flush = () => {
      if (start == null || level === 'unknown') return;
      const x0 = Math.max(G.m.l, G.x(start));
      const x1 = Math.min(G.m.l + G.iw, G.x(end));
      if (x1 > x0) out.append(svgEl('rect', { class: 'band-' + level, x: x0, y: G.m.t, width: x1 - x0, height: G.bottom - G.m.t }));
    };
    pts.forEach((p, i) => {
      const next = pts[i + 1];
      const segEnd = next && next.t - p.t <= GAP_S ? next.t : p.t + Math.min(1, G.t1 - p.t);
      if (start != null && (p.level !== level || p.t - end > 0.001)) {
        flush();
        start = null;
      }
      if (start == null) {
        start = p.t;
        level = p.level;
      }
      end = segEnd;
    });
    flush();
    g.append(out);
  }

  function drawGrid(g, G) {
    const grid = svgEl('g', { class: 'grid' });
    const labels = svgEl('g', { class: 'y-axis' });
    for (let v = 0; v <= G.yTop + 1e-9; v += G.step) {
      const y = G.y(v);
      grid.append(svgEl('line', { x1: G.m.l, x2: G.m.l + G.iw, y1: y, y2: y }));
      if (v > 0 || !G.hasScale) labels.append(svgEl('text', { x: G.m.l - 6, y: y, dy: '0.32em', 'text-anchor': 'end' }, fmtCompact(v)));
    }
    const stepS = [60, 120, 180, 300].find((s) => (G.iw / WINDOW_S) * s >= (G.narrow ? 70 : 64)) || 300;
    const xs = svgEl('g', { class: 'x-axis' });
    for (let t = Math.ceil(G.t0 / stepS) * stepS; t <= G.t1; t += stepS) {
      const x = G.x(t);
      grid.append(svgEl('line', { x1: x, x2: x, y1: G.m.t, y2: G.bottom }));
      xs.append(svgEl('text', { x: x, y: G.H - 6, 'text-anchor': 'middle' }, fmtClock(t)));
    }
    g.append(grid, labels, xs);
  }

  function drawWatermarks(g, G) {
    const th = (app.state && app.state.thresholds) || {};
    if (!G.cap) return;
    const lines = [
      [th.soft_release, 'wm wm-release', 'release', 'SOFT→OK '],
      [th.hard_release, 'wm wm-release', 'release', 'HARD→SOFT '],
      [th.soft_watermark, 'wm wm-soft', 'soft', 'SOFT '],
      [th.hard_watermark, 'wm wm-hard', 'hard', 'HARD '],
    ];
    const out = svgEl('g', { class: 'watermarks' });
    const labels = svgEl('g', { class: 'watermark-labels' });
    for (const [frac, cls, labelCls, name] of lines) {
      if (isNaN(num(frac))) continue;
      const y = G.y(frac * G.cap);
      out.append(svgEl('line', { class: cls, x1: G.m.l, x2: G.m.l + G.iw, y1: y, y2: y }));
      labels.append(svgEl('text', { class: 'wm-label ' + labelCls, x: G.m.l + 6, y: y - 4 }, name + fmtPct(frac)));
    }
    g.append(out);
    return labels; // drawn last so the depth line never hides them
  }

  function drawDepth(g, runs, G) {
    let line = '';
    let area = '';
    const base = G.y(0).toFixed(1);
    for (const run of runs) {
      const pts = run.map((p) => G.x(p.t).toFixed(1) + ',' + G.y(p.queue_depth).toFixed(1));
      line += 'M' + pts.join('L');
      area += 'M' + pts[0].split(',')[0] + ',' + base + 'L' + pts.join('L') + 'L' + pts[pts.length - 1].split(',')[0] + ',' + base + 'Z';
    }
    if (area) g.append(svgEl('path', { class: 'depth-area', d: area }));
    if (line) g.append(svgEl('path', { class: 'depth-line', d: line }));
  }

  /* The rate scale gets its own lane under the depth plot (secondary axis, 0..1). */
  function drawScaleLane(g, runs, G) {
    if (!G.hasScale) return;
    const out = svgEl('g', { class: 'scale-lane' });
    out.append(svgEl('rect', { class: 'lane-bg', x: G.m.l, y: G.laneTop, width: G.iw, height: G.laneH }));
    const ticks = G.maxScale > 1 ? [0, G.maxScale] : [0, 1];
    for (const v of ticks) {
      const y = G.ys(v);
      out.append(svgEl('line', { class: 'lane-tick', x1: G.m.l, x2: G.m.l + G.iw, y1: y, y2: y }));
      out.append(svgEl('text', { x: G.m.l - 6, y: y, dy: '0.32em', 'text-anchor': 'end' }, trimZero(v.toFixed(1)) + '×'));
    }
    let line = '';
    let area = '';
    const base = G.ys(0).toFixed(1);
    for (const run of runs) {
      for (const seg of scaleSegments(run, G)) {
        line += seg;
        const xs = seg.match(/[MH](-?[\d.]+)/g).map((s) => s.slice(1));
        area += seg.replace(/^M([-\d.]+),/, 'M$1,' + base + 'V') + 'V' + base + 'H' + xs[0] + 'Z';
      }
    }
    if (area) out.append(svgEl('path', { class: 'scale-area', d: area }));
    if (line) out.append(svgEl('path', { class: 'scale-line', d: line }));
    out.append(svgEl('text', { class: 'lane-label', x: G.m.l + 6, y: G.laneTop + 12 }, 'rate scale'));
    g.append(out);
  }

  /* Scale is a step function: each value holds until the next sample. */
  function scaleSegments(run, G) {
    const segs = [];
    let d = '';
    run.forEach((p, i) => {
      if (p.scale == null) {
        if (d) segs.push(d);
        d = '';
        return;
      }
      const x = G.x(p.t).toFixed(1);
      const y = G.ys(p.scale).toFixed(1);
      d += d ? 'H' + x + 'V' + y : 'M' + x + ',' + y;
      if (i === run.length - 1) d += 'H' + (G.x(p.t) + 0.01).toFixed(1);
    });
    if (d) segs.push(d);
    return segs;
  }

  function drawNow(g, pts, G) {
    const last = pts[pts.length - 1];
    if (!last || G.t1 - last.t > GAP_S) return;
    g.append(svgEl('circle', { class: 'now-dot', cx: G.x(last.t), cy: G.y(last.queue_depth), r: 4 }));
  }

  function nearestSample(pts, t) {
    let lo = 0;
    let hi = pts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pts[mid].t < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(pts[lo - 1].t - t) < Math.abs(pts[lo].t - t)) lo--;
    return pts[lo];
  }

  function drawHover(g, pts, G) {
    const tip = $('chart-tip');
    const hx = app.hoverX;
    if (hx == null || !pts.length || hx < G.m.l || hx > G.m.l + G.iw) {
      tip.hidden = true;
      return;
    }
    const p = nearestSample(pts, G.t0 + ((hx - G.m.l) / G.iw) * WINDOW_S);
    const x = G.x(p.t);
    if (Math.abs(x - hx) > 24) {
      tip.hidden = true;
      return;
    }
    g.append(svgEl('line', { class: 'hover-line', x1: x, x2: x, y1: G.m.t, y2: G.bottom }));
    g.append(svgEl('circle', { class: 'hover-dot', cx: x, cy: G.y(p.queue_depth), r: 4.5 }));
    const rows = [
      [fmtClock(p.t, true), ''],
      ['Depth ', fmtInt(p.queue_depth)],
      ['Level ', levelLabel(p.level)],
    ];
    if (p.scale != null) rows.push(['Scale ', fmtScale(p.scale)]);
    tip.replaceChildren(...rows.map(([k, v], i) => {
      const div = make('div', '', k);
      if (v) div.append(make('b', '', v));
      if (i === 0) div.className = 'muted';
      return div;
    }));
    tip.hidden = false;
    const w = tip.offsetWidth;
    tip.style.left = (x + 12 + w > G.W ? x - 12 - w : x + 12) + 'px';
  }

  function chartSummary(pts, G) {
    if (!pts.length) return 'Queue depth chart, waiting for data';
    const last = pts[pts.length - 1];
    const peak = pts.reduce((m, p) => Math.max(m, p.queue_depth), 0);
    const counts = { ok: 0, soft: 0, hard: 0 };
    pts.forEach((p) => { if (p.level in counts) counts[p.level]++; });
    return 'Queue depth over the last 15 minutes: now ' + fmtInt(last.queue_depth) +
      (G.cap ? ' of ' + fmtInt(G.cap) : '') + ', peak ' + fmtInt(peak) + ', level now ' + levelLabel(last.level) +
      '. Samples at SOFT: ' + counts.soft + ', at HARD: ' + counts.hard + '.';
  }

  function drawChart() {
    app.drawQueued = false;
    app.lastDrawAt = Date.now();
    const box = $('chart');
    const svg = $('chart-svg');
    const size = { width: box.clientWidth, height: box.clientHeight };
    if (!size.width || !size.height || !svgNS) return;
    const t0 = serverNow() - WINDOW_S - GAP_S;
    const pts = app.samples.filter((p) => p.t >= t0);
    const G = chartGeometry(size, pts);
    const g = svgEl('g', {});
    drawBands(g, pts, G);
    drawGrid(g, G);
    const wmLabels = drawWatermarks(g, G);
    const runs = splitRuns(pts);
    drawDepth(g, runs, G);
    drawScaleLane(g, runs, G);
    if (wmLabels) g.append(wmLabels);
    drawNow(g, pts, G);
    drawHover(g, pts, G);
    setAttr(svg, 'viewBox', '0 0 ' + G.W + ' ' + G.H);
    svg.replaceChildren(g);
    $('chart-empty').hidden = pts.length > 0;
    setAttr(box, 'aria-label', chartSummary(pts, G));
  }

  function initChart() {
    const svg = $('chart-svg');
    svgNS = svg.namespaceURI;
    svg.addEventListener('pointermove', (e) => {
      app.hoverX = e.clientX - svg.getBoundingClientRect().left;
      scheduleDraw();
    });
    svg.addEventListener('pointerleave', () => {
      app.hoverX = null;
      scheduleDraw();
    });
    if ('ResizeObserver' in window) new ResizeObserver(scheduleDraw).observe($('chart'));
    else window.addEventListener('resize', scheduleDraw);
  }

  /* ---------------- connection ---------------- */

  function setConn(name) {
    if (document.body.dataset.conn === name) return;
    document.body.dataset.conn = name;
    const c = $('connection');
    setText(c, name);
    setAttr(c, 'data-state', name);
    $('stale-banner').hidden = name !== 'reconnecting';
  }

  function receive(s) {
    if (!s || typeof s !== 'object' || isOlder(s)) return;
    const wasDown = app.lastMsgAt && Date.now() - app.lastMsgAt > GAP_S * 1000;
    app.lastMsgAt = Date.now();
    app.retryMs = 1000;
    setConn('live');
    applyState(s);
    if (wasDown) loadHistory(); // fill the hole the outage left in the chart
  }

  /* A snapshot older than the one shown (same server run, lower seq) is dropped. */
  function isOlder(s) {
    const cur = app.state;
    if (!cur) return false;
    return num(s.seq) < num(cur.seq) && !(num(s.uptime_seconds) < num(cur.uptime_seconds));
  }

  function onStreamMessage(e) {
    let s;
    try {
      s = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    receive(s);
  }

  function openStream() {
    clearTimeout(app.retryTimer);
    closeStream();
    if (!('EventSource' in window)) {
      startPolling();
      return;
    }
    const es = new EventSource('api/v1/stream');
    app.es = es;
    app.openedAt = Date.now();
    es.addEventListener('state', onStreamMessage);
    es.onmessage = onStreamMessage; // unnamed events carry the same JSON
    es.onerror = () => {
      if (app.es !== es) return;
      setConn('reconnecting');
      // The browser retries by itself unless the server refused the stream outright.
      if (es.readyState === EventSource.CLOSED) scheduleReopen();
    };
  }

  function closeStream() {
    if (app.es) {
      app.es.close();
      app.es = null;
    }
  }

  function scheduleReopen() {
    clearTimeout(app.retryTimer);
    app.retryTimer = setTimeout(openStream, app.retryMs);
    app.retryMs = Math.min(app.retryMs * 2, 15000);
  }

  function startPolling() {
    if (app.pollTimer) return;
    app.pollTimer = setInterval(fetchState, 1000);
  }

  async function fetchState() {
    try {
      const r = await fetch('api/v1/state', { cache: 'no-store' });
      if (r.ok) receive(await r.json());
    } catch (e) {
      /* the watchdog reports the outage */
    }
  }

  function renderStaleness() {
    const now = Date.now();
    let text = '';
    if (!app.lastMsgAt) {
      text = 'No data from the server yet. Retrying…';
    } else {
      const ago = (now - app.lastMsgAt) / 1000;
      text = 'Connection lost: showing the last state received at ' +
        fmtClock(app.lastMsgAt / 1000, true) + ' (' + fmtDuration(ago) + ' ago). Reconnecting…';
    }
    setText($('stale-text'), text);
    const age = app.lastMsgAt ? (now - app.lastMsgAt) / 1000 : NaN;
    setText($('last-update'), document.body.dataset.conn === 'reconnecting' && !isNaN(age) ? 'last update ' + fmtDuration(age) + ' ago' : '');
  }

  /* Runs twice a second: detects a silent stream and keeps the chart scrolling. */
  function watchdog() {
    const now = Date.now();
    const since = now - (app.lastMsgAt || app.startedAt);
    if (since > STALE_MS) setConn('reconnecting');
    if (since > RESTART_MS && app.es && now - app.openedAt > RESTART_MS) openStream();
    renderStaleness();
    if (now - app.lastDrawAt >= 1000) scheduleDraw();
  }

  function start() {
    initChart();
    openStream();
    fetchState();   // first paint without waiting for the stream
    loadHistory();
    setInterval(watchdog, 500);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
