"""The web export's site: the page and its JavaScript (``index.html``, ``app.js``, ``seeded_z.js``), onnxruntime-web's
files, headless Chromium over the DevTools pipe, and the local server."""
