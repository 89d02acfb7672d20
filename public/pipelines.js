// The pipeline form: only the chosen destination's fieldset is shown. Without
// JavaScript every fieldset shows, each saying when it applies.
(() => {
  'use strict';
  function apply() {
    const form = document.getElementById('pipeline-form');
    if (!form) return;
    const chosen = form.querySelector('input[name="kind"]:checked');
    if (!chosen) return;
    form.querySelectorAll('fieldset[data-kind]').forEach((fieldset) => {
      fieldset.hidden = fieldset.getAttribute('data-kind') !== chosen.value;
    });
  }
  document.addEventListener('change', (event) => {
    if (event.target instanceof HTMLInputElement && event.target.name === 'kind') apply();
  });
  // htmx swaps the form in again after a refused save: apply to the new one too.
  new MutationObserver(apply).observe(document.documentElement, { childList: true, subtree: true });
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', apply);
  else apply();
})();
