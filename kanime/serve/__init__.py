"""The web page: `kanime serve GENERATOR` serves it with its JSON API (see `app.py`)."""
