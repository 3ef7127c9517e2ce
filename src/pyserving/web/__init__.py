"""The web app (`pyserving web`): a separate process that classifies photos, audio clips,
texts or features, whichever the chosen model takes.

It talks to the model server only through `pyserving.client.AsyncClient`; see `web.app`.
"""
