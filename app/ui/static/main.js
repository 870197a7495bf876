// The dashboard: runs, then per run its health charts, latest clusters and a sample browser.
// Everything comes from the /v1 API; when /info says the server needs a token, the page asks
// for it before the first /v1 request, and asks again after a 401.

import { AuthError, get, token } from './api.js';
import { renderAlerts, renderCharts } from './charts.js';
import { renderClusters } from './clusters.js';
import { el } from './dom.js';
import { renderExemplars, renderSamples } from './samples.js';

const PAGE = 20;
const RUNS_SHOWN = 100;
const $ = (id) => document.getElementById(id);
const state = { run: null, offset: 0, request: 0 };

function say(text, kind = 'error') {
  const message = $('message');
  message.textContent = text;
  message.className = kind;
  message.hidden = !text;
}

function askToken(reason) {
  $('token-form').hidden = false;
  $('run').hidden = true;
  $('run-list').replaceChildren();
  say(reason);
  $('token').focus();
}

async function guarded(work) {
  try {
    await work();
  } catch (err) {
    if (err instanceof AuthError) {
      token.clear();
      askToken(`Authentication failed: ${err.message}`);
    } else {
      say(`Could not load: ${err.message}`);
    }
  }
}

// The newest runs first (the API lists them oldest first).
async function newestRuns() {
  const first = (await get('/v1/runs', { limit: RUNS_SHOWN })).body;
  if (first.total <= RUNS_SHOWN) return first.runs.reverse();
  const offset = first.total - RUNS_SHOWN;
  return (await get('/v1/runs', { limit: RUNS_SHOWN, offset })).body.runs.reverse();
}

async function loadRuns() {
  const runs = await newestRuns();
  $('token-form').hidden = true;
  say('');
  $('run-list').replaceChildren(...runs.map((run) => el('li', {},
    el('button', { type: 'button', dataset: { run: run.id }, onclick: () => guarded(() => showRun(run)) },
      el('span', { class: 'name' }, run.name || 'unnamed'),
      el('span', { class: 'muted' }, ` ${run.rounds} round${run.rounds === 1 ? '' : 's'}`),
      el('code', {}, run.id)))));
  const wanted = new URLSearchParams(window.location.hash.slice(1)).get('run');
  const run = runs.find((r) => r.id === wanted) || runs[0];
  if (!run) {
    $('run').hidden = true;
    say('No run yet: a training job creates one with POST /v1/runs.', 'info');
    return;
  }
  await showRun(run);
}

function options(select, values, labelOf = String) {
  const keep = select.value;
  const all = [...new Set([...values.map(String), ...(keep ? [keep] : [])])];
  select.replaceChildren(el('option', { value: '' }, 'any'),
    ...all.map((value) => el('option', { value }, labelOf(value))));
  select.value = keep;
}

async function showRun(run) {
  state.run = run;
  window.history.replaceState(null, '', `#run=${encodeURIComponent(run.id)}`);
  for (const button of $('run-list').querySelectorAll('button')) {
    button.classList.toggle('active', button.dataset.run === run.id);
  }
  $('run-title').textContent = `${run.name || 'unnamed'} · ${run.rounds} round(s) · `
    + `${run.reference_samples} reference samples`;
  $('run').hidden = false;
  const base = `/v1/runs/${encodeURIComponent(run.id)}`;
  const [health, list] = await Promise.all([get(`${base}/health`), get(`${base}/rounds`)]);
  const rounds = list.body.rounds;
  renderAlerts($('alerts'), rounds);
  renderCharts($('charts'), health.body, rounds);
  const filters = $('filters');
  filters.reset();
  filters.elements.round.replaceChildren(...rounds.map((r) => el('option', { value: r.round },
    `${r.round} (${r.samples} samples)`)).reverse());
  if (!rounds.length) {
    $('clusters').replaceChildren();
    $('clusters-round').textContent = '(no round yet)';
    renderSamples($('samples'), []);
    $('sample-count').textContent = '';
    return;
  }
  const clusters = (await get(`${base}/clusters`)).body;
  $('clusters-round').textContent = `(round ${clusters.round})`;
  renderClusters($('clusters'), clusters.clusters);
  state.offset = 0;
  await loadSamples();
}

async function loadSamples() {
  const request = ++state.request;
  const { round, ...filters } = Object.fromEntries(new FormData($('filters')));
  const path = `/v1/runs/${encodeURIComponent(state.run.id)}/rounds/${round}`;
  const { body, total } = await get(path, { ...filters, offset: state.offset, limit: PAGE });
  if (request !== state.request) return; // a later filter change has taken over
  const form = $('filters').elements;
  options(form.cluster, body.clusters.map((c) => c.cluster),
    (c) => `${c} (${body.clusters.find((x) => String(x.cluster) === c)?.size ?? 0})`);
  options(form.reason, ['quota_filled', 'no_quota', ...Object.keys(body.rejected)]);
  renderSamples($('samples'), body.samples);
  $('sample-count').textContent = total
    ? `${state.offset + 1}–${state.offset + body.samples.length} of ${total} samples`
    : 'No sample matches these filters.';
  $('prev').disabled = state.offset === 0;
  $('next').disabled = state.offset + PAGE >= total;
  renderExemplars($('exemplars'), body, filters.cluster);
}

$('filters').addEventListener('change', () => {
  state.offset = 0;
  guarded(loadSamples);
});
$('prev').addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - PAGE);
  guarded(loadSamples);
});
$('next').addEventListener('click', () => {
  state.offset += PAGE;
  guarded(loadSamples);
});
$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  token.set($('token').value);
  $('token').value = '';
  guarded(loadRuns);
});

guarded(async () => {
  const info = (await get('/info')).body;
  $('server').textContent = `DCES ${info.version} · ${info.database}`;
  if (info.auth && !token.get()) {
    askToken('This server needs its API token (DCES_API_TOKEN) to show its runs.');
    return;
  }
  await loadRuns();
});
