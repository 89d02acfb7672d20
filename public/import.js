// Upload progress for the import form (/transfer): the form works without
// this file; with it, a large file shows how much has been sent, and the
// answer (the page with its report) replaces the page's <main>.
document.addEventListener('submit', (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.uploadProgress) return;
  const progress = document.getElementById(form.dataset.uploadProgress);
  if (!progress || typeof XMLHttpRequest === 'undefined') return;
  event.preventDefault();
  const data = new FormData(form);
  if (event.submitter && event.submitter.name) data.set(event.submitter.name, event.submitter.value);
  const request = new XMLHttpRequest();
  request.open('POST', form.action);
  request.responseType = 'document';
  progress.hidden = false;
  progress.value = 0;
  request.upload.addEventListener('progress', (e) => {
    if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
  });
  request.upload.addEventListener('load', () => {
    // Sent: the server now checks every row.
    progress.removeAttribute('value');
  });
  request.addEventListener('load', () => {
    const main = request.response && request.response.querySelector('main');
    if (main) document.querySelector('main').replaceWith(document.adoptNode(main));
    else form.submit();
  });
  request.addEventListener('error', () => form.submit());
  request.send(data);
});
