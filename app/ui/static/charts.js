// Every health series over rounds, one Chart.js line chart each (the library is vendored, see
// scripts/vendor_ui.sh). A round with alerts is marked on the series they concern, as a red or
// orange triangle whose tooltip gives the messages; an alert whose kind names no series (a kind
// added later) is marked on every chart rather than nowhere.

import { el } from './dom.js';

const LINE = '#2b6cb0';
// The collapse signals first, then the rest in the API's (alphabetical) order.
const FIRST = ['lost_reference_mass', 'tail_coverage', 'effective_clusters', 'reference_coverage',
  'clusters_occupied', 'mean_dispersion'];
const SEVERITY = { critical: '#c53030', warning: '#dd6b20' };

// dispersion_drop concerns mean_dispersion, mode_loss concerns lost_modes.
function concerns(kind, series) {
  return series.includes(String(kind).replace(/_(drop|loss|fall|low|high|rise)$/, ''));
}

function rank(name) {
  const i = FIRST.indexOf(name);
  return i < 0 ? FIRST.length : i;
}

function markColor(alerts, fallback) {
  if (!alerts.length) return fallback;
  return alerts.some((a) => a.severity === 'critical') ? SEVERITY.critical : SEVERITY.warning;
}

export function renderCharts(container, health, rounds) {
  for (const canvas of container.querySelectorAll('canvas')) window.Chart.getChart(canvas)?.destroy();
  container.replaceChildren();
  const names = Object.keys(health.series)
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const alertsOf = new Map(rounds.map((r) => [r.round, r.alerts || []]));
  const placed = (alert) => names.some((name) => concerns(alert.kind, name));
  for (const name of names) {
    const marks = health.rounds.map((n) => (alertsOf.get(n) || [])
      .filter((alert) => !placed(alert) || concerns(alert.kind, name)));
    const at = (ctx) => marks[ctx.dataIndex] || [];
    const canvas = el('canvas', { role: 'img', 'aria-label': `${name} over rounds`,
      dataset: { series: name } });
    container.append(el('figure', { class: 'chart' },
      el('figcaption', {}, `${name} by round`), el('div', { class: 'plot' }, canvas)));
    new window.Chart(canvas, {
      type: 'line',
      data: {
        labels: health.rounds.map(String),
        datasets: [{
          label: name,
          data: health.series[name],
          borderColor: LINE,
          backgroundColor: LINE,
          pointStyle: (ctx) => (at(ctx).length ? 'triangle' : 'circle'),
          pointRadius: (ctx) => (at(ctx).length ? 7 : 3),
          pointBackgroundColor: (ctx) => markColor(at(ctx), LINE),
          pointBorderColor: (ctx) => markColor(at(ctx), LINE),
        }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: (items) => `round ${items[0].label}`,
              footer: (items) => at(items[0]).map((a) => `${a.severity}: ${a.message}`),
            },
          },
        },
      },
    });
  }
}

export function renderAlerts(container, rounds) {
  const items = rounds.slice().reverse().flatMap((r) => (r.alerts || []).map((alert) => el('li',
    { class: `alert ${alert.severity}` },
    el('strong', {}, `round ${r.round} · ${alert.severity} · ${alert.kind}`), ' ', alert.message)));
  container.replaceChildren(items.length
    ? el('ul', {}, items)
    : el('p', { class: 'muted' }, 'No alert in any round.'));
}
