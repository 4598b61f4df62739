"""``lia-live ui``: the live pipeline's control panel, a local web page served by the process that runs it.

- :mod:`.security` — who may use it: a per-run token, the Host and Origin checks (ASGI middleware);
- :mod:`.server` — the Starlette app (pages, JSON API, the WebSocket with preview frames and live numbers);
- :mod:`.preview` — the preview encoder thread (newest frame wins; never in the pipeline's threads);
- :mod:`.panel` — what the page can do, on top of the live controller; :mod:`.devices` — input, virtual
  camera and recordings switched at frame boundaries; :mod:`.prefs` — settings saved per user;
- :mod:`.app` — runs the server and the live loop together.
"""
