// The sample browser: one page of a round's decisions, each with its edits highlighted, and the
// round's reference exemplars of the chosen cluster beside them.

import { el, num } from './dom.js';

// Edits are spans of the original text in code points (Python indexes); the sample's text is
// the edited one, so each edit's span there is shifted by the length change of those before it.
export function highlightEdits(text, edits) {
  const chars = Array.from(text);
  const parts = [];
  let pos = 0;
  let shift = 0;
  for (const edit of edits.slice().sort((a, b) => a.start - b.start)) {
    const start = edit.start + shift;
    const size = Array.from(edit.new).length;
    if (start < pos || chars.slice(start, start + size).join('') !== edit.new) return [text];
    parts.push(chars.slice(pos, start).join(''), el('mark', {
      class: 'edit', title: `was “${edit.old}” (p ${num(edit.p, 2)})` }, edit.new));
    pos = start + size;
    shift += size - Array.from(edit.old).length;
  }
  parts.push(chars.slice(pos).join(''));
  return parts;
}

function decision(sample) {
  const verdict = sample.selected ? `selected as ${sample.role}` : `rejected: ${sample.reason}`;
  return el('li', { class: `sample ${sample.selected ? 'kept' : 'dropped'}`,
    dataset: { id: sample.id } },
  el('div', { class: 'meta' },
    el('span', { class: 'verdict' }, verdict),
    ` · cluster ${sample.cluster} · distance ${num(sample.distance)}`,
    sample.edits.length ? ` · ${sample.edits.length} edit(s)` : '',
    el('code', {}, sample.id)),
  el('p', { class: 'text' }, highlightEdits(sample.text, sample.edits)));
}

export function renderSamples(list, samples) {
  list.replaceChildren(...samples.map(decision));
}

// The round stores reference samples only as the exemplars it replays for lost clusters
// (role "replay"); a cluster it did not replay has none to show.
export function renderExemplars(aside, round, cluster) {
  if (cluster === '') {
    aside.replaceChildren(el('h4', {}, 'Reference exemplars'),
      el('p', { class: 'muted' }, 'Choose a cluster to see its reference exemplars.'));
    return;
  }
  const report = round.clusters.find((c) => String(c.cluster) === cluster);
  const exemplars = (round.replay || []).filter((s) => String(s.cluster) === cluster);
  aside.replaceChildren(
    el('h4', {}, `Reference exemplars of cluster ${cluster}`),
    report ? el('p', { class: 'muted' },
      `reference share ${num(report.reference_share, 3)}, candidates ${report.size}`) : null,
    exemplars.length
      ? el('ol', { class: 'samples' }, exemplars.map((s) => el('li', { class: 'sample reference',
        dataset: { id: s.id } }, el('p', { class: 'text' }, s.text))))
      : el('p', { class: 'muted' },
        'None in this round: a round keeps reference text only for the lost clusters it '
        + 'replays (config replay.fraction > 0).'));
}
