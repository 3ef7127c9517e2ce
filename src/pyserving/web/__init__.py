"""The web app (`pyserving web`): a separate process that classifies uploaded photos.

It talks to the model server only through `pyserving.client.AsyncClient`; see `web.app`.
"""
