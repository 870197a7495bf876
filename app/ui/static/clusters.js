// The latest round's clusters: size and share against the reference, dispersion against its
// reference, and the edge ratio with the inputs that set it
// (r = clip(ema(r0 + alpha * s + gamma * g)), see curation/ratio.py).

import { el, num, pct } from './dom.js';

const WHY = 'how the edge ratio was set';
// s: dispersion signal (> 0 when tighter than the reference), g: training-feedback signal.
const HEAD = ['cluster', 'size', 'share', 'ref. share', 'dispersion', 'ref. dispersion',
  'edge ratio', WHY, 'quota', 'center / edge', 'rejected'];

export function explainRatio(d) {
  if (d.static) return `static ${num(d.ratio, 2)}`;
  const raw = `r0 ${num(d.r0, 2)} + α ${num(d.alpha, 2)} × s ${num(d.dispersion_signal, 2)}`
    + ` + γ ${num(d.gamma, 2)} × g ${num(d.feedback_signal, 2)} = ${num(d.raw, 2)}`;
  const ema = d.previous === null ? '' : `, ema with last ${num(d.previous, 2)} → ${num(d.smoothed, 2)}`;
  return `${raw}${ema}, clipped → ${num(d.ratio, 2)}`;
}

function row(c) {
  const lost = c.size === 0 && c.reference_share > 0;
  const tighter = typeof c.reference_dispersion === 'number'
    && c.dispersion < c.reference_dispersion;
  return el('tr', { class: lost ? 'lost' : null, dataset: { cluster: c.cluster } },
    el('td', {}, c.cluster),
    el('td', {}, c.size),
    el('td', {}, pct(c.share)),
    el('td', {}, pct(c.reference_share)),
    el('td', { class: tighter ? 'tighter' : null }, num(c.dispersion)),
    el('td', {}, `${num(c.reference_dispersion)} (${c.reference_source})`),
    el('td', {}, num(c.edge_ratio.ratio, 2)),
    el('td', { class: 'why' }, explainRatio(c.edge_ratio)),
    el('td', {}, c.quota),
    el('td', {}, `${c.selected_center} / ${c.selected_edge}`),
    el('td', {}, c.rejected));
}

export function renderClusters(table, clusters) {
  table.replaceChildren(
    el('thead', {}, el('tr', {}, HEAD.map((h) => el('th', {
      scope: 'col', class: h === WHY ? 'why' : null }, h)))),
    el('tbody', {}, clusters.map(row)));
}
