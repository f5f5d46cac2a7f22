"""A FastAPI service that runs a sage_streams graph in its lifespan (see ``app.py``)."""
