"""The HTTP API beside the UI (``/api/v1``): app.py (routes), access.py (who may), models.py (request bodies).

The server (server.py at the project root) mounts it next to the Streamlit app; one process holds the database."""
