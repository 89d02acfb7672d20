// Overview: draws the charts with uPlot from the history table's own cells,
// so the chart and the table always say the same. Without JavaScript (or
// without uPlot) the table is the content.
(() => {
  'use strict';

  // Told apart by dash pattern, marker and label, not by colour alone.
  const looks = [
    { stroke: '#1d5fbf', dash: [], fill: '#1d5fbf', name: 'solid line' },
    { stroke: '#a33b00', dash: [10, 6], fill: '#ffffff', name: 'dashed line' },
  ];
  const HEIGHT = 220;
  const number = (v) => (v == null ? 'no sample' : Number.isInteger(v) ? String(v) : v.toFixed(2));
  const latest = (list) => {
    for (let i = list.length - 1; i >= 0; i--) if (list[i] != null) return list[i];
    return null;
  };
  let plots = [];

  function readTable(table) {
    const keys = [...table.querySelectorAll('thead th[data-column]')].map((th) => th.getAttribute('data-column'));
    const labels = {};
    const units = {};
    table.querySelectorAll('thead th[data-column]').forEach((th) => {
      labels[th.getAttribute('data-column')] = th.textContent.trim();
      units[th.getAttribute('data-column')] = th.getAttribute('data-unit') || '';
    });
    const step = Number(table.getAttribute('data-step')) || 60;
    const times = [];
    const values = Object.fromEntries(keys.map((key) => [key, []]));
    let last = null;
    table.querySelectorAll('tbody tr[data-t]').forEach((row) => {
      const t = Number(row.getAttribute('data-t'));
      // A gap (no samples: the node was down) breaks the line instead of bridging it.
      if (last !== null && t - last > step * 1.5) {
        times.push(last + step);
        keys.forEach((key) => values[key].push(null));
      }
      times.push(t);
      const cells = row.querySelectorAll('td[data-value]');
      keys.forEach((key, i) => values[key].push(cells[i] ? Number(cells[i].getAttribute('data-value')) : null));
      last = t;
    });
    return { times, values, labels, units };
  }

  function draw() {
    plots.forEach((plot) => plot.destroy());
    plots = [];
    const table = document.getElementById('history-table');
    const charts = document.querySelector('[data-charts]');
    if (!table || !charts || typeof window.uPlot !== 'function') return;
    const { times, values, labels, units } = readTable(table);
    charts.hidden = false;
    charts.querySelectorAll('[data-chart]').forEach((target) => {
      const keys = target.getAttribute('data-columns').split(' ');
      const options = {
        width: Math.max(280, target.clientWidth),
        height: HEIGHT,
        // The table's times are UTC; the axis says the same.
        tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        scales: { x: { time: true }, y: { range: (_u, min, max) => [0, Math.max(1, max * 1.1)] } },
        series: [
          // The legend: the value under the pointer, else the latest one
          // (uPlot's own reads "--" until the pointer is over the chart).
          { label: 'Time (UTC)', value: (_u, v, _s, idx) => (idx == null ? 'latest' : new Date(v * 1000).toISOString().slice(0, 16).replace('T', ' ')) },
          ...keys.map((key, i) => ({
            label: keys.length > 1 ? `${labels[key]} (${looks[i].name})` : labels[key],
            stroke: looks[i].stroke,
            width: 2,
            dash: looks[i].dash,
            spanGaps: false,
            value: (_u, v, _s, idx) => (idx == null ? number(latest(values[key])) : number(v)),
            points: { size: 7, width: 2, stroke: looks[i].stroke, fill: looks[i].fill },
          })),
        ],
        axes: [{}, { label: units[keys[0]], size: 60 }],
      };
      plots.push(new window.uPlot(options, [times, ...keys.map((key) => values[key])], target));
    });
    // The charts show it now; the table stays one click away.
    const details = document.querySelector('[data-history-details]');
    if (details) details.open = false;
  }

  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      plots.forEach((plot) => {
        const width = Math.max(280, plot.root.parentElement.clientWidth);
        plot.setSize({ width, height: HEIGHT });
      });
    }, 150);
  });

  document.addEventListener('DOMContentLoaded', draw);
  // A range link swaps the history section.
  document.addEventListener('htmx:after:swap', () => {
    if (document.getElementById('overview-history')) draw();
  });
})();
